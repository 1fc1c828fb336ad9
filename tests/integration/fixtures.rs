//! The real projects' fixtures in `../shared/fixtures/formats` parse, and hold what they hold.
//! Expected values were read off the files themselves (by eye and with a separate script), not
//! off augur's output.

use std::collections::{BTreeMap, BTreeSet};

use augur_ingest::{to_hex, OwnedSpan, SpanKind, StatusCode};

use crate::common::{ok, read_spans, shared};

fn fixture(name: &str) -> Option<(Vec<OwnedSpan>, augur_ingest::IngestReport)> {
    let path = shared(&format!("fixtures/formats/{name}"))?;
    Some(read_spans(&path))
}

fn services(spans: &[OwnedSpan]) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for s in spans {
        *m.entry(s.service.clone()).or_default() += 1;
    }
    m
}

fn kinds(spans: &[OwnedSpan]) -> BTreeMap<&'static str, usize> {
    let mut m = BTreeMap::new();
    for s in spans {
        *m.entry(s.span_kind().as_str()).or_default() += 1;
    }
    m
}

fn errors(spans: &[OwnedSpan]) -> usize {
    spans
        .iter()
        .filter(|s| s.status_code() == StatusCode::Error)
        .count()
}

/// Every span id is unique within its trace and every parent id names a span of the trace.
fn assert_linked(name: &str, spans: &[OwnedSpan]) {
    let mut ids = BTreeSet::new();
    for s in spans {
        assert!(
            ids.insert((s.trace_id, s.span_id)),
            "{name}: span id {} appears twice in its trace",
            to_hex(&s.span_id)
        );
    }
    for s in spans {
        if let Some(p) = s.parent_span_id {
            assert!(
                ids.contains(&(s.trace_id, p)),
                "{name}: span {} has a parent {} missing from its trace",
                to_hex(&s.span_id),
                to_hex(&p)
            );
        }
    }
}

#[test]
fn otlp_example_trace() {
    let Some((spans, report)) = fixture("otlp-example-trace.json") else {
        return;
    };
    assert_eq!(report.rejected, 0);
    assert_eq!(spans.len(), 1);
    let s = &spans[0];
    assert_eq!(s.service, "my.service");
    assert_eq!(s.name, "I'm a server span");
    assert_eq!(s.span_kind(), SpanKind::Server);
    // Upper-case hex ids in the file, bytes here.
    assert_eq!(to_hex(&s.trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(to_hex(&s.span_id), "eee19b7ec3c1b174");
    assert_eq!(
        s.parent_span_id.map(|p| to_hex(&p)).as_deref(),
        Some("eee19b7ec3c1b173")
    );
    assert_eq!(s.start_ns, 1_544_712_660_000_000_000);
    assert_eq!(s.end_ns, 1_544_712_661_000_000_000);
}

#[test]
fn jaeger_ui_trace() {
    let Some((spans, report)) = fixture("jaeger-ui_01.json") else {
        return;
    };
    assert_eq!(report.rejected, 0);
    assert_eq!(spans.len(), 5);
    let want: BTreeMap<String, usize> =
        [("service-x".to_string(), 2), ("service-y".to_string(), 3)].into();
    assert_eq!(services(&spans), want);
    assert_eq!(errors(&spans), 1);
    let parent_of = |id: u8| {
        spans
            .iter()
            .find(|s| s.span_id == [0, 0, 0, 0, 0, 0, 0, id])
            .and_then(|s| s.parent_span_id)
            .map(|p| p[7])
    };
    assert_eq!(parent_of(3), Some(2));
    // CHILD_OF a span of another trace is skipped for the same-trace CHILD_OF.
    assert_eq!(parent_of(4), Some(2));
    assert_eq!(parent_of(5), Some(4));
    // Span id 2 is used twice (by different spans): both are kept for the model to count.
    assert_eq!(spans.iter().filter(|s| s.span_id[7] == 2).count(), 2);
}

#[test]
fn zipkin_envoy_shared_server_without_client() {
    let Some((spans, report)) = fixture("zipkin-envoy.json") else {
        return;
    };
    assert_eq!(report.rejected, 0);
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].span_kind(), SpanKind::Server);
    assert_eq!(spans[0].name, "localhost:10000");
    // 64-bit trace id, zero-extended.
    assert_eq!(
        to_hex(&spans[0].trace_id),
        "0000000000000000978883983d506fa5"
    );
    assert_eq!(spans[0].parent_span_id, None);
    assert_eq!(spans[0].end_ns - spans[0].start_ns, 127_115_000);
}

#[test]
fn zipkin_messaging() {
    let Some((spans, report)) = fixture("zipkin-messaging.json") else {
        return;
    };
    assert_eq!(report.rejected, 0);
    assert_eq!(spans.len(), 4);
    let want: BTreeMap<String, usize> =
        [("backend".to_string(), 2), ("frontend".to_string(), 2)].into();
    assert_eq!(services(&spans), want);
    let want: BTreeMap<&str, usize> = [
        ("consumer", 1),
        ("producer", 1),
        ("server", 1),
        ("unspecified", 1),
    ]
    .into();
    assert_eq!(kinds(&spans), want);
    let producer = spans
        .iter()
        .find(|s| s.span_kind() == SpanKind::Producer)
        .unwrap();
    assert_eq!(producer.peer.as_deref(), Some("rabbitmq"));
    assert_linked("zipkin-messaging", &spans);
}

#[test]
fn zipkin_messaging_kafka() {
    let Some((spans, report)) = fixture("zipkin-messaging-kafka.json") else {
        return;
    };
    assert_eq!(report.rejected, 0);
    assert_eq!(spans.len(), 28);
    let want: BTreeMap<String, usize> =
        [("servicea".to_string(), 22), ("serviceb".to_string(), 6)].into();
    assert_eq!(services(&spans), want);
    assert_eq!(errors(&spans), 3);
    assert!(spans
        .iter()
        .filter(|s| s.status_code() == StatusCode::Error)
        .all(|s| s.service == "serviceb"));
    let kafka = spans
        .iter()
        .filter(|s| s.span_kind() == SpanKind::Producer && s.peer.as_deref() == Some("kafka"))
        .count();
    assert_eq!(kafka, 9);
    assert_linked("zipkin-messaging-kafka", &spans);
}

#[test]
fn zipkin_simple_db_makes_a_virtual_node() {
    let Some(path) = shared("fixtures/formats/zipkin-simple-db-p6.json") else {
        return;
    };
    let (spans, report) = read_spans(&path);
    assert_eq!(report.rejected, 0);
    assert_eq!(spans.len(), 5);
    let want: BTreeMap<&str, usize> = [("client", 4), ("server", 1)].into();
    assert_eq!(kinds(&spans), want);
    assert!(spans
        .iter()
        .filter(|s| s.span_kind() == SpanKind::Client)
        .all(|s| s.peer.as_deref() == Some("app_db")));
    // End to end: the four database calls become calls to a virtual node `app_db`.
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("m.json");
    ok(&[
        "learn",
        path.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    let (json, _) = ok(&["graph", model.to_str().unwrap(), "--format", "json"]);
    let g: serde_json::Value = serde_json::from_str(&json).unwrap();
    let virtuals: Vec<&str> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["virtual"] == true)
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(virtuals, ["app_db"]);
    let calls: u64 = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["to"] == "app_db")
        .map(|e| e["calls"].as_u64().unwrap())
        .sum();
    assert_eq!(calls, 4);
}

#[test]
fn zipkin_skew_shared_ids_are_split() {
    let Some((spans, report)) = fixture("zipkin-skew.json") else {
        return;
    };
    assert_eq!(report.rejected, 0);
    assert_eq!(spans.len(), 4);
    assert_linked("zipkin-skew", &spans);
    // The server half of the shared id is now the child of the client half.
    let client = spans
        .iter()
        .find(|s| s.span_kind() == SpanKind::Client)
        .unwrap();
    let server = spans
        .iter()
        .find(|s| s.span_kind() == SpanKind::Server && s.parent_span_id.is_some())
        .unwrap();
    assert_eq!(server.parent_span_id, Some(client.span_id));
    assert_ne!(server.service, client.service);
}

#[test]
fn zipkin_yelp() {
    let Some((spans, report)) = fixture("zipkin-yelp.json") else {
        return;
    };
    assert_eq!(report.rejected, 0);
    assert_eq!(spans.len(), 16);
    assert_linked("zipkin-yelp", &spans);
    let peers: BTreeSet<&str> = spans.iter().filter_map(|s| s.peer.as_deref()).collect();
    assert!(
        peers.contains("memcache") && peers.contains("mysql"),
        "{peers:?}"
    );
}

#[test]
fn zipkin_smartthings_large_real_trace() {
    let Some((spans, report)) = fixture("zipkin-smartthings-mobile-web-install.json") else {
        return;
    };
    // 1041 elements: 84 are late fragments (no timestamp, no kind) of a span with the same id and
    // service, merged into it as Zipkin does.
    assert_eq!(report.rejected, 0, "{:?}", report.problems);
    assert_eq!(spans.len(), 1041 - 84);
    assert_eq!(services(&spans).len(), 16);
    assert_eq!(errors(&spans), 2);
    assert_linked("zipkin-smartthings", &spans);
}

#[test]
fn every_fixture_learns() {
    let Some(dir) = shared("fixtures/formats") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m.json");
    let (_, stderr) = ok(&[
        "learn",
        dir.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    assert!(stderr.contains("edges:"), "{stderr}");
    // The OTLP example's span names a parent that is not in the file: reported, not guessed.
    assert!(stderr.contains("spans whose parent is missing"), "{stderr}");
}
