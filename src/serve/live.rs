//! The live state behind `augur serve`: the write-ahead log and queue in front, the worker that
//! folds spans into the model and the lake behind, and the snapshots that bound the log.
//!
//! ```text
//! request ─► decode ─► room in queue? ─no─► refuse (retryable)
//!                          │ yes
//!                          ▼
//!              WAL append (+ queue, in log order) ─► fdatasync (grouped) ─► acknowledge
//!                          │
//!   worker: queue ─► model builder ─► every --trace-idle: fold quiet traces
//!             │                └─► experiments' traces (augur.experiment): one model per fault,
//!             │                    waiting for POST /api/outcome ─► ledger (with the evidence)
//!             └─► lake thread: Parquet parts (writing Parquet costs more than the model, so the
//!                 two run on their own threads)
//!   published model = normal traffic's model + the evidence of every ledger entry (re-read
//!   when the ledger changes)
//!           every --snapshot-every, and on shutdown: rotate WAL (segment B closed) ─► apply all of
//!           ≤ B ─► finish lake parts (fsync) ─► write snapshots/B {model.json, pending.pb,
//!           experiments.json} ─►
//!           delete WAL ≤ B
//! restart: newest snapshots/B ─► model + pending spans ─► drop unfinished lake parts ─►
//!          replay WAL > B into lake and model
//! ```

use std::collections::{BTreeMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use augur_ingest::lake::LakeWriter;
use augur_ingest::live::{decode_body, encode_batch, Decoded, Encoding};
use augur_ingest::wal::{self, Wal};
use augur_ingest::SpanBatch;
use augur_model::{BuildOptions, ExperimentTraces, Model, ModelBuilder};
use augur_recommender::ledger::{self, LedgerEntry};
use augur_recommender::outcome::{OutcomeOptions, OutcomeReport};
use augur_recommender::Intent;
use augur_simulator::FaultSpec;

/// Record kinds in the log.
const KIND_PROTOBUF: u8 = 1;
const KIND_JSON: u8 = 2;

fn kind_of(enc: Encoding) -> u8 {
    match enc {
        Encoding::Protobuf => KIND_PROTOBUF,
        Encoding::Json => KIND_JSON,
    }
}

fn encoding_of(kind: u8) -> Option<Encoding> {
    match kind {
        KIND_PROTOBUF => Some(Encoding::Protobuf),
        KIND_JSON => Some(Encoding::Json),
        _ => None,
    }
}

/// Settings of the live state.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Spans that may wait in the queue before requests are refused.
    pub queue_spans: u64,
    /// A trace with no new span for this long is folded into the model.
    pub trace_idle: Duration,
    /// How often the model is snapshotted (and the log truncated).
    pub snapshot_every: Duration,
    /// How often the model the API answers from is refreshed.
    pub publish_every: Duration,
}

/// Counters for `/metrics`.
#[derive(Default)]
pub struct Counters {
    pub spans_accepted: AtomicU64,
    pub spans_rejected: AtomicU64,
    pub requests_accepted: AtomicU64,
    pub requests_refused: AtomicU64,
    pub requests_invalid: AtomicU64,
    pub queued_spans: AtomicU64,
    pub snapshots: AtomicU64,
    pub model_spans: AtomicU64,
    pub model_operations: AtomicU64,
    pub model_call_sites: AtomicU64,
}

/// The model the API answers from, refreshed by the worker.
pub struct Published {
    /// Normal traffic's model, with every recorded experiment's evidence from the ledger.
    pub model: Model,
    pub view: augur_model::View,
    /// Experiments whose traces arrived and are waiting to be recorded.
    pub experiments: Vec<Waiting>,
}

/// An experiment's traces received and not yet recorded (`POST /api/outcome`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Waiting {
    /// The fault, as the spans' `augur.experiment` named it.
    pub fault: String,
    pub traces: u64,
    pub spans: u64,
    /// The first span's start and the last span's end (UTC).
    pub first: Option<String>,
    pub last: Option<String>,
}

/// What recording an experiment's outcome asks of the worker.
pub struct OutcomeRequest {
    pub fault: FaultSpec,
    pub intents: Vec<Intent>,
    pub opts: OutcomeOptions,
    pub reply: Sender<Result<OutcomeReport, OutcomeRefusal>>,
}

/// Why an experiment's outcome was not recorded.
#[derive(Debug)]
pub enum OutcomeRefusal {
    /// No traces of that experiment arrived (or they were recorded already).
    NoTraces(String),
    /// The fault does not fit the model (its target is unknown, ..).
    Invalid(String),
    /// The ledger or the snapshot could not be written.
    Failed(String),
}

/// The ledger's evidence, re-read when the file changes.
struct LedgerEvidence {
    path: PathBuf,
    /// Length and modification time of the file when it was read.
    stamp: Option<(u64, std::time::SystemTime)>,
    evidence: Option<Model>,
    /// Each recorded outcome's fault and its traces' window: traces of that fault within it
    /// were recorded already.
    recorded: Vec<Recorded>,
}

/// A recorded outcome's fault (canonical) and the window of its traces.
struct Recorded {
    fault: String,
    first_ns: i64,
    last_ns: i64,
}

impl LedgerEvidence {
    fn new(path: PathBuf) -> LedgerEvidence {
        LedgerEvidence {
            path,
            stamp: None,
            evidence: None,
            recorded: Vec::new(),
        }
    }

    /// Re-reads the ledger if it changed; returns whether the evidence did. A ledger that cannot
    /// be read keeps the evidence read last (logged).
    fn refresh(&mut self) -> bool {
        let stamp = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.len(), m.modified().unwrap_or(std::time::UNIX_EPOCH)));
        if stamp == self.stamp {
            return false;
        }
        match ledger::read(&self.path) {
            Ok(entries) => {
                self.stamp = stamp;
                let evidence = ledger::evidence(&entries).map(|(m, n)| {
                    tracing::info!(experiments = n, "the ledger's evidence is in the model");
                    m
                });
                let changed = evidence != self.evidence;
                self.evidence = evidence;
                self.recorded = entries
                    .iter()
                    .filter_map(|e| {
                        Some(Recorded {
                            fault: canonical(&e.outcome.fault),
                            first_ns: e.outcome.traces.first_ns?,
                            last_ns: e.outcome.traces.last_ns?,
                        })
                    })
                    .collect();
                changed
            }
            Err(e) => {
                tracing::warn!(error = %e, "the ledger cannot be read; its evidence stays as it was");
                self.stamp = stamp;
                false
            }
        }
    }

    /// `model` with the evidence added.
    fn add_to(&self, mut model: Model) -> Model {
        if let Some(e) = &self.evidence {
            model.merge(e);
        }
        model
    }
}

/// What an accepted request gives back.
pub struct Accepted {
    pub rejected: u64,
    pub first_problem: Option<String>,
}

/// Why a request was not accepted.
#[derive(Debug)]
pub enum Refusal {
    /// The body is not an OTLP trace request.
    Invalid(String),
    /// The queue is full: retry later.
    Busy { queued: u64, limit: u64 },
    /// The log could not be written: nothing was acknowledged.
    Failed(String),
}

enum Item {
    Spans { segment: u64, batch: SpanBatch },
    Outcome(Box<OutcomeRequest>),
    Shutdown,
}

/// The shared front: what request handlers use.
pub struct Live {
    wal: Wal,
    tx: Mutex<Sender<Item>>,
    pub counters: Counters,
    pub opts: LiveOptions,
    closing: AtomicBool,
    published: RwLock<Arc<Published>>,
    pub started: Instant,
}

impl Live {
    /// Decodes, logs and queues one request; returns once it is durable.
    pub fn accept(&self, body: &[u8], encoding: Encoding) -> Result<Accepted, Refusal> {
        let decoded = match decode_body(body, encoding) {
            Ok(d) => d,
            Err(e) => {
                self.counters
                    .requests_invalid
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Refusal::Invalid(e.to_string()));
            }
        };
        self.accept_decoded(body, encoding, decoded)
    }

    fn accept_decoded(
        &self,
        body: &[u8],
        encoding: Encoding,
        decoded: Decoded,
    ) -> Result<Accepted, Refusal> {
        let n = decoded.batch.len() as u64;
        let c = &self.counters;
        c.spans_rejected
            .fetch_add(decoded.rejected, Ordering::Relaxed);
        let answer = Accepted {
            rejected: decoded.rejected,
            first_problem: decoded.first_problem,
        };
        if n == 0 {
            c.requests_accepted.fetch_add(1, Ordering::Relaxed);
            return Ok(answer);
        }
        // A request larger than the whole queue is still taken when the queue is empty, so a
        // big batch is slow rather than refused for ever.
        let queued = c.queued_spans.load(Ordering::Relaxed);
        let limit = self.opts.queue_spans;
        if self.closing.load(Ordering::Relaxed) || (queued > 0 && queued + n > limit) {
            c.requests_refused.fetch_add(1, Ordering::Relaxed);
            return Err(Refusal::Busy { queued, limit });
        }
        let batch = decoded.batch;
        let (position, sent) = self
            .wal
            .append(kind_of(encoding), body, |segment| {
                c.queued_spans.fetch_add(n, Ordering::Relaxed);
                let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
                tx.send(Item::Spans { segment, batch }).is_ok()
            })
            .map_err(|e| Refusal::Failed(e.to_string()))?;
        if !sent {
            // The worker is gone (it failed): the record is in the log and will be replayed on
            // restart, but this process can no longer apply it.
            return Err(Refusal::Failed(
                "the model worker stopped; the request is logged and will be applied on restart"
                    .into(),
            ));
        }
        self.wal
            .sync(position)
            .map_err(|e| Refusal::Failed(e.to_string()))?;
        c.spans_accepted.fetch_add(n, Ordering::Relaxed);
        c.requests_accepted.fetch_add(1, Ordering::Relaxed);
        Ok(answer)
    }

    /// The model the API answers from.
    pub fn published(&self) -> Arc<Published> {
        Arc::clone(&self.published.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// Records the outcome of the experiment `request.fault` from its traces received so far
    /// (see [`Worker::record`]); answers once the ledger entry and a snapshot are on disk.
    pub fn record_outcome(
        &self,
        fault: FaultSpec,
        intents: Vec<Intent>,
        opts: OutcomeOptions,
    ) -> Result<OutcomeReport, OutcomeRefusal> {
        let (reply, answer) = std::sync::mpsc::channel();
        let request = OutcomeRequest {
            fault,
            intents,
            opts,
            reply,
        };
        let gone = || OutcomeRefusal::Failed("the model worker stopped".into());
        {
            let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
            tx.send(Item::Outcome(Box::new(request)))
                .map_err(|_| gone())?;
        }
        answer.recv().map_err(|_| gone())?
    }

    /// Stops accepting, lets the worker drain the queue and write a final snapshot.
    pub fn close(&self) {
        self.closing.store(true, Ordering::Relaxed);
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        let _ = tx.send(Item::Shutdown);
    }
}

/// Paths under the state directory.
pub struct StatePaths {
    pub root: PathBuf,
    pub wal: PathBuf,
    pub lake: PathBuf,
    pub snapshots: PathBuf,
    pub model: PathBuf,
    pub ledger: PathBuf,
}

impl StatePaths {
    pub fn new(root: &Path) -> StatePaths {
        StatePaths {
            root: root.to_path_buf(),
            wal: root.join("wal"),
            lake: root.join("lake"),
            snapshots: root.join("snapshots"),
            model: root.join("model.json"),
            ledger: ledger::ledger_path(&root.join("model.json")),
        }
    }
}

/// What was recovered at start.
pub struct Recovered {
    pub snapshot: Option<u64>,
    pub model_spans: u64,
    pub pending_spans: usize,
    pub replayed: wal::Replayed,
    pub replayed_spans: u64,
    pub unfinished_parts: usize,
    /// Experiments whose traces wait to be recorded (from the snapshot).
    pub experiments_waiting: usize,
}

struct Worker {
    rx: Receiver<Item>,
    live: Arc<Live>,
    paths: StatePaths,
    /// The model of normal traffic folded before the snapshot the server started from.
    base: Model,
    builder: ModelBuilder,
    /// Each experiment's traces received and not yet recorded, learned on their own (by the
    /// fault their spans name).
    experiments: BTreeMap<String, Model>,
    ledger: LedgerEvidence,
    lake: Lake,
    dirty: bool,
}

/// The builder of the live model: experiments' traces are set aside and handed out.
fn live_builder() -> ModelBuilder {
    ModelBuilder::new(BuildOptions {
        experiments: ExperimentTraces::Collect,
        ..BuildOptions::default()
    })
}

/// The canonical form of an experiment's name: the fault spec as augur writes it, when it is
/// one.
fn canonical(label: &str) -> String {
    label
        .trim()
        .parse::<FaultSpec>()
        .map_or_else(|_| label.trim().to_string(), |f| f.to_string())
}

/// Learns the experiments' traces in `batch` (whole traces, as
/// [`ModelBuilder::take_set_aside`] hands them out), each into the model of the experiment it
/// names. A trace naming several experiments goes to the first its spans name. A trace within
/// the window of an outcome of the same fault already recorded is left out (its outcome was
/// recorded just before a crash, and the log's replay brought it back). Returns how many were
/// left out.
fn gather_experiments(
    batch: &SpanBatch,
    recorded: &[Recorded],
    into: &mut BTreeMap<String, Model>,
) -> usize {
    let mut dropped = 0;
    let mut by_label: BTreeMap<String, Vec<augur_ingest::Span>> = BTreeMap::new();
    let spans = &batch.spans;
    let mut i = 0;
    while i < spans.len() {
        let trace = spans[i].trace_id;
        let end = spans[i..]
            .iter()
            .position(|s| s.trace_id != trace)
            .map_or(spans.len(), |n| i + n);
        let trace_spans = &spans[i..end];
        let label = trace_spans
            .iter()
            .find_map(|s| s.experiment)
            .map_or_else(String::new, |e| canonical(batch.strings.resolve(e)));
        let first = trace_spans.iter().map(|s| s.start_ns).min().unwrap_or(0);
        let last = trace_spans
            .iter()
            .map(|s| s.end_ns.max(s.start_ns))
            .max()
            .unwrap_or(0);
        if recorded
            .iter()
            .any(|r| r.fault == label && r.first_ns <= first && last <= r.last_ns)
        {
            dropped += 1;
            i = end;
            continue;
        }
        by_label
            .entry(label)
            .or_default()
            .extend_from_slice(&spans[i..end]);
        i = end;
    }
    for (label, spans) in by_label {
        let mut b = ModelBuilder::new(BuildOptions::learning_experiments());
        b.add_batch(&SpanBatch {
            spans,
            strings: batch.strings.clone(),
            links: Vec::new(),
        });
        let m = b.finish();
        match into.get_mut(&label) {
            Some(old) => old.merge(&m),
            None => {
                into.insert(label, m);
            }
        }
    }
    dropped
}

/// Opens the state directory: recovers the model and lake, opens the log, starts the worker.
/// Returns the shared front, the worker's handle and what was recovered.
pub fn start(
    root: &Path,
    opts: LiveOptions,
) -> Result<(Arc<Live>, std::thread::JoinHandle<Result<()>>, Recovered)> {
    let paths = StatePaths::new(root);
    let (mut base, mut builder, experiments, lake, mut rec) = recover(&paths)?;
    let paths_lake = paths.lake.clone();
    let wal = Wal::open(&paths.wal)?;
    let (tx, rx) = std::sync::mpsc::channel();
    let live = Arc::new(Live {
        wal,
        tx: Mutex::new(tx),
        counters: Counters::default(),
        opts,
        closing: AtomicBool::new(false),
        published: RwLock::new(Arc::new(Published {
            model: empty_model(),
            view: empty_model().view(),
            experiments: Vec::new(),
        })),
        started: Instant::now(),
    });
    let ledger = LedgerEvidence::new(paths.ledger.clone());
    let mut worker = Worker {
        rx,
        live: Arc::clone(&live),
        paths,
        base: std::mem::replace(&mut base, empty_model()),
        builder: std::mem::replace(&mut builder, live_builder()),
        experiments,
        ledger,
        lake: Lake::start(lake, paths_lake)?,
        dirty: true,
    };
    worker.ledger.refresh();
    worker.gather();
    rec.experiments_waiting = worker.experiments.len();
    worker.publish();
    let handle = std::thread::Builder::new()
        .name("augur-model".into())
        .spawn(move || worker.run())
        .context("starting the model worker")?;
    Ok((live, handle, rec))
}

fn empty_model() -> Model {
    ModelBuilder::default().finish()
}

type RecoveredState = (
    Model,
    ModelBuilder,
    BTreeMap<String, Model>,
    LakeWriter,
    Recovered,
);

fn recover(paths: &StatePaths) -> Result<RecoveredState> {
    std::fs::create_dir_all(&paths.snapshots)
        .with_context(|| format!("creating {}", paths.snapshots.display()))?;
    let snapshot = latest_snapshot(&paths.snapshots)?;
    let mut builder = live_builder();
    let mut experiments = BTreeMap::new();
    let (base, after, pending_spans) = match &snapshot {
        Some((b, dir)) => {
            let model_path = dir.join("model.json");
            let model = Model::load(&model_path)
                .with_context(|| format!("reading the snapshot {}", dir.display()))?;
            // Snapshots written before experiments were kept have none.
            let exp_path = dir.join("experiments.json");
            if exp_path.exists() {
                let bytes = std::fs::read(&exp_path)
                    .with_context(|| format!("reading {}", exp_path.display()))?;
                experiments = serde_json::from_slice(&bytes)
                    .with_context(|| format!("reading {}", exp_path.display()))?;
            }
            let pending_path = dir.join("pending.pb");
            let bytes = std::fs::read(&pending_path)
                .with_context(|| format!("reading {}", pending_path.display()))?;
            let pending = decode_body(&bytes, Encoding::Protobuf)
                .with_context(|| format!("reading {}", pending_path.display()))?;
            let n = pending.batch.len();
            builder.add_batch(&pending.batch);
            (model, *b, n)
        }
        None => (empty_model(), 0, 0),
    };
    let unfinished_parts = augur_ingest::lake::remove_unfinished(&paths.lake)?;
    let mut lake = LakeWriter::new(&paths.lake)?;
    let mut replayed_spans = 0u64;
    let replayed = wal::replay(&paths.wal, after, &mut |segment, kind, payload| {
        let Some(enc) = encoding_of(kind) else {
            tracing::warn!(segment, kind, "skipped a log record of an unknown kind");
            return Ok(());
        };
        match decode_body(payload, enc) {
            Ok(d) => {
                replayed_spans += d.batch.len() as u64;
                lake.append(&d.batch)?;
                builder.add_batch(&d.batch);
            }
            // It decoded when it was accepted; a record that no longer does is damage.
            Err(e) => tracing::warn!(segment, "skipped a log record that does not decode: {e}"),
        }
        Ok(())
    })?;
    Ok((
        base.clone(),
        builder,
        experiments,
        lake,
        Recovered {
            snapshot: snapshot.map(|(b, _)| b),
            model_spans: base.quality.spans,
            pending_spans,
            replayed,
            replayed_spans,
            unfinished_parts,
            experiments_waiting: 0,
        },
    ))
}

/// The newest complete snapshot: the highest-numbered directory `snapshots/<B>`.
fn latest_snapshot(dir: &Path) -> Result<Option<(u64, PathBuf)>> {
    let mut best: Option<(u64, PathBuf)> = None;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(b) = name.to_str().and_then(|n| n.parse::<u64>().ok()) else {
            continue;
        };
        if best.as_ref().is_none_or(|(x, _)| b > *x) {
            best = Some((b, entry.path()));
        }
    }
    Ok(best)
}

enum LakeMsg {
    Batch(Arc<SpanBatch>),
    /// Finish the open parts (durable, visible) and start new ones; answer when done.
    Finish(std::sync::mpsc::Sender<Result<()>>),
}

/// The lake writer, on its own thread.
struct Lake {
    tx: std::sync::mpsc::SyncSender<LakeMsg>,
}

impl Lake {
    fn start(mut writer: LakeWriter, dir: PathBuf) -> Result<Lake> {
        // A few batches in flight: enough to overlap with the model, bounded in memory.
        let (tx, rx) = std::sync::mpsc::sync_channel::<LakeMsg>(8);
        std::thread::Builder::new()
            .name("augur-lake".into())
            .spawn(move || {
                let mut failed: Option<String> = None;
                for msg in rx {
                    match msg {
                        LakeMsg::Batch(b) => {
                            if failed.is_none() {
                                if let Err(e) = writer.append(&b) {
                                    failed = Some(e.to_string());
                                }
                            }
                        }
                        LakeMsg::Finish(reply) => {
                            let result = match failed.take() {
                                Some(e) => Err(anyhow::anyhow!("writing the lake: {e}")),
                                None => {
                                    let old = std::mem::replace(
                                        &mut writer,
                                        match LakeWriter::new(&dir) {
                                            Ok(w) => w,
                                            Err(e) => {
                                                let _ = reply.send(Err(e.into()));
                                                return;
                                            }
                                        },
                                    );
                                    old.finish().map(|_| ()).map_err(anyhow::Error::from)
                                }
                            };
                            let _ = reply.send(result);
                        }
                    }
                }
            })
            .context("starting the lake writer")?;
        Ok(Lake { tx })
    }

    fn append(&self, batch: Arc<SpanBatch>) -> Result<()> {
        self.tx
            .send(LakeMsg::Batch(batch))
            .map_err(|_| anyhow::anyhow!("the lake writer stopped"))
    }

    /// Everything sent so far is in finished, durable parts when this returns.
    fn finish_parts(&self) -> Result<()> {
        let (reply, answer) = std::sync::mpsc::channel();
        self.tx
            .send(LakeMsg::Finish(reply))
            .map_err(|_| anyhow::anyhow!("the lake writer stopped"))?;
        answer
            .recv()
            .map_err(|_| anyhow::anyhow!("the lake writer stopped"))?
    }
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", path.display()))
}

impl Worker {
    fn run(mut self) -> Result<()> {
        let tick = Duration::from_millis(100);
        let mut clock: VecDeque<(Instant, u64)> = VecDeque::new();
        let mut last_snapshot = Instant::now();
        let mut last_publish = Instant::now();
        // Publishing copies and re-reads the whole model: with a large model it waits at least
        // ten times as long as the last one took, so it never takes more than a tenth of this
        // thread.
        let mut publish_gap = self.live.opts.publish_every;
        let mut last_ledger_look = Instant::now();
        let result = loop {
            match self.rx.recv_timeout(tick) {
                Ok(Item::Spans { batch, .. }) => {
                    if let Err(e) = self.apply(batch) {
                        break Err(e);
                    }
                }
                Ok(Item::Outcome(request)) => {
                    if let Err(e) = self.record(*request) {
                        break Err(e);
                    }
                }
                Ok(Item::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    break self.shutdown();
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
            let now = Instant::now();
            if clock.back().is_none_or(|(t, _)| now - *t >= tick) {
                clock.push_back((now, self.builder.seen()));
            }
            let mut quiet_since = None;
            while let Some(&(t, seen)) = clock.front() {
                if now - t < self.live.opts.trace_idle {
                    break;
                }
                quiet_since = Some(seen);
                clock.pop_front();
            }
            if let Some(seen) = quiet_since {
                if self.builder.finish_idle(seen) > 0 {
                    self.dirty = true;
                }
            }
            self.gather();
            // `augur outcome --ledger STATE/model.ledger.jsonl` may append to it at any time.
            if now - last_ledger_look >= Duration::from_secs(1) {
                if self.ledger.refresh() {
                    self.dirty = true;
                }
                last_ledger_look = now;
            }
            if self.dirty && now - last_publish >= publish_gap {
                self.publish();
                last_publish = Instant::now();
                publish_gap = self.live.opts.publish_every.max((last_publish - now) * 10);
            }
            if now - last_snapshot >= self.live.opts.snapshot_every {
                if let Err(e) = self.snapshot() {
                    break Err(e);
                }
                last_snapshot = Instant::now();
            }
        };
        if let Err(e) = &result {
            tracing::error!("the model worker stopped: {e:#}");
        }
        result
    }

    fn apply(&mut self, batch: SpanBatch) -> Result<()> {
        let batch = Arc::new(batch);
        self.lake.append(Arc::clone(&batch))?;
        self.builder.add_batch(&batch);
        self.live
            .counters
            .queued_spans
            .fetch_sub(batch.len() as u64, Ordering::Relaxed);
        self.dirty = true;
        Ok(())
    }

    /// The model of the normal traffic folded so far (what snapshots keep).
    fn current_model(&self) -> Model {
        let mut m = self.base.clone();
        m.merge(&self.builder.model());
        m
    }

    /// Moves the experiments' traces the builder set aside into their experiments' models.
    fn gather(&mut self) {
        let batch = self.builder.take_set_aside();
        if !batch.is_empty() {
            let dropped = gather_experiments(&batch, &self.ledger.recorded, &mut self.experiments);
            if dropped > 0 {
                tracing::info!(
                    traces = dropped,
                    "experiments' traces whose outcome the ledger holds already were left out"
                );
            }
            self.dirty = true;
        }
    }

    fn waiting(&self) -> Vec<Waiting> {
        let utc = |ns: i64| augur_ingest::lake::utc_text(ns);
        self.experiments
            .iter()
            .map(|(fault, m)| Waiting {
                fault: fault.clone(),
                traces: m.quality.traces,
                spans: m.quality.spans,
                first: m.window.map(|w| utc(w.first_ns)),
                last: m.window.map(|w| utc(w.last_ns)),
            })
            .collect()
    }

    /// Records an experiment's outcome from its traces received so far: compares them with the
    /// live model's prediction, appends the entry (with the evidence) to the ledger, forgets
    /// the traces (a snapshot makes that durable) and publishes the model with the evidence.
    /// The answer goes to the request; only a failed snapshot stops the worker.
    fn record(&mut self, request: OutcomeRequest) -> Result<()> {
        let answer = self.try_record(&request);
        let failed_snapshot = match &answer {
            Ok(_) => self.snapshot().err(),
            Err(_) => None,
        };
        let answer = match (answer, &failed_snapshot) {
            (Ok(_), Some(e)) => Err(OutcomeRefusal::Failed(format!(
                "the outcome is in the ledger, but the snapshot after it failed: {e:#}"
            ))),
            (a, _) => a,
        };
        if answer.is_ok() {
            self.ledger.refresh();
            self.publish();
        }
        let _ = request.reply.send(answer);
        failed_snapshot.map_or(Ok(()), Err)
    }

    fn try_record(&mut self, request: &OutcomeRequest) -> Result<OutcomeReport, OutcomeRefusal> {
        let spec = &request.fault;
        self.ledger.refresh();
        let base = self.ledger.add_to(self.current_model());
        // An unknown target first: it names the closest valid ones.
        augur_recommender::outcome::fault_scope(&base.view(), spec)
            .map_err(|e| OutcomeRefusal::Invalid(e.to_string()))?;
        let label = canonical(&spec.to_string());
        let Some(observed) = self.experiments.get(&label) else {
            let waiting: Vec<_> = self.experiments.keys().map(String::as_str).collect();
            return Err(OutcomeRefusal::NoTraces(format!(
                "no traces of the experiment {spec} are waiting to be recorded (spans recorded during it carry augur.experiment = \"{spec}\"); waiting: {}",
                if waiting.is_empty() {
                    "none".to_string()
                } else {
                    waiting.join(", ")
                }
            )));
        };
        let result = augur_recommender::outcome::outcome(
            &base,
            observed,
            spec,
            &request.intents,
            &request.opts,
        )
        .map_err(|e| OutcomeRefusal::Invalid(e.to_string()))?;
        let entry = LedgerEntry::of(
            &result,
            spec,
            augur_ingest::lake::utc_text(crate::outcome::now_ns()),
            vec![format!(
                "augur serve: {} traces of {label} received live",
                observed.quality.traces
            )],
            self.paths.model.display().to_string(),
        )
        .map_err(|e| OutcomeRefusal::Invalid(e.to_string()))?;
        ledger::append(&self.paths.ledger, &entry)
            .map_err(|e| OutcomeRefusal::Failed(e.to_string()))?;
        self.experiments.remove(&label);
        tracing::info!(fault = %label, "an experiment's outcome was recorded");
        Ok(result.report)
    }

    fn publish(&mut self) {
        let model = self.ledger.add_to(self.current_model());
        let c = &self.live.counters;
        c.model_spans.store(model.quality.spans, Ordering::Relaxed);
        c.model_operations
            .store(model.operations.len() as u64, Ordering::Relaxed);
        c.model_call_sites.store(
            (model.calls.len() + model.unarrived.len()) as u64,
            Ordering::Relaxed,
        );
        let view = model.view();
        let experiments = self.waiting();
        *self
            .live
            .published
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(Published {
            model,
            view,
            experiments,
        });
        self.dirty = false;
    }

    /// Drains what is queued and writes the final snapshot (traces still open stay open in it:
    /// a restart resumes them).
    fn shutdown(&mut self) -> Result<()> {
        self.snapshot()?;
        self.publish();
        Ok(())
    }

    fn snapshot(&mut self) -> Result<()> {
        let closed = self.live.wal.rotate()?;
        // Everything logged in segments up to `closed` was queued before the rotation.
        let mut later = Vec::new();
        loop {
            match self.rx.try_recv() {
                Ok(Item::Spans { segment, batch }) if segment <= closed => self.apply(batch)?,
                Ok(Item::Spans { segment, batch }) => {
                    later.push(Item::Spans { segment, batch });
                    break;
                }
                Ok(other) => later.push(other),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        self.lake.finish_parts()?;
        self.gather();
        let model = self.current_model();
        let pending_batch = self.builder.pending();
        let pending = encode_batch(&pending_batch);
        let tmp = self.paths.snapshots.join(format!(".tmp-{closed}"));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp)?;
        }
        std::fs::create_dir_all(&tmp)?;
        let json = serde_json::to_vec(&model)?;
        write_synced(&tmp.join("model.json"), &json)?;
        write_synced(&tmp.join("pending.pb"), &pending)?;
        write_synced(
            &tmp.join("experiments.json"),
            &serde_json::to_vec(&self.experiments)?,
        )?;
        wal::sync_dir(&tmp)?;
        let fin = self.paths.snapshots.join(format!("{closed:020}"));
        std::fs::rename(&tmp, &fin)
            .with_context(|| format!("renaming the snapshot to {}", fin.display()))?;
        wal::sync_dir(&self.paths.snapshots)?;
        // Older snapshots and the log they needed are no longer needed.
        for entry in std::fs::read_dir(&self.paths.snapshots)? {
            let entry = entry?;
            let name = entry.file_name();
            let name = name.to_str().unwrap_or("");
            if name.parse::<u64>().is_ok_and(|b| b < closed) {
                std::fs::remove_dir_all(entry.path())?;
            }
        }
        wal::remove_through(&self.paths.wal, closed)?;
        // The user-facing copy, for `augur graph STATE/model.json` and the other commands: every
        // span received so far, the open traces folded as they stand, and the ledger's evidence
        // (the model the API answers from).
        let mut everything = self.ledger.add_to(model.clone());
        let mut open = ModelBuilder::default();
        open.add_batch(&pending_batch);
        everything.merge(&open.finish());
        let tmp_model = self.paths.root.join(".model.json.tmp");
        write_synced(&tmp_model, &serde_json::to_vec(&everything)?)?;
        std::fs::rename(&tmp_model, &self.paths.model)?;
        self.live.counters.snapshots.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            segment = closed,
            spans = model.quality.spans,
            "snapshot written"
        );
        // Put back what belongs after the snapshot: it is applied next.
        for item in later {
            match item {
                Item::Spans { batch, .. } => self.apply(batch)?,
                // Behind what the loop takes next.
                other @ (Item::Shutdown | Item::Outcome(_)) => {
                    let tx = self.live.tx.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = tx.send(other);
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> LiveOptions {
        LiveOptions {
            queue_spans: 5,
            trace_idle: Duration::from_secs(3600),
            snapshot_every: Duration::from_secs(3600),
            publish_every: Duration::from_millis(10),
        }
    }

    fn request(traces: u8) -> Vec<u8> {
        request_of(1..=traces, None)
    }

    /// One-span traces `ids` of `shop GET /`, failed and naming `experiment` when given.
    fn request_of(ids: std::ops::RangeInclusive<u8>, experiment: Option<&str>) -> Vec<u8> {
        let mut b = SpanBatch::new();
        let svc = b.strings.intern("shop");
        let name = b.strings.intern("GET /");
        let experiment = experiment.map(|e| b.strings.intern(e));
        for t in ids {
            b.spans.push(augur_ingest::Span {
                trace_id: [t; 16],
                span_id: [1; 8],
                parent_span_id: None,
                service: svc,
                name,
                kind: augur_ingest::SpanKind::Server,
                start_ns: 1_700_000_000_000_000_000,
                end_ns: 1_700_000_000_001_000_000,
                status: if experiment.is_some() {
                    augur_ingest::StatusCode::Error
                } else {
                    augur_ingest::StatusCode::Ok
                },
                peer: None,
                peer_kind: augur_ingest::PeerKind::Unknown,
                http_route: None,
                rpc_method: None,
                error_type: None,
                experiment,
            });
        }
        encode_batch(&b)
    }

    fn waiting_for(live: &Live, what: impl Fn(&Published) -> bool) -> Arc<Published> {
        let started = Instant::now();
        loop {
            let p = live.published();
            if what(&p) {
                return p;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "never happened"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn an_outcome_recorded_just_before_a_crash_is_not_offered_again() {
        let quick = LiveOptions {
            queue_spans: 1000,
            trace_idle: Duration::from_millis(50),
            ..opts()
        };
        let outcome_opts = OutcomeOptions {
            sim: augur_simulator::SimOptions {
                requests: 200,
                samples: 4,
                seed: 1,
            },
            traffic_share: 1.0,
        };
        let normal = request_of(1..=20, None);
        let experiment = request_of(101..=105, Some("shop:error=1"));
        // One server records the experiment's outcome.
        let first = tempfile::tempdir().unwrap();
        let (live, worker, _) = start(first.path(), quick.clone()).unwrap();
        live.accept(&normal, Encoding::Protobuf).unwrap();
        live.accept(&experiment, Encoding::Protobuf).unwrap();
        waiting_for(&live, |p| {
            p.experiments.first().is_some_and(|w| w.traces == 5)
        });
        let fault: FaultSpec = "shop:error=1".parse().unwrap();
        let report = live
            .record_outcome(fault.clone(), Vec::new(), outcome_opts.clone())
            .unwrap();
        assert_eq!(report.traces.traces, 5);
        assert!(live.published().experiments.is_empty());
        // Asking twice finds nothing to record.
        assert!(matches!(
            live.record_outcome(fault, Vec::new(), outcome_opts),
            Err(OutcomeRefusal::NoTraces(_))
        ));
        live.close();
        worker.join().unwrap().unwrap();

        // The same requests in a second state directory, which crashes before any snapshot,
        // with the first one's ledger: what a crash between the ledger's write and the snapshot
        // after it leaves. The replayed experiment's traces are not offered again.
        let second = tempfile::tempdir().unwrap();
        {
            let (live, _worker, _) = start(second.path(), quick.clone()).unwrap();
            live.accept(&normal, Encoding::Protobuf).unwrap();
            live.accept(&experiment, Encoding::Protobuf).unwrap();
            std::mem::forget(live);
        }
        let ledger_of = |dir: &Path| StatePaths::new(dir).ledger;
        std::fs::copy(ledger_of(first.path()), ledger_of(second.path())).unwrap();
        let (live, worker, rec) = start(second.path(), quick).unwrap();
        assert_eq!(rec.replayed_spans, 25);
        let p = waiting_for(&live, |p| p.model.quality.experiment_traces == 5);
        assert!(p.experiments.is_empty(), "recorded already");
        live.close();
        worker.join().unwrap().unwrap();
    }

    #[test]
    fn a_full_queue_refuses_and_garbage_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StatePaths::new(dir.path());
        let (tx, _rx) = std::sync::mpsc::channel();
        // No worker: nothing leaves the queue.
        let live = Live {
            wal: Wal::open(&paths.wal).unwrap(),
            tx: Mutex::new(tx),
            counters: Counters::default(),
            opts: opts(),
            closing: AtomicBool::new(false),
            published: RwLock::new(Arc::new(Published {
                model: empty_model(),
                view: empty_model().view(),
                experiments: Vec::new(),
            })),
            started: Instant::now(),
        };
        assert!(live.accept(&request(4), Encoding::Protobuf).is_ok());
        assert!(matches!(
            live.accept(&request(2), Encoding::Protobuf),
            Err(Refusal::Busy {
                queued: 4,
                limit: 5
            })
        ));
        assert!(live.accept(&request(1), Encoding::Protobuf).is_ok());
        assert!(matches!(
            live.accept(b"\xff\xff", Encoding::Protobuf),
            Err(Refusal::Invalid(_))
        ));
        assert_eq!(live.counters.requests_refused.load(Ordering::Relaxed), 1);
        assert_eq!(live.counters.spans_accepted.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn acknowledged_spans_survive_a_crash_and_a_snapshot_truncates_the_log() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (live, _worker, rec) = start(dir.path(), opts()).unwrap();
            assert!(rec.snapshot.is_none());
            live.accept(&request(3), Encoding::Protobuf).unwrap();
            // A crash: the worker is never told to stop, and nothing was snapshotted.
            std::mem::forget(live);
        }
        let (live, worker, rec) = start(dir.path(), opts()).unwrap();
        assert_eq!((rec.replayed.records, rec.replayed_spans), (1, 3));
        live.accept(&request(2), Encoding::Protobuf).unwrap();
        live.close();
        worker.join().unwrap().unwrap();
        let paths = StatePaths::new(dir.path());
        assert_eq!(
            wal::segments(&paths.wal).unwrap().len(),
            1,
            "older segments removed"
        );
        assert!(paths.model.exists());
        let (_live, _w, rec) = start(dir.path(), opts()).unwrap();
        assert!(rec.snapshot.is_some());
        assert_eq!(rec.replayed.records, 0);
        assert_eq!(rec.model_spans + rec.pending_spans as u64, 5);
    }
}
