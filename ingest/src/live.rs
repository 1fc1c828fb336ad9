//! Live OTLP requests, as the receiver gets them: one request body (protobuf or JSON, already
//! decompressed) into a span batch, counting the spans it rejects; and a batch back into a
//! protobuf request, for snapshots of spans whose traces are still open.
//!
//! A request that cannot be decoded at all is an error (the receiver answers 400 /
//! INVALID_ARGUMENT); a request whose spans are partly bad is accepted with the bad spans counted
//! in [`Decoded::rejected`] (OTLP's partial success), the first reason kept for the message.

use std::io::Cursor;
use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as PSpan, Status};
use prost::Message;
use rustc_hash::FxHashMap;

use crate::otlp_wire::WireRequest;
use crate::read::{Ctx, Format};
use crate::{IngestError, IngestReport, ReadOptions, SpanBatch, Sym, EXPERIMENT_ATTRIBUTE};

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/x-protobuf`: an `ExportTraceServiceRequest` message.
    Protobuf,
    /// `application/json`: the OTLP/JSON mapping of the same message.
    Json,
}

/// A decoded request.
#[derive(Debug, Default)]
pub struct Decoded {
    /// The spans accepted.
    pub batch: SpanBatch,
    /// Spans rejected (no valid id, out-of-range times, ...).
    pub rejected: u64,
    /// Why the first rejected span was rejected, with where it was in the request.
    pub first_problem: Option<String>,
}

/// Decodes one request body. An error means the body as a whole is not an OTLP trace request.
pub fn decode_body(body: &[u8], encoding: Encoding) -> Result<Decoded, IngestError> {
    let path = Path::new("request");
    let opts = ReadOptions {
        strict: false,
        batch_size: usize::MAX,
    };
    let mut report = IngestReport::default();
    let mut out: Option<SpanBatch> = None;
    let mut sink = |b: SpanBatch| -> Result<(), IngestError> {
        match &mut out {
            // One batch per request (batch_size is unbounded), so this arm is not reached.
            Some(prev) => {
                for s in &b.spans {
                    let mut s = *s;
                    let mut map = |sym: Sym| prev.strings.intern(b.str(sym));
                    s.service = map(s.service);
                    s.name = map(s.name);
                    s.peer = s.peer.map(&mut map);
                    s.http_route = s.http_route.map(&mut map);
                    s.rpc_method = s.rpc_method.map(&mut map);
                    s.error_type = s.error_type.map(&mut map);
                    s.experiment = s.experiment.map(&mut map);
                    prev.spans.push(s);
                }
            }
            None => out = Some(b),
        }
        Ok(())
    };
    {
        let mut ctx = Ctx::new(path, &opts, &mut report, &mut sink);
        match encoding {
            Encoding::Protobuf => {
                let req = WireRequest::decode(body, WireRequest::default()).map_err(|e| {
                    ctx.unreadable(
                        Format::OtlpProto,
                        format!("not a valid ExportTraceServiceRequest: {e}"),
                    )
                })?;
                crate::otlp_proto::push_wire(&req, &mut ctx, "")?;
            }
            Encoding::Json => {
                // A byte that is not UTF-8 (an SDK passing bytes through into an attribute)
                // reads as U+FFFD, as protobuf attributes do, rather than costing the request.
                let text = String::from_utf8_lossy(body);
                if let std::borrow::Cow::Owned(_) = text {
                    tracing::warn!(
                        "an OTLP/JSON request that is not UTF-8: bad bytes read as U+FFFD"
                    );
                }
                let mut text = Cursor::new(text.as_bytes());
                crate::otlp_json::read_document_with(&mut text, &mut ctx, false)?;
            }
        }
        ctx.flush()?;
    }
    Ok(Decoded {
        batch: out.unwrap_or_default(),
        rejected: report.rejected,
        first_problem: report
            .problems
            .first()
            .map(|p| format!("{}: {}", p.location, p.reason)),
    })
}

/// Encodes a batch as one protobuf `ExportTraceServiceRequest` that [`decode_body`] reads back
/// to the same spans: one resource per (service, experiment), the peer as `peer.service`.
pub fn encode_batch(batch: &SpanBatch) -> Vec<u8> {
    let mut resources: Vec<ResourceSpans> = Vec::new();
    let mut index: FxHashMap<(Sym, Option<Sym>), usize> = FxHashMap::default();
    let text = |key: &str, value: &str| KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_string())),
        }),
        ..Default::default()
    };
    let mut links = batch.links.iter().peekable();
    for (k, s) in batch.spans.iter().enumerate() {
        let link = links.next_if(|l| l.span as usize == k);
        let i = *index.entry((s.service, s.experiment)).or_insert_with(|| {
            let mut attributes = vec![text("service.name", batch.str(s.service))];
            if let Some(e) = s.experiment {
                attributes.push(text(EXPERIMENT_ATTRIBUTE, batch.str(e)));
            }
            resources.push(ResourceSpans {
                resource: Some(Resource {
                    attributes,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans::default()],
                ..Default::default()
            });
            resources.len() - 1
        });
        let mut attributes = Vec::new();
        // The attribute that says what the peer is (read back as its `peer_kind`).
        let peer_key = match s.peer_kind {
            crate::PeerKind::Database => "db.system",
            crate::PeerKind::Messaging => "messaging.destination.name",
            crate::PeerKind::Unknown => "peer.service",
        };
        let optional = [
            (peer_key, s.peer),
            ("http.route", s.http_route),
            ("rpc.method", s.rpc_method),
            ("error.type", s.error_type),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                attributes.push(text(key, batch.str(v)));
            }
        }
        let span = PSpan {
            trace_id: s.trace_id.to_vec(),
            span_id: s.span_id.to_vec(),
            parent_span_id: s.parent_span_id.map(|p| p.to_vec()).unwrap_or_default(),
            name: batch.str(s.name).to_string(),
            kind: s.kind as i32,
            // Times before 1970 do not exist in OTLP (unsigned); such spans come back at 0.
            start_time_unix_nano: u64::try_from(s.start_ns).unwrap_or(0),
            end_time_unix_nano: u64::try_from(s.end_ns).unwrap_or(0),
            attributes,
            status: Some(Status {
                code: s.status.otlp(),
                ..Default::default()
            }),
            links: link
                .map(|l| opentelemetry_proto::tonic::trace::v1::span::Link {
                    trace_id: l.trace_id.to_vec(),
                    span_id: l.span_id.to_vec(),
                    ..Default::default()
                })
                .into_iter()
                .collect(),
            ..Default::default()
        };
        if let Some(scope) = resources.get_mut(i).and_then(|r| r.scope_spans.first_mut()) {
            scope.spans.push(span);
        }
    }
    ExportTraceServiceRequest {
        resource_spans: resources,
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Span, SpanKind, StatusCode};

    fn sample() -> SpanBatch {
        let mut b = SpanBatch::new();
        let shop = b.strings.intern("shop");
        let pay = b.strings.intern("payment");
        let name = b.strings.intern("GET /checkout");
        let peer = b.strings.intern("payment");
        let exp = b.strings.intern("payment:down");
        let route = b.strings.intern("/checkout");
        let base = Span {
            trace_id: [7; 16],
            span_id: [1; 8],
            parent_span_id: None,
            service: shop,
            name,
            kind: SpanKind::Server,
            start_ns: 1_700_000_000_000_000_000,
            end_ns: 1_700_000_000_005_000_000,
            status: StatusCode::Ok,
            peer: None,
            peer_kind: crate::PeerKind::Unknown,
            http_route: Some(route),
            rpc_method: None,
            error_type: None,
            experiment: None,
        };
        b.spans.push(base);
        b.spans.push(Span {
            span_id: [2; 8],
            parent_span_id: Some([1; 8]),
            kind: SpanKind::Client,
            status: StatusCode::Error,
            peer: Some(peer),
            http_route: None,
            ..base
        });
        b.spans.push(Span {
            span_id: [3; 8],
            parent_span_id: Some([2; 8]),
            service: pay,
            experiment: Some(exp),
            http_route: None,
            ..base
        });
        b
    }

    fn owned(b: &SpanBatch) -> Vec<crate::OwnedSpan> {
        let mut v = b.to_owned_spans();
        v.sort_by_key(|x| x.span_id);
        v
    }

    #[test]
    fn a_batch_encoded_decodes_to_the_same_spans() {
        let b = sample();
        let d = decode_body(&encode_batch(&b), Encoding::Protobuf).unwrap();
        assert_eq!(d.rejected, 0);
        assert_eq!(owned(&d.batch), owned(&b));
    }

    #[test]
    fn bad_spans_are_counted_and_the_rest_kept() {
        let mut b = sample();
        b.spans[1].span_id = [0; 8];
        let d = decode_body(&encode_batch(&b), Encoding::Protobuf).unwrap();
        assert_eq!((d.batch.len(), d.rejected), (2, 1));
        assert!(d.first_problem.unwrap().contains("spanId is all zeros"));
    }

    #[test]
    fn json_bodies_decode_and_empty_requests_are_empty_not_errors() {
        let json = br#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1","endTimeUnixNano":"5"}]}]}]}"#;
        let d = decode_body(json, Encoding::Json).unwrap();
        assert_eq!(d.batch.len(), 1);
        assert_eq!(d.batch.str(d.batch.spans[0].service), "shop");
        assert_eq!(decode_body(b"{}", Encoding::Json).unwrap().batch.len(), 0);
        // A byte that is not UTF-8 in a name reads as U+FFFD; the span is kept.
        let mut bad = json.to_vec();
        let at = bad.windows(5).position(|w| w == b"GET /").unwrap() + 3;
        bad[at] = 0xff;
        let d = decode_body(&bad, Encoding::Json).unwrap();
        assert_eq!(d.batch.str(d.batch.spans[0].name), "GET\u{FFFD}/");
        assert_eq!(decode_body(b"", Encoding::Protobuf).unwrap().batch.len(), 0);
    }

    #[test]
    fn garbage_is_an_error() {
        assert!(decode_body(b"{not json", Encoding::Json).is_err());
        assert!(decode_body(&[0xff, 0xff, 0xff], Encoding::Protobuf).is_err());
    }
}
