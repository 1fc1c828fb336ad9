//! Jaeger JSON: the query API / UI download (`{"data": [trace, ...]}`) or one trace object.
//!
//! A span's parent is its first `CHILD_OF` reference within the same trace, else its first
//! `FOLLOWS_FROM` one (older exports also carry `parentSpanID`); references to other traces are
//! ignored. Kinds, errors and peers come from the tags (`span.kind`, `error`, `otel.status_code`,
//! [`crate::PEER_ATTRIBUTES`]); the service from the span's process.

use std::collections::HashMap;
use std::io::BufRead;

use serde::Deserialize;

use crate::read::{Ctx, Format};
use crate::span::{parse_hex_id, Span, SpanKind, StatusCode};
use crate::IngestError;

#[derive(Deserialize)]
struct Doc {
    data: Option<Vec<serde_json::Value>>,
    spans: Option<serde_json::Value>,
    processes: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Trace {
    #[serde(default)]
    spans: Vec<serde_json::Value>,
    #[serde(default)]
    processes: HashMap<String, Process>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "camelCase")]
struct Process {
    service_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct JSpan {
    #[serde(rename = "traceID")]
    trace_id: String,
    #[serde(rename = "spanID")]
    span_id: String,
    #[serde(rename = "parentSpanID")]
    parent_span_id: Option<String>,
    operation_name: Option<String>,
    #[serde(default)]
    references: Option<Vec<Reference>>,
    start_time: Option<u64>,
    duration: Option<u64>,
    #[serde(default)]
    tags: Option<Vec<Tag>>,
    #[serde(rename = "processID")]
    process_id: Option<String>,
    process: Option<Process>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Reference {
    ref_type: Option<String>,
    #[serde(rename = "traceID")]
    trace_id: Option<String>,
    #[serde(rename = "spanID")]
    span_id: Option<String>,
}

#[derive(Deserialize)]
struct Tag {
    key: String,
    #[serde(default)]
    value: serde_json::Value,
}

pub(crate) fn read(reader: &mut dyn BufRead, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let doc: Doc = serde_json::from_reader(reader)
        .map_err(|e| ctx.unreadable(Format::JaegerJson, format!("not Jaeger JSON: {e}")))?;
    let traces: Vec<(String, serde_json::Value)> = match doc {
        Doc {
            data: Some(data), ..
        } => data
            .into_iter()
            .enumerate()
            .map(|(i, t)| (format!("data[{i}]"), t))
            .collect(),
        Doc {
            data: None,
            spans: Some(spans),
            processes,
        } => {
            let mut obj = serde_json::Map::new();
            obj.insert("spans".into(), spans);
            if let Some(p) = processes {
                obj.insert("processes".into(), p);
            }
            vec![("trace".to_string(), serde_json::Value::Object(obj))]
        }
        _ => {
            return Err(ctx.unreadable(
                Format::JaegerJson,
                "neither {\"data\": [traces]} nor a trace object with \"spans\"",
            ))
        }
    };
    let mut accepted = 0usize;
    for (tloc, tv) in traces {
        let trace: Trace = match serde_json::from_value(tv) {
            Ok(t) => t,
            Err(e) => {
                ctx.bad(tloc, format!("not a Jaeger trace: {e}"))?;
                continue;
            }
        };
        for (i, sv) in trace.spans.into_iter().enumerate() {
            let loc = format!("{tloc}.spans[{i}]");
            let js: JSpan = match serde_json::from_value(sv) {
                Ok(s) => s,
                Err(e) => {
                    ctx.bad(loc, format!("not a Jaeger span: {e}"))?;
                    continue;
                }
            };
            match convert(js, &trace.processes, ctx) {
                Ok(s) => {
                    ctx.push(s);
                    accepted += 1;
                }
                Err(reason) => ctx.bad(loc, reason)?,
            }
            ctx.maybe_flush()?;
        }
    }
    if accepted == 0 && ctx.report.rejected > 0 {
        return Err(ctx.unreadable(Format::JaegerJson, "no span in the file is valid"));
    }
    Ok(())
}

fn convert(
    js: JSpan,
    processes: &HashMap<String, Process>,
    ctx: &mut Ctx<'_>,
) -> Result<Span, String> {
    let trace_id: [u8; 16] =
        parse_hex_id(&js.trace_id, true).ok_or_else(|| format!("bad traceID {:?}", js.trace_id))?;
    let span_id: [u8; 8] =
        parse_hex_id(&js.span_id, true).ok_or_else(|| format!("bad spanID {:?}", js.span_id))?;
    let mut parent = None;
    let refs = js.references.unwrap_or_default();
    for wanted in ["CHILD_OF", "FOLLOWS_FROM"] {
        if parent.is_some() {
            break;
        }
        for r in &refs {
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
    let mut kind = SpanKind::Unspecified;
    let mut error = false;
    let mut attrs = crate::otlp_json::Attrs::default();
    for t in js.tags.unwrap_or_default() {
        let sval = match &t.value {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Bool(b) => Some(b.to_string()),
            serde_json::Value::Number(n) => Some(n.to_string()),
            _ => None,
        };
        match (t.key.as_str(), sval) {
            ("span.kind", Some(k)) => {
                kind = SpanKind::from_name(&k).unwrap_or(SpanKind::Unspecified)
            }
            ("error", Some(v)) => error |= v == "true",
            ("otel.status_code", Some(v)) => error |= v.eq_ignore_ascii_case("error"),
            (key, Some(v)) if matches!(t.value, serde_json::Value::String(_)) => {
                attrs.offer(key, v.into())
            }
            _ => {}
        }
    }
    let service = js
        .process
        .or_else(|| {
            js.process_id
                .as_ref()
                .and_then(|p| processes.get(p).cloned())
        })
        .and_then(|p| p.service_name)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown_service".to_string());
    let strings = &mut ctx.batch.strings;
    let service = strings.intern(&service);
    let name = strings.intern(js.operation_name.as_deref().unwrap_or(""));
    let mut opt = |v: Option<std::borrow::Cow<'_, str>>| v.map(|v| strings.intern(&v));
    Ok(Span {
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
        http_route: opt(attrs.http_route),
        rpc_method: opt(attrs.rpc_method),
        error_type: opt(attrs.error_type),
        experiment: opt(attrs.experiment),
    })
}
