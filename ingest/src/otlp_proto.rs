//! OTLP/protobuf: a bare `ExportTraceServiceRequest`, or the Collector file exporter's stream of
//! messages each prefixed by its length (4 bytes, big-endian).

use std::io::BufRead;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};
use prost::Message;

use crate::read::{Ctx, Format};
use crate::span::{Span, SpanKind, StatusCode};
use crate::IngestError;

/// The largest message accepted in a stream (the Collector's default gRPC limit is 4 MiB; files
/// can hold larger ones, but a length past this is taken for damage, not data).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Reads a file holding one bare request.
pub(crate) fn read_bare(reader: &mut dyn BufRead, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let mut buf = Vec::new();
    reader
        .read_to_end(&mut buf)
        .map_err(|e| IngestError::io(ctx.path, e))?;
    let req = ExportTraceServiceRequest::decode(buf.as_slice()).map_err(|e| {
        ctx.unreadable(
            Format::OtlpProto,
            format!("not a valid ExportTraceServiceRequest: {e}"),
        )
    })?;
    if req.resource_spans.is_empty() {
        return Err(ctx.unreadable(Format::OtlpProto, "the request holds no resourceSpans"));
    }
    push_request(&req, ctx, "")
}

/// Reads a stream of length-prefixed requests; a message that does not decode is one bad record.
pub(crate) fn read_stream(reader: &mut dyn BufRead, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let mut offset: u64 = 0;
    let mut buf = Vec::new();
    let mut messages = 0u64;
    loop {
        let mut len = [0u8; 4];
        match read_full(reader, &mut len).map_err(|e| IngestError::io(ctx.path, e))? {
            0 => break,
            4 => {}
            n => {
                ctx.bad(
                    format!("byte {offset}"),
                    format!("truncated length prefix ({n} of 4 bytes)"),
                )?;
                break;
            }
        }
        let n = u32::from_be_bytes(len) as usize;
        if n > MAX_MESSAGE_BYTES {
            return Err(ctx.unreadable(
                Format::OtlpProtoStream,
                format!("byte {offset}: message length {n} is larger than {MAX_MESSAGE_BYTES}: damaged stream"),
            ));
        }
        buf.resize(n, 0);
        let got = read_full(reader, &mut buf).map_err(|e| IngestError::io(ctx.path, e))?;
        if got < n {
            ctx.bad(
                format!("byte {offset}"),
                format!("truncated message ({got} of {n} bytes)"),
            )?;
            break;
        }
        match ExportTraceServiceRequest::decode(buf.as_slice()) {
            Ok(req) => {
                messages += 1;
                push_request(&req, ctx, &format!("byte {offset}: "))?;
            }
            Err(e) => ctx.bad(
                format!("byte {offset}"),
                format!("not a valid ExportTraceServiceRequest: {e}"),
            )?,
        }
        ctx.maybe_flush()?;
        offset += 4 + n as u64;
    }
    if messages == 0 {
        return Err(ctx.unreadable(Format::OtlpProtoStream, "no message in the stream decodes"));
    }
    Ok(())
}

fn read_full(r: &mut dyn BufRead, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Pushes every span of a decoded request (also used by the live receiver).
pub(crate) fn push_request(
    req: &ExportTraceServiceRequest,
    ctx: &mut Ctx<'_>,
    prefix: &str,
) -> Result<(), IngestError> {
    for (ri, rs) in req.resource_spans.iter().enumerate() {
        let mut service = "unknown_service";
        let mut experiment = None;
        if let Some(res) = &rs.resource {
            for kv in &res.attributes {
                match (kv.key.as_str(), str_value(kv)) {
                    ("service.name", Some(v)) => service = v,
                    (crate::EXPERIMENT_ATTRIBUTE, Some(v)) => experiment = Some(v),
                    _ => {}
                }
            }
        }
        let service = ctx.batch.strings.intern(service);
        let experiment = experiment.map(|e| ctx.batch.strings.intern(e));
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            for (pi, s) in ss.spans.iter().enumerate() {
                match convert(s, service, experiment, ctx) {
                    Ok(span) => ctx.push(span),
                    Err(reason) => ctx.bad(
                        format!("{prefix}resourceSpans[{ri}].scopeSpans[{si}].spans[{pi}]"),
                        reason,
                    )?,
                }
            }
        }
    }
    Ok(())
}

fn str_value(kv: &KeyValue) -> Option<&str> {
    match kv.value.as_ref()?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s),
        _ => None,
    }
}

fn convert(
    s: &opentelemetry_proto::tonic::trace::v1::Span,
    service: u32,
    experiment: Option<u32>,
    ctx: &mut Ctx<'_>,
) -> Result<Span, String> {
    let trace_id: [u8; 16] = s
        .trace_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("traceId has {} bytes, not 16", s.trace_id.len()))?;
    if trace_id == [0; 16] {
        return Err("traceId is all zeros (invalid)".into());
    }
    let span_id: [u8; 8] = s
        .span_id
        .as_slice()
        .try_into()
        .map_err(|_| format!("spanId has {} bytes, not 8", s.span_id.len()))?;
    if span_id == [0; 8] {
        return Err("spanId is all zeros (invalid)".into());
    }
    let parent_span_id = match s.parent_span_id.len() {
        0 => None,
        8 => {
            let mut p = [0u8; 8];
            p.copy_from_slice(&s.parent_span_id);
            (p != [0; 8]).then_some(p)
        }
        n => return Err(format!("parentSpanId has {n} bytes, not 8")),
    };
    let start_ns =
        i64::try_from(s.start_time_unix_nano).map_err(|_| "startTimeUnixNano out of range")?;
    let end_ns = i64::try_from(s.end_time_unix_nano).map_err(|_| "endTimeUnixNano out of range")?;
    let mut attrs = crate::otlp_json::Attrs::default();
    for kv in &s.attributes {
        if let Some(v) = str_value(kv) {
            attrs.offer(&kv.key, std::borrow::Cow::Borrowed(v));
        }
    }
    let strings = &mut ctx.batch.strings;
    let mut opt = |v: Option<std::borrow::Cow<'_, str>>| v.map(|v| strings.intern(&v));
    let peer = opt(attrs.peer.map(|(_, v)| v));
    let http_route = opt(attrs.http_route);
    let rpc_method = opt(attrs.rpc_method);
    let error_type = opt(attrs.error_type);
    let span_experiment = opt(attrs.experiment);
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        service,
        name: strings.intern(&s.name),
        kind: SpanKind::from_i32(s.kind),
        start_ns,
        end_ns,
        status: s
            .status
            .as_ref()
            .map(|st| StatusCode::from_i32(st.code))
            .unwrap_or_default(),
        peer,
        http_route,
        rpc_method,
        error_type,
        experiment: span_experiment.or(experiment),
    })
}
