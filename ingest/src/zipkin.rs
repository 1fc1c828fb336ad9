//! Zipkin v2 JSON: an array of spans (`/api/v2/trace/{id}`), or an array of traces, each an array of
//! spans (`/api/v2/traces`).
//!
//! Zipkin lets a client and a server share one span id (`shared: true` on the server side). The
//! span table needs one id per span, so the server half gets a derived id, its parent becomes the
//! client half, and the server's own children (same service, parent = the shared id) follow it.

use std::collections::BTreeMap;
use std::io::BufRead;

use rustc_hash::FxHashMap;
use serde::Deserialize;

use crate::read::{Ctx, Format};
use crate::span::{fnv1a64, parse_hex_id, Span, SpanKind, StatusCode};
use crate::IngestError;

#[derive(Deserialize)]
#[serde(untagged)]
enum Doc {
    Spans(Vec<serde_json::Value>),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ZSpan {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    kind: Option<String>,
    name: Option<String>,
    timestamp: Option<u64>,
    duration: Option<u64>,
    local_endpoint: Option<Endpoint>,
    remote_endpoint: Option<Endpoint>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    shared: bool,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    service_name: Option<String>,
}

pub(crate) fn read(reader: &mut dyn BufRead, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let Doc::Spans(items) = serde_json::from_reader(reader).map_err(|e| {
        ctx.unreadable(
            Format::ZipkinJson,
            format!("not a JSON array of spans: {e}"),
        )
    })?;
    // Flatten an array of traces into one list of (location, span value).
    let mut values = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match item {
            serde_json::Value::Array(trace) => {
                for (j, v) in trace.into_iter().enumerate() {
                    values.push((format!("[{i}][{j}]"), v));
                }
            }
            v => values.push((format!("[{i}]"), v)),
        }
    }
    if values.is_empty() {
        return Err(ctx.unreadable(Format::ZipkinJson, "the array holds no span"));
    }
    let mut spans: Vec<(Span, bool)> = Vec::with_capacity(values.len());
    for (loc, v) in values {
        let z: ZSpan = match serde_json::from_value(v) {
            Ok(z) => z,
            Err(e) => {
                ctx.bad(loc, format!("not a Zipkin v2 span: {e}"))?;
                continue;
            }
        };
        match convert(z, ctx) {
            Ok(s) => spans.push(s),
            Err(reason) => ctx.bad(loc, reason)?,
        }
    }
    if spans.is_empty() {
        return Err(ctx.unreadable(Format::ZipkinJson, "no element is a valid Zipkin v2 span"));
    }
    split_shared(&mut spans);
    for (s, _) in spans {
        ctx.push(s);
        ctx.maybe_flush()?;
    }
    Ok(())
}

fn convert(z: ZSpan, ctx: &mut Ctx<'_>) -> Result<(Span, bool), String> {
    let tid = z.trace_id.ok_or("missing traceId")?;
    let trace_id: [u8; 16] =
        parse_hex_id(&tid, true).ok_or_else(|| format!("bad traceId {tid:?}"))?;
    let id = z.id.ok_or("missing id")?;
    let span_id: [u8; 8] = parse_hex_id(&id, true).ok_or_else(|| format!("bad id {id:?}"))?;
    let parent_span_id = match z.parent_id.as_deref() {
        None | Some("") => None,
        Some(p) => Some(parse_hex_id::<8>(p, true).ok_or_else(|| format!("bad parentId {p:?}"))?),
    };
    let ts = z
        .timestamp
        .ok_or("no timestamp (an incomplete span fragment)")?;
    let start_ns = i64::try_from(ts)
        .ok()
        .and_then(|t| t.checked_mul(1000))
        .ok_or("timestamp out of range")?;
    let dur = i64::try_from(z.duration.unwrap_or(0))
        .ok()
        .and_then(|d| d.checked_mul(1000))
        .ok_or("duration out of range")?;
    let kind = match z.kind.as_deref() {
        None => SpanKind::Unspecified,
        Some(k) => SpanKind::from_name(k).ok_or_else(|| format!("unknown kind {k:?}"))?,
    };
    let error = z.tags.contains_key("error")
        || z.tags
            .get("otel.status_code")
            .is_some_and(|c| c.eq_ignore_ascii_case("error"));
    let mut attrs = crate::otlp_json::Attrs::default();
    if let Some(remote) = z
        .remote_endpoint
        .as_ref()
        .and_then(|e| e.service_name.as_deref())
    {
        attrs.offer("peer.service", remote.into());
    }
    for (k, v) in &z.tags {
        attrs.offer(k, v.as_str().into());
    }
    let strings = &mut ctx.batch.strings;
    let service = strings.intern(
        z.local_endpoint
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
        start_ns,
        end_ns: start_ns.saturating_add(dur),
        status: if error {
            StatusCode::Error
        } else {
            StatusCode::Unset
        },
        peer,
        http_route: opt(attrs.http_route),
        rpc_method: opt(attrs.rpc_method),
        error_type: opt(attrs.error_type),
        experiment: opt(attrs.experiment),
    };
    let name = strings.intern(z.name.as_deref().unwrap_or(""));
    Ok((Span { name, ..span }, z.shared))
}

/// Gives the server half of each shared client/server span pair an id of its own (see the module
/// docs). A pair is a span marked `shared` (or a SERVER span) with the same id as a non-shared
/// (or CLIENT) span of the same trace.
fn split_shared(spans: &mut [(Span, bool)]) {
    let mut by_id: FxHashMap<([u8; 16], [u8; 8]), Vec<usize>> = FxHashMap::default();
    for (i, (s, _)) in spans.iter().enumerate() {
        by_id.entry((s.trace_id, s.span_id)).or_default().push(i);
    }
    let mut renames: Vec<(usize, [u8; 8])> = Vec::new();
    for ((_, id), idxs) in &by_id {
        if idxs.len() != 2 {
            continue;
        }
        let (a, b) = (idxs[0], idxs[1]);
        let is_server = |i: usize| spans[i].1 || spans[i].0.kind == SpanKind::Server;
        let server = match (is_server(a), is_server(b)) {
            (true, false) => a,
            (false, true) => b,
            _ => continue,
        };
        renames.push((server, derived_id(id)));
    }
    for (server, new_id) in renames {
        let (old_id, trace_id, service) = {
            let s = &spans[server].0;
            (s.span_id, s.trace_id, s.service)
        };
        for (i, (s, _)) in spans.iter_mut().enumerate() {
            if i != server
                && s.trace_id == trace_id
                && s.parent_span_id == Some(old_id)
                && s.service == service
            {
                s.parent_span_id = Some(new_id);
            }
        }
        let s = &mut spans[server].0;
        s.span_id = new_id;
        s.parent_span_id = Some(old_id);
    }
}

/// A stable id for the server half of a shared span, derived from the shared id.
fn derived_id(id: &[u8; 8]) -> [u8; 8] {
    let mut text = Vec::with_capacity(16);
    text.extend_from_slice(id);
    text.extend_from_slice(b"zipkin-shared");
    let h = fnv1a64(&text).to_be_bytes();
    if h == [0; 8] {
        [1; 8]
    } else {
        h
    }
}
