//! What an experiment's traces teach the model, without mistaking the injected fault for the
//! system's normal behaviour.
//!
//! Traces recorded while a fault was active mix two things: how the *target* behaved (it was
//! down, erroring or slow because the experiment made it so) and how *everything else reacted*
//! (callers that retried, timed out, fell back or failed with it). Only the second is evidence
//! about the system; the first is the experiment itself.
//!
//! [`Model::evidence_under_fault`] keeps, of a model learned from such traces, exactly the
//! statistics that describe callers' reactions to failure, at every call site (into the target
//! and, for cascades, above it):
//!
//! | kept | what it informs |
//! |---|---|
//! | `propagated`, `survived` | P(propagate): did the caller fail with the call? |
//! | `retries`, `backoff_ns` | how many times a failed call is retried, and the wait before each retry |
//! | `cut_ns` | timeouts: client spans cut while their server ran on |
//! | `unanswered_ns` | timeouts seen as piles, and how long a refused call takes |
//! | the longest attempt (`longest_under_fault_ns`) | a call that lasted that long was not cut: any timeout is longer |
//!
//! Everything else is dropped: the target's own error rate and self time (the fault set them),
//! every operation's invocations, durations and traffic (a failed caller stops early, so calls
//! per invocation and durations under the fault are not the normal ones), and call counts,
//! error counts and durations of calls (they would inflate error rates and latencies learned
//! from normal traffic). Operations and call sites that appear only under the fault (a fallback
//! path) are listed, not added: the simulator has no way to know when such a path is taken.
//!
//! The evidence merges into the base model with [`Model::merge`] like any other statistics, so
//! refining is exact and order-free: two experiments' evidence added in either order give the
//! same model.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::model::{CallStats, Model};
use crate::view::Resolver;

/// What a fault acted on, in the node ids of the base model's view.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultScope {
    /// Nodes the fault acts on: operation ids or virtual node ids.
    pub callees: BTreeSet<String>,
    /// Only calls from these callers (a call-site fault `caller->callee`): the callee itself was
    /// not faulted, only how these callers saw it. `None`: every caller, and the callee
    /// operations themselves were faulted.
    pub callers: Option<BTreeSet<String>>,
}

impl FaultScope {
    /// Whether calls `from → to` went into the fault.
    pub fn is_into(&self, from: &str, to: &str) -> bool {
        self.callees.contains(to) && self.callers.as_ref().is_none_or(|c| c.contains(from))
    }

    /// Whether the operation `id` itself was faulted (its own statistics are the fault's).
    pub fn is_faulted(&self, id: &str) -> bool {
        self.callers.is_none() && self.callees.contains(id)
    }
}

/// The evidence an experiment's traces hold about the system, and what was set aside.
#[derive(Debug, Clone, PartialEq)]
pub struct Evidence {
    /// Statistics to merge into the base model: callers' reactions to failure only.
    pub model: Model,
    /// Operations seen only under the fault (not in the base model): reported, not added.
    pub new_operations: Vec<String>,
    /// Call sites `(from, to)` seen only under the fault: reported, not added.
    pub new_calls: Vec<(String, String)>,
    /// Calls into the fault's target in the experiment's traces.
    pub calls_into_target: u64,
    /// Of those, failed after their retries.
    pub failed_into_target: u64,
    /// Failed calls anywhere whose caller's reaction (failed with it, or survived) was seen.
    pub reactions: u64,
}

/// The caller's side of a call site's statistics.
fn reactions(s: &CallStats) -> CallStats {
    CallStats {
        propagated: s.propagated,
        survived: s.survived,
        retries: s.retries.clone(),
        failed_after: s.failed_after.clone(),
        backoff_ns: s.backoff_ns.clone(),
        cut_ns: s.cut_ns.clone(),
        outlived_ok_ns: s.outlived_ok_ns.clone(),
        cut_overrun_ns: s.cut_overrun_ns.clone(),
        unanswered_ns: s.unanswered_ns.clone(),
        longest_under_fault_ns: s.longest_attempt_ns().round() as u64,
        ..CallStats::default()
    }
}

impl Model {
    /// The evidence about the system in `outcome`, a model learned from traces recorded while a
    /// fault acted on `scope` (see the module documentation for what is kept and why). `self`
    /// is the model the experiment was planned on: it decides which call sites are known and
    /// where calls that never arrived were going.
    pub fn evidence_under_fault(&self, outcome: &Model, scope: &FaultScope) -> Evidence {
        let base_view = self.view();
        let known_edge = |from: &str, to: &str| base_view.edge(from, to).is_some();
        let known_op: BTreeSet<&str> = self.operations.iter().map(|o| o.id.as_str()).collect();
        let resolver = Resolver::new(self);

        let mut model = Model {
            schema_version: self.schema_version,
            quality: Default::default(),
            window: None,
            active: Vec::new(),
            operations: Vec::new(),
            calls: Vec::new(),
            unarrived: Vec::new(),
            // Where messages went, and what the peers are, is the base model's to say.
            links: Vec::new(),
            peer_kinds: Vec::new(),
            learned_files: Vec::new(),
        };
        let mut new_operations: Vec<String> = outcome
            .operations
            .iter()
            .filter(|o| !known_op.contains(o.id.as_str()))
            .map(|o| o.id.clone())
            .collect();
        new_operations.sort();
        let mut new_calls = BTreeSet::new();
        let (mut calls_into, mut failed_into, mut seen) = (0, 0, 0);
        let mut count = |from: &str, to: &str, s: &CallStats| {
            if scope.is_into(from, to) {
                calls_into += s.calls;
                failed_into += s.failed;
            }
            seen += s.propagated + s.survived;
        };
        for c in &outcome.calls {
            if !known_edge(&c.from, &c.to) {
                new_calls.insert((c.from.clone(), c.to.clone()));
                continue;
            }
            count(&c.from, &c.to, &c.stats);
            let mut kept = c.clone();
            kept.stats = reactions(&c.stats);
            model.calls.push(kept);
        }
        for u in &outcome.unarrived {
            // Where the base model would place it: the instrumented operation the peer names,
            // else the virtual node of that peer.
            let to = resolver
                .target(&u.from, &u.peer, &u.name)
                .map_or_else(|| u.peer.clone(), str::to_string);
            if !known_edge(&u.from, &to) {
                new_calls.insert((u.from.clone(), to));
                continue;
            }
            count(&u.from, &to, &u.stats);
            let mut kept = u.clone();
            kept.stats = reactions(&u.stats);
            model.unarrived.push(kept);
        }
        // Operations are not carried over at all, faulted or not: see the module documentation.
        // (`is_faulted` tells callers which operations' changes the experiment itself caused.)
        Evidence {
            model,
            new_operations,
            new_calls: new_calls.into_iter().collect(),
            calls_into_target: calls_into,
            failed_into_target: failed_into,
            reactions: seen,
        }
    }
}

impl Model {
    /// The part of the model a fault on `scope` tests: the target operations, their callers, and
    /// the call sites into the target (calls that never arrived placed as [`Model::view`] does).
    /// Small enough to keep in the ledger, so that a later model can be compared with what an
    /// experiment saw ([`crate::diff`] on the two neighbourhoods' views): drift there makes the
    /// experiment's lessons stale.
    pub fn neighbourhood(&self, scope: &FaultScope) -> Model {
        let resolver = Resolver::new(self);
        let calls: Vec<_> = self
            .calls
            .iter()
            .filter(|c| scope.is_into(&c.from, &c.to))
            .cloned()
            .collect();
        let unarrived: Vec<_> = self
            .unarrived
            .iter()
            .filter(|u| {
                let to = resolver
                    .target(&u.from, &u.peer, &u.name)
                    .map_or_else(|| u.peer.clone(), str::to_string);
                scope.is_into(&u.from, &to)
            })
            .cloned()
            .collect();
        let keep: BTreeSet<&str> = calls
            .iter()
            .map(|c| c.from.as_str())
            .chain(unarrived.iter().map(|u| u.from.as_str()))
            .chain(scope.callees.iter().map(String::as_str))
            .collect();
        Model {
            schema_version: self.schema_version,
            quality: Default::default(),
            window: self.window,
            active: self.active.clone(),
            operations: self
                .operations
                .iter()
                .filter(|o| keep.contains(o.id.as_str()))
                .cloned()
                .collect(),
            calls,
            unarrived,
            links: self
                .links
                .iter()
                .filter(|l| scope.callees.contains(&l.to))
                .cloned()
                .collect(),
            peer_kinds: self
                .peer_kinds
                .iter()
                .filter(|k| scope.callees.contains(&k.peer))
                .cloned()
                .collect(),
            learned_files: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use augur_ingest::{OwnedSpan, SpanBatch, SpanKind};

    use super::*;
    use crate::ModelBuilder;

    struct Trace {
        id: u8,
        spans: Vec<OwnedSpan>,
    }

    impl Trace {
        #[allow(clippy::too_many_arguments)]
        fn span(
            &mut self,
            id: u8,
            parent: Option<u8>,
            service: &str,
            name: &str,
            kind: SpanKind,
            ms: (i64, i64),
            error: bool,
            peer: Option<&str>,
        ) {
            self.spans.push(OwnedSpan {
                trace_id: [self.id; 16],
                span_id: [id; 8],
                parent_span_id: parent.map(|p| [p; 8]),
                service: service.into(),
                name: name.into(),
                kind: kind as u8,
                start_ns: ms.0 * 1_000_000,
                end_ns: ms.1 * 1_000_000,
                status: if error { 2 } else { 1 },
                peer: peer.map(Into::into),
                peer_kind: Default::default(),
                http_route: None,
                rpc_method: None,
                error_type: None,
                experiment: None,
                link: None,
            });
        }
    }

    /// checkout calls payment (and fails when payment fails, unless `fallback`).
    fn traces(n: u8, payment_down: bool, fallback: bool, slow_ms: i64) -> Model {
        let mut b = ModelBuilder::default();
        for id in 1..=n {
            let mut t = Trace {
                id,
                spans: Vec::new(),
            };
            let failed = payment_down && !fallback;
            t.span(
                1,
                None,
                "frontend",
                "GET /",
                SpanKind::Server,
                (0, 50 + slow_ms),
                failed,
                None,
            );
            t.span(
                2,
                Some(1),
                "frontend",
                "charge",
                SpanKind::Client,
                (5, 40 + slow_ms),
                payment_down,
                Some("payment"),
            );
            if !payment_down {
                t.span(
                    3,
                    Some(2),
                    "payment",
                    "Charge",
                    SpanKind::Server,
                    (6, 39 + slow_ms),
                    false,
                    None,
                );
            }
            let mut batch = SpanBatch::new();
            for s in &t.spans {
                batch.push_owned(s);
            }
            b.add_batch(&batch);
        }
        b.finish()
    }

    fn scope() -> FaultScope {
        FaultScope {
            callees: ["payment Charge".to_string()].into(),
            callers: None,
        }
    }

    #[test]
    fn an_outage_teaches_propagation_not_error_rates() {
        let base = traces(50, false, false, 0);
        let outcome = traces(20, true, false, 0);
        let ev = base.evidence_under_fault(&outcome, &scope());
        assert_eq!((ev.calls_into_target, ev.failed_into_target), (20, 20));
        assert_eq!(ev.reactions, 20);
        assert!(ev.new_calls.is_empty() && ev.new_operations.is_empty());
        let mut refined = base.clone();
        refined.merge(&ev.model);
        let (before, after) = (base.view(), refined.view());
        let e0 = before.edge("frontend GET /", "payment Charge").unwrap();
        let e1 = after.edge("frontend GET /", "payment Charge").unwrap();
        // Normal statistics are those of normal traffic.
        assert_eq!(
            (e1.calls, e1.failed, e1.attempt_errors),
            (e0.calls, e0.failed, 0)
        );
        assert_eq!(after.nodes, before.nodes);
        // The caller's reaction is learned: it fails with payment, and does not retry.
        assert_eq!(e0.p_propagate.evidence, 0);
        assert_eq!(e1.p_propagate.evidence, 20);
        assert!(e1.p_propagate.interval.mean > 0.9, "{:?}", e1.p_propagate);
        assert_eq!((e0.retries, e1.retries), (None, Some(0)));
    }

    #[test]
    fn a_fallback_is_learned_as_survival_and_merging_is_order_free() {
        let base = traces(50, false, false, 0);
        let ev = base.evidence_under_fault(&traces(20, true, true, 0), &scope());
        let mut refined = base.clone();
        refined.merge(&ev.model);
        let view = refined.view();
        let p = &view
            .edge("frontend GET /", "payment Charge")
            .unwrap()
            .p_propagate;
        assert!(p.interval.hi < 0.15, "{p:?}");
        // Two experiments' evidence in either order: the same model.
        let ev2 = base.evidence_under_fault(&traces(5, true, false, 0), &scope());
        let (mut ab, mut ba) = (base.clone(), base.clone());
        ab.merge(&ev.model);
        ab.merge(&ev2.model);
        ba.merge(&ev2.model);
        ba.merge(&ev.model);
        assert_eq!(ab, ba);
    }

    #[test]
    fn a_slowed_target_does_not_change_learned_latency() {
        let base = traces(50, false, false, 0);
        let ev = base.evidence_under_fault(&traces(20, false, false, 500), &scope());
        let mut refined = base.clone();
        refined.merge(&ev.model);
        assert_eq!(refined.view().nodes, base.view().nodes);
        let (e0, e1) = (
            base.view()
                .edge("frontend GET /", "payment Charge")
                .unwrap()
                .clone(),
            refined
                .view()
                .edge("frontend GET /", "payment Charge")
                .unwrap()
                .clone(),
        );
        assert_eq!(e0.duration, e1.duration);
        assert_eq!(ev.failed_into_target, 0);
    }

    #[test]
    fn the_neighbourhood_holds_the_target_and_its_callers() {
        let mut m = traces(10, false, false, 0);
        m.merge(&traces(4, true, false, 0));
        let n = m.neighbourhood(&scope());
        let ids: Vec<&str> = n.operations.iter().map(|o| o.id.as_str()).collect();
        assert_eq!(ids, ["frontend GET /", "payment Charge"]);
        // The refused calls are placed on payment, so they are part of it.
        assert_eq!((n.calls.len(), n.unarrived.len()), (1, 1));
        let other = FaultScope {
            callees: ["nothing".to_string()].into(),
            callers: None,
        };
        assert!(m.neighbourhood(&other).calls.is_empty());
    }

    #[test]
    fn calls_seen_only_under_the_fault_are_reported_not_added() {
        let base = traces(10, false, false, 0);
        let mut outcome = traces(5, true, false, 0);
        // A fallback call to a service the base never saw.
        let mut t = Trace {
            id: 99,
            spans: Vec::new(),
        };
        t.span(
            1,
            None,
            "frontend",
            "GET /",
            SpanKind::Server,
            (0, 50),
            false,
            None,
        );
        t.span(
            2,
            Some(1),
            "frontend",
            "quote",
            SpanKind::Client,
            (5, 40),
            false,
            Some("backup"),
        );
        t.span(
            3,
            Some(2),
            "backup",
            "Quote",
            SpanKind::Server,
            (6, 39),
            false,
            None,
        );
        let mut b = ModelBuilder::default();
        let mut batch = SpanBatch::new();
        for s in &t.spans {
            batch.push_owned(s);
        }
        b.add_batch(&batch);
        outcome.merge(&b.finish());
        let ev = base.evidence_under_fault(&outcome, &scope());
        assert_eq!(ev.new_operations, vec!["backup Quote".to_string()]);
        assert_eq!(
            ev.new_calls,
            vec![("frontend GET /".to_string(), "backup Quote".to_string())]
        );
        assert!(ev.model.calls.iter().all(|c| c.to != "backup Quote"));
    }
}
