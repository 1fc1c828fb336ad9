//! Simulator benches: one fault on a learned 50-service random world with the default settings
//! (10,000 requests × 64 posterior draws, each with its baseline), reported as simulated call
//! attempts per second.
//!
//! Run with `cargo bench --bench simulator` (figures in docs/PERFORMANCE.md).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use augur_datasets::{Generator, RandomWorldParams, World};
use augur_ingest::SpanBatch;
use augur_model::ModelBuilder;
use augur_simulator::{
    simulate, simulate_many, single_fault_candidates, FaultKind, FaultSpec, SimOptions,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn one_fault(c: &mut Criterion) {
    let world = World::random(
        3,
        RandomWorldParams {
            services: 50,
            endpoints: 20,
            ..RandomWorldParams::default()
        },
    )
    .unwrap();
    let mut gen = Generator::new(&world, 1).unwrap();
    let mut builder = ModelBuilder::default();
    for _ in 0..10 {
        let mut batch = SpanBatch::new();
        gen.emit(2_000, &mut batch);
        builder.add_batch(&batch);
    }
    let view = builder.finish().view();
    // A service in the middle of the graph.
    let target = view
        .edges
        .iter()
        .filter(|e| !view.node(&e.to).unwrap().is_virtual)
        .max_by_key(|e| e.attempts)
        .map(|e| view.node(&e.to).unwrap().service.clone())
        .unwrap();
    let fault: FaultSpec = format!("{target}:error=0.5").parse().unwrap();
    let opts = SimOptions::default();
    let (_, events) = simulate(&view, std::slice::from_ref(&fault), &opts).unwrap();
    let mut services: Vec<&str> = view.nodes.iter().map(|n| n.service.as_str()).collect();
    services.sort_unstable();
    services.dedup();
    eprintln!(
        "{} services, {} nodes, {} call sites; fault {fault}: {events} call attempts per run",
        services.len(),
        view.nodes.len(),
        view.edges.len()
    );
    let mut group = c.benchmark_group("simulate");
    group.sample_size(10);
    group.throughput(Throughput::Elements(events));
    group.bench_function("one-fault-50-services-default", |b| {
        b.iter(|| {
            simulate(&view, std::slice::from_ref(&fault), &opts)
                .unwrap()
                .1
        })
    });

    // Every single-fault candidate (each service and virtual node × down, error=0.5,
    // latency=+500ms), in parallel on all cores. With the default settings this takes tens of
    // seconds, so it is timed once here; criterion times it with fewer requests per draw.
    let kinds = [
        FaultKind::Down,
        FaultKind::Error(0.5),
        FaultKind::AddLatencyMs(500.0),
    ];
    let sets: Vec<Vec<FaultSpec>> = single_fault_candidates(&view, &kinds)
        .into_iter()
        .map(|f| vec![f])
        .collect();
    let started = std::time::Instant::now();
    let all = simulate_many(&view, &sets, &opts).unwrap();
    let events: u64 = all.iter().map(|(_, e)| e).sum();
    eprintln!(
        "all {} single-fault candidates, default settings, {} threads: {:.1} s ({events} call attempts)",
        sets.len(),
        rayon::current_num_threads(),
        started.elapsed().as_secs_f64()
    );
    let small = SimOptions {
        requests: 1_000,
        ..opts
    };
    group.finish();
    let mut group = c.benchmark_group("simulate-many");
    group.sample_size(10);
    group.bench_function("all-single-faults-50-services-1k-requests", |b| {
        b.iter(|| simulate_many(&view, &sets, &small).unwrap().len())
    });
    group.finish();
}

criterion_group!(benches, one_fault);
criterion_main!(benches);
