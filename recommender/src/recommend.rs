//! Candidates, their value, their harm, and the ranking.
//!
//! - **Candidates**: every target in scope (`service`: services and virtual nodes; `operation`:
//!   also each operation; `edge`: also each call site `caller->callee`) × the ladder
//!   [`LADDER`], plus every intent's faults.
//! - **Experiment**: the fault applied to `traffic_share` of the traffic for `duration`. An
//!   endpoint serving `rate` requests a second shows `rate × duration × share` requests of
//!   evidence.
//! - **Value** (bits) = [I(the experiment's outcome; what every candidate experiment would show
//!   at every endpoint, each weighted by the endpoint's traffic share) − the same for the same
//!   requests without the fault]⁺ ([`crate::value::predictive_information`]: the outcome is
//!   the failure rate over the experiment's requests and their log median and p99 latency, per
//!   posterior draw; the targets are the same three quantities of every candidate) + Σ over
//!   the intents the fault bears on of priority × H(P(holds)),
//!   times the staleness weight of the target ([`crate::ledger`]: 1 when never tested or
//!   drifted since it was tested, less when the ledger shows it tested and nothing changed).
//! - **Harm**: the upper (95th percentile over posterior draws, each paired with its own
//!   baseline) extra failed user requests over the experiment, and the upper p99 latency
//!   increase. With an error budget (failed requests the
//!   team can afford), an experiment over budget is scaled down in traffic share (1, 1/2, 1/4,
//!   1/10, 1/20, 1/100) until it fits; when even 1% does not, in duration at 1% of traffic
//!   ([`PARTS`]: 1/2, 1/4, 1/10 of it; `harm.duration_s` says which); else it is marked unsafe
//!   with why. Smaller magnitudes are candidates of their own ([`LADDER`]); an unsafe
//!   experiment's why names the milder one that fits ([`milder_note`]).

use std::collections::{BTreeMap, BTreeSet};

use augur_model::View;
use augur_simulator::{simulate_many, FaultKind, FaultSpec, OpPrediction, SimOptions};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::intents::Intent;
use crate::ledger::Staleness;
use crate::value::{
    binary_entropy, predictive_information, Observable, LATENCY_RESOLUTION, RESOLUTION,
};
use crate::RecError;

/// The magnitudes tried on every target.
pub const LADDER: [FaultKind; 5] = [
    FaultKind::Down,
    FaultKind::Error(0.1),
    FaultKind::Error(0.5),
    FaultKind::AddLatencyMs(100.0),
    FaultKind::AddLatencyMs(500.0),
];

/// Traffic shares tried when an experiment is over budget.
pub const SHARES: [f64; 6] = [1.0, 0.5, 0.25, 0.1, 0.05, 0.01];

/// Parts of the duration tried, at the smallest share, when no share fits the budget.
pub const PARTS: [f64; 3] = [0.5, 0.25, 0.1];

/// A duration for a person: minutes, or seconds under two minutes.
fn minutes(seconds: f64) -> String {
    if seconds >= 120.0 {
        format!("{} min", (seconds / 60.0 * 10.0).round() / 10.0)
    } else {
        format!("{} s", seconds.round())
    }
}

/// Which targets candidates use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Whole services and virtual nodes (what tools that only kill services can run).
    Service,
    /// Also single operations.
    Operation,
    /// Also single call sites.
    Edge,
}

/// Settings of a recommendation.
#[derive(Debug, Clone)]
pub struct Options {
    /// Targets in scope.
    pub scope: Scope,
    /// How long an experiment runs, seconds.
    pub duration_s: f64,
    /// Extra failed user requests the team can afford (none: no budget).
    pub error_budget: Option<f64>,
    /// Simulation settings.
    pub sim: SimOptions,
    /// How stale the knowledge of each tested target is, by fault target
    /// ([`crate::ledger::staleness_by_target`]); a target not listed was never tested (weight 1).
    pub staleness: BTreeMap<String, Staleness>,
    /// Also assess every experiment at each smaller traffic share within the budget
    /// ([`Experiment::fits`], for plans).
    pub keep_fits: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            scope: Scope::Service,
            duration_s: 600.0,
            error_budget: None,
            sim: SimOptions {
                requests: 2_000,
                samples: 32,
                seed: 1,
            },
            staleness: BTreeMap::new(),
            keep_fits: false,
        }
    }
}

/// An intent's predicted verdict under an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentOdds {
    /// The intent's id.
    pub id: String,
    /// P(it holds under this fault), from the posterior draws.
    pub p_holds: f64,
}

/// Predicted harm of an experiment at its traffic share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Harm {
    /// User requests the experiment touches.
    pub requests: f64,
    /// Upper bound (95%) of the extra failed user requests.
    pub failed_requests_hi: f64,
    /// Upper bound (95%) of the largest p99 latency increase at an endpoint, milliseconds.
    pub p99_increase_ms_hi: f64,
    /// The experiment's duration, seconds.
    pub duration_s: f64,
}

/// The predicted endpoints of an experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PredictedEndpoints {
    /// As in `augur simulate --json`.
    pub endpoints: Vec<OpPrediction>,
}

/// One recommended experiment: the `augur recommend --json` contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// The fault spec.
    pub fault: String,
    /// Expected information gain, bits.
    pub value_bits: f64,
    /// Intents it bears on.
    pub intents: Vec<IntentOdds>,
    /// The prediction.
    pub predicted: PredictedEndpoints,
    /// Predicted harm.
    pub harm: Harm,
    /// Within the error budget (always, without one).
    pub safe: bool,
    /// Share of traffic to apply it to.
    pub traffic_share: f64,
    /// One sentence a person can check.
    pub why: String,
    /// The part of `value_bits` about the model's parameters (the rest is intents' verdicts).
    /// Not part of the JSON contract.
    #[serde(skip)]
    pub model_bits: f64,
    /// With [`Options::keep_fits`], the experiment at every traffic share of [`SHARES`] and then
    /// at 1% for every part of the duration of [`PARTS`] within the error budget, largest first
    /// (a plan fits each experiment to the budget it has left; `harm.duration_s` tells the
    /// parts).
    /// Not part of the JSON contract.
    #[serde(skip)]
    pub fits: Vec<Fit>,
}

/// An experiment at one traffic share.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// Share of traffic.
    pub traffic_share: f64,
    /// Its value at that share, bits (model and intents, staleness applied).
    pub value_bits: f64,
    /// The part of `value_bits` about the model's parameters.
    pub model_bits: f64,
    /// Its harm at that share.
    pub harm: Harm,
    /// Why, at that share.
    pub why: String,
}

/// The recommendation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recommendation {
    /// Experiments by value, most first (unsafe ones marked, in their place).
    pub experiments: Vec<Experiment>,
}

/// Every candidate fault in scope (deduplicated, stable order), intents' faults included.
pub fn candidates(view: &View, scope: Scope, intents: &[Intent]) -> Vec<FaultSpec> {
    let mut targets: Vec<String> = view.nodes.iter().map(|n| n.service.clone()).collect();
    if scope != Scope::Service {
        targets.extend(
            view.nodes
                .iter()
                .filter(|n| !n.is_virtual)
                .map(|n| format!("{}/{}", n.service, n.operation)),
        );
    }
    if scope == Scope::Edge {
        targets.extend(view.edges.iter().map(|e| format!("{}->{}", e.from, e.to)));
    }
    targets.sort();
    targets.dedup();
    // One candidate per thing a fault can act on: `ad/GetAds` when ad has that one operation
    // is `ad` again (same predictions, same harm), and two names for one experiment would
    // inflate each other's value and fill two places of the ranking. The first name in order
    // is kept (the service before its operation).
    let mut acts_on = BTreeSet::new();
    targets.retain(|t| {
        let probe = FaultSpec {
            target: t.clone(),
            kind: LADDER[0],
        };
        probe.resolve(view).map_or(true, |r| {
            let mut callees = r.callees;
            callees.sort_unstable();
            let callers = r.callers.map(|mut c| {
                c.sort_unstable();
                c
            });
            acts_on.insert((callees, callers))
        })
    });
    let mut out: Vec<FaultSpec> = targets
        .into_iter()
        .flat_map(|t| {
            LADDER.iter().map(move |&kind| FaultSpec {
                target: t.clone(),
                kind,
            })
        })
        .collect();
    for i in intents {
        for f in &i.faults {
            if !out.contains(f) {
                out.push(f.clone());
            }
        }
    }
    out
}

/// Each endpoint's (id, traffic share, requests in `duration_s` at full traffic).
pub fn requests_per_endpoint(view: &View, duration_s: f64) -> Vec<(String, f64, f64)> {
    view.nodes
        .iter()
        .filter_map(|n| {
            n.traffic
                .map(|t| (n.id.clone(), t.share, t.per_second * duration_s))
        })
        .collect()
}

/// The model's evidence about the calls into a fault's target, in words: for a latency fault,
/// what it knows of their timeouts; for the others, of their failures.
fn evidence(view: &View, spec: &FaultSpec) -> String {
    let Ok(resolved) = spec.resolve(view) else {
        return format!("{} is not in the model", spec.target.trim());
    };
    let id = |i: &usize| view.nodes.get(*i).map(|n| n.id.as_str());
    let callees: BTreeSet<&str> = resolved.callees.iter().filter_map(id).collect();
    let callers: Option<BTreeSet<&str>> = resolved
        .callers
        .as_ref()
        .map(|c| c.iter().filter_map(id).collect());
    let into: Vec<_> = view
        .edges
        .iter()
        .filter(|e| {
            callees.contains(e.to.as_str())
                && callers.as_ref().is_none_or(|c| c.contains(e.from.as_str()))
        })
        .collect();
    let nobody = || {
        let entry = resolved
            .callees
            .iter()
            .any(|&i| view.nodes.get(i).is_some_and(|n| n.endpoint));
        if entry {
            format!(
                "nothing calls {} but its users: the fault meets them directly",
                spec.target.trim()
            )
        } else {
            format!("nothing calls {}", spec.target.trim())
        }
    };
    let Some(e) = into.iter().max_by(|a, b| {
        let w = |x: &augur_model::Edge| x.p_propagate.interval.hi - x.p_propagate.interval.lo;
        w(a).total_cmp(&w(b)).then_with(|| b.from.cmp(&a.from))
    }) else {
        return nobody();
    };
    if matches!(
        spec.kind,
        FaultKind::AddLatencyMs(_) | FaultKind::ScaleSelf(_)
    ) {
        // The busiest call into the target whose timeout is not known, else the busiest.
        let Some(e) = into
            .iter()
            .max_by_key(|e| (e.timeout.is_none(), e.calls, std::cmp::Reverse(&e.from)))
        else {
            return nobody();
        };
        return match &e.timeout {
            Some(t) => format!(
                "{} -> {} times out at {:.0} ms [{:.0}, {:.0}]",
                e.from, e.to, t.median_ms, t.lo_ms, t.hi_ms
            ),
            None => {
                let sync = view
                    .edges
                    .iter()
                    .filter(|e| e.mode != augur_model::Mode::Asynchronous);
                let (seen, sites) = sync.fold((0, 0), |(s, n), e| {
                    (s + usize::from(e.timeout.is_some()), n + 1)
                });
                let habits = format!(" (timeouts seen at {seen} of {sites} call sites)");
                format!(
                    "no timeout seen on {} -> {}: its calls ran up to {:.0} ms uncut{habits}",
                    e.from,
                    e.to,
                    e.stats.longest_attempt_ns() / 1e6
                )
            }
        };
    }
    let p = &e.p_propagate;
    let sd = p.distribution().map_or(0.0, |b| b.std_dev());
    format!(
        "{} natural failures of {} -> {} seen, caller survived {}: P(propagate) {:.2} ± {:.2}",
        e.failed, e.from, e.to, e.stats.survived, p.interval.mean, sd
    )
}

/// The 95th percentile of some values (0 when none).
fn upper(mut v: Vec<f64>) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[((0.95 * (v.len() - 1) as f64).round() as usize).min(v.len() - 1)]
}

fn mean_var(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (m, v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n)
}

/// Per-draw rates measured on `simulated` requests each, with the binomial noise of that
/// measurement shrunk away: each draw moves toward the mean so that the spread left is the
/// spread between draws (the parameters' uncertainty), not the simulation's.
pub(crate) fn denoise(v: Vec<f64>, simulated: f64) -> Vec<f64> {
    let m = mean_var(&v).0;
    shrink(v, m * (1.0 - m) / simulated)
}

/// Per-draw values with measurement noise of variance `noise` shrunk away, each draw moved
/// toward the mean so that the spread left is the spread between draws.
fn shrink(v: Vec<f64>, noise: f64) -> Vec<f64> {
    let (m, var) = mean_var(&v);
    let keep = if var > 0.0 {
        ((var - noise).max(0.0) / var).sqrt()
    } else {
        0.0
    };
    v.into_iter().map(|x| m + (x - m) * keep).collect()
}

/// The variance of the sample median of n log-normal latencies is about `MEDIAN_NOISE × σ² / n`
/// (σ the spread of the log latency; π/2).
const MEDIAN_NOISE: f64 = std::f64::consts::FRAC_PI_2;
/// The same for the 99th percentile: q(1 − q)/φ(z_q)² at q = 0.99.
const P99_NOISE: f64 = 13.94;
/// z of the 99th percentile of a normal distribution.
const Z99: f64 = 2.326;

/// The quantities an experiment's outcome shows, per draw: the share of its requests that
/// fail, and the log of their median and 99th-percentile latency (each a request-weighted mean
/// over the endpoints it touches). `baseline` takes the draws without the fault (what the same
/// requests would show anyway); `share` scales each endpoint's requests (`endpoints`:
/// id, traffic weight, requests at full traffic); `sim_requests` is the simulated requests per
/// draw, whose Monte Carlo noise is taken out of every draw first.
pub(crate) fn outcome(
    predicted: &[OpPrediction],
    baseline: bool,
    endpoints: &[(String, f64, f64)],
    share: f64,
    sim_requests: usize,
) -> Vec<Observable> {
    // Per quantity, per endpoint: (requests, values per draw, noise one request adds).
    let mut parts: [Vec<Part>; 3] = [Vec::new(), Vec::new(), Vec::new()];
    for p in predicted {
        let Some(&(_, weight, full)) = endpoints.iter().find(|(id, _, _)| *id == p.endpoint) else {
            continue;
        };
        let n = (full * share).round().max(0.0);
        let simulated = (sim_requests as f64 * weight).max(1.0);
        let draws = if baseline {
            &p.per_draw_baseline
        } else {
            &p.per_draw
        };
        let rates = denoise_aligned(draws, simulated);
        let m = mean_of(&rates);
        parts[0].push(Part {
            n,
            per_draw: rates,
            unit_noise: m * (1.0 - m),
        });
        let Some((sigma2, logs)) = log_latency(draws, simulated) else {
            continue;
        };
        for ((k, unit), per_draw) in [(1, MEDIAN_NOISE), (2, P99_NOISE)].into_iter().zip(logs) {
            parts[k].push(Part {
                n,
                per_draw,
                unit_noise: unit * sigma2,
            });
        }
    }
    parts.iter().filter_map(|p| outcome_mean(p)).collect()
}

/// Per draw, the log of the median and of the p99 latency (ms) of `simulated` requests, their
/// Monte Carlo noise shrunk away, and σ² of the log latency (from the distance between median
/// and p99, at least 0.01²); `None` when no draw has a latency.
pub(crate) fn log_latency(
    draws: &[Option<(f64, f64, f64)>],
    simulated: f64,
) -> Option<(f64, [Vec<Option<f64>>; 2])> {
    let spreads: Vec<f64> = draws
        .iter()
        .flatten()
        .filter(|d| d.1 > 0.0 && d.2 >= d.1)
        .map(|d| (d.2 / d.1).ln() / Z99)
        .collect();
    if spreads.is_empty() {
        return None;
    }
    let sigma2 = (spreads.iter().sum::<f64>() / spreads.len() as f64)
        .max(0.01)
        .powi(2);
    let logs = |pick: fn(&(f64, f64, f64)) -> f64, unit: f64| {
        let v: Vec<Option<f64>> = draws
            .iter()
            .map(|d| d.as_ref().map(|d| pick(d).max(1e-3).ln()))
            .collect();
        shrink_aligned(&v, unit * sigma2 / simulated)
    };
    Some((
        sigma2,
        [logs(|d| d.1, MEDIAN_NOISE), logs(|d| d.2, P99_NOISE)],
    ))
}

/// [`denoise`] keeping each draw in its place (`None` where the endpoint did not run).
pub(crate) fn denoise_aligned(v: &[Option<(f64, f64, f64)>], simulated: f64) -> Vec<Option<f64>> {
    let rates: Vec<Option<f64>> = v.iter().map(|d| d.map(|d| d.0)).collect();
    let m = mean_of(&rates);
    shrink_aligned(&rates, m * (1.0 - m) / simulated)
}

/// [`shrink`] keeping each draw in its place.
fn shrink_aligned(v: &[Option<f64>], noise: f64) -> Vec<Option<f64>> {
    let mut shrunk = shrink(v.iter().flatten().copied().collect(), noise).into_iter();
    v.iter().map(|d| d.and_then(|_| shrunk.next())).collect()
}

fn mean_of(r: &[Option<f64>]) -> f64 {
    let k: Vec<f64> = r.iter().flatten().copied().collect();
    if k.is_empty() {
        0.0
    } else {
        k.iter().sum::<f64>() / k.len() as f64
    }
}

/// What every candidate would show, per draw: the share of user requests that fail under it
/// and their log median and p99 latency ([`outcome`]), observed over the requests of an
/// experiment at full traffic, and no more precisely than [`RESOLUTION`] (failures) and
/// [`LATENCY_RESOLUTION`] (latency). These are the targets of the value
/// ([`crate::value::predictive_information`]).
pub fn targets(
    predictions: &[Vec<OpPrediction>],
    endpoints: &[(String, f64, f64)],
    opts: &Options,
) -> Vec<Observable> {
    predictions
        .iter()
        .flat_map(|p| {
            let mut quantities = outcome(p, false, endpoints, 1.0, opts.sim.requests);
            for (k, q) in quantities.iter_mut().enumerate() {
                let sd = if k == 0 {
                    RESOLUTION
                } else {
                    LATENCY_RESOLUTION
                };
                *q = q.clone().at_resolution(sd);
            }
            quantities
        })
        .collect()
}

/// One endpoint's share of an outcome.
struct Part {
    /// Its requests.
    n: f64,
    /// Per draw, its value (`None` where it did not run: its mean stands in).
    per_draw: Vec<Option<f64>>,
    /// The variance one request adds to observing it.
    unit_noise: f64,
}

/// The request-weighted mean over endpoints, per draw, with its observation noise; `None`
/// when it touches no requests.
fn outcome_mean(parts: &[Part]) -> Option<Observable> {
    let total: f64 = parts.iter().map(|p| p.n).sum();
    let draws = parts.first().map_or(0, |p| p.per_draw.len());
    if total <= 0.0 || draws == 0 {
        return None;
    }
    let means: Vec<f64> = parts.iter().map(|p| mean_of(&p.per_draw)).collect();
    let values: Vec<Option<f64>> = (0..draws)
        .map(|s| {
            Some(
                parts
                    .iter()
                    .zip(&means)
                    .map(|(p, m)| p.n * p.per_draw.get(s).copied().flatten().unwrap_or(*m))
                    .sum::<f64>()
                    / total,
            )
        })
        .collect();
    let noise = parts.iter().map(|p| p.n * p.unit_noise).sum::<f64>() / (total * total);
    Observable::new(&values, noise)
}

/// The upper 95% bound of paired differences whose simulation noise has variance `noise`:
/// mean + 1.645 × the standard deviation left once that noise is taken out.
fn upper_denoised(v: Vec<f64>, noise: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    let (m, var) = mean_var(&v);
    m + 1.645 * (var - noise).max(0.0).sqrt()
}

/// How severe a fault is within its family on its target: (family, severity). `down` is the
/// most severe error (every call fails); latency added and self time multiplied are families
/// of their own.
fn severity(kind: &FaultKind) -> (u8, f64) {
    match kind {
        FaultKind::Down => (0, 1.0),
        FaultKind::Error(r) => (0, *r),
        FaultKind::AddLatencyMs(ms) => (1, *ms),
        FaultKind::ScaleSelf(f) => (2, *f),
    }
}

/// For an unsafe experiment (`e`, the fault `spec`), the most severe milder fault of the same
/// family on the same target among `others` (each with its spec) that fits the budget (its
/// magnitude scaled down: `shipping:down` unsafe, `shipping:error=0.1` safe at 25% of traffic),
/// as a clause for its `why`.
pub fn milder_note<'a>(
    spec: &FaultSpec,
    e: &Experiment,
    others: impl IntoIterator<Item = (&'a FaultSpec, &'a Experiment)>,
) -> Option<String> {
    if e.safe {
        return None;
    }
    let (family, worst) = severity(&spec.kind);
    let milder = others
        .into_iter()
        .filter(|(other, o)| o.safe && other.target == spec.target)
        .filter_map(|(other, o)| {
            let (f, s) = severity(&other.kind);
            (f == family && s < worst).then_some((o, s))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))?
        .0;
    Some(format!(
        "; milder, {} fits at {:.0}% of traffic for {} ({:.2} bits)",
        milder.fault,
        milder.traffic_share * 100.0,
        minutes(milder.harm.duration_s),
        milder.value_bits
    ))
}

/// Ranks every candidate.
pub fn recommend(
    view: &View,
    intents: &[Intent],
    opts: &Options,
) -> Result<Recommendation, RecError> {
    let specs = candidates(view, opts.scope, intents);
    let sets: Vec<Vec<FaultSpec>> = specs.iter().map(|f| vec![f.clone()]).collect();
    let predictions = simulate_many(view, &sets, &opts.sim)?;
    let endpoints = requests_per_endpoint(view, opts.duration_s);
    let all: Vec<Vec<OpPrediction>> = predictions.into_iter().map(|(p, _)| p.endpoints).collect();
    let targets = targets(&all, &endpoints, opts);
    let mut out: Vec<Experiment> = specs
        .par_iter()
        .zip(all)
        .map(|(spec, predicted)| assess(view, intents, spec, predicted, &endpoints, &targets, opts))
        .collect();
    let notes: Vec<Option<String>> = specs
        .iter()
        .zip(&out)
        .map(|(spec, e)| milder_note(spec, e, specs.iter().zip(&out)))
        .collect();
    for (e, note) in out.iter_mut().zip(notes) {
        if let Some(note) = note {
            e.why.push_str(&note);
        }
    }
    // Ranked by value, as the contract says; an unsafe experiment stays in its place, marked
    // (what the team would learn if it could afford it). Ties: safe first, then by name.
    out.sort_by(|a, b| {
        b.value_bits
            .total_cmp(&a.value_bits)
            .then(b.safe.cmp(&a.safe))
            .then(a.fault.cmp(&b.fault))
    });
    Ok(Recommendation { experiments: out })
}

/// Value, harm and verdicts of one fault, given its predicted endpoints.
pub fn assess(
    view: &View,
    intents: &[Intent],
    spec: &FaultSpec,
    predicted: Vec<OpPrediction>,
    endpoints: &[(String, f64, f64)],
    targets: &[Observable],
    opts: &Options,
) -> Experiment {
    // Intents this fault bears on: P(holds) per draw.
    let mut odds = Vec::new();
    let mut intent_bits = 0.0;
    for i in intents.iter().filter(|i| i.faults.contains(spec)) {
        let Some(p) = predicted.iter().find(|p| p.endpoint == i.expect.endpoint) else {
            continue;
        };
        let draws: Vec<bool> = p
            .per_draw
            .iter()
            .flatten()
            .map(|&(err, _, p99)| i.expect.holds(err, p99))
            .collect();
        let p_holds = if draws.is_empty() {
            0.5
        } else {
            draws.iter().filter(|&&h| h).count() as f64 / draws.len() as f64
        };
        intent_bits += f64::from(i.priority) * binary_entropy(p_holds);
        odds.push(IntentOdds {
            id: i.id.clone(),
            p_holds,
        });
    }
    // The experiment at `share` of the traffic for `part` of the duration.
    let at = |share: f64, part: f64| -> (f64, Harm) {
        let scale = share * part;
        let (mut requests, mut failed_hi, mut p99_hi) = (0.0, 0.0, 0.0f64);
        for p in &predicted {
            let Some(&(_, weight, full)) = endpoints.iter().find(|(id, _, _)| *id == p.endpoint)
            else {
                continue;
            };
            let n = (full * scale).round().max(0.0);
            // Each draw's rate is measured on the simulated requests that reached this
            // endpoint: remove that Monte Carlo noise before valuing or bounding anything.
            let simulated = (opts.sim.requests as f64 * weight).max(1.0);
            requests += n;
            // Harm from paired draws (same parameters): the fault's own effect, not the
            // uncertainty of the error rate it adds to; the simulation noise of each pair is
            // taken out of the spread.
            let paired = |k: usize| -> Vec<f64> {
                p.per_draw
                    .iter()
                    .zip(&p.per_draw_baseline)
                    .filter_map(|(f, b)| match (f, b) {
                        (Some(f), Some(b)) => Some(match k {
                            0 => f.0 - b.0,
                            _ => f.2 - b.2,
                        }),
                        _ => None,
                    })
                    .collect()
            };
            let base_rate = p.baseline.error_rate;
            let fault_rate = p.predicted.error_rate.mean;
            let noise =
                (base_rate * (1.0 - base_rate) + fault_rate * (1.0 - fault_rate)) / simulated;
            // A bound no larger than the requests that did not fail anyway (the Gaussian bound
            // can pass 1 when most draws fail everything).
            let extra_hi = upper_denoised(paired(0), noise).clamp(0.0, (1.0 - base_rate).max(0.0));
            failed_hi += extra_hi * n;
            p99_hi = p99_hi.max(upper(paired(2)));
        }
        // What the outcome teaches about every candidate's outcome, beyond what the same
        // requests would teach without the fault.
        let bits = predictive_information(
            &outcome(&predicted, false, endpoints, scale, opts.sim.requests),
            &outcome(&predicted, true, endpoints, scale, opts.sim.requests),
            targets,
        );
        (
            bits,
            Harm {
                requests: requests.round(),
                failed_requests_hi: failed_hi.round(),
                p99_increase_ms_hi: (p99_hi.max(0.0) * 1000.0).round() / 1000.0,
                duration_s: opts.duration_s * part,
            },
        )
    };
    let (staleness, stale_note) =
        opts.staleness
            .get(&spec.target)
            .map_or((1.0, String::new()), |s| {
                (
                    s.weight,
                    s.note
                        .as_ref()
                        .map_or(String::new(), |n| format!("; {n} (value × {})", s.weight)),
                )
            });
    let value_of =
        |model_bits: f64| ((model_bits + intent_bits) * staleness * 1000.0).round() / 1000.0;
    let shown = predicted.iter().max_by(|a, b| {
        a.impact()
            .total_cmp(&b.impact())
            .then(b.endpoint.cmp(&a.endpoint))
    });
    let effect = shown.map_or(String::new(), |p| {
        let (e, l) = (&p.predicted.error_rate, &p.predicted.p50_ms);
        format!(
            "{} errors predicted {:.1}% [{:.1}, {:.1}] vs {:.1}% now, median {:.0} ms [{:.0}, {:.0}] vs {:.0} ms; ",
            p.endpoint,
            e.mean * 100.0,
            e.lo * 100.0,
            e.hi * 100.0,
            p.baseline.error_rate * 100.0,
            l.mean,
            l.lo,
            l.hi,
            p.baseline.p50_ms
        )
    });
    let evidence = evidence(view, spec);
    let why_of = |value_bits: f64, budget_note: &str| {
        format!(
            "{evidence}; {effect}{spec} would teach {value_bits:.2} bits about what the candidate experiments would show{budget_note}{stale_note}"
        )
    };
    let mut share = 1.0;
    let (mut model_bits, mut harm) = at(share, 1.0);
    let mut safe = true;
    let mut budget_note = String::new();
    let budget = opts.error_budget.unwrap_or(f64::INFINITY);
    // The ladder of scaled-down experiments, largest first: every share of the whole
    // duration, then 1% of the traffic for parts of it.
    let ladder = SHARES
        .iter()
        .map(|&s| (s, 1.0))
        .chain(PARTS.iter().map(|&d| (0.01, d)));
    let note_of = |share: f64, h: &Harm, tail: &str| {
        if h.duration_s < opts.duration_s {
            format!(
                "{:.0}% of traffic for {}{tail}",
                share * 100.0,
                minutes(h.duration_s)
            )
        } else {
            format!("{:.0}% of traffic{tail}", share * 100.0)
        }
    };
    // The rungs tried, largest first: with `keep_fits` every one (the plan picks per step from
    // those within the budget), else, over budget, down to the first that fits. Each is
    // assessed once; the last tried is the smallest when none fits.
    let over = harm.failed_requests_hi > budget;
    let mut tried: Vec<(f64, (f64, Harm))> = Vec::new();
    if over || opts.keep_fits {
        for (k, (s, d)) in ladder.enumerate() {
            let rung = if k == 0 {
                (model_bits, harm.clone())
            } else {
                at(s, d)
            };
            let fits = rung.1.failed_requests_hi <= budget;
            tried.push((s, rung));
            if fits && !opts.keep_fits {
                break;
            }
        }
    }
    let within = |r: &&(f64, (f64, Harm))| r.1 .1.failed_requests_hi <= budget;
    let fits = if opts.keep_fits {
        tried
            .iter()
            .filter(within)
            .map(|(s, (b, h))| {
                let note = if *s < 1.0 || h.duration_s < opts.duration_s {
                    format!("; at {}", note_of(*s, h, " to fit the budget"))
                } else {
                    String::new()
                };
                let value_bits = value_of(*b);
                Fit {
                    traffic_share: *s,
                    value_bits,
                    model_bits: b * staleness,
                    harm: h.clone(),
                    why: why_of(value_bits, &note),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    if over {
        let fit = tried.iter().find(within);
        safe = fit.is_some();
        if let Some((s, (b, h))) = fit.or(tried.last()).cloned() {
            budget_note = if safe {
                format!(
                    "; scaled to {}",
                    note_of(
                        s,
                        &h,
                        &format!(" to fit the budget of {budget} failed requests")
                    )
                )
            } else {
                format!(
                    "; UNSAFE: even at {} it may fail {} requests, over the budget of {budget}",
                    note_of(s, &h, ""),
                    h.failed_requests_hi
                )
            };
            share = s;
            model_bits = b;
            harm = h;
        }
    }
    let value_bits = value_of(model_bits);
    let why = why_of(value_bits, &budget_note);
    Experiment {
        fault: spec.to_string(),
        value_bits,
        intents: odds,
        predicted: PredictedEndpoints {
            endpoints: predicted,
        },
        harm,
        safe,
        traffic_share: share,
        why,
        model_bits: model_bits * staleness,
        fits,
    }
}
