//! Backtesting: replay a team's past experiments against the model learned before each, and
//! score the predictions against what the traces recorded during it.
//!
//! ```text
//! spans (all files) ──► trace start times ──► per experiment E:
//!     baseline = traces that started before E, outside every labelled window (+ --baseline files)
//!     window   = traces that started inside E's window
//!     learn(baseline) ──► fault spec (magnitude given, or measured at the target in the window)
//!                    ──► simulate ──► predicted ratio per operation (faulted / baseline, p50, p99)
//!     learn(window) vs learn(recent) ──► observed ratio per operation, where recent is the
//!         fault-free traffic of the last BacktestOptions::recent_ns before E (an operation seen
//!         there fewer than min_invocations times is compared with the whole baseline)
//!     scores: Spearman of log ratios, mean |log2 predicted − log2 observed|, interval coverage;
//!     the same for the naive "every upstream service slowed by the full delay"
//! ```
//!
//! Only operations seen at least [`BacktestOptions::min_invocations`] times in both the baseline
//! and the window are scored; under a latency fault the target's own operations are not (the
//! delay is measured there). A predicted ratio is exactly 1 where its 90% interval reaches
//! within [`NO_CHANGE`] of 1, so that simulation noise does not rank as a prediction. Faults that change errors (`down`, `error`, `return`,
//! `exception`) are scored on latency too, but are reported as not scorable when the traces
//! carry no span status at all (nothing to compare error rates with).

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use augur_ingest::{SpanBatch, StatusCode, TraceId};
use augur_model::{BuildOptions, Model, ModelBuilder};
use rustc_hash::{FxHashMap, FxHashSet};
use serde::Serialize;

use crate::{simulate, FaultSpec, SimOptions};

/// Predicted latency ratios within this share of 1 count as no change: a change under 1% is
/// below what any window of traces could confirm, and ranking operations by it ranks the
/// simulation's noise (requests through the target draw different random numbers, so even
/// operations off its paths come out a hair away from 1, with intervals just as narrow).
pub const NO_CHANGE: f64 = 0.01;

/// The point prediction of a latency ratio from a predicted band and the baseline: no change
/// where the 90% interval reaches the band of no change (within [`NO_CHANGE`] of 1), else the
/// mean ratio.
fn point_ratio(band: &crate::Band, base: f64) -> f64 {
    let (lo, hi) = (band.lo / base, band.hi / base);
    if lo <= 1.0 + NO_CHANGE && hi >= 1.0 / (1.0 + NO_CHANGE) {
        1.0
    } else {
        band.mean / base
    }
}

/// What a past experiment did to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PastKind {
    /// The target was unreachable.
    Down,
    /// The target failed a share of requests (`magnitude`: the share).
    Error,
    /// Calls into the target were delayed (`magnitude`: milliseconds added).
    Latency,
    /// The target's CPU was contended (`magnitude`: its self time multiplied by this).
    Cpu,
    /// The target returned wrong values (TrainTicket `return`).
    Return,
    /// The target threw exceptions (TrainTicket `exception`).
    Exception,
}

impl PastKind {
    fn parse(s: &str) -> Option<PastKind> {
        // Chaos tools' names too (Chaos Mesh, LitmusChaos, Gremlin), '-' or '_' alike.
        Some(
            match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
                "down" | "kill" | "pod_kill" | "pod_failure" | "pod_delete" | "shutdown"
                | "blackhole" => PastKind::Down,
                "error" | "errors" | "http_error" | "abort" | "http_abort" => PastKind::Error,
                "latency"
                | "delay"
                | "network_delay"
                | "network_latency"
                | "pod_network_latency" => PastKind::Latency,
                "cpu" | "cpu_contention" | "cpu_consumed" | "cpu_stress" | "stress_cpu"
                | "cpu_hog" | "pod_cpu_hog" => PastKind::Cpu,
                "return" => PastKind::Return,
                "exception" => PastKind::Exception,
                _ => return None,
            },
        )
    }
}

/// One past experiment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PastExperiment {
    /// A name for reports.
    pub id: String,
    /// The service it was run on.
    pub target: String,
    /// What it did.
    pub kind: PastKind,
    /// Start, ns since the Unix epoch.
    pub start_ns: i64,
    /// End, ns since the Unix epoch.
    pub end_ns: i64,
    /// Its size when known (see [`PastKind`]).
    pub magnitude: Option<f64>,
}

/// How long a TrainTicket (Nezha) fault lasts: about three minutes.
pub const TRAINTICKET_FAULT_SECONDS: i64 = 180;

/// Parses a list of past experiments: JSON or TOML.
///
/// - JSON `[{...}, ...]` or `{"experiments":[...]}`, TOML `[[experiment]]` tables; each entry has
///   `target`, `kind` (`down`, `error`, `latency`, `cpu`, `return`, `exception`, or a chaos
///   tool's name for one: `pod-kill`, `network-delay`, `cpu-hog`, ...), `start` (Unix seconds,
///   `"YYYY-MM-DD HH:MM:SS"` in UTC, or RFC 3339 with `Z` or an offset), `end` or `duration`
///   (seconds, or `"3m"`, `"180s"`; given both, they must agree to the second), and optionally `magnitude` (a number, or `"500ms"`,
///   `"40%"`, `"x3"` by kind) and `id`.
/// - The TrainTicket (Nezha) fault list: `{"HH": [{"inject_time", "inject_pod",
///   "inject_type"}, ...]}`; the pod's two trailing hash segments are dropped to name the
///   service, and each fault lasts [`TRAINTICKET_FAULT_SECONDS`].
pub fn parse_labels(text: &str) -> Result<Vec<PastExperiment>, String> {
    let mut out = match serde_json::from_str::<serde_json::Value>(text) {
        Ok(v) => from_json(&v)?,
        Err(json_err) => {
            let v: toml::Value = toml::from_str(text)
                .map_err(|toml_err| format!("neither JSON ({json_err}) nor TOML ({toml_err})"))?;
            let list = v
                .get("experiment")
                .or_else(|| v.get("experiments"))
                .and_then(|e| e.as_array())
                .ok_or("a TOML list of past experiments needs [[experiment]] tables")?;
            // TOML's own date-times (`start = 2026-11-01T00:10:00Z`) as the strings JSON has.
            let mut list = list.clone();
            for table in list.iter_mut().filter_map(toml::Value::as_table_mut) {
                for (_, v) in table.iter_mut() {
                    if let toml::Value::Datetime(d) = v {
                        *v = toml::Value::String(d.to_string());
                    }
                }
            }
            let json = serde_json::to_value(list).map_err(|e| e.to_string())?;
            generic_list(&json)?
        }
    };
    out.sort_by_key(|e| e.start_ns);
    if out.is_empty() {
        return Err("no experiment in the list".into());
    }
    Ok(out)
}

fn from_json(v: &serde_json::Value) -> Result<Vec<PastExperiment>, String> {
    if let Some(list) = v.get("experiments") {
        return generic_list(list);
    }
    if v.is_array() {
        return generic_list(v);
    }
    let Some(hours) = v.as_object() else {
        return Err("expected a list of experiments".into());
    };
    // One experiment on its own, not in a list.
    if hours.contains_key("target") && hours.contains_key("start") {
        return generic_list(&serde_json::Value::Array(vec![v.clone()]));
    }
    // The TrainTicket fault list: hour -> [{inject_time, inject_pod, inject_type}].
    let mut out = Vec::new();
    for (hour, list) in hours {
        let Some(list) = list.as_array() else {
            return Err(format!(
                "`{hour}`: expected a list of faults (the TrainTicket fault list), or use {{\"experiments\": [...]}}"
            ));
        };
        for (i, f) in list.iter().enumerate() {
            let at = |k: &str| {
                f.get(k)
                    .and_then(|x| x.as_str())
                    .ok_or(format!("`{hour}`[{i}]: no `{k}`"))
            };
            let time = at("inject_time")?;
            let pod = at("inject_pod")?;
            let kind_name = at("inject_type")?;
            let kind = PastKind::parse(kind_name)
                .ok_or(format!("`{hour}`[{i}]: unknown inject_type `{kind_name}`"))?;
            let start_ns = parse_time(time).ok_or(format!("`{hour}`[{i}]: bad time `{time}`"))?;
            let service = service_of_pod(pod);
            out.push(PastExperiment {
                id: format!("{time} {service} {kind_name}"),
                target: service,
                kind,
                start_ns,
                end_ns: start_ns + TRAINTICKET_FAULT_SECONDS * 1_000_000_000,
                magnitude: None,
            });
        }
    }
    Ok(out)
}

/// `ts-basic-service-5dc8d4f9fd-llznp` → `ts-basic-service` (a Kubernetes Deployment's pod).
pub fn service_of_pod(pod: &str) -> String {
    let parts: Vec<&str> = pod.split('-').collect();
    if parts.len() > 2 {
        parts[..parts.len() - 2].join("-")
    } else {
        pod.to_string()
    }
}

/// The fields an experiment of a generic label list may have.
const LABEL_FIELDS: [&str; 7] = [
    "id",
    "target",
    "kind",
    "start",
    "end",
    "duration",
    "magnitude",
];

/// Times as labels give them: seconds since the epoch, or UTC date and time.
const TIME_FORMS: &str = "seconds since the epoch, \"YYYY-MM-DD HH:MM:SS\" (UTC) or RFC 3339 \"YYYY-MM-DDTHH:MM:SS[.fff]Z\" or with an offset (\"+08:00\"), 1970 to 2261";

fn generic_list(v: &serde_json::Value) -> Result<Vec<PastExperiment>, String> {
    let list = v.as_array().ok_or("expected a list of experiments")?;
    let mut out = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let ctx = |m: &str| format!("experiment {}: {m}", i + 1);
        let fields = e
            .as_object()
            .ok_or_else(|| ctx("expected a table of fields"))?;
        if let Some(unknown) = fields.keys().find(|k| !LABEL_FIELDS.contains(&k.as_str())) {
            return Err(ctx(&format!(
                "unknown field `{unknown}` (known: {})",
                LABEL_FIELDS.join(", ")
            )));
        }
        let text = |name: &str| -> Result<Option<&str>, String> {
            match e.get(name) {
                None => Ok(None),
                Some(x) => x
                    .as_str()
                    .map(Some)
                    .ok_or_else(|| ctx(&format!("`{name}` must be a string"))),
            }
        };
        let target = text("target")?
            .ok_or_else(|| ctx("no `target`"))?
            .to_string();
        let kind_name = text("kind")?.ok_or_else(|| ctx("no `kind`"))?;
        let kind = PastKind::parse(kind_name).ok_or_else(|| {
            ctx(&format!(
                "unknown kind `{kind_name}` (down, error, latency, cpu, return, exception)"
            ))
        })?;
        let start_ns = match e.get("start") {
            None => return Err(ctx("no `start`")),
            Some(t) => time_field(t).map_err(|m| ctx(&format!("`start` {m}")))?,
        };
        let duration = match e.get("duration") {
            None => None,
            Some(d) => match d
                .as_f64()
                .or_else(|| d.as_str().and_then(|t| with_unit(t, SECONDS)))
            {
                // Under 100 years, so that the end stays a representable time.
                Some(d) if d > 0.0 && d < 3.2e9 => Some(d),
                _ => {
                    return Err(ctx(
                        "`duration` must be a positive number of seconds, or a string with a unit (\"180s\", \"3m\", \"1h\"), under 100 years",
                    ))
                }
            },
        };
        let end_ns = match (e.get("end"), duration) {
            (Some(end), _) => time_field(end).map_err(|m| ctx(&format!("`end` {m}")))?,
            (None, Some(d)) => start_ns
                .checked_add((d * 1e9) as i64)
                .ok_or_else(|| ctx("ends after 2262"))?,
            _ => return Err(ctx("needs `end` or a positive `duration` (seconds)")),
        };
        if end_ns <= start_ns {
            return Err(ctx("ends before it starts"));
        }
        if let (Some(_), Some(d)) = (e.get("end"), duration) {
            // Both given: they must tell the same window (to the second, as fault lists round).
            let span = (end_ns - start_ns) as f64 / 1e9;
            if (span - d).abs() > 1.0 {
                return Err(ctx(&format!(
                    "`end` is {span} s after `start` but `duration` says {d} s: give one, or both agreeing"
                )));
            }
        }
        let magnitude = match e.get("magnitude") {
            None => None,
            Some(m) => Some(
                m.as_f64()
                    .or_else(|| m.as_str().and_then(|t| magnitude_text(kind, t)))
                    .filter(|m| m.is_finite() && *m >= 0.0)
                    .ok_or_else(|| {
                        ctx(match kind {
                            PastKind::Latency => "`magnitude` of a latency experiment is the delay added: milliseconds, or a string with a unit (\"500ms\", \"0.5s\")",
                            PastKind::Error => "`magnitude` of an error experiment is the share of requests failed: 0 to 1, or a percentage (\"50%\")",
                            PastKind::Cpu => "`magnitude` of a cpu experiment is the factor on the target's self time: a number, or \"x3\"",
                            _ => "`magnitude` must be a non-negative number",
                        })
                    })?,
            ),
        };
        if kind == PastKind::Error && magnitude.is_some_and(|m| m > 1.0) {
            return Err(ctx(
                "an error `magnitude` is the share of requests failed, 0 to 1",
            ));
        }
        let id = text("id")?
            .map(str::to_string)
            .unwrap_or_else(|| format!("{target}:{kind_name}#{}", i + 1));
        out.push(PastExperiment {
            id,
            target,
            kind,
            start_ns,
            end_ns,
            magnitude,
        });
    }
    Ok(out)
}

/// Units of time in seconds.
const SECONDS: &[(&str, f64)] = &[
    ("us", 1e-6),
    ("µs", 1e-6),
    ("ms", 1e-3),
    ("s", 1.0),
    ("m", 60.0),
    ("min", 60.0),
    ("h", 3600.0),
];

/// `"180s"`, `"3m"`, `"0.5 s"`: the number times its unit's size from `units` (the longest
/// matching suffix; none when the unit is missing or unknown).
fn with_unit(text: &str, units: &[(&str, f64)]) -> Option<f64> {
    let t = text.trim();
    let (unit, size) = units
        .iter()
        .filter(|(u, _)| t.ends_with(u))
        .max_by_key(|(u, _)| u.len())?;
    let number: f64 = t[..t.len() - unit.len()].trim().parse().ok()?;
    number.is_finite().then_some(number * size)
}

/// A magnitude given as text: a latency with its unit (in ms), an error percentage (as a
/// share), a CPU factor as `x3` or `3x`.
fn magnitude_text(kind: PastKind, text: &str) -> Option<f64> {
    let t = text.trim();
    match kind {
        PastKind::Latency => with_unit(t, SECONDS).map(|s| s * 1000.0),
        PastKind::Error => with_unit(t, &[("%", 0.01)]),
        PastKind::Cpu => t
            .strip_prefix(['x', 'X'])
            .or_else(|| t.strip_suffix(['x', 'X']))
            .and_then(|f| f.trim().parse().ok()),
        _ => None,
    }
}

fn time_field(v: &serde_json::Value) -> Result<i64, String> {
    let bad = |v: &serde_json::Value| format!("{v} is not a time: give {TIME_FORMS}");
    if let Some(s) = v.as_f64() {
        // i64 nanoseconds end in 2262.
        if !(0.0..9.2e9).contains(&s) {
            let hint = if (1e11..9.2e12).contains(&s) {
                " (milliseconds? divide by 1000)"
            } else {
                ""
            };
            return Err(format!("{}{hint}", bad(v)));
        }
        return Ok((s * 1e9) as i64);
    }
    v.as_str().and_then(parse_time).ok_or_else(|| bad(v))
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) or RFC 3339 `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`, to ns since
/// the epoch.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let (date, time) = s.split_once(['T', 't', ' '])?;
    // A trailing zone: Z, or an offset east (+) or west (-) of UTC.
    let (time, offset_s) = if let Some(t) = time.strip_suffix(['Z', 'z']) {
        (t, 0)
    } else if let Some(at) = time.rfind(['+', '-']) {
        let (t, zone) = time.split_at(at);
        let sign = if zone.starts_with('-') { -1 } else { 1 };
        let (h, m) = zone[1..].split_once(':').unwrap_or((&zone[1..], "0"));
        let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
        if h > 23 || m > 59 {
            return None;
        }
        (t, sign * (h * 3600 + m * 60))
    } else {
        (time, 0)
    };
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let mut t = time.split(':');
    let (hh, mm) = (
        t.next()?.parse::<i64>().ok()?,
        t.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = t.next().unwrap_or("0").parse().ok()?;
    if !(1970..=2261).contains(&y)
        || !(1..=12).contains(&m)
        || !(1..=31).contains(&day)
        || !(0..=23).contains(&hh)
        || !(0..=59).contains(&mm)
        || !(0.0..61.0).contains(&sec)
    {
        return None;
    }
    // Days from civil (H. Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 - offset_s) * 1_000_000_000 + (sec * 1e9) as i64)
}

/// Options of a backtest.
#[derive(Debug, Clone)]
pub struct BacktestOptions {
    /// Simulation size per experiment.
    pub sim: SimOptions,
    /// Operations seen fewer times than this in the baseline or the window are not scored.
    pub min_invocations: u64,
    /// How far back, in nanoseconds, the fault-free traffic just before an experiment reaches
    /// when it is the reference of the observed change (0: never; every operation is then
    /// compared with the whole baseline). See [`run`].
    pub recent_ns: i64,
}

/// The invocations a reference needs for its 99th percentile to be taken from it.
const P99_INVOCATIONS: u64 = 100;

/// The default of [`BacktestOptions::recent_ns`]: ten minutes.
pub const RECENT_NS: i64 = 600 * 1_000_000_000;

impl Default for BacktestOptions {
    fn default() -> Self {
        BacktestOptions {
            sim: SimOptions {
                requests: 4_000,
                samples: 32,
                seed: 1,
            },
            min_invocations: 20,
            recent_ns: RECENT_NS,
        }
    }
}

/// Scores of one predictor on one experiment (or pooled).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Scores {
    /// Spearman rank correlation of predicted and observed log p50 ratios across operations
    /// (`None` with fewer than 3 operations, or no spread).
    pub spearman: Option<f64>,
    /// Mean |log2 predicted p50 ratio − log2 observed p50 ratio| (NaN, `null` in JSON, when
    /// nothing was scored).
    pub log2_error_p50: f64,
    /// The same for p99.
    pub log2_error_p99: f64,
    /// Share of operations whose observed p50 ratio lies in the predicted 90% interval widened
    /// by the observation's sampling error (see [`OpScore::covered`]; augur only: the naive
    /// baseline has no interval).
    pub coverage: Option<f64>,
    /// Mean |predicted − observed| error rate across operations (augur only, and only when the
    /// traces carry span status).
    pub error_mae: Option<f64>,
    /// Overall only (`null` per experiment): Spearman over every scored operation of every
    /// scored latency experiment together (defined even when each experiment alone predicts
    /// too little spread to rank).
    pub spearman_pooled: Option<f64>,
}

impl Scores {
    /// The scores of an experiment that could not be scored: none (no error of 0).
    fn unscored() -> Scores {
        Scores {
            log2_error_p50: f64::NAN,
            log2_error_p99: f64::NAN,
            ..Scores::default()
        }
    }
}

/// One scored operation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpScore {
    /// `"<service> <operation>"`.
    pub operation: String,
    /// Observed p50 ratio (window / baseline).
    pub observed_p50: f64,
    /// Predicted p50 ratio (faulted / baseline simulation; exactly 1 where the 90% interval
    /// reaches within [`NO_CHANGE`] of 1).
    pub predicted_p50: f64,
    /// Its 90% interval.
    pub predicted_p50_lo: f64,
    /// Its 90% interval.
    pub predicted_p50_hi: f64,
    /// Observed p99 ratio.
    pub observed_p99: f64,
    /// Predicted p99 ratio.
    pub predicted_p99: f64,
    /// The naive baseline's p50 ratio.
    pub naive_p50: f64,
    /// The naive baseline's p99 ratio.
    pub naive_p99: f64,
    /// Whether the operation calls the target (directly or not) in the baseline model.
    pub upstream: bool,
    /// Whether the observed p50 ratio lies in the predicted 90% interval widened by the
    /// observation's own sampling error (the medians of the window's and the baseline's spans).
    pub covered: bool,
    /// Observed error rate in the window (`None` when the traces carry no span status).
    pub observed_error_rate: Option<f64>,
    /// Predicted error rate (mean across posterior draws).
    pub predicted_error_rate: f64,
    /// Its 90% interval.
    pub predicted_error_rate_lo: f64,
    /// Its 90% interval.
    pub predicted_error_rate_hi: f64,
    /// For the worst predicted: the likely reason.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The outcome of one experiment's backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExperimentResult {
    /// The experiment.
    pub id: String,
    /// Its target service.
    pub target: String,
    /// Its kind.
    pub kind: PastKind,
    /// The fault simulated (`None` when not scorable).
    pub fault: Option<String>,
    /// True when the magnitude was measured from the window rather than given.
    pub magnitude_measured: bool,
    /// Why it could not be scored, if so (`null` when scored).
    pub not_scorable: Option<String>,
    /// Spans the baseline was learned from.
    pub baseline_spans: u64,
    /// Spans in the experiment's window.
    pub window_spans: u64,
    /// Spans of the fault-free traffic just before it (within
    /// [`BacktestOptions::recent_ns`]): the reference of the observed change for every
    /// operation seen there often enough.
    pub recent_spans: u64,
    /// Operations scored against that recent traffic (the rest against the whole baseline).
    pub recent_reference: usize,
    /// Mean |log2 observed p50 ratio| of the scored operations with no call path to the
    /// target (`null` when none): how far latency moved without the fault's help (traffic
    /// drift, sampling, shared resources). A predictor of "no change" there pays this much, so
    /// no model of call paths scores a log2 error much below it.
    pub control_log2_p50: Option<f64>,
    /// augur's scores.
    pub augur: Scores,
    /// The naive baseline's scores.
    pub naive: Scores,
    /// Every scored operation.
    pub operations: Vec<OpScore>,
    /// The most mispredicted operations, worst first, with why.
    pub worst: Vec<OpScore>,
    /// What in the labels or the traces makes this experiment's scores doubtful: a window
    /// overlapping another experiment's, traces tagged (`augur.experiment`) with a fault on
    /// another target, tagged traces without a label learned as its fault-free baseline.
    pub warnings: Vec<String>,
}

/// The whole backtest.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BacktestReport {
    /// Per experiment, in start order.
    pub experiments: Vec<ExperimentResult>,
    /// Averages over the scored experiments of the latency kinds (`latency`, `cpu`).
    pub overall: Overall,
}

/// Averages over scored latency experiments.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Overall {
    /// Latency experiments scored.
    pub experiments_scored: usize,
    /// Of them, those where both augur and the naive baseline rank operations (Spearman is
    /// averaged over these, the same for both).
    pub spearman_experiments: usize,
    /// Mean of [`ExperimentResult::control_log2_p50`]: the log2 error the traffic alone
    /// accounts for.
    pub control_log2_p50: Option<f64>,
    /// Experiments not scorable.
    pub not_scorable: usize,
    /// augur: mean Spearman (over [`Overall::spearman_experiments`]), mean log2 errors, pooled
    /// coverage.
    pub augur: Scores,
    /// The naive baseline, the same way.
    pub naive: Scores,
}

/// Runs the backtest. `spans` hold the experiments' windows and the traffic around them;
/// `extra_baseline` is fault-free traffic usable for every experiment whatever its time.
pub fn run(
    spans: &[SpanBatch],
    extra_baseline: &[SpanBatch],
    experiments: &[PastExperiment],
    opts: &BacktestOptions,
) -> BacktestReport {
    let mut trace_start: FxHashMap<TraceId, i64> = FxHashMap::default();
    for b in spans {
        for s in &b.spans {
            trace_start
                .entry(s.trace_id)
                .and_modify(|t| *t = (*t).min(s.start_ns))
                .or_insert(s.start_ns);
        }
    }
    let start_of = |s: &augur_ingest::Span| trace_start.get(&s.trace_id).copied();
    // Per trace start: whether its span records a status (a CSV without a status column
    // records none, even beside files that do), and the experiment tags spans carry.
    // (A trace's spans mostly come together: each is noted once per run of them.)
    let mut statuses: Vec<i64> = Vec::new();
    let mut tag_spans: FxHashMap<(i64, &str), u64> = FxHashMap::default();
    for b in spans {
        for s in &b.spans {
            let Some(t) = start_of(s) else { continue };
            if s.status != StatusCode::Unknown && statuses.last() != Some(&t) {
                statuses.push(t);
            }
            if let Some(tag) = s.experiment {
                *tag_spans.entry((t, b.str(tag))).or_default() += 1;
            }
        }
    }
    statuses.sort_unstable();
    statuses.dedup();
    let tagged: Vec<(i64, &str, u64)> =
        tag_spans.into_iter().map(|((t, g), n)| (t, g, n)).collect();
    let in_any_window = |t: i64| experiments.iter().any(|e| t >= e.start_ns && t < e.end_ns);
    let learn = |keep: &dyn Fn(i64) -> bool, extra: bool| -> Model {
        // The windows are chosen by the labels' times: traces tagged with an experiment are
        // learned like the rest (the window's are what is compared; the baseline excludes
        // every window by time).
        let mut b = ModelBuilder::new(BuildOptions::learning_experiments());
        for batch in spans {
            let mut part = SpanBatch {
                strings: batch.strings.clone(),
                ..SpanBatch::default()
            };
            for (i, s) in batch.spans.iter().enumerate() {
                if trace_start.get(&s.trace_id).is_some_and(|&t| keep(t)) {
                    part.spans.push(*s);
                    if let Some((t, l)) = batch.link_of(i) {
                        part.link_last(t, l);
                    }
                }
            }
            if !part.spans.is_empty() {
                b.add_batch(&part);
            }
        }
        if extra {
            for batch in extra_baseline {
                b.add_batch(batch);
            }
        }
        b.finish()
    };
    let mut results = Vec::new();
    for e in experiments {
        let base = learn(&|t| t < e.start_ns && !in_any_window(t), true);
        let window = learn(&|t| t >= e.start_ns && t < e.end_ns, false);
        let since = e.start_ns.saturating_sub(opts.recent_ns.max(0));
        let recent = learn(
            &|t| opts.recent_ns > 0 && t >= since && t < e.start_ns && !in_any_window(t),
            false,
        );
        let models = Models {
            base: &base,
            recent: &recent,
            window: &window,
        };
        // Error rates are scored only where the window's spans record a status.
        let first = statuses.partition_point(|&t| t < e.start_ns);
        let has_status = statuses.get(first).is_some_and(|&t| t < e.end_ns);
        let mut result = backtest_one(e, &models, has_status, opts);
        result.warnings = label_warnings(e, experiments, &tagged, &in_any_window);
        results.push(result);
    }
    let overall = overall(&results);
    BacktestReport {
        experiments: results,
        overall,
    }
}

/// What makes experiment `e`'s scores doubtful (see [`ExperimentResult::warnings`]).
fn label_warnings(
    e: &PastExperiment,
    all: &[PastExperiment],
    tagged: &[(i64, &str, u64)],
    in_any_window: &dyn Fn(i64) -> bool,
) -> Vec<String> {
    let mut out = Vec::new();
    for o in all {
        if !std::ptr::eq(o, e) && o.start_ns < e.end_ns && e.start_ns < o.end_ns {
            out.push(format!(
                "its window overlaps that of {} ({:?} on {}): both faults acted on part of it",
                o.id, o.kind, o.target
            ));
        }
    }
    // A tag is a fault's text (`payment:latency=+300ms`): its target is what comes before the
    // last ':' (a target may hold one: `checkout->payment`).
    let target_of = |tag: &str| tag.rsplit_once(':').map_or(tag, |(t, _)| t).to_string();
    let mut in_window: BTreeSet<&str> = BTreeSet::new();
    let mut in_baseline: BTreeMap<&str, u64> = BTreeMap::new();
    for &(t, tag, n) in tagged {
        if t >= e.start_ns && t < e.end_ns {
            in_window.insert(tag);
        } else if t < e.start_ns && !in_any_window(t) {
            *in_baseline.entry(tag).or_default() += n;
        }
    }
    let names_target = |tag: &str| {
        let t = target_of(tag);
        // `payment`, `payment/Charge`, `checkout->payment` all name payment.
        t.contains(e.target.as_str()) || e.target.contains(t.as_str())
    };
    if !in_window.is_empty() && !in_window.iter().any(|t| names_target(t)) {
        let tags: Vec<&str> = in_window.iter().take(3).copied().collect();
        out.push(format!(
            "its window's traces are tagged with another fault ({}), not one on {}: is the label's target right?",
            tags.join(", "),
            e.target
        ));
    }
    if !in_baseline.is_empty() {
        let spans: u64 = in_baseline.values().sum();
        let tags: Vec<&str> = in_baseline.keys().take(3).copied().collect();
        out.push(format!(
            "{spans} span{} before it {} tagged with an experiment no label covers ({}{}): learned as its fault-free baseline; label those experiments to leave them out",
            if spans == 1 { "" } else { "s" },
            if spans == 1 { "is" } else { "are" },
            tags.join(", "),
            if in_baseline.len() > 3 { ", ..." } else { "" }
        ));
    }
    out
}

fn ms(sketch: &augur_model::LogSketch, q: f64) -> Option<f64> {
    sketch.quantile(q).map(|ns| ns / 1e6)
}

/// The models of one experiment: learned from the baseline (every fault-free trace before it),
/// from the fault-free traffic just before it, and from its window.
struct Models<'a> {
    base: &'a Model,
    recent: &'a Model,
    window: &'a Model,
}

fn not_scorable(
    e: &PastExperiment,
    m: &Models,
    why: String,
    fault: Option<String>,
    measured: bool,
) -> ExperimentResult {
    ExperimentResult {
        id: e.id.clone(),
        target: e.target.clone(),
        kind: e.kind,
        fault,
        magnitude_measured: measured,
        not_scorable: Some(why),
        baseline_spans: m.base.quality.spans,
        window_spans: m.window.quality.spans,
        recent_spans: m.recent.quality.spans,
        recent_reference: 0,
        control_log2_p50: None,
        augur: Scores::unscored(),
        naive: Scores::unscored(),
        operations: Vec::new(),
        worst: Vec::new(),
        warnings: Vec::new(),
    }
}

fn backtest_one(
    e: &PastExperiment,
    m: &Models,
    has_status: bool,
    opts: &BacktestOptions,
) -> ExperimentResult {
    let (base, window) = (m.base, m.window);
    let nope = |why: String| not_scorable(e, m, why, None, false);
    if base.operations.is_empty() {
        return nope("no fault-free traffic before it to learn from".into());
    }
    if window.operations.is_empty() {
        return nope("no traces in its window".into());
    }
    let view = base.view();
    // What the label names, resolved as a fault target is: a service (all its operations), a
    // `service/operation`, a virtual node (an uninstrumented database) or a call site
    // `caller->callee` (measured at the callee).
    let resolved = format!("{}:down", e.target)
        .parse::<FaultSpec>()
        .and_then(|f| f.resolve(&view));
    let targets: Vec<&augur_model::Node> = match resolved {
        Ok(r) => r.callees.iter().map(|&i| &view.nodes[i]).collect(),
        Err(crate::SimError::UnknownTarget { .. }) => {
            // The fault targets' suggestions, services first (a label usually names one).
            let services: Vec<String> = crate::fault::suggestions(&view, &e.target)
                .into_iter()
                .filter(|n| view.nodes.iter().any(|o| &o.service == n))
                .collect();
            return nope(format!(
                "the target `{}` is not in the model learned before it (closest services: {})",
                e.target,
                services.join(", ")
            ));
        }
        Err(err) => return nope(format!("the target `{}`: {err}", e.target)),
    };
    let target_ids: BTreeSet<&str> = targets.iter().map(|n| n.id.as_str()).collect();
    let window_view = window.view();
    let recent_view = m.recent.view();
    // The reference of a node's observed change: the traffic just before the experiment when
    // it holds at least `min` invocations of it (traffic drifts over hours: the nearest
    // fault-free traffic shows what the window would have looked like without the fault), else
    // the whole baseline. `true` when the recent traffic was used.
    let reference = |id: &str, min: u64| -> Option<(&augur_model::Node, bool)> {
        match recent_view.node(id).filter(|r| r.invocations >= min.max(1)) {
            Some(r) => Some((r, true)),
            None => view.node(id).map(|b| (b, false)),
        }
    };
    // The target's typical latency just before the window (else over the whole baseline), and
    // what the window did to it.
    let paired = |f: &dyn Fn(&augur_model::Node) -> &augur_model::LogSketch| {
        let mut pairs = Vec::new();
        for o in &targets {
            let before = reference(&o.id, opts.min_invocations).map_or(*o, |r| r.0);
            if let Some(w) = window_view.node(&o.id) {
                if let (Some(b), Some(x)) = (ms(f(before), 0.5), ms(f(w), 0.5)) {
                    pairs.push((b, x, w.invocations as f64));
                }
            }
        }
        pairs
    };
    let weighted = |pairs: &[(f64, f64, f64)], g: &dyn Fn(f64, f64) -> f64| -> Option<f64> {
        let n: f64 = pairs.iter().map(|p| p.2).sum();
        (n > 0.0).then(|| pairs.iter().map(|p| g(p.0, p.1) * p.2).sum::<f64>() / n)
    };
    let error_kind = matches!(
        e.kind,
        PastKind::Down | PastKind::Error | PastKind::Return | PastKind::Exception
    );
    if error_kind && !has_status {
        return nope("no error data: the traces carry no span status".into());
    }
    let (spec, delay_ms, measured) = match e.kind {
        PastKind::Latency => {
            let (d, measured) = match e.magnitude {
                Some(m) => (m, false),
                None => {
                    let d = weighted(&paired(&|o| &o.duration_ns), &|b, x| x - b).unwrap_or(0.0);
                    (d.max(0.0), true)
                }
            };
            (format!("{}:latency=+{:.1}ms", e.target, d), d, measured)
        }
        PastKind::Cpu => {
            let (f, measured) = match e.magnitude {
                Some(m) => (m, false),
                None => {
                    let f =
                        weighted(&paired(&|o| &o.self_ns), &|b, x| x / b.max(1e-6)).unwrap_or(1.0);
                    (f.max(1.0), true)
                }
            };
            // The naive baseline adds what the target's own slowdown adds to its latency.
            let self_p50 = {
                let n: f64 = targets.iter().map(|o| o.invocations as f64).sum();
                targets
                    .iter()
                    .filter_map(|o| ms(&o.self_ns, 0.5).map(|v| v * o.invocations as f64))
                    .sum::<f64>()
                    / n.max(1.0)
            };
            (
                format!("{}:latency=x{:.3}", e.target, f),
                self_p50 * (f - 1.0),
                measured,
            )
        }
        PastKind::Down => (format!("{}:down", e.target), 0.0, false),
        PastKind::Error | PastKind::Return | PastKind::Exception => {
            let (r, measured) = match e.magnitude {
                Some(r) => (r, false),
                None => {
                    let (mut inv, mut err) = (0u64, 0u64);
                    for o in targets.iter().filter_map(|t| window_view.node(&t.id)) {
                        inv += o.invocations;
                        err += o.errors;
                    }
                    (err as f64 / inv.max(1) as f64, true)
                }
            };
            (
                format!("{}:error={:.3}", e.target, r.clamp(0.0, 1.0)),
                0.0,
                measured,
            )
        }
    };
    let fault: FaultSpec = match spec.parse() {
        Ok(f) => f,
        Err(err) => {
            return not_scorable(e, m, format!("{err}"), Some(spec), measured);
        }
    };
    let prediction = match simulate(&view, &[fault], &opts.sim) {
        Ok((p, _)) => p,
        Err(err) => {
            return not_scorable(e, m, format!("{err}"), Some(spec), measured);
        }
    };
    let upstream = upstream_of(base, &target_ids);
    let mut ops = Vec::new();
    let mut recent_reference = 0;
    for p in &prediction.operations {
        let id = &p.endpoint;
        // Instrumented operations only (a virtual node's calls are its callers' spans).
        let (Some((b, recent)), Some(w)) = (
            reference(id, opts.min_invocations).filter(|(b, _)| !b.is_virtual),
            window_view.node(id),
        ) else {
            continue;
        };
        if b.invocations < opts.min_invocations || w.invocations < opts.min_invocations {
            continue;
        }
        // A 99th percentile needs a hundred invocations to be seen at all: below that, the
        // recent traffic's p99 is its maximum, and the whole baseline is the reference.
        let b_tail = reference(id, opts.min_invocations.max(P99_INVOCATIONS)).map_or(b, |r| r.0);
        let (Some(b50), Some(b99), Some(w50), Some(w99)) = (
            ms(&b.duration_ns, 0.5),
            ms(&b_tail.duration_ns, 0.99),
            ms(&w.duration_ns, 0.5),
            ms(&w.duration_ns, 0.99),
        ) else {
            continue;
        };
        if b50 <= 0.0 || b99 <= 0.0 || p.baseline.p50_ms <= 0.0 || p.baseline.p99_ms <= 0.0 {
            continue;
        }
        if p.draws_run == 0 {
            continue;
        }
        // Under a latency fault the target's own operations are where the delay was measured
        // (and, in real data, where it may or may not show): scoring them would be circular.
        let is_target = target_ids.contains(id.as_str());
        if e.kind == PastKind::Latency && is_target {
            continue;
        }
        let is_up = upstream.contains(id.as_str()) || is_target;
        let covered = {
            // The sampling error of a median in log space, from the spread of the log latency
            // (interquartile range / 1.349 for sigma): var ≈ (π / 2n) σ².
            let se = |sk: &augur_model::LogSketch, n: u64| -> f64 {
                match (sk.quantile(0.25), sk.quantile(0.75)) {
                    (Some(q1), Some(q3)) if q1 > 0.0 && q3 > 0.0 => {
                        let sigma = (q3.ln() - q1.ln()) / 1.349;
                        sigma * (std::f64::consts::PI / (2.0 * n.max(1) as f64)).sqrt()
                    }
                    _ => 0.0,
                }
            };
            let se_obs = (se(&w.duration_ns, w.invocations).powi(2)
                + se(&b.duration_ns, b.invocations).powi(2))
            .sqrt();
            let (lo, hi) = (
                (p.predicted.p50_ms.lo / p.baseline.p50_ms).max(1e-9).ln(),
                (p.predicted.p50_ms.hi / p.baseline.p50_ms).max(1e-9).ln(),
            );
            let half = (((hi - lo) / 2.0).powi(2) + (1.645 * se_obs).powi(2)).sqrt();
            ((w50 / b50).ln() - (hi + lo) / 2.0).abs() <= half
        };
        let naive = |base_ms: f64| {
            if is_up {
                (base_ms + delay_ms) / base_ms
            } else {
                1.0
            }
        };
        recent_reference += usize::from(recent);
        ops.push(OpScore {
            operation: id.clone(),
            observed_p50: w50 / b50,
            predicted_p50: point_ratio(&p.predicted.p50_ms, p.baseline.p50_ms),
            predicted_p50_lo: p.predicted.p50_ms.lo / p.baseline.p50_ms,
            predicted_p50_hi: p.predicted.p50_ms.hi / p.baseline.p50_ms,
            observed_p99: w99 / b99,
            predicted_p99: point_ratio(&p.predicted.p99_ms, p.baseline.p99_ms),
            naive_p50: naive(b50),
            naive_p99: naive(b99),
            upstream: is_up,
            covered,
            observed_error_rate: has_status.then(|| w.errors as f64 / w.invocations as f64),
            predicted_error_rate: p.predicted.error_rate.mean,
            predicted_error_rate_lo: p.predicted.error_rate.lo,
            predicted_error_rate_hi: p.predicted.error_rate.hi,
            why: None,
        });
    }
    if ops.is_empty() {
        return not_scorable(
            e,
            m,
            format!(
                "no operation seen at least {} times both before and during it",
                opts.min_invocations
            ),
            Some(spec),
            measured,
        );
    }
    let augur = score(&ops, |o| (o.predicted_p50, o.predicted_p99), true);
    let naive = score(&ops, |o| (o.naive_p50, o.naive_p99), false);
    let mut worst: Vec<OpScore> = ops.clone();
    worst.sort_by(|a, b| {
        let err = |o: &OpScore| (o.predicted_p50.log2() - o.observed_p50.log2()).abs();
        err(b).total_cmp(&err(a))
    });
    worst.truncate(3);
    for o in &mut worst {
        o.why = Some(why(o, &e.target));
    }
    ExperimentResult {
        id: e.id.clone(),
        target: e.target.clone(),
        kind: e.kind,
        fault: Some(spec),
        magnitude_measured: measured,
        not_scorable: None,
        baseline_spans: base.quality.spans,
        window_spans: window.quality.spans,
        recent_spans: m.recent.quality.spans,
        recent_reference,
        control_log2_p50: {
            let v: Vec<f64> = ops
                .iter()
                .filter(|o| !o.upstream)
                .map(|o| o.observed_p50.log2().abs())
                .collect();
            (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
        },
        augur,
        naive,
        operations: ops,
        worst,
        warnings: Vec::new(),
    }
}

fn why(o: &OpScore, target: &str) -> String {
    let (p, x) = (o.predicted_p50, o.observed_p50);
    if x > 1.2 * p && !o.upstream {
        format!(
            "{x:.2}x slower with no call path to {target} in the model: a load or shared-resource effect (same node, database, queue) the model does not capture"
        )
    } else if x > 1.2 * p {
        format!(
            "{x:.2}x slower, predicted {p:.2}x: load-dependent slowdown, queueing or fan-out beyond what normal traffic showed"
        )
    } else if p > 1.2 * x && !o.upstream {
        format!(
            "faster ({x:.2}x) with no call path to {target} in the model: its traffic or load changed between the reference and the window, not through the fault"
        )
    } else if p > 1.2 * x {
        format!(
            "predicted {p:.2}x, observed {x:.2}x: the call may be skipped, cached, asynchronous or cut by a timeout under the fault, or its requests' mix changed"
        )
    } else {
        format!("predicted {p:.2}x, observed {x:.2}x: within 20%")
    }
}

/// Operations that call (directly or not) an operation of `service`.
/// Every operation that calls one of `targets` (node ids), directly or not.
fn upstream_of(model: &Model, targets: &BTreeSet<&str>) -> BTreeSet<String> {
    let mut callers: FxHashMap<&str, Vec<&str>> = FxHashMap::default();
    for c in &model.calls {
        callers
            .entry(c.to.as_str())
            .or_default()
            .push(c.from.as_str());
    }
    // Calls into uninstrumented peers (virtual nodes, named by their peer).
    for u in &model.unarrived {
        callers
            .entry(u.peer.as_str())
            .or_default()
            .push(u.from.as_str());
    }
    let mut seen: FxHashSet<&str> = FxHashSet::default();
    let mut queue: VecDeque<&str> = targets.iter().copied().collect();
    let mut out = BTreeSet::new();
    while let Some(op) = queue.pop_front() {
        for &c in callers.get(op).map(Vec::as_slice).unwrap_or_default() {
            if seen.insert(c) {
                out.insert(c.to_string());
                queue.push_back(c);
            }
        }
    }
    out
}

/// log2 of a latency ratio (ratios are positive; a zero is floored).
fn l2(x: f64) -> f64 {
    x.max(1e-9).log2()
}

/// The operations' predicted and observed log2 p50 ratios, side by side.
fn log_p50s<'a>(
    ops: impl Iterator<Item = &'a OpScore>,
    pred: impl Fn(&OpScore) -> f64,
) -> (Vec<f64>, Vec<f64>) {
    ops.map(|o| (l2(pred(o)), l2(o.observed_p50))).unzip()
}

fn score(ops: &[OpScore], pred: impl Fn(&OpScore) -> (f64, f64), interval: bool) -> Scores {
    let n = ops.len() as f64;
    let (p, x) = log_p50s(ops.iter(), |o| pred(o).0);
    Scores {
        spearman: spearman(&p, &x),
        log2_error_p50: p.iter().zip(&x).map(|(a, b)| (a - b).abs()).sum::<f64>() / n,
        log2_error_p99: ops
            .iter()
            .map(|o| (l2(pred(o).1) - l2(o.observed_p99)).abs())
            .sum::<f64>()
            / n,
        spearman_pooled: None,
        coverage: interval.then(|| ops.iter().filter(|o| o.covered).count() as f64 / n),
        error_mae: if interval {
            let errs: Vec<f64> = ops
                .iter()
                .filter_map(|o| {
                    o.observed_error_rate
                        .map(|x| (o.predicted_error_rate - x).abs())
                })
                .collect();
            (!errs.is_empty()).then(|| errs.iter().sum::<f64>() / errs.len() as f64)
        } else {
            None
        },
    }
}

/// Ranks with ties averaged (1-based).
fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&a, &b| v[a].total_cmp(&v[b]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &k in &idx[i..=j] {
            r[k] = avg;
        }
        i = j + 1;
    }
    r
}

/// Spearman's rank correlation (Pearson on tie-averaged ranks); `None` below 3 points or when
/// either side has no spread.
pub fn spearman(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() != b.len() || a.len() < 3 {
        return None;
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    (va > 0.0 && vb > 0.0).then(|| cov / (va * vb).sqrt())
}

fn overall(results: &[ExperimentResult]) -> Overall {
    let scored: Vec<&ExperimentResult> = results
        .iter()
        .filter(|r| r.not_scorable.is_none() && matches!(r.kind, PastKind::Latency | PastKind::Cpu))
        .collect();
    let mean = |f: &dyn Fn(&ExperimentResult) -> Option<f64>| {
        let v: Vec<f64> = scored.iter().filter_map(|r| f(r)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    // Spearman is compared over the same experiments: those where both predictors rank (a
    // constant prediction, such as "no change anywhere scored", has none).
    let both_rank: Vec<&ExperimentResult> = scored
        .iter()
        .copied()
        .filter(|r| r.augur.spearman.is_some() && r.naive.spearman.is_some())
        .collect();
    let mean_spearman = |f: &dyn Fn(&ExperimentResult) -> Option<f64>| {
        let v: Vec<f64> = both_rank.iter().filter_map(|r| f(r)).collect();
        (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
    };
    let pooled_coverage = {
        let (mut hit, mut n) = (0usize, 0usize);
        for r in &scored {
            for o in &r.operations {
                n += 1;
                hit += usize::from(o.covered);
            }
        }
        (n > 0).then(|| hit as f64 / n as f64)
    };
    let pooled_spearman = |pred: &dyn Fn(&OpScore) -> f64| {
        let (p, x) = log_p50s(scored.iter().flat_map(|r| &r.operations), pred);
        spearman(&p, &x)
    };
    Overall {
        experiments_scored: scored.len(),
        spearman_experiments: both_rank.len(),
        control_log2_p50: mean(&|r| r.control_log2_p50),
        not_scorable: results.iter().filter(|r| r.not_scorable.is_some()).count(),
        augur: Scores {
            error_mae: {
                let v: Vec<f64> = results
                    .iter()
                    .filter(|r| r.not_scorable.is_none())
                    .filter_map(|r| r.augur.error_mae)
                    .collect();
                (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
            },
            spearman: mean_spearman(&|r| r.augur.spearman),
            spearman_pooled: pooled_spearman(&|o| o.predicted_p50),
            log2_error_p50: mean(&|r| Some(r.augur.log2_error_p50)).unwrap_or(f64::NAN),
            log2_error_p99: mean(&|r| Some(r.augur.log2_error_p99)).unwrap_or(f64::NAN),
            coverage: pooled_coverage,
        },
        naive: Scores {
            spearman: mean_spearman(&|r| r.naive.spearman),
            spearman_pooled: pooled_spearman(&|o| o.naive_p50),
            log2_error_p50: mean(&|r| Some(r.naive.log2_error_p50)).unwrap_or(f64::NAN),
            log2_error_p99: mean(&|r| Some(r.naive.log2_error_p99)).unwrap_or(f64::NAN),
            coverage: None,
            error_mae: None,
        },
    }
}

impl BacktestReport {
    /// A table for people.
    pub fn to_text(&self) -> String {
        let f = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.2}"));
        let mut out = String::from(
            "experiment                                            fault                                   ops  spearman augur/naive  log2err p50 augur/naive  coverage  error MAE\n",
        );
        for r in &self.experiments {
            match &r.not_scorable {
                Some(why) => out.push_str(&format!("{:<53} not scorable: {why}\n", r.id)),
                None => {
                    out.push_str(&format!(
                    "{:<53} {:<39} {:>4}  {:>6} / {:<6}       {:>6.3} / {:<6.3}        {:<8}  {}\n",
                    r.id,
                    r.fault.as_deref().unwrap_or("-"),
                    r.operations.len(),
                    f(r.augur.spearman),
                    f(r.naive.spearman),
                    r.augur.log2_error_p50,
                    r.naive.log2_error_p50,
                    f(r.augur.coverage),
                    r.augur.error_mae.map_or("-".to_string(), |e| format!("{e:.3}")),
                ))
                }
            }
        }
        let warned: Vec<(&str, &String)> = self
            .experiments
            .iter()
            .flat_map(|r| r.warnings.iter().map(|w| (r.id.as_str(), w)))
            .collect();
        if !warned.is_empty() {
            out.push_str("\nwarnings:\n");
            for (id, w) in warned {
                out.push_str(&format!("  {id}: {w}\n"));
            }
        }
        let o = &self.overall;
        // A mean over nothing (no latency experiment scored) is NaN: shown as "-".
        let g = |x: f64| {
            if x.is_finite() {
                format!("{x:.3}")
            } else {
                "-".to_string()
            }
        };
        out.push_str(&format!(
            "\noverall ({} latency/cpu experiments scored, {} not scorable; Spearman averaged over the {} where both rank):\n  augur: Spearman {} (pooled over every scored operation {}), log2 error p50 {}, p99 {}, 90% interval coverage {}, error-rate MAE {}\n  naive (every upstream service slowed by the full delay): Spearman {} (pooled {}), log2 error p50 {}, p99 {}\n",
            o.experiments_scored,
            o.not_scorable,
            o.spearman_experiments,
            f(o.augur.spearman),
            f(o.augur.spearman_pooled),
            g(o.augur.log2_error_p50),
            g(o.augur.log2_error_p99),
            f(o.augur.coverage),
            o.augur
                .error_mae
                .map_or("- (no error rates scored)".to_string(), |e| format!("{e:.3} (all scored kinds)")),
            f(o.naive.spearman),
            f(o.naive.spearman_pooled),
            g(o.naive.log2_error_p50),
            g(o.naive.log2_error_p99),
        ));
        if let Some(c) = o.control_log2_p50 {
            out.push_str(&format!(
                "  operations with no call path to the target moved by {c:.3} (mean |log2 p50 ratio|): what no model of call paths predicts, so about the least log2 error it can score here\n"
            ));
        }
        let worst: Vec<&OpScore> = self
            .experiments
            .iter()
            .flat_map(|r| r.worst.first())
            .collect();
        if !worst.is_empty() {
            out.push_str("\nmost mispredicted operation per experiment:\n");
            for (r, w) in self
                .experiments
                .iter()
                .filter_map(|r| r.worst.first().map(|w| (r, w)))
            {
                out.push_str(&format!(
                    "  {}: {}: {}\n",
                    r.id,
                    w.operation,
                    w.why.as_deref().unwrap_or("")
                ));
            }
        }
        out
    }

    /// A self-contained HTML report: the table and a predicted-vs-observed plot (log2 p50
    /// ratios, one point per operation and experiment; augur and naive).
    pub fn to_html(&self) -> String {
        let esc = crate::html_escape;
        // Both axes: log2 of the p50 ratio, over the range the points need (at least 0.5x..2x,
        // at most 1/64x..64x; points beyond sit on the edge).
        let mut lo = -1.0f64;
        let mut hi = 1.0f64;
        for o in self.experiments.iter().flat_map(|r| &r.operations) {
            for v in [o.observed_p50, o.predicted_p50, o.naive_p50] {
                let l = l2(v);
                lo = lo.min(l.floor());
                hi = hi.max(l.ceil());
            }
        }
        let (lo, hi) = (lo.max(-6.0), hi.min(6.0));
        let (size, pad) = (520.0, 50.0);
        let pos = |v: f64| pad + (v.clamp(lo, hi) - lo) / (hi - lo) * (size - 2.0 * pad);
        let mut svg = String::new();
        // Grid and ticks at every power of two.
        let mut t = lo;
        while t <= hi + 1e-9 {
            let (x, y) = (pos(t), size - pos(t));
            let label = if t >= 0.0 {
                format!("{}x", 2f64.powf(t))
            } else {
                format!("1/{}x", 2f64.powf(-t))
            };
            svg.push_str(&format!(
                "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\n<text x=\"{x:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"middle\">{label}</text><text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" text-anchor=\"end\">{label}</text>\n",
                size - pad,
                pad,
                pad,
                size - pad,
                size - pad + 14.0,
                pad - 4.0,
                y + 3.0
            ));
            t += 1.0;
        }
        svg.push_str(&format!(
            "<line x1=\"{a:.1}\" y1=\"{b:.1}\" x2=\"{c:.1}\" y2=\"{d:.1}\" stroke=\"#888\" stroke-dasharray=\"4\"/>\n",
            a = pos(lo),
            b = size - pos(lo),
            c = pos(hi),
            d = size - pos(hi)
        ));
        for r in &self.experiments {
            for o in &r.operations {
                let x = pos(l2(o.observed_p50));
                svg.push_str(&format!(
                    "<circle class=\"naive\" cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"none\" stroke=\"#d62728\"><title>{} | {}: observed {:.2}x, naive {:.2}x</title></circle>\n",
                    size - pos(l2(o.naive_p50)),
                    esc(&r.id),
                    esc(&o.operation),
                    o.observed_p50,
                    o.naive_p50
                ));
                svg.push_str(&format!(
                    "<circle class=\"augur\" cx=\"{x:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#1f77b4\" fill-opacity=\"0.8\"><title>{} | {}: observed {:.2}x, augur {:.2}x [{:.2}, {:.2}]</title></circle>\n",
                    size - pos(l2(o.predicted_p50)),
                    esc(&r.id),
                    esc(&o.operation),
                    o.observed_p50,
                    o.predicted_p50,
                    o.predicted_p50_lo,
                    o.predicted_p50_hi
                ));
            }
        }
        let o = &self.overall;
        let f = |x: Option<f64>| x.map_or("–".to_string(), |v| format!("{v:.2}"));
        format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>augur backtest</title>\n<style>body{{font-family:sans-serif;margin:2em;max-width:80em}} pre{{font-size:12px;overflow-x:auto;background:#fafafa;padding:1em}} svg{{border:1px solid #ccc;background:#fff}} td,th{{padding:0.2em 0.8em;text-align:right}} .legend span{{margin-right:2em}}</style></head><body>\n<h1>augur backtest</h1>\n<p>{n} past experiments; {scored} latency/CPU experiments scored, {ns} not scorable (reasons in the table).</p>\n<table><tr><th></th><th>Spearman</th><th>Spearman, pooled</th><th>log2 error p50</th><th>log2 error p99</th><th>90% coverage</th></tr>\n<tr><th>augur</th><td>{as_}</td><td>{asp}</td><td>{ae50:.3}</td><td>{ae99:.3}</td><td>{acov}</td></tr>\n<tr><th>naive</th><td>{ns_}</td><td>{nsp}</td><td>{ne50:.3}</td><td>{ne99:.3}</td><td>–</td></tr></table>\n<h2>Predicted against observed</h2>\n<p>One point per operation per experiment: the change of its median latency during the experiment (window / before) on the horizontal axis, the predicted change on the vertical. On the dashed line the prediction was exact.</p>\n<p class=\"legend\"><span style=\"color:#1f77b4\">● augur</span><span style=\"color:#d62728\">○ naive: every upstream service slowed by the full delay</span></p>\n<svg id=\"plot\" width=\"{size}\" height=\"{size}\" viewBox=\"0 0 {size} {size}\" xmlns=\"http://www.w3.org/2000/svg\">\n{svg}<text x=\"{cx}\" y=\"{by}\" font-size=\"12\" text-anchor=\"middle\">observed p50 ratio</text>\n<text x=\"12\" y=\"{cx}\" font-size=\"12\" text-anchor=\"middle\" transform=\"rotate(-90 12 {cx})\">predicted p50 ratio</text>\n</svg>\n<h2>Per experiment</h2>\n<pre>{table}</pre>\n</body></html>\n",
            n = self.experiments.len(),
            scored = o.experiments_scored,
            ns = o.not_scorable,
            as_ = f(o.augur.spearman),
            asp = f(o.augur.spearman_pooled),
            ae50 = o.augur.log2_error_p50,
            ae99 = o.augur.log2_error_p99,
            acov = f(o.augur.coverage),
            ns_ = f(o.naive.spearman),
            nsp = f(o.naive.spearman_pooled),
            ne50 = o.naive.log2_error_p50,
            ne99 = o.naive.log2_error_p99,
            cx = size / 2.0,
            by = size - 12.0,
            table = esc(&self.to_text()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_misprediction_is_explained_by_whether_the_fault_could_reach_it() {
        let op = |predicted: f64, observed: f64, upstream: bool| OpScore {
            operation: "a op".into(),
            observed_p50: observed,
            predicted_p50: predicted,
            predicted_p50_lo: predicted,
            predicted_p50_hi: predicted,
            observed_p99: observed,
            predicted_p99: predicted,
            naive_p50: 1.0,
            naive_p99: 1.0,
            upstream,
            covered: false,
            observed_error_rate: None,
            predicted_error_rate: 0.0,
            predicted_error_rate_lo: 0.0,
            predicted_error_rate_hi: 0.0,
            why: None,
        };
        // Faster off the fault's paths: its traffic changed, no call was skipped.
        let w = why(&op(1.0, 0.5, false), "b");
        assert!(
            w.starts_with("faster (0.50x) with no call path to b"),
            "{w}"
        );
        assert!(!w.contains("skipped"), "{w}");
        // Faster on them: the fault's calls may have been skipped.
        let w = why(&op(1.5, 0.9, true), "b");
        assert!(w.contains("skipped"), "{w}");
        // Slower off and on them.
        assert!(why(&op(1.0, 3.0, false), "b").contains("no call path to b"));
        assert!(why(&op(1.1, 3.0, true), "b").contains("load-dependent"));
        assert!(why(&op(1.0, 1.1, true), "b").contains("within 20%"));
    }

    #[test]
    fn pooled_spearman_ranks_across_experiments() {
        // Two experiments, each predicting one change among unchanged operations: too little
        // spread to rank alone (two operations each), but together they rank.
        let op = |predicted: f64, observed: f64| OpScore {
            operation: "a op".into(),
            observed_p50: observed,
            predicted_p50: predicted,
            predicted_p50_lo: predicted,
            predicted_p50_hi: predicted,
            observed_p99: observed,
            predicted_p99: predicted,
            naive_p50: 2.0,
            naive_p99: 2.0,
            upstream: true,
            covered: false,
            observed_error_rate: None,
            predicted_error_rate: 0.0,
            predicted_error_rate_lo: 0.0,
            predicted_error_rate_hi: 0.0,
            why: None,
        };
        let exp = |ops: Vec<OpScore>| ExperimentResult {
            id: "x".into(),
            target: "b".into(),
            kind: PastKind::Latency,
            fault: Some("b:latency=+1ms".into()),
            magnitude_measured: false,
            not_scorable: None,
            baseline_spans: 1,
            window_spans: 1,
            recent_spans: 0,
            recent_reference: 0,
            control_log2_p50: None,
            augur: score(&ops, |o| (o.predicted_p50, o.predicted_p99), true),
            naive: score(&ops, |o| (o.naive_p50, o.naive_p99), false),
            operations: ops,
            worst: Vec::new(),
            warnings: Vec::new(),
        };
        let results = [
            exp(vec![op(1.0, 1.1), op(3.0, 2.5)]),
            exp(vec![op(1.0, 0.9), op(1.5, 1.4)]),
        ];
        assert_eq!(results[0].augur.spearman, None);
        let o = overall(&results);
        assert_eq!(o.augur.spearman, None);
        // Ranks: predicted (1.5, 4, 1.5, 3), observed (2, 4, 1, 3): r = 4.5 / √(4.5 × 5).
        let r = o.augur.spearman_pooled.unwrap();
        assert!((r - 4.5 / 22.5f64.sqrt()).abs() < 1e-9, "{r}");
        // The naive rule predicts the same everywhere: nothing to rank.
        assert_eq!(o.naive.spearman_pooled, None);
    }

    #[test]
    fn labels_parse_in_every_form() {
        let tt = r#"{"08":[{"inject_time":"2023-01-29 08:43:04","inject_timestamp":"1","inject_pod":"ts-contacts-service-866bd68c97-xcqfx","inject_type":"cpu_contention"}]}"#;
        let e = parse_labels(tt).unwrap();
        assert_eq!(e[0].target, "ts-contacts-service");
        assert_eq!(e[0].kind, PastKind::Cpu);
        // 2023-01-29 08:43:04 UTC
        assert_eq!(e[0].start_ns, 1_674_981_784_000_000_000);
        assert_eq!(e[0].end_ns - e[0].start_ns, 180_000_000_000);
        let json = r#"[{"target":"payment","kind":"latency","start":"2026-11-01T00:10:00Z","duration":60,"magnitude":500}]"#;
        let e = parse_labels(json).unwrap();
        assert_eq!(
            (e[0].kind, e[0].magnitude),
            (PastKind::Latency, Some(500.0))
        );
        assert_eq!(e[0].end_ns - e[0].start_ns, 60_000_000_000);
        let toml = "[[experiment]]\ntarget = \"cart\"\nkind = \"down\"\nstart = 1700000000\nend = 1700000060\n";
        let e = parse_labels(toml).unwrap();
        assert_eq!(e[0].start_ns, 1_700_000_000_000_000_000);
        // `[[experiments]]` (as JSON's `{"experiments": [...]}`) and one experiment alone.
        assert_eq!(
            parse_labels(&toml.replace("experiment]]", "experiments]]")).unwrap(),
            e
        );
        let one = r#"{"target":"cart","kind":"down","start":1700000000,"end":1700000060}"#;
        assert_eq!(parse_labels(one).unwrap(), e);
        assert!(
            parse_labels(r#"[{"target":"x","kind":"melt","start":1,"end":2}]"#)
                .unwrap_err()
                .contains("unknown kind")
        );
        assert!(parse_labels(r#"[{"target":"x","kind":"down","start":5,"end":2}]"#).is_err());
        // TOML's own date-times are times too.
        let toml = "[[experiment]]\ntarget = \"cart\"\nkind = \"down\"\nstart = 2023-11-14T22:13:20Z\nduration = 60\n";
        assert_eq!(
            parse_labels(toml).unwrap()[0].start_ns,
            1_700_000_000_000_000_000
        );
        // Mistakes are named, never overflow.
        for (label, says) in [
            (
                r#"{"target":"x","kind":"down","start":1793494800000,"duration":60}"#,
                "milliseconds",
            ),
            (
                r#"{"target":"x","kind":"down","start":1e300,"duration":60}"#,
                "not a time",
            ),
            (
                r#"{"target":"x","kind":"down","start":"9999-12-31 23:59:59","duration":60}"#,
                "not a time",
            ),
            (
                r#"{"target":"x","kind":"down","start":1,"duration":1e300}"#,
                "duration",
            ),
            (
                r#"{"target":"x","kind":"latency","start":1,"duration":6,"magnitud":3}"#,
                "unknown field `magnitud`",
            ),
            (
                r#"{"target":"x","kind":"latency","start":1,"duration":6,"magnitude":"3 parsecs"}"#,
                "\"500ms\"",
            ),
            (
                r#"{"target":"x","kind":"error","start":1,"duration":6,"magnitude":"half"}"#,
                "\"50%\"",
            ),
            (
                r#"{"target":"x","kind":"down","start":1,"duration":"3 fortnights"}"#,
                "\"3m\"",
            ),
            (
                r#"{"target":"x","kind":"down","start":"2023-01-29T08:00:00+25:00","duration":6}"#,
                "not a time",
            ),
            (
                r#"{"target":"x","kind":"error","start":1,"duration":6,"magnitude":2}"#,
                "0 to 1",
            ),
            (
                r#"{"target":["x"],"kind":"down","start":1,"duration":6}"#,
                "must be a string",
            ),
            (
                r#"{"target":"x","kind":"down","start":1,"end":61,"duration":"3m"}"#,
                "`end` is 60 s after `start` but `duration` says 180 s",
            ),
        ] {
            let err = parse_labels(&format!("[{label}]")).unwrap_err();
            assert!(err.contains(says), "{label}: {err}");
        }
        assert!(parse_labels("[]").is_err());
    }

    #[test]
    fn labels_take_units_offsets_and_chaos_tools_names() {
        let one = |label: &str| parse_labels(&format!("[{label}]")).unwrap().remove(0);
        let e = one(
            r#"{"target":"x","kind":"pod-network-latency","start":"2023-01-29T16:43:04+08:00","duration":"3m","magnitude":"0.25s"}"#,
        );
        assert_eq!(e.kind, PastKind::Latency);
        // 16:43:04 at UTC+8 is 08:43:04 UTC.
        assert_eq!(e.start_ns, 1_674_981_784_000_000_000);
        assert_eq!(e.end_ns - e.start_ns, 180_000_000_000);
        assert_eq!(e.magnitude, Some(250.0));
        let e = one(
            r#"{"target":"x","kind":"abort","start":"2023-01-29T03:13:04.5-05:30","duration":"90s","magnitude":"40%"}"#,
        );
        assert_eq!(e.kind, PastKind::Error);
        assert_eq!(e.start_ns, 1_674_981_784_500_000_000);
        assert_eq!(e.end_ns - e.start_ns, 90_000_000_000);
        assert!((e.magnitude.unwrap() - 0.4).abs() < 1e-12);
        let e =
            one(r#"{"target":"x","kind":"CPU_HOG","start":1,"duration":"500ms","magnitude":"x3"}"#);
        assert_eq!((e.kind, e.magnitude), (PastKind::Cpu, Some(3.0)));
        assert_eq!(e.end_ns - e.start_ns, 500_000_000);
        assert_eq!(
            one(r#"{"target":"x","kind":"pod-delete","start":1,"duration":"1h"}"#).kind,
            PastKind::Down
        );
        assert_eq!(
            one(r#"{"target":"x","kind":"cpu","start":1,"duration":6,"magnitude":"2.5x"}"#)
                .magnitude,
            Some(2.5)
        );
        assert_eq!(with_unit("3min", SECONDS), Some(180.0));
        assert_eq!(with_unit("3", SECONDS), None);
    }

    #[test]
    fn doubtful_labels_are_warned_about() {
        let exp = |id: &str, target: &str, start: i64, end: i64| PastExperiment {
            id: id.into(),
            target: target.into(),
            kind: PastKind::Latency,
            start_ns: start,
            end_ns: end,
            magnitude: None,
        };
        let all = [
            exp("a", "payment", 100, 200),
            exp("b", "cart", 150, 250),
            exp("c", "checkout->payment", 300, 400),
        ];
        let in_any = |t: i64| all.iter().any(|e| t >= e.start_ns && t < e.end_ns);
        let tagged = vec![
            (120, "payment:latency=+300ms", 1),
            (160, "payment:latency=+300ms", 1),
            (260, "email:down", 1),
            (310, "payment:latency=+300ms", 1),
        ];
        let w = |i: usize| label_warnings(&all[i], &all, &tagged, &in_any);
        // a overlaps b; its window's tags name payment: fine.
        assert_eq!(w(0).len(), 1, "{:?}", w(0));
        assert!(w(0)[0].contains("overlaps that of b"));
        // b overlaps a, and its window holds only payment's tags.
        assert_eq!(w(1).len(), 2, "{:?}", w(1));
        assert!(w(1)[1].contains("tagged with another fault (payment:latency=+300ms)"));
        // c: a call site into payment, tagged so; but email:down before it has no label.
        assert_eq!(w(2).len(), 1, "{:?}", w(2));
        assert!(w(2)[0].contains("1 span before it is tagged") && w(2)[0].contains("email:down"));
    }

    #[test]
    fn spearman_has_known_values() {
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), Some(1.0));
        assert_eq!(spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), Some(-1.0));
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), None);
        // Ties averaged: ranks (1.5, 1.5, 3) vs (1, 2, 3): r = 0.866...
        let r = spearman(&[1.0, 1.0, 2.0], &[1.0, 2.0, 3.0]).unwrap();
        assert!((r - 0.866_025_4).abs() < 1e-6, "{r}");
    }

    #[test]
    fn a_change_too_small_to_see_is_no_change() {
        let band = |mean, lo, hi| crate::Band { mean, lo, hi };
        // The interval holds 1: no change, whatever the mean.
        assert_eq!(point_ratio(&band(1.3, 0.9, 1.6), 1.0), 1.0);
        // Narrow and a hair above 1 (simulation noise off the target's paths): no change.
        assert_eq!(point_ratio(&band(100.2, 100.1, 100.3), 100.0), 1.0);
        assert_eq!(point_ratio(&band(99.3, 99.2, 99.4), 100.0), 1.0);
        // A real change is its mean ratio.
        assert!((point_ratio(&band(115.0, 108.0, 120.0), 100.0) - 1.15).abs() < 1e-12);
        assert!((point_ratio(&band(97.0, 96.0, 98.0), 100.0) - 0.97).abs() < 1e-12);
    }

    #[test]
    fn pods_name_their_service() {
        assert_eq!(
            service_of_pod("ts-basic-service-5dc8d4f9fd-llznp"),
            "ts-basic-service"
        );
        assert_eq!(service_of_pod("redis"), "redis");
    }
}
