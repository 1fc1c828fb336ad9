//! # augur-recommender: the most informative safe experiment
//!
//! ```text
//!  View ─┬─ candidates(scope, intents) ──► simulate_many (one shared baseline, posterior draws)
//!        │                                        │ per-draw endpoint outcomes
//!  intents.toml ──load/validate──► Intent ────────┤
//!                                                 ▼
//!              value (bits about every candidate's outcome + intents' verdict entropy) · harm · budget ──► ranking
//!                                                 ▲ × staleness
//!  experiment traces ──► outcome: predicted vs observed, evidence ──► refined model, surprise,
//!                        verdicts ──► ledger (append-only, beside the model) ─┘
//! ```
//!
//! See [`value`] for the estimator, [`recommend`] for candidates, value, harm and the budget,
//! [`intents`] for the hypotheses file, [`outcome`] for what an experiment teaches and
//! [`ledger`] for the record of it and staleness, [`report`] for the nightly report.
#![warn(missing_docs)]

pub mod intents;
pub mod ledger;
pub mod outcome;
pub mod plan;
pub mod recommend;
pub mod report;
#[cfg(test)]
mod tests;
pub mod value;

use std::path::PathBuf;

use augur_model::View;
use augur_simulator::{simulate_many, FaultSpec};

pub use intents::{Expect, Intent};
pub use recommend::{
    candidates, Experiment, Harm, IntentOdds, Options, Recommendation, Scope, LADDER,
};

/// Errors of the recommender.
#[derive(Debug, thiserror::Error)]
pub enum RecError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The intents file is not valid for this model.
    #[error("{path}: {reason}")]
    Intents {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The ledger is not one this augur can read or write.
    #[error("{path}: {reason}")]
    Ledger {
        /// The ledger file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Simulation failed (a bad fault, or no traffic).
    #[error(transparent)]
    Sim(#[from] augur_simulator::SimError),
    /// An experiment's traces cannot be its outcome (they show none of the model's system).
    #[error("{0}")]
    Outcome(String),
}

/// Value, harm and P(intents) of one experiment a person has in mind.
pub fn value_of(
    view: &View,
    intents: &[Intent],
    fault: &FaultSpec,
    opts: &Options,
) -> Result<Experiment, RecError> {
    // Its value is about what every candidate would show: simulate them all, with it.
    let mut specs = candidates(view, opts.scope, intents);
    specs.retain(|s| s != fault);
    specs.push(fault.clone());
    let sets: Vec<Vec<FaultSpec>> = specs.iter().map(|f| vec![f.clone()]).collect();
    let mut all: Vec<Vec<augur_simulator::OpPrediction>> = simulate_many(view, &sets, &opts.sim)?
        .into_iter()
        .map(|(p, _)| p.endpoints)
        .collect();
    let endpoints = recommend::requests_per_endpoint(view, opts.duration_s);
    let targets = recommend::targets(&all, &endpoints, opts);
    let Some(prediction) = all.pop() else {
        return Err(RecError::Sim(augur_simulator::SimError::NoTraffic));
    };
    let mut experiment =
        recommend::assess(view, intents, fault, prediction, &endpoints, &targets, opts);
    if !experiment.safe {
        // Over budget even at its smallest: the other candidates on its target, assessed, may
        // name a milder fault that fits.
        let same: Vec<(&FaultSpec, Experiment)> = specs
            .iter()
            .zip(all)
            .filter(|(s, _)| s.target == fault.target)
            .map(|(s, p)| {
                let e = recommend::assess(view, intents, s, p, &endpoints, &targets, opts);
                (s, e)
            })
            .collect();
        if let Some(note) =
            recommend::milder_note(fault, &experiment, same.iter().map(|(s, e)| (*s, e)))
        {
            experiment.why.push_str(&note);
        }
    }
    Ok(experiment)
}
