//! A plan: the set of experiments for a night or a week that teaches the most within a total
//! error budget, accounting for overlap.
//!
//! ## Overlap
//! Two experiments overlap when their outcomes vary together across the posterior draws (they
//! inform the same parameters): once one is run, the other's outcome is largely predictable. The
//! overlap of B with a chosen A is the largest squared correlation, across draws, between any
//! endpoint outcome of A and any of B (denoised error rates, and log median latencies where they
//! vary by more than a percent). Greedy selection (the classic near-optimal rule for
//! diminishing returns) adds, at each step, the experiment with the largest
//! **marginal value**: its model bits × (1 − its largest overlap with the experiments chosen),
//! plus its intents' part of its value (priority and staleness weighted) less the part for
//! intents an earlier pick settles, among experiments whose harm fits the budget left. Each
//! experiment may run at any rung that fits ([`Experiment::fits`]: a traffic share of
//! [`crate::recommend::SHARES`], or 1% for a part of the duration), and takes the one with the
//! most marginal value (the least harm on a tie), so budget an early pick does not need stays
//! for later ones. It stops when nothing fits or adds value.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::recommend::{Experiment, Fit, Recommendation};

/// One experiment of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Planned {
    /// The fault spec.
    pub fault: String,
    /// Share of traffic.
    pub traffic_share: f64,
    /// How long it runs, seconds (`--duration`, or a part of it when not even 1% of the
    /// traffic for all of it fits).
    pub duration_s: f64,
    /// Its value alone, bits.
    pub value_bits: f64,
    /// What it adds given the experiments before it, bits.
    pub marginal_bits: f64,
    /// Upper bound of extra failed requests.
    pub failed_requests_hi: f64,
    /// Why it is worth running.
    pub why: String,
}

/// The `augur plan --json` form.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// The budget, failed requests.
    pub budget: f64,
    /// Experiments in the order chosen.
    pub experiments: Vec<Planned>,
    /// Sum of marginal values, bits.
    pub total_bits: f64,
    /// Sum of harms, failed requests.
    pub total_failed_requests_hi: f64,
}

/// An experiment's outcome across draws: per endpoint with any spread, the denoised error rate
/// of each draw and its log median latency, standardised (mean 0, variance 1).
fn signature(
    e: &Experiment,
    endpoints: &[(String, f64, f64)],
    sim_requests: usize,
) -> Vec<Vec<f64>> {
    let mut out = Vec::new();
    for p in &e.predicted.endpoints {
        let Some(&(_, weight, _)) = endpoints.iter().find(|(id, _, _)| *id == p.endpoint) else {
            continue;
        };
        let simulated = (sim_requests as f64 * weight).max(1.0);
        let rates = crate::recommend::denoise(
            p.per_draw.iter().map(|d| d.map_or(0.0, |d| d.0)).collect(),
            simulated,
        );
        // The log median latency too, where it moves by more than a percent across draws.
        let medians: Vec<f64> = crate::recommend::log_latency(&p.per_draw, simulated)
            .map(|(_, [p50, _])| {
                let m = p50.iter().flatten().sum::<f64>() / p50.len().max(1) as f64;
                p50.iter().map(|x| x.unwrap_or(m)).collect()
            })
            .unwrap_or_default();
        for (values, floor) in [(rates, 1e-9), (medians, 0.01)] {
            let n = values.len().max(1) as f64;
            let m = values.iter().sum::<f64>() / n;
            let sd = (values.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt();
            if sd > floor {
                out.push(values.iter().map(|x| (x - m) / sd).collect());
            }
        }
    }
    out
}

/// How much of `b` a chosen experiment `a` already tells: the largest squared correlation
/// between any of their endpoint outcomes across draws.
fn overlap(a: &[Vec<f64>], b: &[Vec<f64>]) -> f64 {
    let mut best = 0.0f64;
    for x in a {
        for y in b {
            let n = x.len().min(y.len()).max(1) as f64;
            let r = x.iter().zip(y).map(|(p, q)| p * q).sum::<f64>() / n;
            best = best.max(r * r);
        }
    }
    best.min(1.0)
}

/// How much of the budget left one greedy step may spend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowance {
    /// All of it: the most valuable step first.
    All,
    /// An equal part of it per step still open: room for the experiments after it.
    Share,
    /// All of it, choosing by value per failed request.
    PerHarm,
    /// Each experiment at the largest share that fits an equal part of the whole budget
    /// (budget / max), as a recommendation under that error budget would run it: a plan is
    /// never worse than spending the budget in equal parts.
    Equal,
}

/// Greedy plan over a recommendation's experiments within `budget` failed requests, at most
/// `max` experiments; `sim_requests` is the simulated requests per draw behind the predictions.
///
/// Each experiment is run at the rung among its [`Experiment::fits`] (itself when it has none)
/// with the most marginal value (the least harm on a tie) that fits the step's allowance of
/// the budget left. When the greedy plan
/// by marginal value fits the budget without minding it, that is the plan. Otherwise three
/// greedy rules are run (the whole budget left per step; an equal part of it per step still
/// open; value per failed request) and the plan with the most bits is kept: the first can spend
/// the budget on one experiment when several would teach more, the others guard against that.
/// In both cases the plan is compared with the one that runs every experiment at the largest
/// rung fitting budget / max (greedy does not promise that more room per step means more bits
/// in all), and the better kept.
pub fn plan(
    rec: &Recommendation,
    endpoints: &[(String, f64, f64)],
    budget: f64,
    max: usize,
    sim_requests: usize,
) -> Plan {
    let candidates: Vec<(&Experiment, Vec<Vec<f64>>)> = rec
        .experiments
        .iter()
        .filter(|e| e.safe)
        .map(|e| (e, signature(e, endpoints, sim_requests)))
        .collect();
    // When the budget does not bind (the greedy plan that ignores it fits it anyway), the
    // classic greedy by marginal value is the plan; the other rules are only there for a budget
    // that does bind (on the shop with no budget to speak of, value per failed request found a
    // set with more bits in all that taught less: 0.0273 against 0.0161 after five, the
    // learning loop in docs/ACCURACY.md).
    let free = greedy(&candidates, f64::INFINITY, max, Allowance::All);
    let binds = free.total_failed_requests_hi > budget;
    let rules: &[Allowance] = if binds {
        &[
            Allowance::All,
            Allowance::Share,
            Allowance::PerHarm,
            Allowance::Equal,
        ]
    } else {
        &[Allowance::Equal]
    };
    let mut best: Option<Plan> = (!binds).then_some(Plan { budget, ..free });
    for &rule in rules {
        let p = greedy(&candidates, budget, max, rule);
        if best
            .as_ref()
            .is_none_or(|b| p.total_bits > b.total_bits + 1e-9)
        {
            best = Some(p);
        }
    }
    best.unwrap_or(Plan {
        budget,
        experiments: Vec::new(),
        total_bits: 0.0,
        total_failed_requests_hi: 0.0,
    })
}

/// The traffic shares an experiment may run at: its fits, else itself.
fn fits_of(e: &Experiment) -> Vec<Fit> {
    if e.fits.is_empty() {
        vec![Fit {
            traffic_share: e.traffic_share,
            value_bits: e.value_bits,
            model_bits: e.model_bits,
            harm: e.harm.clone(),
            why: e.why.clone(),
        }]
    } else {
        e.fits.clone()
    }
}

fn greedy(
    candidates: &[(&Experiment, Vec<Vec<f64>>)],
    budget: f64,
    max: usize,
    rule: Allowance,
) -> Plan {
    let part = budget / max.max(1) as f64;
    let fits: Vec<Vec<Fit>> = candidates
        .iter()
        .map(|(e, _)| {
            let all = fits_of(e);
            if rule == Allowance::Equal {
                // Fits are largest share first.
                all.into_iter()
                    .find(|f| f.harm.failed_requests_hi <= part)
                    .into_iter()
                    .collect()
            } else {
                all
            }
        })
        .collect();
    let mut chosen: Vec<usize> = Vec::new();
    let mut settled: BTreeSet<String> = BTreeSet::new();
    let mut used = vec![false; candidates.len()];
    let mut left = budget;
    let mut out = Plan {
        budget,
        experiments: Vec::new(),
        total_bits: 0.0,
        total_failed_requests_hi: 0.0,
    };
    while out.experiments.len() < max {
        let allowance = match rule {
            Allowance::Share => left / (max - out.experiments.len()) as f64,
            Allowance::All | Allowance::PerHarm | Allowance::Equal => left,
        };
        // (candidate, fit, marginal bits, score, harm): the best score, the least harm on a tie.
        let mut best: Option<(usize, usize, f64, f64, f64)> = None;
        for (k, (e, sig)) in candidates.iter().enumerate() {
            if used[k] {
                continue;
            }
            let new_share = chosen
                .iter()
                .map(|&c| 1.0 - overlap(&candidates[c].1, sig))
                .fold(1.0f64, f64::min);
            // Its intents' part of the value (priority and staleness weighted, in each fit's
            // value), less the intents an experiment before it settles (by their entropy).
            let entropy = |open: bool| -> f64 {
                e.intents
                    .iter()
                    .filter(|i| !open || !settled.contains(&i.id))
                    .map(|i| crate::value::binary_entropy(i.p_holds))
                    .sum()
            };
            let all = entropy(false);
            let open = if all > 0.0 { entropy(true) / all } else { 0.0 };
            for (f, fit) in fits[k].iter().enumerate() {
                if fit.harm.failed_requests_hi > allowance {
                    continue;
                }
                let marginal =
                    fit.model_bits * new_share + (fit.value_bits - fit.model_bits).max(0.0) * open;
                let score = match rule {
                    Allowance::PerHarm => marginal / (fit.harm.failed_requests_hi + 1.0),
                    Allowance::All | Allowance::Share | Allowance::Equal => marginal,
                };
                let harm = fit.harm.failed_requests_hi;
                let better = best.is_none_or(|(_, _, _, s, h)| {
                    score > s + 1e-9 || (score >= s - 1e-9 && harm < h)
                });
                if marginal > 1e-6 && better {
                    best = Some((k, f, marginal, score, harm));
                }
            }
        }
        let Some((k, f, marginal, _, _)) = best else {
            break;
        };
        let e = candidates[k].0;
        let fit = &fits[k][f];
        used[k] = true;
        chosen.push(k);
        settled.extend(e.intents.iter().map(|i| i.id.clone()));
        left -= fit.harm.failed_requests_hi;
        let marginal = (marginal * 1000.0).round() / 1000.0;
        out.total_bits += marginal;
        out.total_failed_requests_hi += fit.harm.failed_requests_hi;
        out.experiments.push(Planned {
            fault: e.fault.clone(),
            traffic_share: fit.traffic_share,
            duration_s: fit.harm.duration_s,
            value_bits: fit.value_bits,
            marginal_bits: marginal,
            failed_requests_hi: fit.harm.failed_requests_hi,
            why: fit.why.clone(),
        });
    }
    out.total_bits = (out.total_bits * 1000.0).round() / 1000.0;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlap_is_squared_correlation() {
        let x = vec![vec![1.0, -1.0, 1.0, -1.0]];
        assert!((overlap(&x, &x) - 1.0).abs() < 1e-12);
        let neg = vec![vec![-1.0, 1.0, -1.0, 1.0]];
        assert!((overlap(&x, &neg) - 1.0).abs() < 1e-12);
        let orth = vec![vec![1.0, 1.0, -1.0, -1.0]];
        assert!(overlap(&x, &orth).abs() < 1e-12);
        assert_eq!(overlap(&x, &[]), 0.0);
    }

    fn experiment(fault: &str, fits: &[(f64, f64, f64)]) -> Experiment {
        let fit = |&(share, bits, harm): &(f64, f64, f64)| Fit {
            traffic_share: share,
            value_bits: bits,
            model_bits: bits,
            harm: crate::recommend::Harm {
                requests: 1000.0 * share,
                failed_requests_hi: harm,
                p99_increase_ms_hi: 0.0,
                duration_s: 600.0,
            },
            why: format!("{fault} at {share}"),
        };
        let fits: Vec<Fit> = fits.iter().map(fit).collect();
        Experiment {
            fault: fault.into(),
            value_bits: fits[0].value_bits,
            intents: Vec::new(),
            predicted: crate::recommend::PredictedEndpoints {
                endpoints: Vec::new(),
            },
            harm: fits[0].harm.clone(),
            safe: true,
            traffic_share: fits[0].traffic_share,
            why: fits[0].why.clone(),
            model_bits: fits[0].model_bits,
            fits,
        }
    }

    /// The plan's (fault, traffic share) in order.
    fn picked(p: &Plan) -> Vec<(&str, f64)> {
        p.experiments
            .iter()
            .map(|e| (e.fault.as_str(), e.traffic_share))
            .collect()
    }

    #[test]
    fn each_pick_is_fitted_to_the_budget_left() {
        // Budget 100, two experiments: `a` teaches 10 bits at full traffic for 90 failed
        // requests, 6 at half for 45; `b` teaches 3 for 10 at any share. Fitting each to
        // budget / max (50) would give a at half + b = 9 bits; a at full + b = 13 fits.
        let rec = Recommendation {
            experiments: vec![
                experiment("a:down", &[(1.0, 10.0, 90.0), (0.5, 6.0, 45.0)]),
                experiment("b:down", &[(1.0, 3.0, 10.0), (0.5, 3.0, 5.0)]),
            ],
        };
        let p = plan(&rec, &[], 100.0, 2, 1000);
        // b's half share teaches as much for less harm.
        assert_eq!(picked(&p), [("a:down", 1.0), ("b:down", 0.5)], "{p:?}");
        assert!((p.total_bits - 13.0).abs() < 1e-9, "{p:?}");
        assert!((p.total_failed_requests_hi - 95.0).abs() < 1e-9, "{p:?}");
        assert_eq!(p.experiments[0].why, "a:down at 1");

        // When the greedy's first, largest pick would crowd out two others worth more, the
        // plan spreads the budget instead.
        let rec = Recommendation {
            experiments: vec![
                experiment("a:down", &[(1.0, 10.0, 100.0), (0.5, 5.0, 50.0)]),
                experiment("b:down", &[(1.0, 8.0, 50.0)]),
                experiment("c:down", &[(1.0, 8.0, 50.0)]),
            ],
        };
        let p = plan(&rec, &[], 100.0, 3, 1000);
        assert!((p.total_bits - 16.0).abs() < 1e-9, "{p:?}");
        // (Value per failed request finds it: b and c, not a at either share.)
        let mut faults: Vec<&str> = picked(&p).iter().map(|(f, _)| *f).collect();
        faults.sort_unstable();
        assert_eq!(faults, ["b:down", "c:down"], "{p:?}");
        assert!(p.total_failed_requests_hi <= 100.0, "{p:?}");
        // With the budget out of the way, the most valuable first, each at full traffic.
        let p = plan(&rec, &[], 1e9, 2, 1000);
        assert_eq!(picked(&p), [("a:down", 1.0), ("b:down", 1.0)], "{p:?}");
        assert_eq!(p.budget, 1e9);
    }
}
