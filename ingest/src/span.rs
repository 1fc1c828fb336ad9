//! The in-memory span table: a batch of spans whose strings are interned once per batch.
//!
//! Readers push [`Span`]s into a [`SpanBatch`]; the batch converts losslessly to and from the Arrow
//! record batch of [`crate::schema`]. Strings (services, operation names, peers) repeat millions of
//! times in real traces, so a span stores a [`Sym`] (an index into the batch's [`Interner`]) rather
//! than a `String`: a span is a small fixed-size value and a batch's strings are stored once.

use rustc_hash::FxHashMap;

/// A 16-byte trace id.
pub type TraceId = [u8; 16];
/// An 8-byte span id.
pub type SpanId = [u8; 8];

/// An interned string: an index into a batch's [`Interner`].
pub type Sym = u32;

/// The span kind, as OpenTelemetry defines it (the numeric values are OTLP's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum SpanKind {
    /// Not recorded (CSV span tables, Zipkin local spans).
    #[default]
    Unspecified = 0,
    /// Work inside one service.
    Internal = 1,
    /// The server side of a synchronous call.
    Server = 2,
    /// The client side of a synchronous call.
    Client = 3,
    /// The sending side of an asynchronous message.
    Producer = 4,
    /// The receiving side of an asynchronous message.
    Consumer = 5,
}

impl SpanKind {
    /// The kind for an OTLP enum number; unknown numbers are `Unspecified`.
    pub fn from_i32(v: i32) -> SpanKind {
        match v {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }

    /// The kind for a name: OTLP's `SPAN_KIND_SERVER`, Zipkin's `SERVER`, Jaeger's `server`.
    pub fn from_name(name: &str) -> Option<SpanKind> {
        let n = name.strip_prefix("SPAN_KIND_").unwrap_or(name);
        Some(match n.to_ascii_lowercase().as_str() {
            "unspecified" | "" => SpanKind::Unspecified,
            "internal" => SpanKind::Internal,
            "server" => SpanKind::Server,
            "client" => SpanKind::Client,
            "producer" => SpanKind::Producer,
            "consumer" => SpanKind::Consumer,
            _ => return None,
        })
    }

    /// The lower-case name stored in the span table.
    pub fn as_str(self) -> &'static str {
        match self {
            SpanKind::Unspecified => "unspecified",
            SpanKind::Internal => "internal",
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
        }
    }

    /// True for the outgoing side of a call (client or producer).
    pub fn is_outgoing(self) -> bool {
        matches!(self, SpanKind::Client | SpanKind::Producer)
    }

    /// True for the receiving side of a call (server or consumer).
    pub fn is_incoming(self) -> bool {
        matches!(self, SpanKind::Server | SpanKind::Consumer)
    }
}

/// What kind of peer a client or producer span calls, from the attributes it carries:
/// `db.system` (or `db.system.name`) marks a database (or cache), `messaging.*` a message queue.
/// Anything else named by a peer attribute is [`PeerKind::Unknown`] (a service, or a
/// third-party API).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
#[repr(u8)]
pub enum PeerKind {
    /// Neither marker.
    #[default]
    Unknown = 0,
    /// `db.system` or `db.system.name` was recorded.
    Database = 1,
    /// `messaging.system` or `messaging.destination(.name)` was recorded.
    Messaging = 2,
}

impl PeerKind {
    /// The name stored in the span table (`None` for [`PeerKind::Unknown`]).
    pub fn as_str(self) -> Option<&'static str> {
        match self {
            PeerKind::Unknown => None,
            PeerKind::Database => Some("database"),
            PeerKind::Messaging => Some("messaging"),
        }
    }

    /// The kind for a stored name.
    pub fn from_name(name: &str) -> PeerKind {
        match name {
            "database" => PeerKind::Database,
            "messaging" => PeerKind::Messaging,
            _ => PeerKind::Unknown,
        }
    }
}

/// The span status, as OpenTelemetry defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum StatusCode {
    /// No status was set (the default; in OTLP, "not failed").
    #[default]
    Unset = 0,
    /// Explicitly successful.
    Ok = 1,
    /// The operation failed.
    Error = 2,
    /// The format records no status at all (a span-table CSV without a status column): whether
    /// the span failed is not known, which is not the same as "not failed". Not an OTLP value;
    /// written to OTLP as `Unset`, stored in the span table as `unknown`.
    Unknown = 3,
}

impl StatusCode {
    /// The status for an OTLP enum number; unknown numbers are `Unset`.
    pub fn from_i32(v: i32) -> StatusCode {
        match v {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// The status for its [`StatusOrd`] (`Unknown` included).
    pub fn from_ord(v: StatusOrd) -> StatusCode {
        match v {
            3 => StatusCode::Unknown,
            v => StatusCode::from_i32(i32::from(v)),
        }
    }

    /// Its OTLP enum number (`Unknown` is written as `Unset`, OTLP's "no status").
    pub fn otlp(self) -> i32 {
        match self {
            StatusCode::Unknown => 0,
            s => s as i32,
        }
    }

    /// Whether the span recorded a status (`Unset` counts: it is OTLP's "not failed").
    pub fn is_recorded(self) -> bool {
        self != StatusCode::Unknown
    }

    /// The status for a name (`STATUS_CODE_ERROR`, `ERROR`, `error`, ...).
    pub fn from_name(name: &str) -> Option<StatusCode> {
        let n = name.strip_prefix("STATUS_CODE_").unwrap_or(name);
        Some(match n.to_ascii_lowercase().as_str() {
            "unset" | "" => StatusCode::Unset,
            "ok" => StatusCode::Ok,
            "error" => StatusCode::Error,
            "unknown" => StatusCode::Unknown,
            _ => return None,
        })
    }

    /// The lower-case name stored in the span table.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
            StatusCode::Unknown => "unknown",
        }
    }
}

/// One span, with its strings interned in the owning [`SpanBatch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    /// The trace this span belongs to.
    pub trace_id: TraceId,
    /// This span's id, unique within its trace in well-formed data.
    pub span_id: SpanId,
    /// The parent's span id; `None` for a trace's root.
    pub parent_span_id: Option<SpanId>,
    /// The service that recorded the span (`service.name`).
    pub service: Sym,
    /// The span (operation) name.
    pub name: Sym,
    /// The span kind.
    pub kind: SpanKind,
    /// Start, in nanoseconds since the Unix epoch.
    pub start_ns: i64,
    /// End, in nanoseconds since the Unix epoch.
    pub end_ns: i64,
    /// The status.
    pub status: StatusCode,
    /// The remote side of a client or producer span (see [`crate::PEER_ATTRIBUTES`]).
    pub peer: Option<Sym>,
    /// What kind of peer it is, from the span's attributes.
    pub peer_kind: PeerKind,
    /// `http.route`, when recorded.
    pub http_route: Option<Sym>,
    /// `rpc.method`, when recorded.
    pub rpc_method: Option<Sym>,
    /// `error.type`, when recorded.
    pub error_type: Option<Sym>,
    /// The fault that was active when the span was recorded (outcome traces), if any.
    pub experiment: Option<Sym>,
}

impl Span {
    /// The span's duration in nanoseconds (negative when the end is before the start).
    pub fn duration_ns(&self) -> i64 {
        self.end_ns.saturating_sub(self.start_ns)
    }
}

/// Interns strings: each distinct string is stored once and named by a [`Sym`].
#[derive(Debug, Default, Clone)]
pub struct Interner {
    map: FxHashMap<Box<str>, Sym>,
    strings: Vec<Box<str>>,
}

impl Interner {
    /// An empty interner.
    pub fn new() -> Self {
        Self::default()
    }

    /// The symbol for `s`, interning it on first sight.
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&sym) = self.map.get(s) {
            return sym;
        }
        let sym = Sym::try_from(self.strings.len()).unwrap_or(Sym::MAX);
        let boxed: Box<str> = s.into();
        self.strings.push(boxed.clone());
        self.map.insert(boxed, sym);
        sym
    }

    /// The symbol of `s` if it was interned.
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.map.get(s).copied()
    }

    /// The string of a symbol; the empty string for a symbol this interner never gave out.
    pub fn resolve(&self, sym: Sym) -> &str {
        self.strings.get(sym as usize).map(|s| &**s).unwrap_or("")
    }

    /// How many distinct strings are interned.
    pub fn len(&self) -> usize {
        self.strings.len()
    }

    /// True when nothing is interned.
    pub fn is_empty(&self) -> bool {
        self.strings.is_empty()
    }

    /// Every interned string, in symbol order.
    pub fn strings(&self) -> impl Iterator<Item = &str> {
        self.strings.iter().map(|s| &**s)
    }
}

/// A span's link to a span of another trace: OTLP's `links` (a message consumed in its own
/// trace names the producer's span), Jaeger's references to another trace. Only the first link
/// of a span is kept. Links are few (consumers), so a batch keeps them beside its spans rather
/// than in every [`Span`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanLink {
    /// The linking span's index in [`SpanBatch::spans`].
    pub span: u32,
    /// The linked span's trace.
    pub trace_id: TraceId,
    /// The linked span.
    pub span_id: SpanId,
}

/// A batch of spans and the strings they name.
#[derive(Debug, Default, Clone)]
pub struct SpanBatch {
    /// The spans, in the order they were read.
    pub spans: Vec<Span>,
    /// The strings the spans' [`Sym`]s name.
    pub strings: Interner,
    /// The spans' links, in span order, at most one per span.
    pub links: Vec<SpanLink>,
}

impl SpanBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty batch with room for `n` spans.
    pub fn with_capacity(n: usize) -> Self {
        SpanBatch {
            spans: Vec::with_capacity(n),
            strings: Interner::new(),
            links: Vec::new(),
        }
    }

    /// Links the last span pushed to `(trace_id, span_id)` (a second link of a span is ignored).
    pub fn link_last(&mut self, trace_id: TraceId, span_id: SpanId) {
        let Some(i) = self.spans.len().checked_sub(1) else {
            return;
        };
        let span = u32::try_from(i).unwrap_or(u32::MAX);
        if self.links.last().is_some_and(|l| l.span == span) {
            return;
        }
        self.links.push(SpanLink {
            span,
            trace_id,
            span_id,
        });
    }

    /// Links span `i` to `(trace_id, span_id)`, keeping the links in span order (a second link of
    /// a span is ignored; so is an index past the spans).
    pub fn link(&mut self, i: usize, trace_id: TraceId, span_id: SpanId) {
        let Ok(span) = u32::try_from(i) else { return };
        if i >= self.spans.len() {
            return;
        }
        if let Err(at) = self.links.binary_search_by_key(&span, |l| l.span) {
            self.links.insert(
                at,
                SpanLink {
                    span,
                    trace_id,
                    span_id,
                },
            );
        }
    }

    /// The link of span `i`, if it has one.
    pub fn link_of(&self, i: usize) -> Option<(TraceId, SpanId)> {
        let i = u32::try_from(i).ok()?;
        self.links
            .binary_search_by_key(&i, |l| l.span)
            .ok()
            .and_then(|k| self.links.get(k))
            .map(|l| (l.trace_id, l.span_id))
    }

    /// Keeps the first `n` spans (and their links).
    pub fn truncate(&mut self, n: usize) {
        self.spans.truncate(n);
        self.links.retain(|l| (l.span as usize) < n);
    }

    /// Number of spans.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when the batch holds no span.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The string of a symbol of this batch.
    pub fn str(&self, sym: Sym) -> &str {
        self.strings.resolve(sym)
    }

    /// Moves the spans and their strings out, leaving an empty batch with an empty interner: the
    /// usual hand-over, whose cost does not grow with the strings seen before.
    pub fn take_all(&mut self) -> SpanBatch {
        std::mem::take(self)
    }

    /// Moves the spans out, leaving an empty batch that keeps (a copy of) its interned strings,
    /// for a reader that goes on using symbols it already holds. Copying costs one allocation per
    /// string, so prefer [`SpanBatch::take_all`].
    pub fn take(&mut self) -> SpanBatch {
        SpanBatch {
            spans: std::mem::take(&mut self.spans),
            strings: self.strings.clone(),
            links: std::mem::take(&mut self.links),
        }
    }
}

/// A span as plain owned values: the form tests and writers use, independent of any interner.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OwnedSpan {
    /// See [`Span::trace_id`].
    pub trace_id: TraceId,
    /// See [`Span::span_id`].
    pub span_id: SpanId,
    /// See [`Span::parent_span_id`].
    pub parent_span_id: Option<SpanId>,
    /// See [`Span::service`].
    pub service: String,
    /// See [`Span::name`].
    pub name: String,
    /// See [`Span::kind`].
    pub kind: SpanKindOrd,
    /// See [`Span::start_ns`].
    pub start_ns: i64,
    /// See [`Span::end_ns`].
    pub end_ns: i64,
    /// See [`Span::status`].
    pub status: StatusOrd,
    /// See [`Span::peer`].
    pub peer: Option<String>,
    /// See [`Span::peer_kind`].
    pub peer_kind: PeerKind,
    /// See [`Span::http_route`].
    pub http_route: Option<String>,
    /// See [`Span::rpc_method`].
    pub rpc_method: Option<String>,
    /// See [`Span::error_type`].
    pub error_type: Option<String>,
    /// See [`Span::experiment`].
    pub experiment: Option<String>,
    /// See [`SpanLink`]: the linked span's (trace id, span id).
    pub link: Option<(TraceId, SpanId)>,
}

/// [`SpanKind`] as an orderable value (its OTLP number).
pub type SpanKindOrd = u8;
/// [`StatusCode`] as an orderable value (its OTLP number; 3 for [`StatusCode::Unknown`]).
pub type StatusOrd = u8;

impl OwnedSpan {
    /// The span kind.
    pub fn span_kind(&self) -> SpanKind {
        SpanKind::from_i32(i32::from(self.kind))
    }

    /// The status.
    pub fn status_code(&self) -> StatusCode {
        StatusCode::from_ord(self.status)
    }
}

impl SpanBatch {
    /// Every span as an [`OwnedSpan`].
    pub fn to_owned_spans(&self) -> Vec<OwnedSpan> {
        let opt = |s: Option<Sym>| s.map(|s| self.str(s).to_string());
        let mut links = self.links.iter().peekable();
        self.spans
            .iter()
            .enumerate()
            .map(|(i, s)| OwnedSpan {
                trace_id: s.trace_id,
                span_id: s.span_id,
                parent_span_id: s.parent_span_id,
                service: self.str(s.service).to_string(),
                name: self.str(s.name).to_string(),
                kind: s.kind as u8,
                start_ns: s.start_ns,
                end_ns: s.end_ns,
                status: s.status as u8,
                peer: opt(s.peer),
                peer_kind: s.peer_kind,
                http_route: opt(s.http_route),
                rpc_method: opt(s.rpc_method),
                error_type: opt(s.error_type),
                experiment: opt(s.experiment),
                link: links
                    .next_if(|l| l.span as usize == i)
                    .map(|l| (l.trace_id, l.span_id)),
            })
            .collect()
    }

    /// Appends an owned span, interning its strings.
    pub fn push_owned(&mut self, s: &OwnedSpan) {
        let mut opt = |v: &Option<String>| v.as_deref().map(|v| self.strings.intern(v));
        let peer = opt(&s.peer);
        let http_route = opt(&s.http_route);
        let rpc_method = opt(&s.rpc_method);
        let error_type = opt(&s.error_type);
        let experiment = opt(&s.experiment);
        let service = self.strings.intern(&s.service);
        let name = self.strings.intern(&s.name);
        self.spans.push(Span {
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            service,
            name,
            kind: s.span_kind(),
            start_ns: s.start_ns,
            end_ns: s.end_ns,
            status: s.status_code(),
            peer,
            peer_kind: s.peer_kind,
            http_route,
            rpc_method,
            error_type,
            experiment,
        });
        if let Some((t, s)) = s.link {
            self.link_last(t, s);
        }
    }
}

/// Lower-case hex of bytes.
pub fn to_hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// Hex digit values by byte; 0xff for a byte that is not a hex digit.
const HEX_VALUE: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut c = 0;
    while c < 256 {
        t[c] = match c as u8 {
            b'0'..=b'9' => c as u8 - b'0',
            b'a'..=b'f' => c as u8 - b'a' + 10,
            b'A'..=b'F' => c as u8 - b'A' + 10,
            _ => 0xff,
        };
        c += 1;
    }
    t
};

/// Decodes hex (either case) into `out`, right-aligned and zero-padded on the left when shorter
/// (Zipkin's 64-bit trace ids become 128-bit ones with a zero high half). `None` when the text is
/// not hex, has odd length, or is longer than `out`.
pub fn decode_hex_into(text: &[u8], out: &mut [u8]) -> Option<()> {
    if !text.len().is_multiple_of(2) || text.len() > out.len() * 2 {
        return None;
    }
    let pad = out.len() - text.len() / 2;
    for b in out.iter_mut().take(pad) {
        *b = 0;
    }
    let out = out.get_mut(pad..)?;
    // Eight digits at a time, then table lookups without a branch per digit.
    let mut words = text.chunks_exact(8);
    let mut outs = out.chunks_exact_mut(4);
    for (word, o) in (&mut words).zip(&mut outs) {
        o.copy_from_slice(&hex8(word)?);
    }
    let mut bad = 0u8;
    for (o, pair) in outs
        .into_remainder()
        .iter_mut()
        .zip(words.remainder().chunks_exact(2))
    {
        let (hi, lo) = (HEX_VALUE[pair[0] as usize], HEX_VALUE[pair[1] as usize]);
        bad |= hi | lo;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad & 0xf0 == 0).then_some(())
}

/// Eight hex digits (either case) to four bytes, SWAR: every digit is checked and converted in
/// a handful of word operations. `None` if any byte is not a hex digit.
fn hex8(chunk: &[u8]) -> Option<[u8; 4]> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut w = [0u8; 8];
    w.copy_from_slice(chunk.get(..8)?);
    let x = u64::from_le_bytes(w);
    if x & HI != 0 {
        return None; // not ASCII
    }
    // For bytes below 0x80: the high bit of each byte that is >= lo, and of each that is <= hi.
    let ge = |v: u64, lo: u64| v.wrapping_add((0x80 - lo) * LO) & HI;
    let le = |v: u64, hi: u64| !v.wrapping_add((0x7f - hi) * LO) & HI;
    let lower = x | (0x20 * LO);
    let digit = ge(x, 0x30) & le(x, 0x39);
    let alpha = ge(lower, 0x61) & le(lower, 0x66);
    if digit | alpha != HI {
        return None;
    }
    let v = (lower & (0x0f * LO)) + (alpha >> 7) * 9;
    // Two digits per byte (the first is the high nibble), then the four bytes together.
    let pairs = ((v & 0x000f_000f_000f_000f) << 4) | ((v >> 8) & 0x000f_000f_000f_000f);
    let packed = (pairs | (pairs >> 8)) & 0x0000_ffff_0000_ffff;
    let packed = (packed | (packed >> 16)) & 0xffff_ffff;
    let b = packed.to_le_bytes();
    Some([b[0], b[1], b[2], b[3]])
}

/// Decodes an id that is hex of exactly `2 * N` digits, or up to `2 * N` digits when `allow_short`.
pub fn parse_hex_id<const N: usize>(text: &str, allow_short: bool) -> Option<[u8; N]> {
    let t = text.as_bytes();
    if t.is_empty() || (!allow_short && t.len() != 2 * N) {
        return None;
    }
    let mut out = [0u8; N];
    decode_hex_into(t, &mut out)?;
    Some(out)
}

/// Decodes standard base64 (with or without padding) into exactly `N` bytes.
pub fn parse_base64_id<const N: usize>(text: &str) -> Option<[u8; N]> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let t = text.trim_end_matches('=').as_bytes();
    let mut out = [0u8; N];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut n = 0;
    for &c in t {
        acc = (acc << 6) | val(c)?;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if n >= N {
                return None;
            }
            out[n] = (acc >> bits) as u8;
            n += 1;
        }
    }
    (n == N).then_some(out)
}

/// A stable 64-bit hash (FNV-1a), used to derive ids from text that is not hex.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn word_hex_decoding_matches_a_digit_at_a_time(
            text in prop_oneof![
                prop::collection::vec(prop::sample::select(b"0123456789abcdefABCDEF".to_vec()), 0..34),
                prop::collection::vec(prop::sample::select(b"0123456789abcdefABCDEFgG/:@` \xff".to_vec()), 0..34),
            ],
        ) {
            let mut out = [0u8; 16];
            let got = decode_hex_into(&text, &mut out).map(|()| out);
            let want = (text.len() % 2 == 0 && text.len() <= 32
                && text.iter().all(u8::is_ascii_hexdigit))
                .then(|| {
                    let mut o = [0u8; 16];
                    let pad = 16 - text.len() / 2;
                    for (k, pair) in text.chunks_exact(2).enumerate() {
                        let s = std::str::from_utf8(pair).unwrap();
                        o[pad + k] = u8::from_str_radix(s, 16).unwrap();
                    }
                    o
                });
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn hex_round_trip_and_padding() {
        let id: [u8; 16] =
            parse_hex_id("5B8EFFF798038103D269B633813FC60C", false).unwrap_or_default();
        assert_eq!(to_hex(&id), "5b8efff798038103d269b633813fc60c");
        let short: [u8; 16] = parse_hex_id("978883983d506fa5", true).unwrap_or_default();
        assert_eq!(to_hex(&short), "0000000000000000978883983d506fa5");
        assert!(parse_hex_id::<8>("978883983d506fa", true).is_none());
        assert!(parse_hex_id::<8>("zz8883983d506fa5", false).is_none());
        assert!(parse_hex_id::<8>("978883983d506fa5aa", true).is_none());
    }

    #[test]
    fn base64_ids() {
        // 0x5b8efff798038103 as base64
        let id: Option<[u8; 8]> = parse_base64_id("W47/95gDgQM=");
        assert_eq!(id.map(|i| to_hex(&i)), Some("5b8efff798038103".to_string()));
        assert!(parse_base64_id::<8>("W47/").is_none());
    }

    #[test]
    fn kinds_and_status_by_name() {
        assert_eq!(
            SpanKind::from_name("SPAN_KIND_SERVER"),
            Some(SpanKind::Server)
        );
        assert_eq!(SpanKind::from_name("client"), Some(SpanKind::Client));
        assert_eq!(SpanKind::from_name("bogus"), None);
        assert_eq!(
            StatusCode::from_name("STATUS_CODE_ERROR"),
            Some(StatusCode::Error)
        );
    }

    #[test]
    fn interner_reuses_symbols() {
        let mut i = Interner::new();
        let a = i.intern("a");
        let b = i.intern("b");
        assert_eq!(i.intern("a"), a);
        assert_ne!(a, b);
        assert_eq!(i.resolve(b), "b");
        assert_eq!(i.resolve(99), "");
    }
}
