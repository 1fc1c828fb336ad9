//! `augur demo` and `augur generate`: synthetic worlds from `augur-datasets`, wired to the stages.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use augur_datasets::{write_world, Fault, GraphTruth, RandomWorldParams, TraceFormat, World};
use augur_model::{BuildOptions, Graph};

/// Which synthetic world.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum WorldKind {
    /// A shop of a dozen services, a database, a cache and a queue.
    Shop,
    /// A seeded random layered world (size from --services).
    Random,
}

/// Output formats of `augur generate`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OutFormat {
    /// One OTLP/JSON ExportTraceServiceRequest.
    OtlpJson,
    /// OTLP/JSON Lines, as the Collector's file exporter writes.
    OtlpJsonl,
    /// One OTLP protobuf ExportTraceServiceRequest.
    OtlpProto,
    /// Length-prefixed OTLP protobuf messages (the file exporter's `format: proto`).
    OtlpProtoStream,
    /// Jaeger query API JSON.
    Jaeger,
    /// Zipkin v2 JSON.
    Zipkin,
    /// TrainTicket-style CSV span table (no kinds, statuses or peers).
    Csv,
    /// augur's Parquet span table.
    Parquet,
}

impl From<OutFormat> for TraceFormat {
    fn from(f: OutFormat) -> TraceFormat {
        match f {
            OutFormat::OtlpJson => TraceFormat::OtlpJson,
            OutFormat::OtlpJsonl => TraceFormat::OtlpJsonl,
            OutFormat::OtlpProto => TraceFormat::OtlpProto,
            OutFormat::OtlpProtoStream => TraceFormat::OtlpProtoStream,
            OutFormat::Jaeger => TraceFormat::Jaeger,
            OutFormat::Zipkin => TraceFormat::Zipkin,
            OutFormat::Csv => TraceFormat::Csv,
            OutFormat::Parquet => TraceFormat::Parquet,
        }
    }
}

/// The arguments of `augur generate`.
pub(crate) struct GenerateArgs {
    pub world: WorldKind,
    pub services: usize,
    pub traces: usize,
    pub seed: u64,
    pub traffic_seed: Option<u64>,
    pub fault: Option<String>,
    pub start_offset: f64,
    pub linked_consumers: bool,
    pub format: OutFormat,
    pub out: PathBuf,
    pub truth: Option<PathBuf>,
}

fn world(kind: WorldKind, services: usize, seed: u64) -> Result<World> {
    Ok(match kind {
        WorldKind::Shop => World::shop(),
        WorldKind::Random => {
            let mut params = RandomWorldParams {
                services,
                ..RandomWorldParams::default()
            };
            // A small world has fewer entry operations than the default endpoints.
            params.endpoints = params.endpoints.min(params.max_endpoints()).max(1);
            World::random(seed, params).context("building the random world")?
        }
    })
}

fn write_traces(
    world: &World,
    seed: u64,
    traces: usize,
    fault: Option<Fault>,
    format: TraceFormat,
    out: &Path,
) -> Result<GraphTruth> {
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    write_world(world, seed, traces, fault, format, BufWriter::new(file))
        .with_context(|| format!("writing {}", out.display()))
}

/// Writes OTLP JSON Lines traces starting `offset_ns` after the world's base time.
fn write_traces_at(
    world: &World,
    seed: u64,
    traces: usize,
    fault: Option<Fault>,
    out: &Path,
    offset_ns: i64,
) -> Result<GraphTruth> {
    let file = File::create(out).with_context(|| format!("creating {}", out.display()))?;
    augur_datasets::write_world_from(
        world,
        seed,
        traces,
        fault,
        TraceFormat::OtlpJsonl,
        BufWriter::new(file),
        offset_ns,
    )
    .with_context(|| format!("writing {}", out.display()))
}

/// `augur generate`.
pub(crate) fn generate(a: &GenerateArgs) -> Result<()> {
    let started = Instant::now();
    let world = world(a.world, a.services, a.seed)?;
    let fault = a
        .fault
        .as_deref()
        .map(str::parse::<Fault>)
        .transpose()
        .context("--fault")?;
    // A century at most: span times are nanoseconds since 1970 in an i64 (they end in 2262).
    if !a.start_offset.is_finite() || a.start_offset < 0.0 || a.start_offset > 3.15e9 {
        bail!("--start-offset is a number of seconds, from 0 to a century (3150000000)");
    }
    let mut gen = augur_datasets::Generator::new(&world, a.traffic_seed.unwrap_or(a.seed))?
        .starting_at((a.start_offset * 1e9) as i64)
        .with_linked_consumers(a.linked_consumers);
    if let Some(f) = fault {
        gen = gen.with_fault(f)?;
    }
    // Created once the fault is known good: a bad one leaves no empty file behind.
    let file = File::create(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let truth = augur_datasets::write_generated(
        gen,
        a.traces,
        a.format.into(),
        BufWriter::new(file),
        augur_datasets::TRACES_PER_BATCH,
    )
    .with_context(|| format!("writing {}", a.out.display()))?;
    if let Some(path) = &a.truth {
        let text = serde_json::to_string_pretty(&truth)?;
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let bytes = std::fs::metadata(&a.out).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "wrote {} traces ({:.1} MB, {}) to {} in {:.1}s; truth: {} nodes, {} edges",
        a.traces,
        bytes as f64 / 1e6,
        TraceFormat::from(a.format).name(),
        a.out.display(),
        started.elapsed().as_secs_f64(),
        truth.nodes.len(),
        truth.edge_count(),
    );
    Ok(())
}

/// `augur demo`: every stage that exists, on the demo shop, checked against its truth.
/// The fewest traces the demo runs on: with fewer, some of the shop's services (payment is
/// behind a few percent of requests) may never be called, and the steps that break them have
/// nothing to break.
pub(crate) const MIN_DEMO_TRACES: usize = 100;

pub(crate) fn run_demo(dir: &Path, traces: usize, seed: u64) -> Result<()> {
    if traces < MIN_DEMO_TRACES {
        bail!(
            "--traces must be at least {MIN_DEMO_TRACES}: with fewer, some of the demo shop's services may never be called"
        );
    }
    crate::create_out_dir(dir)?;
    let world = World::shop();
    let file = dir.join("shop-traces.jsonl");
    eprintln!("== 1. generate: {traces} traces of the demo shop (OTLP JSON Lines, seed {seed})");
    let truth = write_traces(&world, seed, traces, None, TraceFormat::OtlpJsonl, &file)?;
    eprintln!("   wrote {}", file.display());

    eprintln!("== 2. learn: the call graph from the traces");
    let read = crate::ReadArgs { strict: true };
    let (model, summary) =
        crate::learn(std::slice::from_ref(&file), &read, BuildOptions::default())?;
    let model_path = dir.join("model.json");
    model.save(&model_path)?;
    // A fresh model: an earlier demo's ledger does not belong to it.
    let ledger = augur_recommender::ledger::ledger_path(&model_path);
    if ledger.exists() {
        std::fs::remove_file(&ledger)
            .with_context(|| format!("removing the old {}", ledger.display()))?;
    }
    eprintln!("{}", summary.to_text());
    eprintln!("   model written to {}", model_path.display());

    let graph = model.graph();
    crate::write_stdout(&graph.to_table())?;

    eprintln!("== 3. check: the learned graph against the shop's known truth");
    check_against_truth(&graph, &truth)?;

    let fault = "payment:down";
    eprintln!("== 4. simulate: what if {fault}? (predicted from the model, 90% intervals)");
    let spec: augur_simulator::FaultSpec = fault.parse()?;
    let opts = augur_simulator::SimOptions {
        requests: 5_000,
        samples: 32,
        seed,
    };
    let (prediction, _) = augur_simulator::simulate(&model.view(), &[spec], &opts)?;
    crate::write_stdout(&prediction.to_table(5))?;

    eprintln!("== 5. check: the shop really run with {fault}, against the prediction");
    let faulted = dir.join("shop-payment-down.jsonl");
    let real = write_traces(
        &world,
        seed + 1,
        traces / 2,
        Some(fault.parse()?),
        TraceFormat::OtlpJsonl,
        &faulted,
    )?;
    for p in &prediction.endpoints {
        let Some(n) = real.nodes.get(&p.endpoint) else {
            continue;
        };
        if n.invocations == 0 {
            continue;
        }
        let observed = n.errors as f64 / n.invocations as f64;
        let e = &p.predicted.error_rate;
        let verdict = if e.lo - 0.02 <= observed && observed <= e.hi + 0.02 {
            "within the interval"
        } else {
            "OUTSIDE the interval"
        };
        eprintln!(
            "   {:<28} errors: predicted {:>5.1}% [{:.1}, {:.1}], observed {:>5.1}%: {verdict}",
            p.endpoint,
            e.mean * 100.0,
            e.lo * 100.0,
            e.hi * 100.0,
            observed * 100.0
        );
    }

    eprintln!(
        "== 6. recommend: the experiments that would teach the most, within 200 failed requests"
    );
    let intents_path = dir.join("intents.toml");
    std::fs::write(&intents_path, DEMO_INTENTS)
        .with_context(|| format!("writing {}", intents_path.display()))?;
    eprintln!("   the team's intents: {}", intents_path.display());
    let view = model.view();
    let intents = augur_recommender::intents::load(&intents_path, &view)?;
    let opts = augur_recommender::Options {
        error_budget: Some(200.0),
        sim: augur_simulator::SimOptions {
            requests: 500,
            samples: 16,
            seed,
        },
        ..augur_recommender::Options::default()
    };
    let rec = augur_recommender::recommend::recommend(&view, &intents, &opts)?;
    let mut top = rec.clone();
    top.experiments.truncate(3);
    crate::write_stdout(&crate::show::recommendation_text(
        &top,
        opts.error_budget.is_some(),
    ))?;

    // The first safe experiment the shop can run.
    let chosen = rec.experiments.iter().filter(|e| e.safe).find_map(|e| {
        let fault = e.fault.parse::<Fault>().ok()?;
        augur_datasets::Generator::new(&world, seed)
            .ok()?
            .with_fault(fault.clone())
            .ok()?;
        Some((e.fault.clone(), fault, e.traffic_share))
    });
    let Some((spec, fault, share)) = chosen else {
        bail!("no recommended experiment can be run on the demo shop");
    };
    let n = (traces / 2).max(1);
    let faulted = ((n as f64 * share).round() as usize).max(1);
    eprintln!(
        "== 7. experiment: run {spec} on {:.0}% of the shop's traffic ({faulted} of {n} traces), record the outcome",
        share * 100.0
    );
    let exp_dir = dir.join("experiment");
    std::fs::create_dir_all(&exp_dir).with_context(|| format!("creating {}", exp_dir.display()))?;
    let offset = 3_600_000_000_000; // an hour after the normal traffic
    write_traces_at(
        &world,
        seed + 2,
        faulted,
        Some(fault),
        &exp_dir.join("faulted.jsonl"),
        offset,
    )?;
    if n > faulted {
        write_traces_at(
            &world,
            seed + 3,
            n - faulted,
            None,
            &exp_dir.join("unfaulted.jsonl"),
            offset,
        )?;
    } else {
        let _ = std::fs::remove_file(exp_dir.join("unfaulted.jsonl"));
    }
    crate::outcome::run_outcome(&crate::outcome::OutcomeArgs {
        model: &model_path,
        fault: &spec,
        traces: std::slice::from_ref(&exp_dir),
        out: None,
        ledger: None,
        intents: Some(&intents_path),
        traffic_share: share,
        sim: augur_simulator::SimOptions {
            requests: 2_000,
            samples: 32,
            seed,
        },
        read: &read,
        json: false,
    })?;

    let report = dir.join("report");
    eprintln!("== 8. report: tonight's page for the SRE team");
    crate::outcome::run_report(&model_path, &report, Some(&intents_path), None, opts)?;
    eprintln!(
        "   open {} in a browser",
        report.join("report.html").display()
    );
    Ok(())
}

/// The demo team's hypotheses about the shop.
const DEMO_INTENTS: &str = r#"# What the demo shop's team believes (see docs/INTENTS.md).
[[intent]]
id = "checkout-survives-shipping-outage"
belief = "Checkout still succeeds when shipping quotes fail: we fall back to a flat rate."
fault = "shipping:down"
expect = { endpoint = "frontend POST /checkout", error_rate_below = 0.05 }
priority = 2

[[intent]]
id = "home-page-rides-out-slow-dependencies"
belief = "The home page stays up when anything behind it slows down by 100 ms."
fault = "*:latency=+100ms"
within = "frontend GET /"
expect = { endpoint = "frontend GET /", error_rate_below = 0.02 }
"#;

/// Compares the learned graph with the truth: every node and edge, nothing extra.
fn check_against_truth(graph: &Graph, truth: &GraphTruth) -> Result<()> {
    let learned: BTreeSet<(String, String)> = graph
        .edges
        .iter()
        .map(|e| (e.from.clone(), e.to.clone()))
        .collect();
    let want = truth.edge_set();
    let missing: Vec<_> = want.difference(&learned).collect();
    let spurious: Vec<_> = learned.difference(&want).collect();
    let learned_nodes: BTreeSet<(&str, bool)> = graph
        .nodes
        .iter()
        .map(|n| (n.id.as_str(), n.is_virtual))
        .collect();
    let want_nodes: BTreeSet<(&str, bool)> = truth
        .nodes
        .values()
        .map(|n| (n.id.as_str(), n.is_virtual))
        .collect();
    let virtual_nodes = want_nodes.iter().filter(|(_, v)| *v).count();
    if missing.is_empty() && spurious.is_empty() && learned_nodes == want_nodes {
        eprintln!(
            "   exactly right: all {} edges and {} nodes ({} of them uninstrumented peers) learned, nothing spurious",
            want.len(),
            want_nodes.len(),
            virtual_nodes
        );
        return Ok(());
    }
    for (from, to) in &missing {
        eprintln!("   missing edge: {from} -> {to}");
    }
    for (from, to) in &spurious {
        eprintln!("   spurious edge: {from} -> {to}");
    }
    for n in want_nodes.symmetric_difference(&learned_nodes) {
        eprintln!("   node differs: {n:?}");
    }
    bail!(
        "the learned graph differs from the truth ({} missing, {} spurious edges)",
        missing.len(),
        spurious.len()
    )
}
