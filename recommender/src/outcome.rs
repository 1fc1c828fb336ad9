//! An experiment's outcome: what its traces show, against what the model predicted, and what
//! the model learns from them.
//!
//! ```text
//!  base model ──simulate(fault)──► predicted endpoints ─┐
//!  experiment traces ──► outcome model ─┬─ observed ────┴─► prediction vs observation
//!                                       ├─ evidence_under_fault ──► refined = base ⊕ evidence
//!                                       │                              └─► surprise per parameter
//!                                       └─ intents' endpoints ──► verdicts with their evidence
//! ```
//!
//! - **Refining** keeps only callers' reactions to failure (see
//!   [`augur_model::Model::evidence_under_fault`]): the injected fault is not mistaken for the
//!   target's normal behaviour.
//! - **Surprise** per parameter is the information the update carries, in bits:
//!   - P(propagate): `KL(after ‖ before)` of the Beta posteriors. Sites with no new evidence of
//!     their own can move too, because the prior learned across call sites was refitted; they
//!     are marked `prior`.
//!   - retries, where they were unknown: `−log2 P(value)` under the prior the simulator used (the
//!     retries known at other call sites, smoothed by half a count each, plus half a count for
//!     any other value): the divergence of a point mass from that prior.
//!   - a timeout seen where none was: 1 bit (the simulator gave an unseen timeout P = 0.5; the
//!     threshold's location is not counted).
//! - **Observed vs predicted** per endpoint: the observed error rate (errors among the
//!   experiment's requests) is *within* the prediction when its 95% Jeffreys interval (the
//!   observation is itself a sample; at 0 or all failures the interval reaches 0 or 1) overlaps
//!   the predicted 90% interval. With a traffic
//!   share below 1, the prediction is the mixture `share × faulted + (1 − share) × baseline`,
//!   draw by draw (its 90% interval across draws keeps the baseline's uncertainty), and latency
//!   is not compared (a mixture's quantiles do not follow from the bands).
//! - **Intents**: the verdict from the observed endpoint. The error-rate part holds when the
//!   Jeffreys posterior of the observed rate puts ≥ 95% below the threshold, is falsified at
//!   ≤ 5%, and is inconclusive between; the p99 part needs at least [`MIN_P99_REQUESTS`]
//!   requests. An intent holds when every part it states holds, and is falsified when one is.
//!   A family intent (`*:KIND`) holds only when it holds for all its faults, so one experiment
//!   can falsify it but not make it hold: a member that held is `inconclusive`, and says so.

use std::collections::BTreeMap;

use augur_model::beta::Beta;
use augur_model::{FaultScope, Interval, Model, View};
use augur_simulator::{simulate, Band, FaultKind, FaultSpec, SimOptions};
use serde::{Deserialize, Serialize};

use crate::intents::Intent;
use crate::RecError;

/// Fewest requests at an endpoint for its observed p99 to decide an intent.
pub const MIN_P99_REQUESTS: u64 = 100;

/// Surprises smaller than this (bits) are not listed.
pub const MIN_SURPRISE_BITS: f64 = 0.01;

/// Settings of an outcome.
#[derive(Debug, Clone)]
pub struct OutcomeOptions {
    /// The prediction's simulation settings.
    pub sim: SimOptions,
    /// Share of traffic the fault was applied to while the traces were recorded.
    pub traffic_share: f64,
}

/// What the experiment's traces held.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TracesSeen {
    /// Spans.
    pub spans: u64,
    /// Traces.
    pub traces: u64,
    /// First span start, nanoseconds since the epoch (none when empty).
    pub first_ns: Option<i64>,
    /// Last span end.
    pub last_ns: Option<i64>,
}

/// A call site.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    /// Caller node id.
    pub from: String,
    /// Callee node id.
    pub to: String,
}

/// How much evidence the traces held, and what was set aside.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceSummary {
    /// Calls into the fault's target.
    pub calls_into_target: u64,
    /// Of those, failed after their retries.
    pub failed_into_target: u64,
    /// Failed calls (anywhere) whose caller's reaction was seen: the evidence on P(propagate).
    pub reactions: u64,
    /// Operations seen only under the fault (a fallback path?): reported, not learned.
    pub new_operations: Vec<String>,
    /// Call sites seen only under the fault: reported, not learned.
    pub new_calls: Vec<Site>,
}

/// What was observed at an endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observed {
    /// Requests seen.
    pub requests: u64,
    /// Share of them that failed.
    pub error_rate: f64,
    /// Median latency, milliseconds.
    pub p50_ms: f64,
    /// 99th percentile latency, milliseconds.
    pub p99_ms: f64,
}

/// The prediction at an endpoint (as in `augur simulate`, at the experiment's traffic share).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictedAt {
    /// Error rate: mean and 90% interval.
    pub error_rate: Band,
    /// Median latency, milliseconds (none below a traffic share of 1).
    pub p50_ms: Option<Band>,
    /// 99th percentile, milliseconds (none below a traffic share of 1).
    pub p99_ms: Option<Band>,
    /// The error rate without the fault.
    pub baseline_error_rate: f64,
}

/// Prediction against observation at one endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointOutcome {
    /// Endpoint id.
    pub endpoint: String,
    /// What the model predicted before the experiment.
    pub predicted: PredictedAt,
    /// What the traces show (none: the endpoint got no requests during the experiment).
    pub observed: Option<Observed>,
    /// The observed error rate fell within the prediction (see the module documentation).
    pub within: Option<bool>,
}

/// One parameter's update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Surprise {
    /// `p_propagate`, `retries` or `timeout`.
    pub parameter: String,
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// Before, in words (`0.50 [0.05, 0.95]`, `unknown`).
    pub before: String,
    /// After.
    pub after: String,
    /// Information in the update, bits (see the module documentation).
    pub bits: f64,
    /// `evidence`: this site's own new observations; `prior`: moved with the prior learned
    /// across call sites.
    pub source: String,
    /// New observations at this site.
    pub observations: u64,
    /// For P(propagate): the interval before.
    pub interval_before: Option<Interval>,
    /// For P(propagate): the interval after.
    pub interval_after: Option<Interval>,
}

/// An intent's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// The intent's id.
    pub id: String,
    /// What the team believed.
    pub belief: String,
    /// `holds`, `falsified` or `inconclusive`.
    pub verdict: String,
    /// The model's P(holds) before the experiment.
    pub p_holds_before: f64,
    /// The evidence, in words.
    pub evidence: String,
}

/// The `augur outcome --json` report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeReport {
    /// The fault that was active.
    pub fault: String,
    /// Share of traffic it was applied to.
    pub traffic_share: f64,
    /// What the traces held.
    pub traces: TracesSeen,
    /// How much of it was evidence.
    pub evidence: EvidenceSummary,
    /// Prediction vs observation, per endpoint.
    pub endpoints: Vec<EndpointOutcome>,
    /// Parameters that moved, most informative first.
    pub surprises: Vec<Surprise>,
    /// The sum of the surprises, bits.
    pub learned_bits: f64,
    /// Intents the fault bears on, with their verdicts.
    pub intents: Vec<Verdict>,
    /// What was learned, in sentences a person can check.
    pub summary: Vec<String>,
}

/// The report and the refined model.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The report.
    pub report: OutcomeReport,
    /// The base model with the experiment's evidence added.
    pub refined: Model,
    /// The experiment's evidence alone (what was added): kept in the ledger, so that a model
    /// rebuilt from normal traffic can take every recorded experiment in again (`augur serve`).
    pub evidence: Model,
}

/// The fault's scope in the base model's node ids.
pub fn fault_scope(view: &View, spec: &FaultSpec) -> Result<FaultScope, RecError> {
    let r = spec.resolve(view)?;
    let ids = |v: &[usize]| {
        v.iter()
            .filter_map(|&i| view.nodes.get(i))
            .map(|n| n.id.clone())
            .collect()
    };
    Ok(FaultScope {
        callees: ids(&r.callees),
        callers: r.callers.as_deref().map(ids),
    })
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

fn interval_text(i: &Interval) -> String {
    format!("{:.2} [{:.2}, {:.2}]", i.mean, i.lo, i.hi)
}

/// The prior the simulator draws an unknown retry count from, as probabilities of values.
fn retry_prior(view: &View) -> (BTreeMap<u32, f64>, f64) {
    let mut counts: BTreeMap<u32, f64> = BTreeMap::new();
    for r in view.edges.iter().filter_map(|e| e.retries) {
        *counts.entry(r).or_default() += 1.0;
    }
    let total: f64 = counts.values().sum::<f64>() + 0.5 * (counts.len() as f64 + 1.0);
    (
        counts
            .into_iter()
            .map(|(k, n)| (k, (n + 0.5) / total))
            .collect(),
        0.5 / total,
    )
}

/// Every parameter that moved between `before` and `after`.
fn surprises(before: &View, after: &View) -> Vec<Surprise> {
    let (prior, other) = retry_prior(before);
    let mut out = Vec::new();
    for a in &after.edges {
        let Some(b) = before.edge(&a.from, &a.to) else {
            continue;
        };
        // Evidence only adds counts, so the posterior's evidence grew by this site's new
        // observations of a caller's reaction.
        let observations = a
            .p_propagate
            .evidence
            .saturating_sub(b.p_propagate.evidence);
        if let (Some(pa), Some(pb)) = (a.p_propagate.distribution(), b.p_propagate.distribution()) {
            let bits = pa.kl_bits(&pb);
            if bits.is_finite() && bits >= MIN_SURPRISE_BITS {
                out.push(Surprise {
                    parameter: "p_propagate".into(),
                    from: a.from.clone(),
                    to: a.to.clone(),
                    before: interval_text(&b.p_propagate.interval),
                    after: interval_text(&a.p_propagate.interval),
                    bits,
                    source: if observations > 0 {
                        "evidence"
                    } else {
                        "prior"
                    }
                    .into(),
                    observations,
                    interval_before: Some(b.p_propagate.interval),
                    interval_after: Some(a.p_propagate.interval),
                });
            }
        }
        let calls_seen = |e: &augur_model::Edge| e.stats.retries.iter().sum::<u64>();
        if let (None, Some(r)) = (b.retries, a.retries) {
            let p = prior.get(&r).copied().unwrap_or(other);
            out.push(Surprise {
                parameter: "retries".into(),
                from: a.from.clone(),
                to: a.to.clone(),
                before: "unknown".into(),
                after: r.to_string(),
                bits: -p.log2(),
                source: "evidence".into(),
                observations: calls_seen(a).saturating_sub(calls_seen(b)),
                interval_before: None,
                interval_after: None,
            });
        }
        if let (None, Some(t)) = (&b.timeout, &a.timeout) {
            out.push(Surprise {
                parameter: "timeout".into(),
                from: a.from.clone(),
                to: a.to.clone(),
                before: "unknown".into(),
                after: format!("{} ms ({} attempts cut)", t.median_ms, t.evidence),
                bits: 1.0,
                source: "evidence".into(),
                observations: t.evidence,
                interval_before: None,
                interval_after: None,
            });
        }
    }
    out.sort_by(|x, y| {
        y.bits
            .total_cmp(&x.bits)
            .then_with(|| (&x.from, &x.to, &x.parameter).cmp(&(&y.from, &y.to, &y.parameter)))
    });
    out
}

/// P(rate < threshold) under the Jeffreys posterior of `k` failures in `n`.
fn p_below(k: u64, n: u64, threshold: f64) -> f64 {
    Beta::new(0.5 + k as f64, 0.5 + n.saturating_sub(k) as f64).map_or(0.5, |b| b.cdf(threshold))
}

/// How the traces bear on an intent's verdict beyond the endpoint's own figures.
struct Judging<'a> {
    /// The share of traffic the fault was put on: below 1 the endpoint's requests mix faulted
    /// and normal ones, and the faulted ones' rate is inferred from the mixture.
    share: f64,
    /// The endpoint's error rate in the normal traffic the model was learned from.
    baseline_rate: f64,
    /// Why the traces show no sign of the fault at all (no call reached the target; none of
    /// the calls a `down` or `error` fault should have failed did): then nothing is judged.
    no_sign: Option<&'a str>,
}

fn verdict(
    intent: &Intent,
    observed: Option<&Observed>,
    p_before: f64,
    judging: &Judging<'_>,
) -> Verdict {
    let mut parts: Vec<(Option<bool>, String)> = Vec::new();
    match (judging.no_sign, observed) {
        (Some(why), _) => parts.push((None, why.to_string())),
        (None, None) => parts.push((
            None,
            format!(
                "{} got no requests during the experiment",
                intent.expect.endpoint
            ),
        )),
        (None, Some(o)) => {
            if let Some(t) = intent.expect.error_rate_below {
                let k = (o.error_rate * o.requests as f64).round() as u64;
                // At a partial share, the faulted requests and their failures: the share of
                // the requests, and what failed beyond the baseline's rate on the rest.
                let (k, n) = if judging.share < 1.0 {
                    let n = o.requests as f64;
                    let n_f = (judging.share * n).round().max(1.0);
                    let k_f = (k as f64 - (1.0 - judging.share) * n * judging.baseline_rate)
                        .round()
                        .clamp(0.0, n_f);
                    (k_f as u64, n_f as u64)
                } else {
                    (k, o.requests)
                };
                let p = p_below(k, n, t);
                let decided = if p >= 0.95 {
                    Some(true)
                } else if p <= 0.05 {
                    Some(false)
                } else {
                    None
                };
                let of = if judging.share < 1.0 {
                    format!(
                        "of the about {n} faulted requests ({} of {}), about {k} failed ({} of all requests failed; the rest at the baseline's {})",
                        pct(judging.share),
                        o.requests,
                        pct(o.error_rate),
                        pct(judging.baseline_rate)
                    )
                } else {
                    format!("{k} of {n} requests failed ({})", pct(o.error_rate))
                };
                parts.push((
                    decided,
                    format!("{of}; expected below {}, P(rate below) {:.2}", pct(t), p),
                ));
            }
            if let Some(t) = intent.expect.p99_ms_below {
                let decided = (o.requests >= MIN_P99_REQUESTS).then_some(o.p99_ms < t);
                parts.push((
                    decided,
                    format!(
                        "p99 {:.1} ms (expected below {t} ms{})",
                        o.p99_ms,
                        if decided.is_none() {
                            format!("; fewer than {MIN_P99_REQUESTS} requests, too few to say")
                        } else {
                            String::new()
                        }
                    ),
                ));
            }
        }
    }
    let family = intent.faults.len() > 1;
    let verdict = if parts.iter().any(|(d, _)| *d == Some(false)) {
        "falsified"
    } else if !family && !parts.is_empty() && parts.iter().all(|(d, _)| *d == Some(true)) {
        "holds"
    } else {
        "inconclusive"
    };
    let member = if family {
        format!(
            "one of the family's {} faults (it holds when it holds for all of them); ",
            intent.faults.len()
        )
    } else {
        String::new()
    };
    Verdict {
        id: intent.id.clone(),
        belief: intent.belief.clone(),
        verdict: verdict.into(),
        p_holds_before: p_before,
        evidence: format!(
            "{member}at {}: {}",
            intent.expect.endpoint,
            parts
                .into_iter()
                .map(|(_, s)| s)
                .collect::<Vec<_>>()
                .join("; ")
        ),
    }
}

/// The 95% Jeffreys interval of an observed error rate: what the requests seen say the rate
/// is, sampling error included (also at 0% or 100%, where a normal approximation claims none).
fn observed_interval(o: &Observed) -> (f64, f64) {
    let k = (o.error_rate * o.requests as f64).round();
    let n = o.requests as f64;
    Beta::new(0.5 + k, 0.5 + (n - k).max(0.0)).map_or((0.0, 1.0), |b| {
        let (lo, hi) = b.interval(0.95);
        (
            if k == 0.0 { 0.0 } else { lo },
            if k >= n { 1.0 } else { hi },
        )
    })
}

fn mix(share: f64, faulted: f64, baseline: f64) -> f64 {
    share * faulted + (1.0 - share) * baseline
}

/// Compares an experiment's traces (learned as `observed`) with the base model's prediction of
/// `spec`, refines the model with the experiment's evidence, and says what was learned.
pub fn outcome(
    base: &Model,
    observed: &Model,
    spec: &FaultSpec,
    intents: &[Intent],
    opts: &OutcomeOptions,
) -> Result<Outcome, RecError> {
    let before = base.view();
    let scope = fault_scope(&before, spec)?;
    // Traces of another system would read as "nothing moved" and mark the target tested.
    let known: std::collections::BTreeSet<&str> =
        base.operations.iter().map(|o| o.id.as_str()).collect();
    if !observed
        .operations
        .iter()
        .any(|o| known.contains(o.id.as_str()))
    {
        return Err(RecError::Outcome(format!(
            "the experiment's traces show none of the model's {} operations ({} operations of their own{}): traces of another system, or of nothing? Nothing was recorded",
            known.len(),
            observed.operations.len(),
            observed
                .operations
                .first()
                .map_or(String::new(), |o| format!(", e.g. `{}`", o.id))
        )));
    }
    let (prediction, _) = simulate(&before, std::slice::from_ref(spec), &opts.sim)?;
    let seen = observed.view();
    let share = opts.traffic_share;

    let mut endpoints = Vec::new();
    let mut observed_at: BTreeMap<String, Observed> = BTreeMap::new();
    for p in &prediction.endpoints {
        let e = &p.predicted.error_rate;
        let base_rate = p.baseline.error_rate;
        let full = (share - 1.0).abs() < 1e-9;
        // With part of the traffic faulted, each draw's mixture of its faulted and baseline
        // rates: the baseline's own uncertainty stays in the band (mixing the bands' ends with
        // the baseline's mean left 1% of the faulted band's width, a point).
        let mixed: Vec<f64> = p
            .per_draw
            .iter()
            .zip(&p.per_draw_baseline)
            .filter_map(|(f, b)| Some(mix(share, f.as_ref()?.0, b.as_ref()?.0)))
            .filter(|x| x.is_finite())
            .collect();
        let band = if full {
            *e
        } else if mixed.is_empty() {
            Band {
                mean: mix(share, e.mean, base_rate),
                lo: mix(share, e.lo, base_rate),
                hi: mix(share, e.hi, base_rate),
            }
        } else {
            augur_simulator::band(mixed)
        };
        let obs = seen
            .node(&p.endpoint)
            .filter(|n| n.invocations > 0)
            .map(|n| Observed {
                requests: n.invocations,
                error_rate: n.errors as f64 / n.invocations as f64,
                p50_ms: n.duration.p50_ms,
                p99_ms: n.duration.p99_ms,
            });
        let within = obs.as_ref().map(|o| {
            let (lo, hi) = observed_interval(o);
            lo <= band.hi && band.lo <= hi
        });
        if let Some(o) = &obs {
            observed_at.insert(p.endpoint.clone(), o.clone());
        }
        endpoints.push(EndpointOutcome {
            endpoint: p.endpoint.clone(),
            predicted: PredictedAt {
                error_rate: band,
                p50_ms: full.then_some(p.predicted.p50_ms),
                p99_ms: full.then_some(p.predicted.p99_ms),
                baseline_error_rate: base_rate,
            },
            observed: obs,
            within,
        });
    }

    let ev = base.evidence_under_fault(observed, &scope);
    let mut refined = base.clone();
    refined.merge(&ev.model);
    let after = refined.view();
    let surprises = surprises(&before, &after);
    let learned_bits = surprises.iter().map(|s| s.bits).sum::<f64>();

    let mut verdicts = Vec::new();
    // Traces that show no sign of the fault judge no intent (they may have been recorded
    // without it, or in a format that shows no calls or failures).
    let expected = expected_failures(spec, ev.calls_into_target);
    let no_sign = if ev.calls_into_target == 0 {
        Some(format!(
            "no call reached {} in these traces, so nothing shows the fault was active: not judged",
            spec.target
        ))
    } else if ev.failed_into_target == 0 && expected >= 5.0 {
        Some(format!(
            "none of the {} calls into {} failed, where {spec} should have failed about {expected:.0}: these traces do not show the fault, not judged",
            ev.calls_into_target, spec.target
        ))
    } else {
        None
    };
    for i in intents.iter().filter(|i| i.faults.contains(spec)) {
        let p_before = prediction
            .endpoints
            .iter()
            .find(|p| p.endpoint == i.expect.endpoint)
            .map_or(0.5, |p| {
                let draws: Vec<bool> = p
                    .per_draw
                    .iter()
                    .flatten()
                    .map(|&(err, _, p99)| {
                        i.expect.holds(mix(share, err, p.baseline.error_rate), p99)
                    })
                    .collect();
                if draws.is_empty() {
                    0.5
                } else {
                    draws.iter().filter(|&&h| h).count() as f64 / draws.len() as f64
                }
            });
        // The rate the rest of the traffic fails at: the endpoint's as normal traffic showed it
        // (observed, not simulated: the model's simulated baseline carries its priors).
        let baseline_rate = before
            .node(&i.expect.endpoint)
            .filter(|n| n.invocations > 0)
            .map_or(0.0, |n| n.errors as f64 / n.invocations as f64);
        let judging = Judging {
            share,
            baseline_rate,
            no_sign: no_sign.as_deref(),
        };
        verdicts.push(verdict(
            i,
            observed_at.get(&i.expect.endpoint),
            p_before,
            &judging,
        ));
    }

    let summary = summarise(&endpoints, &surprises, &verdicts, &ev, spec);
    let report = OutcomeReport {
        fault: spec.to_string(),
        traffic_share: share,
        traces: TracesSeen {
            spans: observed.quality.spans,
            traces: observed.quality.traces,
            first_ns: observed.window.map(|w| w.first_ns),
            last_ns: observed.window.map(|w| w.last_ns),
        },
        evidence: EvidenceSummary {
            calls_into_target: ev.calls_into_target,
            failed_into_target: ev.failed_into_target,
            reactions: ev.reactions,
            new_operations: ev.new_operations.clone(),
            new_calls: ev
                .new_calls
                .iter()
                .map(|(from, to)| Site {
                    from: from.clone(),
                    to: to.clone(),
                })
                .collect(),
        },
        endpoints,
        surprises,
        // A sum of KL divergences is >= 0: rounding error must not show as "-0.00 bits".
        learned_bits: (learned_bits.max(0.0) * 1000.0).round() / 1000.0,
        intents: verdicts,
        summary,
    };
    Ok(Outcome {
        report,
        refined,
        evidence: ev.model,
    })
}

/// How many of `calls` into the target the fault should have failed.
fn expected_failures(spec: &FaultSpec, calls: u64) -> f64 {
    match spec.kind {
        FaultKind::Down => calls as f64,
        FaultKind::Error(r) => r * calls as f64,
        FaultKind::AddLatencyMs(_) | FaultKind::ScaleSelf(_) => 0.0,
    }
}

fn summarise(
    endpoints: &[EndpointOutcome],
    surprises: &[Surprise],
    verdicts: &[Verdict],
    ev: &augur_model::Evidence,
    spec: &FaultSpec,
) -> Vec<String> {
    let mut out = Vec::new();
    out.push(format!(
        "{spec}: {} calls into the target, {} failed; {} failed calls showed how their caller reacted",
        ev.calls_into_target, ev.failed_into_target, ev.reactions
    ));
    // Traces that show no sign of the fault were probably not recorded while it was active.
    let expected_failures = expected_failures(spec, ev.calls_into_target);
    if ev.failed_into_target == 0 && expected_failures >= 5.0 {
        out.push(format!(
            "warning: none of the {} calls into the target failed, where {spec} should have failed about {:.0}: were these traces recorded while the fault was active?",
            ev.calls_into_target, expected_failures
        ));
    }
    let judged: Vec<&EndpointOutcome> = endpoints.iter().filter(|e| e.within.is_some()).collect();
    let held = judged.iter().filter(|e| e.within == Some(true)).count();
    out.push(format!(
        "the prediction held at {held} of {} endpoints with requests",
        judged.len()
    ));
    for e in judged.iter().filter(|e| e.within == Some(false)) {
        if let Some(o) = &e.observed {
            let p = &e.predicted.error_rate;
            out.push(format!(
                "{}: observed {} errors over {} requests, predicted {} [{}, {}]: outside the interval",
                e.endpoint,
                pct(o.error_rate),
                o.requests,
                pct(p.mean),
                pct(p.lo),
                pct(p.hi)
            ));
        }
    }
    for s in surprises.iter().filter(|s| s.source == "evidence").take(5) {
        let what = match s.parameter.as_str() {
            "p_propagate" => "P(propagate)",
            other => other,
        };
        out.push(format!(
            "{} -> {}: {what} {} → {} ({} observation{}, {:.2} bits)",
            s.from,
            s.to,
            s.before,
            s.after,
            s.observations,
            if s.observations == 1 { "" } else { "s" },
            s.bits
        ));
    }
    let by_prior = surprises.iter().filter(|s| s.source == "prior").count();
    if by_prior > 0 {
        out.push(format!(
            "{by_prior} call site{} without new evidence moved with the prior learned across similar sites",
            if by_prior == 1 { "" } else { "s" }
        ));
    }
    if surprises.is_empty() {
        out.push("nothing moved: the model already knew what this experiment showed".into());
    }
    for v in verdicts {
        out.push(format!(
            "intent {}: {} (P(holds) was {:.2}): {}",
            v.id,
            v.verdict.to_uppercase(),
            v.p_holds_before,
            v.evidence
        ));
    }
    if !ev.new_calls.is_empty() {
        out.push(format!(
            "{} call sites appeared only under the fault (a fallback path?), not learned: {}",
            ev.new_calls.len(),
            ev.new_calls
                .iter()
                .map(|(f, t)| format!("{f} -> {t}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    out
}

impl OutcomeReport {
    /// The report for people.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "outcome of {} ({} spans in {} traces, {:.0}% of traffic)\n\n",
            self.fault,
            self.traces.spans,
            self.traces.traces,
            self.traffic_share * 100.0
        );
        s.push_str("ENDPOINT  PREDICTED ERRORS  OBSERVED ERRORS  REQUESTS  WITHIN\n");
        for e in &self.endpoints {
            let p = &e.predicted.error_rate;
            let (obs, n) = e
                .observed
                .as_ref()
                .map_or(("-".to_string(), 0), |o| (pct(o.error_rate), o.requests));
            s.push_str(&format!(
                "{}  {} [{}, {}]  {obs}  {n}  {}\n",
                e.endpoint,
                pct(p.mean),
                pct(p.lo),
                pct(p.hi),
                match e.within {
                    Some(true) => "yes",
                    Some(false) => "NO",
                    None => "-",
                }
            ));
        }
        s.push_str(&format!(
            "\nlearned {:.2} bits; most surprising:\n",
            self.learned_bits
        ));
        for x in self.surprises.iter().take(10) {
            s.push_str(&format!(
                "  {:.3} bits  {} -> {}  {}: {} → {}  ({})\n",
                x.bits, x.from, x.to, x.parameter, x.before, x.after, x.source
            ));
        }
        if !self.intents.is_empty() {
            s.push_str("\nintents:\n");
            for v in &self.intents {
                s.push_str(&format!(
                    "  {}: {} (P(holds) was {:.2}) {}\n",
                    v.id,
                    v.verdict.to_uppercase(),
                    v.p_holds_before,
                    v.evidence
                ));
            }
        }
        s.push_str("\nsummary:\n");
        for line in &self.summary {
            s.push_str(&format!("  - {line}\n"));
        }
        s
    }
}
