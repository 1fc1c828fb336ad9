//! Ingest benches: every reader on the same generated traces, model extraction from spans in
//! memory, and the full model build from an OTLP JSON Lines file.
//!
//! Input is built once, outside the timed loops: the demo shop's traces (seeded) written in each
//! format to a temporary file. Throughput is reported in spans per second.
//!
//! Run with `cargo bench --bench ingest` (see docs/PERFORMANCE.md for recorded figures).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use augur_datasets::{write_world, TraceFormat, World};
use augur_ingest::{read_file, IngestReport, ReadOptions, SpanBatch};
use augur_model::ModelBuilder;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

const TRACES: usize = 4_000;
const SEED: u64 = 42;

fn write_input(dir: &Path, format: TraceFormat) -> PathBuf {
    let path = dir.join(format!("shop.{}", format.extension()));
    let file = std::fs::File::create(&path).unwrap();
    write_world(&World::shop(), SEED, TRACES, None, format, file).unwrap();
    path
}

fn count_spans(path: &Path) -> u64 {
    let mut report = IngestReport::default();
    read_file(path, &ReadOptions::default(), &mut report, &mut |_| Ok(())).unwrap();
    report.spans
}

fn readers(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut group = c.benchmark_group("read");
    group.sample_size(10);
    for format in TraceFormat::ALL {
        let path = write_input(dir.path(), format);
        let spans = count_spans(&path);
        group.throughput(Throughput::Elements(spans));
        group.bench_with_input(
            BenchmarkId::from_parameter(format.name()),
            &path,
            |b, path| {
                b.iter(|| {
                    let mut report = IngestReport::default();
                    read_file(path, &ReadOptions::default(), &mut report, &mut |_| Ok(())).unwrap();
                    report.spans
                })
            },
        );
    }
    // Compressed: the same JSON Lines, gzip and zstd (the decoders, and the guard that reads a
    // stream cut short as what came before the cut).
    let plain = write_input(dir.path(), TraceFormat::OtlpJsonl);
    let bytes = std::fs::read(&plain).unwrap();
    let gz = dir.path().join("shop.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut enc, &bytes).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let zst = dir.path().join("shop.jsonl.zst");
    std::fs::write(&zst, zstd::encode_all(&bytes[..], 3).unwrap()).unwrap();
    for (name, path) in [("otlp-jsonl.gz", gz), ("otlp-jsonl.zst", zst)] {
        group.throughput(Throughput::Elements(count_spans(&path)));
        group.bench_with_input(BenchmarkId::from_parameter(name), &path, |b, path| {
            b.iter(|| {
                let mut report = IngestReport::default();
                read_file(path, &ReadOptions::default(), &mut report, &mut |_| Ok(())).unwrap();
                report.spans
            })
        });
    }
    group.finish();
}

fn extraction(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), TraceFormat::Parquet);
    let mut batches: Vec<SpanBatch> = Vec::new();
    let mut report = IngestReport::default();
    read_file(&path, &ReadOptions::default(), &mut report, &mut |b| {
        batches.push(b);
        Ok(())
    })
    .unwrap();
    let mut group = c.benchmark_group("model");
    group.sample_size(10);
    group.throughput(Throughput::Elements(report.spans));
    group.bench_function("extract-call-graph", |b| {
        b.iter(|| {
            let mut builder = ModelBuilder::default();
            for batch in &batches {
                builder.add_batch(batch);
            }
            builder.finish().calls.len()
        })
    });
    // The whole build from the file, as `augur learn` does it: read, fold, finish.
    let jsonl = write_input(dir.path(), TraceFormat::OtlpJsonl);
    group.bench_function("learn-otlp-jsonl", |b| {
        b.iter(|| {
            let mut builder = ModelBuilder::default();
            let mut report = IngestReport::default();
            read_file(&jsonl, &ReadOptions::default(), &mut report, &mut |batch| {
                builder.add_batch(&batch);
                Ok(())
            })
            .unwrap();
            builder.finish().calls.len()
        })
    });
    group.finish();
}

/// An OTLP/gRPC request of 2,048 shop spans: what the receiver's wire decoder takes to decode
/// it, beside what tonic's generated server cost on top before 2026-12-04 (prost's decode, then
/// the re-encode for the log).
fn grpc_request(c: &mut Criterion) {
    use augur_ingest::live::{decode_body, encode_batch, Encoding};
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let path = write_input(dir.path(), TraceFormat::Parquet);
    let mut batch = SpanBatch::new();
    let mut report = IngestReport::default();
    read_file(&path, &ReadOptions::default(), &mut report, &mut |b| {
        if batch.is_empty() {
            batch = b;
        }
        Ok(())
    })
    .unwrap();
    batch.truncate(2048);
    let body = encode_batch(&batch);
    let mut group = c.benchmark_group("grpc-request");
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function("wire-decode", |b| {
        b.iter(|| decode_body(&body, Encoding::Protobuf).unwrap())
    });
    group.bench_function("prost-decode-and-reencode", |b| {
        b.iter(|| {
            ExportTraceServiceRequest::decode(&body[..])
                .unwrap()
                .encode_to_vec()
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, readers, extraction, grpc_request);
criterion_main!(benches);
