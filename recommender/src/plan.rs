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
//! plus its intents' bits for intents not yet settled, among experiments whose harm fits the
//! budget left. It stops when nothing fits or adds value.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::recommend::{Experiment, Recommendation};

/// One experiment of a plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Planned {
    /// The fault spec.
    pub fault: String,
    /// Share of traffic.
    pub traffic_share: f64,
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

/// Greedy plan over a recommendation's experiments within `budget` failed requests, at most
/// `max` experiments; `sim_requests` is the simulated requests per draw behind the predictions.
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
        let mut best: Option<(usize, f64)> = None;
        for (k, (e, sig)) in candidates.iter().enumerate() {
            if used[k] || e.harm.failed_requests_hi > left {
                continue;
            }
            let new_share = chosen
                .iter()
                .map(|&c| 1.0 - overlap(&candidates[c].1, sig))
                .fold(1.0f64, f64::min);
            let intent_bits: f64 = e
                .intents
                .iter()
                .filter(|i| !settled.contains(&i.id))
                .map(|i| crate::value::binary_entropy(i.p_holds))
                .sum();
            let marginal = e.model_bits * new_share + intent_bits;
            if marginal > 1e-6 && best.is_none_or(|(_, m)| marginal > m) {
                best = Some((k, marginal));
            }
        }
        let Some((k, marginal)) = best else {
            break;
        };
        let e = candidates[k].0;
        used[k] = true;
        chosen.push(k);
        settled.extend(e.intents.iter().map(|i| i.id.clone()));
        left -= e.harm.failed_requests_hi;
        let marginal = (marginal * 1000.0).round() / 1000.0;
        out.total_bits += marginal;
        out.total_failed_requests_hi += e.harm.failed_requests_hi;
        out.experiments.push(Planned {
            fault: e.fault.clone(),
            traffic_share: e.traffic_share,
            value_bits: e.value_bits,
            marginal_bits: marginal,
            failed_requests_hi: e.harm.failed_requests_hi,
            why: e.why.clone(),
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
}
