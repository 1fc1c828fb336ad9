//! Zipkin v2 JSON: an array of spans (`/api/v2/trace/{id}`), or an array of traces, each an array of
//! spans (`/api/v2/traces`).
//!
//! The array is streamed: one element (a span, or a trace) is read at a time and each span becomes
//! a small [`Span`] at once, so no JSON tree of the file is ever built. An element that is valid JSON
//! but not a span (a field of the wrong type, a missing id, ...) is a bad record located as `[i]` or
//! `[i][j]`; invalid or truncated JSON, or a top-level value that is not an array, makes the whole
//! file unreadable.
//!
//! The converted spans of a file are kept until its end, because two fix-ups need all spans of a
//! trace:
//!
//! - **Fragments.** A tracer may report one span in pieces: a late copy with the same trace id, id
//!   and local service but no timestamp, carrying only tags or annotations. As Zipkin does, such a
//!   fragment is merged into the timestamped span it belongs to. A timestamp-less span with no such
//!   partner is a bad record.
//! - **Shared ids.** Zipkin lets a client and the server it called share one span id (`shared: true`
//!   on the server side). The span table needs one id per span, so each server half gets an id
//!   derived from the shared one, its parent becomes the client half, and the server's own children
//!   (its service, parent = the shared id) follow it. One client may face several server halves (a
//!   call handled by several instances): each gets its own id, and a child follows the server of its
//!   service on the same host, else the one whose interval holds the child's start, else the first.
//!   A group without exactly one client half is left as it is.

use std::fmt;
use std::io::BufRead;

use rustc_hash::FxHashMap;
use serde::de::{self, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::error::Category;

use crate::lenient::{leaf, next, object, Any, Checked, Known, Leaf, MapBody, Object, Shape};
use crate::otlp_json::Attrs;
use crate::read::{Ctx, Format};
use crate::span::{fnv1a64, parse_hex_id, Span, SpanId, SpanKind, StatusCode, Sym, TraceId};
use crate::IngestError;

/// Reads one Zipkin v2 JSON file (see the module docs) and pushes its spans, in file order.
pub(crate) fn read(reader: &mut dyn BufRead, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let mut st = State {
        ctx,
        recs: Vec::new(),
        fragments: Vec::new(),
        elements: 0,
        fatal: None,
    };
    let mut de = serde_json::Deserializer::from_reader(reader);
    let parsed = (&mut de)
        .deserialize_seq(TopVisitor { st: &mut st })
        .and_then(|()| de.end());
    if let Some(e) = st.fatal.take() {
        return Err(e); // a bad record in strict mode
    }
    let State {
        ctx,
        mut recs,
        fragments,
        elements,
        ..
    } = st;
    if let Err(e) = parsed {
        let what = match e.classify() {
            // Kept as I/O: the caller tells a damaged compressed stream by it.
            Category::Io => return Err(IngestError::io(ctx.path, std::io::Error::from(e))),
            Category::Eof => "truncated JSON",
            Category::Syntax => "invalid JSON",
            Category::Data => "not a JSON array of Zipkin v2 spans",
        };
        return Err(ctx.unreadable(Format::ZipkinJson, format!("{what}: {e}")));
    }
    if elements == 0 {
        return Err(ctx.unreadable(Format::ZipkinJson, "the array holds no span"));
    }
    merge_fragments(&mut recs, fragments, ctx)?;
    if recs.is_empty() {
        let first = ctx
            .first_problem()
            .map_or(String::new(), |p| format!(" (the first: {p})"));
        return Err(ctx.unreadable(
            Format::ZipkinJson,
            format!("no element is a valid Zipkin v2 span{first}"),
        ));
    }
    split_shared(&mut recs);
    // The converted spans hold symbols of the batch's interner: keep the strings across flushes.
    for r in recs {
        ctx.push(r.span);
        ctx.maybe_flush_keeping_strings()?;
    }
    Ok(())
}

/// A converted span, with what the fix-ups still need to know about it.
struct Rec {
    span: Span,
    /// Zipkin's `shared` flag (set on the server half of a shared id).
    shared: bool,
    /// False for a fragment (no `timestamp`): its `start_ns` is then 0 and its `end_ns` its duration.
    timestamped: bool,
    /// A hash of the local endpoint's address and port (0 when it has none), to tell instances apart.
    host: u64,
}

impl Rec {
    fn is_client_half(&self) -> bool {
        !self.shared
            && matches!(
                self.span.kind,
                SpanKind::Client | SpanKind::Producer | SpanKind::Unspecified
            )
    }

    fn is_server_half(&self) -> bool {
        self.shared || self.span.kind.is_incoming()
    }
}

/// Where an element is: `[i]` in the top-level array, or `[i][j]` inside the trace at `[i]`.
#[derive(Clone, Copy)]
struct Loc {
    i: usize,
    j: Option<usize>,
}

impl fmt::Display for Loc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.j {
            None => write!(f, "[{}]", self.i),
            Some(j) => write!(f, "[{}][{j}]", self.i),
        }
    }
}

/// What the streaming pass collects.
struct State<'a, 'c> {
    ctx: &'a mut Ctx<'c>,
    /// Timestamped spans, in file order.
    recs: Vec<Rec>,
    /// Spans without a timestamp, waiting for the span they belong to.
    fragments: Vec<(Loc, Rec)>,
    /// Elements that should have been spans, good or bad.
    elements: usize,
    /// A strict-mode bad record, carried out past serde (which only knows its own error type).
    fatal: Option<IngestError>,
}

impl State<'_, '_> {
    /// Counts a bad record; in strict mode, stops the parse.
    fn bad<E: de::Error>(&mut self, loc: Loc, reason: String) -> Result<(), E> {
        match self.ctx.bad(loc.to_string(), reason) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.fatal = Some(e);
                Err(E::custom("stopped at a bad record (strict mode)"))
            }
        }
    }

    fn span<E: de::Error>(&mut self, loc: Loc, z: Checked<ZSpan>) -> Result<(), E> {
        self.elements += 1;
        let rec = z
            .map_err(|p| format!("not a Zipkin v2 span: {p}"))
            .and_then(|z| convert(z, self.ctx));
        match rec {
            Ok(rec) if rec.timestamped => self.recs.push(rec),
            Ok(rec) => self.fragments.push((loc, rec)),
            Err(reason) => self.bad(loc, reason)?,
        }
        Ok(())
    }

    fn not_a_span<E: de::Error>(&mut self, loc: Loc, found: &str) -> Result<(), E> {
        self.elements += 1;
        let expected = if loc.j.is_none() {
            "a span object or an array of spans"
        } else {
            "a span object"
        };
        self.bad(
            loc,
            format!("not a Zipkin v2 span: found {found}, expected {expected}"),
        )
    }
}

// Streaming: the top-level array, its elements, and a lenient reading of a span object.

struct TopVisitor<'s, 'a, 'c> {
    st: &'s mut State<'a, 'c>,
}

impl<'de> Visitor<'de> for TopVisitor<'_, '_, '_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of Zipkin v2 spans, or of traces (arrays of spans)")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut i = 0;
        while seq
            .next_element_seed(Any(Element {
                st: &mut *self.st,
                loc: Loc { i, j: None },
            }))?
            .is_some()
        {
            i += 1;
        }
        Ok(())
    }
}

/// One element of the top-level array (`loc.j` is `None`: a span or a trace) or of a trace (a
/// span).
struct Element<'s, 'a, 'c> {
    st: &'s mut State<'a, 'c>,
    loc: Loc,
}

impl<'de> Shape<'de> for Element<'_, '_, '_> {
    type Value = ();
    fn map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let z = ZSpan::read(map)?;
        self.st.span(self.loc, z)
    }
    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Loc { i, j: None } = self.loc else {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return self.st.not_a_span(self.loc, "an array");
        };
        let mut j = 0;
        while seq
            .next_element_seed(Any(Element {
                st: &mut *self.st,
                loc: Loc { i, j: Some(j) },
            }))?
            .is_some()
        {
            j += 1;
        }
        Ok(())
    }
    fn leaf<E: de::Error>(self, v: Leaf) -> Result<(), E> {
        self.st.not_a_span(self.loc, v.what())
    }
}

/// A span object as read. Every field is taken whatever its JSON type and the first unusable one is
/// reported, so that a bad span is skipped without stopping the parse.
#[derive(Default)]
struct ZSpan {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    timestamp: Option<u64>,
    duration: Option<u64>,
    local: Option<Endpoint>,
    remote: Option<Endpoint>,
    tags: Tags,
    shared: bool,
}

/// The fields of a span object that augur reads.
const SPAN_FIELDS: &[&str] = &[
    "traceId",
    "id",
    "parentId",
    "kind",
    "name",
    "timestamp",
    "duration",
    "localEndpoint",
    "remoteEndpoint",
    "tags",
    "shared",
];

impl MapBody for ZSpan {
    const WHAT: &'static str = "a span object";
    fn read<'de, A: MapAccess<'de>>(mut map: A) -> Result<Checked<Self>, A::Error> {
        let mut z = ZSpan::default();
        let mut problem: Option<String> = None;
        while let Some(key) = map.next_key_seed(Known(SPAN_FIELDS))? {
            let checked = match key {
                Some(k @ "traceId") => leaf(&mut map)?.string(k).map(|v| z.trace_id = v),
                Some(k @ "id") => leaf(&mut map)?.string(k).map(|v| z.id = v),
                Some(k @ "parentId") => leaf(&mut map)?.string(k).map(|v| z.parent_id = v),
                Some(k @ "kind") => leaf(&mut map)?.string(k).map(|v| z.kind = v),
                Some(k @ "name") => leaf(&mut map)?.string(k).map(|v| z.name = v),
                Some(k @ "timestamp") => leaf(&mut map)?.integer(k).map(|v| z.timestamp = v),
                Some(k @ "duration") => leaf(&mut map)?.integer(k).map(|v| z.duration = v),
                Some(k @ "localEndpoint") => {
                    object(k, next::<Object<Endpoint>, _>(&mut map)?).map(|v| z.local = v)
                }
                Some(k @ "remoteEndpoint") => {
                    object(k, next::<Object<Endpoint>, _>(&mut map)?).map(|v| z.remote = v)
                }
                Some(k @ "tags") => object(k, next::<Object<Tags>, _>(&mut map)?)
                    .map(|v| z.tags = v.unwrap_or_default()),
                // A null `shared` is false (as before).
                Some(k @ "shared") => leaf(&mut map)?
                    .boolean(k)
                    .map(|v| z.shared = v.unwrap_or(false)),
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
            None => Ok(z),
            Some(p) => Err(p),
        })
    }
}

/// A span's local or remote endpoint: the service, and (local only) which instance.
#[derive(Default)]
struct Endpoint {
    service_name: Option<String>,
    /// A hash of `ipv4`, `ipv6` and `port`; 0 when none is given.
    host: u64,
}

impl MapBody for Endpoint {
    const WHAT: &'static str = "an endpoint object";
    fn read<'de, A: MapAccess<'de>>(mut map: A) -> Result<Checked<Self>, A::Error> {
        let mut e = Endpoint::default();
        let mut problem = None;
        let mut host: Vec<u8> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let v = leaf(&mut map)?;
            match (key.as_str(), v) {
                ("serviceName", v) => match v.string("serviceName") {
                    Ok(s) => e.service_name = s,
                    Err(p) => {
                        problem.get_or_insert(p);
                    }
                },
                // Address fields are only compared, never validated (as before).
                (k @ ("ipv4" | "ipv6"), Leaf::Str(s)) => {
                    host.extend_from_slice(k.as_bytes());
                    host.extend_from_slice(s.as_bytes());
                }
                ("port", Leaf::U64(p)) => {
                    host.extend_from_slice(b"port");
                    host.extend_from_slice(&p.to_be_bytes());
                }
                _ => {}
            }
        }
        if !host.is_empty() {
            e.host = fnv1a64(&host).max(1);
        }
        Ok(match problem {
            None => Ok(e),
            Some(p) => Err(p),
        })
    }
}

/// What augur keeps of a span's tags.
#[derive(Default)]
struct Tags {
    attrs: Attrs<'static>,
    /// An `error` tag, or `otel.status_code` = `ERROR`.
    error: bool,
}

impl MapBody for Tags {
    const WHAT: &'static str = "a tags object";
    fn read<'de, A: MapAccess<'de>>(mut map: A) -> Result<Checked<Self>, A::Error> {
        let mut t = Tags::default();
        let mut problem = None;
        while let Some(key) = map.next_key::<String>()? {
            let v = match leaf(&mut map)? {
                Leaf::Str(v) => v,
                other => {
                    // Zipkin tag values are strings (as before, null is not one either).
                    problem.get_or_insert_with(|| {
                        format!("{key:?} is {}, not a string", other.what())
                    });
                    continue;
                }
            };
            if key == "error" || (key == "otel.status_code" && v.eq_ignore_ascii_case("error")) {
                t.error = true;
            }
            t.attrs.offer(&key, v.into());
        }
        Ok(match problem {
            None => Ok(t),
            Some(p) => Err(p),
        })
    }
}

// Conversion and the fix-ups.

fn convert(z: ZSpan, ctx: &mut Ctx<'_>) -> Result<Rec, String> {
    let tid = z.trace_id.ok_or("missing traceId")?;
    let trace_id: TraceId =
        parse_hex_id(&tid, true).ok_or_else(|| format!("bad traceId {tid:?}"))?;
    let id = z.id.ok_or("missing id")?;
    let span_id: SpanId = parse_hex_id(&id, true).ok_or_else(|| format!("bad id {id:?}"))?;
    let parent_span_id = match z.parent_id.as_deref() {
        None | Some("") => None,
        Some(p) => Some(parse_hex_id::<8>(p, true).ok_or_else(|| format!("bad parentId {p:?}"))?),
    };
    let micros_to_ns = |us: u64, what: &str| {
        i64::try_from(us)
            .ok()
            .and_then(|t| t.checked_mul(1000))
            .ok_or_else(|| format!("{what} out of range"))
    };
    // A span without a timestamp is a fragment, merged later into the span it belongs to.
    let start_ns = match z.timestamp {
        Some(ts) => Some(micros_to_ns(ts, "timestamp")?),
        None => None,
    };
    let dur = micros_to_ns(z.duration.unwrap_or(0), "duration")?;
    let kind = match z.kind.as_deref() {
        None => SpanKind::Unspecified,
        Some(k) => SpanKind::from_name(k).ok_or_else(|| format!("unknown kind {k:?}"))?,
    };
    let Tags { mut attrs, error } = z.tags;
    // The remote endpoint's service is the peer before any tag (as `peer.service`, the most
    // specific peer attribute, offered first).
    if let Some(remote) = z
        .remote
        .and_then(|e| e.service_name)
        .filter(|s| !s.is_empty())
    {
        attrs.peer = Some((crate::peer_rank("peer.service").unwrap_or(0), remote.into()));
    }
    let strings = &mut ctx.batch.strings;
    let service = strings.intern(
        z.local
            .as_ref()
            .and_then(|e| e.service_name.as_deref())
            .filter(|s| !s.is_empty())
            .unwrap_or("unknown_service"),
    );
    let mut opt = |v: Option<std::borrow::Cow<'_, str>>| v.map(|v| strings.intern(&v));
    let peer = if kind.is_outgoing() || kind == SpanKind::Unspecified {
        opt(attrs.peer.map(|(_, v)| v))
    } else {
        None
    };
    let span = Span {
        trace_id,
        span_id,
        parent_span_id,
        service,
        name: 0,
        kind,
        start_ns: start_ns.unwrap_or(0),
        end_ns: start_ns.unwrap_or(0).saturating_add(dur),
        status: if error {
            StatusCode::Error
        } else {
            StatusCode::Unset
        },
        peer,
        peer_kind: attrs.peer_kind,
        http_route: opt(attrs.http_route),
        rpc_method: opt(attrs.rpc_method),
        error_type: opt(attrs.error_type),
        experiment: opt(attrs.experiment),
    };
    let name = strings.intern(z.name.as_deref().unwrap_or(""));
    Ok(Rec {
        span: Span { name, ..span },
        shared: z.shared,
        timestamped: start_ns.is_some(),
        host: z.local.map_or(0, |e| e.host),
    })
}

/// Merges each timestamp-less fragment into the timestamped span with the same trace id, id and
/// local service (see the module docs); a fragment with no such span is a bad record.
fn merge_fragments(
    recs: &mut [Rec],
    fragments: Vec<(Loc, Rec)>,
    ctx: &mut Ctx<'_>,
) -> Result<(), IngestError> {
    if fragments.is_empty() {
        return Ok(());
    }
    type Key = (TraceId, SpanId, Sym);
    let key = |s: &Span| -> Key { (s.trace_id, s.span_id, s.service) };
    let mut partners: FxHashMap<Key, Vec<usize>> = fragments
        .iter()
        .map(|(_, f)| (key(&f.span), Vec::new()))
        .collect();
    for (i, r) in recs.iter().enumerate() {
        if let Some(p) = partners.get_mut(&key(&r.span)) {
            p.push(i);
        }
    }
    for (loc, frag) in fragments {
        let candidates = partners.get(&key(&frag.span)).map_or(&[][..], |p| &p[..]);
        let fits = |&&i: &&usize| {
            let r: &Rec = &recs[i];
            let kinds = frag.span.kind == SpanKind::Unspecified
                || r.span.kind == SpanKind::Unspecified
                || r.span.kind == frag.span.kind;
            kinds && (!frag.shared || r.is_server_half())
        };
        let target = candidates
            .iter()
            .filter(fits)
            .find(|&&i| frag.host != 0 && recs[i].host == frag.host)
            .or_else(|| candidates.iter().find(fits))
            .copied();
        match target {
            Some(i) => absorb(&mut recs[i].span, &frag.span, ctx),
            None => ctx.bad(
                loc.to_string(),
                "no timestamp, and no timestamped span with the same traceId, id and \
                 localEndpoint service to merge it into (an incomplete span fragment)",
            )?,
        }
    }
    Ok(())
}

/// Completes `main` with what the fragment `frag` knows and `main` lacks.
fn absorb(main: &mut Span, frag: &Span, ctx: &Ctx<'_>) {
    if main.kind == SpanKind::Unspecified {
        main.kind = frag.kind;
    }
    if frag.status == StatusCode::Error {
        main.status = StatusCode::Error;
    }
    if main.peer.is_none() && (main.kind.is_outgoing() || main.kind == SpanKind::Unspecified) {
        main.peer = frag.peer;
    }
    if ctx.batch.str(main.name).is_empty() {
        main.name = frag.name;
    }
    if main.end_ns == main.start_ns {
        // A fragment's end is its duration.
        main.end_ns = main.start_ns.saturating_add(frag.end_ns);
    }
    main.parent_span_id = main.parent_span_id.or(frag.parent_span_id);
    main.http_route = main.http_route.or(frag.http_route);
    main.rpc_method = main.rpc_method.or(frag.rpc_method);
    main.error_type = main.error_type.or(frag.error_type);
    main.experiment = main.experiment.or(frag.experiment);
}

/// Gives each server half of a shared span id an id of its own (see the module docs). A group is
/// the spans of one trace with one id; it is split when it holds exactly one client half (CLIENT,
/// PRODUCER or no kind, not `shared`) and at least one server half (SERVER, CONSUMER or `shared`).
fn split_shared(recs: &mut [Rec]) {
    let id_of = |r: &Rec| (r.span.trace_id, r.span.span_id);
    let mut order: Vec<usize> = (0..recs.len()).collect();
    order.sort_by_key(|&i| id_of(&recs[i])); // stable: file order within a group
                                             // The server halves of each group that is split, with their new ids.
    let mut groups: FxHashMap<(TraceId, SpanId), Vec<(usize, SpanId)>> = FxHashMap::default();
    for group in order.chunk_by(|&a, &b| id_of(&recs[a]) == id_of(&recs[b])) {
        let [first, _, ..] = *group else {
            continue; // an id of its own
        };
        let clients = group.iter().filter(|&&i| recs[i].is_client_half()).count();
        let servers = group.iter().filter(|&&i| recs[i].is_server_half());
        if clients != 1 || servers.clone().next().is_none() {
            continue;
        }
        let shared = recs[first].span.span_id;
        let mut taken = vec![shared];
        let halves = servers
            .map(|&i| {
                let id = derived_id(&shared, &taken);
                taken.push(id);
                (i, id)
            })
            .collect();
        groups.insert(id_of(&recs[first]), halves);
    }
    if groups.is_empty() {
        return;
    }
    // Children of a shared id that belong to a server's service follow that server.
    for i in 0..recs.len() {
        let r = &recs[i];
        let Some(parent) = r.span.parent_span_id else {
            continue;
        };
        let Some(halves) = groups.get(&(r.span.trace_id, parent)) else {
            continue;
        };
        if let Some(new_parent) = server_for(recs, halves, r) {
            recs[i].span.parent_span_id = Some(new_parent);
        }
    }
    // Then the servers themselves (a server half is never re-parented as a child above: its
    // parent is set here, last).
    for ((_, shared), halves) in &groups {
        for &(i, id) in halves {
            recs[i].span.span_id = id;
            recs[i].span.parent_span_id = Some(*shared);
        }
    }
}

/// The new id of the server half that `child` (whose parent is the group's shared id) belongs to:
/// one of its service on the same host, else one of its service whose interval holds the child's
/// start, else the first of its service; `None` when no server half is of its service.
fn server_for(recs: &[Rec], halves: &[(usize, SpanId)], child: &Rec) -> Option<SpanId> {
    let c = &child.span;
    let of_service = |h: &&(usize, SpanId)| recs[h.0].span.service == c.service;
    let same_host = |h: &&(usize, SpanId)| child.host != 0 && recs[h.0].host == child.host;
    let holds_start = |h: &&(usize, SpanId)| {
        let s = &recs[h.0].span;
        s.start_ns <= c.start_ns && c.start_ns <= s.end_ns
    };
    let pick = |host_only: bool| {
        let pool = || {
            halves
                .iter()
                .filter(of_service)
                .filter(move |h| !host_only || same_host(h))
        };
        pool()
            .find(holds_start)
            .or_else(|| pool().next())
            .map(|h| h.1)
    };
    pick(true).or_else(|| pick(false))
}

/// A stable id for a server half of a shared span, derived from the shared id: the first one
/// (`k = 0`) is the id earlier versions gave the single server half; the next ones add `k`. Never
/// zero nor one of `taken`.
fn derived_id(shared: &SpanId, taken: &[SpanId]) -> SpanId {
    let mut k: u32 = 0;
    loop {
        let mut text = Vec::with_capacity(8 + 13 + 4);
        text.extend_from_slice(shared);
        text.extend_from_slice(b"zipkin-shared");
        if k > 0 {
            text.extend_from_slice(&k.to_be_bytes());
        }
        let id = fnv1a64(&text).to_be_bytes();
        if id != [0; 8] && !taken.contains(&id) {
            return id;
        }
        k = k.wrapping_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::read::ReadOptions;
    use crate::report::IngestReport;
    use crate::span::{to_hex, OwnedSpan, SpanBatch};
    use std::collections::{HashMap, HashSet};
    use std::path::Path;

    fn read_with(
        input: &mut dyn BufRead,
        strict: bool,
    ) -> (Result<(), IngestError>, Vec<OwnedSpan>, IngestReport) {
        let opts = ReadOptions {
            strict,
            ..ReadOptions::default()
        };
        let mut report = IngestReport::default();
        let mut out: Vec<SpanBatch> = Vec::new();
        let mut sink = |b: SpanBatch| {
            out.push(b);
            Ok(())
        };
        let mut ctx = Ctx::new(Path::new("z.json"), &opts, &mut report, &mut sink);
        let res = read(input, &mut ctx).and_then(|()| ctx.flush());
        let spans = out.iter().flat_map(|b| b.to_owned_spans()).collect();
        (res, spans, report)
    }

    fn read_text(
        text: &str,
        strict: bool,
    ) -> (Result<(), IngestError>, Vec<OwnedSpan>, IngestReport) {
        read_with(&mut std::io::Cursor::new(text.as_bytes().to_vec()), strict)
    }

    fn hex(id: &[u8]) -> String {
        to_hex(id)
    }

    /// A span object; `extra` is spliced in (starting with a comma) when not empty.
    fn span(id: &str, parent: Option<&str>, service: &str, extra: &str) -> String {
        let parent = parent.map_or(String::new(), |p| format!(r#""parentId":"{p}","#));
        format!(
            r#"{{"traceId":"00000000000000aa",{parent}"id":"{id}","name":"op","localEndpoint":{{"serviceName":"{service}"}}{extra}}}"#
        )
    }

    const TS: &str = r#","timestamp":1000,"duration":10"#;

    #[test]
    fn reads_spans_and_traces() {
        let a = span("0000000000000001", None, "front", TS);
        let b = span("0000000000000002", Some("0000000000000001"), "back", TS);
        let (res, spans, report) = read_text(&format!("[{a}, [{b}], []]"), false);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(report.rejected, 0);
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].service, "front");
        assert_eq!((spans[0].start_ns, spans[0].end_ns), (1_000_000, 1_010_000));
        assert_eq!(hex(&spans[0].trace_id), "000000000000000000000000000000aa");
        assert_eq!(spans[1].parent_span_id, Some(spans[0].span_id));
    }

    #[test]
    fn bad_elements_are_skipped_and_located() {
        let good = span("0000000000000001", None, "front", TS);
        let wrong_type = r#"{"traceId":5,"id":"0000000000000002","timestamp":1}"#;
        let no_id = r#"{"traceId":"00000000000000aa","timestamp":1}"#;
        let bad_tag = span(
            "0000000000000004",
            None,
            "x",
            r#","timestamp":1,"tags":{"n":3}"#,
        );
        let text = format!(r#"[{good}, {wrong_type}, [{no_id}, "text", {bad_tag}], 7]"#);
        let (res, spans, report) = read_text(&text, false);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(spans.len(), 1);
        assert_eq!(report.rejected, 5);
        let problems: Vec<(&str, &str)> = report
            .problems
            .iter()
            .map(|p| (p.location.as_str(), p.reason.as_str()))
            .collect();
        assert_eq!(problems[0].0, "[1]");
        assert!(
            problems[0].1.contains("traceId is a number"),
            "{problems:?}"
        );
        assert_eq!(problems[1], ("[2][0]", "missing id"));
        assert_eq!(problems[2].0, "[2][1]");
        assert!(problems[2].1.contains("found a string"), "{problems:?}");
        assert_eq!(problems[3].0, "[2][2]");
        assert!(
            problems[3].1.contains(r#"tags: "n" is a number"#),
            "{problems:?}"
        );
        assert_eq!(problems[4].0, "[3]");
        assert!(problems[4].1.contains("found a number"), "{problems:?}");

        // Strict mode: the first bad element is the error, with its location.
        let (res, _, _) = read_text(&text, true);
        match res {
            Err(IngestError::BadRecord { location, .. }) => assert_eq!(location, "[1]"),
            other => panic!("expected a bad record, got {other:?}"),
        }
    }

    #[test]
    fn whole_file_errors() {
        let good = span("0000000000000001", None, "front", TS);
        let truncated = format!("[{good}, {{\"traceId\": \"00");
        for (text, says) in [
            (truncated.as_str(), "truncated JSON"),
            ("[{\"id\": }]", "invalid JSON"),
            ("{\"traceId\": \"1\"}", "not a JSON array"),
            ("[]", "holds no span"),
            ("[[], []]", "holds no span"),
            (r#"[{"id": "zz"}]"#, "no element is a valid"),
        ] {
            let (res, _, _) = read_text(text, false);
            match res {
                Err(IngestError::Unreadable { reason, .. }) => {
                    assert!(reason.contains(says), "{text}: {reason}");
                }
                other => panic!("{text}: expected unreadable, got {other:?}"),
            }
        }
        let (res, _, _) = read_text(&truncated, false);
        let Err(IngestError::Unreadable { reason, .. }) = res else {
            panic!("truncated JSON must be unreadable");
        };
        assert!(reason.contains("line 1 column"), "{reason}");
    }

    #[test]
    fn fragments_merge_into_their_span() {
        // The fragment comes first, has no timestamp nor kind, and carries an error and a peer.
        let frag = span(
            "0000000000000002",
            Some("0000000000000001"),
            "back",
            r#","tags":{"error":"boom","peer.service":"db","http.route":"/r"}"#,
        );
        let main = span(
            "0000000000000002",
            Some("0000000000000001"),
            "back",
            r#","kind":"CLIENT","timestamp":2000,"duration":5"#,
        )
        .replace(r#""name":"op""#, r#""name":"""#);
        let other_service = span("0000000000000002", None, "elsewhere", "");
        let (res, spans, report) = read_text(&format!("[{frag}, {main}, {other_service}]"), false);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(spans.len(), 1, "{spans:?}");
        let s = &spans[0];
        assert_eq!(s.status_code(), StatusCode::Error);
        assert_eq!(s.peer.as_deref(), Some("db"));
        assert_eq!(s.http_route.as_deref(), Some("/r"));
        assert_eq!(s.name, "op");
        assert_eq!(s.span_kind(), SpanKind::Client);
        assert_eq!((s.start_ns, s.end_ns), (2_000_000, 2_005_000));
        // The fragment of another service has no partner: a bad record, not merged.
        assert_eq!(report.rejected, 1);
        assert_eq!(report.problems[0].location, "[2]");
        assert!(report.problems[0].reason.contains("no timestamp"));
    }

    #[test]
    fn one_client_and_one_server_keep_the_old_derived_id() {
        let shared = "00000000000000c1";
        let client = span(
            shared,
            Some("0000000000000001"),
            "front",
            r#","kind":"CLIENT","timestamp":10,"duration":10"#,
        );
        let server = span(
            shared,
            Some("0000000000000001"),
            "back",
            r#","kind":"SERVER","shared":true,"timestamp":12,"duration":5"#,
        );
        let child = span(
            "0000000000000003",
            Some(shared),
            "back",
            r#","timestamp":13,"duration":1"#,
        );
        let (res, spans, _) = read_text(&format!("[{client}, {server}, {child}]"), false);
        assert!(res.is_ok(), "{res:?}");
        let old: [u8; 8] = {
            let mut text = Vec::new();
            text.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0xc1]);
            text.extend_from_slice(b"zipkin-shared");
            fnv1a64(&text).to_be_bytes()
        };
        assert_eq!(spans[1].span_id, old);
        assert_eq!(spans[1].parent_span_id, Some(spans[0].span_id));
        assert_eq!(spans[2].parent_span_id, Some(old));
    }

    #[test]
    fn one_client_five_servers_get_five_ids() {
        let shared = "00000000000000c1";
        let host = |ip: &str| format!(r#""ipv4":"{ip}""#);
        let mut parts = vec![span(
            shared,
            Some("0000000000000001"),
            "bouncer",
            r#","kind":"CLIENT","timestamp":100"#,
        )];
        for k in 0..5 {
            // Servers without duration, starting after each other, each on its own host.
            let s = span(
                shared,
                Some("0000000000000001"),
                "pusher",
                &format!(r#","kind":"SERVER","shared":true,"timestamp":{}"#, 110 + k),
            )
            .replace(
                r#""serviceName":"pusher""#,
                &format!(r#""serviceName":"pusher",{}"#, host(&format!("10.0.0.{k}"))),
            );
            parts.push(s);
        }
        // A pusher child on host 10.0.0.3 that starts before its server (clock skew), and one with
        // no host that starts inside no server's interval; a child of the client's service.
        parts.push(
            span(
                "0000000000000010",
                Some(shared),
                "pusher",
                r#","timestamp":105,"duration":1"#,
            )
            .replace(
                r#""serviceName":"pusher""#,
                &format!(r#""serviceName":"pusher",{}"#, host("10.0.0.3")),
            ),
        );
        parts.push(span(
            "0000000000000011",
            Some(shared),
            "pusher",
            r#","timestamp":200"#,
        ));
        parts.push(span(
            "0000000000000012",
            Some(shared),
            "bouncer",
            r#","timestamp":101"#,
        ));
        let (res, spans, report) = read_text(&format!("[{}]", parts.join(",")), false);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(report.rejected, 0);
        let client_id = spans[0].span_id;
        let servers = &spans[1..6];
        let ids: HashSet<[u8; 8]> = servers.iter().map(|s| s.span_id).collect();
        assert_eq!(ids.len(), 5);
        assert!(!ids.contains(&client_id));
        assert!(servers.iter().all(|s| s.parent_span_id == Some(client_id)));
        assert_eq!(
            spans[6].parent_span_id,
            Some(servers[3].span_id),
            "same host"
        );
        assert_eq!(
            spans[7].parent_span_id,
            Some(servers[0].span_id),
            "the first"
        );
        assert_eq!(spans[8].parent_span_id, Some(client_id), "client's service");
    }

    #[test]
    fn servers_without_a_client_keep_their_id() {
        let shared = "00000000000000c1";
        let a = span(
            shared,
            None,
            "envoy",
            r#","kind":"SERVER","shared":true,"timestamp":1"#,
        );
        let b = span(shared, None, "envoy2", r#","kind":"SERVER","timestamp":1"#);
        let (res, spans, _) = read_text(&format!("[{a}, {b}]"), false);
        assert!(res.is_ok(), "{res:?}");
        assert!(spans
            .iter()
            .all(|s| hex(&s.span_id) == shared && s.parent_span_id.is_none()));
    }

    /// Every Zipkin fixture reads without a bad record, one span per id, and no missing parent.
    #[test]
    fn fixtures_read_cleanly() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/formats");
        if !dir.is_dir() {
            eprintln!("skipped: {} is absent", dir.display());
            return;
        }
        for (name, expected) in [
            ("zipkin-envoy.json", 1),
            ("zipkin-messaging-kafka.json", 28),
            ("zipkin-messaging.json", 4),
            ("zipkin-simple-db-p6.json", 5),
            ("zipkin-skew.json", 4),
            ("zipkin-yelp.json", 16),
            ("zipkin-smartthings-mobile-web-install.json", 957),
        ] {
            let Ok(file) = std::fs::File::open(dir.join(name)) else {
                eprintln!("skipped: {name} is absent");
                continue;
            };
            let (res, spans, report) = read_with(&mut std::io::BufReader::new(file), false);
            assert!(res.is_ok(), "{name}: {res:?}");
            assert_eq!(report.rejected, 0, "{name}: {:?}", report.problems);
            assert_eq!(spans.len(), expected, "{name}");
            let mut ids: HashMap<[u8; 16], HashSet<[u8; 8]>> = HashMap::new();
            for s in &spans {
                let fresh = ids.entry(s.trace_id).or_default().insert(s.span_id);
                assert!(fresh, "{name}: duplicate id {}", hex(&s.span_id));
            }
            for s in &spans {
                if let Some(p) = s.parent_span_id {
                    assert!(
                        ids[&s.trace_id].contains(&p),
                        "{name}: parent {} missing",
                        hex(&p)
                    );
                }
            }
        }
    }

    /// The real 1041-span trace of Zipkin's UI tests: 84 fragments merge away, one client faces five
    /// servers, and every span is accepted with every parent present.
    #[test]
    fn smartthings_fixture_reads_whole() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures/formats/zipkin-smartthings-mobile-web-install.json");
        let Ok(file) = std::fs::File::open(&path) else {
            eprintln!("skipped: {} is absent", path.display());
            return;
        };
        let (res, spans, report) = read_with(&mut std::io::BufReader::new(file), false);
        assert!(res.is_ok(), "{res:?}");
        assert_eq!(report.rejected, 0, "{:?}", report.problems);
        assert_eq!(spans.len(), 957);
        let mut ids: HashMap<[u8; 16], HashSet<[u8; 8]>> = HashMap::new();
        for s in &spans {
            assert!(
                ids.entry(s.trace_id).or_default().insert(s.span_id),
                "duplicate id"
            );
        }
        for s in &spans {
            if let Some(p) = s.parent_span_id {
                assert!(ids[&s.trace_id].contains(&p), "parent {} missing", hex(&p));
            }
        }
        assert_eq!(
            spans.iter().filter(|s| s.parent_span_id.is_none()).count(),
            1
        );
        // The five pusher servers on id cbab506b53f336fc record no duration; three pusher
        // children follow the server on their own host, though two start before it (clock skew).
        let start_of = |id: [u8; 8]| spans.iter().find(|s| s.span_id == id).map(|s| s.start_ns);
        for (child, server_start_us) in [
            ("017bfc73a014d42c", 1_543_549_826_258_568_i64),
            ("c1c06fd706fca9cb", 1_543_549_826_239_391),
            ("b6fdd2a6b74e32e5", 1_543_549_826_231_758),
        ] {
            let parent = spans
                .iter()
                .find(|s| hex(&s.span_id) == child)
                .and_then(|s| s.parent_span_id);
            assert_eq!(
                parent.and_then(start_of),
                Some(server_start_us * 1000),
                "{child}"
            );
        }
    }
}
