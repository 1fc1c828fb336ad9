//! `augur report`: the nightly page and its JSON, looked at in headless Chromium through
//! ChromeDriver: the key elements exist and render, the page fetches nothing, a screenshot.

use crate::common::{generate_shop, ok, shop_model};
use crate::webdriver::{browsers, Browser};

const INTENTS: &str = r#"
[[intent]]
id = "checkout-survives-payment-outage"
belief = "Orders are queued when <payment> is down."
fault = "payment:down"
expect = { endpoint = "frontend POST /checkout", error_rate_below = 0.05 }

[[intent]]
id = "nothing-slow-breaks-checkout"
belief = "Checkout rides out any slow dependency."
fault = "*:latency=+100ms"
within = "frontend POST /checkout"
expect = { endpoint = "frontend POST /checkout", error_rate_below = 0.1 }
"#;

#[test]
fn the_nightly_report_renders_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = shop_model(&dir, "3000", "1");
    let intents = d.join("intents.toml");
    std::fs::write(&intents, INTENTS).unwrap();
    // Last month, shipping was slower: drift.
    let old_traces = generate_shop(
        d,
        "old.jsonl",
        "3000",
        "8",
        &["--fault", "shipping:latency=+200ms"],
    );
    let old = d.join("old.json");
    // (The generator tags a fault's spans as an experiment's; here they stand for last month's
    // normal traffic.)
    ok(&[
        "learn",
        &old_traces,
        "--out",
        old.to_str().unwrap(),
        "--include-experiments",
    ]);
    // An experiment recorded in the ledger.
    let down = generate_shop(
        d,
        "down.jsonl",
        "800",
        "2",
        &["--fault", "payment:down", "--start-offset", "3600"],
    );
    ok(&[
        "outcome",
        &model,
        "--fault",
        "payment:down",
        "--traces",
        &down,
        "--intents",
        intents.to_str().unwrap(),
        "--requests",
        "500",
        "--samples",
        "8",
    ]);
    let out = d.join("nightly");
    let (_, stderr) = ok(&[
        "report",
        &model,
        "--intents",
        intents.to_str().unwrap(),
        "--previous",
        old.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--requests",
        "400",
        "--samples",
        "8",
    ]);
    assert!(stderr.contains("report written"), "{stderr}");

    // The JSON.
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).unwrap()).unwrap();
    let exps = r["experiments"].as_array().unwrap();
    assert_eq!(exps.len(), 10);
    assert!(exps[0]["experiment"]["value_bits"].as_f64().unwrap() > 0.0);
    let endpoints = r["graph"]["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["endpoint"] == true)
        .count();
    assert_eq!(r["critical_paths"].as_array().unwrap().len(), endpoints);
    let checkout = r["critical_paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["endpoint"] == "frontend POST /checkout")
        .unwrap();
    assert!(
        checkout["nodes"].as_array().unwrap().len() >= 3,
        "{checkout}"
    );
    let intents_json = r["intents"].as_array().unwrap();
    assert_eq!(intents_json.len(), 2);
    assert_eq!(intents_json[0]["last_verdict"], "falsified");
    assert!(intents_json[1]["last_verdict"].is_null());
    assert!(intents_json[1]["p_holds"].as_f64().is_some());
    assert_eq!(r["lessons"].as_array().unwrap().len(), 1);
    let shifts = r["drift"]["latency"].as_array().unwrap();
    assert!(
        shifts
            .iter()
            .any(|s| s["at"].as_str().unwrap().contains("shipping")),
        "{shifts:?}"
    );
    let points = r["predicted_vs_observed"].as_array().unwrap().len();
    assert!(points >= 3);

    // Under a budget, the experiments to run next are the safe ones by value, then the ones
    // over it (marked), by value; `recommend` itself ranks by value alone, so its most
    // valuable experiments here are over a budget of 0.
    let tight = d.join("tight");
    let sizes = ["--error-budget", "0", "--requests", "400", "--samples", "8"];
    let mut args = vec!["report", &model, "--out", tight.to_str().unwrap()];
    args.extend(sizes);
    ok(&args);
    let (rec, _) = ok(&[
        &["recommend", model.as_str(), "--json", "--top", "1000"][..],
        &sizes,
    ]
    .concat());
    let rec: serde_json::Value = serde_json::from_str(&rec).unwrap();
    let ranked: Vec<(bool, f64)> = rec["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["safe"] == true, e["value_bits"].as_f64().unwrap()))
        .collect();
    assert!(!ranked[0].0, "{ranked:?}");
    assert!(ranked.windows(2).all(|w| w[0].1 >= w[1].1), "{ranked:?}");
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tight.join("report.json")).unwrap()).unwrap();
    let listed: Vec<(bool, f64)> = t["experiments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            let e = &x["experiment"];
            (e["safe"] == true, e["value_bits"].as_f64().unwrap())
        })
        .collect();
    let mut want: Vec<(bool, f64)> = ranked.clone();
    want.sort_by_key(|(safe, _)| !safe);
    want.truncate(listed.len());
    assert_eq!(listed, want);
    assert!(listed[0].0, "{listed:?}");

    // The page is self-contained: nothing fetched from anywhere.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    for fetch in ["src=\"http", "href=\"http", "url(http", "<script", "<link"] {
        assert!(!html.contains(fetch), "the page fetches: {fetch}");
    }
    // Text from files is escaped, not markup.
    assert!(html.contains("&lt;payment&gt;"));

    let Some((chromium, driver)) = browsers() else {
        return;
    };
    let b = Browser::start(&chromium, &driver);
    b.open(&format!("file://{}", out.join("report.html").display()));
    let graph = b.find_all("svg#graph");
    assert_eq!(graph.len(), 1);
    let (w, h) = b.size(&graph[0]);
    assert!(w > 600.0 && h > 200.0, "the graph renders at {w}x{h}");
    let nodes = r["graph"]["nodes"].as_array().unwrap().len();
    assert_eq!(b.find_all("svg#graph g.node").len(), nodes);
    assert_eq!(
        b.find_all("svg#graph path.edge").len(),
        r["graph"]["edges"].as_array().unwrap().len()
    );
    assert!(!b.find_all("svg#graph path.edge.critical").is_empty());
    assert_eq!(b.find_all("#experiments tr.experiment").len(), 10);
    assert_eq!(b.find_all("#intents tr.intent").len(), 2);
    assert_eq!(b.find_all("#lessons tr.lesson").len(), 1);
    assert_eq!(
        b.find_all("#predicted-vs-observed g.observation").len(),
        points
    );
    assert_eq!(b.find_all("#uncertainty g.uncertain-edge").len(), 15);
    let first = b.find_all("#experiments tr.experiment");
    let text = b.text(&first[0]);
    assert!(
        text.contains(exps[0]["experiment"]["fault"].as_str().unwrap()),
        "{text}"
    );
    let verdict = b.find_all("#intents .falsified");
    assert_eq!(b.text(&verdict[0]), "FALSIFIED");
    // Every node's box has a size in the page (the SVG really laid out).
    let sizes = b.script(
        "return Array.from(document.querySelectorAll('#graph g.node rect')).map(r => r.getBBox().width)",
    );
    assert!(sizes
        .as_array()
        .unwrap()
        .iter()
        .all(|w| w.as_f64().unwrap() > 100.0));
    let png = b.screenshot();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 20_000,
        "{} bytes",
        png.len()
    );
    std::fs::write(d.join("report.png"), png).unwrap();
}
