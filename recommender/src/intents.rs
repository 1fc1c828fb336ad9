//! Intents: the hypotheses a team holds, each falsifiable, in a TOML file.
//!
//! ```toml
//! [[intent]]
//! id = "checkout-survives-shipping-outage"
//! belief = "Checkout still succeeds when shipping quotes fail: we fall back to a flat rate."
//! fault = "shipping:down"            # or a family: "*:latency=+500ms" with within = "<endpoint>"
//! expect = { endpoint = "frontend POST /checkout", error_rate_below = 0.01, p99_ms_below = 1500 }
//! priority = 2                       # optional, default 1
//! ```
//!
//! A family (`*:KIND` with `within = "<endpoint>"`) means that fault on every service and virtual
//! node the endpoint depends on (reachable through its calls, its own service excluded); with
//! `kind = "database"` (or `queue`, `external`) it means every uninstrumented peer of that kind
//! (what its calls' attributes say: `db.system`, `messaging.*`, neither), among the endpoint's
//! dependencies when `within` is given too. The intent holds when it holds for each of them. Unknown fields are errors; so are unknown
//! endpoints and targets, with the closest names suggested.

use std::collections::{BTreeSet, VecDeque};
use std::path::Path;

use augur_model::View;
use augur_simulator::FaultSpec;
use serde::Deserialize;

use crate::RecError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct IntentFile {
    #[serde(default)]
    intent: Vec<RawIntent>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIntent {
    id: String,
    belief: String,
    fault: String,
    within: Option<String>,
    kind: Option<String>,
    expect: Expect,
    priority: Option<u32>,
}

/// What must hold under the fault.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The endpoint (`"<service> <operation>"`).
    pub endpoint: String,
    /// Its error rate stays below this.
    pub error_rate_below: Option<f64>,
    /// Its 99th percentile latency stays below this, milliseconds.
    pub p99_ms_below: Option<f64>,
}

impl Expect {
    /// Whether an outcome (error rate, p99 ms) meets the expectation.
    pub fn holds(&self, error_rate: f64, p99_ms: f64) -> bool {
        self.error_rate_below.is_none_or(|b| error_rate < b)
            && self.p99_ms_below.is_none_or(|b| p99_ms < b)
    }
}

/// An intent checked against a model, its family expanded.
#[derive(Debug, Clone, PartialEq)]
pub struct Intent {
    /// Its id.
    pub id: String,
    /// What the team believes, in words.
    pub belief: String,
    /// The fault as written.
    pub fault: String,
    /// The faults it is about (one, or a family's members).
    pub faults: Vec<FaultSpec>,
    /// What must hold.
    pub expect: Expect,
    /// Its weight (default 1).
    pub priority: u32,
}

/// Reads and validates an intents file against a model.
pub fn load(path: &Path, view: &View) -> Result<Vec<Intent>, RecError> {
    let text = std::fs::read_to_string(path).map_err(|source| RecError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text, view).map_err(|reason| RecError::Intents {
        path: path.to_path_buf(),
        reason,
    })
}

/// Checks what can be checked of intents TOML without a model (its syntax and fields, every
/// fault spec): a server can refuse a bad file at start instead of at its first query.
pub fn check_syntax(text: &str) -> Result<(), String> {
    let file: IntentFile = toml::from_str(text).map_err(|e| e.to_string())?;
    for raw in &file.intent {
        raw.fault
            .parse::<FaultSpec>()
            .map_err(|e| format!("intent `{}`: {e}", raw.id))?;
    }
    Ok(())
}

/// Parses and validates intents TOML; the reason when it is not valid.
pub fn parse(text: &str, view: &View) -> Result<Vec<Intent>, String> {
    let file: IntentFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for raw in file.intent {
        let ctx = |m: String| format!("intent `{}`: {m}", raw.id);
        if raw.id.trim().is_empty() {
            return Err("an intent has an empty id".into());
        }
        if !seen.insert(raw.id.clone()) {
            return Err(format!("two intents have the id `{}`", raw.id));
        }
        let e = &raw.expect;
        if e.error_rate_below.is_none() && e.p99_ms_below.is_none() {
            return Err(ctx(
                "expect needs error_rate_below or p99_ms_below (or both)".into(),
            ));
        }
        if e.error_rate_below
            .is_some_and(|b| !(0.0..=1.0).contains(&b))
        {
            return Err(ctx("error_rate_below is a rate between 0 and 1".into()));
        }
        if e.p99_ms_below.is_some_and(|b| b.is_nan() || b <= 0.0) {
            return Err(ctx(
                "p99_ms_below is a positive number of milliseconds".into()
            ));
        }
        endpoint(view, &e.endpoint).map_err(ctx)?;
        let spec: FaultSpec = raw.fault.parse().map_err(|e| ctx(format!("{e}")))?;
        let faults = if spec.target == "*" {
            if raw.within.is_none() && raw.kind.is_none() {
                return Err(ctx(
                    "a family fault (`*:...`) needs within = \"<endpoint>\", kind = \"database|queue|external\", or both".into(),
                ));
            }
            let mut targets: Vec<String> = match &raw.within {
                Some(within) => dependencies(view, endpoint(view, within).map_err(ctx)?),
                None => view.nodes.iter().map(|n| n.service.clone()).collect(),
            };
            if let Some(kind) = &raw.kind {
                if !PEER_KINDS.contains(&kind.as_str()) {
                    return Err(ctx(format!(
                        "kind `{kind}` is not one of {}",
                        PEER_KINDS.join(", ")
                    )));
                }
                targets.retain(|t| {
                    view.nodes
                        .iter()
                        .any(|n| n.is_virtual && &n.id == t && n.peer_kind.as_deref() == Some(kind))
                });
            }
            targets.sort();
            targets.dedup();
            if targets.is_empty() {
                return Err(ctx(format!(
                    "the family `{}` names no target in this model",
                    raw.fault
                )));
            }
            targets
                .into_iter()
                .map(|target| FaultSpec {
                    target,
                    kind: spec.kind,
                })
                .collect()
        } else {
            if raw.within.is_some() || raw.kind.is_some() {
                return Err(ctx(
                    "within and kind are only for family faults (`*:...`)".into()
                ));
            }
            spec.resolve(view).map_err(|e| ctx(e.to_string()))?;
            vec![spec]
        };
        out.push(Intent {
            id: raw.id,
            belief: raw.belief,
            fault: raw.fault,
            faults,
            expect: raw.expect,
            priority: raw.priority.unwrap_or(1),
        });
    }
    Ok(out)
}

/// The kinds of uninstrumented peer a family may name.
pub const PEER_KINDS: [&str; 3] = ["database", "queue", "external"];

/// The endpoint node with this id, or an error suggesting the closest endpoints.
fn endpoint(view: &View, id: &str) -> Result<usize, String> {
    match view.nodes.iter().position(|n| n.id == id && n.endpoint) {
        Some(i) => Ok(i),
        None => {
            let mut names: Vec<&str> = view
                .nodes
                .iter()
                .filter(|n| n.endpoint)
                .map(|n| n.id.as_str())
                .collect();
            names.sort_by_key(|n| (strsim(n, id), *n));
            let more = names.len().saturating_sub(8);
            names.truncate(8);
            Err(format!(
                "`{id}` is not an endpoint of the model; endpoints, closest first: {}{}",
                names.join(", "),
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ))
        }
    }
}

/// A crude distance for ordering suggestions: characters not shared.
fn strsim(a: &str, b: &str) -> usize {
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    a.chars().filter(|c| !b.contains(*c)).count() + b.chars().filter(|c| !a.contains(*c)).count()
}

/// Services (and virtual nodes) the endpoint depends on, its own service excluded.
fn dependencies(view: &View, root: usize) -> Vec<String> {
    let own = &view.nodes[root].service;
    let mut seen = BTreeSet::from([root]);
    let mut queue = VecDeque::from([root]);
    let mut services = BTreeSet::new();
    while let Some(n) = queue.pop_front() {
        let id = &view.nodes[n].id;
        for e in view.edges.iter().filter(|e| &e.from == id) {
            if let Some(j) = view.nodes.iter().position(|x| x.id == e.to) {
                if seen.insert(j) {
                    queue.push_back(j);
                    if &view.nodes[j].service != own {
                        services.insert(view.nodes[j].service.clone());
                    }
                }
            }
        }
    }
    services.into_iter().collect()
}
