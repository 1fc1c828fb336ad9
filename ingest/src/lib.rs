//! # augur-ingest: traces in, the span table out
//!
//! Reads OpenTelemetry traces in every common format and turns them into augur's **span table**:
//! one row per span, the schema of [`schema::span_table_schema`], as Arrow record batches, and a
//! Parquet **span lake** partitioned by hour that polars, DuckDB or Spark read without augur.
//!
//! ```text
//!  files / dirs ──► decompress (gzip, zstd) ──► detect format by content ──► reader ──► SpanBatch ──► consumer
//!                                                 OTLP JSON / JSON Lines          │      (model, lake)
//!                                                 OTLP protobuf / stream          └──► Arrow RecordBatch ──► Parquet lake
//!                                                 Jaeger JSON, Zipkin v2 JSON, CSV, Parquet
//! ```
//!
//! Readers stream: a file is never held as a JSON tree, and spans reach the consumer in batches of
//! [`ReadOptions::batch_size`]. Inside the crate a batch is a [`SpanBatch`] (spans with interned
//! strings: compact, and cheap for the model to fold); at the boundary it is the Arrow record batch
//! of [`schema`], converted losslessly both ways.
//!
//! ## Live OTLP
//! The live receiver (`augur serve`) uses two modules of this crate: [`live`] decodes one export
//! request body into a batch (counting rejected spans for OTLP's partial success) and [`wal`] is
//! the write-ahead log that makes an export durable before it is acknowledged. The gRPC and HTTP
//! servers themselves (tonic, axum, tokio) are wired in the binary's `serve` module, so that the
//! library crates, and every command that does not serve, stay free of the async stack.
//!
//! ## Guarantees
//! - No panic on any input. A bad record (a span without a valid id, a line that is not JSON) is
//!   skipped, counted and located in the [`IngestReport`] (file, line or byte offset, reason), or is
//!   an error with [`ReadOptions::strict`]. A file that cannot be read as a whole (empty, garbage,
//!   wrong shape, truncated compression) is an [`IngestError`] naming the file.
//! - Every reader gives the same span for the same span: ids as bytes (Zipkin's 64-bit trace ids are
//!   zero-extended), times in nanoseconds, kinds and statuses as OTLP's enums, the peer picked from
//!   [`PEER_ATTRIBUTES`] in that order, a span's first link to another trace (OTLP `links`, Jaeger
//!   references to another trace; Zipkin and CSV have none) in [`SpanBatch::links`].
//!
//! The span table has two columns more than ARCHITECTURE.md lists: `link_trace_id` and
//! `link_span_id` (nullable), the span's first link; Parquet files without them read as spans
//! without links.
//!
//! ## Example
//! ```
//! use augur_ingest::{read_paths, ReadOptions, SpanBatch};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let file = dir.path().join("t.jsonl");
//! std::fs::write(&file, r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":2,"startTimeUnixNano":"1","endTimeUnixNano":"5"}]}]}]}"#)?;
//! let mut batches: Vec<SpanBatch> = Vec::new();
//! let report = read_paths(&[file], &ReadOptions::default(), &mut |b| { batches.push(b); Ok(()) })?;
//! assert_eq!(report.spans, 1);
//! assert_eq!(batches[0].str(batches[0].spans[0].service), "shop");
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

mod csv;
mod error;
#[cfg(test)]
mod fuzz_tests;
mod jaeger;
pub mod lake;
mod lenient;
pub mod live;
mod otlp_json;
mod otlp_proto;
mod otlp_wire;
mod parquet_io;
mod read;
mod report;
pub mod schema;
mod span;
pub mod table;
pub mod wal;
mod zipkin;

pub use error::IngestError;
pub use parquet_io::{write_parquet, ParquetSpanWriter};
pub use read::{
    detect, expand_paths, fingerprint, read_file, read_paths, Compression, Fingerprint, Format,
    ReadOptions, DEFAULT_BATCH_SIZE, FINGERPRINT_BYTES,
};
pub use report::{IngestReport, Problem, MAX_KEPT_PROBLEMS};
pub use span::{
    decode_hex_into, fnv1a64, parse_base64_id, parse_hex_id, to_hex, Interner, OwnedSpan, PeerKind,
    Span, SpanBatch, SpanId, SpanKind, SpanLink, StatusCode, Sym, TraceId,
};

/// The attributes that name the remote side of a client or producer span, most specific first:
/// the first one present is the span's `peer`. `db.system.name` is `db.system` as the stable
/// database conventions (OpenTelemetry semantic conventions 1.33 on) name it.
pub const PEER_ATTRIBUTES: [&str; 7] = [
    "peer.service",
    "server.address",
    "net.peer.name",
    "db.system",
    "db.system.name",
    "messaging.destination.name",
    "messaging.destination",
];

/// The span or resource attribute that names the fault active when the span was recorded.
pub const EXPERIMENT_ATTRIBUTE: &str = "augur.experiment";

/// The rank of `key` in [`PEER_ATTRIBUTES`] (lower is preferred), if it is one of them.
pub(crate) fn peer_rank(key: &str) -> Option<u8> {
    PEER_ATTRIBUTES
        .iter()
        .position(|k| *k == key)
        .map(|i| i as u8)
}
