//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use augur_datasets::{Generator, GraphTruth, World};
use augur_ingest::{read_paths, IngestReport, OwnedSpan, ReadOptions, SpanBatch};
use augur_model::{ModelBuilder, View};

/// The `augur` binary under test.
pub fn augur() -> Command {
    Command::new(env!("CARGO_BIN_EXE_augur"))
}

/// Runs augur with `args`; returns the output (whatever the exit status).
pub fn run(args: &[&str]) -> Output {
    augur().args(args).output().expect("augur runs")
}

/// Runs augur and insists it succeeds; returns (stdout, stderr).
pub fn ok(args: &[&str]) -> (String, String) {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "augur {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Runs augur and insists it fails with exit code 1; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "augur {args:?} should fail with code 1; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "augur panicked:\n{stderr}");
    stderr
}

/// `../shared/<rel>` if the shared directory is present; `None` (after saying why) if not, so
/// the caller can skip.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (the shared data directory is not checked out)",
            p.display()
        );
        None
    }
}

/// Every span of `path` as owned values, with the read report.
pub fn read_spans(path: &Path) -> (Vec<OwnedSpan>, IngestReport) {
    let mut spans = Vec::new();
    let report = read_paths(&[path.to_path_buf()], &ReadOptions::default(), &mut |b| {
        spans.extend(b.to_owned_spans());
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{} does not read: {e}", path.display()));
    (spans, report)
}

/// Learns from runs of the world (each with an optional fault) and returns the view and the
/// truth of all runs together. Self-time truths are the first run's.
pub fn learn_runs(world: &World, seed: u64, runs: &[(Option<&str>, usize)]) -> (View, GraphTruth) {
    // Runs with a fault are learned too (their spans carry `augur.experiment`).
    let mut builder = ModelBuilder::new(augur_model::BuildOptions::learning_experiments());
    let mut truth: Option<GraphTruth> = None;
    for (k, &(fault, traces)) in runs.iter().enumerate() {
        let mut gen = Generator::new(world, seed + k as u64).unwrap();
        if let Some(f) = fault {
            gen = gen.with_fault(f.parse().unwrap()).unwrap();
        }
        let mut left = traces;
        while left > 0 {
            let n = left.min(2_000);
            let mut batch = SpanBatch::new();
            gen.emit(n, &mut batch);
            builder.add_batch(&batch);
            left -= n;
        }
        let t = gen.truth();
        truth = Some(match truth {
            None => t,
            Some(mut acc) => {
                for e in t.iter_edges() {
                    let into = acc
                        .edges
                        .entry(e.from.clone())
                        .or_default()
                        .entry(e.to.clone())
                        .or_insert_with(|| e.clone());
                    if !std::ptr::eq(into, e) {
                        into.calls += e.calls;
                        into.attempts += e.attempts;
                        into.errors += e.errors;
                        into.timeouts += e.timeouts;
                    }
                }
                for (id, n) in &t.nodes {
                    let into = acc.nodes.entry(id.clone()).or_insert_with(|| n.clone());
                    into.invocations += n.invocations;
                    into.errors += n.errors;
                }
                acc
            }
        });
    }
    (builder.finish().view(), truth.unwrap())
}

/// `augur generate --world shop` into `dir/name` (OTLP JSON Lines) with `extra` arguments;
/// returns the file's path.
pub fn generate_shop(dir: &Path, name: &str, traces: &str, seed: &str, extra: &[&str]) -> String {
    let out = dir.join(name);
    let mut args = vec![
        "generate",
        "--world",
        "shop",
        "--traces",
        traces,
        "--seed",
        seed,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    ok(&args);
    out.to_str().unwrap().to_string()
}

/// Generates `traces` shop traces (seeded) and learns them; returns the model file's path.
pub fn shop_model(dir: &tempfile::TempDir, traces: &str, seed: &str) -> String {
    let file = generate_shop(dir.path(), "shop.jsonl", traces, seed, &[]);
    let model = dir.path().join("shop.json");
    ok(&["learn", &file, "--out", model.to_str().unwrap()]);
    model.to_str().unwrap().to_string()
}
