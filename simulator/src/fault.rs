//! Fault specs: `TARGET:down`, `TARGET:error=RATE`, `TARGET:latency=+Nms`, `TARGET:latency=xF`.
//!
//! TARGET is a service (`payment`), an operation (`payment/Charge`, or its node id
//! `payment Charge`), a virtual node (`postgres`), or one call site `CALLER->CALLEE` (each side
//! any of the former; the fault affects only calls from the caller to the callee). Names are
//! matched exactly; an unknown one is an error that suggests the closest valid names.

use std::fmt;

use augur_model::View;

use crate::SimError;

/// The largest added latency a fault may ask for (a day, in ms): beyond it no request
/// finishes, and sums of simulated time lose precision.
pub const MAX_ADDED_MS: f64 = 86_400_000.0;

/// The largest self-time factor a fault may ask for.
pub const MAX_FACTOR: f64 = 1_000_000.0;

/// What a fault does to the calls (or, for `latency=xF`, the invocations) it targets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FaultKind {
    /// Calls into the target fail fast, reaching nothing.
    Down,
    /// Calls into the target fail with this probability (on top of their own failures).
    Error(f64),
    /// Every call into the target takes this many more milliseconds, as its callers see it.
    AddLatencyMs(f64),
    /// The target's self time is multiplied by this factor (CPU contention).
    ScaleSelf(f64),
}

/// A fault as written: its target text and kind.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultSpec {
    /// The target as written.
    pub target: String,
    /// What it does.
    pub kind: FaultKind,
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            FaultKind::Down => write!(f, "{}:down", self.target),
            FaultKind::Error(r) => write!(f, "{}:error={r}", self.target),
            FaultKind::AddLatencyMs(ms) => write!(f, "{}:latency=+{ms}ms", self.target),
            FaultKind::ScaleSelf(x) => write!(f, "{}:latency=x{x}", self.target),
        }
    }
}

fn bad(input: &str, part: &str, reason: impl Into<String>) -> SimError {
    SimError::BadFault {
        input: input.to_string(),
        part: part.to_string(),
        reason: reason.into(),
    }
}

impl std::str::FromStr for FaultSpec {
    type Err = SimError;

    fn from_str(input: &str) -> Result<FaultSpec, SimError> {
        let text = input.trim();
        // Operation names may hold ':'; the kind never does.
        let Some((target, kind)) = text.rsplit_once(':') else {
            return Err(bad(
                input,
                text,
                "expected TARGET:KIND, e.g. payment:down, payment:error=0.3, payment:latency=+500ms, payment:latency=x2",
            ));
        };
        let target = target.trim();
        if target.is_empty() {
            return Err(bad(input, "", "the target is empty"));
        }
        if let Some((from, to)) = target.split_once("->") {
            if from.trim().is_empty() || to.trim().is_empty() {
                return Err(bad(
                    input,
                    target,
                    "a call site is CALLER->CALLEE, both named",
                ));
            }
        }
        let kind = kind.trim();
        let number = |s: &str, what: &str| -> Result<f64, SimError> {
            s.trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| bad(input, s, format!("{what} is not a number")))
        };
        let kind = if kind == "down" {
            FaultKind::Down
        } else if let Some(rate) = kind.strip_prefix("error=") {
            let r = number(rate, "the error rate")?;
            if !(0.0..=1.0).contains(&r) {
                return Err(bad(input, rate, "an error rate is between 0 and 1"));
            }
            FaultKind::Error(r)
        } else if let Some(lat) = kind.strip_prefix("latency=") {
            if let Some(add) = lat.strip_prefix('+') {
                let (value, scale) = if let Some(v) = add.strip_suffix("ms") {
                    (v, 1.0)
                } else if let Some(v) = add.strip_suffix('s') {
                    (v, 1000.0)
                } else if add.trim().parse::<f64>().is_ok() {
                    return Err(bad(input, add, "added latency needs a unit: +500ms or +2s"));
                } else {
                    return Err(bad(
                        input,
                        add,
                        "added latency is a number and a unit: +500ms or +2s",
                    ));
                };
                let v = number(value, "the added latency")?;
                if v < 0.0 {
                    return Err(bad(input, add, "added latency cannot be negative"));
                }
                if v * scale > MAX_ADDED_MS {
                    return Err(bad(
                        input,
                        add,
                        "added latency is at most a day (86400000ms)",
                    ));
                }
                FaultKind::AddLatencyMs(v * scale)
            } else if let Some(factor) = lat.strip_prefix('x') {
                let f = number(factor, "the latency factor")?;
                if f <= 0.0 {
                    return Err(bad(input, factor, "a latency factor is positive"));
                }
                if f > MAX_FACTOR {
                    return Err(bad(input, factor, "a latency factor is at most 1000000"));
                }
                FaultKind::ScaleSelf(f)
            } else {
                return Err(bad(
                    input,
                    lat,
                    "latency is +Nms (added to calls) or xF (self time multiplied)",
                ));
            }
        } else {
            return Err(bad(
                input,
                kind,
                "unknown fault kind: use down, error=RATE, latency=+Nms or latency=xF",
            ));
        };
        Ok(FaultSpec {
            target: target.to_string(),
            kind,
        })
    }
}

/// A fault resolved against a model: which nodes it targets, and (for a call site) from which
/// callers.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The spec.
    pub spec: FaultSpec,
    /// Node indices (into [`View::nodes`]) whose incoming calls (or self time) are affected.
    pub callees: Vec<usize>,
    /// For a call site, the caller node indices; `None`: every caller.
    pub callers: Option<Vec<usize>>,
}

/// The nodes a name denotes: a node id, `service/operation`, or a service (all its operations;
/// a virtual node is its own service).
fn nodes_named(view: &View, name: &str) -> Vec<usize> {
    let name = name.trim();
    if let Some(i) = view.nodes.iter().position(|n| n.id == name) {
        return vec![i];
    }
    // Service names may hold '/' (`team/cart`), operation names too: try every split.
    for (at, _) in name.match_indices('/') {
        let (svc, op) = (&name[..at], &name[at + 1..]);
        if let Some(i) = view
            .nodes
            .iter()
            .position(|n| n.service == svc && n.operation == op)
        {
            return vec![i];
        }
    }
    view.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.service == name)
        .map(|(i, _)| i)
        .collect()
}

/// Levenshtein distance (for suggestions).
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, &cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// The valid names closest to `name` (at most 5).
pub fn suggestions(view: &View, name: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for n in &view.nodes {
        names.push(n.service.clone());
        if !n.is_virtual {
            names.push(format!("{}/{}", n.service, n.operation));
        }
    }
    names.sort();
    names.dedup();
    let lower = name.to_lowercase();
    let mut scored: Vec<(usize, bool, usize, String)> = names
        .into_iter()
        .map(|c| {
            let d = distance(&lower, &c.to_lowercase());
            // A name that contains what was typed is a good guess whatever its length.
            let d = if c.to_lowercase().contains(&lower) && !lower.is_empty() {
                d.min(1)
            } else {
                d
            };
            // Among equally close names, services before operations, and the shortest first
            // (`ts-order` suggests `ts-order-service` before `ts-order-other-service`).
            (
                d,
                c.contains('/') && !lower.contains('/'),
                c.chars().count(),
                c,
            )
        })
        .collect();
    scored.sort();
    scored.into_iter().take(5).map(|(.., c)| c).collect()
}

impl FaultSpec {
    /// Resolves the target against a model.
    pub fn resolve(&self, view: &View) -> Result<Resolved, SimError> {
        let lookup = |name: &str| -> Result<Vec<usize>, SimError> {
            let found = nodes_named(view, name);
            if found.is_empty() {
                return Err(SimError::UnknownTarget {
                    fault: self.to_string(),
                    target: name.trim().to_string(),
                    suggestions: suggestions(view, name.trim()),
                });
            }
            Ok(found)
        };
        // The whole name first: a node whose name holds "->" itself (service `cart->v2`) is
        // what its whole name says (the recommender lists `cart->v2:down` among service
        // faults), and its call sites stay reachable as `cart/OP->v2`.
        let whole = nodes_named(view, &self.target);
        if !whole.is_empty() {
            return Ok(Resolved {
                spec: self.clone(),
                callees: whole,
                callers: None,
            });
        }
        // Else a call site CALLER->CALLEE; names may hold "->" themselves, so every split is
        // tried.
        let mut first_err = None;
        for (at, _) in self.target.match_indices("->") {
            let (from, to) = (&self.target[..at], &self.target[at + 2..]);
            let (callers, callees) = match (lookup(from), lookup(to)) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(e), _) | (_, Err(e)) => {
                    first_err.get_or_insert(e);
                    continue;
                }
            };
            let linked = view.edges.iter().any(|e| {
                callers.iter().any(|&c| view.nodes[c].id == e.from)
                    && callees.iter().any(|&c| view.nodes[c].id == e.to)
            });
            if !linked {
                first_err.get_or_insert(SimError::NoSuchCall {
                    fault: self.to_string(),
                    from: from.trim().to_string(),
                    to: to.trim().to_string(),
                });
                continue;
            }
            return Ok(Resolved {
                spec: self.clone(),
                callees,
                callers: Some(callers),
            });
        }
        match first_err {
            Some(e) => Err(e),
            // No split named anything: the whole name is unknown (the error suggests names).
            None => lookup(&self.target).map(|callees| Resolved {
                spec: self.clone(),
                callees,
                callers: None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_and_print() {
        let cases = [
            ("payment:down", FaultKind::Down),
            ("payment:error=0.3", FaultKind::Error(0.3)),
            ("payment:latency=+500ms", FaultKind::AddLatencyMs(500.0)),
            ("payment:latency=+2s", FaultKind::AddLatencyMs(2000.0)),
            ("payment:latency=x2.5", FaultKind::ScaleSelf(2.5)),
        ];
        for (text, kind) in cases {
            let f: FaultSpec = text.parse().unwrap();
            assert_eq!(f.kind, kind, "{text}");
            assert_eq!(f.target, "payment");
            let again: FaultSpec = f.to_string().parse().unwrap();
            assert_eq!(again, f);
        }
        let f: FaultSpec = "frontend GET /a:b->payment:down".parse().unwrap();
        assert_eq!(f.target, "frontend GET /a:b->payment");
    }

    #[test]
    fn bad_specs_name_the_wrong_part() {
        for (text, part) in [
            ("payment", "payment"),
            ("payment:crash", "crash"),
            ("payment:error=1.5", "1.5"),
            ("payment:error=lots", "lots"),
            ("payment:latency=+500", "500"),
            ("payment:latency=+abc", "abc"),
            ("payment:latency=+-5ms", "-5ms"),
            ("payment:latency=x0", "0"),
            ("payment:latency=fast", "fast"),
            (":down", ""),
            ("->x:down", "->x"),
        ] {
            match text.parse::<FaultSpec>() {
                Err(SimError::BadFault { part: p, .. }) => assert_eq!(p, part, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        // A number without a unit asks for the unit; no number at all says so.
        let why = |t: &str| match t.parse::<FaultSpec>() {
            Err(SimError::BadFault { reason, .. }) => reason,
            other => panic!("{t}: {other:?}"),
        };
        assert!(why("p:latency=+500").contains("needs a unit"));
        assert!(why("p:latency=+abc").contains("a number and a unit"));
    }

    #[test]
    fn edit_distance() {
        assert_eq!(distance("payment", "paymnet"), 2);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("same", "same"), 0);
    }
}
