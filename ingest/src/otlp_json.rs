//! OTLP/JSON: one `ExportTraceServiceRequest` document, or JSON Lines of them.
//!
//! Streams through the document with serde visitors and pushes spans straight into the batch: no
//! JSON tree is built, and strings without escapes are borrowed from the input. Follows the OTLP/JSON
//! rules: ids are hex (base64 is accepted too, as older exporters wrote it), 64-bit integers are
//! strings or numbers, enums are names or integers, field names are lowerCamelCase or the proto's
//! snake_case, and unknown fields are ignored.

use std::borrow::Cow;
use std::fmt;
use std::io::BufRead;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use crate::read::{Ctx, Format};
use crate::span::{parse_base64_id, parse_hex_id, Span, SpanKind, StatusCode};
use crate::IngestError;

mod fast;

/// The line buffer's starting size. Reads fill it from the input directly (no intermediate
/// copy), and only the partial line left at its end is moved to its front before the next read,
/// so few bytes are copied twice; a longer line grows it.
const BUFFER: usize = 8 << 20;

/// Reads JSON Lines of requests; a bad line is one bad record.
///
/// Lines are cut out of a large buffer in place (no copy per line), and parsed where they lie:
/// first by the specialised scanner of [`fast`], and by the general serde reader when the
/// scanner declines a line (escapes, unusual numbers, bad spans, malformed JSON).
pub(crate) fn read_lines(reader: &mut dyn BufRead, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    read_lines_with(reader, ctx, true)
}

fn read_lines_with(
    reader: &mut dyn BufRead,
    ctx: &mut Ctx<'_>,
    use_fast: bool,
) -> Result<(), IngestError> {
    // Initialised once: reading into initialised memory needs no zeroing per read (which
    // `read_to_end` did, 3.5% of `augur learn`'s instructions, with a copy through the
    // `BufReader` besides).
    let mut buf: Vec<u8> = vec![0; BUFFER];
    let mut len = 0usize; // bytes of `buf` holding input
    let mut start = 0usize; // first byte of the current line in `buf`
    let mut scanned = 0usize; // bytes of `buf` known to hold no line end after `start`
    let mut eof = false;
    let mut line_no = 0u64;
    let mut saw_request = false;
    loop {
        let end = match memchr::memchr(b'\n', &buf[scanned..len]) {
            Some(k) => scanned + k,
            None if eof => {
                if start >= len {
                    break;
                }
                len
            }
            None => {
                // Keep the partial line (moved to the front when the buffer is full), and read
                // more after it.
                scanned = len;
                if len == buf.len() {
                    if start > 0 {
                        buf.copy_within(start..len, 0);
                        len -= start;
                        scanned -= start;
                        start = 0;
                    } else {
                        buf.resize(buf.len() * 2, 0);
                    }
                }
                let n = loop {
                    match reader.read(&mut buf[len..]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => return Err(IngestError::io(ctx.path, e)),
                    }
                };
                eof = n == 0;
                len += n;
                continue;
            }
        };
        let line = &buf[start..end];
        start = (end + 1).min(len);
        scanned = start;
        line_no += 1;
        let text = line.trim_ascii();
        if text.is_empty() {
            continue;
        }
        // Validating the line's UTF-8 once lets the parser borrow every string without checking
        // each one again (a measured 13% of the time of `augur learn` went to per-string checks).
        // A line that is not UTF-8 (an SDK passing bytes through unchecked) is read with
        // U+FFFD for its bad bytes rather than losing every span of its request.
        let lossy;
        let text = match std::str::from_utf8(text) {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(
                    path = %ctx.path.display(),
                    line = line_no,
                    "not UTF-8 text ({e}): bad bytes read as U+FFFD"
                );
                lossy = String::from_utf8_lossy(text).into_owned();
                lossy.as_str()
            }
        };
        let first = ctx.batch.spans.len();
        if use_fast && fast::read_line(text, ctx) == Some(true) {
            saw_request = true;
            ctx.maybe_flush()?;
            continue;
        }
        ctx.batch.truncate(first);
        let mut state = DocState::new(Loc::Line(line_no));
        let mut de = serde_json::Deserializer::from_str(text);
        let parsed = RequestSeed {
            ctx: &mut *ctx,
            state: &mut state,
        }
        .deserialize(&mut de)
        .and_then(|()| de.end());
        match parsed {
            Ok(()) if state.saw_resource_spans => {
                saw_request = true;
                state.finish(ctx)?;
            }
            Ok(()) => {
                state.discard(ctx);
                ctx.bad(
                    format!("line {line_no}"),
                    "a JSON object without resourceSpans (not an OTLP trace request)",
                )?;
            }
            Err(e) => {
                state.discard(ctx);
                ctx.bad(format!("line {line_no}"), format!("invalid OTLP JSON: {e}"))?;
            }
        }
        ctx.maybe_flush()?;
    }
    if !saw_request {
        return Err(ctx.unreadable(
            Format::OtlpJsonLines,
            match ctx.report.problems.last() {
                Some(p) => format!(
                    "no line is an OTLP trace request (first problem: {}: {})",
                    p.location, p.reason
                ),
                None => "no line is an OTLP trace request".to_string(),
            },
        ));
    }
    Ok(())
}

/// Reads one request document (pretty-printed or not) without building a tree.
pub(crate) fn read_document(
    reader: &mut dyn BufRead,
    ctx: &mut Ctx<'_>,
) -> Result<(), IngestError> {
    read_document_with(reader, ctx, true)
}

/// [`read_document`]; with `require_spans` false, a request without `resourceSpans` is an empty
/// request (live OTLP/HTTP may send one) rather than a file that is not OTLP.
pub(crate) fn read_document_with(
    reader: &mut dyn BufRead,
    ctx: &mut Ctx<'_>,
    require_spans: bool,
) -> Result<(), IngestError> {
    let mut state = DocState::new(Loc::Path);
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parsed = RequestSeed {
        ctx: &mut *ctx,
        state: &mut state,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(e) = state.sink_error.take() {
        return Err(e);
    }
    if let Err(e) = parsed {
        if e.is_io() {
            return Err(IngestError::io(
                ctx.path,
                std::io::Error::other(e.to_string()),
            ));
        }
        return Err(ctx.unreadable(Format::OtlpJson, format!("{e}")));
    }
    if !state.saw_resource_spans && require_spans {
        return Err(ctx.unreadable(
            Format::OtlpJson,
            "the document has no resourceSpans: not an OTLP trace request",
        ));
    }
    state.finish(ctx)
}

/// How bad records are located: by line (JSON Lines) or by path in the document.
#[derive(Clone, Copy)]
enum Loc {
    Line(u64),
    Path,
}

/// Per-document state: where we are, and which spans still need their resource's service name.
struct DocState {
    loc: Loc,
    saw_resource_spans: bool,
    resource_index: usize,
    scope_index: usize,
    span_index: usize,
    /// Index in the batch of the first span of the current document (to drop them on a bad line).
    doc_start: usize,
    /// The consumer's error, when a flush in the middle of a document failed.
    sink_error: Option<IngestError>,
}

impl DocState {
    fn new(loc: Loc) -> Self {
        DocState {
            loc,
            saw_resource_spans: false,
            resource_index: 0,
            scope_index: 0,
            span_index: 0,
            doc_start: usize::MAX,
            sink_error: None,
        }
    }

    fn location(&self) -> String {
        let path = format!(
            "resourceSpans[{}].scopeSpans[{}].spans[{}]",
            self.resource_index, self.scope_index, self.span_index
        );
        match self.loc {
            Loc::Line(n) => format!("line {n}: {path}"),
            Loc::Path => path,
        }
    }

    fn finish(&mut self, _ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
        Ok(())
    }

    /// Drops the spans a failed line had pushed, so that a bad line counts once and adds nothing.
    fn discard(&self, ctx: &mut Ctx<'_>) {
        if self.doc_start != usize::MAX && self.doc_start <= ctx.batch.spans.len() {
            ctx.batch.truncate(self.doc_start);
        }
    }
}

struct RequestSeed<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    state: &'a mut DocState,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an OTLP ExportTraceServiceRequest object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.state.doc_start = self.ctx.batch.spans.len();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key {
                "resourceSpans" | "resource_spans" => {
                    self.state.saw_resource_spans = true;
                    map.next_value_seed(SeqOf(ResourceSpansSeed {
                        ctx: &mut *self.ctx,
                        state: &mut *self.state,
                    }))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A JSON array whose elements are read by the same seed (which is `Copy`-free, so it is rebuilt
/// through [`Reseed`]).
struct SeqOf<S>(S);

trait Reseed<'de> {
    type Elem<'s>: DeserializeSeed<'de, Value = ()>
    where
        Self: 's;
    fn elem(&mut self, index: usize) -> Self::Elem<'_>;
}

impl<'de, S: Reseed<'de>> DeserializeSeed<'de> for SeqOf<S> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de, S: Reseed<'de>> Visitor<'de> for SeqOf<S> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array")
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq.next_element_seed(self.0.elem(i))?.is_some() {
            i += 1;
        }
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(()) // null: an absent list
    }
}

struct ResourceSpansSeed<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    state: &'a mut DocState,
}

impl<'de, 'a, 'c> Reseed<'de> for ResourceSpansSeed<'a, 'c> {
    type Elem<'s>
        = OneResourceSpans<'s, 'c>
    where
        Self: 's;
    fn elem(&mut self, index: usize) -> OneResourceSpans<'_, 'c> {
        self.state.resource_index = index;
        OneResourceSpans {
            ctx: &mut *self.ctx,
            state: &mut *self.state,
        }
    }
}

struct OneResourceSpans<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    state: &'a mut DocState,
}

impl<'de> DeserializeSeed<'de> for OneResourceSpans<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneResourceSpans<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ResourceSpans object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let first = self.ctx.batch.spans.len();
        let mut resource = ResourceInfo::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key {
                "resource" => resource = map.next_value_seed(ResourceSeed)?,
                "scopeSpans"
                | "scope_spans"
                | "instrumentationLibrarySpans"
                | "instrumentation_library_spans" => {
                    map.next_value_seed(SeqOf(ScopeSpansSeed {
                        ctx: &mut *self.ctx,
                        state: &mut *self.state,
                    }))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        // The resource may come before or after its spans: name the service now.
        let service = self.ctx.batch.strings.intern(
            resource
                .service
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown_service"),
        );
        let experiment = resource
            .experiment
            .as_deref()
            .map(|e| self.ctx.batch.strings.intern(e));
        for s in &mut self.ctx.batch.spans[first..] {
            s.service = service;
            if s.experiment.is_none() {
                s.experiment = experiment;
            }
        }
        // In a single document (unlike a line, which is dropped whole when bad) finished
        // resources can go to the consumer now, so a large document is never held whole.
        if matches!(self.state.loc, Loc::Path) {
            if let Err(e) = self.ctx.maybe_flush() {
                self.state.sink_error = Some(e);
                return Err(de::Error::custom("the span consumer failed"));
            }
        }
        Ok(())
    }
}

#[derive(Default)]
struct ResourceInfo {
    service: Option<String>,
    experiment: Option<String>,
}

struct ResourceSeed;

impl<'de> DeserializeSeed<'de> for ResourceSeed {
    type Value = ResourceInfo;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<ResourceInfo, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ResourceSeed {
    type Value = ResourceInfo;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Resource object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<ResourceInfo, E> {
        Ok(ResourceInfo::default())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ResourceInfo, A::Error> {
        let mut info = ResourceInfo::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            if &*key == "attributes" {
                let attrs: Attrs<'de> = map.next_value()?;
                info.service = attrs.service.map(Cow::into_owned);
                info.experiment = attrs.experiment.map(Cow::into_owned);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(info)
    }
}

struct ScopeSpansSeed<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    state: &'a mut DocState,
}

impl<'de, 'a, 'c> Reseed<'de> for ScopeSpansSeed<'a, 'c> {
    type Elem<'s>
        = OneScopeSpans<'s, 'c>
    where
        Self: 's;
    fn elem(&mut self, index: usize) -> OneScopeSpans<'_, 'c> {
        self.state.scope_index = index;
        OneScopeSpans {
            ctx: &mut *self.ctx,
            state: &mut *self.state,
        }
    }
}

struct OneScopeSpans<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    state: &'a mut DocState,
}

impl<'de> DeserializeSeed<'de> for OneScopeSpans<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for OneScopeSpans<'_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a ScopeSpans object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key {
                "spans" => {
                    map.next_value_seed(SeqOf(SpansSeed {
                        ctx: &mut *self.ctx,
                        state: &mut *self.state,
                    }))?;
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

struct SpansSeed<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    state: &'a mut DocState,
}

impl<'de, 'a, 'c> Reseed<'de> for SpansSeed<'a, 'c> {
    type Elem<'s>
        = OneSpan<'s, 'c>
    where
        Self: 's;
    fn elem(&mut self, index: usize) -> OneSpan<'_, 'c> {
        self.state.span_index = index;
        OneSpan {
            ctx: &mut *self.ctx,
            state: &mut *self.state,
        }
    }
}

struct OneSpan<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    state: &'a mut DocState,
}

impl<'de> DeserializeSeed<'de> for OneSpan<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let raw: RawSpan<'de> = d.deserialize_map(RawSpanVisitor)?;
        match raw.to_span(self.ctx) {
            Ok(span) => {
                self.ctx.push(span);
                if let Some((t, l)) = raw.link_ids() {
                    self.ctx.batch.link_last(t, l);
                }
            }
            Err(reason) => {
                let loc = self.state.location();
                // In strict mode this is fatal; the error is carried out through serde.
                self.ctx.bad(loc, reason).map_err(de::Error::custom)?;
            }
        }
        Ok(())
    }
}

/// A span's fields as read, before validation.
#[derive(Default)]
struct RawSpan<'de> {
    trace_id: Option<Cow<'de, str>>,
    span_id: Option<Cow<'de, str>>,
    parent_span_id: Option<Cow<'de, str>>,
    name: Option<Cow<'de, str>>,
    kind: Option<Enum<'de>>,
    start: Option<u64>,
    end: Option<u64>,
    status: Option<Enum<'de>>,
    attrs: Attrs<'de>,
    /// The first link's (traceId, spanId).
    link: Option<(Cow<'de, str>, Cow<'de, str>)>,
}

impl RawSpan<'_> {
    /// The first link, when its ids are valid (a link that is not is ignored: the span stands).
    fn link_ids(&self) -> Option<([u8; 16], [u8; 8])> {
        let (t, s) = self.link.as_ref()?;
        let t: [u8; 16] = parse_id(t)?;
        let s: [u8; 8] = parse_id(s)?;
        (t != [0; 16] && s != [0; 8]).then_some((t, s))
    }

    /// Checks the span and interns its strings (by reference: the raw span is a few hundred bytes,
    /// and moving it per span showed up as `memcpy` in profiles).
    fn to_span(&self, ctx: &mut Ctx<'_>) -> Result<Span, String> {
        let trace_id = self.trace_id.as_deref().ok_or("missing traceId")?;
        let trace_id: [u8; 16] =
            parse_id(trace_id).ok_or_else(|| format!("bad traceId {trace_id:?}"))?;
        if trace_id == [0; 16] {
            return Err("traceId is all zeros (invalid)".into());
        }
        let span_id = self.span_id.as_deref().ok_or("missing spanId")?;
        let span_id: [u8; 8] =
            parse_id(span_id).ok_or_else(|| format!("bad spanId {span_id:?}"))?;
        if span_id == [0; 8] {
            return Err("spanId is all zeros (invalid)".into());
        }
        let parent_span_id = match self.parent_span_id.as_deref() {
            None | Some("") => None,
            Some(p) => {
                let id: [u8; 8] = parse_id(p).ok_or_else(|| format!("bad parentSpanId {p:?}"))?;
                (id != [0; 8]).then_some(id)
            }
        };
        let kind = match &self.kind {
            None => SpanKind::Unspecified,
            Some(Enum::Int(i)) => SpanKind::from_i32(i32::try_from(*i).unwrap_or(0)),
            Some(Enum::Name(n)) => {
                SpanKind::from_name(n).ok_or_else(|| format!("unknown span kind {n:?}"))?
            }
        };
        let status = match &self.status {
            None => StatusCode::Unset,
            Some(Enum::Int(i)) => StatusCode::from_i32(i32::try_from(*i).unwrap_or(0)),
            Some(Enum::Name(n)) => {
                StatusCode::from_name(n).ok_or_else(|| format!("unknown status code {n:?}"))?
            }
        };
        let start = self.start.ok_or("missing startTimeUnixNano")?;
        let end = self.end.ok_or("missing endTimeUnixNano")?;
        let start_ns = i64::try_from(start).map_err(|_| "startTimeUnixNano out of range")?;
        let end_ns = i64::try_from(end).map_err(|_| "endTimeUnixNano out of range")?;
        let strings = &mut ctx.batch.strings;
        let mut opt = |v: Option<&str>| v.map(|v| strings.intern(v));
        let a = &self.attrs;
        let peer = opt(a.peer.as_ref().map(|(_, v)| &**v));
        let http_route = opt(a.http_route.as_deref());
        let rpc_method = opt(a.rpc_method.as_deref());
        let error_type = opt(a.error_type.as_deref());
        let experiment = opt(a.experiment.as_deref());
        let name = strings.intern(self.name.as_deref().unwrap_or(""));
        Ok(Span {
            trace_id,
            span_id,
            parent_span_id,
            service: 0, // set when the resource is known
            name,
            kind,
            start_ns,
            end_ns,
            status,
            peer,
            peer_kind: a.peer_kind,
            http_route,
            rpc_method,
            error_type,
            experiment,
        })
    }
}

/// An id in OTLP/JSON: hex (the standard), or base64 (older exporters, and proto3's JSON mapping).
fn parse_id<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() == 2 * N {
        parse_hex_id::<N>(text, false).or_else(|| parse_base64_id::<N>(text))
    } else {
        parse_base64_id::<N>(text)
    }
}

struct RawSpanVisitor;

impl<'de> Visitor<'de> for RawSpanVisitor {
    type Value = RawSpan<'de>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Span object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawSpan<'de>, A::Error> {
        let mut s = RawSpan::default();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key {
                "traceId" | "trace_id" => s.trace_id = Some(map.next_value::<Str<'de>>()?.0),
                "spanId" | "span_id" => s.span_id = Some(map.next_value::<Str<'de>>()?.0),
                "parentSpanId" | "parent_span_id" => {
                    s.parent_span_id = map.next_value::<Option<Str<'de>>>()?.map(|s| s.0)
                }
                "name" => s.name = Some(map.next_value::<Str<'de>>()?.0),
                "kind" => s.kind = map.next_value::<Option<Enum<'de>>>()?,
                "startTimeUnixNano" | "start_time_unix_nano" => {
                    s.start = Some(map.next_value::<U64>()?.0)
                }
                "endTimeUnixNano" | "end_time_unix_nano" => {
                    s.end = Some(map.next_value::<U64>()?.0)
                }
                "status" => s.status = map.next_value::<Option<Status<'de>>>()?.and_then(|st| st.0),
                "attributes" => s.attrs = map.next_value::<Attrs<'de>>()?,
                "links" => s.link = map.next_value::<FirstLink<'de>>()?.0,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(s)
    }
}

/// A string that borrows from the input when it can.
struct Str<'de>(Cow<'de, str>);

impl std::ops::Deref for Str<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A 64-bit unsigned integer written as a JSON number or a decimal string (OTLP/JSON allows both).
struct U64(u64);

impl<'de> de::Deserialize<'de> for U64 {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = U64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an unsigned 64-bit integer (number or string)")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<U64, E> {
                Ok(U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<U64, E> {
                u64::try_from(v)
                    .map(U64)
                    .map_err(|_| E::custom("negative time"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<U64, E> {
                if v.is_finite() && (0.0..1.8e19).contains(&v) {
                    Ok(U64(v as u64))
                } else {
                    Err(E::custom("time out of range"))
                }
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<U64, E> {
                v.parse()
                    .map(U64)
                    .map_err(|_| E::custom(format!("not an integer: {v:?}")))
            }
        }
        d.deserialize_any(V)
    }
}

/// An enum written as an integer or a name.
enum Enum<'de> {
    Int(i64),
    Name(Cow<'de, str>),
}

impl<'de> de::Deserialize<'de> for Enum<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Enum<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an enum as integer or name")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Enum<'de>, E> {
                Ok(Enum::Int(i64::try_from(v).unwrap_or(0)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Enum<'de>, E> {
                Ok(Enum::Int(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Enum<'de>, E> {
                Ok(Enum::Name(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Enum<'de>, E> {
                Ok(Enum::Name(Cow::Owned(v.to_string())))
            }
        }
        d.deserialize_any(V)
    }
}

/// A span's `status` object: only the code matters here.
struct Status<'de>(Option<Enum<'de>>);

impl<'de> de::Deserialize<'de> for Status<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Status<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a Status object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Status<'de>, A::Error> {
                let mut code = None;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    if &*key == "code" {
                        code = map.next_value::<Option<Enum<'de>>>()?;
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(Status(code))
            }
        }
        d.deserialize_map(V)
    }
}

/// The first link of a span's `links` list: its (traceId, spanId), `None` for an empty or null
/// list (the rest of each link, and further links, are skipped).
struct FirstLink<'de>(Option<(Cow<'de, str>, Cow<'de, str>)>);

impl<'de> de::Deserialize<'de> for FirstLink<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Link<'de>(Option<Cow<'de, str>>, Option<Cow<'de, str>>);
        impl<'de> de::Deserialize<'de> for Link<'de> {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = Link<'de>;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str("a Link object")
                    }
                    fn visit_map<A: MapAccess<'de>>(
                        self,
                        mut map: A,
                    ) -> Result<Link<'de>, A::Error> {
                        let (mut t, mut s) = (None, None);
                        while let Some(key) = map.next_key::<Str<'de>>()? {
                            match &*key {
                                "traceId" | "trace_id" => t = Some(map.next_value::<Str<'de>>()?.0),
                                "spanId" | "span_id" => s = Some(map.next_value::<Str<'de>>()?.0),
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                }
                            }
                        }
                        Ok(Link(t, s))
                    }
                }
                d.deserialize_map(V)
            }
        }
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FirstLink<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of Links")
            }
            fn visit_unit<E: de::Error>(self) -> Result<FirstLink<'de>, E> {
                Ok(FirstLink(None))
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<FirstLink<'de>, A::Error> {
                let mut first = None;
                while let Some(Link(t, s)) = seq.next_element::<Link<'de>>()? {
                    if first.is_none() {
                        first = Some(t.zip(s));
                    }
                }
                Ok(FirstLink(first.flatten()))
            }
        }
        d.deserialize_any(V)
    }
}

/// The attributes augur keeps, picked out of a key/value list.
#[derive(Default)]
pub(crate) struct Attrs<'de> {
    /// The peer, with the rank of the attribute it came from (lower wins).
    pub peer: Option<(u8, Cow<'de, str>)>,
    pub http_route: Option<Cow<'de, str>>,
    pub rpc_method: Option<Cow<'de, str>>,
    pub error_type: Option<Cow<'de, str>>,
    pub experiment: Option<Cow<'de, str>>,
    pub service: Option<Cow<'de, str>>,
    /// What kind of peer the attributes mark.
    pub peer_kind: crate::span::PeerKind,
}

impl<'de> Attrs<'de> {
    /// Keeps `value` if `key` is one of the attributes augur reads.
    pub(crate) fn offer(&mut self, key: &str, value: Cow<'de, str>) {
        match key {
            "db.system" | "db.system.name" => self.peer_kind = crate::span::PeerKind::Database,
            "messaging.system" | "messaging.destination.name" | "messaging.destination" => {
                self.peer_kind = crate::span::PeerKind::Messaging
            }
            _ => {}
        }
        if let Some(rank) = crate::peer_rank(key) {
            if self.peer.as_ref().is_none_or(|(r, _)| rank < *r) && !value.is_empty() {
                self.peer = Some((rank, value));
            }
            return;
        }
        match key {
            "http.route" => self.http_route = Some(value),
            "rpc.method" => self.rpc_method = Some(value),
            "error.type" => self.error_type = Some(value),
            crate::EXPERIMENT_ATTRIBUTE => self.experiment = Some(value),
            "service.name" => self.service = Some(value),
            _ => {}
        }
    }
}

impl<'de> de::Deserialize<'de> for Attrs<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Attrs<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of attributes")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Attrs<'de>, E> {
                Ok(Attrs::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Attrs<'de>, A::Error> {
                let mut attrs = Attrs::default();
                while let Some(kv) = seq.next_element::<KeyValue<'de>>()? {
                    if let (Some(k), Some(v)) = (kv.key, kv.value) {
                        attrs.offer(&k, v);
                    }
                }
                Ok(attrs)
            }
        }
        d.deserialize_any(V)
    }
}

/// One attribute; only string values are kept (augur's attributes are all strings).
struct KeyValue<'de> {
    key: Option<Cow<'de, str>>,
    value: Option<Cow<'de, str>>,
}

impl<'de> de::Deserialize<'de> for KeyValue<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = KeyValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a KeyValue object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyValue<'de>, A::Error> {
                let mut kv = KeyValue {
                    key: None,
                    value: None,
                };
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match &*key {
                        "key" => kv.key = Some(map.next_value::<Str<'de>>()?.0),
                        "value" => kv.value = map.next_value::<AnyValue<'de>>()?.0,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(kv)
            }
        }
        d.deserialize_map(V)
    }
}

/// An `AnyValue`: the string of a `stringValue`, nothing for other kinds.
struct AnyValue<'de>(Option<Cow<'de, str>>);

impl<'de> de::Deserialize<'de> for AnyValue<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = AnyValue<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AnyValue object")
            }
            fn visit_unit<E: de::Error>(self) -> Result<AnyValue<'de>, E> {
                Ok(AnyValue(None))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<AnyValue<'de>, A::Error> {
                let mut out = None;
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match &*key {
                        "stringValue" | "string_value" => {
                            out = Some(map.next_value::<Str<'de>>()?.0)
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(AnyValue(out))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::ReadOptions;
    use crate::report::IngestReport;
    use crate::span::SpanBatch;
    use std::path::Path;

    fn read(text: &str, lines: bool) -> (Result<(), IngestError>, Vec<SpanBatch>, IngestReport) {
        let opts = ReadOptions::default();
        let mut report = IngestReport::default();
        let mut out = Vec::new();
        let mut sink = |b: SpanBatch| {
            out.push(b);
            Ok(())
        };
        let mut ctx = Ctx::new(Path::new("t.json"), &opts, &mut report, &mut sink);
        let mut r = std::io::Cursor::new(text.as_bytes().to_vec());
        let res = if lines {
            read_lines(&mut r, &mut ctx)
        } else {
            read_document(&mut r, &mut ctx)
        };
        let res = res.and_then(|()| ctx.flush());
        (res, out, report)
    }

    const ONE: &str = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"","name":"GET /","kind":"SPAN_KIND_SERVER","startTimeUnixNano":1000,"endTimeUnixNano":"2000","status":{"code":"STATUS_CODE_ERROR"},"attributes":[{"value":{"stringValue":"/x"},"key":"http.route"},{"key":"peer.service","value":{"stringValue":"db"}}],"unknownField":[1,2]}]}],"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]}}]}"#;

    #[test]
    fn reads_names_strings_and_late_resource() {
        let (res, out, report) = read(ONE, true);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(report.rejected, 0);
        let spans: Vec<_> = out.iter().flat_map(|b| b.to_owned_spans()).collect();
        assert_eq!(spans.len(), 1);
        let s = &spans[0];
        assert_eq!(s.service, "shop");
        assert_eq!(s.name, "GET /");
        assert_eq!(s.span_kind(), SpanKind::Server);
        assert_eq!(s.status_code(), StatusCode::Error);
        assert_eq!((s.start_ns, s.end_ns), (1000, 2000));
        assert_eq!(s.parent_span_id, None);
        assert_eq!(s.http_route.as_deref(), Some("/x"));
        assert_eq!(s.peer.as_deref(), Some("db"));
    }

    #[test]
    fn bad_span_is_skipped_and_located() {
        let bad = ONE.replace("eee19b7ec3c1b174", "nothex");
        let text = format!("{ONE}\n{bad}\n");
        let (res, out, report) = read(&text, true);
        assert!(res.is_ok());
        assert_eq!(out.iter().map(|b| b.len()).sum::<usize>(), 1);
        assert_eq!(report.rejected, 1);
        assert!(
            report.problems[0]
                .location
                .starts_with("line 2: resourceSpans[0]"),
            "{:?}",
            report.problems
        );
    }

    #[test]
    fn snake_case_is_read_not_silently_empty() {
        let snake = ONE
            .replace("resourceSpans", "resource_spans")
            .replace("scopeSpans", "scope_spans")
            .replace("traceId", "trace_id")
            .replace("spanId", "span_id")
            .replace("startTimeUnixNano", "start_time_unix_nano")
            .replace("endTimeUnixNano", "end_time_unix_nano");
        let (res, out, _) = read(&snake, false);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(out.iter().map(|b| b.len()).sum::<usize>(), 1);
    }

    #[test]
    fn wrong_shape_is_an_error() {
        let (res, _, _) = read(r#"{"foo": 1}"#, false);
        assert!(
            matches!(res, Err(IngestError::Unreadable { .. })),
            "{res:?}"
        );
        let (res, _, _) = read("{\"resourceSpans\": [", false);
        assert!(
            matches!(res, Err(IngestError::Unreadable { .. })),
            "{res:?}"
        );
        let (res, _, _) = read("{\"foo\": 1}\n", true);
        assert!(
            matches!(res, Err(IngestError::Unreadable { .. })),
            "{res:?}"
        );
    }

    #[test]
    fn the_stable_database_attribute_names_and_marks_the_peer() {
        // The stable database conventions name `db.system` `db.system.name`; a span carrying
        // only it still calls a database, named after it, in both readers.
        let stable = ONE.replace(
            r#"{"key":"peer.service","value":{"stringValue":"db"}}"#,
            r#"{"key":"db.system.name","value":{"stringValue":"postgresql"}}"#,
        );
        for lines in [true, false] {
            let (res, out, _) = read(&stable, lines);
            assert!(res.is_ok(), "{res:?}");
            let spans: Vec<_> = out.iter().flat_map(|b| b.to_owned_spans()).collect();
            assert_eq!(spans.len(), 1);
            assert_eq!(
                spans[0].peer.as_deref(),
                Some("postgresql"),
                "lines: {lines}"
            );
            assert_eq!(
                spans[0].peer_kind,
                crate::PeerKind::Database,
                "lines: {lines}"
            );
        }
        // A host name still wins over the database system.
        let both = ONE.replace(
            r#"{"key":"peer.service","value":{"stringValue":"db"}}"#,
            r#"{"key":"db.system.name","value":{"stringValue":"postgresql"}},{"key":"server.address","value":{"stringValue":"orders-db"}}"#,
        );
        let (res, out, _) = read(&both, true);
        assert!(res.is_ok(), "{res:?}");
        let spans: Vec<_> = out.iter().flat_map(|b| b.to_owned_spans()).collect();
        assert_eq!(spans[0].peer.as_deref(), Some("orders-db"));
        assert_eq!(spans[0].peer_kind, crate::PeerKind::Database);
    }

    #[test]
    fn the_first_link_is_kept_by_both_paths() {
        let linked = ONE.replace(
            r#""unknownField":[1,2]"#,
            r#""links":[{"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","attributes":[]},{"traceId":"11111111111111111111111111111111","spanId":"2222222222222222"}]"#,
        );
        let want = (
            [
                0x0a, 0xf7, 0x65, 0x19, 0x16, 0xcd, 0x43, 0xdd, 0x84, 0x48, 0xeb, 0x21, 0x1c, 0x80,
                0x31, 0x9c,
            ],
            [0xb7, 0xad, 0x6b, 0x71, 0x69, 0x20, 0x33, 0x31],
        );
        for lines in [true, false] {
            let (res, out, _) = read(&linked, lines);
            res.unwrap();
            let spans: Vec<_> = out.iter().flat_map(|b| b.to_owned_spans()).collect();
            assert_eq!(spans.len(), 1);
            assert_eq!(spans[0].link, Some(want), "lines: {lines}");
        }
        // A bad link is ignored; the span stands.
        let bad = ONE.replace(
            r#""unknownField":[1,2]"#,
            r#""links":[{"traceId":"zz","spanId":"b7ad6b7169203331"}]"#,
        );
        for lines in [true, false] {
            let (res, out, report) = read(&bad, lines);
            res.unwrap();
            assert_eq!(report.rejected, 0);
            assert!(out
                .iter()
                .flat_map(|b| b.to_owned_spans())
                .all(|s| s.link.is_none()));
        }
    }

    /// A reader that hands out at most `step` bytes per read (like a pipe or a decompressor).
    struct Trickle {
        bytes: Vec<u8>,
        at: usize,
        step: usize,
    }

    impl std::io::Read for Trickle {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.bytes.len() - self.at);
            out[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    #[test]
    fn lines_across_reads_and_longer_than_the_buffer_are_whole() {
        // One line of more spans than the buffer holds, then ordinary lines, no final newline;
        // read in small and in odd-sized pieces.
        let span = ONE
            .split_once(r#""spans":["#)
            .and_then(|(_, rest)| rest.split_once(r#"}]}],"resource""#))
            .map(|(s, _)| format!("{s}}}"))
            .unwrap();
        let many = vec![span.as_str(); BUFFER / span.len() + 10].join(",");
        let long = ONE.replace(&span, &many);
        assert!(long.len() > BUFFER);
        let n_long = BUFFER / span.len() + 10;
        let text = format!("{long}\n\n{ONE}\r\n{ONE}");
        for step in [7, 4096, 1 << 20, usize::MAX] {
            let opts = ReadOptions::default();
            let mut report = IngestReport::default();
            let mut spans = 0;
            let mut sink = |b: SpanBatch| {
                spans += b.len();
                Ok(())
            };
            let mut ctx = Ctx::new(Path::new("t.jsonl"), &opts, &mut report, &mut sink);
            let mut r = std::io::BufReader::new(Trickle {
                bytes: text.as_bytes().to_vec(),
                at: 0,
                step,
            });
            read_lines(&mut r, &mut ctx)
                .and_then(|()| ctx.flush())
                .unwrap();
            assert_eq!(report.rejected, 0, "step {step}: {:?}", report.problems);
            assert_eq!(spans, n_long + 2, "step {step}");
        }
    }
}
