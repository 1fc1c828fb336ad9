//! `augur`: which chaos experiment would teach us the most right now?
//!
//! The binary is glue: it parses the command line, wires the library crates together, shows
//! progress and prints results. Every domain decision lives in a crate (`augur-ingest`,
//! `augur-model`, `augur-datasets`, …).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use augur_ingest::{IngestReport, ReadOptions, SpanBatch};
use augur_model::{BuildOptions, ExperimentTraces, Model, ModelBuilder};
use clap::{Parser, Subcommand, ValueEnum};

/// `eprintln!` that does not panic when stderr is gone (`augur ... 2>&1 | head` closing the
/// pipe): a message nobody can read any more is dropped and the work goes on (std's panics, and
/// an `outcome` whose model and ledger were already written exited 101).
///
/// Names from traces are in most messages; control characters among them (an escape sequence in
/// a service name) are shown as U+FFFD rather than sent to the terminal ([`terminal_text`]).
macro_rules! eprintln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let text = format!($($arg)*);
        let _ = writeln!(std::io::stderr(), "{}", $crate::terminal_text(&text));
    }};
}

/// `text` as it may go to a terminal: every control character but newline and tab (an escape
/// sequence, a carriage return or a NUL inside a name from some trace) becomes U+FFFD, so a name
/// cannot move the cursor, recolour the terminal or hide the text before it. JSON output is not
/// touched by this (serde escapes them).
fn terminal_text(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| c.is_control() && c != '\n' && c != '\t';
    if !text.chars().any(bad) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| if bad(c) { '\u{FFFD}' } else { c })
            .collect(),
    )
}

mod demo;
mod export;
mod outcome;
mod progress;
mod serve;
mod show;

use progress::Progress;

/// augur learns how your services call each other from OpenTelemetry traces, and (as it grows)
/// which chaos experiment would teach you the most.
///
/// Typical use: `augur learn traces/ --out model.json`, then `augur graph model.json`.
/// Trace files are recognised by content: OTLP JSON, JSON Lines or protobuf, Jaeger JSON,
/// Zipkin v2 JSON, span-table CSV and Parquet, each optionally gzip or zstd compressed.
/// Directories are read recursively. Set RUST_LOG=debug for detailed logs on stderr.
#[derive(Parser, Debug)]
#[command(name = "augur", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Append trace files to a Parquet span lake partitioned by hour.
    ///
    /// Writes DIR/hour=YYYY-MM-DDTHH/part-*.parquet (Hive-style; polars, DuckDB and Spark read
    /// it without augur). Earlier parts are never rewritten; each run adds new parts. Files the
    /// lake holds already (same size and content at both ends, listed in the hidden
    /// DIR/.augur-ingested.jsonl) are skipped, so a nightly ingest of a growing directory adds
    /// only what is new. A run adds all its files or none: one that fails removes its parts, and
    /// one that was killed is undone when the next ingest starts (which says so), so its files
    /// are stored once, not twice.
    Ingest {
        /// Trace files or directories (read recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// The lake directory (created if absent).
        #[arg(long, value_name = "DIR")]
        lake: PathBuf,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Learn the model (call graph, latencies, errors) from traces and save it.
    ///
    /// Prints a summary (spans, traces, services, operations, endpoints, edges, records
    /// rejected, time taken) on stderr, or as JSON on stdout with --json.
    Learn {
        /// Trace files, directories or a span lake (read recursively).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Where to write the model file.
        #[arg(
            long,
            value_name = "MODEL",
            required_unless_present = "into",
            conflicts_with = "into"
        )]
        out: Option<PathBuf>,
        /// Add what PATHS teach to this model file (created if absent) instead of starting
        /// afresh: the result equals learning the old and new traces at once, except for traces
        /// whose spans are split between the two (their parts are counted separately). Files
        /// the model learned before (same size and content at both ends) are skipped, so a
        /// nightly `learn --into` over a growing directory learns only what is new; a file that
        /// grew since is learned again whole, with a warning.
        #[arg(long, value_name = "MODEL")]
        into: Option<PathBuf>,
        #[command(flatten)]
        read: ReadArgs,
        /// A trace is complete once this many spans of other traces arrived after its last
        /// span. Raise it when spans of one trace are spread far apart in the input.
        #[arg(long, value_name = "SPANS", default_value_t = augur_model::DEFAULT_TRACE_WINDOW)]
        trace_window: usize,
        /// Learn experiments' traces as normal traffic too. By default a trace with a span
        /// carrying the `augur.experiment` attribute (recorded while that fault was injected)
        /// is left out and counted: an injected fault is not how the system normally behaves,
        /// and `augur outcome` is what learns from it.
        #[arg(long)]
        include_experiments: bool,
        /// Print the summary as JSON on stdout: {"files","bytes","spans","traces","services",
        /// "operations","endpoints","virtual_nodes","edges","rejected","seconds","quality",
        /// ...} of the traces read by this run; with --into also "model": the same totals of
        /// the model saved (old and new traces), and "files_already_learned" when some were.
        #[arg(long)]
        json: bool,
    },
    /// Show a model's call graph, with each call site's learned behaviour.
    ///
    /// The JSON form is a stable contract:
    /// {"nodes":[{"id","service","operation","virtual","endpoint"}],
    ///  "edges":[{"from","to","calls","errors","p50_ms","p99_ms","mode","retries","timeout_ms",
    ///  "p_propagate":{"mean","lo","hi"}}]}. calls and errors count attempts (each retry is one);
    /// mode is sequential, parallel or asynchronous; retries and timeout_ms are null when
    /// unknown (never seen); p_propagate is P(caller fails | this call failed after its
    /// retries) with its 90% credible interval.
    Graph {
        /// A model file written by `augur learn`.
        model: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = GraphFormat::Table)]
        format: GraphFormat,
    },
    /// Inspect a model: every operation, call site and learned parameter with its uncertainty.
    Model {
        #[command(subcommand)]
        command: ModelCommand,
    },
    /// Merge models learned from different traces (shards, days) into one.
    ///
    /// The result equals learning all their traces at once, for traces not split between them.
    Merge {
        /// Model files (two or more).
        #[arg(required = true, num_args = 2..)]
        models: Vec<PathBuf>,
        /// Where to write the merged model.
        #[arg(long, value_name = "MODEL")]
        out: PathBuf,
    },
    /// Report what changed between two models of the same system: new and removed operations
    /// and call sites, changed timeouts and retries, latency shifts beyond noise, and moved
    /// error-propagation posteriors.
    ///
    /// Exits 0 whether or not there is drift; use --json for the machine-readable report.
    Diff {
        /// The older model.
        old: PathBuf,
        /// The newer model.
        new: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Predict how faults would propagate to every endpoint: error rate, median and p99 latency
    /// with and without them, each prediction with a 90% credible interval.
    ///
    /// FAULT is TARGET:KIND. TARGET is a service (payment), an operation (payment/Charge), a
    /// virtual node (postgres), or one call site (checkout->payment: only that caller's calls).
    /// KIND is down (calls fail fast), error=RATE (calls fail with that probability),
    /// latency=+Nms (calls take N ms longer, as callers see it) or latency=xF (the target's self
    /// time multiplied by F). Several --fault flags are simultaneous faults. A target that is an
    /// endpoint (frontend) also faults its users' requests: frontend:down fails them all.
    ///
    /// Each of --samples posterior draws of the model's parameters runs --requests requests
    /// through the call graph with and without the faults (the baseline). The JSON form is a
    /// contract: {"faults":[..],"endpoints":[{"endpoint","service","operation",
    /// "baseline":{"error_rate","p50_ms","p99_ms"},"predicted":{"error_rate":{"mean","lo","hi"},
    /// "p50_ms":{..},"p99_ms":{..}}}],"operations":[the same for every operation]}.
    #[command(
        after_long_help = "Examples:\n  augur simulate model.json --fault payment:down\n  augur simulate model.json --fault 'checkout->shipping:error=0.5' --fault redis:latency=+100ms --json\n  augur simulate model.json --fault 'payment/Charge:latency=x3' --requests 5000 --samples 64 --seed 7"
    )]
    Simulate {
        /// A model file written by `augur learn`.
        model: PathBuf,
        /// A fault, e.g. payment:down, payment:error=0.3, payment:latency=+500ms,
        /// payment:latency=x2, checkout->payment:down. Repeat for simultaneous faults.
        #[arg(long = "fault", value_name = "SPEC", required = true)]
        faults: Vec<String>,
        /// Requests per posterior draw, each entering an endpoint drawn by the traffic mix (at
        /// least one each; 1 to 10,000,000; requests × samples at most 100,000,000).
        #[arg(long, default_value_t = 10_000)]
        requests: usize,
        /// Posterior draws of the model's parameters (2 to 100,000).
        #[arg(long, default_value_t = 64)]
        samples: usize,
        /// Random seed (the same seed gives the same prediction).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the prediction as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rank candidate experiments by how much their outcome would teach, within a safety budget.
    ///
    /// Candidates: every target in --scope (service: services and uninstrumented peers;
    /// operation: also single operations; edge: also single call sites; one candidate per
    /// thing a fault acts on, so a service's only operation is the service's) × down, error=0.1,
    /// error=0.5, latency=+100ms, latency=+500ms, plus the intents' faults. value_bits is the
    /// expected information its outcome (the failures and the median and p99 latency it would
    /// show, endpoints weighted by traffic) gives about what every candidate would show, beyond
    /// what normal traffic shows anyway, plus, for each intent the fault bears on, priority ×
    /// the entropy of P(holds) (docs/INTENTS.md). harm is the 95% upper bound of extra
    /// failed user requests and of the p99 increase over --duration; with --error-budget an
    /// experiment over budget is scaled down in traffic share, or marked unsafe with why.
    /// The JSON form is a contract: {"experiments":[{"fault","value_bits","intents":[{"id",
    /// "p_holds"}],"predicted":{"endpoints":[as in simulate]},"harm":{..},"safe","traffic_share",
    /// "why"}]}.
    #[command(
        after_long_help = "Examples:\n  augur recommend model.json                         # the 10 most informative, service faults\n  augur recommend model.json --scope edge --top 20 --intents intents.toml\n  augur recommend model.json --error-budget 500 --duration 15 --json > next.json"
    )]
    Recommend {
        /// A model file written by `augur learn`.
        model: PathBuf,
        /// The team's hypotheses (TOML; see docs/INTENTS.md).
        #[arg(long, value_name = "FILE")]
        intents: Option<PathBuf>,
        /// Which targets to consider.
        #[arg(long, value_enum, default_value_t = ScopeArg::Service)]
        scope: ScopeArg,
        /// How many experiments to show.
        #[arg(long, default_value_t = 10)]
        top: usize,
        /// Extra failed user requests an experiment may cause (the error budget remaining).
        #[arg(long, value_name = "REQUESTS")]
        error_budget: Option<f64>,
        #[command(flatten)]
        exp: ExperimentArgs,
        /// Print the recommendation as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Plan the experiments for a night or a week: the set that teaches the most within a total
    /// error budget, each valued by what it adds to the ones before it (experiments that would
    /// teach the same thing are not both chosen). Each experiment runs at the traffic share
    /// (100%, 50%, 25%, 10%, 5%, 1%, or 1% for part of --duration) with the most value that fits
    /// the budget left when it is chosen.
    #[command(
        after_long_help = "Examples:\n  augur plan model.json --budget 300                 # tonight: at most 300 failed requests in all\n  augur plan model.json --budget 2000 --max 10 --intents intents.toml --json"
    )]
    Plan {
        /// A model file written by `augur learn`.
        model: PathBuf,
        /// Extra failed user requests all the plan's experiments together may cause.
        #[arg(long, value_name = "REQUESTS")]
        budget: f64,
        /// The team's hypotheses (TOML; see docs/INTENTS.md).
        #[arg(long, value_name = "FILE")]
        intents: Option<PathBuf>,
        /// Which targets to consider.
        #[arg(long, value_enum, default_value_t = ScopeArg::Service)]
        scope: ScopeArg,
        /// Most experiments in the plan.
        #[arg(long, default_value_t = 5)]
        max: usize,
        #[command(flatten)]
        exp: ExperimentArgs,
        /// Print the plan as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a model and its ranked candidate experiments as Parquet tables for data scientists.
    ///
    /// DIR/nodes.parquet (operations and virtual nodes: traffic, latency, own error posterior),
    /// DIR/edges.parquet (call sites: calls, latency, mode, retries, timeout, P(propagate) with
    /// its interval, evidence and prior), DIR/posteriors.parquet (one row per uncertain
    /// parameter: each error rate and P(propagate) as a Beta with alpha, beta, mean, 90%
    /// interval and sd, each timeout seen) and DIR/candidates.parquet (every candidate of
    /// `augur recommend`, ranked: value in bits, harm, safety, why). docs/EXPORT.md reads them
    /// with polars.
    Export {
        /// A model file written by `augur learn`.
        model: PathBuf,
        /// The directory to write the tables into (created if absent).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The team's hypotheses (TOML; see docs/INTENTS.md).
        #[arg(long, value_name = "FILE")]
        intents: Option<PathBuf>,
        /// Which targets to consider for candidates.
        #[arg(long, value_enum, default_value_t = ScopeArg::Service)]
        scope: ScopeArg,
        /// Extra failed user requests an experiment may cause (the error budget remaining).
        #[arg(long, value_name = "REQUESTS")]
        error_budget: Option<f64>,
        #[command(flatten)]
        exp: ExperimentArgs,
    },
    /// The value in bits, harm and P(intents) of one experiment you have in mind.
    #[command(
        after_long_help = "Examples:\n  augur value model.json --fault shipping:down\n  augur value model.json --fault postgres:latency=+500ms --intents intents.toml --json"
    )]
    Value {
        /// A model file written by `augur learn`.
        model: PathBuf,
        /// The fault, as for `augur simulate`.
        #[arg(long, value_name = "SPEC")]
        fault: String,
        /// The team's hypotheses (TOML; see docs/INTENTS.md).
        #[arg(long, value_name = "FILE")]
        intents: Option<PathBuf>,
        /// Extra failed user requests the experiment may cause.
        #[arg(long, value_name = "REQUESTS")]
        error_budget: Option<f64>,
        /// The candidates whose outcomes the value is information about, as for `augur
        /// recommend --scope`: the same scope gives the same value as that experiment's row there.
        #[arg(long, value_enum, default_value_t = ScopeArg::Service)]
        scope: ScopeArg,
        #[command(flatten)]
        exp: ExperimentArgs,
        /// Print it as JSON (one experiment, as in `augur recommend --json`).
        #[arg(long)]
        json: bool,
    },
    /// Record an experiment's outcome: compare what its traces show with what the model
    /// predicted, refine the model with what they teach, and append it all to the ledger.
    ///
    /// TRACES are the traces recorded while FAULT was active. The injected fault is known, so
    /// only callers' reactions are learned from them (did the caller fail with the call,
    /// retry it, time it out?): the target's own errors and latency under the fault, and every
    /// count and duration the fault distorted, are not mistaken for normal behaviour. Reports,
    /// per endpoint, the prediction against the observation; per parameter, the surprise (bits
    /// of KL divergence, after against before); each intent the fault bears on, held or
    /// falsified with its evidence. The refined model is written to --out (default: MODEL
    /// itself, replaced atomically) and the entry appended to the ledger beside it
    /// (model.json → model.ledger.jsonl). See docs/OUTCOMES.md.
    Outcome {
        /// The model the experiment was planned on.
        model: PathBuf,
        /// The fault that was active, as for `augur simulate`.
        #[arg(long, value_name = "SPEC")]
        fault: String,
        /// Trace files or directories recorded while the fault was active.
        #[arg(long, required = true, num_args = 1.., value_name = "PATHS")]
        traces: Vec<PathBuf>,
        /// Where to write the refined model (default: MODEL). Its ledger starts as a copy of
        /// MODEL's.
        #[arg(long, value_name = "MODEL2")]
        out: Option<PathBuf>,
        /// Append to this ledger instead of the one beside the refined model (e.g.
        /// STATE/model.ledger.jsonl of an `augur serve`, whose API then shows it).
        #[arg(long, value_name = "FILE")]
        ledger: Option<PathBuf>,
        /// The team's hypotheses (TOML; see docs/INTENTS.md): those about FAULT get a verdict.
        #[arg(long, value_name = "FILE")]
        intents: Option<PathBuf>,
        /// Share of traffic the fault was applied to while the traces were recorded.
        #[arg(long, value_name = "SHARE", default_value_t = 1.0)]
        traffic_share: f64,
        /// Requests simulated per posterior draw for the prediction (1 to 10,000,000;
        /// requests × samples at most 100,000,000).
        #[arg(long, default_value_t = 4_000)]
        requests: usize,
        /// Posterior draws (2 to 100,000).
        #[arg(long, default_value_t = 32)]
        samples: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Show what the team has learned over time: every recorded experiment (prediction against
    /// observation, what moved, intents' verdicts) from the ledger beside MODEL.
    Ledger {
        /// A model file (its ledger is MODEL's name with .ledger.jsonl).
        model: PathBuf,
        /// Print the entries as JSON: {"entries":[{"recorded_at","fault","traces","model",
        /// "outcome":{as augur outcome --json}}]}.
        #[arg(long)]
        json: bool,
    },
    /// Write the nightly report: a self-contained HTML page (and its JSON) for the SRE team.
    ///
    /// DIR/report.html holds the experiments to run next (value, safety, harm, why, predicted
    /// blast radius), the dependency graph as SVG with each endpoint's critical path
    /// highlighted, intents with P(holds) and their last verdict, what the last experiments
    /// taught (from the ledger) with a predicted-vs-observed plot, the most uncertain call sites,
    /// and drift since --previous. DIR/report.json holds the same. The page fetches nothing.
    Report {
        /// A model file written by `augur learn` (its ledger, if any, is read too).
        model: PathBuf,
        /// The directory to write report.html and report.json into (created if absent).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// The team's hypotheses (TOML; see docs/INTENTS.md).
        #[arg(long, value_name = "FILE")]
        intents: Option<PathBuf>,
        /// An older model of the same system: the report shows what drifted since.
        #[arg(long, value_name = "OLD_MODEL")]
        previous: Option<PathBuf>,
        /// Which targets to consider for experiments.
        #[arg(long, value_enum, default_value_t = ScopeArg::Service)]
        scope: ScopeArg,
        /// Extra failed user requests an experiment may cause (the error budget remaining).
        #[arg(long, value_name = "REQUESTS")]
        error_budget: Option<f64>,
        #[command(flatten)]
        exp: ExperimentArgs,
    },
    /// Receive traces live over OTLP (gRPC and HTTP), keep the model current, answer queries.
    ///
    /// Point an OpenTelemetry Collector's `otlp` exporter (gRPC, default port 4317) or
    /// `otlphttp` exporter (port 4318) at it. Every accepted export is written to a write-ahead
    /// log and synced to disk before it is acknowledged; spans go to the Parquet lake under
    /// STATE/lake and into the model, snapshotted every --snapshot-every seconds and on
    /// SIGTERM/SIGINT to STATE/model.json. A restart resumes from the snapshot and the log.
    /// Traces whose spans carry augur.experiment (the fault being injected) are kept out of the
    /// model and wait, by fault, until POST /api/outcome records them; the live model is normal
    /// traffic's plus the evidence of every outcome in STATE/model.ledger.jsonl.
    /// The API (JSON): GET /api/graph, POST /api/simulate {"faults":[..]}, GET
    /// /api/recommendations?top=K&scope=.., POST /api/value {"fault":".."}, GET
    /// /api/experiments, POST /api/outcome {"fault":".."}, GET /api/ledger, GET /healthz,
    /// GET /metrics (Prometheus). See docs/SERVE.md.
    Serve(serve::ServeArgs),
    /// Check the model against past experiments: for each, learn from the fault-free traffic
    /// before it, predict its effect, and compare with what the traces recorded during it.
    ///
    /// LABELS is a JSON or TOML list of experiments (target, kind: down|error|latency|cpu|
    /// return|exception or a chaos tool's name such as pod-kill or network-delay, start
    /// (Unix seconds, "YYYY-MM-DD HH:MM:SS" UTC, or RFC 3339 with Z or an offset), end or
    /// duration (seconds, or "3m", "180s"), optional magnitude ("500ms", "40%", "x3") and id)
    /// or the TrainTicket (Nezha) fault list. Where the magnitude is not given it is measured at
    /// the target during
    /// the window (the delay added to it, or its self-time factor). Per experiment and overall:
    /// Spearman correlation of predicted and observed latency changes across operations, mean
    /// |log2 predicted − log2 observed| p50 and p99 ratio, 90% interval coverage, and the same
    /// scores for the naive "every upstream service slowed by the full delay". See
    /// docs/ACCURACY.md.
    #[command(
        after_long_help = "Examples:\n  augur backtest --traces traces/ --experiments experiments.json\n  augur backtest --traces day.jsonl --experiments past.toml --json --report backtest.html\n\nA label file lists past experiments (JSON or TOML):\n  [{\"target\": \"payment\", \"kind\": \"latency\", \"start\": \"2026-11-01T00:10:00Z\", \"duration\": \"3m\", \"magnitude\": \"500ms\"}]\nor in TOML, one table per experiment:\n  [[experiment]]\n  target = \"payment\"\n  kind = \"latency\"\n  start = 2026-11-01T00:10:00Z\n  duration = \"3m\"\nkind: down, error, latency, cpu, return, exception (or a chaos tool's name: pod-kill, network-delay, cpu-hog, ...); end may stand for duration; magnitude is optional (measured at the target when missing). The TrainTicket fault_list.json is read as it is."
    )]
    Backtest {
        /// Trace files or directories holding the experiments' windows and the traffic around
        /// them (traces outside every window and before an experiment are its baseline).
        #[arg(long, required = true, num_args = 1.., value_name = "PATHS")]
        traces: Vec<PathBuf>,
        /// The past experiments (JSON or TOML list, or the TrainTicket fault_list.json).
        #[arg(long, value_name = "LABELS")]
        experiments: PathBuf,
        /// Fault-free traffic usable as every experiment's baseline, whatever its time.
        #[arg(long, num_args = 1.., value_name = "PATHS")]
        baseline: Vec<PathBuf>,
        /// Operations seen fewer times than this before or during an experiment are not scored.
        #[arg(long, default_value_t = 20)]
        min_invocations: u64,
        /// The observed change of an operation is measured against the fault-free traffic of
        /// this many seconds before the experiment when the operation was seen there at least
        /// --min-invocations times (traffic drifts over a day: the nearest traffic is the fairest
        /// reference), else against the whole baseline; 0 always uses the whole baseline.
        #[arg(long, default_value_t = 600, value_name = "SECONDS")]
        recent: u64,
        /// Requests simulated per posterior draw (1 to 10,000,000; requests × samples at most
        /// 100,000,000).
        #[arg(long, default_value_t = 4_000)]
        requests: usize,
        /// Posterior draws (2 to 100,000).
        #[arg(long, default_value_t = 32)]
        samples: usize,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Also write an HTML report (table and predicted-vs-observed plot) here.
        #[arg(long, value_name = "FILE.html")]
        report: Option<PathBuf>,
        #[command(flatten)]
        read: ReadArgs,
    },
    /// Run every stage on a built-in demo shop: generate its traces, learn, show what was learned
    /// and check it against the demo's known truth.
    Demo {
        /// Where to write the demo's traces and model.
        #[arg(long, value_name = "DIR", default_value = "demo-out")]
        dir: PathBuf,
        /// How many traces to generate (at least 100, so that every service is called).
        #[arg(long, default_value_t = 5_000)]
        traces: usize,
        /// Random seed (the same seed gives the same traces).
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// Generate synthetic traces with known truth (for tests, benchmarks and trying augur out).
    Generate {
        /// Which world: the demo shop, or a random world of the given size.
        #[arg(long, value_enum, default_value_t = demo::WorldKind::Shop)]
        world: demo::WorldKind,
        /// Services of a random world (at least 5, one per layer). Calls are drawn at random, so
        /// some services may be reached by no traffic: the truth file lists the ones that are.
        #[arg(long, default_value_t = 40)]
        services: usize,
        /// How many traces.
        #[arg(long, default_value_t = 1_000)]
        traces: usize,
        /// Random seed: of the random world, and of the traffic unless --traffic-seed is given.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Random seed of the traffic alone: the same world (from --seed) with other requests,
        /// e.g. a faulted run independent of the normal traffic it is compared with (with one
        /// seed, both draw the same random numbers, request for request).
        #[arg(long)]
        traffic_seed: Option<u64>,
        /// A fault to inject, e.g. `payment:down`, `payment:error=0.3`, `payment:latency=+500ms`.
        #[arg(long)]
        fault: Option<String>,
        /// Start the traces this many seconds after the world's base time (2026-11-01 00:00
        /// UTC), e.g. to make an experiment's window after normal traffic for `augur backtest`.
        #[arg(long, value_name = "SECONDS", default_value_t = 0.0)]
        start_offset: f64,
        /// Put each message's consumer in a trace of its own, its CONSUMER span linked to the
        /// producer's span (OTLP span links) instead of parented by it. Formats without links
        /// (Zipkin, CSV) cannot carry the link.
        #[arg(long)]
        linked_consumers: bool,
        /// Output format.
        #[arg(long, value_enum, default_value_t = demo::OutFormat::OtlpJsonl)]
        format: demo::OutFormat,
        /// Output file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Also write the ground-truth graph (JSON) here.
        #[arg(long, value_name = "FILE")]
        truth: Option<PathBuf>,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ScopeArg {
    /// Whole services and uninstrumented peers.
    Service,
    /// Also single operations.
    Operation,
    /// Also single call sites.
    Edge,
}

#[derive(clap::Args, Debug)]
struct ExperimentArgs {
    /// How long an experiment runs, minutes.
    #[arg(long, value_name = "MINUTES", default_value_t = 10.0)]
    duration: f64,
    /// Requests simulated per posterior draw (1 to 10,000,000; requests × samples at most
    /// 100,000,000).
    #[arg(long, default_value_t = 2_000)]
    requests: usize,
    /// Posterior draws (2 to 100,000).
    #[arg(long, default_value_t = 32)]
    samples: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl ExperimentArgs {
    fn options(
        &self,
        scope: ScopeArg,
        error_budget: Option<f64>,
    ) -> Result<augur_recommender::Options> {
        experiment_options(
            scope,
            self.duration,
            self.requests,
            self.samples,
            self.seed,
            error_budget,
        )
        .map_err(|e| anyhow::anyhow!("--{e}"))
    }
}

/// The recommender's options, checked (shared by the commands and the serve API).
pub(crate) fn experiment_options(
    scope: ScopeArg,
    duration_min: f64,
    requests: usize,
    samples: usize,
    seed: u64,
    error_budget: Option<f64>,
) -> Result<augur_recommender::Options> {
    // Messages start with the option's name; the command line puts `--` before it.
    // A year at most: longer experiments are not planned, and harm must stay a finite number.
    if duration_min.is_nan() || duration_min <= 0.0 || duration_min > 525_600.0 {
        bail!("duration must be a positive number of minutes, at most a year (525600)");
    }
    check_sim_options(requests, samples).map_err(anyhow::Error::msg)?;
    if error_budget.is_some_and(|b| !b.is_finite() || b < 0.0) {
        bail!("error-budget is a number of failed requests (>= 0; leave it out for no budget)");
    }
    Ok(augur_recommender::Options {
        scope: match scope {
            ScopeArg::Service => augur_recommender::Scope::Service,
            ScopeArg::Operation => augur_recommender::Scope::Operation,
            ScopeArg::Edge => augur_recommender::Scope::Edge,
        },
        duration_s: duration_min * 60.0,
        error_budget,
        sim: augur_simulator::SimOptions {
            requests,
            samples,
            seed,
        },
        staleness: Default::default(),
        keep_fits: false,
    })
}

/// The most requests one simulation may run per posterior draw.
const MAX_REQUESTS: usize = 10_000_000;
/// The most posterior draws one simulation may take.
const MAX_SAMPLES: usize = 100_000;
/// The most requests of all draws together one simulation may run.
const MAX_WORK: usize = 100_000_000;

/// Checks the simulation sizes; the reason when they are unusable.
pub(crate) fn check_sim_options(requests: usize, samples: usize) -> Result<(), String> {
    if requests == 0 || requests > MAX_REQUESTS {
        return Err(format!("requests must be between 1 and {MAX_REQUESTS}"));
    }
    if !(2..=MAX_SAMPLES).contains(&samples) {
        return Err(format!(
            "samples must be between 2 and {MAX_SAMPLES} (intervals come from the spread across draws)"
        ));
    }
    // The simulation keeps a latency per request and draw.
    if requests.saturating_mul(samples) > MAX_WORK {
        return Err(format!(
            "requests × samples must be at most {MAX_WORK} (memory: a latency per request and draw)"
        ));
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
enum ModelCommand {
    /// Print a model readably: endpoints and their traffic, operations (self time, own error
    /// rate), call sites (calls per invocation, mode, retries, timeout, P(propagate)) and the
    /// learned priors. Intervals are 90% credible intervals.
    Show {
        /// A model file written by `augur learn`.
        model: PathBuf,
        /// Print the model as read (calls placed, parameters derived) as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(clap::Args, Debug)]
struct ReadArgs {
    /// Treat any bad record as an error (by default bad records are skipped, counted and the
    /// first few reported on stderr).
    #[arg(long)]
    strict: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum GraphFormat {
    /// The JSON contract (see `augur graph --help`).
    Json,
    /// Graphviz DOT.
    Dot,
    /// A table for people.
    Table,
}

fn main() -> ExitCode {
    init_tracing();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// Creates the directory an `--out DIR` names; a clear error when the path is a file.
pub(crate) fn create_out_dir(dir: &Path) -> Result<()> {
    if dir.exists() && !dir.is_dir() {
        bail!(
            "{} exists and is not a directory (this command writes several files into a directory)",
            dir.display()
        );
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))
}

/// An error and its causes, `: `-separated, leaving out a cause whose text the message before
/// it already ends with (library errors name their file and include the OS's reason).
fn error_text(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Ingest { paths, lake, read } => ingest(&paths, &lake, &read),
        Command::Learn {
            paths,
            out,
            into,
            read,
            trace_window,
            include_experiments,
            json,
        } => {
            if trace_window == 0 || trace_window > 1 << 32 {
                bail!("--trace-window must be between 1 and 4294967296 spans");
            }
            let opts = BuildOptions {
                trace_window,
                experiments: if include_experiments {
                    ExperimentTraces::Learn
                } else {
                    ExperimentTraces::SetAside
                },
            };
            // Read the old model first, so a bad one stops us before the traces are read.
            let base = match &into {
                Some(path) if path.exists() => Some(Model::load(path)?),
                _ => None,
            };
            // Files the model learned before are not learned again (their traces would count
            // twice): a nightly `learn --into` over a directory that grows learns what is new.
            let known: &[augur_model::LearnedFile] =
                base.as_ref().map_or(&[], |b| &b.learned_files);
            let mut before = ReadBefore::new(known);
            let (mut model, summary, _) =
                match learn_new(&paths, &read, opts, &mut |f| before.wants(f)) {
                    Err(e) if e.is::<NothingNew>() => {
                        eprintln!(
                            "nothing new: the files given were learned into the model before \
                             ({}; learning them again would count their traces twice) or hold no \
                             traces",
                            before.already
                        );
                        if json {
                            write_stdout(&format!(
                                "{{\"files\": 0, \"files_already_learned\": {}}}\n",
                                before.already
                            ))?;
                        }
                        return Ok(());
                    }
                    r => r?,
                };
            before.tell("already learned into the model", "learned into the model");
            let already = before.already;
            // With --into, the summary stays this run's (what PATHS held) and `whole` says what
            // the model saved holds.
            let mut whole = None;
            if let Some(base) = base {
                model.merge(&base);
                let mut merged = summary.clone();
                merged.describe(&model);
                whole = Some(merged);
                if !json {
                    eprintln!(
                        "added to the model, which now holds {} spans in {} traces",
                        model.quality.spans, model.quality.traces
                    );
                }
            }
            let Some(out) = out.or(into) else {
                bail!("give --out MODEL or --into MODEL");
            };
            model
                .save(&out)
                .with_context(|| format!("saving the model to {}", out.display()))?;
            if json {
                let mut out = summary.to_json();
                // Files left out as learned before (with --into).
                if already > 0 {
                    out["files_already_learned"] = already.into();
                }
                if let Some(w) = &whole {
                    out["model"] = w.model_json();
                }
                write_stdout(&(serde_json::to_string_pretty(&out)? + "\n"))?;
            } else {
                eprintln!("{}", summary.to_text());
                if let Some(w) = &whole {
                    eprintln!(
                        "the model now: services: {}  operations: {}  endpoints: {}  virtual \
                         nodes: {}  edges: {}",
                        w.services, w.operations, w.endpoints, w.virtual_nodes, w.edges
                    );
                }
                eprintln!("model written to {}", out.display());
            }
            Ok(())
        }
        Command::Graph { model, format } => {
            let model = Model::load(&model)?;
            let graph = model.graph();
            let text = match format {
                GraphFormat::Json => serde_json::to_string_pretty(&graph)? + "\n",
                GraphFormat::Dot => graph.to_dot(),
                GraphFormat::Table => graph.to_table(),
            };
            write_stdout(&text)
        }
        Command::Model {
            command: ModelCommand::Show { model, json },
        } => {
            let view = Model::load(&model)?.view();
            emit(json, &view, || show::model_text(&view))
        }
        Command::Merge { models, out } => {
            let mut merged: Option<Model> = None;
            // Each input by its real path and a hash of its bytes (a model's file is
            // deterministic, so two files with one content hold one model).
            let mut seen: Vec<(PathBuf, u64, &PathBuf)> = Vec::new();
            for path in &models {
                let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
                if let Some((_, _, first)) = seen.iter().find(|(p, ..)| *p == real) {
                    bail!(
                        "{} is given twice (as {}): merging a model with itself would count its traces twice",
                        path.display(),
                        first.display()
                    );
                }
                let m = Model::load(path)?;
                let hash = std::fs::read(path).map_or(0, |b| augur_ingest::fnv1a64(&b));
                if let Some((.., twin)) = seen.iter().find(|(_, h, _)| *h == hash && hash != 0) {
                    eprintln!(
                        "warning: {} is the same model as {}: if they were learned from the same traces, those traces now count twice",
                        path.display(),
                        twin.display()
                    );
                }
                seen.push((real, hash, path));
                if let Some(acc) = &merged {
                    warn_if_unrelated(acc, &m, "merge");
                    // Trace files both learned (a model merged with one it already contains).
                    let shared = m
                        .learned_files
                        .iter()
                        .filter(|f| acc.learned_files.binary_search(f).is_ok())
                        .count();
                    if shared > 0 {
                        eprintln!(
                            "warning: {} was learned from {shared} of the trace files the models before it learned: their traces now count twice (merge models of different traces)",
                            path.display()
                        );
                    }
                }
                match &mut merged {
                    Some(acc) => acc.merge(&m),
                    None => merged = Some(m),
                }
            }
            let Some(merged) = merged else {
                bail!("no model given");
            };
            merged
                .save(&out)
                .with_context(|| format!("saving the model to {}", out.display()))?;
            eprintln!(
                "merged {} models ({} spans, {} operations, {} call sites) into {}",
                models.len(),
                merged.quality.spans,
                merged.operations.len(),
                merged.calls.len() + merged.unarrived.len(),
                out.display()
            );
            Ok(())
        }
        Command::Diff { old, new, json } => {
            let (old, new) = (Model::load(&old)?, Model::load(&new)?);
            warn_if_unrelated(&old, &new, "diff");
            let (old, new) = (old.view(), new.view());
            let report = augur_model::diff(&old, &new);
            emit(json, &report, || report.to_text())
        }
        Command::Simulate {
            model,
            faults,
            requests,
            samples,
            seed,
            json,
        } => {
            check_sim_options(requests, samples).map_err(|m| anyhow::anyhow!("--{m}"))?;
            let specs = faults
                .iter()
                .map(|f| f.parse::<augur_simulator::FaultSpec>())
                .collect::<Result<Vec<_>, _>>()?;
            let view = Model::load(&model)?.view();
            let opts = augur_simulator::SimOptions {
                requests,
                samples,
                seed,
            };
            let started = Instant::now();
            let (prediction, events) = augur_simulator::simulate(&view, &specs, &opts)?;
            tracing::debug!(
                events,
                seconds = started.elapsed().as_secs_f64(),
                "simulated"
            );
            let unrecorded = view.unrecorded_operations();
            emit(json, &prediction, || {
                let mut t = prediction.to_table(10);
                if unrecorded > 0 {
                    t.push_str(&format!(
                        "\nnote: the traces of {unrecorded} operations record no span status, so their own \
                         error rates are unknown and not simulated: they fail only through their calls \
                         and the faults put on them.\n"
                    ));
                }
                t
            })
        }
        Command::Recommend {
            model,
            intents,
            scope,
            top,
            error_budget,
            exp,
            json,
        } => {
            if top == 0 {
                bail!("--top must be at least 1");
            }
            let mut opts = exp.options(scope, error_budget)?;
            let (view, intents) = model_and_intents(&model, intents.as_deref(), &mut opts)?;
            let mut rec = recommend_all(&view, &intents, &opts)?;
            // Ranked by value, unsafe ones in their place: when none of the top is safe, say
            // where the first safe one is.
            let first_safe = rec.experiments.iter().position(|e| e.safe).map(|k| {
                (
                    k,
                    rec.experiments[k].fault.clone(),
                    rec.experiments[k].value_bits,
                )
            });
            rec.experiments.truncate(top);
            emit(json, &rec, || {
                let mut text = show::recommendation_text(&rec, opts.error_budget.is_some());
                match first_safe {
                    Some((k, fault, bits)) if k >= top => text.push_str(&format!(
                        "none of these fits the error budget; the most valuable that does is #{}: {fault} ({bits:.2} bits; --top {})\n",
                        k + 1,
                        k + 1
                    )),
                    None if opts.error_budget.is_some() && !rec.experiments.is_empty() => {
                        text.push_str(
                            "no experiment fits the error budget, even at 1% of traffic for a tenth of the duration\n",
                        )
                    }
                    _ => {}
                }
                text
            })
        }
        Command::Plan {
            model,
            budget,
            intents,
            scope,
            max,
            exp,
            json,
        } => {
            if max == 0 {
                bail!("--max must be at least 1");
            }
            if !(budget.is_finite() && budget >= 0.0) {
                bail!("--budget is a number of failed requests (>= 0)");
            }
            // Every experiment at every traffic share within the budget; the plan fits each to
            // the budget left when it picks it.
            let mut opts = exp.options(scope, Some(budget))?;
            opts.keep_fits = true;
            let (view, intents) = model_and_intents(&model, intents.as_deref(), &mut opts)?;
            let rec = recommend_all(&view, &intents, &opts)?;
            let endpoints =
                augur_recommender::recommend::requests_per_endpoint(&view, opts.duration_s);
            let plan =
                augur_recommender::plan::plan(&rec, &endpoints, budget, max, opts.sim.requests);
            emit(json, &plan, || show::plan_text(&plan))
        }
        Command::Value {
            model,
            fault,
            intents,
            error_budget,
            scope,
            exp,
            json,
        } => {
            let mut opts = exp.options(scope, error_budget)?;
            let spec: augur_simulator::FaultSpec = fault.parse()?;
            let (view, intents) = model_and_intents(&model, intents.as_deref(), &mut opts)?;
            let e = augur_recommender::value_of(&view, &intents, &spec, &opts)?;
            if json {
                write_stdout(&(serde_json::to_string_pretty(&e)? + "\n"))
            } else {
                let rec = augur_recommender::Recommendation {
                    experiments: vec![e],
                };
                write_stdout(&show::recommendation_text(
                    &rec,
                    opts.error_budget.is_some(),
                ))
            }
        }
        Command::Serve(args) => serve::run(args),
        Command::Outcome {
            model,
            fault,
            traces,
            out,
            ledger,
            intents,
            traffic_share,
            requests,
            samples,
            seed,
            json,
            read,
        } => outcome::run_outcome(&outcome::OutcomeArgs {
            model: &model,
            fault: &fault,
            traces: &traces,
            out: out.as_deref(),
            ledger: ledger.as_deref(),
            intents: intents.as_deref(),
            traffic_share,
            sim: augur_simulator::SimOptions {
                requests,
                samples,
                seed,
            },
            read: &read,
            json,
        }),
        Command::Ledger { model, json } => outcome::run_ledger(&model, json),
        Command::Report {
            model,
            out,
            intents,
            previous,
            scope,
            error_budget,
            exp,
        } => {
            let opts = exp.options(scope, error_budget)?;
            outcome::run_report(&model, &out, intents.as_deref(), previous.as_deref(), opts)
        }
        Command::Export {
            model,
            out,
            intents,
            scope,
            error_budget,
            exp,
        } => {
            let mut opts = exp.options(scope, error_budget)?;
            let (view, intents) = model_and_intents(&model, intents.as_deref(), &mut opts)?;
            let rec = recommend_all(&view, &intents, &opts)?;
            for (file, rows) in export::export(&view, &rec, &out)? {
                eprintln!("wrote {file} ({rows} rows)");
            }
            Ok(())
        }
        Command::Backtest {
            traces,
            experiments,
            baseline,
            min_invocations,
            recent,
            requests,
            samples,
            seed,
            json,
            report,
            read,
        } => {
            check_sim_options(requests, samples).map_err(|m| anyhow::anyhow!("--{m}"))?;
            let text = std::fs::read_to_string(&experiments)
                .with_context(|| format!("reading {}", experiments.display()))?;
            let labels = augur_simulator::backtest::parse_labels(&text)
                .map_err(|m| anyhow::anyhow!("{}: {m}", experiments.display()))?;
            let mut spans = Vec::new();
            read_all(&traces, &read, &mut |b| {
                spans.push(b);
                Ok(())
            })?;
            let mut extra = Vec::new();
            if !baseline.is_empty() {
                read_all(&baseline, &read, &mut |b| {
                    extra.push(b);
                    Ok(())
                })?;
            }
            let opts = augur_simulator::backtest::BacktestOptions {
                sim: augur_simulator::SimOptions {
                    requests,
                    samples,
                    seed,
                },
                min_invocations,
                recent_ns: i64::try_from(recent)
                    .ok()
                    .and_then(|s| s.checked_mul(1_000_000_000))
                    .ok_or_else(|| anyhow::anyhow!("--recent {recent}: too many seconds"))?,
            };
            let progress = Progress::spinner(&format!(
                "backtesting {} experiments (learn, simulate, compare each)",
                labels.len()
            ));
            let result = augur_simulator::backtest::run(&spans, &extra, &labels, &opts);
            progress.finish();
            if let Some(path) = &report {
                std::fs::write(path, result.to_html())
                    .with_context(|| format!("writing {}", path.display()))?;
                eprintln!("report written to {}", path.display());
            }
            emit(json, &result, || result.to_text())
        }
        Command::Demo { dir, traces, seed } => demo::run_demo(&dir, traces, seed),
        Command::Generate {
            world,
            services,
            traces,
            seed,
            traffic_seed,
            fault,
            start_offset,
            linked_consumers,
            format,
            out,
            truth,
        } => demo::generate(&demo::GenerateArgs {
            world,
            services,
            traces,
            seed,
            traffic_seed,
            fault,
            start_offset,
            linked_consumers,
            format,
            out,
            truth,
        }),
    }
}

/// Reads a model, (optionally) the intents file validated against it, and the ledger beside
/// the model, whose tested targets set `opts.staleness`.
fn model_and_intents(
    model: &std::path::Path,
    intents: Option<&std::path::Path>,
    opts: &mut augur_recommender::Options,
) -> Result<(augur_model::View, Vec<augur_recommender::Intent>)> {
    let m = Model::load(model)?;
    let view = m.view();
    let intents = match intents {
        Some(p) => augur_recommender::intents::load(p, &view)?,
        None => Vec::new(),
    };
    opts.staleness = outcome::staleness_of(model, &m, &view)?;
    Ok((view, intents))
}

/// Simulates and ranks every candidate, with a spinner on a terminal.
fn recommend_all(
    view: &augur_model::View,
    intents: &[augur_recommender::Intent],
    opts: &augur_recommender::Options,
) -> Result<augur_recommender::Recommendation> {
    let progress = Progress::spinner("simulating every candidate experiment");
    let rec = augur_recommender::recommend::recommend(view, intents, opts);
    progress.finish();
    Ok(rec?)
}

/// Warns when two models share no operation: most likely models of different systems, which
/// `what` (diff, merge, the report's drift) compares or adds as if they were one.
pub(crate) fn warn_if_unrelated(a: &Model, b: &Model, what: &str) {
    if a.operations.is_empty() || b.operations.is_empty() {
        return;
    }
    let shared = b
        .operations
        .iter()
        .filter(|o| a.operations.binary_search_by(|x| x.id.cmp(&o.id)).is_ok())
        .count();
    if shared == 0 {
        eprintln!(
            "warning: the models share no operation ({} and {} operations): models of different systems? {what} treats them as one system",
            a.operations.len(),
            b.operations.len()
        );
    }
}

/// Prints a result on stdout: as pretty JSON with `--json`, else as the text `text` makes.
fn emit<T: serde::Serialize>(json: bool, value: &T, text: impl FnOnce() -> String) -> Result<()> {
    if json {
        write_stdout(&(serde_json::to_string_pretty(value)? + "\n"))
    } else {
        write_stdout(&text())
    }
}

/// Writes to stdout, treating a closed pipe (`augur graph m | head`) as success.
fn write_stdout(text: &str) -> Result<()> {
    let text = terminal_text(text);
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// Reads every file below `paths`, one at a time with progress, handing batches to `sink`.
///
/// A file named on the command line must be a trace file. A file found by walking a directory
/// that is not a trace file at all (a README, an empty file) is skipped with a warning, so a
/// directory of traces may hold other things; a trace file that is broken is still an error.
fn read_all(
    paths: &[PathBuf],
    read: &ReadArgs,
    sink: &mut dyn FnMut(SpanBatch) -> Result<(), augur_ingest::IngestError>,
) -> Result<IngestReport> {
    read_files(paths, read, &mut |_| true, sink).map(|(report, _)| report)
}

/// [`read_all`], reading only the files `wanted` accepts; also returns the files read.
fn read_files(
    paths: &[PathBuf],
    read: &ReadArgs,
    wanted: &mut dyn FnMut(&std::path::Path) -> bool,
    sink: &mut dyn FnMut(SpanBatch) -> Result<(), augur_ingest::IngestError>,
) -> Result<(IngestReport, Vec<PathBuf>)> {
    let mut files: Vec<(PathBuf, bool)> = Vec::new();
    let mut found = 0usize;
    for p in paths {
        let from_dir = p.is_dir();
        for f in augur_ingest::expand_paths(std::slice::from_ref(p))? {
            found += 1;
            if wanted(&f) {
                files.push((f, from_dir));
            }
        }
    }
    if found == 0 {
        bail!("no files found under the given paths");
    }
    let opts = ReadOptions {
        strict: read.strict,
        ..ReadOptions::default()
    };
    let size = |f: &PathBuf| std::fs::metadata(f).map(|m| m.len()).unwrap_or(0);
    let total: u64 = files.iter().map(|(f, _)| size(f)).sum();
    let progress = Progress::bytes(total);
    let mut report = IngestReport::default();
    let mut skipped = 0usize;
    let mut read_ok = Vec::with_capacity(files.len());
    for (file, from_dir) in &files {
        progress.set_message(&file.display().to_string());
        let result = augur_ingest::read_file(file, &opts, &mut report, &mut |batch| {
            progress.spans(batch.len() as u64);
            sink(batch)
        });
        match result {
            Ok(format) => {
                tracing::debug!(file = %file.display(), format = format.name(), "read");
                read_ok.push(file.clone());
            }
            Err(
                e @ (augur_ingest::IngestError::UnknownFormat { .. }
                | augur_ingest::IngestError::Empty { .. }),
            ) if *from_dir => {
                progress.suspend(|| eprintln!("warning: skipped {e}"));
                skipped += 1;
            }
            Err(e) => {
                progress.finish();
                return Err(e.into());
            }
        }
        progress.inc(size(file));
    }
    progress.finish();
    // (When files were left out as read before, the rest may hold no trace file: nothing new.)
    if skipped > 0 && skipped == files.len() && found == files.len() {
        bail!("none of the {skipped} files found is a trace file");
    }
    report_problems(&report);
    Ok((report, read_ok))
}

/// Prints the first bad records (file, location, reason), then how many more there were.
fn report_problems(report: &IngestReport) {
    const SHOWN: usize = 5;
    for p in report.problems.iter().take(SHOWN) {
        eprintln!("warning: skipped a bad record: {p}");
    }
    let more = report.rejected.saturating_sub(SHOWN as u64);
    if more > 0 {
        eprintln!(
            "warning: … and {more} more bad records skipped (use --strict to stop at the first)"
        );
    }
}

/// The trace files a lake holds, by content (one [`augur_model::LearnedFile`] a line): `augur
/// ingest` skips them when given again. Hidden, so readers of the lake never see it.
const LAKE_MANIFEST: &str = ".augur-ingested.jsonl";

fn ingest(paths: &[PathBuf], lake: &std::path::Path, read: &ReadArgs) -> Result<()> {
    let started = Instant::now();
    let manifest = lake.join(LAKE_MANIFEST);
    let mut known: Vec<augur_model::LearnedFile> = match std::fs::read_to_string(&manifest) {
        Ok(text) => text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(i, l)| {
                serde_json::from_str(l).with_context(|| {
                    format!(
                        "reading {} line {} (delete it to ingest every file again)",
                        manifest.display(),
                        i + 1
                    )
                })
            })
            .collect::<Result<_>>()?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", manifest.display())),
    };
    known.sort();
    let mut before = ReadBefore::new(&known);
    let (mut writer, recovered) = augur_ingest::lake::begin_run(lake, &manifest)?;
    match recovered {
        augur_ingest::lake::Recovery::RolledBack { parts } => eprintln!(
            "warning: the last ingest into {} stopped before it completed; {} removed, so its \
             files are ingested again (once)",
            lake.display(),
            if parts == 1 {
                "the part it had written was".to_string()
            } else {
                format!("the {parts} parts it had written were")
            }
        ),
        augur_ingest::lake::Recovery::Committed | augur_ingest::lake::Recovery::Clean => {}
    }
    let read = read_files(paths, read, &mut |f| before.wants(f), &mut |batch| {
        writer.append(&batch)
    });
    let (report, files) = match read {
        Ok(r) => r,
        Err(e) => {
            // Nothing of a failed ingest is kept: the files are ingested whole next time.
            return Err(match writer.abandon() {
                Ok(_) => e.context(format!("nothing was added to {}", lake.display())),
                Err(undo) => e.context(format!(
                    "and removing this ingest's parts from {} failed ({undo}): the next \
                     ingest removes them",
                    lake.display()
                )),
            });
        }
    };
    let (parts, rows) = writer.finish()?;
    before.tell("the lake holds already", "ingested into the lake");
    let mut text = String::new();
    for f in files.iter().filter_map(|f| learned_file(f)) {
        text.push_str(&serde_json::to_string(&f)?);
        text.push('\n');
    }
    augur_ingest::lake::commit(lake, &manifest, &text).with_context(|| {
        format!(
            "the {rows} spans read are stored in {} new parts of {}, but the list of files \
             ingested could not be updated: the next ingest removes these parts and stores \
             the files again",
            parts.len(),
            lake.display()
        )
    })?;
    eprintln!(
        "ingested {} spans from {} files ({} bad records skipped) into {} new parts in {} ({:.1}s)",
        rows,
        report.files,
        report.rejected,
        parts.len(),
        lake.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// What `augur learn` reports.
#[derive(Clone)]
pub(crate) struct LearnSummary {
    files: u64,
    bytes: u64,
    spans: u64,
    rejected: u64,
    traces: u64,
    services: usize,
    operations: usize,
    endpoints: usize,
    virtual_nodes: usize,
    edges: usize,
    seconds: f64,
    quality: augur_model::TraceQuality,
    unarrived_to_instrumented: u64,
    /// Operations whose spans never recorded a status (own error rate not learned).
    unrecorded_operations: usize,
    /// Operation ids (`"<service> <operation>"`) that stand for more than one operation.
    shared_names: Vec<String>,
}

impl LearnSummary {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "files": self.files,
            "bytes": self.bytes,
            "spans": self.spans,
            "traces": self.traces,
            "services": self.services,
            "operations": self.operations,
            "endpoints": self.endpoints,
            "virtual_nodes": self.virtual_nodes,
            "edges": self.edges,
            "rejected": self.rejected,
            "seconds": self.seconds,
            "quality": self.quality,
            "unrecorded_status_operations": self.unrecorded_operations,
            "shared_names": self.shared_names,
        })
    }

    /// What the model saved holds (after `learn --into`, the old traces and the new).
    fn model_json(&self) -> serde_json::Value {
        serde_json::json!({
            "spans": self.quality.spans,
            "traces": self.traces,
            "services": self.services,
            "operations": self.operations,
            "endpoints": self.endpoints,
            "virtual_nodes": self.virtual_nodes,
            "edges": self.edges,
        })
    }

    pub(crate) fn to_text(&self) -> String {
        let rate = if self.seconds > 0.0 {
            self.spans as f64 / self.seconds
        } else {
            0.0
        };
        let traces = if self.quality.spans == self.spans {
            format!("in {} traces ", self.traces)
        } else {
            String::new()
        };
        let mut s = format!(
            "learned from {} spans {traces}({} files, {:.1} MB) in {:.2}s ({:.0} spans/s)\n\
             services: {}  operations: {}  endpoints: {}  virtual nodes: {}  edges: {}\n\
             records rejected: {}",
            self.spans,
            self.files,
            self.bytes as f64 / 1e6,
            self.seconds,
            rate,
            self.services,
            self.operations,
            self.endpoints,
            self.virtual_nodes,
            self.edges,
            self.rejected,
        );
        let q = &self.quality;
        let issues = [
            (q.missing_parents, "spans whose parent is missing"),
            (q.duplicate_spans, "duplicate spans dropped"),
            (q.conflicting_span_ids, "span ids reused by different spans"),
            (q.end_before_start, "spans ending before they start"),
            (
                q.clock_skew,
                "calls where the server starts before its caller (clock skew)",
            ),
            (q.cycles, "parent cycles cut"),
            (
                q.clients_without_peer,
                "client spans that reached nothing and name no peer",
            ),
            (
                self.unarrived_to_instrumented,
                "calls that never reached an instrumented service",
            ),
            (q.traces_cut_by_window, "traces cut by --trace-window"),
            (
                q.traces_split,
                "traces whose spans kept coming after the trace was finished, learned in parts (raise --trace-window; or one trace id was used again later)",
            ),
            (
                q.links_unmatched,
                "consumer spans linked to a producer span never seen",
            ),
            (
                q.experiment_traces,
                "traces of experiments left out (a span carried augur.experiment: record them with augur outcome, or learn them with --include-experiments)",
            ),
        ];
        for (n, what) in issues {
            if n > 0 {
                s.push_str(&format!("\ntrace quality: {n} {what}"));
            }
        }
        if !self.shared_names.is_empty() {
            s.push_str(&format!(
                "\ntrace quality: {} names stand for more than one operation (a service name with a \
                 space: `web front`'s `GET /x` and `web`'s `front GET /x`), so their calls and latencies \
                 are mixed up; rename the service: {}",
                self.shared_names.len(),
                self.shared_names.join(", ")
            ));
        }
        if self.unrecorded_operations > 0 {
            s.push_str(&format!(
                "\ntrace quality: {} operations whose spans record no status (the format has none): \
                 their own error rates are not learned, and not simulated",
                self.unrecorded_operations
            ));
        }
        s
    }
}

/// Reads traces and builds the model.
pub(crate) fn learn(
    paths: &[PathBuf],
    read: &ReadArgs,
    opts: BuildOptions,
) -> Result<(Model, LearnSummary)> {
    learn_labelled(paths, read, opts).map(|(m, s, _)| (m, s))
}

/// [`learn`], with the distinct `augur.experiment` labels the spans carried (collected only
/// when experiments' traces are learned, at most [`MAX_LABELS`]).
pub(crate) fn learn_labelled(
    paths: &[PathBuf],
    read: &ReadArgs,
    opts: BuildOptions,
) -> Result<(Model, LearnSummary, std::collections::BTreeSet<String>)> {
    learn_new(paths, read, opts, &mut |_| true)
}

/// Whether `f` is among `known` files: `Some(true)` when it is (learned or ingested before),
/// `Some(false)` when a file that began the same was, at another size (it grew, or was cut).
fn seen_in(known: &[augur_model::LearnedFile], f: &std::path::Path) -> Option<bool> {
    let file = learned_file(f)?;
    let same = known.binary_search(&file).is_ok()
        // Entries written before the middle was hashed.
        || known.iter().any(|k| {
            k.middle.is_empty() && (&k.head, &k.tail, k.bytes) == (&file.head, &file.tail, file.bytes)
        });
    if same {
        return Some(true);
    }
    known
        .iter()
        .any(|k| k.head == file.head && k.bytes != file.bytes)
        .then_some(false)
}

/// Which files to read of those found, given the `known` ones read before (a model's, a
/// lake's): what was read is left out, what changed size since is read with a warning.
struct ReadBefore<'a> {
    known: &'a [augur_model::LearnedFile],
    /// Files left out.
    already: usize,
    /// Files read again that had changed size.
    changed: Vec<PathBuf>,
}

impl<'a> ReadBefore<'a> {
    fn new(known: &'a [augur_model::LearnedFile]) -> Self {
        ReadBefore {
            known,
            already: 0,
            changed: Vec::new(),
        }
    }

    /// Whether to read `f`.
    fn wants(&mut self, f: &std::path::Path) -> bool {
        if self.known.is_empty() {
            return true;
        }
        match seen_in(self.known, f) {
            Some(true) => {
                self.already += 1;
                false
            }
            Some(false) => {
                self.changed.push(f.to_path_buf());
                true
            }
            None => true,
        }
    }

    /// Says what was left out (`skipped`: "the lake holds already") and warns of the files
    /// read again that changed since they were `done` ("ingested into the lake").
    fn tell(&self, skipped: &str, done: &str) {
        let n = self.already;
        if n > 0 {
            eprintln!(
                "skipped {n} file{} {skipped} (reading {} again would count {} spans twice)",
                if n == 1 { "" } else { "s" },
                if n == 1 { "it" } else { "them" },
                if n == 1 { "its" } else { "their" },
            );
        }
        for f in &self.changed {
            eprintln!("warning: {}", changed_text(f, done));
        }
    }
}

/// The warning for a file `f` that changed since it was `done` (learned, ingested).
fn changed_text(f: &std::path::Path, done: &str) -> String {
    format!(
        "{} has changed size since it was {done}: it is read again whole, so whatever it held \
         then counts twice (rotate trace files, e.g. the Collector file exporter's `rotation`, \
         rather than appending to or cutting a file already read)",
        f.display()
    )
}

/// A trace file's [`augur_model::LearnedFile`] (`None` when it cannot be read: reading it will
/// say why).
fn learned_file(path: &std::path::Path) -> Option<augur_model::LearnedFile> {
    let f = augur_ingest::fingerprint(path).ok()?;
    Some(augur_model::LearnedFile {
        head: format!("{:016x}", f.head),
        tail: format!("{:016x}", f.tail),
        middle: format!("{:016x}", f.middle),
        bytes: f.bytes,
    })
}

/// [`learn_new`] found no spans in the files it did not leave out, having left some out.
#[derive(Debug)]
struct NothingNew;

impl std::fmt::Display for NothingNew {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no span in the files not learned before")
    }
}

impl std::error::Error for NothingNew {}

/// [`learn_labelled`] from the files `wanted` accepts; the model remembers the files it read
/// ([`Model::learned_files`]).
fn learn_new(
    paths: &[PathBuf],
    read: &ReadArgs,
    opts: BuildOptions,
    wanted: &mut dyn FnMut(&std::path::Path) -> bool,
) -> Result<(Model, LearnSummary, std::collections::BTreeSet<String>)> {
    let started = Instant::now();
    let collect = opts.experiments == ExperimentTraces::Learn;
    let mut labels = std::collections::BTreeSet::new();
    // Reading and folding run on two threads, batches handed over through a short queue (so
    // memory stays bounded): the model's work overlaps the parsing instead of adding to it.
    let (tx, rx) = std::sync::mpsc::sync_channel::<SpanBatch>(4);
    let mut left_out = 0usize;
    let (report, model) = std::thread::scope(|s| {
        let folder = s.spawn(move || {
            let mut builder = ModelBuilder::new(opts);
            for batch in rx {
                builder.add_batch(&batch);
            }
            builder.finish()
        });
        let mut counted = |f: &std::path::Path| {
            let w = wanted(f);
            left_out += usize::from(!w);
            w
        };
        let report = read_files(paths, read, &mut counted, &mut |batch| {
            if collect {
                for l in batch.spans.iter().filter_map(|s| s.experiment) {
                    if labels.len() >= MAX_LABELS {
                        break;
                    }
                    let l = batch.str(l);
                    if !labels.contains(l) {
                        labels.insert(l.to_string());
                    }
                }
            }
            tx.send(batch).map_err(|_| {
                augur_ingest::IngestError::Sink("the model builder stopped unexpectedly".into())
            })
        });
        drop(tx);
        (report, folder.join())
    });
    let Ok(mut model) = model else {
        bail!("the model builder failed (a bug: please report it)");
    };
    let (report, files) = report?;
    model.learned_files = files.iter().filter_map(|f| learned_file(f)).collect();
    model.learned_files.sort();
    model.learned_files.dedup();
    if report.spans == 0 && left_out > 0 {
        return Err(NothingNew.into());
    }
    if report.spans == 0 {
        let named: Vec<String> = paths
            .iter()
            .take(3)
            .map(|p| p.display().to_string())
            .collect();
        let more = if paths.len() > 3 { ", ..." } else { "" };
        bail!(
            "no spans were read from {} file(s) in {}{more} ({} bad records skipped)",
            report.files,
            named.join(", "),
            report.rejected
        );
    }
    let mut summary = LearnSummary {
        files: report.files,
        bytes: report.bytes,
        spans: report.spans,
        rejected: report.rejected,
        traces: 0,
        services: 0,
        operations: 0,
        endpoints: 0,
        virtual_nodes: 0,
        edges: 0,
        seconds: started.elapsed().as_secs_f64(),
        quality: model.quality.clone(),
        unarrived_to_instrumented: 0,
        unrecorded_operations: 0,
        shared_names: Vec::new(),
    };
    summary.describe(&model);
    Ok((model, summary, labels))
}

/// The most distinct experiment labels [`learn_labelled`] keeps.
pub(crate) const MAX_LABELS: usize = 16;

impl LearnSummary {
    /// Sets the model's totals (after a merge they describe the merged model).
    fn describe(&mut self, model: &Model) {
        let view = model.view();
        self.traces = model.quality.traces;
        self.services = model.services();
        self.operations = model.operations.len();
        self.endpoints = view.nodes.iter().filter(|n| n.endpoint).count();
        self.virtual_nodes = view.nodes.iter().filter(|n| n.is_virtual).count();
        self.edges = view.edges.len();
        self.quality = model.quality.clone();
        self.unarrived_to_instrumented = view.calls_to_instrumented_without_server;
        self.unrecorded_operations = view.unrecorded_operations();
        // An operation is named `"<service> <operation>"`, so service `web front`'s `GET /x` and
        // service `web`'s `front GET /x` share a name. (A peer named like an operation is told
        // apart by the view: `augur_model::PEER_SUFFIX`.)
        let mut names: Vec<&str> = model.operations.iter().map(|o| o.id.as_str()).collect();
        names.sort_unstable();
        self.shared_names = names
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0].to_string())
            .collect();
        self.shared_names.dedup();
    }
}

#[cfg(test)]
mod error_text_tests {
    #[test]
    fn control_characters_from_traces_do_not_reach_the_terminal() {
        let name = "svc\u{1b}[2Jx\rhidden\u{0}\u{7f}";
        let line = format!("{name}\tGET /\n");
        let shown = super::terminal_text(&line);
        assert_eq!(
            shown,
            "svc\u{FFFD}[2Jx\u{FFFD}hidden\u{FFFD}\u{FFFD}\tGET /\n"
        );
        assert!(matches!(
            super::terminal_text("plain ✓\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = anyhow::Error::new(augur_model::ModelError::Io {
            path: "m.json".into(),
            source: io,
        })
        .context("loading");
        assert_eq!(super::error_text(&e), "loading: m.json: no such file");
    }
}

#[cfg(test)]
mod help_tests {
    use clap::CommandFactory;

    /// Every `--requests` and `--samples` help states the limits `check_sim_options` enforces.
    #[test]
    fn simulation_sizes_state_their_limits() {
        let thousands = |n: usize| {
            let s = n.to_string();
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i).is_multiple_of(3) {
                    out.push(',');
                }
                out.push(c);
            }
            out
        };
        let requests = format!("1 to {}", thousands(super::MAX_REQUESTS));
        let work = format!("at most {}", thousands(super::MAX_WORK));
        let samples = format!("2 to {}", thousands(super::MAX_SAMPLES));
        let mut seen = 0;
        let mut cli = super::Cli::command();
        for sub in cli.get_subcommands_mut() {
            for arg in sub.get_arguments() {
                let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
                match arg.get_id().as_str() {
                    "requests" => {
                        assert!(help.contains(&requests) && help.contains(&work), "{help}");
                        seen += 1;
                    }
                    "samples" => {
                        assert!(help.contains(&samples), "{help}");
                        seen += 1;
                    }
                    _ => {}
                }
            }
        }
        assert!(seen >= 8, "{seen}");
        assert!(super::check_sim_options(super::MAX_REQUESTS + 1, 2).is_err());
        assert!(super::check_sim_options(1, super::MAX_SAMPLES + 1).is_err());
        assert!(super::check_sim_options(1, 1).is_err());
        let most = super::MAX_WORK / super::MAX_REQUESTS;
        assert!(super::check_sim_options(super::MAX_REQUESTS, most).is_ok());
        assert!(super::check_sim_options(super::MAX_REQUESTS, most + 1).is_err());
    }
}
