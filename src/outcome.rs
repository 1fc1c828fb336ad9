//! `augur outcome` and `augur ledger`: record what an experiment showed, refine the model with
//! it, and show what the team has learned over time.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use augur_model::{BuildOptions, Model};
use augur_recommender::ledger::{self, LedgerEntry};
use augur_recommender::outcome::{outcome, OutcomeOptions};

use crate::{emit, Progress, ReadArgs};

/// What `augur outcome` was asked.
pub(crate) struct OutcomeArgs<'a> {
    pub model: &'a Path,
    pub fault: &'a str,
    pub traces: &'a [PathBuf],
    pub out: Option<&'a Path>,
    pub ledger: Option<&'a Path>,
    pub intents: Option<&'a Path>,
    pub traffic_share: f64,
    pub sim: augur_simulator::SimOptions,
    pub read: &'a ReadArgs,
    pub json: bool,
}

pub(crate) fn run_outcome(a: &OutcomeArgs<'_>) -> Result<()> {
    if !(a.traffic_share > 0.0 && a.traffic_share <= 1.0) {
        bail!("--traffic-share is a share of traffic, above 0 and at most 1");
    }
    crate::check_sim_options(a.sim.requests, a.sim.samples)
        .map_err(|m| anyhow::anyhow!("--{m}"))?;
    let spec: augur_simulator::FaultSpec = a.fault.parse()?;
    // The model and intents first: a bad one stops us before the traces are read.
    let base = Model::load(a.model)?;
    let view = base.view();
    let intents = match a.intents {
        Some(p) => augur_recommender::intents::load(p, &view)?,
        None => Vec::new(),
    };
    augur_recommender::outcome::fault_scope(&view, &spec)?;
    let (observed, _, labels) =
        crate::learn_labelled(a.traces, a.read, BuildOptions::learning_experiments())
            .context("learning the experiment's traces")?;
    // Traces that say which experiment they were recorded in (`augur.experiment`), and name
    // another fault, were probably given by mistake: say so (they are still used as told).
    let named_other: Vec<&String> = labels
        .iter()
        .filter(|l| {
            l.parse::<augur_simulator::FaultSpec>()
                .map_or(l.as_str() != a.fault, |f| f != spec)
        })
        .collect();
    if !named_other.is_empty() {
        let shown: Vec<&str> = named_other.iter().take(3).map(|l| l.as_str()).collect();
        eprintln!(
            "warning: spans in these traces carry augur.experiment = {}{}, not {}: were they recorded during another experiment?",
            shown.join(", "),
            if named_other.len() > 3 { ", ..." } else { "" },
            spec
        );
    }
    drop(view);

    let out = a.out.unwrap_or(a.model);
    let old_ledger = ledger::ledger_path(a.model);
    let new_ledger = a
        .ledger
        .map_or_else(|| ledger::ledger_path(out), Path::to_path_buf);
    // One outcome at a time on a model: two at once would each refine the model as read and
    // the second would overwrite the first's evidence (both ledger entries kept).
    let _lock = Lock::take(a.model)?;
    // A refined model written where another history already is would mix the two.
    if a.ledger.is_none()
        && new_ledger != old_ledger
        && new_ledger.exists()
        && std::fs::read(&new_ledger).ok() != std::fs::read(&old_ledger).ok()
    {
        bail!(
            "{} already has a ledger, {}, with another history than {}'s: choose another --out, \
             move that ledger away, or name the ledger to append to with --ledger",
            out.display(),
            new_ledger.display(),
            a.model.display()
        );
    }
    if new_ledger.is_dir() {
        bail!(
            "--ledger {}: is a directory (a ledger is a JSON Lines file)",
            new_ledger.display()
        );
    }
    // The same traces recorded twice would count their evidence twice. (Reading the history
    // also checks the ledger the entry will go to: a bad one stops us before any work.)
    let history = if a.ledger.is_some() || new_ledger.exists() {
        &new_ledger
    } else {
        &old_ledger
    };
    let window = observed.window.map(|w| (w.first_ns, w.last_ns));
    let entries = ledger::read(history).context("the ledger to append to")?;
    if let Some(e) = entries.iter().find(|e| {
        e.outcome.fault == spec.to_string()
            && e.outcome.traces.spans == observed.quality.spans
            && e.outcome.traces.first_ns.zip(e.outcome.traces.last_ns) == window
    }) {
        bail!(
            "these traces are already recorded in {} (the {} outcome of {}, {} spans over the same \
             window): recording them again would count their evidence twice",
            history.display(),
            e.outcome.fault,
            e.recorded_at,
            e.outcome.traces.spans
        );
    }
    let progress = Progress::spinner("predicting the experiment, comparing, refining the model");
    let result = outcome(
        &base,
        &observed,
        &spec,
        &intents,
        &OutcomeOptions {
            sim: a.sim.clone(),
            traffic_share: a.traffic_share,
        },
    );
    progress.finish();
    let result = result?;

    // A refined model written elsewhere takes the history with it (unless told where the
    // ledger is).
    if a.ledger.is_none() && new_ledger != old_ledger && old_ledger.exists() && !new_ledger.exists()
    {
        std::fs::copy(&old_ledger, &new_ledger).with_context(|| {
            format!(
                "copying the ledger {} to {}",
                old_ledger.display(),
                new_ledger.display()
            )
        })?;
    }
    result
        .refined
        .save(out)
        .with_context(|| format!("saving the refined model to {}", out.display()))?;
    let entry = LedgerEntry::of(
        &result,
        &spec,
        augur_ingest::lake::utc_text(now_ns()),
        a.traces.iter().map(|p| p.display().to_string()).collect(),
        out.display().to_string(),
    )?;
    ledger::append(&new_ledger, &entry)?;
    emit(a.json, &result.report, || result.report.to_text())?;
    eprintln!(
        "refined model written to {}; ledger entry appended to {}",
        out.display(),
        new_ledger.display()
    );
    Ok(())
}

/// `MODEL.outcome.lock`, held while an outcome is recorded on MODEL; removed when dropped.
struct Lock(PathBuf);

impl Lock {
    fn take(model: &Path) -> Result<Lock> {
        let mut name = model.as_os_str().to_owned();
        name.push(".outcome.lock");
        let path = PathBuf::from(name);
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
        {
            Ok(_) => Ok(Lock(path)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
                "another augur outcome is recording on {} ({} exists): wait for it; if none is \
                 running (one was killed), remove that file",
                model.display(),
                path.display()
            ),
            Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

pub(crate) fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

/// `augur ledger MODEL [--json]`.
pub(crate) fn run_ledger(model: &Path, json: bool) -> Result<()> {
    let path = ledger::ledger_path(model);
    if model.is_dir() {
        bail!(
            "{} is a directory: give the model file (its ledger is the file beside it, MODEL.ledger.jsonl)",
            model.display()
        );
    }
    if !model.exists() && !path.exists() {
        bail!(
            "{}: no such model (and no ledger at {})",
            model.display(),
            path.display()
        );
    }
    let entries = ledger::read(&path)?;
    if json {
        emit(true, &ledger_json(&entries), String::new)
    } else {
        crate::write_stdout(&ledger::to_text(&entries))
    }
}

/// The ledger's JSON form: `{"entries":[{"recorded_at","fault","traces","model","outcome"}]}`
/// (the stored neighbourhoods, model statistics kept for staleness, are left out).
pub(crate) fn ledger_json(entries: &[LedgerEntry]) -> serde_json::Value {
    let slim: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            serde_json::json!({
                "recorded_at": e.recorded_at,
                "fault": e.outcome.fault,
                "traces": e.traces,
                "model": e.model,
                "outcome": e.outcome,
            })
        })
        .collect();
    serde_json::json!({ "entries": slim })
}

/// The staleness of every tested target, from the ledger beside `model_path` (empty without
/// one).
pub(crate) fn staleness_of(
    model_path: &Path,
    model: &Model,
    view: &augur_model::View,
) -> Result<std::collections::BTreeMap<String, ledger::Staleness>> {
    let entries = ledger::read(&ledger::ledger_path(model_path))?;
    Ok(ledger::staleness_by_target(model, view, &entries))
}

/// `augur report`: writes DIR/report.html and DIR/report.json.
pub(crate) fn run_report(
    model_path: &Path,
    out: &Path,
    intents: Option<&Path>,
    previous: Option<&Path>,
    mut opts: augur_recommender::Options,
) -> Result<()> {
    // Everything that can be wrong with the inputs first, then the simulation.
    let previous = previous.map(Model::load).transpose()?;
    let (view, intents) = crate::model_and_intents(model_path, intents, &mut opts)?;
    let model = Model::load(model_path)?;
    if let Some(old) = &previous {
        crate::warn_if_unrelated(old, &model, "the report's drift since --previous");
    }
    let previous = previous.map(|m| m.view());
    let entries = ledger::read(&ledger::ledger_path(model_path))?;
    let rec = match crate::recommend_all(&view, &intents, &opts) {
        // A model with no traffic yet (a fresh `augur serve` state, only experiments' traces)
        // still gets its nightly page, saying so, rather than failing the nightly job.
        Err(e)
            if matches!(
                e.downcast_ref::<augur_recommender::RecError>(),
                Some(augur_recommender::RecError::Sim(
                    augur_simulator::SimError::NoTraffic
                ))
            ) =>
        {
            eprintln!("warning: {e}: the report lists no experiments");
            augur_recommender::Recommendation {
                experiments: Vec::new(),
            }
        }
        r => r?,
    };
    let report = augur_recommender::report::build(&augur_recommender::report::Inputs {
        path: &model_path.display().to_string(),
        model: &model,
        view: &view,
        recommendation: &rec,
        intents: &intents,
        ledger: &entries,
        previous: previous.as_ref(),
        generated_at: augur_ingest::lake::utc_text(now_ns()),
        utc: &augur_ingest::lake::utc_text,
    });
    crate::create_out_dir(out)?;
    let html = out.join("report.html");
    let json = out.join("report.json");
    std::fs::write(&html, report.to_html())
        .with_context(|| format!("writing {}", html.display()))?;
    std::fs::write(&json, serde_json::to_string_pretty(&report)? + "\n")
        .with_context(|| format!("writing {}", json.display()))?;
    eprintln!(
        "report written to {} and {} ({} experiments, {} intents, {} recorded outcomes)",
        html.display(),
        json.display(),
        report.experiments.len(),
        report.intents.len(),
        entries.len()
    );
    Ok(())
}
