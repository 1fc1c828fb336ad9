//! Model-file benches: loading a model of 10 000 call sites from its JSON file, and reading it
//! (placing calls, deriving behaviour, fitting the priors, computing every posterior interval).
//!
//! Run with `cargo bench --bench model` (figures in docs/PERFORMANCE.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use augur_model::{
    CallSite, CallStats, LogSketch, Model, Operation, TraceQuality, Window, SCHEMA_VERSION,
};
use criterion::{criterion_group, criterion_main, Criterion};

const OPERATIONS: usize = 2_500;
const CALLS_PER_OPERATION: usize = 4;

/// A deterministic spread of durations around `median_ns`.
fn sketch(median_ns: f64, n: usize, seed: usize) -> LogSketch {
    let mut s = LogSketch::new();
    for i in 0..n {
        let u = ((i * 7919 + seed * 104_729) % 1000) as f64 / 1000.0;
        s.add(median_ns * (0.3 + 2.0 * u * u));
    }
    s
}

/// A model of `OPERATIONS` operations, each calling `CALLS_PER_OPERATION` later ones.
fn big_model() -> Model {
    let id = |i: usize| format!("svc-{:04} op-{}", i / 4, i % 4);
    let operations: Vec<Operation> = (0..OPERATIONS)
        .map(|i| Operation {
            id: id(i),
            service: format!("svc-{:04}", i / 4),
            operation: format!("op-{}", i % 4),
            invocations: 10_000,
            errors: 20,
            roots: u64::from(i < 8) * 10_000,
            duration_ns: sketch(20e6, 300, i),
            self_ns: sketch(5e6, 300, i + 1),
            clean: 9_990,
            clean_errors: 15,
            unrecorded: 0,
        })
        .collect();
    let mut calls = Vec::new();
    for i in 0..OPERATIONS {
        for k in 1..=CALLS_PER_OPERATION {
            let to = (i + k * 37) % OPERATIONS;
            let failed = (i * k) as u64 % 7;
            let stats = CallStats {
                attempts: 10_000 + failed,
                attempt_errors: failed * 2,
                calls: 10_000,
                failed,
                propagated: failed / 2,
                survived: failed - failed / 2,
                per_invocation: vec![0, 9_000, 500],
                retries: vec![10_000 - failed, failed],
                failed_after: vec![0, failed],
                parallel: (k as u64 % 2) * 10_000,
                asynchronous: 0,
                ok_ns: sketch(8e6, 200, i * 4 + k),
                failed_ns: sketch(30e6, failed as usize, i),
                gap_ns: sketch(0.4e6, 100, i + k),
                cut_ns: LogSketch::new(),
                outlived_ok_ns: LogSketch::new(),
                cut_overrun_ns: LogSketch::new(),
                server_longer_ns: LogSketch::new(),
                unanswered_ns: LogSketch::new(),
                longest_under_fault_ns: 0,
                start_offset_ns: 10_000 * 1_000_000 * (k as u64 % 3),
                backoff_ns: LogSketch::new(),
            };
            calls.push(CallSite {
                from: id(i),
                to: id(to),
                client_names: [(format!("call {}", id(to)), 10_000 + failed)]
                    .into_iter()
                    .collect(),
                stats,
            });
        }
    }
    calls.sort_by(|a, b| (&a.from, &a.to).cmp(&(&b.from, &b.to)));
    calls.dedup_by(|a, b| a.from == b.from && a.to == b.to);
    let mut operations = operations;
    operations.sort_by(|a, b| a.id.cmp(&b.id));
    Model {
        schema_version: SCHEMA_VERSION,
        quality: TraceQuality::default(),
        window: Some(Window {
            first_ns: 0,
            last_ns: 3_600_000_000_000,
        }),
        active: Vec::new(),
        operations,
        calls,
        unarrived: Vec::new(),
        links: Vec::new(),
        peer_kinds: Vec::new(),
        learned_files: Vec::new(),
    }
}

fn model_file(c: &mut Criterion) {
    let model = big_model();
    assert_eq!(model.calls.len(), OPERATIONS * CALLS_PER_OPERATION);
    let json = serde_json::to_vec(&model).unwrap();
    eprintln!(
        "model of {} call sites: {:.1} MB of JSON",
        model.calls.len(),
        json.len() as f64 / 1e6
    );
    let mut group = c.benchmark_group("model-file");
    group.sample_size(10);
    group.bench_function("load-10k-call-sites", |b| {
        b.iter(|| Model::from_json(&json).unwrap().calls.len())
    });
    group.bench_function("view-10k-call-sites", |b| {
        b.iter(|| model.view().edges.len())
    });
    group.finish();
}

criterion_group!(benches, model_file);
criterion_main!(benches);
