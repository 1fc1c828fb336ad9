//! A zero-copy decoder of OTLP's `ExportTraceServiceRequest` protobuf wire format.
//!
//! prost's generated types allocate a `Vec` or `String` for every id, name and attribute; this
//! decoder walks the bytes instead and hands out slices of them ([`WireRequest`]), in two vectors
//! a stream reuses from message to message. It accepts exactly the messages prost accepts (same schema, same checks:
//! varint overflow, lengths within bounds, wire type of every known field, UTF-8 of every string,
//! prost's nesting limit, unknown fields skipped by wire type, groups included, as prost does)
//! and, for a message it accepts, gives the values prost's decoded message holds, including
//! protobuf's merge rules: a scalar field given twice keeps its last value, a singular message given
//! twice is merged, a `oneof` keeps the member set last. Field order does not matter: the
//! resource of a `ResourceSpans` may follow its spans. One deliberate difference: an attribute's
//! key or string value that is not UTF-8 reads as U+FFFD, where prost refuses the whole request
//! (every span of a batch lost to one bad byte in one attribute an SDK passed through unchecked).
//!
//! It only reads the bytes: turning a [`WireSpan`] into a [`crate::Span`] (id checks, interning)
//! is `otlp_proto`'s job, shared with the prost path.

use std::borrow::Cow;
use std::fmt;

use crate::otlp_json::Attrs;

/// prost's nesting limit (`prost::RECURSION_LIMIT`), kept so both accept the same messages.
const RECURSION_LIMIT: u32 = 100;

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const SGROUP: u8 = 3;
const EGROUP: u8 = 4;
const I32: u8 = 5;

/// Why a message does not decode, and in which field (`Span.name`) when known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WireError {
    reason: &'static str,
    field: Option<(&'static str, &'static str)>,
}

impl WireError {
    fn new(reason: &'static str) -> Self {
        WireError {
            reason,
            field: None,
        }
    }

    /// Names the innermost field the error happened in (outer fields do not overwrite it).
    fn within(mut self, message: &'static str, field: &'static str) -> Self {
        if self.field.is_none() {
            self.field = Some((message, field));
        }
        self
    }
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.field {
            Some((message, field)) => write!(f, "{message}.{field}: {}", self.reason),
            None => f.write_str(self.reason),
        }
    }
}

type Result<T> = std::result::Result<T, WireError>;

/// One span as it lies in the message: borrowed, not yet validated.
#[derive(Default)]
pub(crate) struct WireSpan<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// The status code; 0 (unset) when the span has no status.
    pub status_code: i32,
    /// The string attributes augur keeps, offered in order.
    pub attrs: Attrs<'a>,
    /// The first link's (trace_id, span_id) bytes.
    pub link: Option<(&'a [u8], &'a [u8])>,
}

/// A span with its place in the request (`resourceSpans[r].scopeSpans[scope].spans[index]`).
pub(crate) struct Located<'a> {
    pub scope: u32,
    pub index: u32,
    pub span: WireSpan<'a>,
}

/// One `ResourceSpans`: its resource's service and experiment, and its spans.
pub(crate) struct WireResource<'a> {
    /// The last string-valued `service.name` resource attribute.
    pub service: Option<&'a str>,
    /// The last string-valued [`crate::EXPERIMENT_ATTRIBUTE`] resource attribute.
    pub experiment: Option<&'a str>,
    /// Its spans, as a range of [`WireRequest::spans`].
    pub spans: std::ops::Range<usize>,
}

/// A decoded request: every `ResourceSpans` in order, their spans in one vector.
#[derive(Default)]
pub(crate) struct WireRequest<'a> {
    pub resources: Vec<WireResource<'a>>,
    pub spans: Vec<Located<'a>>,
    memo: Memo<'a>,
}

/// Strings already checked for UTF-8 in this message, by a hash of a few of their bytes: names,
/// keys and values repeat, and comparing with one seen before is cheaper than checking again (an
/// equal slice elsewhere in the message is the same string).
struct Memo<'a> {
    slots: [&'a str; MEMO_SLOTS],
}

const MEMO_SLOTS: usize = 256;

impl Default for Memo<'_> {
    fn default() -> Self {
        Memo {
            slots: [""; MEMO_SLOTS],
        }
    }
}

/// What an attribute string that is not UTF-8 reads as.
const REPLACEMENT: &str = "\u{FFFD}";

impl<'a> Memo<'a> {
    /// `b` as a string, if it is UTF-8.
    #[inline]
    fn str(&mut self, b: &'a [u8]) -> Result<&'a str> {
        let n = b.len();
        let byte = |i: usize| usize::from(b.get(i).copied().unwrap_or(0));
        let h =
            n.wrapping_mul(0x9e37) ^ byte(0) ^ (byte(n / 2) << 3) ^ (byte(n.wrapping_sub(1)) << 5);
        let h = (h ^ (h >> 8)) % MEMO_SLOTS;
        if let Some(slot) = self.slots.get_mut(h) {
            if slot.as_bytes() == b {
                return Ok(slot);
            }
            let s =
                std::str::from_utf8(b).map_err(|_| WireError::new("invalid UTF-8 in a string"))?;
            *slot = s;
            return Ok(s);
        }
        std::str::from_utf8(b).map_err(|_| WireError::new("invalid UTF-8 in a string"))
    }
}

impl<'a> WireRequest<'a> {
    /// Decodes a whole message, in the vectors of `spare` (see [`WireRequest::recycle`]).
    pub fn decode(buf: &'a [u8], spare: WireRequest<'static>) -> Result<Self> {
        let mut req: WireRequest<'a> = spare;
        req.resources.clear();
        req.spans.clear();
        req.memo = Memo::default();
        let depth = RECURSION_LIMIT;
        let mut c = Cursor::new(buf);
        while let Some((tag, wt)) = c.next_key()? {
            match tag {
                1 => {
                    let body = c.message(wt, depth)?;
                    req.resource_spans(body, depth - 1)
                        .map_err(|e| e.within("ExportTraceServiceRequest", "resource_spans"))?;
                }
                _ => c.skip(wt, tag, depth)?,
            }
        }
        Ok(req)
    }

    /// Empties the request, keeping its vectors' memory for the next message (a stream's
    /// messages are decoded one after another into the same memory).
    pub fn recycle(self) -> WireRequest<'static> {
        WireRequest {
            resources: reuse(self.resources),
            spans: reuse(self.spans),
            memo: Memo::default(),
        }
    }

    fn resource_spans(&mut self, buf: &'a [u8], depth: u32) -> Result<()> {
        let first = self.spans.len();
        let mut service = None;
        let mut experiment = None;
        let mut scope = 0u32;
        let mut c = Cursor::new(buf);
        while let Some((tag, wt)) = c.next_key()? {
            let at = |f| move |e: WireError| e.within("ResourceSpans", f);
            match tag {
                1 => {
                    let body = c.message(wt, depth).map_err(at("resource"))?;
                    resource(
                        body,
                        depth - 1,
                        &mut self.memo,
                        &mut service,
                        &mut experiment,
                    )
                    .map_err(at("resource"))?;
                }
                2 => {
                    let body = c.message(wt, depth).map_err(at("scope_spans"))?;
                    self.scope_spans(body, depth - 1, scope)
                        .map_err(at("scope_spans"))?;
                    scope = scope.wrapping_add(1);
                }
                3 => {
                    c.string(wt, &mut self.memo).map_err(at("schema_url"))?;
                }
                _ => c.skip(wt, tag, depth)?,
            }
        }
        self.resources.push(WireResource {
            service,
            experiment,
            spans: first..self.spans.len(),
        });
        Ok(())
    }

    fn scope_spans(&mut self, buf: &'a [u8], depth: u32, scope: u32) -> Result<()> {
        let mut index = 0u32;
        let mut c = Cursor::new(buf);
        while let Some((tag, wt)) = c.next_key()? {
            let at = |f| move |e: WireError| e.within("ScopeSpans", f);
            match tag {
                1 => {
                    let body = c.message(wt, depth).map_err(at("scope"))?;
                    instrumentation_scope(body, depth - 1, &mut self.memo).map_err(at("scope"))?;
                }
                2 => {
                    let body = c.message(wt, depth).map_err(at("spans"))?;
                    // Decoded in place: a span is a few hundred bytes, not worth moving.
                    self.spans.push(Located {
                        scope,
                        index,
                        span: WireSpan::default(),
                    });
                    if let Some(last) = self.spans.last_mut() {
                        span(body, depth - 1, &mut last.span, &mut self.memo)
                            .map_err(at("spans"))?;
                    }
                    index = index.wrapping_add(1);
                }
                3 => {
                    c.string(wt, &mut self.memo).map_err(at("schema_url"))?;
                }
                _ => c.skip(wt, tag, depth)?,
            }
        }
        Ok(())
    }
}

/// The memory of `v`, emptied, for items of another lifetime (collecting an emptied vector's
/// iterator in place reuses its allocation).
fn reuse<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// `Resource`: keeps the service and experiment attributes (the last string-valued one of each).
fn resource<'a>(
    buf: &'a [u8],
    depth: u32,
    m: &mut Memo<'a>,
    service: &mut Option<&'a str>,
    experiment: &mut Option<&'a str>,
) -> Result<()> {
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        let at = |f| move |e: WireError| e.within("Resource", f);
        match tag {
            1 => {
                let body = c.message(wt, depth).map_err(at("attributes"))?;
                let (key, value) = key_value(body, depth - 1, m).map_err(at("attributes"))?;
                if let Some(v) = value {
                    match key {
                        "service.name" => *service = Some(v),
                        crate::EXPERIMENT_ATTRIBUTE => *experiment = Some(v),
                        _ => {}
                    }
                }
            }
            2 => {
                c.varint_field(wt).map_err(at("dropped_attributes_count"))?;
            }
            3 => {
                let body = c.message(wt, depth).map_err(at("entity_refs"))?;
                entity_ref(body, depth - 1, m).map_err(at("entity_refs"))?;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok(())
}

/// `EntityRef`: checked only.
fn entity_ref<'a>(buf: &'a [u8], depth: u32, m: &mut Memo<'a>) -> Result<()> {
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        match tag {
            1..=4 => {
                c.string(wt, m)
                    .map_err(|e| e.within("EntityRef", "strings"))?;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok(())
}

/// `InstrumentationScope`: checked only.
fn instrumentation_scope<'a>(buf: &'a [u8], depth: u32, m: &mut Memo<'a>) -> Result<()> {
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        let at = |f| move |e: WireError| e.within("InstrumentationScope", f);
        match tag {
            1 => {
                c.string(wt, m).map_err(at("name"))?;
            }
            2 => {
                c.string(wt, m).map_err(at("version"))?;
            }
            3 => {
                let body = c.message(wt, depth).map_err(at("attributes"))?;
                key_value(body, depth - 1, m).map_err(at("attributes"))?;
            }
            4 => {
                c.varint_field(wt).map_err(at("dropped_attributes_count"))?;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok(())
}

/// `Span`.
fn span<'a>(buf: &'a [u8], depth: u32, s: &mut WireSpan<'a>, m: &mut Memo<'a>) -> Result<()> {
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        let at = |f| move |e: WireError| e.within("Span", f);
        match tag {
            1 => s.trace_id = c.bytes(wt).map_err(at("trace_id"))?,
            2 => s.span_id = c.bytes(wt).map_err(at("span_id"))?,
            3 => {
                c.string(wt, m).map_err(at("trace_state"))?;
            }
            4 => s.parent_span_id = c.bytes(wt).map_err(at("parent_span_id"))?,
            5 => s.name = c.string(wt, m).map_err(at("name"))?,
            // An enum is an int32: prost keeps the varint's low 32 bits.
            6 => s.kind = c.varint_field(wt).map_err(at("kind"))? as i32,
            7 => s.start_time_unix_nano = c.fixed64(wt).map_err(at("start_time_unix_nano"))?,
            8 => s.end_time_unix_nano = c.fixed64(wt).map_err(at("end_time_unix_nano"))?,
            9 => {
                let body = c.message(wt, depth).map_err(at("attributes"))?;
                let (key, value) = key_value(body, depth - 1, m).map_err(at("attributes"))?;
                if let Some(v) = value {
                    s.attrs.offer(key, Cow::Borrowed(v));
                }
            }
            10 | 12 | 14 => {
                c.varint_field(wt).map_err(at("dropped_counts"))?;
            }
            11 => {
                let body = c.message(wt, depth).map_err(at("events"))?;
                event(body, depth - 1, m).map_err(at("events"))?;
            }
            13 => {
                let body = c.message(wt, depth).map_err(at("links"))?;
                let ids = link(body, depth - 1, m).map_err(at("links"))?;
                if s.link.is_none() {
                    s.link = Some(ids);
                }
            }
            15 => {
                let body = c.message(wt, depth).map_err(at("status"))?;
                status(body, depth - 1, &mut s.status_code, m).map_err(at("status"))?;
            }
            16 => {
                c.fixed32(wt).map_err(at("flags"))?;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok(())
}

/// `Status`: a second status merges into the first, so `code` is the last one given.
fn status<'a>(buf: &'a [u8], depth: u32, code: &mut i32, m: &mut Memo<'a>) -> Result<()> {
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        match tag {
            2 => {
                c.string(wt, m).map_err(|e| e.within("Status", "message"))?;
            }
            3 => *code = c.varint_field(wt).map_err(|e| e.within("Status", "code"))? as i32,
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok(())
}

/// `Span.Event`: checked only.
fn event<'a>(buf: &'a [u8], depth: u32, m: &mut Memo<'a>) -> Result<()> {
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        let at = |f| move |e: WireError| e.within("Event", f);
        match tag {
            1 => {
                c.fixed64(wt).map_err(at("time_unix_nano"))?;
            }
            2 => {
                c.string(wt, m).map_err(at("name"))?;
            }
            3 => {
                let body = c.message(wt, depth).map_err(at("attributes"))?;
                key_value(body, depth - 1, m).map_err(at("attributes"))?;
            }
            4 => {
                c.varint_field(wt).map_err(at("dropped_attributes_count"))?;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok(())
}

/// `Span.Link`: checked, and its (trace_id, span_id) (a field given twice keeps the last).
fn link<'a>(buf: &'a [u8], depth: u32, m: &mut Memo<'a>) -> Result<(&'a [u8], &'a [u8])> {
    let mut c = Cursor::new(buf);
    let (mut trace_id, mut span_id): (&[u8], &[u8]) = (&[], &[]);
    while let Some((tag, wt)) = c.next_key()? {
        let at = |f| move |e: WireError| e.within("Link", f);
        match tag {
            1 => trace_id = c.bytes(wt).map_err(at("trace_id"))?,
            2 => span_id = c.bytes(wt).map_err(at("span_id"))?,
            3 => {
                c.string(wt, m).map_err(at("trace_state"))?;
            }
            4 => {
                let body = c.message(wt, depth).map_err(at("attributes"))?;
                key_value(body, depth - 1, m).map_err(at("attributes"))?;
            }
            5 => {
                c.varint_field(wt).map_err(at("dropped_attributes_count"))?;
            }
            6 => {
                c.fixed32(wt).map_err(at("flags"))?;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok((trace_id, span_id))
}

/// What an `AnyValue`'s `oneof` holds after merging: only strings matter to augur.
#[derive(Clone, Copy)]
enum Value<'a> {
    Unset,
    Str(&'a str),
    Other,
}

/// `KeyValue`: its key, and its value when that is a string.
fn key_value<'a>(
    buf: &'a [u8],
    depth: u32,
    m: &mut Memo<'a>,
) -> Result<(&'a str, Option<&'a str>)> {
    let mut key = "";
    let mut value = Value::Unset;
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        let at = |f| move |e: WireError| e.within("KeyValue", f);
        match tag {
            1 => key = c.string_lossy(wt, m).map_err(at("key"))?,
            2 => {
                let body = c.message(wt, depth).map_err(at("value"))?;
                any_value(body, depth - 1, &mut value, m).map_err(at("value"))?;
            }
            3 => {
                c.varint_field(wt).map_err(at("key_strindex"))?;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok((
        key,
        match value {
            Value::Str(s) => Some(s),
            Value::Unset | Value::Other => None,
        },
    ))
}

/// `AnyValue`, merged into `value` (a second `AnyValue` merges into the first: the member set
/// last wins).
fn any_value<'a>(buf: &'a [u8], depth: u32, value: &mut Value<'a>, m: &mut Memo<'a>) -> Result<()> {
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        let at = |f| move |e: WireError| e.within("AnyValue", f);
        match tag {
            1 => *value = Value::Str(c.string_lossy(wt, m).map_err(at("string_value"))?),
            2 | 3 | 8 => {
                c.varint_field(wt).map_err(at("value"))?;
                *value = Value::Other;
            }
            4 => {
                c.fixed64(wt).map_err(at("double_value"))?;
                *value = Value::Other;
            }
            5 => {
                let body = c.message(wt, depth).map_err(at("array_value"))?;
                array_value(body, depth - 1, m).map_err(at("array_value"))?;
                *value = Value::Other;
            }
            6 => {
                let body = c.message(wt, depth).map_err(at("kvlist_value"))?;
                key_value_list(body, depth - 1, m).map_err(at("kvlist_value"))?;
                *value = Value::Other;
            }
            7 => {
                c.bytes(wt).map_err(at("bytes_value"))?;
                *value = Value::Other;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok(())
}

/// `ArrayValue`: checked only.
fn array_value<'a>(buf: &'a [u8], depth: u32, m: &mut Memo<'a>) -> Result<()> {
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        match tag {
            1 => {
                let body = c.message(wt, depth)?;
                any_value(body, depth - 1, &mut Value::Unset, m)?;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok(())
}

/// `KeyValueList`: checked only.
fn key_value_list<'a>(buf: &'a [u8], depth: u32, m: &mut Memo<'a>) -> Result<()> {
    let mut c = Cursor::new(buf);
    while let Some((tag, wt)) = c.next_key()? {
        match tag {
            1 => {
                let body = c.message(wt, depth)?;
                key_value(body, depth - 1, m)?;
            }
            _ => c.skip(wt, tag, depth)?,
        }
    }
    Ok(())
}

/// Reads fields off the front of a message's bytes; every read checks its bounds.
struct Cursor<'a> {
    rest: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Cursor { rest: buf }
    }

    /// The next field's tag and wire type, or `None` at the end of the message.
    #[inline]
    fn next_key(&mut self) -> Result<Option<(u32, u8)>> {
        if self.rest.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let key = u32::try_from(key).map_err(|_| WireError::new("invalid key (over 32 bits)"))?;
        let wt = (key & 7) as u8;
        if wt > I32 {
            return Err(WireError::new("invalid wire type"));
        }
        let tag = key >> 3;
        if tag == 0 {
            return Err(WireError::new("invalid tag 0"));
        }
        Ok(Some((tag, wt)))
    }

    /// A varint (at most 10 bytes, at most 64 bits).
    #[inline]
    fn varint(&mut self) -> Result<u64> {
        if let Some((&b, rest)) = self.rest.split_first() {
            if b < 0x80 {
                self.rest = rest;
                return Ok(u64::from(b));
            }
        }
        self.varint_slow()
    }

    fn varint_slow(&mut self) -> Result<u64> {
        let mut value = 0u64;
        for (i, &b) in self.rest.iter().take(10).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                if i == 9 && b > 1 {
                    break;
                }
                self.rest = self.rest.get(i + 1..).unwrap_or_default();
                return Ok(value);
            }
        }
        Err(WireError::new("invalid varint (truncated or over 64 bits)"))
    }

    /// Takes `n` bytes.
    #[inline]
    fn take(&mut self, n: u64) -> Result<&'a [u8]> {
        let n = usize::try_from(n).map_err(|_| WireError::new("length past the end"))?;
        let (head, rest) = self
            .rest
            .split_at_checked(n)
            .ok_or_else(|| WireError::new("length past the end"))?;
        self.rest = rest;
        Ok(head)
    }

    #[inline]
    fn expect(wt: u8, want: u8) -> Result<()> {
        if wt == want {
            Ok(())
        } else {
            Err(WireError::new("unexpected wire type"))
        }
    }

    /// A length-delimited field's bytes.
    #[inline]
    fn bytes(&mut self, wt: u8) -> Result<&'a [u8]> {
        Self::expect(wt, LEN)?;
        let n = self.varint()?;
        self.take(n)
    }

    /// A string field: its bytes, which must be UTF-8.
    #[inline]
    fn string(&mut self, wt: u8, memo: &mut Memo<'a>) -> Result<&'a str> {
        let b = self.bytes(wt)?;
        memo.str(b)
    }

    /// An attribute's key or string value: where it is not UTF-8 (an SDK passing bytes through
    /// unchecked), U+FFFD stands for the whole string, so one bad attribute does not cost the
    /// request its every span. Names and ids stay strict.
    fn string_lossy(&mut self, wt: u8, memo: &mut Memo<'a>) -> Result<&'a str> {
        let b = self.bytes(wt)?;
        Ok(memo.str(b).unwrap_or(REPLACEMENT))
    }

    /// A nested message's bytes, when the nesting limit allows one more level.
    #[inline]
    fn message(&mut self, wt: u8, depth: u32) -> Result<&'a [u8]> {
        Self::expect(wt, LEN)?;
        if depth == 0 {
            return Err(WireError::new("recursion limit reached"));
        }
        let n = self.varint()?;
        self.take(n)
    }

    #[inline]
    fn varint_field(&mut self, wt: u8) -> Result<u64> {
        Self::expect(wt, VARINT)?;
        self.varint()
    }

    #[inline]
    fn fixed64(&mut self, wt: u8) -> Result<u64> {
        Self::expect(wt, I64)?;
        let b: [u8; 8] = self
            .take(8)?
            .try_into()
            .map_err(|_| WireError::new("short fixed64"))?;
        Ok(u64::from_le_bytes(b))
    }

    #[inline]
    fn fixed32(&mut self, wt: u8) -> Result<u32> {
        Self::expect(wt, I32)?;
        let b: [u8; 4] = self
            .take(4)?
            .try_into()
            .map_err(|_| WireError::new("short fixed32"))?;
        Ok(u32::from_le_bytes(b))
    }

    /// Skips an unknown field by its wire type (as prost does: groups are skipped too, nested
    /// groups count against the nesting limit).
    fn skip(&mut self, wt: u8, tag: u32, depth: u32) -> Result<()> {
        if depth == 0 {
            return Err(WireError::new("recursion limit reached"));
        }
        match wt {
            VARINT => {
                self.varint()?;
            }
            I64 => {
                self.take(8)?;
            }
            LEN => {
                let n = self.varint()?;
                self.take(n)?;
            }
            I32 => {
                self.take(4)?;
            }
            SGROUP => loop {
                match self.next_key()? {
                    None => return Err(WireError::new("unterminated group")),
                    Some((t, EGROUP)) if t == tag => break,
                    Some((_, EGROUP)) => return Err(WireError::new("unexpected end group tag")),
                    Some((t, w)) => self.skip(w, t, depth - 1)?,
                }
            },
            _ => return Err(WireError::new("unexpected end group tag")),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor_varint(bytes: &[u8]) -> Result<u64> {
        Cursor::new(bytes).varint()
    }

    #[test]
    fn varints_match_prost() {
        let cases: &[&[u8]] = &[
            &[0],
            &[0x7f],
            &[0x80, 0x01],
            &[0xff, 0xff, 0xff, 0xff, 0x0f],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02],
            &[
                0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
            ],
            &[0x80],
            &[],
            &[0x80, 0x00],
        ];
        for &case in cases {
            let mut b = case;
            let want = prost::encoding::decode_varint(&mut b).ok();
            assert_eq!(cursor_varint(case).ok(), want, "{case:x?}");
        }
        assert_eq!(cursor_varint(&[0xff; 9]).ok(), None);
    }

    #[test]
    fn keys_and_skips() {
        // Tag 0, wire types 6 and 7, a key over 32 bits.
        for bad in [
            &[0x00][..],
            &[0x0e],
            &[0x0f],
            &[0x80, 0x80, 0x80, 0x80, 0x10],
        ] {
            assert!(Cursor::new(bad).next_key().is_err(), "{bad:x?}");
        }
        // An unknown group (field 20, wire type 3) holding a varint, then its end.
        let group = [0xa3, 0x01, 0x08, 0x01, 0xa4, 0x01];
        let mut c = Cursor::new(&group);
        let (tag, wt) = c.next_key().unwrap().unwrap();
        assert_eq!((tag, wt), (20, SGROUP));
        c.skip(wt, tag, RECURSION_LIMIT).unwrap();
        assert!(c.rest.is_empty());
        // An end group that does not match, and one with no start.
        let mut c = Cursor::new(&[0x08, 0x01, 0xac, 0x01]);
        assert!(c.skip(SGROUP, 20, RECURSION_LIMIT).is_err());
        assert!(Cursor::new(&[]).skip(EGROUP, 20, RECURSION_LIMIT).is_err());
        // Lengths past the end.
        assert!(Cursor::new(&[0x05, 1, 2])
            .skip(LEN, 1, RECURSION_LIMIT)
            .is_err());
        assert!(Cursor::new(&[1, 2, 3])
            .skip(I32, 1, RECURSION_LIMIT)
            .is_err());
        assert!(Cursor::new(&[0xff; 20]).bytes(LEN).is_err());
    }

    #[test]
    fn errors_name_the_innermost_field() {
        // resource_spans { scope_spans { spans { name: invalid UTF-8 } } }
        let msg = [0x0a, 0x08, 0x12, 0x06, 0x12, 0x04, 0x2a, 0x02, 0xff, 0xfe];
        let e = WireRequest::decode(&msg, WireRequest::default())
            .err()
            .unwrap();
        assert_eq!(e.to_string(), "Span.name: invalid UTF-8 in a string");
    }

    #[test]
    fn an_attribute_that_is_not_utf8_reads_as_the_replacement_character() {
        // resource_spans { scope_spans { spans { attributes { key: K, value { string_value: V } } } } }
        let wrap = |tag: u8, body: &[u8]| {
            let mut b = vec![tag, body.len() as u8];
            b.extend_from_slice(body);
            b
        };
        for (k, v) in [(&b"k"[..], &b"\xff"[..]), (b"\xfe", b"v")] {
            let mut kv = wrap(0x0a, k);
            kv.extend(wrap(0x12, &wrap(0x0a, v)));
            let msg = wrap(0x0a, &wrap(0x12, &wrap(0x12, &wrap(0x4a, &kv))));
            assert!(
                WireRequest::decode(&msg, WireRequest::default()).is_ok(),
                "{k:?} = {v:?}"
            );
        }
    }

    #[test]
    fn recycling_keeps_the_memory() {
        let mut spare = WireRequest::default();
        spare.spans.reserve(100);
        let cap = spare.spans.capacity();
        let req = WireRequest::decode(&[], spare).unwrap();
        assert!(req.resources.is_empty() && req.spans.is_empty());
        assert_eq!(req.recycle().spans.capacity(), cap);
    }
}
