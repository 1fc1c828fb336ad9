//! # augur-model: what the traces say about the system
//!
//! Learns, from spans, the service call graph: **operations** (a service's entry points),
//! **endpoints** (where user requests enter), **call edges** with counts, errors and durations,
//! and **virtual nodes** for uninstrumented peers (databases, queues, third-party APIs).
//!
//! ```text
//!  SpanBatch (augur-ingest) ──► ModelBuilder::add_batch ──► … ──► ModelBuilder::finish ──► Model
//!                                  (group by trace, extract calls)                          │
//!                                                                     save/load (versioned JSON)
//!                                                                     graph() ──► Graph (json/dot/table)
//!  experiment traces ──► Model ──► evidence_under_fault (callers' reactions only) ──► merge
//! ```
//!
//! Fitting and using are separate types: [`ModelBuilder`] folds spans, [`Model`] is the result
//! (sufficient statistics: counts and mergeable [`LogSketch`]es), [`Graph`] its contract view.
//!
//! ## Guarantees
//! - The same calls give the same graph whatever the trace format's conventions: OTLP's CLIENT →
//!   SERVER parenting, Zipkin's shared client/server ids (split by the reader), or data without
//!   span kinds (a span whose parent is in another service is that service's entry).
//! - Broken traces are handled in stated ways and counted in [`TraceQuality`], never silently
//!   guessed: missing parents, duplicate span ids, end before start, clock skew, cycles.
//! - Memory is set by the model and the trace window ([`BuildOptions::trace_window`]), not by
//!   the input size.
//!
//! ## Example
//! ```
//! use augur_ingest::{OwnedSpan, SpanBatch, SpanKind};
//! use augur_model::ModelBuilder;
//!
//! let span = |id: u8, parent: Option<u8>, service: &str, name: &str, kind: SpanKind| OwnedSpan {
//!     trace_id: [1; 16], span_id: [id; 8], parent_span_id: parent.map(|p| [p; 8]),
//!     service: service.into(), name: name.into(), kind: kind as u8,
//!     start_ns: 0, end_ns: 1_000_000, status: 0, peer: None, peer_kind: Default::default(), http_route: None,
//!     rpc_method: None, error_type: None, experiment: None, link: None,
//! };
//! let mut batch = SpanBatch::new();
//! batch.push_owned(&span(1, None, "frontend", "GET /", SpanKind::Server));
//! batch.push_owned(&span(2, Some(1), "frontend", "GET cart", SpanKind::Client));
//! batch.push_owned(&span(3, Some(2), "cart", "GetCart", SpanKind::Server));
//!
//! let mut builder = ModelBuilder::default();
//! builder.add_batch(&batch);
//! let graph = builder.finish().graph();
//! assert_eq!(graph.edges.len(), 1);
//! assert_eq!((graph.edges[0].from.as_str(), graph.edges[0].to.as_str()), ("frontend GET /", "cart GetCart"));
//! ```
#![warn(missing_docs)]

pub mod beta;
mod diff;
mod extract;
pub mod habits;
#[cfg(test)]
mod merge_tests;
mod model;
mod refine;
mod sketch;
mod view;

use std::path::PathBuf;

pub use diff::{
    diff, ks_test, BehaviourChange, Drift, EdgeRef, LatencyShift, PropagationMove, LATENCY_ALPHA,
    LATENCY_MIN_SAMPLES, LATENCY_MIN_SHIFT, TIMEOUT_SHIFT,
};
pub use extract::{BuildOptions, ExperimentTraces, ModelBuilder, DEFAULT_TRACE_WINDOW};
pub use model::{
    CallSite, CallStats, Graph, GraphEdge, GraphNode, LearnedFile, Model, Operation, TraceQuality,
    Unarrived, Window, MAX_COUNT, MAX_PER_INVOCATION, OLDEST_READABLE_VERSION, SCHEMA_VERSION,
    TRAFFIC_GAP_NS,
};
pub use refine::{Evidence, FaultScope};
pub use sketch::{LogSketch, RELATIVE_ACCURACY};
pub use view::{
    BetaMix, Edge, Interval, Mode, Node, Posterior, PriorFit, Quantiles, Timeout, TimeoutEvidence,
    Traffic, View, CREDIBLE_MASS, EDGE_HIGH, EDGE_LOW, MIN_CONCENTRATION, MIN_GROUP_CALLERS,
    MIN_GROUP_SITES, PEER_SUFFIX,
};

/// Errors of model files.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The model file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not a model this augur can read.
    #[error("{path}: {reason}")]
    Format {
        /// The model file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}
