//! `augur learn`, `augur graph` and `augur ingest` on small files whose graph is known by
//! construction.

use std::collections::BTreeSet;

use crate::common::{fails, ok, shared};

/// One OTLP JSON line holding the given spans: (service, span id, parent, name, kind, start, end,
/// error, peer).
type S<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    &'a str,
    u8,
    u64,
    u64,
    bool,
    Option<&'a str>,
);

fn otlp_line(trace: &str, spans: &[S<'_>]) -> String {
    let mut rs = Vec::new();
    for (svc, id, parent, name, kind, start, end, error, peer) in spans {
        let parent = parent
            .map(|p| format!(r#""parentSpanId":"{p}","#))
            .unwrap_or_default();
        let status = if *error {
            r#","status":{"code":2}"#
        } else {
            ""
        };
        let attrs = peer
            .map(|p| {
                format!(
                    r#","attributes":[{{"key":"peer.service","value":{{"stringValue":"{p}"}}}}]"#
                )
            })
            .unwrap_or_default();
        rs.push(format!(
            r#"{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{svc}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace}","spanId":"{id}",{parent}"name":"{name}","kind":{kind},"startTimeUnixNano":"{start}","endTimeUnixNano":"{end}"{status}{attrs}}}]}}]}}"#
        ));
    }
    format!("{{\"resourceSpans\":[{}]}}\n", rs.join(","))
}

/// A small shop: `frontend GET /` calls `cart GetCart` (which reads redis) and `catalog List`;
/// in trace 2 the cart call fails.
fn shop_file(dir: &tempfile::TempDir) -> String {
    let mut text = String::new();
    for (t, fail) in [("01", false), ("02", true), ("03", false)] {
        let trace = format!("{t}000000000000000000000000000000");
        text.push_str(&otlp_line(
            &trace,
            &[
                (
                    "frontend",
                    "0000000000000001",
                    None,
                    "GET /",
                    2,
                    0,
                    100_000_000,
                    false,
                    None,
                ),
                (
                    "frontend",
                    "0000000000000002",
                    Some("0000000000000001"),
                    "GET cart",
                    3,
                    1_000_000,
                    40_000_000,
                    fail,
                    Some("cart"),
                ),
                (
                    "cart",
                    "0000000000000003",
                    Some("0000000000000002"),
                    "GetCart",
                    2,
                    2_000_000,
                    39_000_000,
                    fail,
                    None,
                ),
                (
                    "cart",
                    "0000000000000004",
                    Some("0000000000000003"),
                    "GET",
                    3,
                    3_000_000,
                    5_000_000,
                    false,
                    Some("redis"),
                ),
                (
                    "frontend",
                    "0000000000000005",
                    Some("0000000000000001"),
                    "GET catalog",
                    3,
                    41_000_000,
                    90_000_000,
                    false,
                    Some("catalog"),
                ),
                (
                    "catalog",
                    "0000000000000006",
                    Some("0000000000000005"),
                    "List",
                    2,
                    42_000_000,
                    89_000_000,
                    false,
                    None,
                ),
            ],
        ));
    }
    let p = dir.path().join("shop.jsonl");
    std::fs::write(&p, text).unwrap();
    p.to_str().unwrap().to_string()
}

#[test]
fn learn_then_graph_json_is_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let file = shop_file(&dir);
    let model = dir.path().join("model.json");
    let model = model.to_str().unwrap();
    let (summary, _) = ok(&["learn", &file, "--out", model, "--json"]);
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(s["spans"], 18);
    assert_eq!(s["traces"], 3);
    assert_eq!(s["services"], 3);
    assert_eq!(s["operations"], 3);
    assert_eq!(s["endpoints"], 1);
    assert_eq!(s["virtual_nodes"], 1);
    assert_eq!(s["edges"], 3);
    assert_eq!(s["rejected"], 0);

    let (json, _) = ok(&["graph", model, "--format", "json"]);
    let g: serde_json::Value = serde_json::from_str(&json).unwrap();
    let top: BTreeSet<&str> = g.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    assert_eq!(top, BTreeSet::from(["nodes", "edges"]));
    let nodes: Vec<(String, bool, bool)> = g["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let keys: BTreeSet<&str> = n.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(
                keys,
                BTreeSet::from(["id", "service", "operation", "virtual", "endpoint"])
            );
            (
                n["id"].as_str().unwrap().to_string(),
                n["virtual"].as_bool().unwrap(),
                n["endpoint"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        nodes,
        vec![
            ("cart GetCart".to_string(), false, false),
            ("catalog List".to_string(), false, false),
            ("frontend GET /".to_string(), false, true),
            ("redis".to_string(), true, false),
        ]
    );
    let edges: Vec<(String, String, u64, u64)> = g["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let keys: BTreeSet<&str> = e.as_object().unwrap().keys().map(|k| k.as_str()).collect();
            assert_eq!(
                keys,
                BTreeSet::from([
                    "from",
                    "to",
                    "calls",
                    "errors",
                    "p50_ms",
                    "p99_ms",
                    "mode",
                    "retries",
                    "timeout_ms",
                    "p_propagate"
                ])
            );
            (
                e["from"].as_str().unwrap().to_string(),
                e["to"].as_str().unwrap().to_string(),
                e["calls"].as_u64().unwrap(),
                e["errors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        vec![
            ("cart GetCart".into(), "redis".into(), 3, 0),
            ("frontend GET /".into(), "cart GetCart".into(), 3, 1),
            ("frontend GET /".into(), "catalog List".into(), 3, 0),
        ]
    );
    // The frontend → cart call took 39 ms as the client saw it, every time (within the 1% sketch).
    let p50 = g["edges"][1]["p50_ms"].as_f64().unwrap();
    assert!((p50 - 39.0).abs() < 0.4, "{p50}");
}

#[test]
fn graph_dot_and_table() {
    let dir = tempfile::tempdir().unwrap();
    let file = shop_file(&dir);
    let model = dir.path().join("model.json");
    let model = model.to_str().unwrap();
    ok(&["learn", &file, "--out", model]);
    let (dot, _) = ok(&["graph", model, "--format", "dot"]);
    assert!(dot.starts_with("digraph augur {"), "{dot}");
    assert!(
        dot.contains(r#""frontend GET /" -> "cart GetCart""#),
        "{dot}"
    );
    assert!(
        dot.contains(r#""redis" [label="redis", shape=cylinder]"#),
        "{dot}"
    );
    let (table, _) = ok(&["graph", model]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("redis") && l.ends_with("virtual")),
        "{table}"
    );
    assert!(
        table.contains("FROM") && table.contains("P99 MS"),
        "{table}"
    );
}

#[test]
fn learn_summary_names_what_it_counts() {
    let dir = tempfile::tempdir().unwrap();
    let file = shop_file(&dir);
    let model = dir.path().join("model.json");
    let (_, stderr) = ok(&["learn", &file, "--out", model.to_str().unwrap()]);
    for word in [
        "spans",
        "traces",
        "services: 3",
        "operations: 3",
        "endpoints: 1",
        "edges: 3",
        "records rejected: 0",
    ] {
        assert!(stderr.contains(word), "summary lacks {word:?}:\n{stderr}");
    }
}

#[test]
fn lake_appends_parts_and_learns_like_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = shop_file(&dir);
    let lake = dir.path().join("lake");
    let lake_s = lake.to_str().unwrap();
    ok(&["ingest", &file, "--lake", lake_s]);
    let parts = |lake: &std::path::Path| -> Vec<std::path::PathBuf> {
        let mut v = Vec::new();
        for hour in std::fs::read_dir(lake).unwrap() {
            let hour = hour.unwrap().path();
            // The hidden list of files ingested (and a run's marker).
            if !hour.is_dir() {
                continue;
            }
            assert!(
                hour.file_name()
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .starts_with("hour=1970-01-01T00"),
                "{hour:?}"
            );
            for part in std::fs::read_dir(&hour).unwrap() {
                v.push(part.unwrap().path());
            }
        }
        v.sort();
        v
    };
    let first = parts(&lake);
    assert_eq!(first.len(), 1);
    assert!(first[0]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .starts_with("part-"));
    let before = std::fs::read(&first[0]).unwrap();
    // The same file again (or a copy of it) is skipped: the lake holds its spans already.
    let (_, said) = ok(&["ingest", &file, "--lake", lake_s]);
    assert!(
        said.contains("skipped 1 file the lake holds already"),
        "{said}"
    );
    let copy = dir.path().join("copy.jsonl");
    std::fs::copy(&file, &copy).unwrap();
    ok(&["ingest", copy.to_str().unwrap(), "--lake", lake_s]);
    assert_eq!(parts(&lake), first);
    // Another file (here the same spans re-reported, with a blank line more) adds a part and
    // leaves the first untouched.
    let again = dir.path().join("again.jsonl");
    std::fs::write(&again, std::fs::read_to_string(&file).unwrap() + "\n").unwrap();
    let again = again.to_str().unwrap().to_string();
    ok(&["ingest", &again, "--lake", lake_s]);
    let second = parts(&lake);
    assert_eq!(second.len(), 2);
    assert_eq!(std::fs::read(&first[0]).unwrap(), before);
    // An ingest that fails on its second file adds nothing, and leaves no unfinished part.
    let garbage = dir.path().join("zz-garbage.json");
    std::fs::write(&garbage, "{ not json").unwrap();
    let third = dir.path().join("third.jsonl");
    std::fs::write(&third, std::fs::read_to_string(&file).unwrap() + "\n\n").unwrap();
    fails(&[
        "ingest",
        third.to_str().unwrap(),
        garbage.to_str().unwrap(),
        "--lake",
        lake_s,
    ]);
    assert_eq!(parts(&lake), second);
    // ... nor records its files as ingested: given again, they are read.
    let (_, said) = ok(&["ingest", third.to_str().unwrap(), "--lake", lake_s]);
    assert!(!said.contains("holds already"), "{said}");
    // Learning from the lake gives the same graph: the spans ingested twice are recognised as
    // re-reports of the same spans and counted once.
    let m1 = dir.path().join("m1.json");
    let m2 = dir.path().join("m2.json");
    ok(&["learn", &file, "--out", m1.to_str().unwrap()]);
    let (summary, _) = ok(&["learn", lake_s, "--out", m2.to_str().unwrap(), "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    // Three parts of the same 18 spans.
    assert_eq!(summary["spans"], 54);
    assert_eq!(summary["quality"]["duplicate_spans"], 36);
    let (g1, _) = ok(&["graph", m1.to_str().unwrap(), "--format", "json"]);
    let (g2, _) = ok(&["graph", m2.to_str().unwrap(), "--format", "json"]);
    assert_eq!(g1, g2);
    // An ingest killed after some of its parts were in place (here: one, a copy of the first)
    // but before the list of files was updated is undone by the next ingest, which says so: its
    // files, given again, are stored once.
    let manifest = lake.join(".augur-ingested.jsonl");
    let size = std::fs::metadata(&manifest).unwrap().len();
    std::fs::write(
        lake.join(".augur-ingest-pending"),
        format!(r#"{{"run":"7-7","manifest_bytes":{size}}}"#),
    )
    .unwrap();
    let stray = first[0].with_file_name("part-7-7-0.parquet");
    std::fs::copy(&first[0], &stray).unwrap();
    let fourth = dir.path().join("fourth.jsonl");
    std::fs::write(&fourth, std::fs::read_to_string(&file).unwrap() + "\n\n\n").unwrap();
    let (_, said) = ok(&["ingest", fourth.to_str().unwrap(), "--lake", lake_s]);
    assert!(
        said.contains("stopped before it completed; the part it had written was removed"),
        "{said}"
    );
    assert!(!stray.exists());
    assert!(!lake.join(".augur-ingest-pending").exists());
    assert_eq!(parts(&lake).len(), 4);
    let (summary, _) = ok(&["learn", lake_s, "--out", m2.to_str().unwrap(), "--json"]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(summary["spans"], 72);
}

#[test]
fn one_name_for_two_nodes_is_reported() {
    // Service `web front`'s `GET /x` and service `web`'s `front GET /x` are both named
    // "web front GET /x": learn must say so rather than mix their calls up silently.
    let dir = tempfile::tempdir().unwrap();
    let doc = |service: &str, name: &str, trace: u8| {
        format!(
            r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{trace:032x}","spanId":"00000000000000{trace:02x}","name":"{name}","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"9000"}}]}}]}}]}}"#
        )
    };
    let file = dir.path().join("t.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}\n{}\n",
            doc("web front", "GET /x", 1),
            doc("web", "front GET /x", 2)
        ),
    )
    .unwrap();
    let out = dir.path().join("m.json");
    let (summary, log) = ok(&[
        "learn",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--json",
    ]);
    let summary: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(
        summary["shared_names"],
        serde_json::json!(["web front GET /x"])
    );
    let (_, text) = ok(&[
        "learn",
        file.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        text.contains("stand for more than one operation"),
        "{text}{log}"
    );
}

#[test]
fn learn_requires_out_and_paths() {
    let out = crate::common::run(&["learn"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--out") || err.contains("<PATHS>"), "{err}");
    let dir = tempfile::tempdir().unwrap();
    let err = fails(&[
        "learn",
        dir.path().to_str().unwrap(),
        "--out",
        dir.path().join("m").to_str().unwrap(),
    ]);
    assert!(err.contains("no files"), "{err}");
}

/// The README's first command: every stage on the demo shop, ending with recommendations.
#[test]
fn the_demo_runs_every_stage() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let (stdout, stderr) =
        crate::common::ok(&["demo", "--dir", out.to_str().unwrap(), "--traces", "1500"]);
    for step in [
        "1. generate",
        "2. learn",
        "3. check",
        "4. simulate",
        "5. check",
        "6. recommend",
        "7. experiment",
        "8. report",
    ] {
        assert!(stderr.contains(step), "{step} missing:\n{stderr}");
    }
    assert!(stderr.contains("exactly right"), "{stderr}");
    assert!(
        stdout.contains("bits") && stdout.contains("why:"),
        "{stdout}"
    );
    assert!(out.join("model.json").exists());
    // The experiment was recorded, and the night's report written.
    let ledger = std::fs::read_to_string(out.join("model.ledger.jsonl")).unwrap();
    assert_eq!(ledger.lines().count(), 1);
    assert!(
        stdout.contains("learned") && stdout.contains("summary:"),
        "{stdout}"
    );
    let html = std::fs::read_to_string(out.join("report/report.html")).unwrap();
    assert!(html.contains("<svg id=\"graph\"") && html.contains("class=\"lesson\""));
    // Run again in the same directory: a fresh model, a fresh ledger.
    crate::common::ok(&["demo", "--dir", out.to_str().unwrap(), "--traces", "1500"]);
    let ledger = std::fs::read_to_string(out.join("model.ledger.jsonl")).unwrap();
    assert_eq!(ledger.lines().count(), 1);
}

/// Too few traces is refused up front (with 10, payment was never called and step 4 failed);
/// the smallest allowed runs to the end.
#[test]
fn the_demo_needs_enough_traces_and_runs_on_the_fewest_it_allows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("demo");
    let err = crate::common::fails(&["demo", "--dir", out.to_str().unwrap(), "--traces", "10"]);
    assert!(err.contains("--traces must be at least 100"), "{err}");
    assert!(!out.exists());
    let (_, stderr) =
        crate::common::ok(&["demo", "--dir", out.to_str().unwrap(), "--traces", "100"]);
    assert!(stderr.contains("8. report"), "{stderr}");
    assert!(out.join("report/report.html").exists());
}

#[test]
fn experiments_traces_are_left_out_of_normal_learning() {
    // Normal traffic, and traffic recorded while payment was down on purpose (its spans carry
    // `augur.experiment = payment:down`). Learning both must not teach the model that payment
    // fails: the injected fault is not its normal behaviour.
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let (normal, faulted) = (path("normal.jsonl"), path("faulted.jsonl"));
    ok(&[
        "generate", "--world", "shop", "--traces", "300", "--seed", "1", "--out", &normal,
    ]);
    ok(&[
        "generate",
        "--world",
        "shop",
        "--traces",
        "200",
        "--seed",
        "2",
        "--fault",
        "payment:down",
        "--out",
        &faulted,
    ]);
    let edges = |model: &str| -> serde_json::Value {
        let (json, _) = ok(&["graph", model, "--format", "json"]);
        let g: serde_json::Value = serde_json::from_str(&json).unwrap();
        g["edges"].clone()
    };
    let (only, both, all) = (path("only.json"), path("both.json"), path("all.json"));
    ok(&["learn", &normal, "--out", &only]);
    let (summary, stderr) = ok(&["learn", &normal, &faulted, "--out", &both, "--json"]);
    let s: serde_json::Value = serde_json::from_str(&summary).unwrap();
    assert_eq!(s["quality"]["experiment_traces"], 200, "{summary}");
    assert!(s["quality"]["experiment_spans"].as_u64().unwrap() > 200);
    assert_eq!(s["traces"], 300, "{summary}");
    // The text summary says what was left out and what to do with it.
    let (_, text) = ok(&["learn", &normal, &faulted, "--out", &both]);
    assert!(
        text.contains("200 traces of experiments left out")
            && text.contains("augur outcome")
            && text.contains("--include-experiments"),
        "{text}{stderr}"
    );
    assert_eq!(edges(&both), edges(&only));
    // Asked to, it learns them like any traffic: payment's calls then fail.
    ok(&[
        "learn",
        &normal,
        &faulted,
        "--out",
        &all,
        "--include-experiments",
    ]);
    let failed_into_payment = |e: &serde_json::Value| -> u64 {
        e.as_array()
            .unwrap()
            .iter()
            .filter(|e| e["to"].as_str().unwrap().starts_with("payment"))
            .map(|e| e["errors"].as_u64().unwrap())
            .sum()
    };
    assert_eq!(
        failed_into_payment(&edges(&only)),
        failed_into_payment(&edges(&both))
    );
    let (before, after) = (
        failed_into_payment(&edges(&only)),
        failed_into_payment(&edges(&all)),
    );
    assert!(after > before + 10, "{before} -> {after}");

    // Only experiments' traces: no traffic learned yet. `model show` counts the spans it learned
    // from apart from those left out, and the nightly report is still written, saying so.
    let none = path("none.json");
    ok(&["learn", &faulted, "--out", &none]);
    let (text, _) = ok(&["model", "show", &none]);
    assert!(
        text.starts_with("model of 0 spans in 0 traces (") && text.contains("left out"),
        "{text}"
    );
    let (_, warned) = ok(&["report", &none, "--out", &path("report")]);
    assert!(warned.contains("no endpoint"), "{warned}");
    assert!(dir.path().join("report").join("report.html").exists());
}

/// Two TrainTicket captures a day apart: the rate is per second of the captures, not of the
/// day between them (which read as 0.0/s, and every experiment as worth 0 bits).
#[test]
fn captures_a_day_apart_give_the_rate_of_their_own_minutes() {
    let Some(normal) = shared("datasets/nezha-trainticket/normal") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("tt.json");
    ok(&[
        "learn",
        normal.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    let (text, _) = ok(&["model", "show", model.to_str().unwrap()]);
    assert!(text.contains("with gaps of over 10 min"), "{text}");
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&model).unwrap()).unwrap();
    let active = m["active"].as_array().unwrap();
    assert_eq!(active.len(), 2, "{active:?}");
    let secs: f64 = active
        .iter()
        .map(|w| (w["last_ns"].as_f64().unwrap() - w["first_ns"].as_f64().unwrap()) / 1e9)
        .sum();
    // Each capture is a couple of minutes long.
    assert!(secs > 60.0 && secs < 1200.0, "{secs}");
}

#[test]
fn names_with_control_characters_do_not_reach_the_terminal() {
    // A service name holding an escape sequence (clear screen) and a carriage return: the text
    // outputs show them as U+FFFD; the JSON keeps the name exactly (escaped by JSON).
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("t.jsonl");
    let service = r"evil\u001b[2J\rsvc";
    let line = format!(
        r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"{:032x}","spanId":"0000000000000001","name":"GET /","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"9000"}}]}}]}}]}}"#,
        1
    );
    std::fs::write(&file, line + "\n").unwrap();
    let model = dir.path().join("m.json");
    ok(&[
        "learn",
        file.to_str().unwrap(),
        "--out",
        model.to_str().unwrap(),
    ]);
    for args in [
        vec!["graph", model.to_str().unwrap()],
        vec!["graph", model.to_str().unwrap(), "--format", "dot"],
        vec!["model", "show", model.to_str().unwrap()],
    ] {
        let (out, err) = ok(&args);
        assert!(
            out.contains("evil\u{FFFD}[2J\u{FFFD}svc"),
            "{args:?}: {out}"
        );
        assert!(
            !out.contains(['\u{1b}', '\r']) && !err.contains(['\u{1b}', '\r']),
            "{args:?}"
        );
    }
    let (json, _) = ok(&["graph", model.to_str().unwrap(), "--format", "json"]);
    let graph: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(json.contains("evil\\u001b[2J\\rsvc"), "{graph}");
}
