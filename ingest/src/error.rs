//! The errors a read can produce.

use std::path::PathBuf;

/// Why reading traces failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The file or directory could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// The file is empty (after decompression).
    #[error("{path}: the file is empty")]
    Empty {
        /// The file.
        path: PathBuf,
    },
    /// The file's content is not any trace format augur reads.
    #[error("{path}: not a trace file augur can read ({reason}); expected OTLP JSON/JSON Lines/protobuf, Jaeger JSON, Zipkin v2 JSON, a span-table CSV or Parquet, optionally gzip or zstd compressed")]
    UnknownFormat {
        /// The file.
        path: PathBuf,
        /// What was seen instead.
        reason: String,
    },
    /// The file is of a known format but cannot be read as a whole (truncated, wrong shape).
    #[error("{path}: {format}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The format it was read as.
        format: &'static str,
        /// What went wrong, with the line or byte offset where known.
        reason: String,
    },
    /// A record was bad and `--strict` was asked for.
    #[error("{path}: {location}: {reason} (strict mode: any bad record is an error)")]
    BadRecord {
        /// The file.
        path: PathBuf,
        /// The line or byte offset.
        location: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Writing Parquet or Arrow data failed.
    #[error("{path}: writing Parquet failed: {reason}")]
    Write {
        /// The file being written.
        path: PathBuf,
        /// The reason.
        reason: String,
    },
    /// The consumer of the spans failed; its message is kept.
    #[error("{0}")]
    Sink(String),
}

impl IngestError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        IngestError::Io {
            path: path.into(),
            source,
        }
    }
}
