//! The learned model as data: nodes, edges and their statistics; its versioned file; and the
//! graph view other tools read (`augur graph --format json`).

use std::fmt::Write as _;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::sketch::LogSketch;
use crate::ModelError;

/// The model file's schema version; a file with another version is refused, not guessed at.
pub const SCHEMA_VERSION: u32 = 1;

/// What the traces looked like: how many, and what was wrong with them. Every count is of
/// something augur handled in a stated way rather than guessed around.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TraceQuality {
    /// Spans folded into the model.
    pub spans: u64,
    /// Traces (a trace split by the window counts once per part).
    pub traces: u64,
    /// Spans whose parent id is not in their trace: kept as entries of their service, never
    /// promoted to endpoints.
    pub missing_parents: u64,
    /// Second reports of a span (same id, name, service and times): dropped.
    pub duplicate_spans: u64,
    /// Span ids used by two different spans of a trace: children attach to the first.
    pub conflicting_span_ids: u64,
    /// Spans that end before they start: their duration counts as 0.
    pub end_before_start: u64,
    /// Entry spans that start before their parent in another service (clocks disagree): kept,
    /// with the caller's view of the call's duration where there is a client span.
    pub clock_skew: u64,
    /// Parent links that formed a cycle: cut at the earliest span.
    pub cycles: u64,
    /// CLIENT/PRODUCER spans that reached nothing instrumented and name no peer: no edge.
    pub clients_without_peer: u64,
    /// Client calls to an instrumented service with no server span below them (refused or cut
    /// before the server saw them): edges to that service.
    pub calls_to_instrumented_without_server: u64,
    /// Traces finished early because too many spans were buffered (raise `--trace-window`).
    pub traces_cut_by_window: u64,
}

/// An operation: a service's entry point, or an uninstrumented peer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Node {
    /// `"<service> <operation>"`, or the peer's name for a virtual node.
    pub id: String,
    /// The service (for a virtual node, the peer's name).
    pub service: String,
    /// The entry span name (for a virtual node, the peer's name).
    pub operation: String,
    /// An uninstrumented peer seen only through client spans.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// A user-facing endpoint: seen as a trace root.
    pub endpoint: bool,
    /// Entry spans of this operation (for a virtual node: calls to it).
    pub invocations: u64,
    /// Of those, with error status.
    pub errors: u64,
    /// Of those, trace roots.
    pub roots: u64,
    /// Entry span durations, nanoseconds.
    pub duration_ns: LogSketch,
}

/// A call site: caller operation → callee operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// Caller node id.
    pub from: String,
    /// Callee node id.
    pub to: String,
    /// Calls observed (each retry attempt is a call).
    pub calls: u64,
    /// Calls that failed, as the caller saw them.
    pub errors: u64,
    /// Call durations as the caller saw them, nanoseconds.
    pub duration_ns: LogSketch,
}

/// The learned model. Sufficient statistics only (counts and sketches).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// [`SCHEMA_VERSION`] of the file.
    pub schema_version: u32,
    /// What the traces looked like.
    pub quality: TraceQuality,
    /// Operations, sorted by id.
    pub nodes: Vec<Node>,
    /// Call edges, sorted by (from, to).
    pub edges: Vec<Edge>,
}

/// A node of the graph contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphNode {
    /// Node id.
    pub id: String,
    /// Service.
    pub service: String,
    /// Operation.
    pub operation: String,
    /// Uninstrumented peer.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// User-facing endpoint.
    pub endpoint: bool,
}

/// An edge of the graph contract.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GraphEdge {
    /// Caller node id.
    pub from: String,
    /// Callee node id.
    pub to: String,
    /// Calls.
    pub calls: u64,
    /// Failed calls.
    pub errors: u64,
    /// Median call duration, milliseconds (within 1%).
    pub p50_ms: f64,
    /// 99th percentile call duration, milliseconds (within 1%).
    pub p99_ms: f64,
}

/// The call graph: the JSON contract of `augur graph --format json`,
/// `{"nodes":[{"id","service","operation","virtual","endpoint"}],"edges":[{"from","to","calls","errors","p50_ms","p99_ms"}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    /// Nodes, sorted by id.
    pub nodes: Vec<GraphNode>,
    /// Edges, sorted by (from, to).
    pub edges: Vec<GraphEdge>,
}

fn ms(sketch: &LogSketch, q: f64) -> f64 {
    let v = sketch.quantile(q).unwrap_or(0.0) / 1e6;
    // Three decimals (a microsecond) is all the precision a 1% sketch carries at these scales.
    (v * 1000.0).round() / 1000.0
}

impl Model {
    /// Reads a model file.
    pub fn load(path: &Path) -> Result<Model, ModelError> {
        let text = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&text).map_err(|reason| ModelError::Format {
            path: path.to_path_buf(),
            reason,
        })
    }

    /// Parses a model from its JSON form; the reason when it is not one.
    pub fn from_json(text: &[u8]) -> Result<Model, String> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: Option<u32>,
        }
        let v: Version = serde_json::from_slice(text)
            .map_err(|e| format!("not an augur model file (JSON): {e}"))?;
        match v.schema_version {
            Some(SCHEMA_VERSION) => {}
            Some(other) => {
                return Err(format!(
                    "model schema version {other}; this augur reads version {SCHEMA_VERSION}"
                ))
            }
            None => return Err("not an augur model file: no schema_version".into()),
        }
        serde_json::from_slice(text).map_err(|e| format!("malformed model: {e}"))
    }

    /// Writes the model file (atomically: a temporary file renamed into place).
    pub fn save(&self, path: &Path) -> Result<(), ModelError> {
        let io = |source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        };
        let text = serde_json::to_vec(self).map_err(|e| ModelError::Format {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let tmp = path.with_extension("augur-tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// Distinct instrumented services.
    pub fn services(&self) -> usize {
        let mut s: Vec<&str> = self
            .nodes
            .iter()
            .filter(|n| !n.is_virtual)
            .map(|n| n.service.as_str())
            .collect();
        s.sort_unstable();
        s.dedup();
        s.len()
    }

    /// The call graph view.
    pub fn graph(&self) -> Graph {
        Graph {
            nodes: self
                .nodes
                .iter()
                .map(|n| GraphNode {
                    id: n.id.clone(),
                    service: n.service.clone(),
                    operation: n.operation.clone(),
                    is_virtual: n.is_virtual,
                    endpoint: n.endpoint,
                })
                .collect(),
            edges: self
                .edges
                .iter()
                .map(|e| GraphEdge {
                    from: e.from.clone(),
                    to: e.to.clone(),
                    calls: e.calls,
                    errors: e.errors,
                    p50_ms: ms(&e.duration_ns, 0.5),
                    p99_ms: ms(&e.duration_ns, 0.99),
                })
                .collect(),
        }
    }
}

impl Graph {
    /// Graphviz DOT: endpoints bold, virtual nodes as cylinders, edges labelled with calls,
    /// errors and p99.
    pub fn to_dot(&self) -> String {
        let q = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        let mut out = String::from("digraph augur {\n  rankdir=LR;\n  node [shape=box];\n");
        for n in &self.nodes {
            let mut attrs = vec![format!("label={}", q(&n.id.replacen(' ', "\n", 1)))];
            if n.is_virtual {
                attrs.push("shape=cylinder".into());
            }
            if n.endpoint {
                attrs.push("style=bold".into());
            }
            let _ = writeln!(out, "  {} [{}];", q(&n.id), attrs.join(", "));
        }
        for e in &self.edges {
            let label = format!("{} calls, {} err, p99 {} ms", e.calls, e.errors, e.p99_ms);
            let _ = writeln!(
                out,
                "  {} -> {} [label={}];",
                q(&e.from),
                q(&e.to),
                q(&label)
            );
        }
        out.push_str("}\n");
        out
    }

    /// A plain-text table for people: nodes, then edges.
    pub fn to_table(&self) -> String {
        let mut out = String::new();
        let w = self
            .nodes
            .iter()
            .map(|n| n.id.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = writeln!(out, "{:<w$}  KIND", "NODE");
        for n in &self.nodes {
            let kind = match (n.is_virtual, n.endpoint) {
                (true, _) => "virtual",
                (false, true) => "endpoint",
                (false, false) => "operation",
            };
            let _ = writeln!(out, "{:<w$}  {kind}", n.id);
        }
        out.push('\n');
        let wf = self
            .edges
            .iter()
            .map(|e| e.from.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let wt = self
            .edges
            .iter()
            .map(|e| e.to.len())
            .max()
            .unwrap_or(2)
            .max(2);
        let _ = writeln!(
            out,
            "{:<wf$}  {:<wt$}  {:>10}  {:>8}  {:>10}  {:>10}",
            "FROM", "TO", "CALLS", "ERRORS", "P50 MS", "P99 MS"
        );
        for e in &self.edges {
            let _ = writeln!(
                out,
                "{:<wf$}  {:<wt$}  {:>10}  {:>8}  {:>10.3}  {:>10.3}",
                e.from, e.to, e.calls, e.errors, e.p50_ms, e.p99_ms
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Model {
        let mut d = LogSketch::new();
        d.add(2e6);
        Model {
            schema_version: SCHEMA_VERSION,
            quality: TraceQuality::default(),
            nodes: vec![
                Node {
                    id: "a GET /".into(),
                    service: "a".into(),
                    operation: "GET /".into(),
                    is_virtual: false,
                    endpoint: true,
                    invocations: 1,
                    errors: 0,
                    roots: 1,
                    duration_ns: d.clone(),
                },
                Node {
                    id: "pg".into(),
                    service: "pg".into(),
                    operation: "pg".into(),
                    is_virtual: true,
                    endpoint: false,
                    invocations: 1,
                    errors: 0,
                    roots: 0,
                    duration_ns: d.clone(),
                },
            ],
            edges: vec![Edge {
                from: "a GET /".into(),
                to: "pg".into(),
                calls: 1,
                errors: 0,
                duration_ns: d,
            }],
        }
    }

    #[test]
    fn graph_json_has_the_contract_shape() {
        let g = serde_json::to_value(tiny().graph()).unwrap();
        let node = &g["nodes"][1];
        let keys: Vec<&str> = node
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, ["endpoint", "id", "operation", "service", "virtual"]);
        assert_eq!(node["virtual"], true);
        let edge = &g["edges"][0];
        let keys: Vec<&str> = edge
            .as_object()
            .unwrap()
            .keys()
            .map(|k| k.as_str())
            .collect();
        assert_eq!(keys, ["calls", "errors", "from", "p50_ms", "p99_ms", "to"]);
        assert!((edge["p50_ms"].as_f64().unwrap() - 2.0).abs() < 0.02);
    }

    #[test]
    fn model_file_round_trips_and_refuses_other_versions() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        let m = tiny();
        m.save(&path).unwrap();
        assert_eq!(Model::load(&path).unwrap(), m);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"schema_version\":1", "\"schema_version\":99");
        std::fs::write(&path, text).unwrap();
        let err = Model::load(&path).unwrap_err().to_string();
        assert!(err.contains("version 99"), "{err}");
        std::fs::write(&path, "garbage").unwrap();
        assert!(Model::load(&path).is_err());
    }

    #[test]
    fn dot_and_table_name_every_node() {
        let g = tiny().graph();
        let dot = g.to_dot();
        assert!(dot.starts_with("digraph"));
        assert!(dot.contains("\"a GET /\" -> \"pg\""));
        assert!(dot.contains("shape=cylinder"));
        let table = g.to_table();
        assert!(table.contains("virtual") && table.contains("endpoint"));
    }
}
