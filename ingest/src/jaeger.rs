//! Jaeger JSON: the query API / UI download (`{"data": [trace, ...]}`) or one trace object
//! (`{"traceID": ..., "spans": [...], "processes": {...}}`).
//!
//! The file is streamed: the traces of `data` are read one at a time, each into small typed
//! records, and its spans are converted and handed on before the next trace is read, so memory
//! holds at most one trace, never a JSON tree of the file. A trace's spans are kept until the trace
//! ends because its `processes` (the services) may come after them; for the same reason the spans of
//! a one-trace file are kept until the file ends. Other top-level keys (`total`, `limit`, `offset`,
//! `errors`, ...) are ignored.
//!
//! A trace or span that is valid JSON but not of the expected shape (a field of the wrong type, a
//! missing id, ...) is a bad record, located as `data[i]`, `data[i].spans[j]`, `trace` or
//! `trace.spans[j]`; invalid or truncated JSON, or a top-level value of the wrong shape, makes the
//! whole file unreadable, as does a file whose spans are all bad.
//!
//! A span's parent is its first `CHILD_OF` reference within the same trace, else its first
//! `FOLLOWS_FROM` one (older exports also carry `parentSpanID`); its first reference to another
//! trace is its link (a message consumed in its own trace, pointing at the producer's span). Kinds, errors and peers come from the tags (`span.kind`, `error`, `otel.status_code`,
//! [`crate::PEER_ATTRIBUTES`]); the service from the span's process.

use std::collections::HashMap;
use std::fmt;
use std::io::BufRead;

use serde::de::{
    self, DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde_json::error::Category;

use crate::lenient::{
    leaf, list, next, object, Any, Array, Checked, Elem, Known, Leaf, MapBody, Object,
};
use crate::otlp_json::Attrs;
use crate::read::{Ctx, Format};
use crate::span::{parse_hex_id, Span, SpanKind, StatusCode};
use crate::IngestError;

/// Reads one Jaeger JSON file (see the module docs) and pushes its spans, in file order.
pub(crate) fn read(reader: &mut dyn BufRead, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let mut st = State {
        ctx,
        accepted: 0,
        rejected: 0,
        fatal: None,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parsed = (&mut de)
        .deserialize_map(TopVisitor { st: &mut st })
        .and_then(|top| de.end().map(|()| top));
    if let Some(e) = st.fatal.take() {
        return Err(e); // a bad record in strict mode, or the consumer's error
    }
    let top = match parsed {
        Ok(top) => top,
        Err(e) => {
            let what = match e.classify() {
                // Kept as I/O: the caller tells a damaged compressed stream by it.
                Category::Io => return Err(IngestError::io(st.ctx.path, std::io::Error::from(e))),
                Category::Eof => "truncated JSON",
                Category::Syntax => "invalid JSON",
                Category::Data => "not Jaeger JSON",
            };
            return Err(st
                .ctx
                .unreadable(Format::JaegerJson, format!("{what}: {e}")));
        }
    };
    match top {
        Top::Traces => {}
        Top::Trace(trace) => st.trace(TraceAt::Single, trace)?,
        Top::Neither => {
            return Err(st.ctx.unreadable(
                Format::JaegerJson,
                "neither {\"data\": [traces]} nor a trace object with \"spans\"",
            ))
        }
    }
    if st.accepted == 0 && st.rejected > 0 {
        let first = st
            .ctx
            .first_problem()
            .map_or(String::new(), |p| format!(" (the first: {p})"));
        return Err(st.ctx.unreadable(
            Format::JaegerJson,
            format!("no span in the file is valid{first}"),
        ));
    }
    Ok(())
}

/// What the top-level object turned out to be.
enum Top {
    /// `{"data": [...]}`: its traces were converted while they were read.
    Traces,
    /// One trace object, converted once the file has been read.
    Trace(Checked<TraceBody>),
    /// Neither a non-null `data` nor a non-null `spans`.
    Neither,
}

/// Where a trace is.
#[derive(Clone, Copy)]
enum TraceAt {
    /// `data[i]`.
    Data(usize),
    /// The file is one trace object.
    Single,
}

impl fmt::Display for TraceAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TraceAt::Data(i) => write!(f, "data[{i}]"),
            TraceAt::Single => f.write_str("trace"),
        }
    }
}

/// The reading state shared by the streaming pass.
struct State<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    /// Spans of this file pushed.
    accepted: usize,
    /// Bad records of this file (traces or spans).
    rejected: usize,
    /// An error that stopped the parse (a bad record in strict mode, or the consumer's), carried
    /// out past serde, which only knows its own error type.
    fatal: Option<IngestError>,
}

impl State<'_, '_> {
    /// Converts and pushes the spans of one trace; a bad trace or span is skipped via `ctx.bad`.
    fn trace(&mut self, at: TraceAt, trace: Checked<TraceBody>) -> Result<(), IngestError> {
        let TraceBody {
            spans, processes, ..
        } = match trace {
            Ok(t) => t,
            Err(p) => return self.bad(at.to_string(), format!("not a Jaeger trace: {p}")),
        };
        for (j, js) in spans.into_iter().enumerate() {
            let span = js
                .map_err(|p| format!("not a Jaeger span: {p}"))
                .and_then(|js| convert(js, &processes, self.ctx));
            match span {
                Ok((s, link)) => {
                    self.ctx.push(s);
                    if let Some((t, l)) = link {
                        self.ctx.batch.link_last(t, l);
                    }
                    self.accepted += 1;
                    self.ctx.maybe_flush()?;
                }
                Err(reason) => self.bad(format!("{at}.spans[{j}]"), reason)?,
            }
        }
        Ok(())
    }

    /// Counts a bad record: an error in strict mode, else skipped.
    fn bad(&mut self, location: String, reason: String) -> Result<(), IngestError> {
        self.rejected += 1;
        self.ctx.bad(location, reason)
    }

    /// Hands an error of `done` out through serde (see `fatal`).
    fn carry<E: de::Error>(&mut self, done: Result<(), IngestError>) -> Result<(), E> {
        done.map_err(|e| {
            self.fatal = Some(e);
            E::custom("stopped by an error of the read")
        })
    }
}

// Streaming: the top-level object and the `data` array.

struct TopVisitor<'s, 'a, 'c> {
    st: &'s mut State<'a, 'c>,
}

impl<'de> Visitor<'de> for TopVisitor<'_, '_, '_> {
    type Value = Top;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a Jaeger JSON object ({\"data\": [traces]} or one trace)")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
        // `Some(true)` once a `data` array was read (a null `data` is as if absent).
        let mut data: Option<bool> = None;
        let mut single = TraceBody::default();
        while let Some(key) = map.next_key_seed(Known(TRACE_FIELDS))? {
            match key {
                Some("data") if data.is_some() => return Err(de::Error::duplicate_field("data")),
                Some("data") => data = Some(map.next_value_seed(Data { st: &mut *self.st })?),
                // Beside `data`, a top-level trace is not read (as before).
                _ if data == Some(true) => {
                    map.next_value::<IgnoredAny>()?;
                }
                key => single.field(key, &mut map, true)?,
            }
        }
        Ok(if data == Some(true) {
            Top::Traces
        } else if single.has_spans {
            Top::Trace(single.checked())
        } else {
            Top::Neither
        })
    }
}

/// The value of the top-level `data` key: its traces are converted one by one as they are read.
struct Data<'s, 'a, 'c> {
    st: &'s mut State<'a, 'c>,
}

impl<'de> DeserializeSeed<'de> for Data<'_, '_, '_> {
    /// Whether `data` is an array (null: as if absent).
    type Value = bool;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for Data<'_, '_, '_> {
    type Value = bool;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an array of Jaeger traces")
    }
    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<bool, A::Error> {
        let mut i = 0;
        while let Some(trace) = seq.next_element_seed(Any(Elem::<TraceBody>::default()))? {
            let done = self.st.trace(TraceAt::Data(i), trace);
            self.st.carry(done)?;
            i += 1;
        }
        Ok(true)
    }
}

// The records: a trace, its spans, their references, tags and processes. Every field is taken
// whatever its JSON type and the first unusable one is reported, so that a bad record is skipped
// without stopping the parse.

/// The fields of a trace object that are read (`data` only at the top level).
const TRACE_FIELDS: &[&str] = &["data", "spans", "processes"];

/// A trace object as read.
#[derive(Default)]
struct TraceBody {
    /// Each span as read, checked.
    spans: Vec<Checked<JSpan>>,
    processes: HashMap<String, Process>,
    /// Why the object is not a usable trace (the first reason).
    problem: Option<String>,
    /// A non-null `spans` was seen.
    has_spans: bool,
    /// A non-null `processes` was seen.
    has_processes: bool,
}

impl TraceBody {
    /// Reads the value of the field `key` of a trace object. At the top level (`top`) a null
    /// `spans` or `processes` is as if absent; in a trace of `data` it is a bad trace (as before).
    fn field<'de, A: MapAccess<'de>>(
        &mut self,
        key: Option<&str>,
        map: &mut A,
        top: bool,
    ) -> Result<(), A::Error> {
        let checked = match key {
            Some("spans") => match next::<Array<Elem<JSpan>>, _>(map)? {
                Err(Leaf::Null) if top => Ok(()),
                _ if self.has_spans => Err("duplicate field spans".into()),
                Ok(spans) => {
                    self.spans = spans;
                    self.has_spans = true;
                    Ok(())
                }
                Err(v) => {
                    self.has_spans = true;
                    Err(format!("spans is {}, not an array", v.what()))
                }
            },
            Some("processes") => match object("processes", next::<Object<Processes>, _>(map)?) {
                Ok(None) if top => Ok(()),
                _ if self.has_processes => Err("duplicate field processes".into()),
                Ok(Some(Processes(p))) => {
                    self.processes = p;
                    self.has_processes = true;
                    Ok(())
                }
                Ok(None) => Err("processes is null, not an object".into()),
                Err(p) => Err(p),
            },
            _ => {
                map.next_value::<IgnoredAny>()?;
                Ok(())
            }
        };
        if let Err(p) = checked {
            self.problem.get_or_insert(p);
        }
        Ok(())
    }

    fn checked(mut self) -> Checked<Self> {
        match self.problem.take() {
            None => Ok(self),
            Some(p) => Err(p),
        }
    }
}

impl MapBody for TraceBody {
    const WHAT: &'static str = "a trace object";
    fn read<'de, A: MapAccess<'de>>(mut map: A) -> Result<Checked<Self>, A::Error> {
        let mut t = TraceBody::default();
        while let Some(key) = map.next_key_seed(Known(TRACE_FIELDS))? {
            let key = key.filter(|&k| k != "data");
            t.field(key, &mut map, false)?;
        }
        Ok(t.checked())
    }
}

/// The fields of a span object that are read.
const SPAN_FIELDS: &[&str] = &[
    "traceID",
    "spanID",
    "parentSpanID",
    "operationName",
    "references",
    "startTime",
    "duration",
    "tags",
    "processID",
    "process",
];

/// A span object as read.
#[derive(Default)]
struct JSpan {
    trace_id: Option<String>,
    span_id: Option<String>,
    parent_span_id: Option<String>,
    operation_name: Option<String>,
    references: Vec<Reference>,
    start_time: Option<u64>,
    duration: Option<u64>,
    /// What the tags say, folded as they are read.
    tags: Tags,
    process_id: Option<String>,
    process: Option<Process>,
}

impl MapBody for JSpan {
    const WHAT: &'static str = "a span object";
    fn read<'de, A: MapAccess<'de>>(mut map: A) -> Result<Checked<Self>, A::Error> {
        let mut s = JSpan::default();
        let mut problem: Option<String> = None;
        while let Some(key) = map.next_key_seed(Known(SPAN_FIELDS))? {
            let checked = match key {
                Some(k @ "traceID") => leaf(&mut map)?.string(k).map(|v| s.trace_id = v),
                Some(k @ "spanID") => leaf(&mut map)?.string(k).map(|v| s.span_id = v),
                Some(k @ "parentSpanID") => leaf(&mut map)?.string(k).map(|v| s.parent_span_id = v),
                Some(k @ "operationName") => {
                    leaf(&mut map)?.string(k).map(|v| s.operation_name = v)
                }
                Some(k @ "references") => list(k, next::<Array<Elem<Reference>>, _>(&mut map)?)
                    .map(|v| s.references = v.unwrap_or_default()),
                Some(k @ "startTime") => leaf(&mut map)?.integer(k).map(|v| s.start_time = v),
                Some(k @ "duration") => leaf(&mut map)?.integer(k).map(|v| s.duration = v),
                Some(k @ "tags") => list(k, next::<Array<Elem<Tag>>, _>(&mut map)?)
                    .map(|v| s.tags = Tags::of(v.unwrap_or_default())),
                Some(k @ "processID") => leaf(&mut map)?.string(k).map(|v| s.process_id = v),
                Some(k @ "process") => {
                    object(k, next::<Object<Process>, _>(&mut map)?).map(|v| s.process = v)
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    Ok(())
                }
            };
            if let Err(p) = checked {
                problem.get_or_insert(p);
            }
        }
        Ok(match problem {
            None => Ok(s),
            Some(p) => Err(p),
        })
    }
}

/// A span's reference to another span.
#[derive(Default)]
struct Reference {
    ref_type: Option<String>,
    trace_id: Option<String>,
    span_id: Option<String>,
}

impl MapBody for Reference {
    const WHAT: &'static str = "a reference object";
    fn read<'de, A: MapAccess<'de>>(mut map: A) -> Result<Checked<Self>, A::Error> {
        let mut r = Reference::default();
        let mut problem: Option<String> = None;
        while let Some(key) = map.next_key_seed(Known(&["refType", "traceID", "spanID"]))? {
            let checked = match key {
                Some(k @ "refType") => leaf(&mut map)?.string(k).map(|v| r.ref_type = v),
                Some(k @ "traceID") => leaf(&mut map)?.string(k).map(|v| r.trace_id = v),
                Some(k @ "spanID") => leaf(&mut map)?.string(k).map(|v| r.span_id = v),
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    Ok(())
                }
            };
            if let Err(p) = checked {
                problem.get_or_insert(p);
            }
        }
        Ok(match problem {
            None => Ok(r),
            Some(p) => Err(p),
        })
    }
}

/// One tag, `{"key": ..., "type": ..., "value": ...}` (the type is not needed).
#[derive(Default)]
struct Tag {
    key: Option<String>,
    value: Leaf,
}

impl MapBody for Tag {
    const WHAT: &'static str = "a tag object";
    fn read<'de, A: MapAccess<'de>>(mut map: A) -> Result<Checked<Self>, A::Error> {
        let mut t = Tag::default();
        let mut problem: Option<String> = None;
        while let Some(key) = map.next_key_seed(Known(&["key", "value"]))? {
            match key {
                Some(k @ "key") => match leaf(&mut map)?.string(k) {
                    Ok(v) => t.key = v,
                    Err(p) => {
                        problem.get_or_insert(p);
                    }
                },
                Some("value") => t.value = leaf(&mut map)?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(match problem {
            None if t.key.is_none() => Err("missing key".into()),
            None => Ok(t),
            Some(p) => Err(p),
        })
    }
}

/// What augur keeps of a span's tags.
#[derive(Default)]
struct Tags {
    /// The last `span.kind` tag's (one that names no kind gives none).
    kind: SpanKind,
    /// An `error` tag that is true, or `otel.status_code` = `ERROR`.
    error: bool,
    attrs: Attrs<'static>,
}

impl Tags {
    /// Folds the tags, in order.
    fn of(tags: Vec<Tag>) -> Tags {
        let mut out = Tags::default();
        for Tag { key, value } in tags {
            let Some(key) = key else { continue };
            match (key.as_str(), value) {
                ("span.kind", Leaf::Str(k)) => {
                    out.kind = SpanKind::from_name(&k).unwrap_or(SpanKind::Unspecified)
                }
                ("span.kind", Leaf::Bool(_) | Leaf::U64(_) | Leaf::OtherNumber) => {
                    out.kind = SpanKind::Unspecified
                }
                ("error", Leaf::Bool(b)) => out.error |= b,
                ("error", Leaf::Str(v)) => out.error |= v == "true",
                ("otel.status_code", Leaf::Str(v)) => out.error |= v.eq_ignore_ascii_case("error"),
                ("error" | "otel.status_code", _) => {}
                (key, Leaf::Str(v)) => out.attrs.offer(key, v.into()),
                _ => {}
            }
        }
        out
    }
}

/// A process: the service of the spans that name it.
#[derive(Default)]
struct Process {
    service_name: Option<String>,
}

impl MapBody for Process {
    const WHAT: &'static str = "a process object";
    fn read<'de, A: MapAccess<'de>>(mut map: A) -> Result<Checked<Self>, A::Error> {
        let mut p = Process::default();
        let mut problem: Option<String> = None;
        while let Some(key) = map.next_key_seed(Known(&["serviceName"]))? {
            if let Some(k) = key {
                match leaf(&mut map)?.string(k) {
                    Ok(v) => p.service_name = v,
                    Err(e) => {
                        problem.get_or_insert(e);
                    }
                }
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(match problem {
            None => Ok(p),
            Some(e) => Err(e),
        })
    }
}

/// A trace's `processes`: its processes by id.
#[derive(Default)]
struct Processes(HashMap<String, Process>);

impl MapBody for Processes {
    const WHAT: &'static str = "an object of processes";
    fn read<'de, A: MapAccess<'de>>(mut map: A) -> Result<Checked<Self>, A::Error> {
        let mut out = HashMap::new();
        let mut problem: Option<String> = None;
        while let Some(id) = map.next_key::<String>()? {
            match next::<Elem<Process>, _>(&mut map)? {
                Ok(p) => {
                    out.insert(id, p);
                }
                Err(p) => {
                    problem.get_or_insert_with(|| format!("{id:?}: {p}"));
                }
            }
        }
        Ok(match problem {
            None => Ok(Processes(out)),
            Some(p) => Err(p),
        })
    }
}

// Conversion.

/// The span, and its first reference to a span of another trace (its link).
type Converted = (Span, Option<([u8; 16], [u8; 8])>);

fn convert(
    js: JSpan,
    processes: &HashMap<String, Process>,
    ctx: &mut Ctx<'_>,
) -> Result<Converted, String> {
    let tid = js.trace_id.ok_or("missing traceID")?;
    let trace_id: [u8; 16] =
        parse_hex_id(&tid, true).ok_or_else(|| format!("bad traceID {tid:?}"))?;
    let sid = js.span_id.ok_or("missing spanID")?;
    let span_id: [u8; 8] = parse_hex_id(&sid, true).ok_or_else(|| format!("bad spanID {sid:?}"))?;
    let mut parent = None;
    for wanted in ["CHILD_OF", "FOLLOWS_FROM"] {
        if parent.is_some() {
            break;
        }
        for r in &js.references {
            if r.ref_type.as_deref().unwrap_or("CHILD_OF") != wanted {
                continue;
            }
            let same_trace = r
                .trace_id
                .as_deref()
                .and_then(|t| parse_hex_id::<16>(t, true))
                .is_none_or(|t| t == trace_id);
            if !same_trace {
                continue;
            }
            if let Some(p) = r
                .span_id
                .as_deref()
                .and_then(|p| parse_hex_id::<8>(p, true))
            {
                parent = Some(p);
                break;
            }
        }
    }
    let link = js.references.iter().find_map(|r| {
        let t = parse_hex_id::<16>(r.trace_id.as_deref()?, true)?;
        let s = parse_hex_id::<8>(r.span_id.as_deref()?, true)?;
        (t != trace_id && t != [0; 16] && s != [0; 8]).then_some((t, s))
    });
    if parent.is_none() {
        if let Some(p) = js.parent_span_id.as_deref().filter(|p| !p.is_empty()) {
            let p: [u8; 8] =
                parse_hex_id(p, true).ok_or_else(|| format!("bad parentSpanID {p:?}"))?;
            parent = (p != [0; 8]).then_some(p);
        }
    }
    let ts = js.start_time.ok_or("missing startTime")?;
    let start_ns = i64::try_from(ts)
        .ok()
        .and_then(|t| t.checked_mul(1000))
        .ok_or("startTime out of range")?;
    let dur = i64::try_from(js.duration.unwrap_or(0))
        .ok()
        .and_then(|d| d.checked_mul(1000))
        .ok_or("duration out of range")?;
    let Tags { kind, error, attrs } = js.tags;
    let service = js
        .process
        .as_ref()
        .or_else(|| js.process_id.as_ref().and_then(|p| processes.get(p)))
        .and_then(|p| p.service_name.as_deref())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown_service");
    let strings = &mut ctx.batch.strings;
    let service = strings.intern(service);
    let name = strings.intern(js.operation_name.as_deref().unwrap_or(""));
    let mut opt = |v: Option<std::borrow::Cow<'_, str>>| v.map(|v| strings.intern(&v));
    let span = Span {
        trace_id,
        span_id,
        parent_span_id: parent,
        service,
        name,
        kind,
        start_ns,
        end_ns: start_ns.saturating_add(dur),
        status: if error {
            StatusCode::Error
        } else {
            StatusCode::Unset
        },
        peer: opt(attrs.peer.map(|(_, v)| v)),
        peer_kind: attrs.peer_kind,
        http_route: opt(attrs.http_route),
        rpc_method: opt(attrs.rpc_method),
        error_type: opt(attrs.error_type),
        experiment: opt(attrs.experiment),
    };
    Ok((span, link))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::ReadOptions;
    use crate::report::IngestReport;
    use crate::span::{OwnedSpan, SpanBatch};
    use std::path::Path;

    /// What a read gave: its result, the batches the sink saw (in order), and the report.
    struct Read {
        res: Result<(), IngestError>,
        batches: Vec<Vec<OwnedSpan>>,
        report: IngestReport,
    }

    impl Read {
        fn spans(&self) -> Vec<&OwnedSpan> {
            self.batches.iter().flatten().collect()
        }

        fn problems(&self) -> Vec<(&str, &str)> {
            let p = &self.report.problems;
            p.iter()
                .map(|p| (p.location.as_str(), p.reason.as_str()))
                .collect()
        }
    }

    /// Reads `input` as a whole file would be: the spans left in the batch are flushed at the end.
    fn read_with(input: &mut dyn BufRead, strict: bool, batch_size: usize) -> Read {
        let opts = ReadOptions { strict, batch_size };
        let mut report = IngestReport::default();
        let mut batches = Vec::new();
        let mut sink = |b: SpanBatch| {
            batches.push(b.to_owned_spans());
            Ok(())
        };
        let mut ctx = Ctx::new(Path::new("j.json"), &opts, &mut report, &mut sink);
        let res = read(input, &mut ctx).and_then(|()| ctx.flush());
        Read {
            res,
            batches,
            report,
        }
    }

    fn read_text(text: &str, strict: bool) -> Read {
        read_with(&mut text.as_bytes(), strict, 1 << 16)
    }

    /// A span object of trace `t` (hex, 32 digits) with id `id`; `extra` is spliced in (starting
    /// with a comma) when not empty.
    fn span(t: &str, id: &str, process: &str, extra: &str) -> String {
        format!(
            r#"{{"traceID":"{t}","spanID":"{id}","operationName":"op{id}","startTime":1000,"duration":10,"processID":"{process}"{extra}}}"#
        )
    }

    /// A trace object holding `spans`, with processes `p1` (service `a`) and `p2` (service `b`).
    fn trace(t: &str, spans: &[String]) -> String {
        format!(
            r#"{{"traceID":"{t}","spans":[{}],"processes":{{"p1":{{"serviceName":"a","tags":[]}},"p2":{{"serviceName":"b"}}}},"warnings":null}}"#,
            spans.join(",")
        )
    }

    const T1: &str = "00000000000000000000000000000001";
    const T2: &str = "00000000000000000000000000000002";
    const T3: &str = "00000000000000000000000000000003";

    /// Three traces of two spans; the second span of trace 2 has a fractional startTime.
    fn three_traces() -> String {
        let child = |t: &str, parent: &str, id: &str, extra: &str| {
            let r = format!(
                r#","references":[{{"refType":"CHILD_OF","traceID":"{t}","spanID":"{parent}"}}]{extra}"#
            );
            span(t, id, "p2", &r)
        };
        let t1 = trace(
            T1,
            &[
                span(T1, "0000000000000001", "p1", ""),
                child(T1, "0000000000000001", "0000000000000002", ""),
            ],
        );
        let t2 = trace(
            T2,
            &[
                span(T2, "0000000000000003", "p1", ""),
                child(
                    T2,
                    "0000000000000003",
                    "0000000000000004",
                    r#","startTime":1.5"#,
                ),
            ],
        );
        let t3 = trace(
            T3,
            &[
                span(T3, "0000000000000005", "p1", ""),
                child(T3, "0000000000000005", "0000000000000006", ""),
            ],
        );
        format!(r#"{{"data":[{t1},{t2},{t3}],"total":0,"limit":0,"offset":0,"errors":null}}"#)
    }

    #[test]
    fn a_bad_span_of_one_trace_is_skipped_and_located() {
        let r = read_text(&three_traces(), false);
        assert!(r.res.is_ok(), "{:?}", r.res);
        let spans = r.spans();
        let ids: Vec<u8> = spans.iter().map(|s| s.span_id[7]).collect();
        assert_eq!(ids, [1, 2, 3, 5, 6]);
        assert_eq!(spans[0].service, "a");
        assert_eq!(spans[1].service, "b");
        assert_eq!(spans[1].parent_span_id, Some(spans[0].span_id));
        assert_eq!(spans[4].parent_span_id, Some(spans[3].span_id));
        assert_eq!((spans[0].start_ns, spans[0].end_ns), (1_000_000, 1_010_000));
        assert_eq!(r.report.rejected, 1);
        let problems = r.problems();
        assert_eq!(problems[0].0, "data[1].spans[1]");
        assert!(
            problems[0]
                .1
                .contains("not a Jaeger span: startTime is negative, fractional"),
            "{problems:?}"
        );
    }

    #[test]
    fn strict_mode_makes_the_bad_span_an_error() {
        let r = read_text(&three_traces(), true);
        match r.res {
            Err(IngestError::BadRecord { location, .. }) => {
                assert_eq!(location, "data[1].spans[1]")
            }
            other => panic!("expected a bad record, got {other:?}"),
        }
    }

    #[test]
    fn bad_traces_and_spans_of_every_kind_are_located() {
        let good = span(T1, "0000000000000001", "p1", "");
        let spans = [
            good.clone(),
            "7".to_string(),
            span(
                T1,
                "0000000000000002",
                "p1",
                r#","tags":[{"key":"a","value":"x"},{"value":1}]"#,
            ),
            span(
                T1,
                "0000000000000003",
                "p1",
                r#","references":[{"spanID":5}]"#,
            ),
            span(T1, "0000000000000004", "p1", r#","process":"x""#),
            r#"{"spanID":"0000000000000005","startTime":1}"#.to_string(),
            span(T1, "zz", "p1", ""),
        ];
        let bad_processes = trace(T2, std::slice::from_ref(&good))
            .replace(r#""serviceName":"b""#, r#""serviceName":3"#);
        let text = format!(
            r#"{{"data":[{}, 5, {bad_processes}, {{"spans":null}}, {{"spans":[{good}],"processes":[]}}]}}"#,
            trace(T1, &spans)
        );
        let r = read_text(&text, false);
        assert!(r.res.is_ok(), "{:?}", r.res);
        assert_eq!(r.spans().len(), 1);
        let problems = r.problems();
        let want = [
            (
                "data[0].spans[1]",
                "not a Jaeger span: found a number, expected a span object",
            ),
            (
                "data[0].spans[2]",
                "not a Jaeger span: tags[1]: missing key",
            ),
            (
                "data[0].spans[3]",
                "not a Jaeger span: references[0]: spanID is a number, not a string",
            ),
            (
                "data[0].spans[4]",
                "not a Jaeger span: process is a string, not an object",
            ),
            ("data[0].spans[5]", "missing traceID"),
            ("data[0].spans[6]", "bad spanID \"zz\""),
            (
                "data[1]",
                "not a Jaeger trace: found a number, expected a trace object",
            ),
            (
                "data[2]",
                "not a Jaeger trace: processes: \"p2\": serviceName is a number, not a string",
            ),
            ("data[3]", "not a Jaeger trace: spans is null, not an array"),
            (
                "data[4]",
                "not a Jaeger trace: processes is an array, not an object",
            ),
        ];
        assert_eq!(problems, want);
    }

    #[test]
    fn tags_and_references_give_kind_status_peer_and_parent() {
        let tags = r#","tags":[{"key":"span.kind","type":"string","value":"client"},{"key":"otel.status_code","value":"ERROR"},{"key":"net.peer.name","value":"db.local"},{"key":"peer.service","value":"db"},{"key":"http.route","value":"/r"}]"#;
        let other = "000000000000000000000000000000ff";
        // CHILD_OF another trace is skipped; FOLLOWS_FROM is the fallback.
        let refs = format!(
            r#","references":[{{"refType":"CHILD_OF","traceID":"{other}","spanID":"00000000000000ff"}},{{"refType":"FOLLOWS_FROM","traceID":"{T1}","spanID":"0000000000000001"}}]"#
        );
        let spans = [
            span(T1, "0000000000000001", "p1", tags),
            span(T1, "0000000000000002", "p1", &refs),
            span(
                T1,
                "0000000000000003",
                "p9",
                r#","parentSpanID":"0000000000000002","tags":[{"key":"error","type":"bool","value":true},{"key":"span.kind","value":"server"},{"key":"span.kind","value":5}]"#,
            ),
            span(
                T1,
                "0000000000000004",
                "p1",
                r#","parentSpanID":"0000000000000000","process":{"serviceName":"inline"}"#,
            ),
        ];
        let r = read_text(&trace(T1, &spans), false);
        assert!(r.res.is_ok(), "{:?}", r.res);
        let s = r.spans();
        assert_eq!(s[0].span_kind(), SpanKind::Client);
        assert_eq!(s[0].status_code(), StatusCode::Error);
        assert_eq!(s[0].peer.as_deref(), Some("db"));
        assert_eq!(s[0].http_route.as_deref(), Some("/r"));
        assert_eq!(s[1].parent_span_id, Some(s[0].span_id));
        assert_eq!(s[1].status_code(), StatusCode::Unset);
        assert_eq!(s[2].parent_span_id, Some(s[1].span_id));
        assert_eq!(s[2].status_code(), StatusCode::Error);
        // A kind tag that names no kind gives none (the last one counts).
        assert_eq!(s[2].span_kind(), SpanKind::Unspecified);
        assert_eq!(s[2].service, "unknown_service");
        assert_eq!(s[3].parent_span_id, None);
        assert_eq!(s[3].service, "inline");
    }

    #[test]
    fn single_trace_with_processes_after_spans() {
        let spans = [
            span(T1, "0000000000000001", "p1", ""),
            span(
                T1,
                "0000000000000002",
                "p2",
                r#","parentSpanID":"0000000000000001""#,
            ),
        ];
        let text = format!(
            r#"{{"spans":[{}],"traceID":"{T1}","processes":{{"p1":{{"serviceName":"a"}},"p2":{{"serviceName":"b"}}}}}}"#,
            spans.join(",")
        );
        let r = read_text(&text, false);
        assert!(r.res.is_ok(), "{:?}", r.res);
        let services: Vec<&str> = r.spans().iter().map(|s| s.service.as_str()).collect();
        assert_eq!(services, ["a", "b"]);

        // A bad span of a single trace is located in `trace`.
        let r = read_text(
            &text.replace(
                r#""startTime":1000,"duration":10,"processID":"p2""#,
                r#""processID":"p2""#,
            ),
            false,
        );
        assert!(r.res.is_ok(), "{:?}", r.res);
        assert_eq!(r.problems(), [("trace.spans[1]", "missing startTime")]);
    }

    #[test]
    fn whole_file_errors() {
        let text = three_traces();
        let truncated = &text[..text.len() - 60];
        let bad_only = trace(T1, &[span(T1, "zz", "p1", "")]);
        for (input, says) in [
            (truncated, "truncated JSON"),
            (r#"{"data": [}"#, "invalid JSON"),
            (
                r#"{"data": {}}"#,
                "not Jaeger JSON: invalid type: map, expected an array of Jaeger traces",
            ),
            (
                r#"[{"data": []}]"#,
                "not Jaeger JSON: invalid type: sequence",
            ),
            (r#"{"data": [], "data": []}"#, "duplicate field `data`"),
            (r#"{"data": []} x"#, "invalid JSON"),
            (r#"{"total": 0, "spans": null}"#, "neither"),
            (bad_only.as_str(), "no span in the file is valid"),
            (r#"{"spans": 5}"#, "no span in the file is valid"),
        ] {
            let r = read_text(input, false);
            match r.res {
                Err(IngestError::Unreadable { reason, .. }) => {
                    assert!(reason.contains(says), "{input}: {reason}")
                }
                other => panic!("{input}: expected unreadable, got {other:?}"),
            }
        }
        let r = read_text(truncated, false);
        let Err(IngestError::Unreadable { reason, .. }) = r.res else {
            panic!("truncated JSON must be unreadable");
        };
        assert!(reason.contains("line 1 column"), "{reason}");
        // No span and no bad record is not an error.
        for empty in [r#"{"data": []}"#, r#"{"data": [{"traceID": "1"}]}"#] {
            let r = read_text(empty, false);
            assert!(
                r.res.is_ok() && r.spans().is_empty(),
                "{empty}: {:?}",
                r.res
            );
        }
    }

    #[test]
    fn data_wins_over_a_top_level_trace() {
        let a = trace(T1, &[span(T1, "0000000000000001", "p1", "")]);
        let b = span(T2, "0000000000000002", "p1", "");
        for text in [
            format!(r#"{{"spans":[{b}],"data":[{a}]}}"#),
            format!(r#"{{"data":[{a}],"spans":[{b}]}}"#),
        ] {
            let r = read_text(&text, false);
            assert!(r.res.is_ok(), "{:?}", r.res);
            let ids: Vec<u8> = r.spans().iter().map(|s| s.span_id[7]).collect();
            assert_eq!(ids, [1], "{text}");
        }
    }

    /// Traces are converted and handed on while the file is read: with a batch of one span, the
    /// sink sees each trace before the next is read, even when a later one is truncated.
    #[test]
    fn streams_trace_by_trace() {
        let one = |t: &str, id: &str| trace(t, &[span(t, id, "p1", "")]);
        let traces = [
            one(T1, "0000000000000001"),
            one(T2, "0000000000000002"),
            one(T3, "0000000000000003"),
        ];
        let whole = format!(r#"{{"data":[{}]}}"#, traces.join(","));
        let r = read_with(&mut whole.as_bytes(), false, 1);
        assert!(r.res.is_ok(), "{:?}", r.res);
        assert_eq!(r.batches.len(), 3);

        let cut = format!(r#"{{"data":[{},{},{{"traceID":"#, traces[0], traces[1]);
        let r = read_with(&mut cut.as_bytes(), false, 1);
        assert!(
            matches!(&r.res, Err(IngestError::Unreadable { reason, .. }) if reason.contains("truncated")),
            "{:?}",
            r.res
        );
        let ids: Vec<Vec<u8>> = r
            .batches
            .iter()
            .map(|b| b.iter().map(|s| s.span_id[7]).collect())
            .collect();
        assert_eq!(
            ids,
            [[1], [2]],
            "both traces before the cut reached the sink"
        );
    }

    /// The Jaeger UI's fixture: five spans, span 4's first CHILD_OF points to another trace.
    #[test]
    fn jaeger_ui_fixture() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/formats/jaeger-ui_01.json");
        let Ok(file) = std::fs::File::open(&path) else {
            eprintln!("skipped: {} is absent", path.display());
            return;
        };
        let r = read_with(&mut std::io::BufReader::new(file), true, 1 << 16);
        assert!(r.res.is_ok(), "{:?}", r.res);
        let spans = r.spans();
        assert_eq!(spans.len(), 5);
        let services: Vec<&str> = spans.iter().map(|s| s.service.as_str()).collect();
        assert_eq!(
            services,
            [
                "service-x",
                "service-x",
                "service-y",
                "service-y",
                "service-y"
            ]
        );
        let parent_of = |i: usize| spans[i].parent_span_id.map(|p| p[7]);
        assert_eq!(
            (parent_of(0), parent_of(2), parent_of(3), parent_of(4)),
            (None, Some(2), Some(2), Some(4))
        );
        assert_eq!(spans[1].status_code(), StatusCode::Error);
        assert_eq!(spans[1].peer.as_deref(), Some("service-y"));
    }
}
