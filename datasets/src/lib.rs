//! # augur-datasets: synthetic worlds with known truth, written as traces
//!
//! Owns the **ground truth** augur's accuracy is measured against: seeded synthetic systems
//! ([`World`]) whose call graph, retries, timeouts, fallbacks and error rates are known, a
//! [`Generator`] that walks them into traces (optionally under a [`Fault`]), and writers
//! ([`TraceWriter`]) of those traces in every format `augur-ingest` reads.
//!
//! ```text
//!  World::shop() / World::random(seed, params)
//!        │
//!        ▼
//!  Generator::new(&world, seed).with_fault("payment:down")
//!        │ emit_trace ──► SpanBatch (augur_ingest's span table) ──► TraceWriter ──► OTLP JSON/JSONL/
//!        │                                                          (streaming,      protobuf/stream,
//!        ▼                                                           any io::Write)  Jaeger, Zipkin,
//!  truth() ──► GraphTruth (nodes, edges, counts)                                     CSV, Parquet
//! ```
//!
//! [`write_world`] does all of it in batches, so a file of millions of spans never sits in memory.
//!
//! ## Example
//! ```
//! use augur_datasets::{write_world, Fault, TraceFormat, World};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let world = World::shop();
//! let fault: Fault = "payment:down".parse()?;
//! let mut out = Vec::new();
//! let truth = write_world(&world, 7, 200, Some(fault), TraceFormat::OtlpJsonl, &mut out)?;
//! let charge = truth.edge("checkout PlaceOrder", "payment Charge").expect("checkouts happen");
//! assert_eq!(charge.errors, charge.calls); // every call to a down service fails
//! assert!(truth.nodes["postgres"].is_virtual);
//! assert!(String::from_utf8(out)?.contains(r#""key":"augur.experiment""#));
//! # Ok(()) }
//! ```
//!
//! ## Conventions (OTLP semantics)
//! - A call from operation A to an instrumented operation B is a CLIENT span in A's service
//!   (parent: A's span making it, its `peer` is B's service) with B's SERVER span as its child.
//!   Each retry attempt is its own CLIENT span. A timeout ends the CLIENT span with an error at the
//!   timeout while the SERVER span goes on.
//! - A call to an uninstrumented peer (database, cache, third-party API) is a CLIENT span (a
//!   PRODUCER span for a queue) with `peer` set and no child: a virtual node.
//! - A message to a queue with an instrumented consumer is a PRODUCER span with a CONSUMER child;
//!   the caller does not wait for the consumer, and the consumer's failure does not reach it.
//! - An operation may have an INTERNAL handler span between its entry span and its calls.
//! - A failed callee's span has status Error; the client span of each failed attempt is Error; the
//!   caller fails (and makes no further calls) unless the call has a fallback.
//! - `down`: CLIENT spans to the service end in a few ms with status Error, `error.type`
//!   `connection_refused`, `peer` = the service, and no SERVER child. A `down` consumer just never
//!   consumes. Traces whose endpoint's own service is down are not emitted at all.
//!
//! ## Guarantees
//! - Deterministic: the same world, seed, fault and trace count give byte-identical output and
//!   identical truth. Every random draw comes from a seeded ChaCha8 generator.
//! - Truth comes from the generator's own decisions, never from re-parsing spans.
//! - Every writer's output reads back with `augur_ingest::read_paths` to the same spans, except for
//!   what the format cannot carry (tested for every format): Jaeger and Zipkin keep times in µs;
//!   Zipkin has no INTERNAL kind and gives a server span sharing its client's id a derived id;
//!   CSV keeps only ids, service (from the pod name), name and times.
//! - No panic: bad parameters and fault strings are typed errors ([`DatasetError`]).
#![warn(missing_docs)]

mod error;
mod fault;
mod generator;
mod truth;
mod world;
mod writer;

use std::io::Write;

use augur_ingest::SpanBatch;

pub use error::{DatasetError, FaultParseError};
pub use fault::Fault;
pub use generator::{Generator, BASE_TIME_NS};
pub use truth::{EdgeTruth, GraphTruth, NodeTruth};
pub use world::{
    node_id, Call, Callee, Endpoint, EntryKind, LogNormal, Operation, Peer, PeerAttribute,
    PeerKind, RandomWorldParams, World,
};
pub use writer::{pod_name, TraceFormat, TraceWriter, DEFAULT_SPANS_PER_MESSAGE, SCOPE_NAME};

/// Traces generated per batch by [`write_world`].
pub const TRACES_PER_BATCH: usize = 2000;

/// Generates `traces` traces of `world` from `seed` (under `fault`, if any) and streams them to
/// `writer` in `format`, a batch of [`TRACES_PER_BATCH`] traces at a time; returns the truth.
///
/// `writer` is buffered internally; pass a `File` as is.
pub fn write_world<W: Write>(
    world: &World,
    seed: u64,
    traces: usize,
    fault: Option<Fault>,
    format: TraceFormat,
    writer: W,
) -> Result<GraphTruth, DatasetError> {
    write_world_batched(
        world,
        seed,
        traces,
        fault,
        format,
        writer,
        TRACES_PER_BATCH,
        0,
    )
}

/// [`write_world`], the traces starting `offset_ns` after [`BASE_TIME_NS`] (for traffic of a
/// later period: an experiment's window after the normal traffic).
pub fn write_world_from<W: Write>(
    world: &World,
    seed: u64,
    traces: usize,
    fault: Option<Fault>,
    format: TraceFormat,
    writer: W,
    offset_ns: i64,
) -> Result<GraphTruth, DatasetError> {
    write_world_batched(
        world,
        seed,
        traces,
        fault,
        format,
        writer,
        TRACES_PER_BATCH,
        offset_ns,
    )
}

// One more than clippy's default, each a knob a caller sets; a struct for them would be used
// only here.
#[allow(clippy::too_many_arguments)]
fn write_world_batched<W: Write>(
    world: &World,
    seed: u64,
    traces: usize,
    fault: Option<Fault>,
    format: TraceFormat,
    writer: W,
    per_batch: usize,
    offset_ns: i64,
) -> Result<GraphTruth, DatasetError> {
    let mut gen = Generator::new(world, seed)?.starting_at(offset_ns);
    if let Some(f) = fault {
        gen = gen.with_fault(f)?;
    }
    write_generated(gen, traces, format, writer, per_batch)
}

/// Streams `traces` traces of a configured [`Generator`] to `writer` in `format`, `per_batch`
/// traces at a time; returns the truth.
pub fn write_generated<W: Write>(
    mut gen: Generator<'_>,
    traces: usize,
    format: TraceFormat,
    writer: W,
    per_batch: usize,
) -> Result<GraphTruth, DatasetError> {
    let world = gen.world();
    let mut out = TraceWriter::new(format, writer).with_peer_attributes(world.peer_attributes());
    let mut batch = SpanBatch::with_capacity(per_batch * 16);
    let mut left = traces;
    while left > 0 {
        let n = left.min(per_batch.max(1));
        gen.emit(n, &mut batch);
        out.write_batch(&batch)?;
        batch.truncate(0);
        left -= n;
    }
    out.finish()?;
    Ok(gen.truth())
}

#[cfg(test)]
mod roundtrip_tests;
