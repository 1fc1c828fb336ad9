//! The simulation: requests through the learned call graph in simulated time, under faults,
//! once per posterior draw of the model's parameters.
//!
//! ## One request
//! A request enters an endpoint (drawn by the learned traffic mix; an endpoint a small run never
//! drew gets one request). An invocation of an operation takes its self time (drawn from its
//! sketch; multiplied under `latency=xF`), fails on its own with its drawn error rate, and makes
//! its calls: for each call site, a number of calls drawn from the learned calls-per-invocation
//! distribution; sequential calls add their durations, parallel ones overlap (the invocation waits
//! for the longest), asynchronous ones (messages) cost only the send and their consumer runs on its
//! own, never failing the caller. A call is up to `1 + retries` attempts (where some failed calls
//! were retried at a step and others not, two call sites merged into one, each failed attempt is
//! retried with the chance learned at its step); an attempt into an
//! instrumented operation takes the network gap plus the callee's invocation, into a virtual node
//! its learned call duration, failing with the node's drawn error rate. A timeout cuts an attempt
//! at the threshold and fails it. Faults act on attempts into their target (`down`: fail fast;
//! `error=R`: fail with probability R more; `latency=+N`: N more milliseconds as the caller sees
//! it; on a message consumer, they act on its invocations, which its producers do not wait
//! for); a fault on a service or operation that is an endpoint also meets its users, the requests
//! entering it (`down`: refused in the typical time of the refusals seen; `error=R`: a share R more
//! fail; `latency=+N`: answered N later). Retries wait the back-off learned at the call site (else
//! the system's). A call that failed after its retries fails its caller with the drawn
//! P(propagate); a caller's call sites run in the order learned (their mean start after the caller
//! began), and a caller that fails that way makes no further calls: parallel calls already in
//! flight (starting, on average, before the failed call ended) run out, nothing after them starts.
//! A `down` operation is reported as its callers see it: every attempt failed, after the refusal
//! time; under `error=R` its attempts fail as its callers see them too (its own failures and
//! the injected ones), while a latency fault's delay is the callers' (the operation's own
//! duration is not stretched by `latency=+N`).
//!
//! Where servers were seen outlasting successful attempts (answering before their span ended),
//! that share of successful attempts lasts the callee's invocation less a drawn overrun (no
//! shorter than the shortest success seen), not the gap plus the invocation.
//!
//! Requests do not share resources in this model (no concurrency limits or queues are learned),
//! so each request's call tree is evaluated on its own in simulated time: the order of events
//! within a request is what an event queue would give, and requests need no common queue.
//!
//! ## Uncertainty
//! Each posterior draw samples every P(propagate) and every error rate from its Beta posterior,
//! every unknown retry count from the retries seen at other call sites, every learned chance of
//! a retry from its Beta(retried + ½, not retried + ½), and for every call site
//! whose timeout was never seen whether it has one and where, from the system's timeout habits
//! learned across call sites and drawn once per draw ([`augur_model::habits`]: what one experiment
//! reveals about timeouts informs every other call site), always above the longest attempt seen
//! there; so a fault that would meet a timeout normal traffic never reached gets a wide interval
//! rather than a confident "no effect". Then `requests`
//! requests run. Quantities are computed per draw; their mean and the 5th and 95th percentiles
//! across draws are the prediction and its 90% interval. The baseline runs the same draws, with
//! the same random numbers, without the fault.

use augur_model::beta::Beta;
use augur_model::{BetaMix, LogSketch, Mode, View};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::fault::{FaultKind, Resolved};
use crate::{Band, OpPrediction, Point, Predicted, Prediction, SimOptions};

/// Quantiles kept per sketch for sampling (inverse CDF with linear interpolation).
const TABLE: usize = 256;

/// Calls nested deeper than this are not made (learned graphs can hold cycles). Real call
/// chains are far shorter; 32 cut a black-box test's chain of 60 services silently.
const MAX_DEPTH: usize = 128;

/// Call attempts one request may make at most: a graph whose cycles fan out (a corrupt or
/// pathological model) would otherwise grow a request's tree exponentially with depth. The
/// learned worlds make tens to hundreds per request.
pub(crate) const MAX_EVENTS_PER_REQUEST: u64 = 1 << 12;

/// An inverse CDF: `TABLE + 1` quantiles.
#[derive(Debug, Clone)]
struct Table(Vec<f64>);

impl Table {
    fn of(s: &LogSketch) -> Option<Table> {
        if s.is_empty() {
            return None;
        }
        Some(Table(
            (0..=TABLE)
                .map(|i| s.quantile(i as f64 / TABLE as f64).unwrap_or(0.0))
                .collect(),
        ))
    }

    fn sample(&self, u: f64) -> f64 {
        let x = u * TABLE as f64;
        let i = (x as usize).min(TABLE - 1);
        let f = x - i as f64;
        let (a, b) = (self.0[i], self.0[i + 1]);
        a + (b - a) * f
    }
}

#[derive(Debug, Clone)]
struct SimNode {
    is_virtual: bool,
    self_time: Option<Table>,
    p_error: Option<Beta>,
    edges: std::ops::Range<usize>,
}

#[derive(Debug, Clone)]
struct SimEdge {
    callee: usize,
    /// How long after the caller's invocation began this call starts, on average (ns).
    start_offset_ns: f64,
    /// The wait before a retry, where retries were seen here.
    backoff: Option<Table>,
    /// Cumulative P(k calls), k = 0, 1, ...
    calls: Vec<f64>,
    mode: Mode,
    retries: Option<u32>,
    /// Where some failed calls were retried at a step and others not (two call sites merged
    /// into one, or a policy with conditions), per step: Beta(retried + ½, not + ½). Empty where
    /// every step was always or never retried: the budget `retries` says it all.
    retry_odds: Vec<Beta>,
    timeout_ns: Option<f64>,
    /// The longest attempt seen: a timeout, if the call has one, is above it.
    longest_ns: f64,
    gap: Option<Table>,
    /// Where servers outlasted successful attempts (`server_longer_ns`): the share of them, by
    /// how much, and the shortest success the caller saw.
    answered_early: Option<(f64, Table, f64)>,
    ok: Option<Table>,
    failed: Option<Table>,
    refused: Option<Table>,
    p_propagate: Option<BetaMix>,
}

/// A fault's effect on one call site (or on the requests entering an endpoint).
#[derive(Debug, Clone, Copy, Default)]
struct EdgeFault {
    down: bool,
    error: f64,
    add_ns: f64,
}

impl EdgeFault {
    fn add(&mut self, kind: FaultKind) {
        match kind {
            FaultKind::Down => self.down = true,
            FaultKind::Error(r) => self.error = 1.0 - (1.0 - self.error) * (1.0 - r),
            FaultKind::AddLatencyMs(ms) => self.add_ns += ms * 1e6,
            FaultKind::ScaleSelf(_) => {}
        }
    }

    fn any(&self) -> bool {
        self.down || self.error > 0.0 || self.add_ns != 0.0
    }
}

/// What a set of faults does: to each call site, to the requests entering each endpoint (a
/// fault on an entry service meets its users, who call it directly), and to each node's self
/// time.
struct Effects {
    edge: Vec<EdgeFault>,
    entry: Vec<EdgeFault>,
    scale: Vec<f64>,
}

/// The model compiled for simulation.
#[derive(Debug, Clone)]
pub struct Compiled {
    nodes: Vec<SimNode>,
    edges: Vec<SimEdge>,
    /// (node, cumulative share) of the endpoints.
    endpoints: Vec<(usize, f64)>,
    /// Retries seen at call sites where they are known, for sites where they are not.
    retries_seen: Vec<u32>,
    /// What is known of timeouts across call sites: the prior of the ones never seen.
    timeout_prior: TimeoutPrior,
    /// Back-offs before retries seen anywhere, for call sites that never retried.
    backoff: Option<Table>,
    /// How long a refused call typically takes (ns; the median over call sites of their median
    /// refusal, else 1 ms): a `down` endpoint refuses its users this fast.
    refused_ns: f64,
    names: Vec<(String, String, String, bool)>,
}

impl Compiled {
    /// Compiles a view.
    pub fn new(view: &View) -> Compiled {
        let index: std::collections::HashMap<&str, usize> = view
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut by_caller: Vec<Vec<SimEdge>> = vec![Vec::new(); view.nodes.len()];
        let mut retries_seen = Vec::new();
        let mut backoff = augur_model::LogSketch::new();
        let mut refusals: Vec<f64> = Vec::new();
        for e in &view.edges {
            backoff.merge(&e.stats.backoff_ns);
            refusals.extend(
                e.stats
                    .unanswered_ns
                    .quantile(0.5)
                    .filter(|x| x.is_finite()),
            );
            let (Some(&from), Some(&to)) = (index.get(e.from.as_str()), index.get(e.to.as_str()))
            else {
                continue;
            };
            let total: u64 = e.calls_per_invocation.iter().sum();
            let mut acc = 0u64;
            let calls = e
                .calls_per_invocation
                .iter()
                .map(|&c| {
                    acc += c;
                    if total == 0 {
                        1.0
                    } else {
                        acc as f64 / total as f64
                    }
                })
                .collect();
            if let Some(r) = e.retries {
                retries_seen.push(r);
            }
            let longest_ns = e.stats.longest_attempt_ns();
            by_caller[from].push(SimEdge {
                start_offset_ns: e.stats.mean_start_offset_ns().unwrap_or(0.0),
                backoff: Table::of(&e.stats.backoff_ns),
                callee: to,
                calls,
                mode: e.mode,
                retries: e.retries,
                retry_odds: if e.stats.retries_mixed() {
                    e.stats
                        .retry_steps()
                        .iter()
                        .map(|&(retried, failed)| {
                            let not = failed.saturating_sub(retried);
                            Beta::new(retried as f64 + 0.5, not as f64 + 0.5)
                        })
                        .collect::<Option<Vec<Beta>>>()
                        .unwrap_or_default()
                } else {
                    Vec::new()
                },
                timeout_ns: e.timeout.as_ref().map(|t| t.median_ms * 1e6),
                longest_ns,
                gap: Table::of(&e.stats.gap_ns),
                answered_early: Table::of(&e.stats.server_longer_ns).map(|t| {
                    let oks = e.stats.ok_ns.count().max(1) as f64;
                    let share = (e.stats.server_longer_ns.count() as f64 / oks).min(1.0);
                    (share, t, e.stats.ok_ns.min().unwrap_or(0.0))
                }),
                ok: Table::of(&e.stats.ok_ns),
                failed: Table::of(&e.stats.failed_ns),
                refused: Table::of(&e.stats.unanswered_ns),
                p_propagate: e.p_propagate.mixture(),
            });
        }
        let mut nodes = Vec::with_capacity(view.nodes.len());
        let mut edges = Vec::new();
        for (n, mut out) in view.nodes.iter().zip(by_caller) {
            let start = edges.len();
            // In the order the caller makes them: a failure that stops it stops what follows.
            out.sort_by(|a, b| a.start_offset_ns.total_cmp(&b.start_offset_ns));
            edges.extend(out);
            nodes.push(SimNode {
                is_virtual: n.is_virtual,
                self_time: Table::of(&n.self_ns),
                p_error: n.p_error.distribution(),
                edges: start..edges.len(),
            });
        }
        let mut cum = 0.0;
        let total: f64 = view
            .nodes
            .iter()
            .filter_map(|n| n.traffic.map(|t| t.share))
            .sum();
        let endpoints = view
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| {
                n.traffic.map(|t| {
                    cum += t.share / total.max(f64::MIN_POSITIVE);
                    (i, cum)
                })
            })
            .collect();
        let timeout_prior = view.timeout_habits();
        Compiled {
            nodes,
            edges,
            endpoints,
            retries_seen,
            timeout_prior,
            backoff: Table::of(&backoff),
            refused_ns: {
                refusals.sort_by(f64::total_cmp);
                refusals.get(refusals.len() / 2).copied().unwrap_or(1e6)
            },
            names: view
                .nodes
                .iter()
                .map(|n| {
                    (
                        n.id.clone(),
                        n.service.clone(),
                        n.operation.clone(),
                        n.endpoint,
                    )
                })
                .collect(),
        }
    }

    /// Call sites in the compiled model.
    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }
}

/// One posterior draw of the parameters.
struct Draw {
    p_error: Vec<f64>,
    p_propagate: Vec<f64>,
    retries: Vec<u32>,
    /// Per call site, the chance of a retry at each step where it is drawn (`retry_odds`);
    /// empty where the budget `retries` applies.
    retry_chance: Vec<Vec<f64>>,
    timeout_ns: Vec<Option<f64>>,
}

/// The shortest and longest typical timeout drawn when no timeout was seen anywhere,
/// nanoseconds (10 ms and 30 s).
const SHORTEST_TIMEOUT_NS: f64 = 1e7;
const LONGEST_TIMEOUT_NS: f64 = 30e9;

/// The prior of the timeouts never seen: the system's timeout habits learned across call
/// sites ([`augur_model::habits`]: the share π of call sites with a timeout and the log-normal
/// spread of thresholds, fitted to the timeouts seen and to the calls that lasted long without
/// being cut). Each posterior draw first draws the habits, shared by every call site whose
/// timeout was never seen (π from its posterior, μ around its estimate with the uncertainty of
/// a mean of that many sites); with no timeout seen anywhere, π is uniform and μ anywhere from
/// 10 ms to 30 s. Then each such site has a timeout with probability π, at a log-normal
/// threshold around e^μ, conditioned on being above the longest attempt seen there (a lower one
/// would have cut it). So every timeout an experiment reveals, and every slowed call it shows
/// surviving, sharpens the prior of all the others.
type TimeoutPrior = Option<augur_model::habits::TimeoutHabits>;

/// One draw of the timeout habits: (π, μ, σ).
fn timeout_habits(p: &TimeoutPrior, rng: &mut ChaCha8Rng) -> (f64, f64, f64) {
    match p {
        None => {
            let pi = rng.gen::<f64>();
            let (lo, hi) = (SHORTEST_TIMEOUT_NS.ln(), LONGEST_TIMEOUT_NS.ln());
            (pi, lo + (hi - lo) * rng.gen::<f64>(), 1.0)
        }
        Some(h) => {
            let pi = sample_beta(Some(h.share), rng.gen());
            let mu = h.log_mean + h.log_sd / h.effective.max(1.0).sqrt() * normal(rng);
            (pi, mu, h.log_sd)
        }
    }
}

/// A standard normal number (Box–Muller).
fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u: f64 = rng.gen::<f64>().max(f64::MIN_POSITIVE);
    let v: f64 = rng.gen();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// A threshold for a call site whose timeout was never seen, or none, under the draw's habits
/// (see [`TimeoutPrior`]).
fn unseen_timeout(habits: (f64, f64, f64), e: &SimEdge, rng: &mut ChaCha8Rng) -> Option<f64> {
    let (pi, mu, sigma) = habits;
    if e.mode == Mode::Asynchronous || rng.gen::<f64>() >= pi {
        return None;
    }
    // The habits' log-normal threshold, given that it is above what this site has survived.
    let floor = e.longest_ns.max(1e6);
    let below = normal_cdf((floor.ln() - mu) / sigma);
    let u = below + (1.0 - below) * rng.gen::<f64>();
    let t = (mu + sigma * normal_quantile(u.clamp(1e-12, 1.0 - 1e-12))).exp();
    Some(t.max(floor * (1.0 + 1e-9)))
}

/// The standard normal distribution function (Abramowitz and Stegun 7.1.26 on erf, error
/// below 1.5e-7).
fn normal_cdf(x: f64) -> f64 {
    let z = x.abs() / std::f64::consts::SQRT_2;
    let t = 1.0 / (1.0 + 0.327_591_1 * z);
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let erf = 1.0 - poly * (-z * z).exp();
    if x >= 0.0 {
        0.5 * (1.0 + erf)
    } else {
        0.5 * (1.0 - erf)
    }
}

/// The standard normal quantile (Acklam's rational approximation, relative error below 1.2e-9).
fn normal_quantile(p: f64) -> f64 {
    const A: [f64; 6] = [
        -3.969_683_028_665_376e1,
        2.209_460_984_245_205e2,
        -2.759_285_104_469_687e2,
        1.383_577_518_672_69e2,
        -3.066_479_806_614_716e1,
        2.506_628_277_459_239,
    ];
    const B: [f64; 5] = [
        -5.447_609_879_822_406e1,
        1.615_858_368_580_409e2,
        -1.556_989_798_598_866e2,
        6.680_131_188_771_972e1,
        -1.328_068_155_288_572e1,
    ];
    const C: [f64; 6] = [
        -7.784_894_002_430_293e-3,
        -3.223_964_580_411_365e-1,
        -2.400_758_277_161_838,
        -2.549_732_539_343_734,
        4.374_664_141_464_968,
        2.938_163_982_698_783,
    ];
    const D: [f64; 4] = [
        7.784_695_709_041_462e-3,
        3.224_671_290_700_398e-1,
        2.445_134_137_142_996,
        3.754_408_661_907_416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    if p < 0.024_25 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.024_25 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    }
}

/// Per-node outcomes of one run.
#[derive(Default, Clone)]
struct Tally {
    durations: Vec<f64>,
    failures: u64,
}

struct Run<'a> {
    m: &'a Compiled,
    draw: &'a Draw,
    fx: &'a Effects,
    rng: ChaCha8Rng,
    tally: Vec<Tally>,
    events: u64,
    /// No further call is made once `events` reaches this (the current request's budget).
    events_limit: u64,
}

impl Run<'_> {
    /// A request entering endpoint `n`, as its users see it: a fault on the endpoint itself
    /// refuses it fast (`down`), fails a share more of it, or delays its answer.
    fn enter(&mut self, n: usize) {
        let fault = self.fx.entry.get(n).copied().unwrap_or_default();
        if !fault.any() {
            self.invoke(n, 0);
            return;
        }
        if fault.down {
            self.events += 1;
            let t = &mut self.tally[n];
            t.durations.push(self.m.refused_ns);
            t.failures += 1;
            return;
        }
        let (_, failed) = self.invoke(n, 0);
        self.fault_last(n, failed, fault.add_ns, fault.error);
    }

    /// Applies a fault to the invocation of `n` just made (which `failed` or not) as its users
    /// or producers see it: `add_ns` later, and failed with probability `error` more.
    fn fault_last(&mut self, n: usize, failed: bool, add_ns: f64, error: f64) {
        let extra = !failed && error > 0.0 && self.rng.gen::<f64>() < error;
        // The root invocation is the last one tallied at `n` (its calls are tallied first).
        let t = &mut self.tally[n];
        if let Some(d) = t.durations.last_mut() {
            *d += add_ns;
        }
        t.failures += u64::from(extra);
    }

    fn invoke(&mut self, n: usize, depth: usize) -> (f64, bool) {
        let m = self.m;
        let Some(node) = m.nodes.get(n) else {
            return (0.0, false);
        };
        let u: f64 = self.rng.gen();
        let own = node.self_time.as_ref().map_or(0.0, |t| t.sample(u)) * self.fx.scale[n];
        let mut failed = self.rng.gen::<f64>() < self.draw.p_error[n];
        let (mut seq, mut par) = (0.0, 0.0f64);
        if depth < MAX_DEPTH && self.events < self.events_limit {
            // When a failure stops the caller (at this offset from its start, on average), the
            // parallel calls already in flight still finish; nothing after them starts.
            let mut stopped_at: Option<f64> = None;
            'sites: for e in node.edges.clone() {
                let edge = &m.edges[e];
                if let Some(t) = stopped_at {
                    if edge.mode != Mode::Parallel || edge.start_offset_ns >= t {
                        break 'sites;
                    }
                }
                let u: f64 = self.rng.gen();
                let k = edge.calls.iter().position(|&c| u < c).unwrap_or(0);
                for _ in 0..k {
                    let (d, f) = self.call(e, depth);
                    match edge.mode {
                        Mode::Parallel => par = par.max(d),
                        Mode::Sequential | Mode::Asynchronous => seq += d,
                    }
                    if stopped_at.is_some() {
                        // In flight when the caller failed: it runs out, and that is all.
                        break;
                    }
                    if f && self.rng.gen::<f64>() < self.draw.p_propagate[e] {
                        failed = true;
                        if edge.mode != Mode::Parallel {
                            break 'sites;
                        }
                        stopped_at = Some(edge.start_offset_ns + d);
                        break;
                    }
                }
            }
        }
        let d = own + seq + par;
        let t = &mut self.tally[n];
        t.durations.push(d);
        t.failures += u64::from(failed);
        (d, failed)
    }

    /// One call (with its retries): its duration as the caller sees it, and whether it failed.
    fn call(&mut self, e: usize, depth: usize) -> (f64, bool) {
        let edge = &self.m.edges[e];
        let fault = self.fx.edge[e];
        if edge.mode == Mode::Asynchronous {
            // The caller pays for the send; the consumer runs on its own. A fault on the
            // consumer acts on the consumer (a latency fault makes it finish later, an error
            // fault fails a share of its messages), not on the producer, which does not wait
            // (found by the backtest on a generated world: the producer's latency did not move).
            // A consumer that is down processes nothing; an uninstrumented one (a queue or
            // topic) is seen as its producers see it: the send, failing under `down`.
            self.events += 1;
            let d = edge.ok.as_ref().map_or(0.0, |t| t.sample(self.rng.gen()));
            let callee = edge.callee;
            if self.m.nodes[callee].is_virtual {
                let f = fault.down
                    || self.rng.gen::<f64>() < self.draw.p_error[callee]
                    || (fault.error > 0.0 && self.rng.gen::<f64>() < fault.error);
                let tally = &mut self.tally[callee];
                tally
                    .durations
                    .push(d * self.fx.scale[callee] + fault.add_ns);
                tally.failures += u64::from(f);
            } else if !fault.down {
                let (_, failed) = self.invoke(callee, depth + 1);
                self.fault_last(callee, failed, fault.add_ns, fault.error);
            }
            return (d, false);
        }
        // (The edge says whether its retries are drawn per step, so that the draw's table is
        // read only after a failure.)
        let per_step = !edge.retry_odds.is_empty();
        let attempts = if per_step {
            1 + edge.retry_odds.len()
        } else {
            1 + self.draw.retries[e] as usize
        };
        let mut total = 0.0;
        for a in 0..attempts {
            if a > 0 {
                if per_step && self.rng.gen::<f64>() >= self.draw.retry_chance[e][a - 1] {
                    break;
                }
                // The back-off before a retry: this call site's, else the system's.
                let table = edge.backoff.as_ref().or(self.m.backoff.as_ref());
                total += table.map_or(0.0, |t| t.sample(self.rng.gen()));
            }
            let (d, f) = self.attempt(e, fault, depth);
            total += d;
            if !f {
                return (total, false);
            }
        }
        (total, true)
    }

    fn attempt(&mut self, e: usize, fault: EdgeFault, depth: usize) -> (f64, bool) {
        self.events += 1;
        let edge = &self.m.edges[e];
        let callee = edge.callee;
        if fault.down {
            let d = edge
                .refused
                .as_ref()
                .map_or(1e6, |t| t.sample(self.rng.gen()));
            // The callee, as its callers see it: every attempt fails fast.
            let tally = &mut self.tally[callee];
            tally.durations.push(d);
            tally.failures += 1;
            return (d, true);
        }
        let (mut d, mut f) = if self.m.nodes[callee].is_virtual {
            let f = self.rng.gen::<f64>() < self.draw.p_error[callee];
            let table = if f {
                edge.failed.as_ref().or(edge.ok.as_ref())
            } else {
                edge.ok.as_ref().or(edge.failed.as_ref())
            };
            let d = table.map_or(0.0, |t| t.sample(self.rng.gen())) * self.fx.scale[callee];
            let tally = &mut self.tally[callee];
            tally.durations.push(d);
            tally.failures += u64::from(f);
            (d, f)
        } else {
            let gap = edge.gap.as_ref().map_or(0.0, |t| t.sample(self.rng.gen()));
            let (d, f) = self.invoke(callee, depth + 1);
            match &self.m.edges[e].answered_early {
                // The server answered before its span ended: the caller waited less.
                Some((share, by, shortest)) if !f && self.rng.gen::<f64>() < *share => {
                    ((d - by.sample(self.rng.gen())).max(*shortest), f)
                }
                _ => (d + gap, f),
            }
        };
        d += fault.add_ns;
        if fault.error > 0.0 && self.rng.gen::<f64>() < fault.error {
            // The callee, as its callers see it (as under `down`): this attempt failed.
            if !f {
                self.tally[callee].failures += 1;
            }
            f = true;
        }
        if let Some(t) = self.draw.timeout_ns[e] {
            if d > t {
                return (t, true);
            }
        }
        (d, f)
    }
}

fn sample_beta(b: Option<Beta>, u: f64) -> f64 {
    b.map_or(0.0, |b| b.quantile(u))
}

/// Per-draw outcome of one node: error rate, p50, p99 (ms); `None` if it never ran.
type Outcome = Option<(f64, f64, f64)>;

fn outcomes(tally: &mut [Tally]) -> Vec<Outcome> {
    tally
        .iter_mut()
        .map(|t| {
            let n = t.durations.len();
            if n == 0 {
                return None;
            }
            let q = |v: &mut Vec<f64>, p: f64| {
                let k = ((p * (n - 1) as f64).floor() as usize).min(n - 1);
                let (_, x, _) = v.select_nth_unstable_by(k, f64::total_cmp);
                *x / 1e6
            };
            let p50 = q(&mut t.durations, 0.5);
            let p99 = q(&mut t.durations, 0.99);
            Some((t.failures as f64 / n as f64, p50, p99))
        })
        .collect()
}

/// What faults do: per call site, and per node (self-time factor).
fn effects(m: &Compiled, faults: &[Resolved]) -> Effects {
    let mut fx = Effects {
        edge: vec![EdgeFault::default(); m.edges.len()],
        entry: vec![EdgeFault::default(); m.nodes.len()],
        scale: vec![1.0; m.nodes.len()],
    };
    let mut caller_of = vec![0usize; m.edges.len()];
    for (i, n) in m.nodes.iter().enumerate() {
        for e in n.edges.clone() {
            caller_of[e] = i;
        }
    }
    for f in faults {
        for (e, edge) in m.edges.iter().enumerate() {
            let hit = f.callees.contains(&edge.callee)
                && f.callers.as_ref().is_none_or(|c| c.contains(&caller_of[e]));
            if hit {
                fx.edge[e].add(f.spec.kind);
            }
        }
        if f.callers.is_none() {
            // The target's users: requests entering it where it is an endpoint.
            for &(n, _) in &m.endpoints {
                if f.callees.contains(&n) {
                    fx.entry[n].add(f.spec.kind);
                }
            }
        }
        if let FaultKind::ScaleSelf(x) = f.spec.kind {
            for &n in &f.callees {
                if let Some(s) = fx.scale.get_mut(n) {
                    *s *= x;
                }
            }
        }
    }
    fx
}

/// The seed of posterior draw `s`.
fn draw_seed(opts: &SimOptions, s: usize) -> u64 {
    opts.seed ^ (s as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Posterior draw `s` of the parameters.
fn make_draw(m: &Compiled, seed: u64) -> Draw {
    let mut prng = ChaCha8Rng::seed_from_u64(seed);
    Draw {
        p_error: m
            .nodes
            .iter()
            .map(|n| sample_beta(n.p_error, prng.gen()))
            .collect(),
        p_propagate: m
            .edges
            .iter()
            .map(|e| e.p_propagate.map_or(0.0, |b| b.sample(prng.gen())))
            .collect(),
        retries: m
            .edges
            .iter()
            .map(|e| {
                e.retries.unwrap_or_else(|| {
                    if m.retries_seen.is_empty() {
                        0
                    } else {
                        m.retries_seen[prng.gen_range(0..m.retries_seen.len())]
                    }
                })
            })
            .collect(),
        retry_chance: m
            .edges
            .iter()
            .map(|e| {
                e.retry_odds
                    .iter()
                    .map(|b| b.quantile(prng.gen()))
                    .collect()
            })
            .collect(),
        timeout_ns: {
            let habits = timeout_habits(&m.timeout_prior, &mut prng);
            m.edges
                .iter()
                .map(|e| {
                    e.timeout_ns
                        .or_else(|| unseen_timeout(habits, e, &mut prng))
                })
                .collect()
        },
    }
}

/// Runs `opts.requests` requests under one draw; returns per-node outcomes and call attempts.
fn run_one(
    m: &Compiled,
    draw: &Draw,
    seed: u64,
    fx: &Effects,
    opts: &SimOptions,
) -> (Vec<Outcome>, u64) {
    let mut run = Run {
        m,
        draw,
        fx,
        rng: ChaCha8Rng::seed_from_u64(seed.wrapping_add(1)),
        tally: vec![Tally::default(); m.nodes.len()],
        events: 0,
        events_limit: 0,
    };
    let mut drawn = vec![false; m.endpoints.len()];
    for _ in 0..opts.requests {
        run.events_limit = run.events.saturating_add(MAX_EVENTS_PER_REQUEST);
        let u: f64 = run.rng.gen();
        let k = m
            .endpoints
            .iter()
            .position(|(_, c)| u < *c)
            .or(m.endpoints.len().checked_sub(1));
        if let Some(k) = k {
            drawn[k] = true;
            run.enter(m.endpoints[k].0);
        }
    }
    // A run too small to draw every endpoint still predicts each: one request for any endpoint
    // the mix never drew (a run large enough to draw them all is unchanged). Drawn as a
    // request, not merely called by another endpoint's requests.
    for (k, &(n, _)) in m.endpoints.iter().enumerate() {
        if !drawn[k] {
            run.events_limit = run.events.saturating_add(MAX_EVENTS_PER_REQUEST);
            run.enter(n);
        }
    }
    let events = run.events;
    (outcomes(&mut run.tally), events)
}

/// The baseline: every draw without faults. Draws run in parallel.
struct Baseline {
    draws: Vec<(u64, Draw)>,
    outcomes: Vec<Vec<Outcome>>,
    events: u64,
}

/// A draw (seed, parameters) and its baseline run (outcomes, call attempts).
type DrawRun = ((u64, Draw), (Vec<Outcome>, u64));

fn baseline(m: &Compiled, opts: &SimOptions) -> Baseline {
    let fx = effects(m, &[]);
    let runs: Vec<DrawRun> = (0..opts.samples)
        .into_par_iter()
        .map(|s| {
            let seed = draw_seed(opts, s);
            let draw = make_draw(m, seed);
            let out = run_one(m, &draw, seed, &fx, opts);
            ((seed, draw), out)
        })
        .collect();
    let mut b = Baseline {
        draws: Vec::with_capacity(runs.len()),
        outcomes: Vec::with_capacity(runs.len()),
        events: 0,
    };
    for (d, (o, e)) in runs {
        b.draws.push(d);
        b.outcomes.push(o);
        b.events += e;
    }
    b
}

/// The faulted runs of every draw (sequentially: callers parallelise across faults).
fn faulted(
    m: &Compiled,
    base: &Baseline,
    faults: &[Resolved],
    opts: &SimOptions,
) -> (Vec<Vec<Outcome>>, u64) {
    let fx = effects(m, faults);
    let mut events = 0;
    let outcomes = base
        .draws
        .iter()
        .map(|(seed, draw)| {
            let (o, e) = run_one(m, draw, *seed, &fx, opts);
            events += e;
            o
        })
        .collect();
    (outcomes, events)
}

/// The mean and 90% interval (5th and 95th percentiles, interpolated) of per-draw values: how
/// every prediction's band is made. No values give zeros.
pub fn band(mut v: Vec<f64>) -> Band {
    if v.is_empty() {
        return Band {
            mean: 0.0,
            lo: 0.0,
            hi: 0.0,
        };
    }
    v.sort_by(f64::total_cmp);
    // Linear interpolation between the order statistics around p·(n − 1): with few draws the
    // nearest one alone can leave a couple of far-off draws wholly outside the band while they
    // pull the mean past it (a median of 497 ms "in [520, 521]").
    let q = |p: f64| {
        let at = p * (v.len() - 1) as f64;
        let (i, frac) = (at.floor() as usize, at - at.floor());
        let j = (i + 1).min(v.len() - 1);
        if frac == 0.0 || !v[j].is_finite() || !v[i].is_finite() {
            return v[i];
        }
        v[i] + (v[j] - v[i]) * frac
    };
    let r = |x: f64| (x * 1e6).round() / 1e6;
    Band {
        mean: r(v.iter().sum::<f64>() / v.len() as f64),
        lo: r(q(0.05)),
        hi: r(q(0.95)),
    }
}

/// Runs the simulation: the prediction under `faults` and the baseline without them. Returns
/// the prediction and the call attempts simulated.
pub fn simulate(m: &Compiled, faults: &[Resolved], opts: &SimOptions) -> (Prediction, u64) {
    let base = baseline(m, opts);
    let (out, events) = faulted(m, &base, faults, opts);
    (
        assemble(m, faults, &base.outcomes, &out),
        base.events + events,
    )
}

/// Simulates many fault sets against one shared baseline, in parallel across fault sets (the
/// recommender's candidates). Each prediction equals [`simulate`]'s for that fault set.
pub fn simulate_many(
    m: &Compiled,
    candidates: &[Vec<Resolved>],
    opts: &SimOptions,
) -> Vec<(Prediction, u64)> {
    let base = baseline(m, opts);
    candidates
        .par_iter()
        .map(|faults| {
            let (out, events) = faulted(m, &base, faults, opts);
            (assemble(m, faults, &base.outcomes, &out), events)
        })
        .collect()
}

fn assemble(
    m: &Compiled,
    faults: &[Resolved],
    base: &[Vec<Outcome>],
    faulted: &[Vec<Outcome>],
) -> Prediction {
    let mut endpoints = Vec::new();
    let mut operations = Vec::new();
    for (i, (id, service, operation, endpoint)) in m.names.iter().enumerate() {
        let per = |runs: &[Vec<Outcome>], k: usize| -> Vec<f64> {
            runs.iter()
                .filter_map(|r| r.get(i).copied().flatten())
                .map(|o| match k {
                    0 => o.0,
                    1 => o.1,
                    _ => o.2,
                })
                .collect()
        };
        if per(base, 0).is_empty() && per(faulted, 0).is_empty() {
            continue;
        }
        let mean = |v: Vec<f64>| band(v).mean;
        let p = OpPrediction {
            endpoint: id.clone(),
            service: service.clone(),
            operation: operation.clone(),
            baseline: Point {
                error_rate: mean(per(base, 0)),
                p50_ms: mean(per(base, 1)),
                p99_ms: mean(per(base, 2)),
            },
            predicted: Predicted {
                error_rate: band(per(faulted, 0)),
                p50_ms: band(per(faulted, 1)),
                p99_ms: band(per(faulted, 2)),
            },
            draws_run: per(faulted, 0).len(),
            per_draw: faulted
                .iter()
                .map(|r| r.get(i).copied().flatten())
                .collect(),
            per_draw_baseline: base.iter().map(|r| r.get(i).copied().flatten()).collect(),
        };
        if *endpoint {
            endpoints.push(p.clone());
        }
        operations.push(p);
    }
    Prediction {
        faults: faults.iter().map(|f| f.spec.to_string()).collect(),
        endpoints,
        operations,
    }
}

#[cfg(test)]
mod normal_tests {
    use super::{normal_cdf, normal_quantile};

    #[test]
    fn normal_functions_agree_with_known_values() {
        assert!((normal_cdf(0.0) - 0.5).abs() < 1e-7);
        assert!((normal_cdf(1.959_963_985) - 0.975).abs() < 2e-7);
        assert!((normal_cdf(-1.0) - 0.158_655_254).abs() < 2e-7);
        for p in [0.01, 0.2, 0.5, 0.9, 0.999] {
            assert!((normal_cdf(normal_quantile(p)) - p).abs() < 3e-7, "{p}");
        }
        assert!((normal_quantile(0.975) - 1.959_963_985).abs() < 1e-8);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_sample_the_distribution() {
        let mut s = LogSketch::new();
        for i in 1..=1000 {
            s.add(i as f64 * 1000.0);
        }
        let t = Table::of(&s).unwrap();
        assert!((t.sample(0.5) - 500_000.0).abs() < 10_000.0);
        assert!(t.sample(0.0) >= 1000.0 && t.sample(0.999_999) <= 1_000_000.0);
        assert!(Table::of(&LogSketch::new()).is_none());
    }

    #[test]
    fn bands_are_ordered() {
        let b = band((0..100).map(f64::from).collect());
        assert!(b.lo <= b.mean && b.mean <= b.hi);
        assert_eq!((b.lo, b.hi), (4.95, 94.05));
        // Two low draws of 32: the band interpolates toward them and holds the mean they pull.
        let mut v = vec![145.0, 145.0];
        v.extend([520.0; 30]);
        let b = band(v);
        assert_eq!((b.lo, b.hi), (351.25, 520.0));
        assert!(b.lo <= b.mean && b.mean <= b.hi, "{b:?}");
        assert_eq!(
            band(vec![7.0]),
            Band {
                mean: 7.0,
                lo: 7.0,
                hi: 7.0
            }
        );
    }
}
