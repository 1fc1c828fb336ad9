//! A fast path for one OTLP/JSON line: a small recursive-descent scanner specialised to the
//! request's shape, with every string borrowed from the line.
//!
//! It accepts only what it is sure of: strings without escapes, integers, the OTLP structure,
//! and any other JSON it can skip exactly. On anything else (an escape, a float where an integer
//! belongs, a bad span, malformed JSON) it gives up with `None` and the caller reads the line
//! again with the general serde path, which decides and reports. So for every line the fast
//! path accepts, the result is the one the serde path gives; `tests::fast_path_agrees_with_serde`
//! checks exactly that on generated lines.

use std::borrow::Cow;

use super::{Attrs, Enum, RawSpan};
use crate::read::Ctx;

/// Nesting deeper than this is left to the general path.
const MAX_DEPTH: u32 = 64;

/// The span fields the fast path reads, in the order exporters write them, then their
/// snake_case spellings; [`SPAN_FIELDS`] names each.
const SPAN_KEYS: &[&[u8]] = &[
    b"traceId",
    b"spanId",
    b"parentSpanId",
    b"name",
    b"kind",
    b"startTimeUnixNano",
    b"endTimeUnixNano",
    b"attributes",
    b"status",
    b"trace_id",
    b"span_id",
    b"parent_span_id",
    b"start_time_unix_nano",
    b"end_time_unix_nano",
    // Last: most spans have none, so looking for it costs them nothing.
    b"links",
];

#[derive(Clone, Copy)]
enum SpanField {
    TraceId,
    SpanId,
    ParentSpanId,
    Name,
    Kind,
    Start,
    End,
    Attributes,
    Status,
    Links,
}

const SPAN_FIELDS: &[SpanField] = &[
    SpanField::TraceId,
    SpanField::SpanId,
    SpanField::ParentSpanId,
    SpanField::Name,
    SpanField::Kind,
    SpanField::Start,
    SpanField::End,
    SpanField::Attributes,
    SpanField::Status,
    SpanField::TraceId,
    SpanField::SpanId,
    SpanField::ParentSpanId,
    SpanField::Start,
    SpanField::End,
    SpanField::Links,
];

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The high bit of each byte of `x` that is `"`, `\\` or a control character; exact for the
/// lowest such byte (the classic "has zero byte" trick: higher bytes may be false positives).
fn special_bytes(x: u64) -> u64 {
    let q = x ^ (LO * u64::from(b'"'));
    let b = x ^ (LO * u64::from(b'\\'));
    let quote = q.wrapping_sub(LO) & !q;
    let backslash = b.wrapping_sub(LO) & !b;
    let control = x.wrapping_sub(LO * 0x20) & !x;
    (quote | backslash | control) & HI
}

/// The index of the first `"`, `\\` or control character of `bytes`, eight bytes at a time (the
/// strings of a span are short, where this beats both a byte loop and a vectorised search).
fn first_special(bytes: &[u8]) -> Option<usize> {
    let mut chunks = bytes.chunks_exact(8);
    let mut k = 0;
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = special_bytes(u64::from_le_bytes(word));
        if m != 0 {
            return Some(k + (m.trailing_zeros() / 8) as usize);
        }
        k += 8;
    }
    let tail = chunks.remainder();
    tail.iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|j| k + j)
}

/// The value of eight ASCII digits (the first one most significant), or `None` if any byte is
/// not a digit: SWAR, three multiply-and-mask steps instead of eight.
fn eight_digits(bytes: &[u8]) -> Option<u64> {
    let mut word = [0u8; 8];
    word.copy_from_slice(bytes.get(..8)?);
    let x = u64::from_le_bytes(word);
    const HIGH_NIBBLES: u64 = 0xF0F0_F0F0_F0F0_F0F0;
    const ZEROS: u64 = 0x3030_3030_3030_3030;
    if x & HIGH_NIBBLES != ZEROS || x.wrapping_add(0x0606_0606_0606_0606) & HIGH_NIBBLES != ZEROS {
        return None;
    }
    let x = x - ZEROS;
    let x = (x.wrapping_mul(10) + (x >> 8)) & 0x00FF_00FF_00FF_00FF;
    let x = (x.wrapping_mul(100) + (x >> 16)) & 0x0000_FFFF_0000_FFFF;
    Some((x.wrapping_mul(10_000) + (x >> 32)) & 0xFFFF_FFFF)
}

struct P<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
}

impl<'a> P<'a> {
    fn ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            if matches!(c, b' ' | b'\n' | b'\r' | b'\t') {
                self.i += 1;
            } else {
                break;
            }
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.b.get(self.i).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.i += 1)
    }

    /// `null`, consumed; false (and nothing consumed) for anything else.
    fn null(&mut self) -> bool {
        if self.peek() == Some(b'n') && self.b.get(self.i..self.i + 4) == Some(b"null") {
            self.i += 4;
            true
        } else {
            false
        }
    }

    /// A string without escapes or control characters, borrowed.
    fn str(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        self.str_rest()
    }

    /// The rest of a string whose opening quote was consumed.
    fn str_rest(&mut self) -> Option<&'a str> {
        let start = self.i;
        let rest = self.b.get(start..)?;
        let k = first_special(rest)?;
        if rest.get(k) != Some(&b'"') {
            return None;
        }
        self.i = start + k + 1;
        // Both ends are ASCII quotes, so they are character boundaries.
        self.s.get(start..start + k)
    }

    fn object(&mut self, mut f: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.object_keyed(&[], |p, key| f(p, key.err()?))
    }

    /// An object whose keys are usually among `keys`, and usually in that order (as every
    /// exporter writes them): each key is first compared with the one expected next, so a known
    /// key costs one comparison instead of a scan and a match. `f` gets the key's index in
    /// `keys`, or the key itself when it is another.
    fn object_keyed(
        &mut self,
        keys: &[&[u8]],
        mut f: impl FnMut(&mut Self, Result<usize, &'a str>) -> Option<()>,
    ) -> Option<()> {
        self.eat(b'{')?;
        if self.peek()? == b'}' {
            self.i += 1;
            return Some(());
        }
        let mut expect = 0;
        loop {
            self.eat(b'"')?;
            let key = match self.known_key(keys, expect) {
                Some(k) => {
                    expect = k + 1;
                    Ok(k)
                }
                None => Err(self.str_rest()?),
            };
            self.eat(b':')?;
            f(self, key)?;
            match self.peek()? {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// The index of the key (opening quote consumed) among `keys`, trying `expect` first.
    fn known_key(&mut self, keys: &[&[u8]], expect: usize) -> Option<usize> {
        let n = keys.len();
        for j in 0..n {
            let k = (expect + j) % n;
            let key = keys.get(k)?;
            let end = self.i + key.len();
            let same = self.b.get(self.i..end).is_some_and(|b| same_bytes(b, key));
            if same && self.b.get(end) == Some(&b'"') {
                self.i = end + 1;
                return Some(k);
            }
        }
        None
    }

    fn array(&mut self, mut f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.eat(b'[')?;
        if self.peek()? == b']' {
            self.i += 1;
            return Some(());
        }
        loop {
            f(self)?;
            match self.peek()? {
                b',' => self.i += 1,
                b']' => {
                    self.i += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// `null` or an array of elements read by `f`.
    fn list(&mut self, f: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        if self.null() {
            return Some(());
        }
        self.array(f)
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while self.b.get(self.i).is_some_and(u8::is_ascii_digit) {
            self.i += 1;
        }
        self.i - start
    }

    /// A JSON number, checked against the grammar and skipped.
    fn skip_number(&mut self) -> Option<()> {
        self.ws();
        if self.b.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        match self.b.get(self.i)? {
            b'0' => self.i += 1,
            b'1'..=b'9' => {
                self.digits();
            }
            _ => return None,
        }
        if self.b.get(self.i) == Some(&b'.') {
            self.i += 1;
            (self.digits() > 0).then_some(())?;
        }
        if matches!(self.b.get(self.i), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.b.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            (self.digits() > 0).then_some(())?;
        }
        Some(())
    }

    /// Any JSON value, skipped (strings with escapes give up).
    fn skip(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'{' => self.object(|p, _| p.skip(depth + 1)),
            b'[' => self.array(|p| p.skip(depth + 1)),
            b'"' => self.str().map(drop),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            _ => self.skip_number(),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        (self.b.get(self.i..self.i + word.len())? == word).then(|| self.i += word.len())
    }

    /// An unsigned integer: digits (no sign, fraction or exponent), or a string of digits.
    fn u64(&mut self) -> Option<u64> {
        let quoted = self.peek()? == b'"';
        if quoted {
            self.i += 1;
        }
        let start = self.i;
        let mut v: u64 = 0;
        // Eight digits at a time (a nanosecond timestamp has 19), then one at a time.
        while let Some(eight) = self.b.get(self.i..self.i + 8).and_then(eight_digits) {
            v = v.checked_mul(100_000_000)?.checked_add(eight)?;
            self.i += 8;
        }
        while let Some(&c) = self.b.get(self.i) {
            if !c.is_ascii_digit() {
                break;
            }
            v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
            self.i += 1;
        }
        let n = self.i - start;
        if n == 0 {
            return None;
        }
        if quoted {
            // Exactly what `str::parse::<u64>` takes: digits only (a `+` sign is rare enough to
            // leave to the general path).
            (self.b.get(self.i) == Some(&b'"')).then(|| self.i += 1)?;
        } else if matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'))
            || (n > 1 && self.b.get(start) == Some(&b'0'))
        {
            // A fraction, an exponent, or a leading zero (not JSON): the general path decides.
            return None;
        }
        Some(v)
    }

    /// An enum as an integer or a name; `None` inside for `null`.
    fn enumeration(&mut self) -> Option<Option<Enum<'a>>> {
        if self.null() {
            return Some(None);
        }
        if self.peek()? == b'"' {
            return Some(Some(Enum::Name(Cow::Borrowed(self.str()?))));
        }
        let start = self.i;
        let negative = self.b.get(self.i) == Some(&b'-');
        if negative {
            self.i += 1;
        }
        let first = self.i;
        let n = self.digits();
        if n == 0
            || matches!(self.b.get(self.i), Some(b'.' | b'e' | b'E'))
            || ((n > 1 || negative) && self.b.get(first) == Some(&b'0'))
        {
            // Not a plain integer (serde_json reads `-0` as a float): the general path decides.
            return None;
        }
        let v: i64 = self.s.get(start..self.i)?.parse().ok()?;
        Some(Some(Enum::Int(v)))
    }

    fn attrs(&mut self) -> Option<Attrs<'a>> {
        let mut attrs = Attrs::default();
        self.list(|p| {
            let (mut key, mut value) = (None, None);
            p.object_keyed(&[b"key", b"value"], |p, k| {
                match k {
                    Ok(0) => key = Some(p.str()?),
                    Ok(_) => value = p.any_value()?,
                    Err(_) => p.skip(3)?,
                }
                Some(())
            })?;
            if let (Some(k), Some(v)) = (key, value) {
                attrs.offer(k, Cow::Borrowed(v));
            }
            Some(())
        })?;
        Some(attrs)
    }

    /// An AnyValue: its string value if it has one.
    fn any_value(&mut self) -> Option<Option<&'a str>> {
        if self.null() {
            return Some(None);
        }
        let mut out = None;
        self.object_keyed(&[b"stringValue", b"string_value"], |p, k| {
            match k {
                Ok(_) => out = Some(p.str()?),
                Err(_) => p.skip(4)?,
            }
            Some(())
        })?;
        Some(out)
    }

    fn span(&mut self, ctx: &mut Ctx<'_>) -> Option<()> {
        let mut s = RawSpan::default();
        self.object_keyed(SPAN_KEYS, |p, k| {
            let Ok(k) = k else {
                return p.skip(4);
            };
            match SPAN_FIELDS.get(k)? {
                SpanField::TraceId => s.trace_id = Some(Cow::Borrowed(p.str()?)),
                SpanField::SpanId => s.span_id = Some(Cow::Borrowed(p.str()?)),
                SpanField::ParentSpanId => {
                    s.parent_span_id = if p.null() {
                        None
                    } else {
                        Some(Cow::Borrowed(p.str()?))
                    }
                }
                SpanField::Name => s.name = Some(Cow::Borrowed(p.str()?)),
                SpanField::Kind => s.kind = p.enumeration()?,
                SpanField::Start => s.start = Some(p.u64()?),
                SpanField::End => s.end = Some(p.u64()?),
                SpanField::Status => {
                    s.status = None;
                    if !p.null() {
                        p.object(|p, k| {
                            match k {
                                "code" => s.status = p.enumeration()?,
                                _ => p.skip(5)?,
                            }
                            Some(())
                        })?;
                    }
                }
                SpanField::Attributes => s.attrs = p.attrs()?,
                SpanField::Links => {
                    if !p.null() {
                        let mut first = true;
                        p.list(|p| {
                            let (mut t, mut sp) = (None, None);
                            p.object(|p, k| {
                                match k {
                                    "traceId" | "trace_id" => t = Some(p.str()?),
                                    "spanId" | "span_id" => sp = Some(p.str()?),
                                    _ => p.skip(6)?,
                                }
                                Some(())
                            })?;
                            if first {
                                s.link = t
                                    .zip(sp)
                                    .map(|(t, sp)| (Cow::Borrowed(t), Cow::Borrowed(sp)));
                                first = false;
                            }
                            Some(())
                        })?;
                    }
                }
            }
            Some(())
        })?;
        // A bad span is left to the general path, which locates and reports it.
        let span = s.to_span(ctx).ok()?;
        ctx.push(span);
        if let Some((t, l)) = s.link_ids() {
            ctx.batch.link_last(t, l);
        }
        Some(())
    }

    fn resource_spans(&mut self, ctx: &mut Ctx<'_>) -> Option<()> {
        let first = ctx.batch.spans.len();
        let (mut service, mut experiment) = (None, None);
        self.object(|p, k| {
            match k {
                "resource" => {
                    service = None;
                    experiment = None;
                    if !p.null() {
                        p.object(|p, k| {
                            match k {
                                "attributes" => {
                                    let a = p.attrs()?;
                                    service = a.service;
                                    experiment = a.experiment;
                                }
                                _ => p.skip(3)?,
                            }
                            Some(())
                        })?;
                    }
                }
                "scopeSpans"
                | "scope_spans"
                | "instrumentationLibrarySpans"
                | "instrumentation_library_spans" => p.list(|p| {
                    p.object(|p, k| match k {
                        "spans" => p.list(|p| p.span(ctx)),
                        _ => p.skip(3),
                    })
                })?,
                _ => p.skip(2)?,
            }
            Some(())
        })?;
        let strings = &mut ctx.batch.strings;
        let service = strings.intern(
            service
                .as_deref()
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown_service"),
        );
        let experiment = experiment.as_deref().map(|e| strings.intern(e));
        for s in ctx.batch.spans.get_mut(first..)? {
            s.service = service;
            if s.experiment.is_none() {
                s.experiment = experiment;
            }
        }
        Some(())
    }
}

/// Reads one JSON Lines request. `Some(true)`: read, spans pushed. `Some(false)`: valid JSON
/// without `resourceSpans`. `None`: not for the fast path (the caller drops what was pushed
/// and uses the general path).
pub(super) fn read_line(text: &str, ctx: &mut Ctx<'_>) -> Option<bool> {
    let mut p = P {
        s: text,
        b: text.as_bytes(),
        i: 0,
    };
    let mut saw = false;
    p.object(|p, k| match k {
        "resourceSpans" | "resource_spans" => {
            saw = true;
            p.list(|p| p.resource_spans(ctx))
        }
        _ => p.skip(1),
    })?;
    p.ws();
    (p.i == p.b.len()).then_some(saw)
}

/// Whether two byte strings of the same length are equal, eight bytes at a time: the keys of
/// a request are a few to 17 bytes, shorter than a `memcmp` call is worth, and a byte loop
/// costs a compare and a branch per byte.
#[inline(always)]
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (mut x, mut y) = (a, b);
    while let (Some((xa, xr)), Some((ya, yr))) =
        (x.split_first_chunk::<8>(), y.split_first_chunk::<8>())
    {
        if u64::from_ne_bytes(*xa) != u64::from_ne_bytes(*ya) {
            return false;
        }
        (x, y) = (xr, yr);
    }
    // Fewer than eight left: a byte loop (`==` on slices would call `memcmp`).
    x.iter().zip(y).all(|(p, q)| p == q)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use proptest::prelude::*;

    use crate::read::{Ctx, ReadOptions};
    use crate::report::IngestReport;
    use crate::span::{OwnedSpan, SpanBatch};

    /// Reads `text` as JSON Lines with or without the fast path.
    fn read(text: &str, fast: bool) -> (bool, Vec<OwnedSpan>, u64) {
        let opts = ReadOptions::default();
        let mut report = IngestReport::default();
        let mut out = Vec::new();
        let mut sink = |b: SpanBatch| {
            out.extend(b.to_owned_spans());
            Ok(())
        };
        let mut ctx = Ctx::new(Path::new("t.jsonl"), &opts, &mut report, &mut sink);
        let mut r = std::io::Cursor::new(text.as_bytes().to_vec());
        let ok = super::super::read_lines_with(&mut r, &mut ctx, fast)
            .and_then(|()| ctx.flush())
            .is_ok();
        let rejected = report.rejected;
        (ok, out, rejected)
    }

    fn id(n: u64, len: usize) -> String {
        format!("{n:0len$x}")
    }

    prop_compose! {
        fn span_json()(
            trace in 0u64..4, sid in 0u64..6, parent in prop::option::of(0u64..6),
            kind in prop::sample::select(vec!["2", "3", "\"SPAN_KIND_CLIENT\"", "\"odd\"", "null", "-1", "2.0", "02", "-0"]),
            start in prop::sample::select(vec!["1000", "\"1000\"", "\"x\"", "1e3", "-5", "01000", "\"01000\"", "1764547200123456789", "\"18446744073709551616\"", "0"]),
            status in prop::sample::select(vec!["", r#","status":{"code":2}"#, r#","status":{"code":"STATUS_CODE_ERROR","message":"m"}"#, r#","status":null"#, r#","status":{}"#]),
            name in prop::sample::select(vec!["\"GET /\"", "\"caf\\u00e9\"", "\"tab\\there\"", "null", "\"ü\"", "\"raw\ttab\"", "\"a\u{7f}\""]),
            attr in prop::sample::select(vec![
                "", r#","attributes":[{"key":"peer.service","value":{"stringValue":"db"}}]"#,
                r#","attributes":[{"key":"db.system","value":{"stringValue":"pg"}},{"key":"n","value":{"intValue":"3"}}]"#,
                r#","attributes":null"#, r#","attributes":[{"key":"x","value":null}]"#,
                r#","attributes":[{"value":{"string_value":"/r"},"key":"http.route"}]"#,
                r#","attributes":[{"key":"k","value":{"arrayValue":{"values":[{"doubleValue":1.5e-3}]}}}]"#,
            ]),
            extra in prop::sample::select(vec!["", r#","droppedAttributesCount":0"#, r#","events":[{"name":"e","timeUnixNano":"5"}]"#, r#","flags":257"#, r#","weird":[true,false,null,{"a":[]}]"#]),
            snake in any::<bool>(),
        ) -> String {
            let (t, s, p, st, en) = if snake {
                ("trace_id", "span_id", "parent_span_id", "start_time_unix_nano", "end_time_unix_nano")
            } else {
                ("traceId", "spanId", "parentSpanId", "startTimeUnixNano", "endTimeUnixNano")
            };
            let parent = parent.map(|x| format!(r#","{p}":"{}""#, id(x, 16))).unwrap_or_default();
            format!(
                r#"{{"{t}":"{}","{s}":"{}"{parent},"name":{name},"kind":{kind},"{st}":{start},"{en}":"2000"{status}{attr}{extra}}}"#,
                id(trace + 1, 32), id(sid, 16)
            )
        }
    }

    prop_compose! {
        fn line_json()(
            spans in prop::collection::vec(span_json(), 0..4),
            service in prop::sample::select(vec![r#""shop""#, r#""sh\"op""#, "null"]),
            resource_first in any::<bool>(),
            top_extra in prop::sample::select(vec!["", r#","x":1"#, r#","x":[1,2.5,-3e2]"#]),
            tail in prop::sample::select(vec!["", " ", "x", "}"]),
            cut in prop::option::weighted(0.2, 0usize..400),
        ) -> String {
            let resource = format!(r#""resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":{service}}}}}]}}"#);
            let scopes = format!(r#""scopeSpans":[{{"scope":{{"name":"s"}},"spans":[{}]}}]"#, spans.join(","));
            let body = if resource_first { format!("{resource},{scopes}") } else { format!("{scopes},{resource}") };
            let line = format!(r#"{{"resourceSpans":[{{{body}}}]{top_extra}}}{tail}"#);
            match cut {
                // A truncated line (cut at a character boundary).
                Some(n) => line.char_indices().take_while(|(i, _)| *i < n).map(|(_, c)| c).collect(),
                None => line,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_150a), ..ProptestConfig::default() })]

        /// Whatever the fast path accepts, it reads exactly as the serde path does; whatever it
        /// declines, the serde path still reads: the results with and without it are identical.
        #[test]
        fn fast_path_agrees_with_serde(lines in prop::collection::vec(line_json(), 1..4)) {
            let text = lines.join("\n");
            prop_assert_eq!(read(&text, true), read(&text, false));
        }
    }

    proptest! {
        #[test]
        fn eight_digits_matches_parse(bytes in prop::collection::vec(prop::sample::select(b"0123456789a/:".to_vec()), 8)) {
            let text = std::str::from_utf8(&bytes).unwrap();
            let want = if bytes.iter().all(u8::is_ascii_digit) { text.parse::<u64>().ok() } else { None };
            prop_assert_eq!(super::eight_digits(&bytes), want);
        }

        #[test]
        fn word_search_matches_a_byte_loop(bytes in prop::collection::vec(any::<u8>(), 0..40)) {
            let want = bytes.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(super::first_special(&bytes), want);
        }
    }

    #[test]
    fn the_fast_path_takes_ordinary_lines() {
        let line = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"5"}]}]}]}"#;
        let opts = ReadOptions::default();
        let mut report = IngestReport::default();
        let mut sink = |_: SpanBatch| Ok(());
        let mut ctx = Ctx::new(Path::new("t.jsonl"), &opts, &mut report, &mut sink);
        assert_eq!(super::read_line(line, &mut ctx), Some(true));
        assert_eq!(ctx.batch.spans.len(), 1);
        // An escape sends the line to the general path.
        let escaped = line.replace("GET /", "GET \\/");
        assert_eq!(super::read_line(&escaped, &mut ctx), None);
    }
}
