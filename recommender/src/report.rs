//! The nightly report: one self-contained HTML page (and its JSON) for the SRE team.
//!
//! What it holds, top to bottom:
//! - the model in numbers (spans, traces, services, operations, endpoints, call sites);
//! - **the experiments to run next**: value, safety, traffic share, harm, why, and the predicted
//!   blast radius (the endpoints whose error rate the fault would raise);
//! - **the dependency graph** as SVG, laid out in layers from the endpoints, with each
//!   endpoint's **critical path** highlighted: from the endpoint, the call that takes most of its
//!   time (calls per invocation × median duration, messages excluded), then that callee's, and so
//!   on; a dashed edge is asynchronous, and every node and edge has its learned behaviour as a
//!   tooltip;
//! - **intents** with P(holds) (for a family, the least P among its faults: an upper bound on
//!   them all holding) and their last verdict from the ledger;
//! - **what the last experiments taught** (the ledger's newest entries) and a
//!   **predicted-vs-observed** plot of their endpoints' error rates;
//! - **uncertainty per call site**: the P(propagate) intervals of the most uncertain ones;
//! - **drift** since a previous model, when one is given.
//!
//! The page fetches nothing: styles are inline, plots are inline SVG, there is no script.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use augur_model::{Drift, Graph, Mode, Model, View};
use augur_simulator::Band;
use serde::{Deserialize, Serialize};

use crate::intents::Intent;
use crate::ledger::LedgerEntry;
use crate::outcome::Surprise;
use crate::recommend::{Experiment, Recommendation};

/// How many experiments the report shows.
pub const TOP_EXPERIMENTS: usize = 10;
/// How many call sites the uncertainty plot shows.
pub const UNCERTAIN_EDGES: usize = 15;
/// How many ledger entries the report shows.
pub const LESSONS: usize = 5;

/// The model in numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSummary {
    /// The model file.
    pub path: String,
    /// Spans learned from.
    pub spans: u64,
    /// Traces.
    pub traces: u64,
    /// Instrumented services.
    pub services: usize,
    /// Operations.
    pub operations: usize,
    /// Endpoints.
    pub endpoints: usize,
    /// Virtual nodes (uninstrumented peers).
    pub virtual_nodes: usize,
    /// Call sites.
    pub call_sites: usize,
    /// First span, UTC.
    pub first: Option<String>,
    /// Last span, UTC.
    pub last: Option<String>,
}

/// An endpoint's critical path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CriticalPath {
    /// The endpoint.
    pub endpoint: String,
    /// Node ids from the endpoint down.
    pub nodes: Vec<String>,
    /// The time the path's first call takes, milliseconds (calls per invocation × median).
    pub path_ms: f64,
    /// The endpoint's median duration, milliseconds.
    pub endpoint_p50_ms: f64,
}

/// An endpoint an experiment would hurt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Blast {
    /// Endpoint id.
    pub endpoint: String,
    /// Error rate now.
    pub baseline: f64,
    /// Predicted under the fault.
    pub predicted: Band,
}

/// An experiment as the report shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportExperiment {
    /// As in `augur recommend --json`.
    pub experiment: Experiment,
    /// Endpoints whose predicted error rate rises by a percentage point or more.
    pub blast_radius: Vec<Blast>,
}

/// An intent and what is known of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntentStatus {
    /// Its id.
    pub id: String,
    /// What the team believes.
    pub belief: String,
    /// The fault as written.
    pub fault: String,
    /// P(holds) predicted now.
    pub p_holds: Option<f64>,
    /// The last verdict (`holds`, `falsified`, `inconclusive`), from the ledger.
    pub last_verdict: Option<String>,
    /// When.
    pub last_tested: Option<String>,
    /// Its evidence.
    pub evidence: Option<String>,
}

/// One experiment from the ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Lesson {
    /// When it was recorded.
    pub recorded_at: String,
    /// The fault.
    pub fault: String,
    /// Bits learned.
    pub learned_bits: f64,
    /// Endpoints where the prediction held.
    pub held: usize,
    /// Endpoints judged.
    pub judged: usize,
    /// The biggest surprises.
    pub surprises: Vec<Surprise>,
    /// Intents' verdicts `(id, verdict)`.
    pub verdicts: Vec<(String, String)>,
}

/// One point of the predicted-vs-observed plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Observation {
    /// The experiment's fault.
    pub fault: String,
    /// The endpoint.
    pub endpoint: String,
    /// Observed error rate.
    pub observed: f64,
    /// Predicted error rate.
    pub predicted: Band,
}

/// A call site's P(propagate) interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeUncertainty {
    /// Caller.
    pub from: String,
    /// Callee.
    pub to: String,
    /// Mean.
    pub mean: f64,
    /// Lower bound.
    pub lo: f64,
    /// Upper bound.
    pub hi: f64,
    /// Failures seen whose caller's reaction was clear.
    pub evidence: u64,
}

/// The report (`report.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// When it was made, UTC.
    pub generated_at: String,
    /// The model in numbers.
    pub model: ModelSummary,
    /// The experiments to run next, best first.
    pub experiments: Vec<ReportExperiment>,
    /// The call graph (the `augur graph --format json` contract).
    pub graph: Graph,
    /// Each endpoint's critical path.
    pub critical_paths: Vec<CriticalPath>,
    /// Intents.
    pub intents: Vec<IntentStatus>,
    /// What the last experiments taught, newest first.
    pub lessons: Vec<Lesson>,
    /// Their endpoints, predicted against observed.
    pub predicted_vs_observed: Vec<Observation>,
    /// The most uncertain call sites.
    pub uncertain_edges: Vec<EdgeUncertainty>,
    /// Drift since the previous model (none: no previous model given).
    pub drift: Option<Drift>,
}

/// What the report is made from.
pub struct Inputs<'a> {
    /// The model file's name, as shown.
    pub path: &'a str,
    /// The model.
    pub model: &'a Model,
    /// Its view.
    pub view: &'a View,
    /// Every ranked candidate (not only the top: intents' odds are looked up in it).
    pub recommendation: &'a Recommendation,
    /// The intents.
    pub intents: &'a [Intent],
    /// The ledger, oldest first.
    pub ledger: &'a [LedgerEntry],
    /// The previous model's view, for drift.
    pub previous: Option<&'a View>,
    /// Now, UTC text.
    pub generated_at: String,
    /// UTC text of a time in nanoseconds.
    pub utc: &'a dyn Fn(i64) -> String,
}

/// Each endpoint's critical path (see the module documentation).
pub fn critical_paths(view: &View) -> Vec<CriticalPath> {
    let mut out = Vec::new();
    for n in view.nodes.iter().filter(|n| n.endpoint) {
        let mut nodes = vec![n.id.clone()];
        let mut seen = BTreeSet::from([n.id.clone()]);
        let mut at = n.id.clone();
        let mut first_ms = 0.0;
        loop {
            let best = view
                .edges
                .iter()
                .filter(|e| e.from == at && e.mode != Mode::Asynchronous)
                .map(|e| (e.mean_calls() * e.duration.p50_ms, e))
                .filter(|(t, _)| *t > 0.0)
                .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.to.cmp(&a.1.to)));
            let Some((t, e)) = best else { break };
            if !seen.insert(e.to.clone()) {
                break;
            }
            if nodes.len() == 1 {
                first_ms = t;
            }
            nodes.push(e.to.clone());
            at = e.to.clone();
        }
        out.push(CriticalPath {
            endpoint: n.id.clone(),
            nodes,
            path_ms: (first_ms * 1000.0).round() / 1000.0,
            endpoint_p50_ms: n.duration.p50_ms,
        });
    }
    out
}

/// Builds the report.
pub fn build(i: &Inputs<'_>) -> Report {
    let v = i.view;
    let model = ModelSummary {
        path: i.path.to_string(),
        spans: v.quality.spans,
        traces: v.quality.traces,
        services: i.model.services(),
        operations: i.model.operations.len(),
        endpoints: v.nodes.iter().filter(|n| n.endpoint).count(),
        virtual_nodes: v.nodes.iter().filter(|n| n.is_virtual).count(),
        call_sites: v.edges.len(),
        first: v.window.map(|w| (i.utc)(w.first_ns)),
        last: v.window.map(|w| (i.utc)(w.last_ns)),
    };
    // To run next: the safe ones by value, then those over the budget (marked), by value.
    let mut ranked: Vec<&Experiment> = i.recommendation.experiments.iter().collect();
    ranked.sort_by_key(|e| !e.safe);
    let experiments = ranked
        .into_iter()
        .take(TOP_EXPERIMENTS)
        .map(|e| {
            let mut blast: Vec<Blast> = e
                .predicted
                .endpoints
                .iter()
                .filter(|p| p.predicted.error_rate.mean - p.baseline.error_rate >= 0.01)
                .map(|p| Blast {
                    endpoint: p.endpoint.clone(),
                    baseline: p.baseline.error_rate,
                    predicted: p.predicted.error_rate,
                })
                .collect();
            blast.sort_by(|a, b| {
                (b.predicted.mean - b.baseline)
                    .total_cmp(&(a.predicted.mean - a.baseline))
                    .then_with(|| a.endpoint.cmp(&b.endpoint))
            });
            ReportExperiment {
                experiment: e.clone(),
                blast_radius: blast,
            }
        })
        .collect();

    let mut last_verdict: BTreeMap<&str, (&LedgerEntry, &crate::outcome::Verdict)> =
        BTreeMap::new();
    for e in i.ledger {
        for verdict in &e.outcome.intents {
            last_verdict.insert(verdict.id.as_str(), (e, verdict));
        }
    }
    let intents = i
        .intents
        .iter()
        .map(|intent| {
            let odds: Vec<f64> = intent
                .faults
                .iter()
                .filter_map(|f| {
                    let spec = f.to_string();
                    let e = i
                        .recommendation
                        .experiments
                        .iter()
                        .find(|e| e.fault == spec)?;
                    e.intents
                        .iter()
                        .find(|o| o.id == intent.id)
                        .map(|o| o.p_holds)
                })
                .collect();
            let last = last_verdict.get(intent.id.as_str());
            IntentStatus {
                id: intent.id.clone(),
                belief: intent.belief.clone(),
                fault: intent.fault.clone(),
                p_holds: odds.iter().copied().reduce(f64::min),
                last_verdict: last.map(|(_, v)| v.verdict.clone()),
                last_tested: last.map(|(e, _)| e.recorded_at.clone()),
                evidence: last.map(|(_, v)| v.evidence.clone()),
            }
        })
        .collect();

    let lessons = i
        .ledger
        .iter()
        .rev()
        .take(LESSONS)
        .map(|e| Lesson {
            recorded_at: e.recorded_at.clone(),
            fault: e.outcome.fault.clone(),
            learned_bits: e.outcome.learned_bits,
            held: e
                .outcome
                .endpoints
                .iter()
                .filter(|x| x.within == Some(true))
                .count(),
            judged: e
                .outcome
                .endpoints
                .iter()
                .filter(|x| x.within.is_some())
                .count(),
            surprises: e.outcome.surprises.iter().take(3).cloned().collect(),
            verdicts: e
                .outcome
                .intents
                .iter()
                .map(|v| (v.id.clone(), v.verdict.clone()))
                .collect(),
        })
        .collect();
    let predicted_vs_observed = i
        .ledger
        .iter()
        .flat_map(|e| {
            e.outcome.endpoints.iter().filter_map(|x| {
                Some(Observation {
                    fault: e.outcome.fault.clone(),
                    endpoint: x.endpoint.clone(),
                    observed: x.observed.as_ref()?.error_rate,
                    predicted: x.predicted.error_rate,
                })
            })
        })
        .collect();
    let mut uncertain: Vec<EdgeUncertainty> = v
        .edges
        .iter()
        .map(|e| {
            let p = &e.p_propagate;
            EdgeUncertainty {
                from: e.from.clone(),
                to: e.to.clone(),
                mean: p.interval.mean,
                lo: p.interval.lo,
                hi: p.interval.hi,
                evidence: p.evidence,
            }
        })
        .collect();
    uncertain.sort_by(|a, b| {
        (b.hi - b.lo)
            .total_cmp(&(a.hi - a.lo))
            .then_with(|| (&a.from, &a.to).cmp(&(&b.from, &b.to)))
    });
    uncertain.truncate(UNCERTAIN_EDGES);

    Report {
        generated_at: i.generated_at.clone(),
        model,
        experiments,
        graph: v.graph(),
        critical_paths: critical_paths(v),
        intents,
        lessons,
        predicted_vs_observed,
        uncertain_edges: uncertain,
        drift: i.previous.map(|old| augur_model::diff(old, v)),
    }
}

/// HTML-escapes text ([`augur_simulator::html_escape`]).
fn esc(s: &str) -> String {
    augur_simulator::html_escape(s)
}

fn pct(x: f64) -> String {
    format!("{:.1}%", x * 100.0)
}

/// A label cut to `n` characters.
fn short(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Layers (longest path from an endpoint, cycles cut) and order within each layer (barycentre
/// sweeps), for the graph's nodes.
fn layout(g: &Graph) -> BTreeMap<String, (usize, usize)> {
    let ids: Vec<&str> = g.nodes.iter().map(|n| n.id.as_str()).collect();
    let index: BTreeMap<&str, usize> = ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let n = ids.len();
    let mut out_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut in_edges: Vec<Vec<usize>> = vec![Vec::new(); n];
    for e in &g.edges {
        if let (Some(&a), Some(&b)) = (index.get(e.from.as_str()), index.get(e.to.as_str())) {
            if a != b {
                out_edges[a].push(b);
                in_edges[b].push(a);
            }
        }
    }
    // Depth-first from the endpoints (then from anything not reached), never through a node on
    // the current path: back edges of cycles are ignored for layering.
    let mut layer = vec![0usize; n];
    let mut placed = vec![false; n];
    let roots: Vec<usize> = g
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, x)| x.endpoint)
        .map(|(i, _)| i)
        .chain(0..n)
        .collect();
    for r in roots {
        if placed[r] {
            continue;
        }
        placed[r] = true;
        let mut stack: Vec<(usize, usize)> = vec![(r, 0)];
        let mut on_path = vec![false; n];
        on_path[r] = true;
        while let Some(&mut (u, ref mut k)) = stack.last_mut() {
            if let Some(&w) = out_edges[u].get(*k) {
                *k += 1;
                if on_path[w] || (placed[w] && layer[w] > layer[u]) {
                    continue;
                }
                layer[w] = layer[w].max(layer[u] + 1);
                placed[w] = true;
                on_path[w] = true;
                stack.push((w, 0));
            } else {
                on_path[u] = false;
                stack.pop();
            }
        }
    }
    let layers = layer.iter().copied().max().unwrap_or(0) + 1;
    let mut rows: Vec<Vec<usize>> = vec![Vec::new(); layers];
    for (i, &l) in layer.iter().enumerate() {
        rows[l].push(i);
    }
    let mut pos = vec![0.0f64; n];
    let set_pos = |rows: &Vec<Vec<usize>>, pos: &mut Vec<f64>| {
        for row in rows {
            for (k, &i) in row.iter().enumerate() {
                pos[i] = k as f64;
            }
        }
    };
    set_pos(&rows, &mut pos);
    for sweep in 0..4 {
        let order: Vec<usize> = if sweep % 2 == 0 {
            (1..layers).collect()
        } else {
            (0..layers.saturating_sub(1)).rev().collect()
        };
        for l in order {
            let neighbours = |i: usize| {
                if sweep % 2 == 0 {
                    &in_edges[i]
                } else {
                    &out_edges[i]
                }
            };
            let mut keyed: Vec<(f64, usize)> = rows[l]
                .iter()
                .map(|&i| {
                    let ns = neighbours(i);
                    let b = if ns.is_empty() {
                        pos[i]
                    } else {
                        ns.iter().map(|&j| pos[j]).sum::<f64>() / ns.len() as f64
                    };
                    (b, i)
                })
                .collect();
            keyed.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            rows[l] = keyed.into_iter().map(|(_, i)| i).collect();
            for (k, &i) in rows[l].iter().enumerate() {
                pos[i] = k as f64;
            }
        }
    }
    let ids = &ids;
    rows.iter()
        .enumerate()
        .flat_map(|(l, row)| {
            row.iter()
                .enumerate()
                .map(move |(k, &i)| (ids[i].to_string(), (l, k)))
        })
        .collect()
}

const NODE_W: f64 = 200.0;
const NODE_H: f64 = 30.0;
const COL_W: f64 = 270.0;
const ROW_H: f64 = 44.0;
const MARGIN: f64 = 20.0;

/// The dependency graph as SVG, critical paths highlighted.
fn graph_svg(r: &Report) -> String {
    let places = layout(&r.graph);
    let layers = places.values().map(|p| p.0).max().unwrap_or(0) + 1;
    let tallest = (0..layers)
        .map(|l| places.values().filter(|p| p.0 == l).count())
        .max()
        .unwrap_or(1);
    let width = MARGIN * 2.0 + (layers as f64 - 1.0) * COL_W + NODE_W;
    let height = MARGIN * 2.0 + tallest as f64 * ROW_H;
    let xy = |id: &str| {
        places
            .get(id)
            .map(|&(l, k)| (MARGIN + l as f64 * COL_W, MARGIN + k as f64 * ROW_H))
    };
    let critical: BTreeSet<(String, String)> = r
        .critical_paths
        .iter()
        .flat_map(|p| {
            p.nodes
                .windows(2)
                .map(|w| (w[0].clone(), w[1].clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let mut s = format!(
        "<svg id=\"graph\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"11\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#888\"/></marker>\
         <marker id=\"arrow-critical\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"6\" markerHeight=\"6\" orient=\"auto-start-reverse\"><path d=\"M 0 0 L 10 5 L 0 10 z\" fill=\"#d62728\"/></marker></defs>\n"
    );
    for e in &r.graph.edges {
        let (Some((x1, y1)), Some((x2, y2))) = (xy(&e.from), xy(&e.to)) else {
            continue;
        };
        let is_critical = critical.contains(&(e.from.clone(), e.to.clone()));
        let (ax, ay) = (x1 + NODE_W, y1 + NODE_H / 2.0);
        let (bx, by) = (x2, y2 + NODE_H / 2.0);
        let path = if bx > ax {
            let dx = (bx - ax) / 2.0;
            format!(
                "M {ax:.1} {ay:.1} C {:.1} {ay:.1}, {:.1} {by:.1}, {bx:.1} {by:.1}",
                ax + dx,
                bx - dx
            )
        } else {
            // A call back to an earlier layer (a cycle): around the top.
            let top = ay.min(by) - ROW_H * 0.6;
            format!(
                "M {ax:.1} {ay:.1} C {:.1} {top:.1}, {:.1} {top:.1}, {bx:.1} {by:.1}",
                ax + 60.0,
                bx - 60.0
            )
        };
        let class = if is_critical { "edge critical" } else { "edge" };
        let dash = if e.mode == Mode::Asynchronous {
            " stroke-dasharray=\"5 4\""
        } else {
            ""
        };
        let (stroke, width, marker) = if is_critical {
            ("#d62728", 2.5, "arrow-critical")
        } else {
            ("#999", 1.2, "arrow")
        };
        let _ = writeln!(
            s,
            "<path class=\"{class}\" d=\"{path}\" fill=\"none\" stroke=\"{stroke}\" stroke-width=\"{width}\"{dash} marker-end=\"url(#{marker})\"><title>{} → {}: {} calls, {} failed, p50 {} ms; {}</title></path>",
            esc(&e.from),
            esc(&e.to),
            e.calls,
            e.errors,
            e.p50_ms,
            esc(&e.behaviour())
        );
    }
    for n in &r.graph.nodes {
        let Some((x, y)) = xy(&n.id) else { continue };
        let (fill, stroke, dash, class) = if n.endpoint {
            ("#dbe9f6", "#2c6fb0", "", "node endpoint")
        } else if n.is_virtual {
            (
                "#f2f2f2",
                "#888",
                " stroke-dasharray=\"3 3\"",
                "node virtual",
            )
        } else {
            ("#ffffff", "#555", "", "node")
        };
        let kind = if n.endpoint {
            "endpoint"
        } else if n.is_virtual {
            "uninstrumented peer"
        } else {
            "operation"
        };
        let _ = writeln!(
            s,
            "<g class=\"{class}\"><title>{} ({kind})</title><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{NODE_W}\" height=\"{NODE_H}\" rx=\"5\" fill=\"{fill}\" stroke=\"{stroke}\"{dash}/><text x=\"{:.1}\" y=\"{:.1}\">{}</text></g>",
            esc(&n.id),
            x + 8.0,
            y + NODE_H / 2.0 + 4.0,
            esc(&short(&n.id, 32))
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Predicted (mean and 90% interval) against observed error rates of recorded experiments.
fn predicted_vs_observed_svg(points: &[Observation]) -> String {
    let (size, pad) = (380.0, 46.0);
    let pos = |v: f64| pad + v.clamp(0.0, 1.0) * (size - 2.0 * pad);
    let mut s = format!(
        "<svg id=\"predicted-vs-observed\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{size}\" height=\"{size}\" font-family=\"sans-serif\" font-size=\"10\">\n"
    );
    for k in 0..=4 {
        let v = k as f64 / 4.0;
        let (x, y) = (pos(v), size - pos(v));
        let _ = writeln!(
            s,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#eee\"/><line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#eee\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{:.0}%</text><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{:.0}%</text>",
            size - pad,
            pad,
            pad,
            size - pad,
            size - pad + 14.0,
            v * 100.0,
            pad - 4.0,
            y + 3.0,
            v * 100.0
        );
    }
    let _ = writeln!(
        s,
        "<line x1=\"{a:.1}\" y1=\"{b:.1}\" x2=\"{b:.1}\" y2=\"{a:.1}\" stroke=\"#888\" stroke-dasharray=\"4\"/>\
         <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">observed error rate</text>\
         <text transform=\"translate(12 {:.1}) rotate(-90)\" text-anchor=\"middle\" font-size=\"11\">predicted error rate (90% interval)</text>",
        size / 2.0,
        size - 8.0,
        size / 2.0,
        a = pad,
        b = size - pad
    );
    for p in points {
        let x = pos(p.observed);
        let _ = writeln!(
            s,
            "<g class=\"observation\"><title>{}: {}: observed {}, predicted {} [{}, {}]</title><line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#1f77b4\" stroke-opacity=\"0.5\"/><circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\" fill=\"#1f77b4\"/></g>",
            esc(&p.fault),
            esc(&p.endpoint),
            pct(p.observed),
            pct(p.predicted.mean),
            pct(p.predicted.lo),
            pct(p.predicted.hi),
            size - pos(p.predicted.lo),
            size - pos(p.predicted.hi),
            size - pos(p.predicted.mean)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// The P(propagate) intervals of the most uncertain call sites.
fn uncertainty_svg(edges: &[EdgeUncertainty]) -> String {
    let (label_w, bar_w, row) = (330.0, 300.0, 20.0);
    let height = 30.0 + row * edges.len() as f64;
    let width = label_w + bar_w + 90.0;
    let x = |v: f64| label_w + v.clamp(0.0, 1.0) * bar_w;
    let mut s = format!(
        "<svg id=\"uncertainty\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"10\">\n"
    );
    for k in 0..=4 {
        let v = k as f64 / 4.0;
        let _ = write!(
            s,
            "<line x1=\"{:.1}\" y1=\"14\" x2=\"{:.1}\" y2=\"{height}\" stroke=\"#eee\"/><text x=\"{:.1}\" y=\"10\" text-anchor=\"middle\">{v:.2}</text>",
            x(v),
            x(v),
            x(v)
        );
    }
    for (i, e) in edges.iter().enumerate() {
        let y = 24.0 + row * i as f64;
        let _ = writeln!(
            s,
            "<g class=\"uncertain-edge\"><title>{} → {}: P(propagate) {:.2} [{:.2}, {:.2}], {} failures seen</title><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text><line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ff7f0e\" stroke-width=\"6\" stroke-opacity=\"0.5\"/><circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"#d62728\"/><text x=\"{:.1}\" y=\"{:.1}\">{} seen</text></g>",
            esc(&e.from),
            esc(&e.to),
            e.mean,
            e.lo,
            e.hi,
            e.evidence,
            label_w - 8.0,
            y + 3.0,
            esc(&short(&format!("{} → {}", e.from, e.to), 56)),
            x(e.lo),
            x(e.hi),
            x(e.mean),
            label_w + bar_w + 8.0,
            y + 3.0,
            e.evidence
        );
    }
    s.push_str("</svg>\n");
    s
}

const STYLE: &str = "body{font-family:sans-serif;margin:24px;color:#222;max-width:1400px}\
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}\
table{border-collapse:collapse;font-size:13px}td,th{border-bottom:1px solid #eee;padding:4px 8px;text-align:left;vertical-align:top}\
th{background:#f6f6f6}.num{text-align:right}.unsafe{color:#b00}.holds{color:#1a7f37}.falsified{color:#b00}\
.inconclusive{color:#8a6d00}.why{color:#555;font-size:12px;max-width:620px}.scroll{overflow-x:auto;border:1px solid #eee}\
.summary span{display:inline-block;margin-right:18px}.note{color:#666;font-size:12px}";

impl Report {
    /// The self-contained HTML page.
    pub fn to_html(&self) -> String {
        let m = &self.model;
        let mut h = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>augur nightly report: {}</title><style>{STYLE}</style></head><body>\n\
             <h1>augur nightly report</h1>\n<p class=\"summary\" id=\"summary\"><span>model <b>{}</b></span><span>generated {}</span><span>{} spans in {} traces</span><span>{} services</span><span>{} operations</span><span>{} endpoints</span><span>{} uninstrumented peers</span><span>{} call sites</span><span>traces from {} to {}</span></p>\n",
            esc(&m.path),
            esc(&m.path),
            esc(&self.generated_at),
            m.spans,
            m.traces,
            m.services,
            m.operations,
            m.endpoints,
            m.virtual_nodes,
            m.call_sites,
            esc(m.first.as_deref().unwrap_or("-")),
            esc(m.last.as_deref().unwrap_or("-"))
        );

        h.push_str("<h2>Experiments to run next</h2>\n<table id=\"experiments\"><tr><th>#</th><th>fault</th><th class=\"num\">value (bits)</th><th>safe</th><th class=\"num\">traffic, for</th><th class=\"num\">harm (failed requests, 95% bound)</th><th>predicted blast radius (error rate of the requests under the fault: now → predicted [90%])</th><th>why</th></tr>\n");
        for (k, x) in self.experiments.iter().enumerate() {
            let e = &x.experiment;
            let blast = if x.blast_radius.is_empty() {
                "no endpoint's error rate rises by 1 point".to_string()
            } else {
                x.blast_radius
                    .iter()
                    .take(4)
                    .map(|b| {
                        format!(
                            "{}: {} → {} [{}, {}]",
                            esc(&b.endpoint),
                            pct(b.baseline),
                            pct(b.predicted.mean),
                            pct(b.predicted.lo),
                            pct(b.predicted.hi)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("<br>")
            };
            let _ = writeln!(
                h,
                "<tr class=\"experiment\"><td>{}</td><td><code>{}</code></td><td class=\"num\">{:.2}</td><td class=\"{}\">{}</td><td class=\"num\">{:.0}%, {:.0} s</td><td class=\"num\">{:.0} of {:.0}; p99 +{:.0} ms</td><td>{blast}</td><td class=\"why\">{}</td></tr>",
                k + 1,
                esc(&e.fault),
                e.value_bits,
                if e.safe { "safe" } else { "unsafe" },
                if e.safe { "yes" } else { "UNSAFE" },
                e.traffic_share * 100.0,
                e.harm.duration_s,
                e.harm.failed_requests_hi,
                e.harm.requests,
                e.harm.p99_increase_ms_hi,
                esc(&e.why)
            );
        }
        h.push_str("</table>\n");

        h.push_str("<h2>Dependency graph</h2>\n<p class=\"note\">Laid out from the endpoints (blue) down; grey dashed boxes are uninstrumented peers; dashed edges are messages. Red: each endpoint's critical path (the call taking most of its time, then that callee's). Hover for the learned behaviour.</p>\n<div class=\"scroll\">");
        h.push_str(&graph_svg(self));
        h.push_str("</div>\n<table id=\"critical-paths\"><tr><th>endpoint</th><th>critical path</th><th class=\"num\">first call (ms)</th><th class=\"num\">endpoint p50 (ms)</th></tr>\n");
        for p in &self.critical_paths {
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.1}</td><td class=\"num\">{:.1}</td></tr>",
                esc(&p.endpoint),
                p.nodes
                    .iter()
                    .skip(1)
                    .map(|n| esc(n))
                    .collect::<Vec<_>>()
                    .join(" → "),
                p.path_ms,
                p.endpoint_p50_ms
            );
        }
        h.push_str("</table>\n");

        h.push_str("<h2>Intents</h2>\n");
        if self.intents.is_empty() {
            h.push_str("<p class=\"note\" id=\"intents\">No intents file given (augur report --intents FILE; see docs/INTENTS.md).</p>\n");
        } else {
            h.push_str("<table id=\"intents\"><tr><th>intent</th><th>belief</th><th>fault</th><th class=\"num\">P(holds) now</th><th>last verdict</th><th>evidence</th></tr>\n");
            for i in &self.intents {
                let verdict = i.last_verdict.as_deref().map_or_else(
                    || "never tested".to_string(),
                    |v| {
                        format!(
                            "<span class=\"{v}\">{}</span> ({})",
                            esc(&v.to_uppercase()),
                            esc(i.last_tested.as_deref().unwrap_or(""))
                        )
                    },
                );
                let _ = writeln!(
                    h,
                    "<tr class=\"intent\"><td>{}</td><td>{}</td><td><code>{}</code></td><td class=\"num\">{}</td><td>{verdict}</td><td class=\"why\">{}</td></tr>",
                    esc(&i.id),
                    esc(&i.belief),
                    esc(&i.fault),
                    i.p_holds.map_or("-".to_string(), |p| format!("{p:.2}")),
                    esc(i.evidence.as_deref().unwrap_or(""))
                );
            }
            h.push_str("</table>\n");
        }

        h.push_str("<h2>What the last experiments taught</h2>\n");
        if self.lessons.is_empty() {
            h.push_str("<p class=\"note\" id=\"lessons\">No experiment recorded yet: after one, <code>augur outcome MODEL --fault SPEC --traces PATHS</code> records what it showed (docs/OUTCOMES.md).</p>\n");
        } else {
            h.push_str("<table id=\"lessons\"><tr><th>recorded</th><th>fault</th><th class=\"num\">learned (bits)</th><th>prediction held</th><th>what moved most</th><th>intents</th></tr>\n");
            for l in &self.lessons {
                let moved = l
                    .surprises
                    .iter()
                    .map(|s| {
                        format!(
                            "{} → {} {}: {} → {} ({:.2} bits)",
                            esc(&s.from),
                            esc(&s.to),
                            esc(&s.parameter),
                            esc(&s.before),
                            esc(&s.after),
                            s.bits
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("<br>");
                let verdicts = l
                    .verdicts
                    .iter()
                    .map(|(id, v)| {
                        format!(
                            "{}: <span class=\"{}\">{}</span>",
                            esc(id),
                            esc(v),
                            esc(&v.to_uppercase())
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("<br>");
                let _ = writeln!(
                    h,
                    "<tr class=\"lesson\"><td>{}</td><td><code>{}</code></td><td class=\"num\">{:.2}</td><td>{} of {} endpoints</td><td class=\"why\">{moved}</td><td>{verdicts}</td></tr>",
                    esc(&l.recorded_at),
                    esc(&l.fault),
                    l.learned_bits,
                    l.held,
                    l.judged
                );
            }
            h.push_str("</table>\n");
        }
        h.push_str("<h3>Predicted against observed</h3>\n");
        if self.predicted_vs_observed.is_empty() {
            h.push_str("<p class=\"note\">Nothing to plot until an experiment is recorded.</p>\n");
        } else {
            h.push_str("<p class=\"note\">Each point is an endpoint of a recorded experiment: its observed error rate against what the model predicted before the experiment (the bar is the 90% interval). On the diagonal, the prediction was right.</p>\n");
        }
        h.push_str(&predicted_vs_observed_svg(&self.predicted_vs_observed));

        h.push_str("<h2>Uncertainty per call site</h2>\n<p class=\"note\">P(the caller fails | the call failed), 90% intervals of the most uncertain call sites. A wide bar with few failures seen is behaviour normal traffic never showed: what experiments are for.</p>\n");
        h.push_str(&uncertainty_svg(&self.uncertain_edges));

        h.push_str("<h2>Drift since the previous model</h2>\n");
        match &self.drift {
            None => h.push_str("<p class=\"note\" id=\"drift\">No previous model given (augur report --previous OLD_MODEL).</p>\n"),
            Some(d) => {
                let _ = writeln!(h, "<pre id=\"drift\">{}</pre>", esc(&d.to_text()));
            }
        }
        h.push_str("<p class=\"note\">Made by augur. The JSON behind this page is report.json beside it.</p>\n</body></html>\n");
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped_and_cut() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(esc("a\0b\u{7f}c\td"), "a\u{FFFD}b\u{FFFD}c\td");
        assert_eq!(short("abcdef", 4), "abc…");
        assert_eq!(short("abc", 4), "abc");
    }

    #[test]
    fn layers_follow_calls_and_survive_cycles() {
        use augur_model::{GraphEdge, GraphNode, Interval};
        let node = |id: &str, endpoint: bool| GraphNode {
            id: id.into(),
            service: id.into(),
            operation: id.into(),
            is_virtual: false,
            endpoint,
        };
        let edge = |from: &str, to: &str| GraphEdge {
            from: from.into(),
            to: to.into(),
            calls: 1,
            errors: 0,
            p50_ms: 1.0,
            p99_ms: 1.0,
            mode: Mode::Sequential,
            retries: None,
            timeout_ms: None,
            p_propagate: Interval {
                mean: 0.5,
                lo: 0.1,
                hi: 0.9,
            },
        };
        let g = Graph {
            nodes: vec![
                node("a", true),
                node("b", false),
                node("c", false),
                node("d", false),
            ],
            edges: vec![
                edge("a", "b"),
                edge("b", "c"),
                edge("c", "b"),
                edge("a", "c"),
                edge("d", "d"),
            ],
        };
        let l = layout(&g);
        assert_eq!(l["a"].0, 0);
        assert_eq!(l["b"].0, 1);
        assert_eq!(l["c"].0, 2);
        // A node nothing reaches still gets a place; no two nodes share one.
        assert!(l.contains_key("d"));
        let places: BTreeSet<(usize, usize)> = l.values().copied().collect();
        assert_eq!(places.len(), 4);
    }
}
