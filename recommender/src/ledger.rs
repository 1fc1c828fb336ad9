//! The ledger: what the team has learned, one experiment at a time, in an append-only file
//! beside the model.
//!
//! `MODEL.json` has its ledger in `MODEL.ledger.jsonl`: one JSON object per line, one line per
//! experiment recorded by `augur outcome`, never rewritten. Each entry holds the outcome report
//! (prediction against observation, surprise per parameter, intents' verdicts) and the
//! *neighbourhood* the experiment tested (the target and the call sites into it, as counted
//! after the experiment: [`augur_model::Model::neighbourhood`]).
//!
//! ## Staleness
//! A candidate experiment is weighted by how stale the team's knowledge of its target is:
//! - **1** when the target was never tested;
//! - **1** when it was, but its neighbourhood has drifted since (the last test's neighbourhood
//!   against today's, with `augur diff`'s tests): the old lesson may no longer hold;
//! - **[`TESTED_WEIGHT`]** when it was tested and nothing there drifted since.

use std::fs::OpenOptions;
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};

use augur_model::{Model, View};
use augur_simulator::FaultSpec;
use serde::{Deserialize, Serialize};

use crate::outcome::{fault_scope, OutcomeReport};
use crate::RecError;

/// The ledger entry format's version.
pub const LEDGER_VERSION: u32 = 1;

/// The staleness weight of a target tested with nothing drifted since.
pub const TESTED_WEIGHT: f64 = 0.5;

/// One recorded experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerEntry {
    /// [`LEDGER_VERSION`].
    pub version: u32,
    /// When it was recorded (UTC, `YYYY-MM-DDTHH:MM:SSZ`).
    pub recorded_at: String,
    /// The trace files the outcome was learned from.
    pub traces: Vec<String>,
    /// The refined model file written.
    pub model: String,
    /// The outcome report.
    pub outcome: OutcomeReport,
    /// The tested neighbourhood after the experiment.
    pub tested: Model,
    /// The experiment's evidence ([`crate::outcome::Outcome::evidence`]): what it added to the
    /// model. Absent in entries written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Model>,
}

impl LedgerEntry {
    /// The entry for an experiment's outcome of `spec`: its report, its evidence, and the
    /// neighbourhood it tested in the refined model.
    pub fn of(
        outcome: &crate::outcome::Outcome,
        spec: &FaultSpec,
        recorded_at: String,
        traces: Vec<String>,
        model: String,
    ) -> Result<LedgerEntry, RecError> {
        let scope = fault_scope(&outcome.refined.view(), spec)?;
        Ok(LedgerEntry {
            version: LEDGER_VERSION,
            recorded_at,
            traces,
            model,
            outcome: outcome.report.clone(),
            tested: outcome.refined.neighbourhood(&scope),
            evidence: Some(outcome.evidence.clone()),
        })
    }
}

/// The evidence of every entry that kept it, added up: what the recorded experiments taught,
/// to merge into a model learned from normal traffic only. Returns it and how many entries
/// gave evidence.
pub fn evidence(entries: &[LedgerEntry]) -> Option<(Model, usize)> {
    let mut sum: Option<Model> = None;
    let mut n = 0;
    for e in entries.iter().filter_map(|e| e.evidence.as_ref()) {
        n += 1;
        match &mut sum {
            Some(m) => m.merge(e),
            None => sum = Some(e.clone()),
        }
    }
    sum.map(|m| (m, n))
}

/// The ledger beside a model file: `model.json` → `model.ledger.jsonl`.
pub fn ledger_path(model: &Path) -> PathBuf {
    let stem = model
        .file_stem()
        .map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    model.with_file_name(format!("{stem}.ledger.jsonl"))
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RecError + '_ {
    move |source| RecError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Appends one entry (a single write of one line, then synced to disk).
pub fn append(path: &Path, entry: &LedgerEntry) -> Result<(), RecError> {
    let mut line = serde_json::to_vec(entry).map_err(|e| RecError::Ledger {
        path: path.to_path_buf(),
        reason: format!("cannot encode the entry: {e}"),
    })?;
    line.push(b'\n');
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)
        .map_err(io(path))?;
    // After a write cut short by a crash the file ends mid-line: start a new line, so the
    // entry is not glued to the fragment (which `read` skips).
    let len = f.metadata().map_err(io(path))?.len();
    if len > 0 {
        let mut last = [0u8];
        f.seek(SeekFrom::Start(len - 1)).map_err(io(path))?;
        f.read_exact(&mut last).map_err(io(path))?;
        if last[0] != b'\n' {
            line.insert(0, b'\n');
        }
    }
    f.write_all(&line).map_err(io(path))?;
    f.sync_data().map_err(io(path))
}

/// Every entry, oldest first; an absent ledger is empty. A line that is not an entry is an
/// error naming the line, except a line cut short (JSON that ends early: a write interrupted by
/// a crash, after which later entries start on a new line), which is skipped with a warning.
pub fn read(path: &Path) -> Result<Vec<LedgerEntry>, RecError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(path)(e)),
    };
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<LedgerEntry>(line) {
            Ok(e) if e.version == LEDGER_VERSION => out.push(e),
            Ok(e) => {
                return Err(RecError::Ledger {
                    path: path.to_path_buf(),
                    reason: format!(
                        "line {}: ledger version {}; this augur reads version {LEDGER_VERSION}",
                        i + 1,
                        e.version
                    ),
                })
            }
            Err(e) if e.classify() == serde_json::error::Category::Eof => {
                tracing::warn!(
                    path = %path.display(),
                    line = i + 1,
                    "skipped a ledger line that was cut short (a write interrupted)"
                );
            }
            Err(e) => {
                return Err(RecError::Ledger {
                    path: path.to_path_buf(),
                    reason: format!("line {}: not a ledger entry: {e}", i + 1),
                })
            }
        }
    }
    Ok(out)
}

/// How stale the knowledge of a fault's target is.
#[derive(Debug, Clone, PartialEq)]
pub struct Staleness {
    /// The weight on the experiment's value.
    pub weight: f64,
    /// Why, in words (none: never tested).
    pub note: Option<String>,
}

/// The staleness of `spec`'s target against the ledger, today's model being `model`.
pub fn staleness(
    model: &Model,
    view: &View,
    ledger: &[LedgerEntry],
    spec: &FaultSpec,
) -> Staleness {
    let Some(last) = ledger.iter().rev().find(|e| {
        e.outcome
            .fault
            .parse::<FaultSpec>()
            .is_ok_and(|f| f.target == spec.target)
    }) else {
        return Staleness {
            weight: 1.0,
            note: None,
        };
    };
    let Ok(scope) = fault_scope(view, spec) else {
        return Staleness {
            weight: 1.0,
            note: Some(format!(
                "{} was tested on {}, but is no longer in the model",
                spec.target, last.recorded_at
            )),
        };
    };
    let drift = augur_model::diff(&last.tested.view(), &model.neighbourhood(&scope).view());
    if drift.is_empty() {
        Staleness {
            weight: TESTED_WEIGHT,
            note: Some(format!(
                "{} tested on {} ({}), nothing drifted there since",
                spec.target, last.recorded_at, last.outcome.fault
            )),
        }
    } else {
        let what = drift_words(&drift);
        Staleness {
            weight: 1.0,
            note: Some(format!(
                "{} tested on {} ({}), but drifted since: {what}",
                spec.target, last.recorded_at, last.outcome.fault
            )),
        }
    }
}

/// The staleness of every target the ledger shows tested (the others weigh 1).
pub fn staleness_by_target(
    model: &Model,
    view: &View,
    ledger: &[LedgerEntry],
) -> std::collections::BTreeMap<String, Staleness> {
    let mut out = std::collections::BTreeMap::new();
    for e in ledger {
        let Ok(spec) = e.outcome.fault.parse::<FaultSpec>() else {
            continue;
        };
        if !out.contains_key(&spec.target) {
            let s = staleness(model, view, ledger, &spec);
            out.insert(spec.target.clone(), s);
        }
    }
    out
}

/// A drift report in a few words.
pub fn drift_words(d: &augur_model::Drift) -> String {
    let mut parts = Vec::new();
    let n = |k: usize, what: &str| (k > 0).then(|| format!("{k} {what}"));
    parts.extend(n(d.operations_added.len(), "operations added"));
    parts.extend(n(d.operations_removed.len(), "operations removed"));
    parts.extend(n(d.edges_added.len(), "call sites added"));
    parts.extend(n(d.edges_removed.len(), "call sites removed"));
    parts.extend(d.behaviour.iter().take(3).map(|b| {
        format!(
            "{} -> {} {} {} → {}",
            b.from,
            b.to,
            b.what,
            b.old.as_deref().unwrap_or("unknown"),
            b.new.as_deref().unwrap_or("unknown")
        )
    }));
    parts.extend(d.latency.iter().take(3).map(|l| {
        format!(
            "{} {} p50 {:.1} → {:.1} ms",
            l.at, l.what, l.old_p50_ms, l.new_p50_ms
        )
    }));
    parts.extend(n(d.propagation.len(), "propagation posteriors moved"));
    parts.join("; ")
}

/// The ledger for people: each experiment, what it taught, and each intent's latest verdict.
pub fn to_text(entries: &[LedgerEntry]) -> String {
    if entries.is_empty() {
        return "the ledger is empty: no experiment outcome recorded yet (augur outcome records one)\n"
            .into();
    }
    let mut s = format!("{} experiments recorded\n\n", entries.len());
    let mut total = 0.0;
    for (i, e) in entries.iter().enumerate() {
        let o = &e.outcome;
        total += o.learned_bits;
        let judged = o.endpoints.iter().filter(|x| x.within.is_some()).count();
        let held = o
            .endpoints
            .iter()
            .filter(|x| x.within == Some(true))
            .count();
        s.push_str(&format!(
            "{}. {}  {}  learned {:.2} bits; prediction held at {held}/{judged} endpoints\n",
            i + 1,
            e.recorded_at,
            o.fault,
            o.learned_bits
        ));
        for x in o
            .surprises
            .iter()
            .filter(|x| x.source == "evidence")
            .take(3)
        {
            s.push_str(&format!(
                "     {} -> {} {}: {} → {} ({:.2} bits)\n",
                x.from, x.to, x.parameter, x.before, x.after, x.bits
            ));
        }
        for v in &o.intents {
            s.push_str(&format!(
                "     intent {}: {}\n",
                v.id,
                v.verdict.to_uppercase()
            ));
        }
    }
    s.push_str(&format!("\nin all: {total:.2} bits learned\n"));
    let mut latest: std::collections::BTreeMap<&str, (&str, &str, &str)> = Default::default();
    for e in entries {
        for v in &e.outcome.intents {
            latest.insert(&v.id, (&v.verdict, &e.recorded_at, &e.outcome.fault));
        }
    }
    if !latest.is_empty() {
        s.push_str("\nintents, latest verdict:\n");
        for (id, (verdict, at, fault)) in latest {
            s.push_str(&format!(
                "  {id}: {} ({fault}, {at})\n",
                verdict.to_uppercase()
            ));
        }
    }
    s
}
