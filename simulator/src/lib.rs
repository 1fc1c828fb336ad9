//! # augur-simulator: how a fault would propagate, with credible intervals
//!
//! ```text
//!  Model ──view()──► Compiled ──┬─ baseline: requests × posterior draws ──┐
//!  "payment:down" ──parse──► FaultSpec ──resolve(view)──► Resolved ───────┴─ faulted ──► Prediction
//! ```
//!
//! A fault spec names a target (service, `service/operation`, virtual node, or one call site
//! `CALLER->CALLEE`) and a kind (`down`, `error=R`, `latency=+Nms`, `latency=xF`): see [`fault`].
//! [`simulate`] runs requests through the learned call graph in simulated time once per posterior
//! draw of the model's parameters (see [`sim`] for the semantics), with and without the faults,
//! and reports for every endpoint and operation the baseline and the predicted error rate, median
//! and 99th percentile latency, each with a 90% interval across draws. Deterministic for a seed.
#![warn(missing_docs)]

pub mod backtest;
pub mod fault;
pub mod sim;
#[cfg(test)]
mod tests;

use std::fmt::Write as _;

use augur_model::View;
use serde::{Deserialize, Serialize};

pub use fault::{FaultKind, FaultSpec, Resolved};
pub use sim::{band, Compiled};

/// Errors of fault specs and simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// A spec that does not parse; `part` is the wrong part.
    #[error("bad fault `{input}`: `{part}`: {reason}")]
    BadFault {
        /// The spec.
        input: String,
        /// The part that is wrong.
        part: String,
        /// Why.
        reason: String,
    },
    /// A target the model does not know.
    #[error("fault `{fault}`: the model has no service, operation or virtual node `{target}`{}", did_you_mean(.suggestions))]
    UnknownTarget {
        /// The spec.
        fault: String,
        /// The unknown name.
        target: String,
        /// The closest valid names.
        suggestions: Vec<String>,
    },
    /// A call site that was never seen.
    #[error("fault `{fault}`: the model has no call from `{from}` to `{to}`")]
    NoSuchCall {
        /// The spec.
        fault: String,
        /// Caller.
        from: String,
        /// Callee.
        to: String,
    },
    /// Nothing to simulate.
    #[error(
        "the model has no endpoint (no trace root was seen), so there is no traffic to simulate"
    )]
    NoTraffic,
}

fn did_you_mean(s: &[String]) -> String {
    if s.is_empty() {
        String::new()
    } else {
        format!("; did you mean {}?", s.join(", "))
    }
}

/// Simulation settings.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Requests per posterior draw.
    pub requests: usize,
    /// Posterior draws.
    pub samples: usize,
    /// Random seed.
    pub seed: u64,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            requests: 10_000,
            samples: 64,
            seed: 1,
        }
    }
}

/// A value without uncertainty (the baseline: the mean across draws).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Point {
    /// Share of invocations that failed.
    pub error_rate: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// A predicted quantity: mean and 90% interval across posterior draws.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Band {
    /// Mean.
    pub mean: f64,
    /// 5th percentile.
    pub lo: f64,
    /// 95th percentile.
    pub hi: f64,
}

/// The predicted quantities.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Predicted {
    /// Error rate.
    pub error_rate: Band,
    /// Median latency, milliseconds.
    pub p50_ms: Band,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: Band,
}

/// One endpoint's (or operation's) prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpPrediction {
    /// `"<service> <operation>"` (a virtual node's name for one).
    pub endpoint: String,
    /// Service.
    pub service: String,
    /// Operation.
    pub operation: String,
    /// Without the fault.
    pub baseline: Point,
    /// With it.
    pub predicted: Predicted,
    /// Posterior draws in which it ran at all under the faults (0: never called; its predicted
    /// figures are then zeros). Not part of the JSON contract.
    #[serde(skip)]
    pub draws_run: usize,
    /// Per posterior draw (the same draws for every fault of one run): (error rate, p50 ms,
    /// p99 ms) under the faults, `None` where it did not run. Not part of the JSON contract.
    #[serde(skip)]
    pub per_draw: Vec<Option<(f64, f64, f64)>>,
    /// The same, without the faults (the baseline's draws, paired with `per_draw`).
    #[serde(skip)]
    pub per_draw_baseline: Vec<Option<(f64, f64, f64)>>,
}

impl OpPrediction {
    /// How much the fault changes it: error-rate change plus relative p99 change.
    pub fn impact(&self) -> f64 {
        (self.predicted.error_rate.mean - self.baseline.error_rate).abs()
            + ((self.predicted.p99_ms.mean - self.baseline.p99_ms) / self.baseline.p99_ms.max(1e-3))
                .abs()
    }
}

/// The `augur simulate --json` contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prediction {
    /// The faults, as specs.
    pub faults: Vec<String>,
    /// User-facing endpoints.
    pub endpoints: Vec<OpPrediction>,
    /// Every operation and virtual node (endpoints included).
    pub operations: Vec<OpPrediction>,
}

impl Prediction {
    /// A table for people: the most affected endpoints first, then the most affected operations.
    pub fn to_table(&self, operations: usize) -> String {
        let mut out = format!(
            "fault: {}   (90% intervals across posterior draws)\n\n",
            self.faults.join(" + ")
        );
        let rows = |list: &[OpPrediction], take: usize| -> Vec<Vec<String>> {
            let mut v: Vec<&OpPrediction> = list.iter().collect();
            v.sort_by(|a, b| {
                b.impact()
                    .total_cmp(&a.impact())
                    .then(a.endpoint.cmp(&b.endpoint))
            });
            v.into_iter()
                .take(take)
                .map(|p| {
                    let pr = &p.predicted;
                    if p.draws_run == 0 {
                        return vec![
                            p.endpoint.clone(),
                            format!("{:.2}%", p.baseline.error_rate * 100.0),
                            "not called under the fault".to_string(),
                            format!("{:.1}", p.baseline.p50_ms),
                            String::new(),
                            format!("{:.1}", p.baseline.p99_ms),
                            String::new(),
                        ];
                    }
                    vec![
                        p.endpoint.clone(),
                        format!("{:.2}%", p.baseline.error_rate * 100.0),
                        format!(
                            "{:.2}% [{:.2}, {:.2}]",
                            pr.error_rate.mean * 100.0,
                            pr.error_rate.lo * 100.0,
                            pr.error_rate.hi * 100.0
                        ),
                        format!("{:.1}", p.baseline.p50_ms),
                        format!(
                            "{:.1} [{:.1}, {:.1}]",
                            pr.p50_ms.mean, pr.p50_ms.lo, pr.p50_ms.hi
                        ),
                        format!("{:.1}", p.baseline.p99_ms),
                        format!(
                            "{:.1} [{:.1}, {:.1}]",
                            pr.p99_ms.mean, pr.p99_ms.lo, pr.p99_ms.hi
                        ),
                    ]
                })
                .collect()
        };
        let header = [
            "",
            "ERRORS NOW",
            "ERRORS PREDICTED",
            "P50 NOW",
            "P50 PREDICTED",
            "P99 NOW",
            "P99 PREDICTED",
        ];
        let table = |out: &mut String, title: &str, rows: Vec<Vec<String>>| {
            let mut h: Vec<String> = header.iter().map(|s| s.to_string()).collect();
            h[0] = title.to_string();
            let mut w: Vec<usize> = h.iter().map(|s| s.chars().count()).collect();
            for r in &rows {
                for (i, c) in r.iter().enumerate() {
                    w[i] = w[i].max(c.chars().count());
                }
            }
            for r in std::iter::once(&h).chain(rows.iter()) {
                let mut line = String::new();
                for (i, c) in r.iter().enumerate() {
                    let _ = write!(line, "{c:<width$}  ", width = w[i]);
                }
                let _ = writeln!(out, "{}", line.trim_end());
            }
        };
        table(&mut out, "ENDPOINT (ms)", rows(&self.endpoints, usize::MAX));
        out.push('\n');
        table(
            &mut out,
            "MOST AFFECTED OPERATIONS (ms)",
            rows(&self.operations, operations),
        );
        out
    }
}

/// Parses, resolves and simulates fault specs against a model view. Returns the prediction and
/// the number of call attempts simulated.
pub fn simulate(
    view: &View,
    specs: &[FaultSpec],
    opts: &SimOptions,
) -> Result<(Prediction, u64), SimError> {
    let resolved = specs
        .iter()
        .map(|s| s.resolve(view))
        .collect::<Result<Vec<_>, _>>()?;
    let compiled = Compiled::new(view);
    if !view.nodes.iter().any(|n| n.traffic.is_some()) {
        return Err(SimError::NoTraffic);
    }
    Ok(sim::simulate(&compiled, &resolved, opts))
}

/// Simulates many fault sets (each a list of simultaneous faults) against one shared baseline,
/// in parallel (rayon) across fault sets. Each result equals [`simulate`]'s for that set.
pub fn simulate_many(
    view: &View,
    candidates: &[Vec<FaultSpec>],
    opts: &SimOptions,
) -> Result<Vec<(Prediction, u64)>, SimError> {
    let resolved = candidates
        .iter()
        .map(|set| {
            set.iter()
                .map(|s| s.resolve(view))
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    if !view.nodes.iter().any(|n| n.traffic.is_some()) {
        return Err(SimError::NoTraffic);
    }
    let compiled = Compiled::new(view);
    Ok(sim::simulate_many(&compiled, &resolved, opts))
}

/// Every single fault of the given kinds on every service and virtual node of the model, in a
/// stable order (services by name).
pub fn single_fault_candidates(view: &View, kinds: &[FaultKind]) -> Vec<FaultSpec> {
    let mut targets: Vec<&str> = view.nodes.iter().map(|n| n.service.as_str()).collect();
    targets.sort_unstable();
    targets.dedup();
    targets
        .into_iter()
        .flat_map(|t| {
            kinds.iter().map(move |&kind| FaultSpec {
                target: t.to_string(),
                kind,
            })
        })
        .collect()
}

/// HTML-escapes text. Control characters (a NUL in a span name), which HTML does not allow,
/// show as U+FFFD.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c.is_control() => out.push('\u{FFFD}'),
            _ => out.push(c),
        }
    }
    out
}
