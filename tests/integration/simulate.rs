//! `augur simulate` through the binary: the JSON contract, the table, determinism, and clear
//! errors for bad specs and unknown targets.

use crate::common::{fails, ok};

fn shop_model(dir: &tempfile::TempDir) -> String {
    crate::common::shop_model(dir, "3000", "4")
}

#[test]
fn simulate_json_is_the_contract_and_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop_model(&dir);
    let args = [
        "simulate",
        &model,
        "--fault",
        "payment:down",
        "--requests",
        "1500",
        "--samples",
        "16",
        "--seed",
        "7",
        "--json",
    ];
    let (json, _) = ok(&args);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["faults"], serde_json::json!(["payment:down"]));
    let keys =
        |x: &serde_json::Value| -> Vec<String> { x.as_object().unwrap().keys().cloned().collect() };
    let endpoints = v["endpoints"].as_array().unwrap();
    assert_eq!(endpoints.len(), 4);
    for e in endpoints {
        assert_eq!(
            keys(e),
            ["baseline", "endpoint", "operation", "predicted", "service"]
        );
        assert_eq!(keys(&e["baseline"]), ["error_rate", "p50_ms", "p99_ms"]);
        for q in ["error_rate", "p50_ms", "p99_ms"] {
            assert_eq!(keys(&e["predicted"][q]), ["hi", "lo", "mean"]);
            let (lo, mean, hi) = (
                e["predicted"][q]["lo"].as_f64().unwrap(),
                e["predicted"][q]["mean"].as_f64().unwrap(),
                e["predicted"][q]["hi"].as_f64().unwrap(),
            );
            assert!(lo <= hi && lo <= mean + 1e-9 && mean <= hi + 1e-9, "{e}");
        }
        assert_eq!(
            e["endpoint"].as_str().unwrap(),
            format!(
                "{} {}",
                e["service"].as_str().unwrap(),
                e["operation"].as_str().unwrap()
            )
        );
    }
    // Checkout needs payment: its errors rise far above the baseline; browsing is untouched.
    let find = |id: &str| endpoints.iter().find(|e| e["endpoint"] == id).unwrap();
    let checkout = find("frontend POST /checkout");
    assert!(
        checkout["predicted"]["error_rate"]["mean"]
            .as_f64()
            .unwrap()
            > checkout["baseline"]["error_rate"].as_f64().unwrap() + 0.3
    );
    let home = find("frontend GET /");
    assert!(
        (home["predicted"]["error_rate"]["mean"].as_f64().unwrap()
            - home["baseline"]["error_rate"].as_f64().unwrap())
        .abs()
            < 0.02
    );
    // Every operation is there, endpoints included; payment itself fails every call.
    let ops = v["operations"].as_array().unwrap();
    assert!(ops.len() > endpoints.len());
    let pay = ops
        .iter()
        .find(|o| o["endpoint"] == "payment Charge")
        .unwrap();
    assert_eq!(pay["predicted"]["error_rate"]["mean"], 1.0);
    // The same seed, the same prediction.
    let (again, _) = ok(&args);
    assert_eq!(json, again);
}

#[test]
fn simulate_table_and_every_fault_kind() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop_model(&dir);
    for fault in [
        "payment:error=0.5",
        "shipping:latency=+300ms",
        "currency/Convert:latency=x3",
        "postgres:down",
        "checkout PlaceOrder->payment:down",
    ] {
        let (table, _) = ok(&[
            "simulate",
            &model,
            "--fault",
            fault,
            "--requests",
            "500",
            "--samples",
            "8",
        ]);
        assert!(table.contains(fault), "{fault}:\n{table}");
        assert!(table.contains("ENDPOINT") && table.contains("MOST AFFECTED OPERATIONS"));
    }
    // Two faults at once.
    let (table, _) = ok(&[
        "simulate",
        &model,
        "--fault",
        "payment:down",
        "--fault",
        "redis:latency=+50ms",
        "--requests",
        "500",
        "--samples",
        "8",
    ]);
    assert!(table.contains("payment:down + redis:latency=+50ms"));
}

#[test]
fn simulate_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop_model(&dir);
    let err = fails(&["simulate", &model, "--fault", "paymnet:down"]);
    assert!(
        err.contains("`paymnet`") && err.contains("did you mean payment"),
        "{err}"
    );
    let err = fails(&["simulate", &model, "--fault", "payment:error=2"]);
    assert!(
        err.contains("`2`") && err.contains("between 0 and 1"),
        "{err}"
    );
    let err = fails(&["simulate", &model, "--fault", "payment:slow"]);
    assert!(err.contains("`slow`"), "{err}");
    let err = fails(&["simulate", &model, "--fault", "payment->redis:down"]);
    assert!(err.contains("no call from `payment` to `redis`"), "{err}");
    let err = fails(&[
        "simulate",
        &model,
        "--fault",
        "payment:down",
        "--samples",
        "1",
    ]);
    assert!(err.contains("--samples"), "{err}");
}

/// A run too small to draw every endpoint by chance still predicts every endpoint: each
/// request's endpoint is drawn by the traffic mix, and an endpoint never drawn gets one.
#[test]
fn a_small_run_still_predicts_every_endpoint() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop_model(&dir);
    let (json, _) = ok(&[
        "simulate",
        &model,
        "--fault",
        "payment:down",
        "--requests",
        "3",
        "--samples",
        "2",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let (graph, _) = ok(&["graph", &model, "--format", "json"]);
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    let endpoints = graph["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["endpoint"] == true)
        .count();
    assert!(endpoints > 3, "{endpoints}");
    assert_eq!(v["endpoints"].as_array().unwrap().len(), endpoints, "{v}");
    for e in v["endpoints"].as_array().unwrap() {
        assert!(
            e["baseline"]["p50_ms"].as_f64().unwrap() > 0.0,
            "every endpoint ran in the baseline: {e}"
        );
    }
}
