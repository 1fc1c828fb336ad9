//! The recommender on a small learned model: one call whose failures were seen to propagate,
//! one whose failures were seen absorbed, and one that never failed (the uncertain one).

use augur_ingest::{OwnedSpan, SpanBatch, SpanKind};
use augur_model::{ModelBuilder, View};
use augur_simulator::{FaultKind, FaultSpec, SimOptions};

use crate::{intents, recommend, value_of, Options, Scope};

const MS: i64 = 1_000_000;

#[allow(clippy::too_many_arguments)]
fn span(
    t: u32,
    id: u8,
    parent: Option<u8>,
    svc: &str,
    kind: SpanKind,
    s: i64,
    e: i64,
    failed: bool,
) -> OwnedSpan {
    let mut trace_id = [0u8; 16];
    trace_id[..4].copy_from_slice(&t.to_be_bytes());
    let name = if kind == SpanKind::Client {
        format!("call {svc}")
    } else {
        "op".to_string()
    };
    OwnedSpan {
        trace_id,
        span_id: [id; 8],
        parent_span_id: parent.map(|p| [p; 8]),
        service: svc.into(),
        name,
        kind: kind as u8,
        start_ns: i64::from(t) * 100 * MS + s * MS,
        end_ns: i64::from(t) * 100 * MS + e * MS,
        status: if failed { 2 } else { 0 },
        peer: None,
        peer_kind: Default::default(),
        http_route: None,
        rpc_method: None,
        error_type: None,
        experiment: None,
        link: None,
    }
}

/// `web op` calls `api` (failures propagate, seen 100 times), `ads` (failures absorbed, seen
/// 100 times) and `geo` (never failed: P(propagate) is only a prior).
fn model() -> View {
    traffic(0..2000, None).view()
}

/// The model's traffic for traces `ts`; with `geo_down = Some(survives)`, geo refuses every
/// call and web survives it (a fallback) or fails with it.
fn traffic(ts: std::ops::Range<u32>, geo_down: Option<bool>) -> augur_model::Model {
    use SpanKind::*;
    let mut batch = SpanBatch::new();
    for t in ts {
        let api = t % 20 == 0;
        let ads = t % 20 == 10;
        let web_fails = api || geo_down == Some(false);
        let mut spans = vec![
            span(t, 1, None, "web", Server, 0, 12, web_fails),
            span(t, 2, Some(1), "web", Client, 1, 4, api),
            span(t, 3, Some(2), "api", Server, 1, 4, api),
            span(t, 4, Some(1), "web", Client, 4, 7, ads),
            span(t, 5, Some(4), "ads", Server, 4, 7, ads),
            // A refused call fails fast.
            span(
                t,
                6,
                Some(1),
                "web",
                Client,
                7,
                if geo_down.is_some() { 8 } else { 10 },
                geo_down.is_some(),
            ),
        ];
        if geo_down.is_none() {
            spans.push(span(t, 7, Some(6), "geo", Server, 7, 10, false));
        }
        for mut s in spans {
            if s.kind == Client as u8 {
                s.name = format!(
                    "call {}",
                    ["", "", "api", "", "ads", "", "geo"][s.span_id[0] as usize]
                );
                if s.span_id[0] == 6 {
                    s.peer = Some("geo".into());
                }
            }
            batch.push_owned(&s);
        }
    }
    let mut b = ModelBuilder::default();
    b.add_batch(&batch);
    b.finish()
}

fn opts() -> Options {
    Options {
        scope: Scope::Service,
        duration_s: 60.0,
        error_budget: None,
        sim: SimOptions {
            requests: 1_000,
            samples: 32,
            seed: 3,
        },
        staleness: Default::default(),
        keep_fits: false,
    }
}

#[test]
fn the_uncertain_call_is_worth_more_than_the_known_ones() {
    let v = model();
    let down = |t: &str| augur_simulator::FaultSpec {
        target: t.into(),
        kind: FaultKind::Down,
    };
    let value = |t: &str| value_of(&v, &[], &down(t), &opts()).unwrap().value_bits;
    let (geo, api, ads) = (value("geo"), value("api"), value("ads"));
    assert!(
        geo > api + 0.5 && geo > ads + 0.5,
        "geo {geo}, api {api}, ads {ads}"
    );
    // Of the experiments that test failure handling (down, error), the ranking puts a geo one
    // first. (Latency experiments test timeouts, which no call site has shown: they are
    // uncertain alike at all three, and rank near each other, above these.)
    let rec = recommend::recommend(&v, &[], &opts()).unwrap();
    let first = rec
        .experiments
        .iter()
        .find(|e| !e.fault.contains("latency"))
        .unwrap();
    assert!(first.fault.starts_with("geo:"), "{first:?}");
    assert!(first.why.contains("geo"), "{}", first.why);
    // Ranked by value.
    for w in rec.experiments.windows(2) {
        assert!(w[0].value_bits >= w[1].value_bits);
    }
    // No bound on failed requests passes the requests there are; the entry service down fails
    // nearly all of them (its users call it directly).
    for e in &rec.experiments {
        assert!(e.harm.failed_requests_hi <= e.harm.requests, "{e:?}");
    }
    let web = rec
        .experiments
        .iter()
        .find(|e| e.fault == "web:down")
        .unwrap();
    assert!(
        web.harm.failed_requests_hi >= 0.9 * web.harm.requests,
        "{web:?}"
    );
}

#[test]
fn a_budget_scales_experiments_down_or_marks_them_unsafe() {
    let v = model();
    let fault = augur_simulator::FaultSpec {
        target: "api".into(),
        kind: FaultKind::Down,
    };
    let free = value_of(&v, &[], &fault, &opts()).unwrap();
    assert!(free.safe && free.traffic_share == 1.0);
    assert!(free.harm.failed_requests_hi > 100.0, "{:?}", free.harm);
    let budget = free.harm.failed_requests_hi / 5.0;
    let tight = value_of(
        &v,
        &[],
        &fault,
        &Options {
            error_budget: Some(budget),
            ..opts()
        },
    )
    .unwrap();
    assert!(tight.safe && tight.traffic_share < 1.0, "{tight:?}");
    assert!(tight.harm.failed_requests_hi <= budget);
    assert!(tight.why.contains("scaled"));
    let none = value_of(
        &v,
        &[],
        &fault,
        &Options {
            error_budget: Some(0.0),
            ..opts()
        },
    )
    .unwrap();
    assert!(!none.safe && none.why.contains("UNSAFE"), "{none:?}");
    assert!(none.why.contains("for 6 s"), "{none:?}");

    // When not even 1% of the traffic fits, 1% for a shorter time may.
    let long = Options {
        duration_s: 100.0 * opts().duration_s,
        keep_fits: true,
        error_budget: Some(f64::INFINITY),
        ..opts()
    };
    let all = value_of(&v, &[], &fault, &long).unwrap();
    let one = all
        .fits
        .iter()
        .find(|f| f.traffic_share == 0.01)
        .expect("every share fits an infinite budget");
    assert!(one.harm.failed_requests_hi >= 20.0, "{one:?}");
    let budget = (one.harm.failed_requests_hi / 3.0).floor();
    let short = value_of(
        &v,
        &[],
        &fault,
        &Options {
            error_budget: Some(budget),
            keep_fits: false,
            ..long.clone()
        },
    )
    .unwrap();
    assert!(short.safe && short.traffic_share == 0.01, "{short:?}");
    assert!(short.harm.failed_requests_hi <= budget, "{short:?}");
    assert!(
        short.harm.duration_s < long.duration_s && short.harm.duration_s >= 0.1 * long.duration_s,
        "{short:?}"
    );
    assert!(short.why.contains("1% of traffic for"), "{short:?}");
    assert!(short.value_bits <= one.value_bits + 1e-9, "{short:?}");
}

#[test]
fn an_unsafe_experiment_names_a_milder_fault_that_fits() {
    let v = model();
    let o = Options {
        error_budget: Some(0.0),
        ..opts()
    };
    let rec = recommend::recommend(&v, &[], &o).unwrap();
    let mut named = 0;
    for e in rec.experiments.iter().filter(|e| !e.safe) {
        let Some((_, tail)) = e.why.split_once("; milder, ") else {
            continue;
        };
        named += 1;
        let fault = tail.split(' ').next().unwrap();
        let milder = rec
            .experiments
            .iter()
            .find(|x| x.fault == fault)
            .unwrap_or_else(|| panic!("{fault} is a candidate: {}", e.why));
        assert!(milder.safe, "{milder:?}");
        let (a, b): (FaultSpec, FaultSpec) = (e.fault.parse().unwrap(), fault.parse().unwrap());
        assert_eq!(a.target, b.target);
        let sev = |k: &FaultKind| match k {
            FaultKind::Down => (0, 1.0),
            FaultKind::Error(r) => (0, *r),
            FaultKind::AddLatencyMs(ms) => (1, *ms),
            FaultKind::ScaleSelf(f) => (2, *f),
        };
        let ((fa, sa), (fb, sb)) = (sev(&a.kind), sev(&b.kind));
        assert!(fa == fb && sb < sa, "{} -> {fault}", e.fault);
    }
    assert!(
        named > 0,
        "{:#?}",
        rec.experiments
            .iter()
            .map(|e| (&e.fault, e.safe))
            .collect::<Vec<_>>()
    );
    // A safe experiment names none.
    assert!(rec
        .experiments
        .iter()
        .filter(|e| e.safe)
        .all(|e| !e.why.contains("; milder, ")));
}

#[test]
fn intents_are_checked_without_a_model_where_they_can_be() {
    use crate::intents::check_syntax;
    let good = "[[intent]]\nid = \"a\"\nbelief = \"b\"\nfault = \"ads:down\"\nexpect = { endpoint = \"web op\", error_rate_below = 0.1 }\n";
    assert_eq!(check_syntax(good), Ok(()));
    assert!(check_syntax("[[intent]\n").is_err());
    let err = check_syntax(&good.replace("ads:down", "ads:melt")).unwrap_err();
    assert!(err.contains("intent `a`"), "{err}");
    assert!(check_syntax(&good.replace("belief", "beleif")).is_err());
}

#[test]
fn intents_are_validated_and_valued() {
    let v = model();
    let text = r#"
[[intent]]
id = "web-survives-ads"
belief = "Ads are optional."
fault = "ads:down"
expect = { endpoint = "web op", error_rate_below = 0.1 }

[[intent]]
id = "web-survives-anything-slow"
belief = "Nothing slow breaks web."
fault = "*:latency=+10ms"
within = "web op"
expect = { endpoint = "web op", p99_ms_below = 100 }
priority = 3
"#;
    let parsed = intents::parse(text, &v).unwrap();
    assert_eq!(parsed.len(), 2);
    assert_eq!(parsed[1].faults.len(), 3, "{:?}", parsed[1].faults);
    assert_eq!(parsed[1].priority, 3);
    let e = value_of(&v, &parsed, &parsed[0].faults[0], &opts()).unwrap();
    assert_eq!(e.intents.len(), 1);
    assert!(e.intents[0].p_holds > 0.9, "{e:?}");

    for (bad, says) in [
        ("[[intent]]\nid='x'\nbelief='b'\nfault='ads:down'\nexpect={endpoint='web opp', error_rate_below=0.1}", "closest first: web op"),
        ("[[intent]]\nid='x'\nbelief='b'\nfault='adz:down'\nexpect={endpoint='web op', error_rate_below=0.1}", "did you mean"),
        ("[[intent]]\nid='x'\nbelief='b'\nfault='ads:down'\nexpect={endpoint='web op'}", "error_rate_below or p99_ms_below"),
        ("[[intent]]\nid='x'\nbelief='b'\nfault='ads:down'\ncolour='red'\nexpect={endpoint='web op', error_rate_below=0.1}", "colour"),
        ("[[intent]]\nid='x'\nbelief='b'\nfault='*:down'\nexpect={endpoint='web op', error_rate_below=0.1}", "within"),
        ("[[intent]]\nid='x'\nbelief='b'\nfault='ads:down'\nexpect={endpoint='web op', error_rate_below=0.1}\n[[intent]]\nid='x'\nbelief='b'\nfault='ads:down'\nexpect={endpoint='web op', error_rate_below=0.1}", "two intents"),
    ] {
        let err = intents::parse(bad, &v).unwrap_err();
        assert!(err.contains(says), "{bad}\n=> {err}");
    }
}

#[test]
fn a_plan_fits_the_budget_and_does_not_repeat_itself() {
    let v = model();
    let o = opts();
    let rec = recommend::recommend(&v, &[], &o).unwrap();
    let endpoints = recommend::requests_per_endpoint(&v, o.duration_s);
    let budget = 400.0;
    let plan = crate::plan::plan(&rec, &endpoints, budget, 5, o.sim.requests);
    assert!(!plan.experiments.is_empty());
    assert!(plan.total_failed_requests_hi <= budget, "{plan:?}");
    // The first pick is the most valuable affordable experiment; what follows adds less than
    // it would alone (the same draws are already told apart).
    let first = &plan.experiments[0];
    assert!(
        (first.marginal_bits - first.value_bits).abs() < 0.01,
        "{first:?}"
    );
    let geo_picks = plan
        .experiments
        .iter()
        .filter(|p| p.fault.starts_with("geo:"))
        .count();
    assert!(geo_picks <= 2, "{plan:?}");
    for p in &plan.experiments[1..] {
        assert!(p.marginal_bits <= p.value_bits + 1e-9, "{p:?}");
    }

    // With every experiment assessed at every share within the budget, the plan fits each to
    // the budget left: never less than fitting each to an equal part, never over the budget.
    let fitted = recommend::recommend(
        &v,
        &[],
        &Options {
            error_budget: Some(budget),
            keep_fits: true,
            ..o.clone()
        },
    )
    .unwrap();
    for max in [1, 2, 5] {
        let part = recommend::recommend(
            &v,
            &[],
            &Options {
                error_budget: Some(budget / max as f64),
                ..o.clone()
            },
        )
        .unwrap();
        let old = crate::plan::plan(&part, &endpoints, budget, max, o.sim.requests);
        let new = crate::plan::plan(&fitted, &endpoints, budget, max, o.sim.requests);
        assert!(new.total_bits >= old.total_bits - 1e-9, "{old:?}\n{new:?}");
        assert!(new.total_failed_requests_hi <= budget, "{new:?}");
        for p in &new.experiments {
            let fits = &fitted
                .experiments
                .iter()
                .find(|x| x.fault == p.fault)
                .unwrap()
                .fits;
            assert!(
                fits.iter().any(
                    |f| f.traffic_share == p.traffic_share && f.harm.duration_s == p.duration_s
                ),
                "{p:?}"
            );
        }
    }
}

#[test]
fn a_partial_outcome_keeps_the_baselines_uncertainty() {
    use crate::outcome::{outcome, OutcomeOptions};
    let base = traffic(0..2000, None);
    let spec: augur_simulator::FaultSpec = "geo:down".parse().unwrap();
    let sim = opts().sim;
    let observed = traffic(5000..5300, Some(true));
    let share = 0.01;
    let o = outcome(
        &base,
        &observed,
        &spec,
        &[],
        &OutcomeOptions {
            sim: sim.clone(),
            traffic_share: share,
        },
    )
    .unwrap();
    // The same simulation the outcome made: the baseline's spread across draws.
    let (p, _) =
        augur_simulator::simulate(&base.view(), std::slice::from_ref(&spec), &sim).unwrap();
    for e in &o.report.endpoints {
        let at = p
            .endpoints
            .iter()
            .find(|x| x.endpoint == e.endpoint)
            .unwrap();
        let rates: Vec<f64> = at.per_draw_baseline.iter().flatten().map(|d| d.0).collect();
        let b = augur_simulator::band(rates);
        let got = &e.predicted.error_rate;
        assert!(
            got.lo <= got.mean + 1e-9 && got.mean <= got.hi + 1e-9,
            "{e:?}"
        );
        assert!(b.hi - b.lo > 0.0, "{b:?}");
        assert!(
            got.hi - got.lo >= 0.5 * (b.hi - b.lo),
            "{e:?} vs baseline {b:?}"
        );
    }
}

#[test]
fn an_outcome_refines_propagation_and_judges_intents() {
    use crate::outcome::{outcome, OutcomeOptions};
    let base = traffic(0..2000, None);
    let view = base.view();
    let text = r#"
[[intent]]
id = "web-survives-geo"
belief = "Web falls back when geo is down."
fault = "geo:down"
expect = { endpoint = "web op", error_rate_below = 0.2 }

[[intent]]
id = "web-survives-api"
belief = "Not about geo."
fault = "api:down"
expect = { endpoint = "web op", error_rate_below = 0.2 }
"#;
    let intents = intents::parse(text, &view).unwrap();
    let spec: augur_simulator::FaultSpec = "geo:down".parse().unwrap();
    let opts = OutcomeOptions {
        sim: opts().sim,
        traffic_share: 1.0,
    };
    // Geo down, web survives: a fallback the normal traffic never showed.
    let observed = traffic(5000..5300, Some(true));
    let o = outcome(&base, &observed, &spec, &intents, &opts).unwrap();
    let r = &o.report;
    assert_eq!(
        (r.evidence.calls_into_target, r.evidence.failed_into_target),
        (300, 300)
    );
    let after = o.refined.view();
    let e0 = view.edge("web op", "geo op").unwrap();
    let e1 = after.edge("web op", "geo op").unwrap();
    assert!(e0.p_propagate.interval.hi - e0.p_propagate.interval.lo > 0.3);
    assert!(e1.p_propagate.interval.hi < 0.05, "{:?}", e1.p_propagate);
    // The refusals are not geo's normal behaviour: counts and the own error rate are unchanged.
    assert_eq!((e1.calls, e1.failed), (e0.calls, e0.failed));
    assert_eq!(after.node("geo op"), view.node("geo op"));
    // The biggest surprise is that call site's P(propagate), from its own evidence.
    let top = &r.surprises[0];
    assert_eq!(
        (top.parameter.as_str(), top.from.as_str(), top.to.as_str()),
        ("p_propagate", "web op", "geo op")
    );
    // 15 of the 300 invocations also had api fail: whose failure web absorbed is ambiguous there.
    assert_eq!((top.source.as_str(), top.observations), ("evidence", 285));
    assert!(top.bits > 1.0 && r.learned_bits >= top.bits, "{r:?}");
    // Only the intent about geo is judged, and it holds.
    assert_eq!(r.intents.len(), 1);
    assert_eq!(
        (r.intents[0].id.as_str(), r.intents[0].verdict.as_str()),
        ("web-survives-geo", "holds")
    );
    assert!(
        r.summary.iter().any(|l| l.contains("P(propagate)")),
        "{:?}",
        r.summary
    );
    assert!(!r.summary.iter().any(|l| l.starts_with("warning")));

    // Normal traffic given as geo:down's outcome: no call into geo failed, which is said.
    let normal = traffic(5000..5300, None);
    let o = outcome(&base, &normal, &spec, &[], &opts).unwrap();
    assert!(
        o.report
            .summary
            .iter()
            .any(|l| l.starts_with("warning: none of the 300 calls")),
        "{:?}",
        o.report.summary
    );

    // Geo down, web fails with it: the intent is falsified, the call propagates.
    let observed = traffic(5000..5300, Some(false));
    let o = outcome(&base, &observed, &spec, &intents, &opts).unwrap();
    assert_eq!(o.report.intents[0].verdict, "falsified");
    assert!(
        o.refined
            .view()
            .edge("web op", "geo op")
            .unwrap()
            .p_propagate
            .interval
            .lo
            > 0.95
    );

    // Too few requests to tell: inconclusive.
    let observed = traffic(5000..5003, Some(true));
    let few = outcome(&base, &observed, &spec, &intents, &opts).unwrap();
    assert_eq!(
        few.report.intents[0].verdict, "inconclusive",
        "{:?}",
        few.report.intents
    );

    // A target the model does not know is an error suggesting names.
    let bad: augur_simulator::FaultSpec = "gep:down".parse().unwrap();
    let err = outcome(&base, &observed, &bad, &[], &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("geo"), "{err}");

    // Traces of another system are not an outcome (they would read as "nothing moved").
    let mut other = observed.clone();
    for o in &mut other.operations {
        o.id = format!("elsewhere {}", o.id);
    }
    let err = outcome(&base, &other, &spec, &[], &opts)
        .unwrap_err()
        .to_string();
    assert!(err.contains("none of the model's"), "{err}");
}

#[test]
fn the_ledger_appends_reads_and_tells_staleness() {
    use crate::ledger::{
        append, ledger_path, read, staleness, LedgerEntry, LEDGER_VERSION, TESTED_WEIGHT,
    };
    use crate::outcome::{fault_scope, outcome, OutcomeOptions};
    let dir = tempfile::tempdir().unwrap();
    let model_path = dir.path().join("shop.json");
    let path = ledger_path(&model_path);
    assert_eq!(path, dir.path().join("shop.ledger.jsonl"));
    assert!(read(&path).unwrap().is_empty());

    let base = traffic(0..2000, None);
    let spec: augur_simulator::FaultSpec = "geo:down".parse().unwrap();
    let opts = OutcomeOptions {
        sim: opts().sim,
        traffic_share: 1.0,
    };
    let o = outcome(&base, &traffic(5000..5300, Some(true)), &spec, &[], &opts).unwrap();
    let scope = fault_scope(&o.refined.view(), &spec).unwrap();
    let entry = LedgerEntry::of(
        &o,
        &spec,
        "2026-12-02T00:00:00Z".into(),
        vec!["geo-down.jsonl".into()],
        model_path.display().to_string(),
    )
    .unwrap();
    assert_eq!(entry.tested, o.refined.neighbourhood(&scope));
    assert_eq!(entry.version, LEDGER_VERSION);
    // The evidence kept is what refining added: base + evidence is the refined model.
    let (sum, n) = crate::ledger::evidence(std::slice::from_ref(&entry)).unwrap();
    assert_eq!(n, 1);
    let mut again = base.clone();
    again.merge(&sum);
    assert_eq!(again, o.refined);
    append(&path, &entry).unwrap();
    append(&path, &entry).unwrap();
    let back = read(&path).unwrap();
    assert_eq!(back.len(), 2);
    // Counts and sketches come back exactly (floats in the report to within printing).
    assert_eq!(back[0].tested, entry.tested);
    assert_eq!(
        back[1].outcome.surprises.len(),
        entry.outcome.surprises.len()
    );
    assert_eq!(back[0].outcome.intents, entry.outcome.intents);

    // Tested, nothing drifted: the weight drops. Another target is untouched.
    let view = o.refined.view();
    let s = staleness(&o.refined, &view, &back, &spec);
    assert_eq!(s.weight, TESTED_WEIGHT);
    assert!(s.note.unwrap().contains("nothing drifted"));
    let api: augur_simulator::FaultSpec = "api:down".parse().unwrap();
    assert_eq!(staleness(&o.refined, &view, &back, &api).weight, 1.0);
    // Geo slows down later: what the experiment taught may no longer hold.
    let mut slower = o.refined.clone();
    let mut later = traffic(9000..15000, None);
    for c in &mut later.calls {
        if c.to == "geo op" {
            let mut shifted = augur_model::LogSketch::new();
            for (v, n) in c.stats.ok_ns.buckets() {
                shifted.add_n(v * 3.0, n);
            }
            c.stats.ok_ns = shifted;
        }
    }
    slower.merge(&later);
    let s = staleness(&slower, &slower.view(), &back, &spec);
    assert_eq!(s.weight, 1.0);
    let note = s.note.unwrap_or_default();
    assert!(note.contains("drifted since"), "{note}");

    // A line cut short (a crash mid-write) is skipped, and the next entry appended after it
    // starts on its own line: nothing is lost.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{\"version\":1,\"recor");
    std::fs::write(&path, &text).unwrap();
    let entries = read(&path).unwrap();
    assert_eq!(entries.len(), 2);
    append(&path, &entries[0]).unwrap();
    assert_eq!(read(&path).unwrap().len(), 3);
    // A line that is not an entry (rather than one cut short) is an error naming it.
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str("{}\n");
    std::fs::write(&path, &text).unwrap();
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("line 5"), "{err}");
    std::fs::write(&path, "not a ledger").unwrap();
    let err = read(&path).unwrap_err().to_string();
    assert!(err.contains("line 1"), "{err}");
}

/// One endpoint's prediction with the given per-draw (error rate, p50 ms, p99 ms), its
/// baseline draws all `base`.
fn predicted(draws: Vec<(f64, f64, f64)>, base: (f64, f64, f64)) -> augur_simulator::OpPrediction {
    use augur_simulator::{Band, OpPrediction, Point, Predicted};
    let band = |k: usize| {
        let v: Vec<f64> = draws.iter().map(|d| [d.0, d.1, d.2][k]).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        Band {
            mean: m,
            lo: v.iter().copied().fold(f64::INFINITY, f64::min),
            hi: v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        }
    };
    OpPrediction {
        endpoint: "web op".into(),
        service: "web".into(),
        operation: "op".into(),
        baseline: Point {
            error_rate: base.0,
            p50_ms: base.1,
            p99_ms: base.2,
        },
        predicted: Predicted {
            error_rate: band(0),
            p50_ms: band(1),
            p99_ms: band(2),
        },
        draws_run: draws.len(),
        per_draw_baseline: vec![Some(base); draws.len()],
        per_draw: draws.into_iter().map(Some).collect(),
    }
}

#[test]
fn latency_outcomes_are_worth_bits_where_no_request_fails() {
    // Nothing ever fails. Under half the posterior draws a slowed call is cut short by a
    // timeout the model is unsure of (40 ms medians), under the others it runs on (120 ms);
    // a second candidate hangs on the same timeout, a third on nothing uncertain.
    let s = 64;
    let cut = |k: usize| k.is_multiple_of(2);
    let base = (0.0, 10.0, 30.0);
    let uncertain = predicted(
        (0..s)
            .map(|k| {
                if cut(k) {
                    (0.0, 40.0, 120.0)
                } else {
                    (0.0, 120.0, 360.0)
                }
            })
            .collect(),
        base,
    );
    let related = predicted(
        (0..s)
            .map(|k| {
                if cut(k) {
                    (0.0, 45.0, 135.0)
                } else {
                    (0.0, 210.0, 630.0)
                }
            })
            .collect(),
        base,
    );
    let known = predicted(vec![(0.0, 15.0, 45.0); s], base);
    let all = vec![vec![uncertain], vec![related], vec![known]];
    let endpoints = vec![("web op".to_string(), 1.0, 6_000.0)];
    let o = opts();
    let targets = recommend::targets(&all, &endpoints, &o);
    let v = model();
    let value = |k: usize| {
        let spec = augur_simulator::FaultSpec {
            target: "geo".into(),
            kind: FaultKind::AddLatencyMs(500.0),
        };
        recommend::assess(&v, &[], &spec, all[k].clone(), &endpoints, &targets, &o).value_bits
    };
    let (uncertain, related, known) = (value(0), value(1), value(2));
    // The uncertain experiment tells its own latency and the related one's: several bits;
    // the known one teaches nothing.
    assert!(uncertain > 4.0, "uncertain {uncertain}");
    assert!(related > 4.0, "related {related}");
    assert!(known < 0.05, "known {known}");
}

#[test]
fn a_plan_does_not_pay_twice_for_the_same_lesson() {
    // Three latency experiments: two hang on the same uncertain timeout (their outcomes move
    // together across the draws), the third on another one.
    let s = 64;
    let base = (0.0, 10.0, 30.0);
    let hanging = |k: usize, on: usize, short: f64, long: f64| {
        if (k / on).is_multiple_of(2) {
            (0.0, short, 3.0 * short)
        } else {
            (0.0, long, 3.0 * long)
        }
    };
    let a = predicted((0..s).map(|k| hanging(k, 1, 40.0, 120.0)).collect(), base);
    let twin = predicted((0..s).map(|k| hanging(k, 1, 45.0, 200.0)).collect(), base);
    let other = predicted((0..s).map(|k| hanging(k, 2, 30.0, 60.0)).collect(), base);
    let all = vec![vec![a], vec![twin], vec![other]];
    let endpoints = vec![("web op".to_string(), 1.0, 6_000.0)];
    let o = opts();
    let targets = recommend::targets(&all, &endpoints, &o);
    let v = model();
    let names = ["a", "twin", "other"];
    let experiments = all
        .iter()
        .zip(names)
        .map(|(p, name)| {
            let spec = augur_simulator::FaultSpec {
                target: name.into(),
                kind: FaultKind::AddLatencyMs(500.0),
            };
            recommend::assess(&v, &[], &spec, p.clone(), &endpoints, &targets, &o)
        })
        .collect();
    let rec = recommend::Recommendation { experiments };
    let plan = crate::plan::plan(&rec, &endpoints, 1e9, 3, o.sim.requests);
    let picked: Vec<&str> = plan.experiments.iter().map(|p| p.fault.as_str()).collect();
    assert!(plan.experiments.len() >= 2, "{plan:?}");
    // One of the twins first (each teaches both twins' latency), then the other lesson.
    assert!(
        picked[0].starts_with("a:") || picked[0].starts_with("twin:"),
        "{picked:?}"
    );
    assert!(picked[1].starts_with("other:"), "{picked:?}");
    let second = &plan.experiments[1];
    assert!(
        second.marginal_bits > 0.8 * second.value_bits,
        "a new lesson keeps its value: {second:?}"
    );
    // The second twin, if chosen at all, adds next to nothing.
    if let Some(third) = plan.experiments.get(2) {
        assert!(third.marginal_bits < 0.1 * third.value_bits, "{third:?}");
    }
}

#[test]
fn why_speaks_of_timeouts_for_latency_and_of_failures_otherwise() {
    let v = model();
    let why = |kind| {
        let spec = augur_simulator::FaultSpec {
            target: "geo".into(),
            kind,
        };
        value_of(&v, &[], &spec, &opts()).unwrap().why
    };
    let slow = why(FaultKind::AddLatencyMs(500.0));
    assert!(
        slow.starts_with("no timeout seen on web op -> geo op: its calls ran up to 3 ms uncut"),
        "{slow}"
    );
    assert!(slow.contains("timeouts seen at 0 of"), "{slow}");
    let down = why(FaultKind::Down);
    assert!(
        down.starts_with("0 natural failures of web op -> geo op seen"),
        "{down}"
    );
}

#[test]
fn one_experiment_is_one_candidate_whatever_it_is_called() {
    // Every service here has one operation: `api/<op>` is `api` again, and would share its
    // predictions and inflate its value. Call sites stay: they act on one caller's calls only.
    let v = model();
    for scope in [Scope::Operation, Scope::Edge] {
        let c = recommend::candidates(&v, scope, &[]);
        assert!(c.iter().all(|f| !f.target.contains('/')), "{c:?}");
        assert_eq!(
            c.iter().any(|f| f.target.contains("->")),
            scope == Scope::Edge
        );
        let service = recommend::candidates(&v, Scope::Service, &[]);
        assert!(service.iter().all(|f| c.contains(f)));
    }
}
