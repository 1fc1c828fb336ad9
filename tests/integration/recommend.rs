//! `augur recommend` and `augur value` through the binary: the JSON contract, intents, budgets
//! and clear errors.

use crate::common::{fails, ok};

fn shop(dir: &tempfile::TempDir) -> String {
    crate::common::shop_model(dir, "2000", "6")
}

const INTENTS: &str = r#"
[[intent]]
id = "checkout-survives-shipping-outage"
belief = "Checkout still succeeds when shipping quotes fail: we fall back to a flat rate."
fault = "shipping:down"
expect = { endpoint = "frontend POST /checkout", error_rate_below = 0.05 }
priority = 2
"#;

#[test]
fn recommend_json_is_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop(&dir);
    let intents = dir.path().join("intents.toml");
    std::fs::write(&intents, INTENTS).unwrap();
    let (json, _) = ok(&[
        "recommend",
        &model,
        "--intents",
        intents.to_str().unwrap(),
        "--top",
        "50",
        "--error-budget",
        "500",
        "--requests",
        "300",
        "--samples",
        "16",
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let exps = v["experiments"].as_array().unwrap();
    assert!(!exps.is_empty() && exps.len() <= 50);
    let keys: Vec<&str> = exps[0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    assert_eq!(
        keys,
        [
            "fault",
            "harm",
            "intents",
            "predicted",
            "safe",
            "traffic_share",
            "value_bits",
            "why"
        ]
    );
    // Ranked by value, unsafe experiments in their place.
    let values: Vec<f64> = exps
        .iter()
        .map(|e| e["value_bits"].as_f64().unwrap())
        .collect();
    assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
    for e in exps {
        assert!(e["why"].as_str().unwrap().len() > 20);
        assert!(e["predicted"]["endpoints"].as_array().unwrap().len() == 4);
        let share = e["traffic_share"].as_f64().unwrap();
        assert!(share > 0.0 && share <= 1.0);
        if e["safe"] == true {
            assert!(
                e["harm"]["failed_requests_hi"].as_f64().unwrap() <= 500.0,
                "{e}"
            );
        }
    }
    // The intent's fault is a candidate and carries P(holds).
    let ship = exps.iter().find(|e| e["fault"] == "shipping:down");
    if let Some(ship) = ship {
        let p = ship["intents"][0]["p_holds"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&p));
        assert_eq!(
            ship["intents"][0]["id"],
            "checkout-survives-shipping-outage"
        );
    }

    // One experiment by hand.
    let (json, _) = ok(&[
        "value",
        &model,
        "--fault",
        "shipping:down",
        "--intents",
        intents.to_str().unwrap(),
        "--requests",
        "300",
        "--samples",
        "16",
        "--json",
    ]);
    let e: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(e["fault"], "shipping:down");
    assert_eq!(e["intents"][0]["id"], "checkout-survives-shipping-outage");
    let (text, _) = ok(&[
        "value",
        &model,
        "--fault",
        "shipping:down",
        "--requests",
        "300",
        "--samples",
        "16",
    ]);
    assert!(text.contains("bits") && text.contains("why:"), "{text}");

    // At another scope, `value` says what that experiment's row in `recommend` says: its value
    // is information about every candidate in scope.
    let sizes = ["--requests", "300", "--samples", "8"];
    let (rec, _) = ok(&[
        &[
            "recommend",
            &model,
            "--scope",
            "edge",
            "--top",
            "500",
            "--json",
        ],
        &sizes[..],
    ]
    .concat());
    let rec: serde_json::Value = serde_json::from_str(&rec).unwrap();
    let row = rec["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fault"] == "shipping:down")
        .unwrap()
        .clone();
    let (one, _) = ok(&[
        &[
            "value",
            &model,
            "--fault",
            "shipping:down",
            "--scope",
            "edge",
            "--json",
        ],
        &sizes[..],
    ]
    .concat());
    let one: serde_json::Value = serde_json::from_str(&one).unwrap();
    assert_eq!(one["value_bits"], row["value_bits"]);
    let (service, _) = ok(&[
        &["value", &model, "--fault", "shipping:down", "--json"],
        &sizes[..],
    ]
    .concat());
    let service: serde_json::Value = serde_json::from_str(&service).unwrap();
    assert_ne!(service["value_bits"], row["value_bits"], "scope matters");
}

#[test]
fn a_plan_stays_within_its_budget() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop(&dir);
    let (json, _) = ok(&[
        "plan",
        &model,
        "--budget",
        "600",
        "--max",
        "3",
        "--requests",
        "300",
        "--samples",
        "16",
        "--json",
    ]);
    let p: serde_json::Value = serde_json::from_str(&json).unwrap();
    let exps = p["experiments"].as_array().unwrap();
    assert!(!exps.is_empty() && exps.len() <= 3, "{p}");
    let harm: f64 = exps
        .iter()
        .map(|e| e["failed_requests_hi"].as_f64().unwrap())
        .sum();
    assert!(harm <= 600.0, "{p}");
    for e in exps {
        assert!(e["marginal_bits"].as_f64().unwrap() <= e["value_bits"].as_f64().unwrap() + 1e-9);
        // Ten minutes unless not even 1% of the traffic for all of it fits.
        let d = e["duration_s"].as_f64().unwrap();
        assert!(d > 0.0 && d <= 600.0, "{e}");
    }
    let (text, _) = ok(&[
        "plan",
        &model,
        "--budget",
        "600",
        "--requests",
        "300",
        "--samples",
        "16",
    ]);
    assert!(text.starts_with("plan:"), "{text}");
}

#[test]
fn recommend_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop(&dir);
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        INTENTS.replace("frontend POST /checkout", "frontend POST /checkot"),
    )
    .unwrap();
    let err = fails(&["recommend", &model, "--intents", bad.to_str().unwrap()]);
    assert!(
        err.contains("bad.toml") && err.contains("frontend POST /checkout"),
        "{err}"
    );
    std::fs::write(&bad, "[[intent]]\nid = 1\n").unwrap();
    let err = fails(&["recommend", &model, "--intents", bad.to_str().unwrap()]);
    assert!(err.contains("bad.toml"), "{err}");
    let err = fails(&["value", &model, "--fault", "shiping:down"]);
    assert!(err.contains("did you mean shipping"), "{err}");
    let err = fails(&["recommend", &model, "--duration", "0"]);
    assert!(err.contains("--duration"), "{err}");
}

#[test]
fn a_family_can_name_every_peer_of_a_kind() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop(&dir);
    // What the calls' attributes said each uninstrumented peer is.
    let (json, _) = ok(&["model", "show", &model, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let kind_of = |id: &str| {
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .and_then(|n| n["peer_kind"].as_str().map(String::from))
    };
    assert_eq!(kind_of("postgres").as_deref(), Some("database"));
    assert_eq!(kind_of("redis").as_deref(), Some("database"));
    assert_eq!(kind_of("stripe").as_deref(), Some("external"));
    assert_eq!(kind_of("order-analytics").as_deref(), Some("queue"));
    assert_eq!(kind_of("frontend GET /"), None);

    let intents = dir.path().join("intents.toml");
    std::fs::write(
        &intents,
        r#"
[[intent]]
id = "checkout-survives-any-database-slowdown"
belief = "Every store is behind a timeout and a retry."
fault = "*:latency=+100ms"
kind = "database"
within = "frontend POST /checkout"
expect = { endpoint = "frontend POST /checkout", error_rate_below = 0.05 }
"#,
    )
    .unwrap();
    let (json, _) = ok(&[
        "recommend",
        &model,
        "--intents",
        intents.to_str().unwrap(),
        "--top",
        "500",
        "--requests",
        "300",
        "--samples",
        "8",
        "--json",
    ]);
    let rec: serde_json::Value = serde_json::from_str(&json).unwrap();
    let bearing: Vec<&str> = rec["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["intents"].as_array().unwrap().is_empty())
        .map(|e| e["fault"].as_str().unwrap())
        .collect();
    let mut bearing = bearing;
    bearing.sort();
    assert_eq!(
        bearing,
        ["postgres:latency=+100ms", "redis:latency=+100ms"],
        "{bearing:?}"
    );
    // A kind that does not exist is an error naming the kinds.
    std::fs::write(
        &intents,
        "[[intent]]\nid='x'\nbelief='b'\nfault='*:down'\nkind='disk'\nexpect={endpoint='frontend GET /', error_rate_below=0.1}\n",
    )
    .unwrap();
    let err = fails(&["recommend", &model, "--intents", intents.to_str().unwrap()]);
    assert!(err.contains("database, queue, external"), "{err}");
}

/// Ranked by value, the top of a tight budget can be all unsafe: the text then says which is
/// the most valuable experiment that fits.
#[test]
fn recommend_points_to_the_first_safe_experiment_below_the_top() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop(&dir);
    let sizes = ["--error-budget", "0", "--requests", "300", "--samples", "8"];
    let run = |extra: &[&str]| ok(&[&["recommend", model.as_str()][..], &sizes, extra].concat()).0;
    let all: serde_json::Value = serde_json::from_str(&run(&["--json", "--top", "1000"])).unwrap();
    let exps = all["experiments"].as_array().unwrap();
    let text = run(&["--top", "1"]);
    match exps.iter().position(|e| e["safe"] == true) {
        Some(0) => assert!(!text.contains("none of these fits"), "{text}"),
        Some(k) => assert!(
            text.contains(&format!(
                "the most valuable that does is #{}: {}",
                k + 1,
                exps[k]["fault"].as_str().unwrap()
            )),
            "{text}"
        ),
        None => assert!(
            text.contains("no experiment fits the error budget"),
            "{text}"
        ),
    }
    // Under a budget the text says safe or UNSAFE; without one, that no budget was given
    // (it used to call every experiment "safe").
    assert!(
        !text.contains("no budget given") && (text.contains("safe") || text.contains("UNSAFE")),
        "{text}"
    );
    let free = ok(&[
        "recommend",
        model.as_str(),
        "--top",
        "1",
        "--requests",
        "300",
        "--samples",
        "8",
    ])
    .0;
    assert!(free.contains("no budget given"), "{free}");
}

/// The worked examples `--help` shows (simulate, recommend, plan, value) run as written on a
/// real model, with `model.json` and `intents.toml` standing for real files (and, where an
/// example leaves them out, small simulation sizes, to keep the suite fast).
#[test]
fn the_examples_in_help_run() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop(&dir);
    let intents = dir.path().join("intents.toml");
    std::fs::write(&intents, INTENTS).unwrap();
    let mut ran = 0;
    for command in ["simulate", "recommend", "plan", "value"] {
        let (help, _) = ok(&[command, "--help"]);
        let examples: Vec<&str> = help
            .lines()
            .skip_while(|l| !l.starts_with("Examples:"))
            .filter_map(|l| l.trim().strip_prefix("augur "))
            .collect();
        assert!(!examples.is_empty(), "{command} --help shows no example");
        for example in examples {
            // What a shell would pass: comments and redirections dropped, quotes removed.
            let line = example.split(" #").next().unwrap_or(example);
            let line = line.split(" > ").next().unwrap_or(line);
            let mut args: Vec<String> = line
                .split_whitespace()
                .map(|a| match a.trim_matches('\'') {
                    "model.json" => model.clone(),
                    "intents.toml" => intents.to_str().unwrap().to_string(),
                    a => a.to_string(),
                })
                .collect();
            if !args.iter().any(|a| a == "--requests") {
                args.extend(["--requests", "300", "--samples", "8"].map(String::from));
            }
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let (out, _) = ok(&args);
            assert!(!out.trim().is_empty(), "{example}: no output");
            if args.contains(&"--json") {
                serde_json::from_str::<serde_json::Value>(&out)
                    .unwrap_or_else(|e| panic!("{example}: {e}"));
            }
            ran += 1;
        }
    }
    assert!(ran >= 9, "{ran} examples");
}
