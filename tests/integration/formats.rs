//! On a generated world with known truth, every trace format gives the identical graph, and it
//! is exactly right: every edge (virtual nodes included), no spurious one, every call counted.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;

use crate::common::ok;

type Edges = BTreeMap<(String, String), u64>;
type Nodes = BTreeSet<(String, bool, bool)>;

/// Generates `world` traces in `format` with `extra` args; returns (file, truth JSON).
fn generate(dir: &tempfile::TempDir, format: &str, extra: &[&str]) -> (String, serde_json::Value) {
    let file = dir.path().join(format!("traces.{format}"));
    let truth = dir.path().join(format!("truth.{format}.json"));
    let mut args = vec![
        "generate",
        "--format",
        format,
        "--out",
        file.to_str().unwrap(),
        "--truth",
        truth.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args);
    let truth: serde_json::Value = serde_json::from_slice(&std::fs::read(&truth).unwrap()).unwrap();
    (file.to_str().unwrap().to_string(), truth)
}

/// Learns `file` and returns its graph as (nodes, edges with call counts).
fn learned(dir: &tempfile::TempDir, file: &str) -> (Nodes, Edges) {
    let model = dir.path().join(format!("{}.model", file.replace('/', "_")));
    // Experiments' traces too: these tests are about the graph whatever traffic it came from.
    ok(&[
        "learn",
        file,
        "--out",
        model.to_str().unwrap(),
        "--strict",
        "--include-experiments",
    ]);
    let (json, _) = ok(&["graph", model.to_str().unwrap(), "--format", "json"]);
    let g: serde_json::Value = serde_json::from_str(&json).unwrap();
    let nodes = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["virtual"].as_bool().unwrap(),
                n["endpoint"].as_bool().unwrap(),
            )
        })
        .collect();
    let edges = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                (
                    e["from"].as_str().unwrap().to_string(),
                    e["to"].as_str().unwrap().to_string(),
                ),
                e["calls"].as_u64().unwrap(),
            )
        })
        .collect();
    (nodes, edges)
}

/// The truth's nodes and edges, with attempts (every client span is a call to the model).
fn truth_graph(truth: &serde_json::Value) -> (Nodes, Edges) {
    let nodes = truth["nodes"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| {
            (
                n["id"].as_str().unwrap().to_string(),
                n["virtual"].as_bool().unwrap(),
                n["endpoint"].as_bool().unwrap(),
            )
        })
        .collect();
    let mut edges = Edges::new();
    for (from, tos) in truth["edges"].as_object().unwrap() {
        for (to, e) in tos.as_object().unwrap() {
            edges.insert((from.clone(), to.clone()), e["attempts"].as_u64().unwrap());
        }
    }
    (nodes, edges)
}

fn assert_same(what: &str, got: &(Nodes, Edges), want: &(Nodes, Edges)) {
    let missing: Vec<_> = want.1.keys().filter(|k| !got.1.contains_key(*k)).collect();
    let spurious: Vec<_> = got.1.keys().filter(|k| !want.1.contains_key(*k)).collect();
    assert!(
        missing.is_empty() && spurious.is_empty(),
        "{what}: missing edges {missing:?}, spurious edges {spurious:?}"
    );
    assert_eq!(got.0, want.0, "{what}: nodes differ");
    assert_eq!(got.1, want.1, "{what}: call counts differ");
}

const SHOP: [&str; 6] = ["--world", "shop", "--traces", "400", "--seed", "11"];

#[test]
fn every_format_gives_the_true_graph_on_the_shop() {
    let dir = tempfile::tempdir().unwrap();
    let mut want = None;
    for format in [
        "otlp-json",
        "otlp-jsonl",
        "otlp-proto",
        "otlp-proto-stream",
        "jaeger",
        "zipkin",
        "parquet",
    ] {
        let (file, truth) = generate(&dir, format, &SHOP);
        let t = truth_graph(&truth);
        // Same world and seed: the same truth whatever the format.
        if let Some(w) = &want {
            assert_eq!(&t, w, "{format}: truth differs between formats");
        }
        assert!(
            t.0.iter().any(|(_, v, _)| *v),
            "the shop has uninstrumented peers"
        );
        assert_same(format, &learned(&dir, &file), &t);
        want = Some(t);
    }
}

#[test]
fn csv_without_kinds_or_peers_gives_the_instrumented_part_of_the_graph() {
    // A CSV span table has no span kinds and no peer attributes, so calls to uninstrumented peers
    // cannot be told from internal work: the graph is the truth without its virtual nodes.
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generate(&dir, "csv", &SHOP);
    let (nodes, edges) = truth_graph(&truth);
    let virtuals: BTreeSet<String> = nodes.iter().filter(|n| n.1).map(|n| n.0.clone()).collect();
    let want: (Nodes, Edges) = (
        nodes.into_iter().filter(|n| !n.1).collect(),
        edges
            .into_iter()
            .filter(|((_, to), _)| !virtuals.contains(to))
            .collect(),
    );
    // Without kinds the call is seen from the callee's entry span: one per server span, so retries
    // that never reached the server are not seen; the generator's shop has none without a fault.
    let (got_nodes, got_edges) = learned(&dir, &file);
    assert_eq!(got_nodes, want.0);
    let got_keys: BTreeSet<_> = got_edges.keys().collect();
    let want_keys: BTreeSet<_> = want.1.keys().collect();
    assert_eq!(got_keys, want_keys);
}

#[test]
fn a_format_without_status_learns_no_error_rates_from_it() {
    // The shop really fails now and then, but its CSV span table records no status: "not
    // recorded" must not be learned as "never failed" (nor as Jeffreys' 50% on nothing). Learned
    // from the JSON Lines form of the same traffic, which records status, the rates are there.
    let dir = tempfile::tempdir().unwrap();
    let (csv, _) = generate(&dir, "csv", &SHOP);
    let (jsonl, _) = generate(&dir, "otlp-jsonl", &SHOP);
    let baseline = |file: &str, name: &str| {
        let model = dir.path().join(name);
        let model = model.to_str().unwrap();
        let (learned, _) = ok(&["learn", file, "--out", model, "--json"]);
        let learned: serde_json::Value = serde_json::from_str(&learned).unwrap();
        let (text, _) = ok(&["model", "show", model]);
        let (sim, _) = ok(&[
            "simulate",
            model,
            "--fault",
            "payment:down",
            "--requests",
            "3000",
            "--samples",
            "8",
            "--json",
        ]);
        let sim: serde_json::Value = serde_json::from_str(&sim).unwrap();
        let worst = sim["operations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["baseline"]["error_rate"].as_f64().unwrap())
            .fold(0.0, f64::max);
        let (sim_text, _) = ok(&[
            "simulate",
            model,
            "--fault",
            "payment:down",
            "--samples",
            "4",
        ]);
        (learned, text, worst, sim_text)
    };
    let (learned, text, worst, sim_text) = baseline(&csv, "csv.model");
    let operations = learned["operations"].as_u64().unwrap();
    assert_eq!(learned["unrecorded_status_operations"], operations);
    assert!(text.contains("not recorded (no span status)"), "{text}");
    assert!(sim_text.contains("record no span status"), "{sim_text}");
    // What is left of errors without a fault: unseen timeouts cutting a rare long call.
    assert!(
        worst < 0.002,
        "baseline error rate {worst} from unrecorded status"
    );

    let (learned, text, worst, sim_text) = baseline(&jsonl, "jsonl.model");
    assert_eq!(learned["unrecorded_status_operations"], 0);
    assert!(!text.contains("not recorded"), "{text}");
    assert!(!sim_text.contains("record no span status"), "{sim_text}");
    assert!(worst > 0.002, "the shop's own errors are learned: {worst}");
}

#[test]
fn compressed_files_read_like_plain_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (file, truth) = generate(&dir, "otlp-jsonl", &SHOP);
    let plain = std::fs::read(&file).unwrap();
    let gz = dir.path().join("traces.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(&plain).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let zst = dir.path().join("traces.jsonl.zst");
    std::fs::write(&zst, zstd::encode_all(&plain[..], 3).unwrap()).unwrap();
    let want = truth_graph(&truth);
    assert_same("gzip", &learned(&dir, gz.to_str().unwrap()), &want);
    assert_same("zstd", &learned(&dir, zst.to_str().unwrap()), &want);
}

#[test]
fn a_down_service_is_a_failed_call_not_a_new_node() {
    // Normal traffic, then an experiment's traffic with payment down: the calls that never reached
    // payment are failed calls to payment's operation, not an uninstrumented peer named `payment`.
    // (Traces with payment down *all* the time cannot show that payment is a service at all.)
    let dir = tempfile::tempdir().unwrap();
    let (_, normal) = generate(&dir, "otlp-jsonl", &SHOP);
    let sub = tempfile::Builder::new()
        .prefix("experiment")
        .tempdir_in(dir.path())
        .unwrap();
    let mut args = vec!["--world", "shop", "--traces", "400", "--seed", "12"];
    args.extend_from_slice(&["--fault", "payment:down"]);
    let (_, faulted) = generate(&sub, "zipkin", &args);
    let (mut nodes, mut edges) = truth_graph(&normal);
    let (fault_nodes, fault_edges) = truth_graph(&faulted);
    for (id, v, e) in fault_nodes {
        if !nodes.iter().any(|n| n.0 == id) {
            nodes.insert((id, v, e));
        }
    }
    for (k, n) in fault_edges {
        *edges.entry(k).or_default() += n;
    }
    let got = learned(&dir, dir.path().to_str().unwrap());
    assert_same("normal + payment:down", &got, &(nodes, edges));
    assert!(!got.0.iter().any(|(id, v, _)| *v && id == "payment"));
    let charge = (
        "checkout PlaceOrder".to_string(),
        "payment Charge".to_string(),
    );
    assert!(got.1.contains_key(&charge));
}

#[test]
fn a_large_random_world_is_learned_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--world",
        "random",
        "--services",
        "60",
        "--traces",
        "1500",
        "--seed",
        "5",
    ];
    for format in ["otlp-proto-stream", "zipkin"] {
        let (file, truth) = generate(&dir, format, &args);
        assert_same(format, &learned(&dir, &file), &truth_graph(&truth));
    }
}

#[test]
fn consumers_linked_from_their_own_traces_give_the_same_true_graph() {
    // Messaging instrumentations that receive in batches start a new trace per message and link
    // it to the producer's span instead of parenting it. Every format that carries span links
    // gives the true graph: producer -> consumer, asynchronous, no virtual queue in between.
    let dir = tempfile::tempdir().unwrap();
    let mut args = SHOP.to_vec();
    args.push("--linked-consumers");
    for format in [
        "otlp-json",
        "otlp-jsonl",
        "otlp-proto",
        "otlp-proto-stream",
        "jaeger",
        "parquet",
    ] {
        let (file, truth) = generate(&dir, format, &args);
        let want = truth_graph(&truth);
        assert!(want.1.contains_key(&(
            "checkout PlaceOrder".to_string(),
            "email orders process".to_string()
        )));
        assert_same(&format!("{format}, linked"), &learned(&dir, &file), &want);
    }
    // Zipkin has no links: the consumer is on its own, its queue an uninstrumented peer.
    let (file, _) = generate(&dir, "zipkin", &args);
    let (nodes, edges) = learned(&dir, &file);
    assert!(
        nodes.iter().any(|(id, v, _)| *v && id == "orders"),
        "{nodes:?}"
    );
    assert!(!edges.contains_key(&(
        "checkout PlaceOrder".to_string(),
        "email orders process".to_string()
    )));
}
