//! Property tests: a model is a sum of per-trace statistics, so models learned from shards of
//! the traces merge, in any order and grouping, to exactly the model learned from all of them.

use augur_ingest::{OwnedSpan, SpanBatch, SpanKind};
use proptest::prelude::*;

use crate::{Model, ModelBuilder};

const SERVICES: [&str; 4] = ["a", "b", "c", "pg"];
const NAMES: [&str; 3] = ["x", "y", "z"];
const KINDS: [SpanKind; 5] = [
    SpanKind::Server,
    SpanKind::Client,
    SpanKind::Internal,
    SpanKind::Producer,
    SpanKind::Consumer,
];

/// One span of a generated trace: (parent choice, service, name, kind, start, length, failed,
/// peer).
type Gen = (usize, usize, usize, usize, i64, i64, bool, Option<usize>);

fn span_strategy() -> impl Strategy<Value = Gen> {
    (
        0usize..16,
        0..SERVICES.len(),
        0..NAMES.len(),
        0..KINDS.len(),
        0i64..50_000_000,
        0i64..80_000_000,
        prop::bool::weighted(0.2),
        prop::option::weighted(0.5, 0..SERVICES.len()),
    )
}

fn traces_strategy() -> impl Strategy<Value = Vec<Vec<Gen>>> {
    prop::collection::vec(prop::collection::vec(span_strategy(), 1..10), 1..24)
}

fn spans_of(t: usize, trace: &[Gen]) -> Vec<OwnedSpan> {
    trace
        .iter()
        .enumerate()
        .map(
            |(i, &(parent, svc, name, kind, start, len, failed, peer))| {
                // Parent: an earlier span, or none for the first (parent choice 15: a missing one).
                let parent_span_id = match (i, parent) {
                    (0, _) => None,
                    (_, 15) => Some([0xee; 8]),
                    (_, p) => Some([(p % i) as u8 + 1; 8]),
                };
                OwnedSpan {
                    trace_id: [t as u8 + 1; 16],
                    span_id: [i as u8 + 1; 8],
                    parent_span_id,
                    service: SERVICES[svc].into(),
                    name: NAMES[name].into(),
                    kind: KINDS[kind] as u8,
                    start_ns: 1_000_000_000 + start,
                    end_ns: 1_000_000_000 + start + len,
                    status: if failed { 2 } else { 0 },
                    peer: peer.map(|p| SERVICES[p].to_string()),
                    peer_kind: Default::default(),
                    http_route: None,
                    rpc_method: None,
                    error_type: None,
                    experiment: None,
                    link: None,
                }
            },
        )
        .collect()
}

fn learn<'a>(traces: impl Iterator<Item = (usize, &'a Vec<Gen>)>) -> Model {
    let mut batch = SpanBatch::new();
    for (t, trace) in traces {
        for s in spans_of(t, trace) {
            batch.push_owned(&s);
        }
    }
    let mut b = ModelBuilder::default();
    b.add_batch(&batch);
    b.finish()
}

fn merged(a: &Model, b: &Model) -> Model {
    let mut m = a.clone();
    m.merge(b);
    m
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_3e26), ..ProptestConfig::default() })]

    #[test]
    fn merge_of_shards_is_learning_at_once(traces in traces_strategy(), shard in 1usize..4) {
        let part = |k: usize| learn(traces.iter().enumerate().filter(move |(t, _)| (t * shard) % 3 == k));
        let (a, b, c) = (part(0), part(1), part(2));
        let all = learn(traces.iter().enumerate());
        // Commutative.
        prop_assert_eq!(merged(&a, &b), merged(&b, &a));
        // Associative.
        prop_assert_eq!(merged(&merged(&a, &b), &c), merged(&a, &merged(&b, &c)));
        // Exact: the shards' merge is the model of all the traces.
        prop_assert_eq!(&merged(&merged(&a, &b), &c), &all);
        // And the views (placement of unarrived calls, posteriors) agree too.
        prop_assert_eq!(merged(&merged(&a, &b), &c).view(), all.view());
        // The empty model is the identity.
        let empty = learn(std::iter::empty());
        prop_assert_eq!(merged(&all, &empty), all.clone());
        prop_assert_eq!(merged(&empty, &all), all);
    }
}

/// A time from anywhere in i64's range, extremes included (damaged files carry such times).
fn wild_time() -> impl Strategy<Value = i64> {
    prop_oneof![
        Just(i64::MIN),
        Just(i64::MAX),
        Just(0i64),
        Just(-1i64),
        any::<i64>(),
        0i64..200_000_000,
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, rng_seed: proptest::test_runner::RngSeed::Fixed(0x5eed_71e5), ..ProptestConfig::default() })]

    /// Times at the edges of i64 (a damaged file's) never make learning panic or overflow, and
    /// the model still reads and round-trips.
    #[test]
    fn extreme_times_never_panic(
        trace in prop::collection::vec((span_strategy(), wild_time(), wild_time()), 1..12),
    ) {
        let gens: Vec<Gen> = trace.iter().map(|(g, _, _)| *g).collect();
        let mut spans = spans_of(0, &gens);
        for (s, (_, a, b)) in spans.iter_mut().zip(&trace) {
            s.start_ns = *a;
            s.end_ns = *b;
        }
        let mut batch = SpanBatch::new();
        for s in &spans {
            batch.push_owned(s);
        }
        let mut b = ModelBuilder::default();
        b.add_batch(&batch);
        let m = b.finish();
        let v = m.view();
        let _ = v.timeout_habits();
        let _ = m.graph();
        let text = serde_json::to_vec(&m).unwrap();
        prop_assert_eq!(Model::from_json(&text).unwrap(), m);
    }
}
