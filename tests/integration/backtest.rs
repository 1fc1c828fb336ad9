//! `augur backtest`: past experiments replayed against the model learned before each, on a
//! generated world (faults known) and on the real TrainTicket traces (a subset; the full run is a
//! documented command in docs/ACCURACY.md).

use std::path::Path;

use crate::common::{generate_shop, ok, shared};

fn gen(dir: &Path, name: &str, traces: &str, seed: &str, extra: &[&str]) -> String {
    generate_shop(dir, name, traces, seed, extra)
}

#[test]
fn backtest_on_a_generated_world_scores_what_it_can_and_says_why_not_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Normal traffic first, then an hour later a window with payment slowed by 300 ms, and two
    // hours later one with cart down. The generator starts at 2026-11-01 00:00 UTC.
    let normal = gen(d, "normal.jsonl", "4000", "2", &[]);
    let slow = gen(
        d,
        "slow.jsonl",
        "2000",
        "3",
        &[
            "--fault",
            "payment:latency=+300ms",
            "--start-offset",
            "3600",
        ],
    );
    let down = gen(
        d,
        "down.jsonl",
        "2000",
        "4",
        &["--fault", "cart:down", "--start-offset", "7200"],
    );
    // Three hours later, email (a message consumer) slowed: its producer does not wait for it.
    let email = gen(
        d,
        "email.jsonl",
        "2000",
        "5",
        &["--fault", "email:latency=+300ms", "--start-offset", "10800"],
    );
    let labels = d.join("labels.json");
    std::fs::write(
        &labels,
        r#"[{"id":"slow payment","target":"payment","kind":"latency","start":"2026-11-01 01:00:00","duration":600},
            {"id":"slow payment, at its call site","target":"checkout->payment","kind":"latency","start":"2026-11-01 01:00:00","duration":600},
            {"id":"cart down","target":"cart","kind":"down","start":"2026-11-01T02:00:00Z","duration":600},
            {"id":"slow email","target":"email","kind":"latency","start":"2026-11-01 03:00:00","duration":600},
            {"id":"nothing there","target":"ad","kind":"cpu","start":"2026-11-01 05:00:00","duration":60},
            {"id":"typo","target":"emial","kind":"latency","start":"2026-11-01 00:00:04","duration":2}]"#,
    )
    .unwrap();
    let report = d.join("report.html");
    let (out, _) = ok(&[
        "backtest",
        "--traces",
        &normal,
        &slow,
        &down,
        &email,
        "--experiments",
        labels.to_str().unwrap(),
        "--json",
        "--requests",
        "2000",
        "--samples",
        "16",
        "--report",
        report.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let all = v["experiments"].as_array().unwrap();
    assert_eq!(all.len(), 6);
    let by_id = |id: &str| all.iter().find(|e| e["id"] == id).unwrap();
    let typo = by_id("typo");
    let slow = by_id("slow payment");
    // Windows labelled once, tagged by the generator with their own fault: nothing to warn
    // about; the two labels of one window warn of each other.
    for id in ["cart down", "slow email"] {
        assert_eq!(by_id(id)["warnings"], serde_json::json!([]), "{id}");
    }
    let warned = slow["warnings"].as_array().unwrap();
    assert!(
        warned.len() == 1
            && warned[0]
                .as_str()
                .unwrap()
                .contains("overlaps that of slow payment, at its call site"),
        "{warned:?}"
    );
    assert_eq!(slow["id"], "slow payment");
    assert!(slow["not_scorable"].is_null(), "{slow}");
    assert_eq!(slow["magnitude_measured"], true);
    // The delay is measured at payment from the window: about the 300 ms injected.
    let fault = slow["fault"].as_str().unwrap();
    let ms: f64 = fault
        .trim_start_matches("payment:latency=+")
        .trim_end_matches("ms")
        .parse()
        .unwrap();
    assert!((200.0..400.0).contains(&ms), "{fault}");
    let augur = &slow["augur"];
    eprintln!("slow payment: augur {augur}, naive {}", slow["naive"]);
    // Every payment call blocks its caller: the delay reaches checkout and its endpoint, and the
    // rest of the shop does not move.
    assert!(augur["log2_error_p50"].as_f64().unwrap() < 0.1, "{slow}");
    // Intervals widened by the window's own sampling error hold most observations.
    assert!(augur["coverage"].as_f64().unwrap() >= 0.7, "{slow}");
    for op in ["checkout PlaceOrder", "frontend POST /checkout"] {
        let o = slow["operations"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["operation"] == op)
            .unwrap_or_else(|| panic!("{op} not scored: {slow}"));
        let (p, x) = (
            o["predicted_p50"].as_f64().unwrap(),
            o["observed_p50"].as_f64().unwrap(),
        );
        assert!(
            x > 2.0 && (p / x - 1.0).abs() < 0.15,
            "{op}: predicted {p}, observed {x}"
        );
    }
    assert!(slow["worst"][0]["why"].is_string());
    // The same window labelled at a call site (any fault target names a label's target): the
    // delay measured at the callee, the same prediction.
    let site = by_id("slow payment, at its call site");
    assert!(site["not_scorable"].is_null(), "{site}");
    assert!(site["fault"]
        .as_str()
        .unwrap()
        .starts_with("checkout->payment:latency=+"));
    let e = site["augur"]["log2_error_p50"].as_f64().unwrap();
    assert!(e < 0.1, "{site}");
    // cart down: scored on latency (the generator records statuses).
    let cart = by_id("cart down");
    assert_eq!(cart["fault"], "cart:down");
    assert!(cart["not_scorable"].is_null(), "{cart}");
    // Its error rates, predicted against observed, operation by operation.
    let cart_mae = cart["augur"]["error_mae"].as_f64().unwrap();
    eprintln!("cart down: error-rate MAE {cart_mae}");
    assert!(cart_mae < 0.1, "{cart}");
    let post_cart = cart["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"] == "frontend POST /cart")
        .unwrap();
    assert!(
        post_cart["observed_error_rate"].as_f64().unwrap() > 0.5,
        "{post_cart}"
    );
    // email is reached by messages: augur predicts no change upstream, the naive baseline slows
    // checkout by the whole delay, and the window shows augur right.
    let email = by_id("slow email");
    eprintln!(
        "slow email: augur {}, naive {}",
        email["augur"], email["naive"]
    );
    let (a, n) = (
        email["augur"]["log2_error_p50"].as_f64().unwrap(),
        email["naive"]["log2_error_p50"].as_f64().unwrap(),
    );
    assert!(a < 0.1 && n > 2.0 * a, "augur {a}, naive {n}");
    // A misspelt target: not scorable, with the names it was probably meant to be.
    let why = typo["not_scorable"].as_str().unwrap();
    assert!(why.contains("closest services: email"), "{why}");
    // No traces in the last window: said, not guessed.
    assert!(by_id("nothing there")["not_scorable"]
        .as_str()
        .unwrap()
        .contains("no traces in its window"));
    assert_eq!(v["overall"]["experiments_scored"], 3);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<svg") && html.contains("slow payment"));
}

#[test]
fn backtest_on_trainticket_cpu_contention_subset() {
    let Some(day) = shared("datasets/nezha-trainticket/2023-01-29") else {
        return;
    };
    let Some(normal) = shared("datasets/nezha-trainticket/normal/2023-01-29_08_50_trace.csv")
    else {
        return;
    };
    // The first CPU-contention fault (13:31:54, ts-contacts-service) with its window, and the
    // fault-free minute plus the earlier windows' traffic before it.
    let trace = day.join("trace");
    let window: Vec<String> = ["13_31", "13_32", "13_33", "13_34"]
        .iter()
        .map(|m| trace.join(format!("{m}_trace.csv")))
        .filter(|p| p.exists())
        .map(|p| p.to_str().unwrap().to_string())
        .collect();
    assert!(
        !window.is_empty(),
        "the 13:31 window files are missing from {}",
        trace.display()
    );
    let mut args = vec!["backtest", "--traces", normal.to_str().unwrap()];
    args.extend(window.iter().map(String::as_str));
    let labels = day.join("fault_list.json");
    args.extend_from_slice(&[
        "--experiments",
        labels.to_str().unwrap(),
        "--json",
        "--requests",
        "1000",
        "--samples",
        "8",
    ]);
    let (out, _) = ok(&args);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let exps = v["experiments"].as_array().unwrap();
    assert_eq!(exps.len(), 28);
    let cpu: Vec<&serde_json::Value> = exps
        .iter()
        .filter(|e| e["id"].as_str().unwrap().starts_with("2023-01-29 13:31:54"))
        .collect();
    assert_eq!(cpu.len(), 1);
    let e = cpu[0];
    eprintln!(
        "TrainTicket 13:31 cpu_contention: {}",
        serde_json::to_string(e).unwrap()
    );
    assert!(e["not_scorable"].is_null(), "{e}");
    assert!(e["fault"]
        .as_str()
        .unwrap()
        .starts_with("ts-contacts-service:latency=x"));
    assert!(e["operations"].as_array().unwrap().len() >= 3, "{e}");
    // The exception and return faults: no status in this data.
    let err = exps
        .iter()
        .find(|e| e["kind"] == "return" && e["window_spans"].as_u64() > Some(0))
        .or_else(|| exps.iter().find(|e| e["kind"] == "return"))
        .unwrap();
    assert!(err["not_scorable"].is_string(), "{err}");
    // Not scored is no score, not a perfect one.
    assert!(err["augur"]["log2_error_p50"].is_null(), "{err}");
    assert!(err["naive"]["log2_error_p99"].is_null(), "{err}");
}

/// The HTML report, opened in a real browser (headless Chromium from Debian's packages; `.ci/run`
/// installs it and sets AUGUR_CHROMIUM): it parses, the plot has one augur point and one naive
/// point per scored operation, and it renders to a screenshot.
#[test]
fn the_backtest_report_renders_in_headless_chromium() {
    let chromium = match std::env::var("AUGUR_CHROMIUM") {
        Ok(p) => std::path::PathBuf::from(p),
        Err(_) if Path::new("/usr/bin/chromium").exists() => "/usr/bin/chromium".into(),
        Err(_) => {
            eprintln!("SKIPPED: no Chromium (set AUGUR_CHROMIUM, or install Debian's chromium; .ci/run does)");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let normal = gen(d, "normal.jsonl", "2000", "2", &[]);
    let slow = gen(
        d,
        "slow.jsonl",
        "1000",
        "3",
        &[
            "--fault",
            "payment:latency=+300ms",
            "--start-offset",
            "3600",
        ],
    );
    let labels = d.join("labels.toml");
    std::fs::write(
        &labels,
        "[[experiment]]\nid = \"slow <payment>\"\ntarget = \"payment\"\nkind = \"latency\"\nstart = \"2026-11-01 01:00:00\"\nduration = 600\n",
    )
    .unwrap();
    let report = d.join("report.html");
    let (out, _) = ok(&[
        "backtest",
        "--traces",
        &normal,
        &slow,
        "--experiments",
        labels.to_str().unwrap(),
        "--json",
        "--requests",
        "1000",
        "--samples",
        "8",
        "--report",
        report.to_str().unwrap(),
    ]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ops = v["experiments"][0]["operations"].as_array().unwrap().len();
    assert!(ops > 5);
    let browser = |extra: &[&str]| {
        let profile = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(&chromium)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--window-size=1100,1000",
            ])
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .args(extra)
            .arg(format!("file://{}", report.display()))
            .output()
            .expect("chromium runs");
        assert!(
            out.status.success(),
            "chromium failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let dom = browser(&["--dump-dom"]);
    assert!(dom.contains("<svg id=\"plot\""), "{dom}");
    assert_eq!(dom.matches("class=\"augur\"").count(), ops);
    assert_eq!(dom.matches("class=\"naive\"").count(), ops);
    // The experiment's name is escaped, not markup.
    assert!(dom.contains("slow &lt;payment&gt;"));
    let png = d.join("report.png");
    browser(&[&format!("--screenshot={}", png.display())]);
    let bytes = std::fs::read(&png).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000,
        "{} bytes",
        bytes.len()
    );
}
