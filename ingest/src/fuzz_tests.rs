//! Property-based fuzzing of every reader: valid seed files of each format, mutated (truncated,
//! bytes flipped, bytes inserted), must read to a result or a clean error, never a panic, and a
//! successful read must never produce more spans than the seed holds plus what mutation could add.
//!
//! CI runs the default number of cases; for a longer fuzz run:
//! `PROPTEST_CASES=20000 cargo test -p augur-ingest fuzz`. Failures proptest finds are kept in
//! `proptest-regressions/` and replayed first on every run.

use std::io::Write;

use proptest::prelude::*;
use prost::Message;

use crate::{read_file, IngestReport, OwnedSpan, ReadOptions, SpanBatch};

const OTLP_LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1","endTimeUnixNano":"5","status":{"code":2},"attributes":[{"key":"peer.service","value":{"stringValue":"db"}}]},{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b175","parentSpanId":"eee19b7ec3c1b174","name":"q","kind":3,"startTimeUnixNano":2,"endTimeUnixNano":4}]}]}]}"#;

const JAEGER: &str = r#"{"data":[{"traceID":"00000000000000000000000000000001","spans":[{"traceID":"00000000000000000000000000000001","spanID":"0000000000000002","operationName":"op","references":[],"startTime":1485467191639875,"duration":5,"tags":[{"key":"span.kind","type":"string","value":"server"},{"key":"error","type":"bool","value":true}],"processID":"p1"},{"traceID":"00000000000000000000000000000001","spanID":"0000000000000003","operationName":"child","references":[{"refType":"CHILD_OF","traceID":"00000000000000000000000000000001","spanID":"0000000000000002"}],"startTime":1485467191639876,"duration":2,"tags":[],"processID":"p2"}],"processes":{"p1":{"serviceName":"a","tags":[]},"p2":{"serviceName":"b","tags":[]}}}]}"#;

const ZIPKIN: &str = r#"[{"traceId":"1e223ff1f80f1c69","id":"74280ae0c10d8062","kind":"CLIENT","name":"get","timestamp":1472470996199000,"duration":207000,"localEndpoint":{"serviceName":"frontend"},"remoteEndpoint":{"serviceName":"backend"}},{"traceId":"1e223ff1f80f1c69","id":"74280ae0c10d8062","kind":"SERVER","name":"get /api","timestamp":1472470996238000,"duration":151000,"localEndpoint":{"serviceName":"backend"},"shared":true,"tags":{"error":"boom"}}]"#;

const CSV: &str = "TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration\nabc,s1,root,ts-order-service-7d9f8b6c5d-x2k4q,GET /order,1000,5000,4000\nabc,s2,s1,ts-user-service-6b7f9c8d4-abcde,GET /user,2000,3000,1000\n";

fn otlp_proto() -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    let req: ExportTraceServiceRequest = {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
        use opentelemetry_proto::tonic::resource::v1::Resource;
        use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
        let span = |id: u8, parent: Option<u8>| Span {
            trace_id: vec![7; 16],
            span_id: vec![id; 8],
            parent_span_id: parent.map(|p| vec![p; 8]).unwrap_or_default(),
            name: format!("op{id}"),
            kind: 2,
            start_time_unix_nano: 10,
            end_time_unix_nano: 20,
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: vec![KeyValue {
                        key: "service.name".into(),
                        value: Some(AnyValue {
                            value: Some(any_value::Value::StringValue("svc".into())),
                        }),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    spans: vec![span(1, None), span(2, Some(1))],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    };
    req.encode_to_vec()
}

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let proto = otlp_proto();
    let mut stream = Vec::new();
    for _ in 0..2 {
        stream.extend_from_slice(&(proto.len() as u32).to_be_bytes());
        stream.extend_from_slice(&proto);
    }
    let parquet = {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        let mut batch = SpanBatch::new();
        let span = OwnedSpan {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            service: "svc".into(),
            name: "op".into(),
            kind: 2,
            start_ns: 1,
            end_ns: 2,
            status: 0,
            peer: Some("db".into()),
            peer_kind: Default::default(),
            http_route: None,
            rpc_method: None,
            error_type: None,
            experiment: None,
            link: None,
        };
        batch.push_owned(&span);
        crate::write_parquet(&path, &batch).unwrap();
        std::fs::read(&path).unwrap()
    };
    vec![
        (
            "otlp.jsonl",
            format!("{OTLP_LINE}\n{OTLP_LINE}\n").into_bytes(),
        ),
        (
            "otlp.json",
            OTLP_LINE
                .replace("\"scopeSpans\"", "\n  \"scopeSpans\"")
                .into_bytes(),
        ),
        ("otlp.pb", proto),
        ("otlp.pbstream", stream),
        ("jaeger.json", JAEGER.as_bytes().to_vec()),
        ("zipkin.json", ZIPKIN.as_bytes().to_vec()),
        ("spans.csv", CSV.as_bytes().to_vec()),
        ("spans.parquet", parquet),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(prop::sample::Index),
    Flip(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<prop::sample::Index>().prop_map(Mutation::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<prop::sample::Index>(),
            prop::collection::vec(any::<u8>(), 1..8)
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<prop::sample::Index>(), 1usize..16).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

fn apply(mut bytes: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for m in muts {
        if bytes.is_empty() {
            break;
        }
        match m {
            Mutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
            Mutation::Flip(i, b) => {
                let k = i.index(bytes.len());
                bytes[k] ^= b | 1;
            }
            Mutation::Insert(i, v) => {
                let k = i.index(bytes.len() + 1);
                bytes.splice(k..k, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let k = i.index(bytes.len());
                let end = (k + n).min(bytes.len());
                bytes.drain(k..end);
            }
        }
    }
    bytes
}

/// Reads `bytes` as a file named `name`, in lenient and strict mode; panics only if a reader
/// panics.
fn read_both(name: &str, bytes: &[u8]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .and_then(|mut f| f.write_all(bytes))
        .unwrap();
    for strict in [false, true] {
        let opts = ReadOptions {
            strict,
            batch_size: 3,
        };
        let mut report = IngestReport::default();
        let mut spans = 0usize;
        let _ = read_file(&path, &opts, &mut report, &mut |b| {
            spans += b.len();
            Ok(())
        });
        assert_eq!(spans as u64, report.spans);
    }
}

#[test]
fn every_seed_reads_cleanly() {
    for (name, bytes) in seeds() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &bytes).unwrap();
        let mut report = IngestReport::default();
        let opts = ReadOptions {
            strict: true,
            ..ReadOptions::default()
        };
        read_file(&path, &opts, &mut report, &mut |_| Ok(()))
            .unwrap_or_else(|e| panic!("seed {name}: {e}"));
        assert!(report.spans >= 1, "seed {name} holds spans");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_f022), ..ProptestConfig::default() })]

    #[test]
    fn mutated_files_never_panic(
        which in 0usize..8,
        muts in prop::collection::vec(mutation(), 1..4),
    ) {
        let seeds = seeds();
        let (name, bytes) = &seeds[which % seeds.len()];
        let bytes = apply(bytes.clone(), &muts);
        read_both(name, &bytes);
    }

    #[test]
    fn gzip_and_zstd_of_mutated_files_never_panic(
        which in 0usize..8,
        muts in prop::collection::vec(mutation(), 0..3),
        cut in any::<prop::sample::Index>(),
    ) {
        let seeds = seeds();
        let (name, bytes) = &seeds[which % seeds.len()];
        let bytes = apply(bytes.clone(), &muts);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&bytes).unwrap();
        let mut gz = gz.finish().unwrap();
        read_both(&format!("{name}.gz"), &gz);
        let n = cut.index(gz.len());
        gz.truncate(n);
        read_both(&format!("{name}.gz"), &gz);
        let zst = zstd::encode_all(&bytes[..], 1).unwrap();
        read_both(&format!("{name}.zst"), &zst);
    }
}

#[test]
fn a_csv_span_before_1970_is_rejected_with_its_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spans.csv");
    std::fs::write(&path, CSV.replace(",2000,3000,", ",-2000,3000,")).unwrap();
    let mut report = IngestReport::default();
    read_file(&path, &ReadOptions::default(), &mut report, &mut |_| Ok(())).unwrap();
    assert_eq!((report.spans, report.rejected), (1, 1));
    assert!(
        report.problems[0].to_string().contains("negative"),
        "{:?}",
        report.problems
    );
}

/// Spans read from `bytes` as a file named `name`, and the report.
fn read_named(name: &str, bytes: &[u8], strict: bool) -> Result<(u64, IngestReport), String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    let mut report = IngestReport::default();
    let opts = ReadOptions {
        strict,
        ..ReadOptions::default()
    };
    read_file(&path, &opts, &mut report, &mut |_| Ok(()))
        .map(|_| (report.spans, report))
        .map_err(|e| e.to_string())
}

#[test]
fn a_byte_order_mark_is_not_part_of_any_text_format() {
    for (name, bytes) in seeds() {
        let plain = read_named(name, &bytes, true);
        let Ok((spans, _)) = plain else { continue };
        let mut bom = b"\xEF\xBB\xBF".to_vec();
        bom.extend_from_slice(&bytes);
        if name.contains(".pb") || name.ends_with(".parquet") {
            continue;
        }
        let with_bom = read_named(name, &bom, true);
        assert_eq!(with_bom.map(|r| r.0), Ok(spans), "{name}");
    }
}

#[test]
fn a_compressed_file_cut_short_keeps_what_came_before_the_cut() {
    // Large enough for zstd to emit several blocks (it decompresses nothing of a partial one).
    let lines: String = (0..2000)
        .map(|i| format!("{}\n", OTLP_LINE.replace("GET /", &format!("GET /{i}"))))
        .collect();
    let (all, _) = read_named("t.jsonl", lines.as_bytes(), true).unwrap();
    assert_eq!(all, 4000);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(lines.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    let zst = zstd::encode_all(lines.as_bytes(), 1).unwrap();
    for (name, full) in [("t.jsonl.gz", gz), ("t.jsonl.zst", zst)] {
        let cut = &full[..full.len() * 9 / 10];
        let (spans, report) = read_named(name, cut, false).unwrap();
        assert!(spans > 0 && spans < all, "{name}: {spans} spans");
        let problems: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
        assert!(
            problems.iter().any(|p| p.contains("cut short")),
            "{name}: {problems:?}"
        );
        // Strict reading refuses it, saying why.
        let err = read_named(name, cut, true).unwrap_err();
        assert!(err.contains("truncated or damaged"), "{name}: {err}");
        // Cut before the first byte came out: an error, not an empty file.
        let err = read_named(name, &full[..6], false).unwrap_err();
        assert!(err.contains("decompress"), "{name}: {err}");
    }
}

#[test]
fn an_empty_service_name_is_unknown_service() {
    // As a missing one is (the OpenTelemetry default), in every format that names services.
    let cases = [
        ("otlp.jsonl", OTLP_LINE.replace("\"shop\"", "\"\"")),
        (
            "otlp.json",
            OTLP_LINE
                .replace("\"shop\"", "\"\"")
                .replace("\"scopeSpans\"", "\n \"scopeSpans\""),
        ),
        (
            "jaeger.json",
            JAEGER.replace("\"serviceName\":\"a\"", "\"serviceName\":\"\""),
        ),
        ("zipkin.json", ZIPKIN.replace("\"frontend\"", "\"\"")),
    ];
    for (name, text) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, &text).unwrap();
        let mut services = Vec::new();
        let mut report = IngestReport::default();
        read_file(&path, &ReadOptions::default(), &mut report, &mut |b| {
            services.extend(b.spans.iter().map(|s| b.str(s.service).to_string()));
            Ok(())
        })
        .unwrap();
        assert!(
            services.iter().any(|s| s == "unknown_service"),
            "{name}: {services:?}"
        );
        assert!(
            services.iter().all(|s| !s.is_empty()),
            "{name}: {services:?}"
        );
    }
}

#[test]
fn a_json_document_that_is_not_utf8_keeps_its_spans() {
    // One OTLP JSON, Jaeger or Zipkin document with a stray byte and a character cut short in
    // a string: read whole, those bytes as U+FFFD, rather than losing every span of the file.
    for (name, bytes) in seeds() {
        if !name.ends_with(".json") {
            continue;
        }
        let (spans, _) = read_named(name, &bytes, true).unwrap();
        let text = String::from_utf8(bytes).unwrap();
        // Inside the first span's name (`name` or Jaeger's `operationName`).
        let at = text.find("ame\":\"").unwrap() + 6;
        let mut bad = text.as_bytes()[..at].to_vec();
        bad.extend_from_slice(b"\xff\xe2\x82");
        bad.extend_from_slice(&text.as_bytes()[at..]);
        let (lossy, report) = read_named(name, &bad, true).unwrap();
        assert_eq!((lossy, report.rejected), (spans, 0), "{name}");
    }
}

#[test]
fn a_json_line_that_is_not_utf8_keeps_its_spans() {
    let bad = OTLP_LINE.replace("GET /", "GET /\u{1}");
    let mut bytes = bad.into_bytes();
    let at = bytes.iter().position(|&b| b == 1).unwrap();
    bytes[at] = 0xff;
    bytes.push(b'\n');
    let (spans, report) = read_named("t.jsonl", &bytes, false).unwrap();
    assert_eq!((spans, report.rejected), (2, 0));
}
