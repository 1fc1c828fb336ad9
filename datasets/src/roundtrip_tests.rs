//! Every writer's output read back with `augur_ingest::read_paths`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use augur_ingest::{fnv1a64, read_paths, OwnedSpan, ReadOptions, SpanBatch, SpanKind, StatusCode};

use super::*;

/// A directory removed at the end of the test (no `tempfile` dev-dependency: it is not in the lock
/// file for this crate).
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("augur-datasets-test-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TestDir(p)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn generate(traces: usize, fault: &str) -> Vec<OwnedSpan> {
    let w = World::shop();
    let mut g = Generator::new(&w, 11)
        .unwrap()
        .with_fault(fault.parse().unwrap())
        .unwrap();
    let mut b = SpanBatch::new();
    g.emit(traces, &mut b);
    b.to_owned_spans()
}

fn read_back(path: PathBuf) -> Vec<OwnedSpan> {
    let mut spans = Vec::new();
    let report = read_paths(
        &[path],
        &ReadOptions {
            strict: true,
            ..ReadOptions::default()
        },
        &mut |b| {
            spans.extend(b.to_owned_spans());
            Ok(())
        },
    )
    .unwrap();
    assert_eq!(report.rejected, 0);
    spans
}

/// Zipkin's reader gives the server half of a shared span this id (see ingest's zipkin.rs).
fn zipkin_derived(id: &[u8; 8]) -> [u8; 8] {
    let mut text = id.to_vec();
    text.extend_from_slice(b"zipkin-shared");
    fnv1a64(&text).to_be_bytes()
}

/// What a format keeps of each span.
fn expected(format: TraceFormat, spans: &[OwnedSpan]) -> Vec<OwnedSpan> {
    let kinds: HashMap<_, _> = spans
        .iter()
        .map(|s| ((s.trace_id, s.span_id), s.span_kind()))
        .collect();
    // Zipkin: servers whose parent is a client share its id, then get a derived one when read.
    let renamed: HashMap<_, _> = spans
        .iter()
        .filter(|s| {
            s.span_kind() == SpanKind::Server
                && s.parent_span_id
                    .is_some_and(|p| kinds.get(&(s.trace_id, p)) == Some(&SpanKind::Client))
        })
        .map(|s| {
            (
                (s.trace_id, s.span_id),
                zipkin_derived(&s.parent_span_id.unwrap_or_default()),
            )
        })
        .collect();
    spans
        .iter()
        .map(|s| {
            let mut s = s.clone();
            let micros = |s: &mut OwnedSpan| {
                let start = s.start_ns.div_euclid(1000) * 1000;
                s.end_ns = start + (s.end_ns - s.start_ns) / 1000 * 1000;
                s.start_ns = start;
            };
            match format {
                TraceFormat::Jaeger => micros(&mut s),
                TraceFormat::Zipkin => {
                    micros(&mut s);
                    // The peer is the remote endpoint's name: which attribute named it is lost.
                    s.peer_kind = Default::default();
                    if s.span_kind() == SpanKind::Internal {
                        s.kind = SpanKind::Unspecified as u8;
                    }
                    if let Some(&new) = renamed.get(&(s.trace_id, s.span_id)) {
                        s.span_id = new;
                    } else if let Some(p) = s.parent_span_id {
                        if let Some(&new) = renamed.get(&(s.trace_id, p)) {
                            s.parent_span_id = Some(new);
                        }
                    }
                }
                TraceFormat::Csv => {
                    s.kind = 0;
                    // The file has no status column: not recorded, which is not "unset".
                    s.status = StatusCode::Unknown as u8;
                    s.peer = None;
                    s.peer_kind = Default::default();
                    s.http_route = None;
                    s.rpc_method = None;
                    s.error_type = None;
                    s.experiment = None;
                }
                _ => {}
            }
            s
        })
        .collect()
}

fn round_trip(format: TraceFormat, per_batch: usize) {
    let fault = "payment:error=0.3";
    let traces = 200;
    let dir = TestDir::new(format.name());
    let path = dir.0.join(format!("traces.{}", format.extension()));
    let file = std::fs::File::create(&path).unwrap();
    let truth = write_world_batched(
        &World::shop(),
        11,
        traces,
        Some(fault.parse().unwrap()),
        format,
        file,
        per_batch,
        0,
    )
    .unwrap();
    let original = generate(traces, fault);
    let mut got = read_back(path);
    let mut want = expected(format, &original);
    assert_eq!(got.len(), original.len(), "{format}: span count");
    let services = |v: &[OwnedSpan]| v.iter().map(|s| s.service.clone()).collect::<BTreeSet<_>>();
    assert_eq!(services(&got), services(&original), "{format}: services");
    assert!(services(&got).len() >= 12);
    got.sort();
    want.sort();
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w, "{format}: first differing span");
    }
    assert_eq!(got, want);
    // Parent links resolve within each trace (Zipkin's derived ids included).
    let ids: BTreeSet<_> = got.iter().map(|s| (s.trace_id, s.span_id)).collect();
    assert!(got.iter().all(|s| s
        .parent_span_id
        .is_none_or(|p| ids.contains(&(s.trace_id, p)))));
    assert_eq!(
        got.iter().filter(|s| s.parent_span_id.is_none()).count(),
        traces
    );
    assert!(truth
        .edge("frontend POST /checkout", "checkout PlaceOrder")
        .is_some());
}

#[test]
fn round_trip_otlp_json() {
    round_trip(TraceFormat::OtlpJson, 37);
}

#[test]
fn round_trip_otlp_jsonl() {
    round_trip(TraceFormat::OtlpJsonl, 37);
}

#[test]
fn round_trip_otlp_proto() {
    round_trip(TraceFormat::OtlpProto, 37);
}

#[test]
fn round_trip_otlp_proto_stream() {
    round_trip(TraceFormat::OtlpProtoStream, 37);
}

#[test]
fn round_trip_jaeger() {
    round_trip(TraceFormat::Jaeger, 37);
}

#[test]
fn round_trip_zipkin() {
    round_trip(TraceFormat::Zipkin, 37);
}

#[test]
fn round_trip_csv() {
    round_trip(TraceFormat::Csv, 37);
}

#[test]
fn round_trip_parquet() {
    round_trip(TraceFormat::Parquet, 37);
}

#[test]
fn one_batch_equals_many_batches_and_output_is_deterministic() {
    for format in [
        TraceFormat::OtlpJsonl,
        TraceFormat::Zipkin,
        TraceFormat::OtlpProtoStream,
    ] {
        let run = |per_batch| {
            let mut out = Vec::new();
            let t =
                write_world_batched(&World::shop(), 3, 300, None, format, &mut out, per_batch, 0)
                    .unwrap();
            (out, t)
        };
        let (a, ta) = run(300);
        let (b, tb) = run(300);
        assert_eq!(a, b, "{format}: same seed, same bytes");
        assert_eq!(ta, tb);
        let (_, tc) = run(7);
        assert_eq!(
            ta, tc,
            "{format}: batching does not change what is generated"
        );
    }
}

#[test]
fn otlp_json_shape_is_pinned() {
    let w = World::shop();
    let mut g = Generator::new(&w, 1)
        .unwrap()
        .with_fault("ad:latency=+1ms".parse().unwrap())
        .unwrap();
    let mut b = SpanBatch::new();
    g.emit(200, &mut b);
    let mut tw = TraceWriter::new(TraceFormat::OtlpJson, Vec::new())
        .with_peer_attributes(w.peer_attributes());
    tw.write_batch(&b).unwrap();
    let out = tw.finish().unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let rs = doc["resourceSpans"].as_array().unwrap();
    let svc = rs[0]["resource"]["attributes"][0].clone();
    assert_eq!(svc["key"], "service.name");
    let span = &rs[0]["scopeSpans"][0]["spans"][0];
    assert!(span["traceId"]
        .as_str()
        .unwrap()
        .chars()
        .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    assert_eq!(span["traceId"].as_str().unwrap().len(), 32);
    assert!(span["startTimeUnixNano"].is_string());
    assert!(span["kind"].is_u64());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains(r#"{"key":"db.system","value":{"stringValue":"postgres"}}"#));
    assert!(
        text.contains(r#"{"key":"messaging.destination.name","value":{"stringValue":"orders"}}"#)
    );
    assert!(text.contains(r#"{"key":"peer.service","value":{"stringValue":"payment"}}"#));
    assert!(
        text.contains(r#"{"key":"augur.experiment","value":{"stringValue":"ad:latency=+1ms"}}"#)
    );
}

/// Throughput of generation and of the JSONL writer; run with
/// `cargo test --release -p augur-datasets -- --ignored --nocapture throughput`.
#[test]
#[ignore = "a measurement, meaningful only in release"]
fn throughput() {
    let w = World::shop();
    let mut g = Generator::new(&w, 1).unwrap();
    let mut batches = Vec::new();
    let t0 = std::time::Instant::now();
    let mut spans = 0;
    for _ in 0..50 {
        let mut b = SpanBatch::new();
        spans += g.emit(TRACES_PER_BATCH, &mut b);
        batches.push(b);
    }
    let gen_s = t0.elapsed().as_secs_f64();
    let t1 = std::time::Instant::now();
    let mut tw = TraceWriter::new(TraceFormat::OtlpJsonl, std::io::sink())
        .with_peer_attributes(w.peer_attributes());
    for b in &batches {
        tw.write_batch(b).unwrap();
    }
    tw.finish().unwrap();
    let write_s = t1.elapsed().as_secs_f64();
    let mut counted = Vec::new();
    let mut tw = TraceWriter::new(TraceFormat::OtlpJsonl, &mut counted)
        .with_peer_attributes(w.peer_attributes());
    tw.write_batch(&batches[0]).unwrap();
    tw.finish().unwrap();
    let bytes = counted.len() as u64;
    eprintln!(
        "{spans} spans: generate {:.2} M spans/s, write OTLP JSONL {:.2} M spans/s, {:.0} bytes/span",
        spans as f64 / gen_s / 1e6,
        spans as f64 / write_s / 1e6,
        bytes as f64 / batches[0].len() as f64
    );
}
