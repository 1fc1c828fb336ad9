//! The learned model against ground truth: three generated worlds (the demo shop and two random
//! worlds, one of 60 services) are run, learned, and every learned parameter is checked against
//! what the generator decided.
//!
//! - retries found where calls were retried, never more than configured, nowhere else;
//! - timeouts found where calls were cut, at the configured threshold, nowhere else;
//! - self-time medians within 10% of the generator's;
//! - P(propagate) 90% intervals cover the truth at >= 90% of call sites with evidence, and are
//!   wide (>= 0.3) where there is none;
//! - modes (sequential, parallel, asynchronous) and mean calls per invocation.
//!
//! These use the library crates in memory (no files): the binary's part is covered elsewhere.

use augur_datasets::{Generator, GraphTruth, RandomWorldParams, World};

use crate::common::learn_runs as learn;
use augur_ingest::SpanBatch;
use augur_model::{Mode, ModelBuilder, View};

/// Every check, collecting failures so a run reports all of them at once.
#[derive(Default)]
struct Score {
    failures: Vec<String>,
    retries_found: usize,
    timeouts_found: usize,
    self_checked: usize,
    with_evidence: usize,
    covered: usize,
    without_evidence: usize,
}

fn check(world: &str, view: &View, truth: &GraphTruth) -> Score {
    let mut s = Score::default();
    let mut fail = |m: String| s.failures.push(format!("{world}: {m}"));
    let mut found = (0, 0);
    let (mut with_evidence, mut covered, mut without_evidence) = (0, 0, 0);
    for t in truth.iter_edges() {
        let Some(e) = view.edge(&t.from, &t.to) else {
            fail(format!("edge {} -> {} not learned", t.from, t.to));
            continue;
        };
        let name = format!("{} -> {}", t.from, t.to);
        // Several call sites of one caller to one callee look alike in traces: the model learns
        // them as one, so only their counts are checked here.
        let merged = t.sites > 1;
        // Retries.
        let seen = e.retries.unwrap_or(0);
        if seen > t.retries && !merged {
            fail(format!(
                "{name}: {seen} retries learned, {} configured",
                t.retries
            ));
        }
        if t.attempts > t.calls && !t.asynchronous && !merged {
            if seen == 0 {
                fail(format!("{name}: retried in the run, no retries learned"));
            } else {
                found.0 += 1;
            }
        }
        // Timeouts.
        if merged {
            continue;
        }
        match (t.timeout_ms, &e.timeout) {
            (None, Some(l)) => fail(format!(
                "{name}: timeout {} ms learned, none configured",
                l.median_ms
            )),
            (Some(want), Some(l)) => {
                if (l.median_ms - want).abs() > 0.02 * want {
                    fail(format!(
                        "{name}: timeout {} ms learned, {want} configured",
                        l.median_ms
                    ));
                } else {
                    found.1 += 1;
                }
            }
            (Some(want), None) if t.timeouts > 0 => fail(format!(
                "{name}: {} attempts cut at {want} ms, no timeout learned",
                t.timeouts
            )),
            _ => {}
        }
        // Mode.
        let want = if t.asynchronous {
            Mode::Asynchronous
        } else if t.parallel {
            Mode::Parallel
        } else {
            Mode::Sequential
        };
        if e.mode != want {
            fail(format!("{name}: learned {:?}, truth {want:?}", e.mode));
        }
        // Calls per invocation (truth counts calls; attempts add retries).
        if let Some(caller) = truth.nodes.get(&t.from) {
            if caller.invocations >= 200 {
                let want = t.calls as f64 / caller.invocations as f64;
                if (e.mean_calls() - want).abs() > 0.02 + 0.02 * want {
                    fail(format!(
                        "{name}: {:.3} calls per invocation learned, {want:.3} made",
                        e.mean_calls()
                    ));
                }
            }
        }
        // Propagation.
        if t.asynchronous {
            continue;
        }
        let p = &e.p_propagate;
        if p.evidence > 0 {
            with_evidence += 1;
            if p.interval.lo <= t.p_propagate && t.p_propagate <= p.interval.hi {
                covered += 1;
            } else {
                eprintln!(
                    "{world}: {name}: P(propagate) truth {} outside [{:.3}, {:.3}] (n={}, prior {})",
                    t.p_propagate, p.interval.lo, p.interval.hi, p.evidence, p.prior
                );
            }
        } else {
            without_evidence += 1;
            if p.interval.hi - p.interval.lo < 0.3 {
                fail(format!(
                    "{name}: no evidence yet P(propagate) interval [{:.3}, {:.3}] is narrow",
                    p.interval.lo, p.interval.hi
                ));
            }
        }
    }
    // Self time.
    let mut self_checked = 0;
    for n in truth.nodes.values() {
        let Some(want) = n.self_ms_p50 else { continue };
        if n.invocations < 200 {
            continue;
        }
        let Some(l) = view.node(&n.id) else {
            fail(format!("node {} not learned", n.id));
            continue;
        };
        self_checked += 1;
        let got = l.self_time.p50_ms;
        if (got - want).abs() > 0.1 * want {
            fail(format!(
                "{}: self time p50 {got} ms learned, {want} ms true",
                n.id
            ));
        }
    }
    s.retries_found = found.0;
    s.timeouts_found = found.1;
    s.self_checked = self_checked;
    s.with_evidence = with_evidence;
    s.covered = covered;
    s.without_evidence = without_evidence;
    s
}

fn assert_score(world: &str, s: &Score) {
    eprintln!(
        "{world}: retries found at {} sites, timeouts at {}, {} self times checked, P(propagate) covered at {}/{} sites with evidence, {} without",
        s.retries_found, s.timeouts_found, s.self_checked, s.covered, s.with_evidence, s.without_evidence
    );
    assert!(s.failures.is_empty(), "{}", s.failures.join("\n"));
    assert!(s.self_checked > 0);
    if s.with_evidence > 0 {
        let coverage = s.covered as f64 / s.with_evidence as f64;
        assert!(
            coverage >= 0.9,
            "{world}: P(propagate) coverage {coverage:.2}"
        );
    }
}

#[test]
fn shop_parameters_match_the_truth() {
    let world = World::shop();
    // Normal traffic, and an incident where redis slowed down and calls to it timed out.
    let (view, truth) = learn(
        &world,
        11,
        &[(None, 20_000), (Some("redis:latency=+60ms"), 1_000)],
    );
    let s = check("shop", &view, &truth);
    assert_score("shop", &s);
    assert!(
        s.retries_found > 0 && s.timeouts_found > 0,
        "the shop retries and times out"
    );
    assert!(s.with_evidence >= 3);
    // Traffic: shares of the endpoints add up to 1.
    let share: f64 = view
        .nodes
        .iter()
        .filter_map(|n| n.traffic)
        .map(|t| t.share)
        .sum();
    assert!((share - 1.0).abs() < 1e-9);
}

#[test]
fn uncertainty_shrinks_as_evidence_grows_and_the_file_round_trips() {
    let world = World::shop();
    let width = |v: &View| {
        let w: Vec<f64> = v
            .edges
            .iter()
            .filter(|e| e.p_propagate.evidence > 0)
            .map(|e| e.p_propagate.interval.hi - e.p_propagate.interval.lo)
            .collect();
        (w.iter().sum::<f64>() / w.len().max(1) as f64, w.len())
    };
    let (small, _) = learn(&world, 5, &[(None, 1_000)]);
    let (large, _) = learn(&world, 5, &[(None, 16_000)]);
    let ((ws, ns), (wl, nl)) = (width(&small), width(&large));
    assert!(nl >= ns && ns > 0, "{ns} then {nl} sites with evidence");
    assert!(
        wl < ws,
        "mean 90% width {ws:.3} with 1k traces, {wl:.3} with 16k"
    );
    // Own error rates too: every operation's interval narrows with sixteen times the traffic.
    for n in large.nodes.iter().filter(|n| !n.is_virtual) {
        let s = small.node(&n.id).unwrap();
        let w = |p: &augur_model::Posterior| p.interval.hi - p.interval.lo;
        assert!(w(&n.p_error) < w(&s.p_error), "{}", n.id);
    }

    // The model file round-trips exactly.
    let mut builder = ModelBuilder::default();
    let mut gen = Generator::new(&world, 9).unwrap();
    let mut batch = SpanBatch::new();
    gen.emit(2_000, &mut batch);
    builder.add_batch(&batch);
    let model = builder.finish();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.json");
    model.save(&path).unwrap();
    assert_eq!(augur_model::Model::load(&path).unwrap(), model);
}

#[test]
fn random_worlds_parameters_match_the_truth() {
    for (seed, services, traces) in [(3u64, 60usize, 12_000usize), (17, 20, 12_000)] {
        let params = RandomWorldParams {
            services,
            ..RandomWorldParams::default()
        };
        let world = World::random(seed, params).unwrap();
        let (view, truth) = learn(&world, seed, &[(None, traces)]);
        let name = format!("random-{services}-{seed}");
        let s = check(&name, &view, &truth);
        assert_score(&name, &s);
    }
}
