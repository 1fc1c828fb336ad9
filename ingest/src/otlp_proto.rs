//! OTLP/protobuf: a bare `ExportTraceServiceRequest`, or the Collector file exporter's stream of
//! messages each prefixed by its length (4 bytes, big-endian).
//!
//! Files are decoded by [`crate::otlp_wire`] (zero-copy: no allocation per span, id or
//! attribute); [`push_request`] takes a message prost already decoded (the live receiver's). Both
//! end in the same [`convert`], so a span reads the same either way.

use std::borrow::Cow;
use std::io::BufRead;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, KeyValue};

use crate::otlp_json::Attrs;
use crate::otlp_wire::{WireRequest, WireSpan};
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
    let req = WireRequest::decode(&buf, WireRequest::default()).map_err(|e| {
        ctx.unreadable(
            Format::OtlpProto,
            format!("not a valid ExportTraceServiceRequest: {e}"),
        )
    })?;
    if req.resources.is_empty() {
        return Err(ctx.unreadable(Format::OtlpProto, "the request holds no resourceSpans"));
    }
    push_wire(&req, ctx, "")
}

/// Reads a stream of length-prefixed requests; a message that does not decode is one bad record.
pub(crate) fn read_stream(reader: &mut dyn BufRead, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let mut offset: u64 = 0;
    let mut buf = Vec::new();
    let mut messages = 0u64;
    let mut spare = WireRequest::default();
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
        match WireRequest::decode(&buf, std::mem::take(&mut spare)) {
            Ok(req) => {
                messages += 1;
                push_wire(&req, ctx, &format!("byte {offset}: "))?;
                spare = req.recycle();
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

/// Pushes every span of a request read from the wire.
pub(crate) fn push_wire(
    req: &WireRequest<'_>,
    ctx: &mut Ctx<'_>,
    prefix: &str,
) -> Result<(), IngestError> {
    for (ri, rs) in req.resources.iter().enumerate() {
        let service = ctx.batch.strings.intern(
            rs.service
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown_service"),
        );
        let experiment = rs.experiment.map(|e| ctx.batch.strings.intern(e));
        for s in req.spans.get(rs.spans.clone()).unwrap_or_default() {
            match convert(&s.span, service, experiment, ctx) {
                Ok(span) => {
                    ctx.push(span);
                    link_last(&s.span, ctx);
                }
                Err(reason) => ctx.bad(
                    format!(
                        "{prefix}resourceSpans[{ri}].scopeSpans[{}].spans[{}]",
                        s.scope, s.index
                    ),
                    reason,
                )?,
            }
        }
    }
    Ok(())
}

/// Pushes every span of a decoded request (for the live receiver, which gets prost messages).
#[cfg_attr(
    not(test),
    allow(
        dead_code,
        reason = "kept for the live OTLP receiver; files go through otlp_wire"
    )
)]
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
                    ("service.name", Some(v)) if !v.is_empty() => service = v,
                    (crate::EXPERIMENT_ATTRIBUTE, Some(v)) => experiment = Some(v),
                    _ => {}
                }
            }
        }
        let service = ctx.batch.strings.intern(service);
        let experiment = experiment.map(|e| ctx.batch.strings.intern(e));
        for (si, ss) in rs.scope_spans.iter().enumerate() {
            for (pi, s) in ss.spans.iter().enumerate() {
                let wire = prost_span(s);
                match convert(&wire, service, experiment, ctx) {
                    Ok(span) => {
                        ctx.push(span);
                        link_last(&wire, ctx);
                    }
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

/// A prost span seen as the wire decoder sees one.
fn prost_span(s: &opentelemetry_proto::tonic::trace::v1::Span) -> WireSpan<'_> {
    let mut attrs = Attrs::default();
    for kv in &s.attributes {
        if let Some(v) = str_value(kv) {
            attrs.offer(&kv.key, Cow::Borrowed(v));
        }
    }
    WireSpan {
        trace_id: &s.trace_id,
        span_id: &s.span_id,
        parent_span_id: &s.parent_span_id,
        name: &s.name,
        kind: s.kind,
        start_time_unix_nano: s.start_time_unix_nano,
        end_time_unix_nano: s.end_time_unix_nano,
        status_code: s.status.as_ref().map_or(0, |st| st.code),
        attrs,
        link: s
            .links
            .first()
            .map(|l| (l.trace_id.as_slice(), l.span_id.as_slice())),
    }
}

/// Links the span just pushed to its first link, when the link's ids are valid (a link that is
/// not is ignored: the span stands).
fn link_last(s: &WireSpan<'_>, ctx: &mut Ctx<'_>) {
    let Some((t, l)) = s.link else { return };
    if let (Ok(t), Ok(l)) = (<[u8; 16]>::try_from(t), <[u8; 8]>::try_from(l)) {
        if t != [0; 16] && l != [0; 8] {
            ctx.batch.link_last(t, l);
        }
    }
}

/// Checks a span and interns its strings (the rules of `otlp_json`'s `RawSpan::to_span`, for
/// bytes: ids of the right length and not all zeros, an empty or all-zero parent is a root).
fn convert(
    s: &WireSpan<'_>,
    service: u32,
    experiment: Option<u32>,
    ctx: &mut Ctx<'_>,
) -> Result<Span, String> {
    let trace_id: [u8; 16] = s
        .trace_id
        .try_into()
        .map_err(|_| format!("traceId has {} bytes, not 16", s.trace_id.len()))?;
    if trace_id == [0; 16] {
        return Err("traceId is all zeros (invalid)".into());
    }
    let span_id: [u8; 8] = s
        .span_id
        .try_into()
        .map_err(|_| format!("spanId has {} bytes, not 8", s.span_id.len()))?;
    if span_id == [0; 8] {
        return Err("spanId is all zeros (invalid)".into());
    }
    let parent_span_id = match <[u8; 8]>::try_from(s.parent_span_id) {
        Ok(p) => (p != [0; 8]).then_some(p),
        Err(_) if s.parent_span_id.is_empty() => None,
        Err(_) => {
            return Err(format!(
                "parentSpanId has {} bytes, not 8",
                s.parent_span_id.len()
            ))
        }
    };
    let start_ns =
        i64::try_from(s.start_time_unix_nano).map_err(|_| "startTimeUnixNano out of range")?;
    let end_ns = i64::try_from(s.end_time_unix_nano).map_err(|_| "endTimeUnixNano out of range")?;
    let attrs = &s.attrs;
    let strings = &mut ctx.batch.strings;
    let mut opt = |v: Option<&Cow<'_, str>>| v.map(|v| strings.intern(v));
    let peer = opt(attrs.peer.as_ref().map(|(_, v)| v));
    let http_route = opt(attrs.http_route.as_ref());
    let rpc_method = opt(attrs.rpc_method.as_ref());
    let error_type = opt(attrs.error_type.as_ref());
    let span_experiment = opt(attrs.experiment.as_ref());
    Ok(Span {
        trace_id,
        span_id,
        parent_span_id,
        service,
        name: strings.intern(s.name),
        kind: SpanKind::from_i32(s.kind),
        start_ns,
        end_ns,
        status: StatusCode::from_i32(s.status_code),
        peer,
        peer_kind: attrs.peer_kind,
        http_route,
        rpc_method,
        error_type,
        experiment: span_experiment.or(experiment),
    })
}

#[cfg(test)]
mod tests {
    //! The wire decoder against the prost path it replaced: the same spans (down to interned
    //! symbols), the same bad records, and the same messages rejected whole.

    use std::path::Path;

    use opentelemetry_proto::tonic::common::v1::{
        AnyValue, ArrayValue, InstrumentationScope, KeyValueList,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
    use opentelemetry_proto::tonic::trace::v1::Span as PSpan;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
    use proptest::prelude::*;
    use prost::encoding::{encode_key, encode_varint, WireType};
    use prost::Message;

    use super::*;
    use crate::{IngestReport, ReadOptions};

    /// What a message gives: rejected whole, or spans, strings and bad records.
    #[derive(Debug, PartialEq)]
    enum Outcome {
        Malformed,
        Read {
            spans: Vec<Span>,
            strings: Vec<String>,
            problems: Vec<(String, String)>,
            rejected: u64,
        },
    }

    /// Runs one message through the prost path (the reader before `otlp_wire`) or the wire path.
    fn run(bytes: &[u8], wire: bool) -> Outcome {
        let opts = ReadOptions::default();
        let mut report = IngestReport::default();
        let mut sink = |_| Ok(());
        let mut ctx = Ctx::new(Path::new("t.pb"), &opts, &mut report, &mut sink);
        let read = if wire {
            WireRequest::decode(bytes, WireRequest::default())
                .ok()
                .map(|req| push_wire(&req, &mut ctx, "p: ").unwrap())
        } else {
            ExportTraceServiceRequest::decode(bytes)
                .ok()
                .map(|req| push_request(&req, &mut ctx, "p: ").unwrap())
        };
        let batch = std::mem::take(&mut ctx.batch);
        drop(ctx);
        match read {
            None => Outcome::Malformed,
            Some(()) => Outcome::Read {
                spans: batch.spans,
                strings: batch.strings.strings().map(str::to_string).collect(),
                problems: report
                    .problems
                    .into_iter()
                    .map(|p| (p.location, p.reason))
                    .collect(),
                rejected: report.rejected,
            },
        }
    }

    fn assert_same(bytes: &[u8]) -> Outcome {
        let old = run(bytes, false);
        assert_eq!(run(bytes, true), old, "bytes {bytes:02x?}");
        old
    }

    fn kv(key: &str, value: any_value::Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn s(v: &str) -> any_value::Value {
        any_value::Value::StringValue(v.into())
    }

    fn span(id: u8) -> PSpan {
        PSpan {
            trace_id: vec![0xab; 16],
            span_id: vec![id; 8],
            name: format!("op{}", id % 3),
            kind: 2,
            start_time_unix_nano: 1_000 + u64::from(id),
            end_time_unix_nano: 2_000 + u64::from(id),
            ..Default::default()
        }
    }

    fn every_value() -> Vec<KeyValue> {
        use any_value::Value as V;
        vec![
            kv("a.string", s("x")),
            kv("a.bool", V::BoolValue(true)),
            kv("a.int", V::IntValue(-7)),
            kv("a.double", V::DoubleValue(1.5)),
            kv(
                "a.array",
                V::ArrayValue(ArrayValue {
                    values: vec![
                        AnyValue {
                            value: Some(s("in")),
                        },
                        AnyValue { value: None },
                    ],
                }),
            ),
            kv(
                "a.kvlist",
                V::KvlistValue(KeyValueList {
                    values: vec![kv("k", s("v")), kv("n", V::IntValue(1))],
                }),
            ),
            kv("a.bytes", V::BytesValue(vec![0xff, 0])),
            kv("a.strindex", V::StringValueStrindex(3)),
            KeyValue {
                key: "no.value".into(),
                ..Default::default()
            },
        ]
    }

    /// A request exercising every rule: resources, kinds, statuses, ids, attributes.
    fn varied_request() -> ExportTraceServiceRequest {
        use any_value::Value as V;
        let mut spans = Vec::new();
        for (i, kind) in [0, 1, 2, 3, 4, 5, 9, -1].into_iter().enumerate() {
            let mut sp = span(i as u8 + 1);
            sp.kind = kind;
            sp.status = match i % 5 {
                0 => None,
                1 => Some(Status {
                    message: "ok".into(),
                    code: 1,
                }),
                2 => Some(Status {
                    message: String::new(),
                    code: 2,
                }),
                3 => Some(Status {
                    message: "odd".into(),
                    code: 7,
                }),
                _ => Some(Status::default()),
            };
            spans.push(sp);
        }
        let next_id = std::cell::Cell::new(40u8);
        let with = |f: &dyn Fn(&mut PSpan)| {
            next_id.set(next_id.get() + 1);
            let mut sp = span(next_id.get());
            f(&mut sp);
            sp
        };
        let bad_and_odd = vec![
            with(&|sp| sp.parent_span_id = vec![0; 8]),
            with(&|sp| sp.parent_span_id = vec![9; 8]),
            with(&|sp| sp.parent_span_id = vec![9; 3]),
            with(&|sp| sp.trace_id = vec![]),
            with(&|sp| sp.trace_id = vec![1; 15]),
            with(&|sp| sp.trace_id = vec![0; 16]),
            with(&|sp| sp.span_id = vec![]),
            with(&|sp| sp.span_id = vec![1; 9]),
            with(&|sp| sp.span_id = vec![0; 8]),
            with(&|sp| sp.start_time_unix_nano = u64::MAX),
            with(&|sp| sp.end_time_unix_nano = 1 << 63),
            with(&|sp| sp.name = String::new()),
            with(&|sp| sp.name = "ünïcode ✓".into()),
            with(&|sp| {
                sp.attributes = every_value();
                sp.attributes.extend([
                    kv("net.peer.name", s("host")),
                    kv("peer.service", s("")),
                    kv("db.system", s("postgres")),
                    kv("peer.service", s("billing")),
                    kv("server.address", s("late")),
                    kv("http.route", s("/a/{id}")),
                    kv("rpc.method", s("Get")),
                    kv("error.type", s("Timeout")),
                    kv("error.type", V::IntValue(5)),
                    kv(crate::EXPERIMENT_ATTRIBUTE, s("span-exp")),
                    kv("service.name", s("not-a-resource")),
                ]);
            }),
            with(&|sp| {
                sp.trace_state = "k=v".into();
                sp.flags = 0x301;
                sp.dropped_attributes_count = 3;
                sp.dropped_events_count = 1;
                sp.dropped_links_count = 2;
                sp.events = vec![Event {
                    time_unix_nano: 5,
                    name: "ev".into(),
                    attributes: every_value(),
                    dropped_attributes_count: 1,
                }];
                sp.links = vec![Link {
                    trace_id: vec![1; 16],
                    span_id: vec![2; 8],
                    trace_state: "t".into(),
                    attributes: every_value(),
                    dropped_attributes_count: 2,
                    flags: 1,
                }];
            }),
        ];
        let scope = Some(InstrumentationScope {
            name: "lib".into(),
            version: "1.0".into(),
            attributes: every_value(),
            dropped_attributes_count: 1,
        });
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", s("checkout")),
                            kv(crate::EXPERIMENT_ATTRIBUTE, s("exp-1")),
                            kv("host.name", s("h1")),
                        ],
                        dropped_attributes_count: 2,
                        ..Default::default()
                    }),
                    scope_spans: vec![
                        ScopeSpans {
                            scope: scope.clone(),
                            spans,
                            schema_url: "https://x".into(),
                        },
                        ScopeSpans::default(),
                        ScopeSpans {
                            scope: None,
                            spans: bad_and_odd,
                            schema_url: String::new(),
                        },
                    ],
                    schema_url: "https://y".into(),
                },
                ResourceSpans::default(),
                ResourceSpans {
                    resource: None,
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(60), span(61)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv("service.name", s("first")),
                            kv("service.name", s("second")),
                            kv("service.name", V::IntValue(3)),
                            kv(crate::EXPERIMENT_ATTRIBUTE, V::BoolValue(true)),
                        ],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope,
                        spans: vec![span(70), span(0)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", V::IntValue(3))],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        spans: vec![span(80)],
                        ..Default::default()
                    }],
                    ..Default::default()
                },
            ],
        }
    }

    // Hand-made encodings: what prost's encoder never writes but a decoder must read.

    fn key(tag: u32, wt: WireType) -> Vec<u8> {
        let mut b = Vec::new();
        encode_key(tag, wt, &mut b);
        b
    }

    fn len_field(tag: u32, body: &[u8]) -> Vec<u8> {
        let mut b = key(tag, WireType::LengthDelimited);
        encode_varint(body.len() as u64, &mut b);
        b.extend_from_slice(body);
        b
    }

    fn varint_field(tag: u32, v: u64) -> Vec<u8> {
        let mut b = key(tag, WireType::Varint);
        encode_varint(v, &mut b);
        b
    }

    /// Unknown fields of every wire type, a group among them.
    fn unknown_fields() -> Vec<u8> {
        let mut b = varint_field(100, 1 << 40);
        b.extend(key(101, WireType::SixtyFourBit));
        b.extend([1; 8]);
        b.extend(len_field(102, b"\xff\xfe not utf-8, not looked at"));
        b.extend(key(103, WireType::ThirtyTwoBit));
        b.extend([2; 4]);
        b.extend(key(104, WireType::StartGroup));
        b.extend(varint_field(1, 5));
        b.extend(key(2, WireType::StartGroup));
        b.extend(key(2, WireType::EndGroup));
        b.extend(len_field(3, b"x"));
        b.extend(key(104, WireType::EndGroup));
        b
    }

    fn request(resource_spans: &[Vec<u8>]) -> Vec<u8> {
        resource_spans
            .iter()
            .flat_map(|rs| len_field(1, rs))
            .collect()
    }

    fn enc<M: Message>(m: &M) -> Vec<u8> {
        m.encode_to_vec()
    }

    fn service(name: &str) -> Vec<u8> {
        enc(&Resource {
            attributes: vec![kv("service.name", s(name))],
            ..Default::default()
        })
    }

    fn scope_spans(spans: &[PSpan]) -> Vec<u8> {
        enc(&ScopeSpans {
            spans: spans.to_vec(),
            ..Default::default()
        })
    }

    fn hand_made() -> Vec<(&'static str, Vec<u8>)> {
        let sp = |id| enc(&span(id));
        let mut cases = Vec::new();
        // The resource after its spans.
        let mut rs = len_field(2, &scope_spans(&[span(1), span(2)]));
        rs.extend(len_field(1, &service("late")));
        cases.push(("resource after spans", request(&[rs])));
        // The resource given twice (merged: attributes append, the last service.name wins),
        // around the spans.
        let mut rs = len_field(1, &service("one"));
        rs.extend(len_field(2, &scope_spans(&[span(3)])));
        rs.extend(len_field(
            1,
            &enc(&Resource {
                attributes: vec![kv(crate::EXPERIMENT_ATTRIBUTE, s("e"))],
                ..Default::default()
            }),
        ));
        rs.extend(len_field(1, &service("two")));
        cases.push(("resource twice", request(&[rs])));
        // A KeyValue whose value is given twice: the oneof member set last wins.
        for (name, parts) in [
            ("string then int", [s("a"), any_value::Value::IntValue(1)]),
            ("int then string", [any_value::Value::IntValue(1), s("b")]),
            ("string then string", [s("a"), s("b")]),
        ] {
            let mut kvb = len_field(1, b"peer.service");
            for p in parts {
                kvb.extend(len_field(2, &enc(&AnyValue { value: Some(p) })));
            }
            kvb.extend(len_field(2, &[])); // an empty AnyValue changes nothing
            let mut spb = sp(4);
            spb.extend(len_field(9, &kvb));
            let rs = len_field(2, &len_field(2, &spb));
            cases.push((name, request(&[rs])));
        }
        // Span fields repeated (the last wins), in reverse order, a status merged from two.
        let mut spb = Vec::new();
        spb.extend(len_field(15, &varint_field(3, 2)));
        spb.extend(len_field(15, &len_field(2, b"msg")));
        spb.extend(len_field(5, b"first"));
        spb.extend(len_field(5, b"second"));
        spb.extend(varint_field(6, 3));
        spb.extend(varint_field(6, u64::MAX - 3)); // an int32 enum: the low 32 bits, -4
        spb.extend(len_field(4, &[5; 8]));
        spb.extend(len_field(4, &[]));
        spb.extend(len_field(2, &[6; 8]));
        spb.extend(len_field(1, &[7; 16]));
        spb.extend(unknown_fields());
        let mut ss = len_field(2, &spb);
        ss.extend(unknown_fields());
        ss.extend(len_field(2, &sp(8)));
        let mut rs = unknown_fields();
        rs.extend(len_field(2, &ss));
        rs.extend(len_field(2, &scope_spans(&[span(9)])));
        let mut res = service("svc");
        res.extend(unknown_fields());
        rs.extend(len_field(1, &res));
        let mut req = unknown_fields();
        req.extend(request(&[rs]));
        req.extend(unknown_fields());
        cases.push(("merges and unknown fields", req));
        // Only unknown fields, and nothing at all.
        cases.push(("only unknown fields", unknown_fields()));
        cases.push(("empty", Vec::new()));
        // Malformed: invalid UTF-8 in a string nobody reads, a known field's wrong wire type,
        // a group as a known field, a stray end group, a length past the end.
        let mut spb = sp(10);
        spb.extend(len_field(3, b"\xc3\x28"));
        cases.push((
            "bad utf-8 in trace_state",
            request(&[len_field(2, &len_field(2, &spb))]),
        ));
        let mut spb = sp(11);
        spb.extend(varint_field(5, 1));
        cases.push((
            "name as a varint",
            request(&[len_field(2, &len_field(2, &spb))]),
        ));
        let mut spb = sp(12);
        spb.extend(key(9, WireType::StartGroup));
        spb.extend(key(9, WireType::EndGroup));
        cases.push((
            "attributes as a group",
            request(&[len_field(2, &len_field(2, &spb))]),
        ));
        cases.push(("stray end group", key(7, WireType::EndGroup)));
        let mut truncated = request(&[len_field(2, &scope_spans(&[span(13)]))]);
        truncated.pop();
        cases.push(("truncated", truncated));
        cases
    }

    /// A message whose attribute value nests `depth` array values.
    fn nested(depth: usize) -> Vec<u8> {
        let mut v = AnyValue {
            value: Some(s("leaf")),
        };
        for _ in 0..depth {
            v = AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values: vec![v] })),
            };
        }
        let mut sp = span(1);
        sp.attributes = vec![KeyValue {
            key: "deep".into(),
            value: Some(v),
            ..Default::default()
        }];
        enc(&ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![sp],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        })
    }

    #[test]
    fn varied_request_reads_as_with_prost() {
        let bytes = varied_request().encode_to_vec();
        let Outcome::Read {
            spans, rejected, ..
        } = assert_same(&bytes)
        else {
            panic!("the varied request must decode");
        };
        assert_eq!(rejected, 10);
        assert_eq!(spans.len(), 18);
    }

    #[test]
    fn hand_made_encodings_read_as_with_prost() {
        for (name, bytes) in hand_made() {
            let out = assert_same(&bytes);
            let malformed = name.starts_with("bad")
                || name.contains(" as a ")
                || name.contains("stray")
                || name == "truncated";
            assert_eq!(out == Outcome::Malformed, malformed, "{name}: {out:?}");
        }
    }

    #[test]
    fn nesting_limit_is_prosts() {
        let mut saw = (false, false);
        for depth in 40..=55 {
            match assert_same(&nested(depth)) {
                Outcome::Malformed => saw.1 = true,
                Outcome::Read { .. } => saw.0 = true,
            }
        }
        assert_eq!(saw, (true, true), "the limit falls inside the range tried");
    }

    #[test]
    fn a_bad_message_in_a_stream_is_one_bad_record() {
        let good = request(&[len_field(2, &scope_spans(&[span(1), span(2)]))]);
        let mut bad = good.clone();
        bad.truncate(good.len() - 3);
        let mut stream = Vec::new();
        for m in [&good, &bad, &good] {
            stream.extend_from_slice(&(m.len() as u32).to_be_bytes());
            stream.extend_from_slice(m);
        }
        stream.extend_from_slice(&[0, 0, 1]); // a truncated length prefix at the end
        let opts = ReadOptions::default();
        let mut report = IngestReport::default();
        let mut sink = |_| Ok(());
        let mut ctx = Ctx::new(Path::new("t.pb"), &opts, &mut report, &mut sink);
        read_stream(&mut stream.as_slice(), &mut ctx).unwrap();
        assert_eq!(ctx.batch.spans.len(), 4);
        drop(ctx);
        assert_eq!(report.rejected, 2);
        let at = 4 + good.len();
        assert_eq!(report.problems[0].location, format!("byte {at}"));
        assert!(report.problems[0]
            .reason
            .starts_with("not a valid ExportTraceServiceRequest: "));
        assert!(report.problems[1]
            .reason
            .contains("truncated length prefix"));
    }

    #[test]
    fn a_bad_bare_request_is_unreadable() {
        let opts = ReadOptions::default();
        let mut report = IngestReport::default();
        let mut sink = |_| Ok(());
        let mut ctx = Ctx::new(Path::new("t.pb"), &opts, &mut report, &mut sink);
        let mut bytes = varied_request().encode_to_vec();
        bytes.truncate(bytes.len() / 2);
        let e = read_bare(&mut bytes.as_slice(), &mut ctx).unwrap_err();
        assert!(
            e.to_string()
                .contains("not a valid ExportTraceServiceRequest"),
            "{e}"
        );
        let e = read_bare(&mut unknown_fields().as_slice(), &mut ctx).unwrap_err();
        assert!(e.to_string().contains("no resourceSpans"), "{e}");
    }

    /// Valid encodings to mutate.
    fn seeds() -> Vec<Vec<u8>> {
        let mut seeds = vec![varied_request().encode_to_vec(), nested(3)];
        seeds.extend(
            hand_made()
                .into_iter()
                .filter(|(_, b)| run(b, false) != Outcome::Malformed)
                .map(|(_, b)| b),
        );
        seeds
    }

    #[derive(Debug, Clone)]
    enum Mutation {
        Truncate(usize),
        Flip(usize, u8),
        Insert(usize, Vec<u8>),
        Remove(usize, usize),
    }

    fn mutation() -> impl Strategy<Value = Mutation> {
        prop_oneof![
            any::<usize>().prop_map(Mutation::Truncate),
            (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
            (any::<usize>(), prop::collection::vec(any::<u8>(), 1..4))
                .prop_map(|(i, b)| Mutation::Insert(i, b)),
            (any::<usize>(), 1..6usize).prop_map(|(i, n)| Mutation::Remove(i, n)),
        ]
    }

    fn mutate(mut b: Vec<u8>, m: &Mutation) -> Vec<u8> {
        let n = b.len().max(1);
        match m {
            Mutation::Truncate(i) => b.truncate(i % n),
            Mutation::Flip(i, x) => {
                if let Some(byte) = b.get_mut(i % n) {
                    *byte ^= x;
                }
            }
            Mutation::Insert(i, bytes) => {
                let at = i % (b.len() + 1);
                b.splice(at..at, bytes.iter().copied());
            }
            Mutation::Remove(i, k) => {
                let at = i % n;
                let end = (at + k).min(b.len());
                b.drain(at.min(end)..end);
            }
        }
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_0714), ..ProptestConfig::default() })]

        /// Mutated messages never panic, and are read exactly as prost reads them: rejected
        /// whole when prost rejects them, else the same spans and bad records. The one
        /// deliberate difference: an attribute string that is not UTF-8, which prost rejects
        /// (with a UTF-8 error) and the wire decoder reads as U+FFFD.
        #[test]
        fn mutated_messages_read_as_with_prost(
            seed in any::<prop::sample::Index>(),
            ms in prop::collection::vec(mutation(), 1..4),
        ) {
            let seeds = seeds();
            let mut bytes = seeds[seed.index(seeds.len())].clone();
            for m in &ms {
                bytes = mutate(bytes, m);
            }
            let (wire, prost) = (run(&bytes, true), run(&bytes, false));
            if wire != prost {
                let why = ExportTraceServiceRequest::decode(bytes.as_slice())
                    .err()
                    .map(|e| e.to_string())
                    .unwrap_or_default();
                prop_assert!(
                    prost == Outcome::Malformed && why.contains("UTF-8"),
                    "wire {:?}, prost {:?} ({})", wire, prost, why
                );
            }
        }
    }
}
