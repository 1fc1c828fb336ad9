//! Drift between two models of the same system: what an old experiment tested that no longer
//! exists.
//!
//! - **Structure**: operations and call sites added or removed.
//! - **Behaviour**: a call site whose mode changed, whose timeout (seen in both) moved by more
//!   than [`TIMEOUT_SHIFT`], or that retried failures in one model and did not in the other
//!   (failures seen in both). A timeout or retry seen on one side only is not drift: it shows
//!   only when calls fail or are cut, so its absence is a lack of evidence, not a change.
//! - **Latency**: self time of every operation and duration of every call site present in both,
//!   compared with a two-sample Kolmogorov–Smirnov test on the sketches (their buckets share
//!   bounds, so the empirical distribution functions compare bucket by bucket; the test is
//!   conservative by at most the 2% bucket width). A shift is reported when the test rejects
//!   "same distribution" at [`LATENCY_ALPHA`] *and* the median moved by at least
//!   [`LATENCY_MIN_SHIFT`] (with millions of spans, a real but negligible difference is not drift).
//! - **Propagation**: a call site whose P(propagate) 90% intervals, both backed by evidence, do
//!   not overlap.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::sketch::LogSketch;
use crate::view::{Edge, Interval, Mode, View};

/// Significance level of the latency test.
pub const LATENCY_ALPHA: f64 = 0.001;
/// Smallest relative change of the median reported as a latency shift.
pub const LATENCY_MIN_SHIFT: f64 = 0.05;
/// Smallest relative change of a timeout's median reported.
pub const TIMEOUT_SHIFT: f64 = 0.1;
/// Fewest samples on each side for a latency comparison.
pub const LATENCY_MIN_SAMPLES: u64 = 20;

/// A call site.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeRef {
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
}

/// A behaviour that changed at a call site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BehaviourChange {
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// `mode`, `timeout_ms` or `retries`.
    pub what: String,
    /// The old value (`null`: not seen).
    pub old: Option<String>,
    /// The new value (`null`: not seen).
    pub new: Option<String>,
    /// `changed`.
    pub how: String,
}

/// A latency distribution that shifted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyShift {
    /// An operation id (self time) or `from -> to` (call duration).
    pub at: String,
    /// `self_time` or `call`.
    pub what: String,
    /// Old median, milliseconds.
    pub old_p50_ms: f64,
    /// New median, milliseconds.
    pub new_p50_ms: f64,
    /// Old 99th percentile, milliseconds.
    pub old_p99_ms: f64,
    /// New 99th percentile, milliseconds.
    pub new_p99_ms: f64,
    /// Kolmogorov–Smirnov statistic.
    pub ks: f64,
    /// Its p-value (asymptotic).
    pub p_value: f64,
}

/// A propagation posterior that moved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PropagationMove {
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// Old P(propagate).
    pub old: Interval,
    /// New P(propagate).
    pub new: Interval,
}

/// The drift report of `augur diff`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Drift {
    /// Operations only in the new model.
    pub operations_added: Vec<String>,
    /// Operations only in the old model.
    pub operations_removed: Vec<String>,
    /// Call sites only in the new model.
    pub edges_added: Vec<EdgeRef>,
    /// Call sites only in the old model.
    pub edges_removed: Vec<EdgeRef>,
    /// Changed modes, timeouts and retries.
    pub behaviour: Vec<BehaviourChange>,
    /// Latency shifts beyond noise.
    pub latency: Vec<LatencyShift>,
    /// Propagation posteriors that moved.
    pub propagation: Vec<PropagationMove>,
}

impl Drift {
    /// True when nothing drifted.
    pub fn is_empty(&self) -> bool {
        self.operations_added.is_empty()
            && self.operations_removed.is_empty()
            && self.edges_added.is_empty()
            && self.edges_removed.is_empty()
            && self.behaviour.is_empty()
            && self.latency.is_empty()
            && self.propagation.is_empty()
    }

    /// The report for people.
    pub fn to_text(&self) -> String {
        if self.is_empty() {
            return "no drift: same operations and call sites, no behaviour change, no latency shift beyond noise\n".into();
        }
        let mut out = String::new();
        for id in &self.operations_added {
            let _ = writeln!(out, "+ operation {id}");
        }
        for id in &self.operations_removed {
            let _ = writeln!(out, "- operation {id}");
        }
        for e in &self.edges_added {
            let _ = writeln!(out, "+ call {} -> {}", e.from, e.to);
        }
        for e in &self.edges_removed {
            let _ = writeln!(out, "- call {} -> {}", e.from, e.to);
        }
        let show = |v: &Option<String>| v.clone().unwrap_or_else(|| "unseen".into());
        for b in &self.behaviour {
            let _ = writeln!(
                out,
                "~ {} -> {}: {} {} ({} -> {})",
                b.from,
                b.to,
                b.what,
                b.how,
                show(&b.old),
                show(&b.new)
            );
        }
        for l in &self.latency {
            let _ = writeln!(
                out,
                "~ {} {}: p50 {:.3} -> {:.3} ms, p99 {:.3} -> {:.3} ms (KS {:.3}, p = {:.1e})",
                l.what,
                l.at,
                l.old_p50_ms,
                l.new_p50_ms,
                l.old_p99_ms,
                l.new_p99_ms,
                l.ks,
                l.p_value
            );
        }
        for p in &self.propagation {
            let _ = writeln!(
                out,
                "~ {} -> {}: P(propagate) {:.2} [{:.2}, {:.2}] -> {:.2} [{:.2}, {:.2}]",
                p.from, p.to, p.old.mean, p.old.lo, p.old.hi, p.new.mean, p.new.lo, p.new.hi
            );
        }
        out
    }
}

/// The Kolmogorov–Smirnov statistic of two sketches and its asymptotic p-value.
pub fn ks_test(a: &LogSketch, b: &LogSketch) -> Option<(f64, f64)> {
    let (n, m) = (a.count(), b.count());
    if n == 0 || m == 0 {
        return None;
    }
    let mut bins: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    // Bucket bounds are the same powers for both sketches; key them by their bits.
    for (bound, c) in a.buckets() {
        bins.entry(bound.to_bits()).or_default().0 += c;
    }
    for (bound, c) in b.buckets() {
        bins.entry(bound.to_bits()).or_default().1 += c;
    }
    let (mut ca, mut cb, mut d) = (0u64, 0u64, 0f64);
    for (x, y) in bins.values() {
        ca += x;
        cb += y;
        d = d.max((ca as f64 / n as f64 - cb as f64 / m as f64).abs());
    }
    let ne = (n as f64 * m as f64) / (n + m) as f64;
    let lambda = (ne.sqrt() + 0.12 + 0.11 / ne.sqrt()) * d;
    Some((d, kolmogorov_q(lambda)))
}

/// P(K > lambda) for the Kolmogorov distribution.
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let mut sum = 0.0;
    for k in 1..=100 {
        let k = k as f64;
        let term = (-2.0 * k * k * lambda * lambda).exp();
        sum += if k as u64 % 2 == 1 { term } else { -term };
        if term < 1e-16 {
            break;
        }
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

fn shift(at: String, what: &str, old: &LogSketch, new: &LogSketch) -> Option<LatencyShift> {
    if old.count() < LATENCY_MIN_SAMPLES || new.count() < LATENCY_MIN_SAMPLES {
        return None;
    }
    let (d, p) = ks_test(old, new)?;
    let (o50, n50) = (old.quantile(0.5)?, new.quantile(0.5)?);
    let rel = (n50 - o50).abs() / o50.max(1.0);
    if p >= LATENCY_ALPHA || rel < LATENCY_MIN_SHIFT {
        return None;
    }
    let ms = |s: &LogSketch, q: f64| (s.quantile(q).unwrap_or(0.0) / 1e3).round() / 1e3;
    Some(LatencyShift {
        at,
        what: what.into(),
        old_p50_ms: ms(old, 0.5),
        new_p50_ms: ms(new, 0.5),
        old_p99_ms: ms(old, 0.99),
        new_p99_ms: ms(new, 0.99),
        ks: d,
        p_value: p,
    })
}

fn behaviour(old: &Edge, new: &Edge, out: &mut Vec<BehaviourChange>) {
    let mut push = |what: &str, o: Option<String>, n: Option<String>| {
        let how = "changed";
        out.push(BehaviourChange {
            from: new.from.clone(),
            to: new.to.clone(),
            what: what.into(),
            old: o,
            new: n,
            how: how.into(),
        });
    };
    if old.mode != new.mode {
        let name = |m: Mode| Some(m.as_str().to_string());
        push("mode", name(old.mode), name(new.mode));
    }
    let (ot, nt) = (
        old.timeout.as_ref().map(|t| t.median_ms),
        new.timeout.as_ref().map(|t| t.median_ms),
    );
    if let (Some(a), Some(b)) = (ot, nt) {
        if (b - a).abs() > TIMEOUT_SHIFT * a.max(1e-3) {
            push("timeout_ms", Some(a.to_string()), Some(b.to_string()));
        }
    }
    if let (Some(a), Some(b)) = (old.retries, new.retries) {
        if (a == 0) != (b == 0) {
            push("retries", Some(a.to_string()), Some(b.to_string()));
        }
    }
}

/// What changed from `old` to `new`.
pub fn diff(old: &View, new: &View) -> Drift {
    let mut d = Drift::default();
    let old_nodes: BTreeMap<&str, _> = old.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    let new_nodes: BTreeMap<&str, _> = new.nodes.iter().map(|n| (n.id.as_str(), n)).collect();
    for (id, n) in &new_nodes {
        match old_nodes.get(id) {
            None => d.operations_added.push(id.to_string()),
            Some(o) => d
                .latency
                .extend(shift(id.to_string(), "self_time", &o.self_ns, &n.self_ns)),
        }
    }
    for id in old_nodes.keys() {
        if !new_nodes.contains_key(id) {
            d.operations_removed.push(id.to_string());
        }
    }
    let key = |e: &Edge| (e.from.clone(), e.to.clone());
    let old_edges: BTreeMap<_, _> = old.edges.iter().map(|e| (key(e), e)).collect();
    let new_edges: BTreeMap<_, _> = new.edges.iter().map(|e| (key(e), e)).collect();
    for ((from, to), n) in &new_edges {
        let Some(o) = old_edges.get(&(from.clone(), to.clone())) else {
            d.edges_added.push(EdgeRef {
                from: from.clone(),
                to: to.clone(),
            });
            continue;
        };
        behaviour(o, n, &mut d.behaviour);
        d.latency.extend(shift(
            format!("{from} -> {to}"),
            "call",
            &o.stats.duration_ns(),
            &n.stats.duration_ns(),
        ));
        let (op, np) = (&o.p_propagate, &n.p_propagate);
        let disjoint = op.interval.hi < np.interval.lo || np.interval.hi < op.interval.lo;
        if op.evidence > 0 && np.evidence > 0 && disjoint {
            d.propagation.push(PropagationMove {
                from: from.clone(),
                to: to.clone(),
                old: op.interval,
                new: np.interval,
            });
        }
    }
    for (from, to) in old_edges.keys() {
        if !new_edges.contains_key(&(from.clone(), to.clone())) {
            d.edges_removed.push(EdgeRef {
                from: from.clone(),
                to: to.clone(),
            });
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sketch(values: impl Iterator<Item = f64>) -> LogSketch {
        let mut s = LogSketch::new();
        values.for_each(|v| s.add(v));
        s
    }

    #[test]
    fn ks_same_distribution_is_not_a_shift() {
        // Two halves of one deterministic spread of values.
        let a = sketch(
            (0..2000)
                .filter(|i| i % 2 == 0)
                .map(|i| 1e6 + 1e3 * i as f64),
        );
        let b = sketch(
            (0..2000)
                .filter(|i| i % 2 == 1)
                .map(|i| 1e6 + 1e3 * i as f64),
        );
        let (d, p) = ks_test(&a, &b).unwrap();
        assert!(d < 0.05 && p > 0.5, "{d} {p}");
        assert!(shift("x".into(), "call", &a, &b).is_none());
    }

    #[test]
    fn ks_finds_a_real_shift_and_ignores_a_negligible_one() {
        let a = sketch((0..1000).map(|i| 1e6 + 1e3 * i as f64));
        let b = sketch((0..1000).map(|i| 1.5e6 + 1e3 * i as f64));
        let s = shift("x".into(), "call", &a, &b).unwrap();
        assert!(s.p_value < 1e-6 && s.new_p50_ms > s.old_p50_ms);
        // 2% slower with many samples: significant, but below the reported effect size.
        let c = sketch((0..100_000).map(|i| 1e6 + 10.0 * i as f64));
        let e = sketch((0..100_000).map(|i| 1.02 * (1e6 + 10.0 * i as f64)));
        assert!(shift("x".into(), "call", &c, &e).is_none());
        // Too few samples: no verdict.
        let few = sketch((0..5).map(|i| 9e6 + i as f64));
        assert!(shift("x".into(), "call", &a, &few).is_none());
    }

    #[test]
    fn kolmogorov_tail() {
        assert!((kolmogorov_q(1.36) - 0.049).abs() < 0.002);
        assert!((kolmogorov_q(1.95) - 0.001).abs() < 0.0003);
        assert_eq!(kolmogorov_q(0.0), 1.0);
    }
}
