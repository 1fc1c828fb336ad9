//! The recommender on a small learned model: one call whose failures were seen to propagate,
//! one whose failures were seen absorbed, and one that never failed (the uncertain one).

use augur_ingest::{OwnedSpan, SpanBatch, SpanKind};
use augur_model::{ModelBuilder, View};
use augur_simulator::{FaultKind, SimOptions};

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
        http_route: None,
        rpc_method: None,
        error_type: None,
        experiment: None,
    }
}

/// `web op` calls `api` (failures propagate, seen 100 times), `ads` (failures absorbed, seen
/// 100 times) and `geo` (never failed: P(propagate) is only a prior).
fn model() -> View {
    use SpanKind::*;
    let mut batch = SpanBatch::new();
    for t in 0..2000u32 {
        let api = t % 20 == 0;
        let ads = t % 20 == 10;
        for s in [
            span(t, 1, None, "web", Server, 0, 12, api),
            span(t, 2, Some(1), "web", Client, 1, 4, api),
            span(t, 3, Some(2), "api", Server, 1, 4, api),
            span(t, 4, Some(1), "web", Client, 4, 7, ads),
            span(t, 5, Some(4), "ads", Server, 4, 7, ads),
            span(t, 6, Some(1), "web", Client, 7, 10, false),
            span(t, 7, Some(6), "geo", Server, 7, 10, false),
        ] {
            let mut s = s;
            if s.kind == Client as u8 {
                s.name = format!(
                    "call {}",
                    ["", "", "api", "", "ads", "", "geo"][s.span_id[0] as usize]
                );
            }
            batch.push_owned(&s);
        }
    }
    let mut b = ModelBuilder::default();
    b.add_batch(&batch);
    b.finish().view()
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
    // The ranking puts a geo experiment first.
    let rec = recommend::recommend(&v, &[], &opts()).unwrap();
    assert!(
        rec.experiments[0].fault.starts_with("geo:"),
        "{:?}",
        rec.experiments[0]
    );
    assert!(
        rec.experiments[0].why.contains("geo"),
        "{}",
        rec.experiments[0].why
    );
    // Ranked by value.
    for w in rec.experiments.windows(2) {
        assert!(w[0].value_bits >= w[1].value_bits);
    }
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
        ("[[intent]]\nid='x'\nbelief='b'\nfault='ads:down'\nexpect={endpoint='web opp', error_rate_below=0.1}", "web op"),
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
}
