//! The closed loop that measures learning efficiency (shared by the integration test
//! `learning` and `examples/learning_efficiency.rs`).
//!
//! Start from a model learned on a world's normal traffic. K times: choose an experiment (by
//! augur's recommendation, at random, or round-robin over services with `down`, as a script
//! library does), run the world with that fault (generate its traces), record the outcome
//! (`augur_recommender::outcome`, which refines the model and appends to an in-memory ledger).
//! After each step, measure the model's prediction error over every candidate fault: the mean
//! absolute error of each endpoint's predicted error rate against the world really run with
//! that fault.

#![allow(dead_code)]

use std::collections::BTreeSet;

use augur_datasets::{Generator, World};
use augur_ingest::SpanBatch;
use augur_model::{Model, ModelBuilder, View};
use augur_recommender::ledger::{staleness_by_target, LedgerEntry};
use augur_recommender::outcome::{outcome, OutcomeOptions};
use augur_recommender::{Options, Scope};
use augur_simulator::{simulate_many, FaultSpec, SimOptions};

/// How experiments are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// augur's top recommendation (ledger staleness included).
    Augur,
    /// `augur plan` before any experiment: the whole set chosen at once from the starting
    /// model (a night's plan), run in its order without re-planning.
    Plan,
    /// A candidate drawn uniformly at random.
    Random,
    /// The next service, `down` (a script library's chaos schedule).
    RoundRobin,
    /// Greedy hindsight: at each step, every candidate is run and the one that lowers the error
    /// most is kept. No real strategy can know this; it bounds what one experiment a step can
    /// teach (expensive: a whole step's measurement per candidate; not in [`Strategy::ALL`]).
    Oracle,
}

impl Strategy {
    /// Every strategy, in the order reports show them.
    pub const ALL: [Strategy; 4] = [
        Strategy::Augur,
        Strategy::Plan,
        Strategy::Random,
        Strategy::RoundRobin,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Strategy::Augur => "augur",
            Strategy::Plan => "augur plan",
            Strategy::Random => "random",
            Strategy::RoundRobin => "round-robin",
            Strategy::Oracle => "oracle",
        }
    }
}

/// The loop's settings.
pub struct LoopConfig<'w> {
    pub world: &'w World,
    /// Normal traces the starting model learns from.
    pub learn_traces: usize,
    /// Traces recorded during each experiment.
    pub experiment_traces: usize,
    /// Traces per candidate fault for the truth.
    pub truth_traces: usize,
    /// Experiments per run.
    pub steps: usize,
    /// Simulation settings for recommendations and for measuring.
    pub sim: SimOptions,
    /// Posterior draws behind each recommendation and plan (`sim.samples` for measuring).
    pub recommend_samples: usize,
}

/// The world's truth under every candidate: (endpoint, error rate) per candidate.
pub struct Truth {
    pub candidates: Vec<FaultSpec>,
    pub rates: Vec<Vec<(String, f64)>>,
}

/// One run's curve.
pub struct Curve {
    pub strategy: Strategy,
    pub seed: u64,
    /// MAE before any experiment, then after each.
    pub mae: Vec<f64>,
    /// The experiments chosen.
    pub chosen: Vec<String>,
    /// Before any experiment and after each: how many of the [`SURPRISING`] call sites whose
    /// true P(propagate) is furthest from what the starting model believed had been tested
    /// (their P(propagate) got evidence from an experiment).
    pub surprising_tested: Vec<usize>,
    /// Before any experiment and after each: call sites with a true timeout whose timeout the
    /// model knows.
    pub timeouts_known: Vec<usize>,
}

/// How many of the most surprising call sites are followed.
pub const SURPRISING: usize = 5;

/// The call sites whose true P(propagate) is furthest from the starting model's belief (its
/// posterior mean: the prior where nothing failed), most surprising first (sites whose caller
/// calls the same callee from several places are left out: their truth is not one number).
pub fn surprising_sites(world: &World, base: &View) -> Vec<(String, String)> {
    let truth = world.static_truth();
    let mut sites: Vec<(f64, (String, String))> = base
        .edges
        .iter()
        .filter_map(|e| {
            let t = truth.edge(&e.from, &e.to)?;
            // Several call sites to one callee learn as one (docs/MODEL.md, known limits): the
            // truth of the first is not that of the rest.
            if t.sites > 1 {
                return None;
            }
            let gap = (t.p_propagate - e.p_propagate.interval.mean).abs();
            Some((gap, (e.from.clone(), e.to.clone())))
        })
        .collect();
    sites.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    sites.into_iter().take(SURPRISING).map(|(_, s)| s).collect()
}

fn tested(base: &View, now: &View, sites: &[(String, String)]) -> usize {
    sites
        .iter()
        .filter(|(f, t)| {
            let before = base.edge(f, t).map_or(0, |e| e.p_propagate.evidence);
            now.edge(f, t)
                .is_some_and(|e| e.p_propagate.evidence > before)
        })
        .count()
}

fn timeouts_known(world: &World, now: &View) -> usize {
    world
        .static_truth()
        .iter_edges()
        .filter(|t| t.timeout_ms.is_some())
        .filter(|t| {
            now.edge(&t.from, &t.to)
                .is_some_and(|e| e.timeout.is_some())
        })
        .count()
}

fn learn(world: &World, seed: u64, traces: usize, fault: Option<&FaultSpec>) -> Model {
    let mut gen = Generator::new(world, seed).expect("the world generates");
    if let Some(f) = fault {
        gen = gen
            .with_fault(
                f.to_string()
                    .parse()
                    .expect("the fault is the generator's too"),
            )
            .expect("the target is in the world");
    }
    // An experiment's traces carry its fault (`augur.experiment`): learned here, as
    // `augur outcome` does.
    let mut builder = ModelBuilder::new(augur_model::BuildOptions::learning_experiments());
    let mut left = traces;
    while left > 0 {
        let n = left.min(2_000);
        let mut batch = SpanBatch::new();
        gen.emit(n, &mut batch);
        builder.add_batch(&batch);
        left -= n;
    }
    builder.finish()
}

/// Services whose operations are endpoints: faults there are not candidates (the generator
/// does not emit traces whose endpoint's service is down).
fn entry_services(world: &World) -> BTreeSet<String> {
    world
        .endpoints
        .iter()
        .filter_map(|e| world.operations.get(e.operation))
        .map(|o| o.service.clone())
        .collect()
}

/// The starting model.
pub fn base_model(cfg: &LoopConfig<'_>, seed: u64) -> Model {
    learn(cfg.world, 1_000 + seed, cfg.learn_traces, None)
}

/// Every candidate of `augur recommend --scope service` whose target is not an entry service,
/// with the world's error rate at each endpoint under it.
pub fn truth(cfg: &LoopConfig<'_>, base: &View) -> Truth {
    let entry = entry_services(cfg.world);
    let candidates: Vec<FaultSpec> = augur_recommender::candidates(base, Scope::Service, &[])
        .into_iter()
        .filter(|c| !entry.contains(&c.target))
        .collect();
    let rates = candidates
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut gen = Generator::new(cfg.world, 50_000 + i as u64)
                .expect("the world generates")
                .with_fault(c.to_string().parse().expect("a generator fault"))
                .expect("the target is in the world");
            let mut batch = SpanBatch::new();
            gen.emit(cfg.truth_traces, &mut batch);
            let t = gen.truth();
            base.nodes
                .iter()
                .filter(|n| n.endpoint)
                .filter_map(|n| {
                    let nt = t.nodes.get(&n.id)?;
                    (nt.invocations >= 50)
                        .then(|| (n.id.clone(), nt.errors as f64 / nt.invocations as f64))
                })
                .collect()
        })
        .collect();
    Truth { candidates, rates }
}

/// Mean absolute error of the model's predicted endpoint error rates over every candidate.
pub fn mae(view: &View, truth: &Truth, sim: &SimOptions) -> f64 {
    let sets: Vec<Vec<FaultSpec>> = truth.candidates.iter().map(|c| vec![c.clone()]).collect();
    let predictions = simulate_many(view, &sets, sim).expect("the candidates simulate");
    let (mut sum, mut n) = (0.0, 0usize);
    for ((p, _), rates) in predictions.iter().zip(&truth.rates) {
        for (endpoint, rate) in rates {
            if let Some(e) = p.endpoints.iter().find(|e| &e.endpoint == endpoint) {
                sum += (e.predicted.error_rate.mean - rate).abs();
                n += 1;
            }
        }
    }
    sum / n.max(1) as f64
}

/// Each candidate's mean absolute error over its endpoints.
pub fn per_candidate(view: &View, truth: &Truth, sim: &SimOptions) -> Vec<(String, f64)> {
    let sets: Vec<Vec<FaultSpec>> = truth.candidates.iter().map(|c| vec![c.clone()]).collect();
    let predictions = simulate_many(view, &sets, sim).expect("the candidates simulate");
    predictions
        .iter()
        .zip(&truth.rates)
        .zip(&truth.candidates)
        .map(|(((p, _), rates), c)| {
            let errs: Vec<f64> = rates
                .iter()
                .filter_map(|(endpoint, rate)| {
                    let e = p.endpoints.iter().find(|e| &e.endpoint == endpoint)?;
                    Some((e.predicted.error_rate.mean - rate).abs())
                })
                .collect();
            (
                c.to_string(),
                errs.iter().sum::<f64>() / errs.len().max(1) as f64,
            )
        })
        .collect()
}

/// Runs the world with `spec` (traces seeded by `seed`) and records the outcome against
/// `model`.
fn experiment(
    cfg: &LoopConfig<'_>,
    model: &Model,
    spec: &FaultSpec,
    seed: u64,
) -> augur_recommender::outcome::Outcome {
    let observed = learn(cfg.world, seed, cfg.experiment_traces, Some(spec));
    let opts = OutcomeOptions {
        sim: cfg.sim.clone(),
        traffic_share: 1.0,
    };
    outcome(model, &observed, spec, &[], &opts).expect("the outcome is recorded")
}

/// The model after one experiment with `spec`.
pub fn refine_once(cfg: &LoopConfig<'_>, model: &Model, spec: &FaultSpec, seed: u64) -> Model {
    experiment(cfg, model, spec, 10_000 + seed * 100).refined
}

/// A splitmix64 step: the random strategy's seeded choices.
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One run of the loop.
pub fn run(cfg: &LoopConfig<'_>, strategy: Strategy, seed: u64, truth: &Truth) -> Curve {
    let mut model = base_model(cfg, seed);
    let mut ledger: Vec<LedgerEntry> = Vec::new();
    let mut rng = (seed + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    splitmix(&mut rng);
    let services: Vec<String> = {
        let entry = entry_services(cfg.world);
        let mut s: Vec<String> = model
            .operations
            .iter()
            .map(|o| o.service.clone())
            .filter(|s| !entry.contains(s))
            .collect();
        s.sort();
        s.dedup();
        s
    };
    let start = model.view();
    let surprising = surprising_sites(cfg.world, &start);
    let mut curve = Curve {
        strategy,
        seed,
        mae: vec![mae(&start, truth, &cfg.sim)],
        chosen: Vec::new(),
        surprising_tested: vec![0],
        timeouts_known: vec![timeouts_known(cfg.world, &start)],
    };
    let mut planned: Vec<FaultSpec> = Vec::new();
    for step in 0..cfg.steps {
        let view = model.view();
        let spec = match strategy {
            Strategy::Plan => {
                if step == 0 {
                    planned = plan_at_once(cfg, &view, truth);
                }
                planned[step.min(planned.len() - 1)].clone()
            }
            Strategy::Augur => {
                let opts = Options {
                    scope: Scope::Service,
                    sim: SimOptions {
                        samples: cfg.recommend_samples,
                        ..cfg.sim.clone()
                    },
                    staleness: staleness_by_target(&model, &view, &ledger),
                    ..Options::default()
                };
                let rec = augur_recommender::recommend::recommend(&view, &[], &opts)
                    .expect("the candidates simulate");
                rec.experiments
                    .iter()
                    .filter_map(|e| e.fault.parse::<FaultSpec>().ok())
                    .find(|f| truth.candidates.contains(f))
                    .expect("a candidate is recommended")
            }
            Strategy::Random => {
                let i = (splitmix(&mut rng) % truth.candidates.len() as u64) as usize;
                truth.candidates[i].clone()
            }
            Strategy::RoundRobin => FaultSpec {
                target: services[(seed as usize + step) % services.len()].clone(),
                kind: augur_simulator::FaultKind::Down,
            },
            Strategy::Oracle => {
                // The same traces the chosen experiment will be run with below.
                let s = 10_000 + seed * 100 + step as u64;
                let mut best: Option<(f64, &FaultSpec)> = None;
                for spec in &truth.candidates {
                    let after = mae(
                        &experiment(cfg, &model, spec, s).refined.view(),
                        truth,
                        &cfg.sim,
                    );
                    if best.is_none_or(|(b, _)| after < b) {
                        best = Some((after, spec));
                    }
                }
                best.map(|(_, spec)| spec.clone())
                    .expect("there are candidates")
            }
        };
        let result = experiment(cfg, &model, &spec, 10_000 + seed * 100 + step as u64);
        ledger.push(
            LedgerEntry::of(
                &result,
                &spec,
                format!("step {step}"),
                Vec::new(),
                String::new(),
            )
            .expect("the target is in the model"),
        );
        model = result.refined;
        curve.chosen.push(spec.to_string());
        let now = model.view();
        curve.mae.push(mae(&now, truth, &cfg.sim));
        curve
            .surprising_tested
            .push(tested(&start, &now, &surprising));
        curve.timeouts_known.push(timeouts_known(cfg.world, &now));
    }
    curve
}

/// `augur plan` from `view` for `cfg.steps` experiments with no budget to speak of, filled up
/// from the ranking when the plan stops early (nothing left adds value).
fn plan_at_once(cfg: &LoopConfig<'_>, view: &View, truth: &Truth) -> Vec<FaultSpec> {
    let opts = Options {
        scope: Scope::Service,
        sim: SimOptions {
            samples: cfg.recommend_samples,
            ..cfg.sim.clone()
        },
        ..Options::default()
    };
    let rec =
        augur_recommender::recommend::recommend(view, &[], &opts).expect("the candidates simulate");
    let endpoints = augur_recommender::recommend::requests_per_endpoint(view, opts.duration_s);
    let plan = augur_recommender::plan::plan(&rec, &endpoints, 1e15, cfg.steps, opts.sim.requests);
    let mut out: Vec<FaultSpec> = Vec::new();
    let ranked = rec.experiments.iter().map(|e| &e.fault);
    for fault in plan.experiments.iter().map(|e| &e.fault).chain(ranked) {
        if let Ok(f) = fault.parse::<FaultSpec>() {
            if truth.candidates.contains(&f) && !out.contains(&f) {
                out.push(f);
            }
        }
    }
    out.truncate(cfg.steps.max(1));
    out
}

/// The MAE after one experiment with each candidate from the starting model (what an oracle
/// choosing the first experiment would know), in the candidates' order.
pub fn one_step_gains(cfg: &LoopConfig<'_>, truth: &Truth, seed: u64) -> Vec<(String, f64)> {
    let model = base_model(cfg, seed);
    truth
        .candidates
        .iter()
        .map(|spec| {
            let result = experiment(cfg, &model, spec, 10_000 + seed * 100);
            (
                spec.to_string(),
                mae(&result.refined.view(), truth, &cfg.sim),
            )
        })
        .collect()
}

/// Mean curve of several runs, of the values `of` picks.
pub fn mean_of(curves: &[&Curve], of: impl Fn(&Curve) -> Vec<f64>) -> Vec<f64> {
    let series: Vec<Vec<f64>> = curves.iter().map(|c| of(c)).collect();
    let k = series.iter().map(Vec::len).min().unwrap_or(0);
    (0..k)
        .map(|i| series.iter().map(|v| v[i]).sum::<f64>() / series.len().max(1) as f64)
        .collect()
}

/// Mean error curve of several runs.
pub fn mean_curve(curves: &[&Curve]) -> Vec<f64> {
    mean_of(curves, |c| c.mae.clone())
}
