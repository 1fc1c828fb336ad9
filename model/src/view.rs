//! The model as it is read: calls that never arrived placed on their callee, each call site's
//! behaviour derived from its counts, and every probability a posterior with a credible interval.
//!
//! ## Where a call that never arrived went
//! A PRODUCER span whose messages were consumed in other traces, linked to it (span links),
//! went to the consumer that took most of them ([`Model::links`]). Otherwise:
//! a client span that reached nothing instrumented names a peer. If the peer names an instrumented
//! service (other than the caller's own), the call went to that service and failed before its
//! server saw it (a `down` service looks like this); its operation is the one this caller's client
//! span of that name reached when it did arrive, else the operation of that name, else the one this
//! caller calls most there, else the service's busiest. Any other peer is a **virtual node**.
//!
//! ## Behaviour of a call site
//! - **mode**: asynchronous when most attempts are PRODUCER spans, parallel when most calls
//!   overlapped another call of the same invocation, else sequential.
//! - **retries**: the most retries seen after a failed attempt; unknown (`None`) when no attempt
//!   ever failed, since retries only show after failures.
//! - **timeout**: from client spans cut while their server span ran on (the distribution of the
//!   cut durations), else from failed attempts that reached no server span piling up in one
//!   duration bucket (at least three, a fifth of them, no success lasting longer, and the
//!   typical success shorter); unknown
//!   when neither was seen. Failures that reached a server are not piles: a caller whose own
//!   callee timed out fails at a recurring duration without having a timeout itself.
//! - **P(propagate)**: P(caller fails | this call failed after its retries), a Beta posterior on
//!   the clean evidence ([`CallStats::propagated`], [`CallStats::survived`]) over a prior learned
//!   across call sites (below).
//!
//! ## The learned prior (empirical Bayes)
//! Call sites are grouped by what the callee is and how it is called (`service` or `virtual`;
//! `sequential`, `parallel` or `asynchronous`). Over the sites with evidence, a Beta prior is fitted
//! by maximising the beta-binomial marginal likelihood, for all sites together and for each group
//! with at least [`MIN_GROUP_SITES`] sites made by at least [`MIN_GROUP_CALLERS`] calling services
//! (else the group uses the global prior: sites all in one service show how that service's code
//! handles failures, not how the system's does; a shop's front end whose parallel calls are all
//! optional widgets says nothing about whether checkout survives its parallel calls failing).
//! Its concentration
//! is at least [`MIN_CONCENTRATION`] and at most `1 + sites / 2` (at most 20), and its mean is kept
//! within `1 / (sites + 2)` of 0 and 1,
//! so a prior learned from few sites never claims more certainty than they carry; with no evidence
//! anywhere the prior is uniform. A call site that never failed has its group's prior with at
//! least `1 / (sites + 2)` of it on "a fallback" and on "propagates" ([`BetaMix`]): call sites
//! are nearly all-or-nothing, and a Beta fitted to sites that all propagated excludes a fallback
//! that one more site may well be.
//!
//! A classifier (linfa's logistic regression over the same features) was considered and not used:
//! the evidence per site is binomial with very different sizes (one failure or thousands), which the
//! beta-binomial likelihood weighs correctly and a regression on per-site rates does not; and the
//! features are few and categorical, so a per-group fit is the regression's saturated form.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::beta::{fit_prior, Beta};
use crate::model::{CallStats, Model, TraceQuality, Window};
use crate::sketch::{LogSketch, RELATIVE_ACCURACY};

/// Appended to a virtual node's id when an operation's id is already its peer's name.
pub const PEER_SUFFIX: &str = " (peer)";

/// The mass of every credible interval augur reports.
pub const CREDIBLE_MASS: f64 = 0.9;

/// The least concentration (alpha + beta) of a learned prior: never more polarised than
/// Jeffreys' Beta(1/2, 1/2), so a handful of observations cannot make a site look certain
/// even where every other site is all-or-nothing.
pub const MIN_CONCENTRATION: f64 = 1.0;

/// Groups with fewer sites with evidence use the global prior.
pub const MIN_GROUP_SITES: usize = 5;

/// Groups whose sites with evidence are made by fewer calling services use the global prior.
pub const MIN_GROUP_CALLERS: usize = 2;

/// A mean and a 90% credible interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interval {
    /// Posterior mean.
    pub mean: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
}

/// How a caller makes a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The caller waits, one call after another.
    Sequential,
    /// The caller waits, overlapping this call with others.
    Parallel,
    /// The caller does not wait (a message).
    Asynchronous,
}

impl Mode {
    /// Its name.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sequential => "sequential",
            Mode::Parallel => "parallel",
            Mode::Asynchronous => "asynchronous",
        }
    }
}

/// A probability learned from counts: a Beta posterior.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Posterior {
    /// Beta alpha (prior plus events).
    pub alpha: f64,
    /// Beta beta (prior plus non-events).
    pub beta: f64,
    /// Mean and 90% interval.
    #[serde(flatten)]
    pub interval: Interval,
    /// Observations behind it (0: the prior alone).
    pub evidence: u64,
    /// The prior it started from (a group name, or `jeffreys`).
    pub prior: String,
    /// The share of the distribution that is a fallback ([`EDGE_LOW`]) rather than the Beta:
    /// P(propagate) of a call site that never failed, where the sites with evidence had fewer
    /// fallbacks than their number says the next one may be ([`BetaMix`]). Absent when 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub fallback_share: f64,
    /// The same for a site that propagates every failure ([`EDGE_HIGH`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub propagate_share: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// What a call site that is a fallback does with failures: nearly always absorbs them (mean
/// 0.04, 95% below 0.16).
pub const EDGE_LOW: (f64, f64) = (0.5, 12.0);

/// What a call site that propagates failures does: nearly always fails with them.
pub const EDGE_HIGH: (f64, f64) = (12.0, 0.5);

/// A Beta with a share of its mass moved to a fallback and to a propagating site
/// ([`EDGE_LOW`], [`EDGE_HIGH`]): the prior of a call site that never failed.
///
/// Call sites are nearly all-or-nothing (a fallback absorbs nearly every failure; without one,
/// the caller fails), and a Beta fitted to sites that all propagated puts almost no mass near 0
/// (fifteen of fifteen propagating gave Beta(8, 0.5), 90% in [0.55, 1.00]), though after fifteen
/// such sites the next is a fallback about once in seventeen. So at least `1 / (sites + 2)` of
/// the prior is held on each kind (a Laplace estimate of the share of each among sites), moved
/// from the fitted Beta where it holds less below 0.1 (or above 0.9): a fallback that never
/// fired is then a possibility the simulator draws, not a certainty excluded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaMix {
    /// The fitted (or updated) Beta.
    pub main: Beta,
    /// Share of [`EDGE_LOW`].
    pub low: f64,
    /// Share of [`EDGE_HIGH`].
    pub high: f64,
}

impl BetaMix {
    fn part(shape: (f64, f64)) -> Option<Beta> {
        Beta::new(shape.0, shape.1)
    }

    /// A draw, from a uniform `u`: the component by `u`, then its quantile.
    pub fn sample(&self, u: f64) -> f64 {
        let u = u.clamp(0.0, 1.0);
        let rest = (1.0 - self.low - self.high).max(0.0);
        match (Self::part(EDGE_LOW), Self::part(EDGE_HIGH)) {
            (Some(l), _) if u < self.low => l.quantile(u / self.low),
            (_, Some(h)) if u >= self.low + rest && self.high > 0.0 => {
                h.quantile(((u - self.low - rest) / self.high).min(1.0))
            }
            _ if rest > 0.0 => self.main.quantile(((u - self.low) / rest).clamp(0.0, 1.0)),
            _ => self.main.quantile(u),
        }
    }

    /// The mean.
    pub fn mean(&self) -> f64 {
        let rest = (1.0 - self.low - self.high).max(0.0);
        let m = |shape: (f64, f64)| shape.0 / (shape.0 + shape.1);
        self.low * m(EDGE_LOW) + self.high * m(EDGE_HIGH) + rest * self.main.mean()
    }

    /// The standard deviation.
    pub fn std_dev(&self) -> f64 {
        let rest = (1.0 - self.low - self.high).max(0.0);
        // E[X²] of Beta(a, b) is a(a + 1) / ((a + b)(a + b + 1)).
        let m2 = |a: f64, b: f64| a * (a + 1.0) / ((a + b) * (a + b + 1.0));
        let second = self.low * m2(EDGE_LOW.0, EDGE_LOW.1)
            + self.high * m2(EDGE_HIGH.0, EDGE_HIGH.1)
            + rest * m2(self.main.alpha, self.main.beta);
        (second - self.mean().powi(2)).max(0.0).sqrt()
    }

    /// P(X <= x).
    pub fn cdf(&self, x: f64) -> f64 {
        let rest = (1.0 - self.low - self.high).max(0.0);
        let c = |b: Option<Beta>| b.map_or(0.0, |b| b.cdf(x));
        self.low * c(Self::part(EDGE_LOW))
            + self.high * c(Self::part(EDGE_HIGH))
            + rest * self.main.cdf(x)
    }

    /// The quantile (by bisection on [`BetaMix::cdf`], to 1e-9).
    pub fn quantile(&self, p: f64) -> f64 {
        let (mut lo, mut hi) = (0.0f64, 1.0f64);
        for _ in 0..40 {
            let mid = 0.5 * (lo + hi);
            if self.cdf(mid) < p {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        0.5 * (lo + hi)
    }

    /// The equal-tailed interval holding `mass`, as [`Beta::interval`] where nothing was moved.
    pub fn interval(&self, mass: f64) -> (f64, f64) {
        if self.low == 0.0 && self.high == 0.0 {
            return self.main.interval(mass);
        }
        let tail = (1.0 - mass.clamp(0.0, 1.0)) / 2.0;
        (self.quantile(tail), self.quantile(1.0 - tail))
    }

    /// The prior of a site that never failed, from the fitted `main` and the number of sites
    /// with evidence it was fitted on.
    pub fn prior(main: Beta, sites: usize) -> BetaMix {
        let least = 1.0 / (sites as f64 + 2.0);
        let low = (least - main.cdf(0.1)).max(0.0);
        let high = (least - (1.0 - main.cdf(0.9))).max(0.0);
        BetaMix {
            main,
            low: if low.is_finite() { low } else { 0.0 },
            high: if high.is_finite() { high } else { 0.0 },
        }
    }
}

impl Posterior {
    fn new(prior: Beta, prior_name: &str, events: u64, trials: u64) -> Posterior {
        let post = prior.update(events, trials);
        let (lo, hi) = post.interval(CREDIBLE_MASS);
        Posterior {
            alpha: post.alpha,
            beta: post.beta,
            interval: Interval {
                mean: post.mean(),
                lo,
                hi,
            },
            evidence: trials,
            prior: prior_name.to_string(),
            fallback_share: 0.0,
            propagate_share: 0.0,
        }
    }

    /// The P(propagate) of a call site that never failed: its group's prior `prior`, fitted on
    /// `sites` sites with evidence, with the shares [`BetaMix::prior`] moves to a fallback and to
    /// a propagating site.
    fn never_seen(prior: Beta, prior_name: &str, sites: usize) -> Posterior {
        let mix = BetaMix::prior(prior, sites);
        let (lo, hi) = mix.interval(CREDIBLE_MASS);
        Posterior {
            alpha: prior.alpha,
            beta: prior.beta,
            interval: Interval {
                mean: mix.mean(),
                lo,
                hi,
            },
            evidence: 0,
            prior: prior_name.to_string(),
            fallback_share: mix.low,
            propagate_share: mix.high,
        }
    }

    /// The name of [`Posterior::unrecorded`]'s prior.
    pub const UNRECORDED: &'static str = "unrecorded";

    /// No learned rate: the traces never recorded whether the event happened (a format without
    /// span status). Its mean and interval are 0 and it has no [`Posterior::distribution`], so
    /// the simulator draws no such events: an operation whose errors were never recorded fails
    /// only through its calls and the faults put on it, not at a rate guessed from nothing
    /// (Jeffreys' prior with no evidence would say 50%).
    pub fn unrecorded() -> Posterior {
        Posterior {
            alpha: 0.0,
            beta: 0.0,
            interval: Interval {
                mean: 0.0,
                lo: 0.0,
                hi: 0.0,
            },
            evidence: 0,
            prior: Self::UNRECORDED.to_string(),
            fallback_share: 0.0,
            propagate_share: 0.0,
        }
    }

    /// Whether this is [`Posterior::unrecorded`].
    pub fn is_unrecorded(&self) -> bool {
        self.prior == Self::UNRECORDED
    }

    /// The distribution (the Beta; see [`Posterior::mixture`] for the shares moved from it).
    pub fn distribution(&self) -> Option<Beta> {
        Beta::new(self.alpha, self.beta)
    }

    /// The whole distribution: the Beta with [`Posterior::fallback_share`] and
    /// [`Posterior::propagate_share`] moved from it.
    pub fn mixture(&self) -> Option<BetaMix> {
        Some(BetaMix {
            main: self.distribution()?,
            low: self.fallback_share,
            high: self.propagate_share,
        })
    }
}

/// How a timeout was seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeoutEvidence {
    /// Client spans ended while their server span ran on.
    Cut,
    /// Failed attempts piled up at one duration.
    Pile,
}

/// A timeout threshold, as a distribution over what was seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timeout {
    /// Median threshold, milliseconds.
    pub median_ms: f64,
    /// 5th percentile of the thresholds seen (or the sketch's resolution), milliseconds.
    pub lo_ms: f64,
    /// 95th percentile, milliseconds.
    pub hi_ms: f64,
    /// Cut or piled attempts behind it.
    pub evidence: u64,
    /// How it was seen.
    pub seen: TimeoutEvidence,
}

/// Quantiles of a duration sketch, milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quantiles {
    /// Values in the sketch.
    pub count: u64,
    /// Median.
    pub p50_ms: f64,
    /// 90th percentile.
    pub p90_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
}

impl Quantiles {
    /// Of a sketch of nanoseconds.
    pub fn of(s: &LogSketch) -> Quantiles {
        Quantiles {
            count: s.count(),
            p50_ms: ms(s, 0.5),
            p90_ms: ms(s, 0.9),
            p99_ms: ms(s, 0.99),
        }
    }
}

/// The `q` quantile in milliseconds, to the microsecond (0 when empty).
pub(crate) fn ms(sketch: &LogSketch, q: f64) -> f64 {
    let v = sketch.quantile(q).unwrap_or(0.0) / 1e6;
    (v * 1000.0).round() / 1000.0
}

/// An endpoint's traffic.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Its share of all user requests.
    pub share: f64,
    /// Requests per second over the model's window.
    pub per_second: f64,
}

/// An operation or a virtual node, as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// `"<service> <operation>"`, or the peer's name for a virtual node.
    pub id: String,
    /// The service (for a virtual node, the peer's name).
    pub service: String,
    /// The entry span name (for a virtual node, the peer's name).
    pub operation: String,
    /// An uninstrumented peer seen only through client spans.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// A user-facing endpoint: seen as a trace root.
    pub endpoint: bool,
    /// Invocations (for a virtual node: attempts that reached it).
    pub invocations: u64,
    /// Of those, failed.
    pub errors: u64,
    /// Of those, trace roots.
    pub roots: u64,
    /// Durations (for a virtual node: as its callers saw them), nanoseconds.
    #[serde(skip)]
    pub duration_ns: LogSketch,
    /// Self time, nanoseconds (a virtual node's is its duration).
    #[serde(skip)]
    pub self_ns: LogSketch,
    /// Duration quantiles.
    pub duration: Quantiles,
    /// Self-time quantiles.
    pub self_time: Quantiles,
    /// P(an invocation fails on its own, with no failed call), Jeffreys prior.
    pub p_error: Posterior,
    /// For endpoints: their traffic.
    pub traffic: Option<Traffic>,
    /// For a virtual node: `database` (most calls to it carried `db.system` or `db.system.name`), `queue`
    /// (`messaging.*`) or `external` (neither).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_kind: Option<String>,
}

/// A call site, as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// Caller node id.
    pub from: String,
    /// Callee node id.
    pub to: String,
    /// The counts behind everything else.
    #[serde(skip)]
    pub stats: CallStats,
    /// Attempts, failed attempts, calls, failed calls.
    pub attempts: u64,
    /// Failed attempts.
    pub attempt_errors: u64,
    /// Calls (attempts with their retries).
    pub calls: u64,
    /// Calls failed after their retries.
    pub failed: u64,
    /// Durations of attempts as the caller saw them.
    pub duration: Quantiles,
    /// Client minus server duration (network and queueing).
    pub gap: Quantiles,
    /// `calls_per_invocation[k]`: caller invocations that made this call `k` times.
    pub calls_per_invocation: Vec<u64>,
    /// How the call is made.
    pub mode: Mode,
    /// Most retries seen after a failure; `None` when no attempt failed.
    pub retries: Option<u32>,
    /// The timeout, when seen.
    pub timeout: Option<Timeout>,
    /// P(caller fails | this call failed after its retries).
    pub p_propagate: Posterior,
}

impl Edge {
    /// The mean number of calls per caller invocation.
    pub fn mean_calls(&self) -> f64 {
        let n: u64 = self.calls_per_invocation.iter().sum();
        let total: u64 = self
            .calls_per_invocation
            .iter()
            .enumerate()
            .map(|(k, &c)| k as u64 * c)
            .sum();
        if n == 0 {
            0.0
        } else {
            total as f64 / n as f64
        }
    }
}

/// A fitted prior of P(propagate).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorFit {
    /// The group (`all` for the global prior).
    pub group: String,
    /// Beta alpha.
    pub alpha: f64,
    /// Beta beta.
    pub beta: f64,
    /// Call sites with evidence it was fitted on (0: not fitted, the global prior is used).
    pub sites: usize,
}

/// The model as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct View {
    /// What the traces looked like.
    pub quality: TraceQuality,
    /// Client calls to an instrumented service with no server span below them (refused, or cut
    /// before the server saw them), placed on that service.
    pub calls_to_instrumented_without_server: u64,
    /// The time the spans cover.
    pub window: Option<Window>,
    /// Seconds of it with traffic ([`Model::traffic_seconds`]): rates are per second of these.
    pub traffic_seconds: Option<f64>,
    /// Operations and virtual nodes, sorted by id.
    pub nodes: Vec<Node>,
    /// Call sites, sorted by (from, to).
    pub edges: Vec<Edge>,
    /// The priors of P(propagate), global first.
    pub priors: Vec<PriorFit>,
}

impl View {
    /// How many nodes' spans never recorded a status ([`Posterior::unrecorded`] own error rate).
    pub fn unrecorded_operations(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.p_error.is_unrecorded())
            .count()
    }

    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.id.as_str().cmp(id))
            .ok()
            .and_then(|i| self.nodes.get(i))
    }

    /// The edge `from → to`.
    pub fn edge(&self, from: &str, to: &str) -> Option<&Edge> {
        self.edges
            .binary_search_by(|e| (e.from.as_str(), e.to.as_str()).cmp(&(from, to)))
            .ok()
            .and_then(|i| self.edges.get(i))
    }
}

/// A peer or service name as a comparable key: lower case, without port or domain.
pub(crate) fn normalise(name: &str) -> String {
    let host = name.rsplit_once(':').map_or(name, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            name
        }
    });
    let first = host.split('.').next().unwrap_or(host);
    first.to_ascii_lowercase()
}

pub(crate) struct Resolver<'m> {
    model: &'m Model,
    op_index: BTreeMap<&'m str, usize>,
    /// Instrumented services by normalised name.
    services: BTreeMap<String, &'m str>,
    /// Operations of each service, busiest first.
    ops_of: BTreeMap<&'m str, Vec<usize>>,
    /// (caller, client span name) → callees it reached, with attempts.
    reached: BTreeMap<(&'m str, &'m str), Vec<(&'m str, u64)>>,
    /// caller → (callee, attempts) of its arrived calls.
    calls_of: BTreeMap<&'m str, Vec<(&'m str, u64)>>,
    /// (caller, peer, producer span name) → the consumer that took most of its messages in
    /// other traces (span links), with how many.
    linked: BTreeMap<(&'m str, &'m str, &'m str), (&'m str, u64)>,
}

impl<'m> Resolver<'m> {
    pub(crate) fn new(model: &'m Model) -> Self {
        let mut op_index = BTreeMap::new();
        let mut services = BTreeMap::new();
        let mut ops_of: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, op) in model.operations.iter().enumerate() {
            op_index.insert(op.id.as_str(), i);
            services.insert(normalise(&op.service), op.service.as_str());
            ops_of.entry(op.service.as_str()).or_default().push(i);
        }
        for ops in ops_of.values_mut() {
            ops.sort_by_key(|&i| {
                let op = &model.operations[i];
                (std::cmp::Reverse(op.invocations), op.id.as_str())
            });
        }
        let mut reached: BTreeMap<(&str, &str), Vec<(&str, u64)>> = BTreeMap::new();
        let mut calls_of: BTreeMap<&str, Vec<(&str, u64)>> = BTreeMap::new();
        for c in &model.calls {
            for (name, &n) in &c.client_names {
                reached
                    .entry((c.from.as_str(), name.as_str()))
                    .or_default()
                    .push((c.to.as_str(), n));
            }
            calls_of
                .entry(c.from.as_str())
                .or_default()
                .push((c.to.as_str(), c.stats.attempts));
        }
        let mut linked: BTreeMap<(&str, &str, &str), (&str, u64)> = BTreeMap::new();
        for l in &model.links {
            let key = (l.from.as_str(), l.peer.as_str(), l.name.as_str());
            let best = linked.entry(key).or_insert((l.to.as_str(), 0));
            if l.messages > best.1 || (l.messages == best.1 && l.to.as_str() < best.0) {
                *best = (l.to.as_str(), l.messages);
            }
        }
        Resolver {
            model,
            op_index,
            services,
            ops_of,
            reached,
            calls_of,
            linked,
        }
    }

    fn service_of(&self, op: &str) -> Option<&'m str> {
        let i = *self.op_index.get(op)?;
        Some(self.model.operations[i].service.as_str())
    }

    /// The consumer that took most of the messages of these producer spans in other traces
    /// (span links), if any did.
    pub(crate) fn linked_target(&self, caller: &str, peer: &str, name: &str) -> Option<&'m str> {
        let &(to, _) = self.linked.get(&(caller, peer, name))?;
        self.op_index.contains_key(to).then_some(to)
    }

    /// The instrumented operation a call from `caller` named `name` to `peer` was meant for.
    pub(crate) fn target(&self, caller: &str, peer: &str, name: &str) -> Option<&'m str> {
        if let Some(to) = self.linked_target(caller, peer, name) {
            return Some(to);
        }
        let svc = *self.services.get(&normalise(peer))?;
        if Some(svc) == self.service_of(caller) {
            // Real data names a service's own database or cache after the service: not a call
            // to itself that never arrived.
            return None;
        }
        let in_svc = |op: &str| self.service_of(op) == Some(svc);
        let best = |cands: &[(&'m str, u64)]| {
            cands
                .iter()
                .filter(|(op, _)| in_svc(op))
                .max_by(|a, b| a.1.cmp(&b.1).then_with(|| b.0.cmp(a.0)))
                .map(|&(op, _)| op)
        };
        if let Some(op) = self.reached.get(&(caller, name)).and_then(|c| best(c)) {
            return Some(op);
        }
        let ops = self.ops_of.get(svc)?;
        let ops_ref = &self.model.operations;
        if let Some(&i) = ops.iter().find(|&&i| ops_ref[i].operation == name) {
            return Some(ops_ref[i].id.as_str());
        }
        if let Some(op) = self.calls_of.get(caller).and_then(|c| best(c)) {
            return Some(op);
        }
        ops.first().map(|&i| ops_ref[i].id.as_str())
    }
}

/// The prior group of a call site.
fn group(is_virtual: bool, mode: Mode) -> String {
    format!(
        "{}/{}",
        if is_virtual { "virtual" } else { "service" },
        mode.as_str()
    )
}

/// Fits a prior on `(propagated, evidence)` pairs, bounded as the module documentation says.
fn fit(sites: &[(u64, u64)], fallback: Beta) -> Beta {
    let s = sites.iter().filter(|(_, n)| *n > 0).count();
    if s == 0 {
        return fallback;
    }
    let max_c = (1.0 + s as f64 / 2.0).min(20.0);
    let b = fit_prior(sites, MIN_CONCENTRATION.min(max_c), max_c, fallback);
    let edge = 1.0 / (s as f64 + 2.0);
    let c = b.alpha + b.beta;
    let m = (b.alpha / c).clamp(edge, 1.0 - edge);
    Beta::new(m * c, (1.0 - m) * c).unwrap_or(fallback)
}

fn timeout_of(stats: &CallStats) -> Option<Timeout> {
    let to_ms = |ns: f64| (ns / 1e3).round() / 1e3;
    if !stats.cut_ns.is_empty() {
        let q = |p| stats.cut_ns.quantile(p).unwrap_or(0.0);
        // Server spans that outlive their caller's failed attempts are a cut only where they do
        // not outlive its successful ones as well, as often and by as much: skewed clocks, or a
        // server finishing its work after answering, make failed and successful calls alike
        // look "cut" (a black-box test saw such sites learn a timeout at the median call). A
        // timeout's cuts are failures only, and its servers run on for the rest of their work
        // (a clock 3 ms off outlived every success by 2.5 ms, the cut calls by 30 ms).
        let cuts = stats.cut_ns.count() as f64;
        let failures = (stats.failed_ns.count() as f64).max(cuts);
        let oks = stats.ok_ns.count() as f64;
        let outlived = stats.outlived_ok_ns.count() as f64;
        let median = |s: &LogSketch| s.quantile(0.5).unwrap_or(0.0);
        let skew = outlived > 0.0
            && outlived / oks.max(1.0) * 2.0 >= cuts / failures
            && median(&stats.cut_overrun_ns) <= 3.0 * median(&stats.outlived_ok_ns) + 1e6;
        if !skew {
            return Some(Timeout {
                median_ms: to_ms(q(0.5)),
                lo_ms: to_ms(q(0.05) * (1.0 - RELATIVE_ACCURACY)),
                hi_ms: to_ms(q(0.95) * (1.0 + RELATIVE_ACCURACY)),
                evidence: stats.cut_ns.count(),
                seen: TimeoutEvidence::Cut,
            });
        }
    }
    let (v, c) = stats.unanswered_ns.mode()?;
    let failed = stats.unanswered_ns.count();
    // No attempt may have lasted longer uncut than a threshold: a success in normal traffic, or
    // any attempt while an experiment's fault was active (natural failures of a call slowed by a
    // latency fault pile at the slowed duration beside the slowed successes, and are no
    // threshold).
    let longest_ok = stats
        .ok_ns
        .max()
        .unwrap_or(0.0)
        .max(stats.longest_under_fault_ns as f64);
    let piles = c >= 3 && c * 5 >= failed && v > 0.0;
    if !piles || longest_ok > v * (1.0 + 2.0 * RELATIVE_ACCURACY) {
        return None;
    }
    // Calls that typically last as long as the pile (a database call that always takes 2 ms)
    // fail at their usual duration: that is no threshold cutting them.
    let typical_ok = stats.ok_ns.quantile(0.5).unwrap_or(0.0);
    if typical_ok >= v * (1.0 - 2.0 * RELATIVE_ACCURACY) {
        return None;
    }
    Some(Timeout {
        median_ms: to_ms(v),
        lo_ms: to_ms(v * (1.0 - RELATIVE_ACCURACY)),
        hi_ms: to_ms(v * (1.0 + RELATIVE_ACCURACY)),
        evidence: c,
        seen: TimeoutEvidence::Pile,
    })
}

/// Whether any attempt of the call site was seen failing, so that its retries are known.
/// Normal traffic shows it as failed attempts; an experiment's evidence
/// ([`Model::evidence_under_fault`]) carries only the caller's side of its failures: how they
/// propagated and how often they were retried.
fn failures_seen(stats: &CallStats) -> bool {
    stats.attempt_errors > 0
        || stats.propagated.saturating_add(stats.survived) > 0
        || stats.retries.iter().skip(1).any(|&c| c > 0)
}

fn mode_of(stats: &CallStats) -> Mode {
    if stats.asynchronous.saturating_mul(2) > stats.attempts {
        Mode::Asynchronous
    } else if stats.parallel.saturating_mul(2) > stats.calls {
        Mode::Parallel
    } else {
        Mode::Sequential
    }
}

impl Model {
    /// The model as read: calls placed, behaviour derived, posteriors computed.
    pub fn view(&self) -> View {
        let r = Resolver::new(self);
        let mut edges: BTreeMap<(String, String), CallStats> = BTreeMap::new();
        for c in &self.calls {
            edges
                .entry((c.from.clone(), c.to.clone()))
                .or_default()
                .merge(&c.stats);
        }
        // Virtual nodes by id: the peer's name, unless an operation already has that id (a peer
        // called `pg main` beside service `pg`'s `main`), which gets [`PEER_SUFFIX`] so the
        // two are not one node.
        let mut virtuals: BTreeMap<String, (String, CallStats)> = BTreeMap::new();
        let virtual_id = |peer: &str| {
            if r.op_index.contains_key(peer) {
                format!("{peer}{PEER_SUFFIX}")
            } else {
                peer.to_string()
            }
        };
        let mut to_instrumented = 0;
        for u in &self.unarrived {
            if let Some(op) = r.linked_target(&u.from, &u.peer, &u.name) {
                // Messages consumed in other traces: the call arrived, just not in its trace.
                edges
                    .entry((u.from.clone(), op.to_string()))
                    .or_default()
                    .merge(&u.stats);
                continue;
            }
            let to = match r.target(&u.from, &u.peer, &u.name) {
                Some(op) => {
                    to_instrumented += u.stats.attempts;
                    op.to_string()
                }
                None => {
                    let id = virtual_id(&u.peer);
                    virtuals
                        .entry(id.clone())
                        .or_insert_with(|| (u.peer.clone(), CallStats::default()))
                        .1
                        .merge(&u.stats);
                    id
                }
            };
            edges
                .entry((u.from.clone(), to))
                .or_default()
                .merge(&u.stats);
        }

        // Nodes.
        let total_roots: u64 = self.operations.iter().map(|o| o.roots).sum();
        let jeffreys = Beta::new(0.5, 0.5).unwrap_or(Beta {
            alpha: 0.5,
            beta: 0.5,
        });
        let mut nodes: Vec<Node> = self
            .operations
            .iter()
            .map(|o| Node {
                id: o.id.clone(),
                service: o.service.clone(),
                operation: o.operation.clone(),
                is_virtual: false,
                endpoint: o.roots > 0,
                invocations: o.invocations,
                errors: o.errors,
                roots: o.roots,
                duration: Quantiles::of(&o.duration_ns),
                self_time: Quantiles::of(&o.self_ns),
                duration_ns: o.duration_ns.clone(),
                self_ns: o.self_ns.clone(),
                p_error: if o.clean == 0 && o.unrecorded > 0 {
                    Posterior::unrecorded()
                } else {
                    Posterior::new(jeffreys, "jeffreys", o.clean_errors, o.clean)
                },
                traffic: (o.roots > 0).then(|| Traffic {
                    share: o.roots as f64 / total_roots.max(1) as f64,
                    per_second: self.traffic_seconds().map_or(0.0, |s| o.roots as f64 / s),
                }),
                peer_kind: None,
            })
            .collect();
        for (id, (peer, s)) in &virtuals {
            let d = s.duration_ns();
            nodes.push(Node {
                id: id.clone(),
                service: peer.clone(),
                operation: peer.clone(),
                is_virtual: true,
                endpoint: false,
                invocations: s.attempts,
                errors: s.attempt_errors,
                roots: 0,
                duration: Quantiles::of(&d),
                self_time: Quantiles::of(&d),
                duration_ns: d.clone(),
                self_ns: d,
                p_error: Posterior::new(jeffreys, "jeffreys", s.attempt_errors, s.attempts),
                traffic: None,
                peer_kind: Some(
                    match self
                        .peer_kinds
                        .binary_search_by(|k| k.peer.as_str().cmp(peer))
                        .ok()
                        .and_then(|i| self.peer_kinds.get(i))
                    {
                        Some(k) if k.database * 2 > s.attempts => "database",
                        Some(k) if k.messaging * 2 > s.attempts => "queue",
                        _ => "external",
                    }
                    .to_string(),
                ),
            });
        }
        nodes.sort_by(|a, b| a.id.cmp(&b.id));
        let is_virtual = |id: &str| virtuals.contains_key(id) && !r.op_index.contains_key(id);

        // Priors of P(propagate), fitted on the sites with evidence.
        let evidence = |s: &CallStats| (s.propagated, s.propagated + s.survived);
        let all: Vec<(u64, u64)> = edges.values().map(evidence).collect();
        let uniform = Beta::new(1.0, 1.0).unwrap_or(jeffreys);
        let global = fit(&all, uniform);
        let mut by_group: BTreeMap<String, Vec<(u64, u64)>> = BTreeMap::new();
        // Per group, the calling services of its sites with evidence.
        let mut callers: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for ((from, to), s) in &edges {
            let g = group(is_virtual(to), mode_of(s));
            if evidence(s).1 > 0 {
                let service = r
                    .op_index
                    .get(from.as_str())
                    .map_or(from.as_str(), |&i| self.operations[i].service.as_str());
                callers.entry(g.clone()).or_default().insert(service);
            }
            by_group.entry(g).or_default().push(evidence(s));
        }
        let count = |v: &[(u64, u64)]| v.iter().filter(|(_, n)| *n > 0).count();
        let mut priors = vec![PriorFit {
            group: "all".into(),
            alpha: global.alpha,
            beta: global.beta,
            sites: count(&all),
        }];
        let mut group_prior: BTreeMap<String, (Beta, String, usize)> = BTreeMap::new();
        for (g, sites) in &by_group {
            let n = count(sites);
            let enough =
                n >= MIN_GROUP_SITES && callers.get(g).map_or(0, |c| c.len()) >= MIN_GROUP_CALLERS;
            let (b, name, fitted_on) = if enough {
                (fit(sites, global), g.clone(), n)
            } else {
                (global, "all".to_string(), count(&all))
            };
            priors.push(PriorFit {
                group: g.clone(),
                alpha: b.alpha,
                beta: b.beta,
                sites: if enough { n } else { 0 },
            });
            group_prior.insert(g.clone(), (b, name, fitted_on));
        }

        let invocations_of = |id: &str| {
            r.op_index
                .get(id)
                .map_or(0, |&i| self.operations[i].invocations)
        };
        let edges: Vec<Edge> = edges
            .into_iter()
            .map(|((from, to), stats)| {
                let mode = mode_of(&stats);
                let g = group(is_virtual(&to), mode);
                let (prior, prior_name, fitted_on) = group_prior.get(&g).cloned().unwrap_or((
                    global,
                    "all".to_string(),
                    count(&all),
                ));
                let (k, n) = evidence(&stats);
                let with: u64 = stats.invocations_with_call();
                let mut per = stats.per_invocation.clone();
                if per.is_empty() {
                    per.push(0);
                }
                per[0] = invocations_of(&from).saturating_sub(with);
                let retries = failures_seen(&stats)
                    .then(|| stats.retries.iter().rposition(|&c| c > 0).unwrap_or(0) as u32);
                Edge {
                    attempts: stats.attempts,
                    attempt_errors: stats.attempt_errors,
                    calls: stats.calls,
                    failed: stats.failed,
                    duration: Quantiles::of(&stats.duration_ns()),
                    gap: Quantiles::of(&stats.gap_ns),
                    calls_per_invocation: per,
                    mode,
                    retries,
                    timeout: timeout_of(&stats),
                    p_propagate: if n == 0 {
                        Posterior::never_seen(prior, &prior_name, fitted_on)
                    } else {
                        Posterior::new(prior, &prior_name, k, n)
                    },
                    from,
                    to,
                    stats,
                }
            })
            .collect();

        View {
            quality: self.quality.clone(),
            calls_to_instrumented_without_server: to_instrumented,
            window: self.window,
            traffic_seconds: self.traffic_seconds(),
            nodes,
            edges,
            priors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalised_names() {
        assert_eq!(normalise("Payment.prod.svc.cluster.local:8080"), "payment");
        assert_eq!(normalise("redis"), "redis");
        assert_eq!(normalise("[::1]:80"), "[::1]");
    }

    #[test]
    fn a_site_that_never_failed_may_be_a_fallback_where_every_other_propagated() {
        let uniform = Beta::new(1.0, 1.0).unwrap();
        // Fifteen sites, each of whose failures all failed their callers.
        let sites: Vec<(u64, u64)> = (0..15).map(|i| (3 + i, 3 + i)).collect();
        let fitted = fit(&sites, uniform);
        // The Beta alone all but excludes a fallback ...
        assert!(fitted.cdf(0.1) < 0.01, "{fitted:?}");
        // ... the prior of a site that never failed keeps one chance in seventeen of one.
        let mix = BetaMix::prior(fitted, sites.len());
        assert!((mix.cdf(0.1) - 1.0 / 17.0).abs() < 0.01, "{mix:?}");
        let p = Posterior::never_seen(fitted, "all", sites.len());
        assert!(p.interval.lo < 0.1 && p.interval.hi > 0.95, "{p:?}");
        assert!(p.interval.mean < fitted.mean());
        // Draws follow the mixture: the share of draws below 0.1 is its cdf there.
        let n = 20_000;
        let below = (0..n)
            .filter(|i| mix.sample((*i as f64 + 0.5) / n as f64) < 0.1)
            .count() as f64
            / n as f64;
        assert!(
            (below - mix.cdf(0.1)).abs() < 0.005,
            "{below} vs {}",
            mix.cdf(0.1)
        );
        let draws: Vec<f64> = (0..n)
            .map(|i| mix.sample((i as f64 + 0.5) / n as f64))
            .collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let sd = (draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n as f64).sqrt();
        assert!((mean - mix.mean()).abs() < 0.002 && (sd - mix.std_dev()).abs() < 0.005);
        let plain = BetaMix {
            low: 0.0,
            high: 0.0,
            ..mix
        };
        assert!((plain.std_dev() - fitted.std_dev()).abs() < 1e-12);
        // Where the sites already hold fallbacks and propagating ones, nothing is moved.
        let mixed: Vec<(u64, u64)> = (0..16)
            .map(|i| if i % 2 == 0 { (0, 6) } else { (6, 6) })
            .collect();
        let m = BetaMix::prior(fit(&mixed, uniform), mixed.len());
        assert_eq!((m.low, m.high), (0.0, 0.0), "{m:?}");
        // A site with evidence is its Beta posterior alone.
        let seen = Posterior::new(fitted, "all", 0, 4);
        assert_eq!((seen.fallback_share, seen.propagate_share), (0.0, 0.0));
    }

    #[test]
    fn a_prior_from_few_sites_stays_uncertain() {
        let uniform = Beta::new(1.0, 1.0).unwrap();
        // Three sites, every failure propagated: the prior leans to 1 but does not claim it.
        let b = fit(&[(5, 5), (3, 3), (10, 10)], uniform);
        let (lo, hi) = b.interval(CREDIBLE_MASS);
        assert!(b.mean() > 0.6 && b.mean() <= 0.81, "{b:?}");
        assert!(hi - lo > 0.3, "{lo}..{hi}");
        // No evidence at all: the fallback.
        assert_eq!(fit(&[(0, 0)], uniform), uniform);
    }

    #[test]
    fn timeouts_need_evidence() {
        let mut s = CallStats::default();
        for d in [1e6, 2e6, 3e6] {
            s.ok_ns.add(d);
        }
        assert!(timeout_of(&s).is_none());
        // Failures piled at 50 ms, no success longer: a timeout.
        for _ in 0..4 {
            s.failed_ns.add(50e6);
        }
        // Failures that reached a server are no evidence.
        assert!(timeout_of(&s).is_none());
        for _ in 0..4 {
            s.unanswered_ns.add(50e6);
        }
        let t = timeout_of(&s).unwrap();
        assert_eq!(t.seen, TimeoutEvidence::Pile);
        assert!((t.median_ms - 50.0).abs() < 0.6, "{t:?}");
        // A success longer than the pile: not a timeout.
        let mut longer = s.clone();
        longer.ok_ns.add(80e6);
        assert!(timeout_of(&longer).is_none());
        // Nor an attempt that lasted longer while an experiment's fault was active (natural
        // failures of a call slowed by +500 ms pile at the slowed duration; a black-box test saw
        // them learned as a 500 ms timeout).
        let mut slowed = s.clone();
        slowed.longest_under_fault_ns = 52_000_000;
        assert!(timeout_of(&slowed).is_none());
        // Nor when successes typically last as long as the failures (a call that always takes
        // 50 ms and sometimes fails; a black-box test saw a fixed 2 ms call learned as a 2 ms
        // timeout).
        let mut fixed = CallStats::default();
        for _ in 0..20 {
            fixed.ok_ns.add(50e6);
        }
        for _ in 0..4 {
            fixed.unanswered_ns.add(50e6);
        }
        assert!(timeout_of(&fixed).is_none());
        s.ok_ns.add(80e6);
        // Cut spans are direct evidence.
        s.cut_ns.add(30e6);
        assert_eq!(timeout_of(&s).unwrap().seen, TimeoutEvidence::Cut);
    }
}
