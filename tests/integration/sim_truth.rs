//! The simulator against ground truth: learn a world from fault-free traces, predict every
//! single fault (each non-entry service down, error=0.5, latency=+500ms), and compare with the
//! world really run with that fault. Figures are printed (run with `--nocapture`) and recorded in
//! docs/ACCURACY.md.

use std::collections::BTreeSet;

use augur_datasets::{GraphTruth, RandomWorldParams, World};
use augur_model::View;
use augur_simulator::{simulate, FaultSpec, SimOptions};

fn learn(world: &World, seed: u64, traces: usize, fault: Option<&str>) -> (View, GraphTruth) {
    crate::common::learn_runs(world, seed, &[(fault, traces)])
}

/// Accuracy over every (fault, endpoint) pair.
#[derive(Default)]
pub struct Accuracy {
    pairs: usize,
    abs_err: f64,
    covered: usize,
    width: f64,
    p50_rel: f64,
    p99_rel: f64,
    p50_covered: usize,
    worst: Vec<(f64, String)>,
    /// The largest p50 relative errors, with what was observed and predicted.
    worst_p50: Vec<(f64, String)>,
    /// Per fault kind: (pairs, absolute error, p50 relative error, p99 relative error).
    by_kind: std::collections::BTreeMap<&'static str, (usize, f64, f64, f64)>,
}

impl Accuracy {
    fn report(&self, name: &str) -> (f64, f64) {
        let n = self.pairs.max(1) as f64;
        let (mae, coverage) = (self.abs_err / n, self.covered as f64 / n);
        eprintln!(
            "{name}: {} (fault, endpoint) pairs: error-rate MAE {mae:.4}, 90% interval coverage {:.1}% (mean width {:.4}); p50 relative error {:.3} (covered {:.1}%), p99 relative error {:.3}",
            self.pairs,
            coverage * 100.0,
            self.width / n,
            self.p50_rel / n,
            self.p50_covered as f64 / n * 100.0,
            self.p99_rel / n
        );
        for (kind, (k, e, p50, p99)) in &self.by_kind {
            let k = (*k).max(1) as f64;
            eprintln!(
                "  {kind}: {k} pairs, error-rate MAE {:.4}, p50 relative error {:.3}, p99 {:.3}",
                e / k,
                p50 / k,
                p99 / k
            );
        }
        let mut worst = self.worst.clone();
        worst.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (e, what) in worst.iter().take(5) {
            eprintln!("  worst: {what} (error-rate miss {e:.3})");
        }
        let mut worst = self.worst_p50.clone();
        worst.sort_by(|a, b| b.0.total_cmp(&a.0));
        for (e, what) in worst.iter().take(3) {
            eprintln!("  worst p50: {what} (relative error {e:.2})");
        }
        (mae, coverage)
    }
}

pub fn score_world(
    name: &str,
    world: &World,
    learn_traces: usize,
    fault_traces: usize,
    opts: &SimOptions,
) -> Accuracy {
    let (view, _) = learn(world, 1, learn_traces, None);
    let entry: BTreeSet<&str> = world
        .endpoints
        .iter()
        .filter_map(|e| world.operations.get(e.operation))
        .map(|o| o.service.as_str())
        .collect();
    let mut acc = Accuracy::default();
    for service in world
        .services
        .iter()
        .filter(|s| !entry.contains(s.as_str()))
    {
        for kind in ["down", "error=0.5", "latency=+500ms"] {
            let spec = format!("{service}:{kind}");
            let (observed, truth) = learn(world, 2, fault_traces, Some(&spec));
            let fault: FaultSpec = spec.parse().unwrap();
            // A service normal traffic never reached is not in the model: nothing to predict.
            if view.nodes.iter().all(|n| &n.service != service) {
                continue;
            }
            let (pred, _) = simulate(&view, &[fault], opts).unwrap();
            for p in &pred.endpoints {
                let Some(t) = truth.nodes.get(&p.endpoint) else {
                    continue;
                };
                let Some(o) = observed.node(&p.endpoint) else {
                    continue;
                };
                if t.invocations < 100 {
                    continue;
                }
                let obs_err = t.errors as f64 / t.invocations as f64;
                let e = &p.predicted.error_rate;
                acc.pairs += 1;
                let miss = (e.mean - obs_err).abs();
                acc.abs_err += miss;
                let rel = |pred: f64, obs: f64| (pred - obs).abs() / obs.max(1e-3);
                let k = acc.by_kind.entry(kind).or_default();
                k.0 += 1;
                k.1 += miss;
                k.2 += rel(p.predicted.p50_ms.mean, o.duration.p50_ms);
                k.3 += rel(p.predicted.p99_ms.mean, o.duration.p99_ms);
                acc.width += e.hi - e.lo;
                // The observation is itself a sample of `invocations` requests: allow its
                // binomial standard error on top of the predicted interval.
                let se = (obs_err * (1.0 - obs_err) / t.invocations as f64).sqrt();
                if e.lo - 2.0 * se <= obs_err && obs_err <= e.hi + 2.0 * se {
                    acc.covered += 1;
                } else {
                    acc.worst.push((
                        miss,
                        format!(
                            "{name} {spec}: {} observed {obs_err:.3}, predicted {:.3} [{:.3}, {:.3}]",
                            p.endpoint, e.mean, e.lo, e.hi
                        ),
                    ));
                }
                let p50_miss = rel(p.predicted.p50_ms.mean, o.duration.p50_ms);
                acc.worst_p50.push((
                    p50_miss,
                    format!(
                        "{name} {spec}: {} p50 observed {:.1} ms, predicted {:.1} [{:.1}, {:.1}] (baseline {:.1})",
                        p.endpoint,
                        o.duration.p50_ms,
                        p.predicted.p50_ms.mean,
                        p.predicted.p50_ms.lo,
                        p.predicted.p50_ms.hi,
                        p.baseline.p50_ms
                    ),
                ));
                acc.p50_rel += rel(p.predicted.p50_ms.mean, o.duration.p50_ms);
                acc.p99_rel += rel(p.predicted.p99_ms.mean, o.duration.p99_ms);
                let b = &p.predicted.p50_ms;
                if b.lo * 0.95 <= o.duration.p50_ms && o.duration.p50_ms <= b.hi * 1.05 {
                    acc.p50_covered += 1;
                }
            }
        }
    }
    acc
}

#[test]
fn single_faults_are_predicted_within_the_goals() {
    let opts = SimOptions {
        requests: 1_500,
        samples: 24,
        seed: 3,
    };
    let shop = score_world("shop", &World::shop(), 12_000, 1_500, &opts);
    let (mae, coverage) = shop.report("shop");
    let random = World::random(
        5,
        RandomWorldParams {
            services: 20,
            ..RandomWorldParams::default()
        },
    )
    .unwrap();
    let r = score_world("random-20", &random, 12_000, 1_500, &opts);
    let (rmae, rcoverage) = r.report("random-20");
    // Coverage: the goal, in both worlds.
    assert!(
        coverage >= 0.85 && rcoverage >= 0.85,
        "coverage {coverage:.3} / {rcoverage:.3} below 0.85"
    );
    // MAE <= 0.05 for faults whose effect normal traffic shows (down, errors) in both worlds,
    // and overall in the random world. The shop's latency faults meet timeouts its normal
    // traffic never reached: they get wide intervals (covered above), and miss the MAE goal.
    // Latency under `down` and `error`: calls run in the order learned (a failure that stops the
    // caller stops only what follows it; calls in flight run out), retries wait their learned
    // back-off. (Before that, the random world's p50 relative error under `down` was 1.1.)
    for (name, acc) in [("shop", &shop), ("random-20", &r)] {
        for kind in ["down", "error=0.5"] {
            let (n, e, p50, _) = acc.by_kind[kind];
            let (mae, rel) = (e / n as f64, p50 / n as f64);
            assert!(
                mae <= 0.05,
                "{name} {kind}: error-rate MAE {mae:.4} above 0.05"
            );
            assert!(
                rel <= 0.2,
                "{name} {kind}: p50 relative error {rel:.3} above 0.2"
            );
        }
    }
    assert!(
        rmae <= 0.05,
        "random-20: error-rate MAE {rmae:.4} above 0.05"
    );
    assert!(mae <= 0.1, "shop: error-rate MAE {mae:.4}");
}
