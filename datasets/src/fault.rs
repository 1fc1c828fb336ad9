//! Faults injected into a generated run: `payment:down`, `payment:error=0.3`,
//! `payment:latency=+500ms` (the same syntax the simulator uses).

use std::fmt;
use std::str::FromStr;

use crate::error::FaultParseError;

/// A fault active during a generated run. The target is a service of the world (every operation of
/// it is affected) or an uninstrumented peer (`postgres`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub enum Fault {
    /// The service refuses connections: calls to it fail in a few ms with no server span.
    Down(String),
    /// The service's operations fail with at least this probability (combined with their own
    /// error rate as independent causes: `1 - (1 - own) * (1 - rate)`).
    Error {
        /// The target service or peer.
        service: String,
        /// The injected failure probability, in `[0, 1]`.
        rate: f64,
    },
    /// The service's operations take this much longer (added to their self time).
    Latency {
        /// The target service or peer.
        service: String,
        /// The added latency in milliseconds (`>= 0`).
        add_ms: f64,
    },
}

impl Fault {
    /// The targeted service or peer.
    pub fn target(&self) -> &str {
        match self {
            Fault::Down(s) => s,
            Fault::Error { service, .. } | Fault::Latency { service, .. } => service,
        }
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::Down(s) => write!(f, "{s}:down"),
            Fault::Error { service, rate } => write!(f, "{service}:error={rate}"),
            Fault::Latency { service, add_ms } => write!(f, "{service}:latency=+{add_ms}ms"),
        }
    }
}

impl FromStr for Fault {
    type Err = FaultParseError;

    fn from_str(input: &str) -> Result<Fault, FaultParseError> {
        let bad = |reason: &str| FaultParseError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let text = input.trim();
        let (service, spec) = text
            .split_once(':')
            .ok_or_else(|| bad("no `:` between the target and the fault"))?;
        let service = service.trim();
        if service.is_empty() {
            return Err(bad("the target service is empty"));
        }
        let service = service.to_string();
        let spec = spec.trim();
        if spec == "down" {
            return Ok(Fault::Down(service));
        }
        let (kind, value) = spec
            .split_once('=')
            .ok_or_else(|| bad("unknown fault kind (want down, error=<rate> or latency=+<n>ms)"))?;
        match kind.trim() {
            "error" => {
                let rate: f64 = value
                    .trim()
                    .parse()
                    .map_err(|_| bad("the error rate is not a number"))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err(bad("the error rate must be within [0, 1]"));
                }
                Ok(Fault::Error { service, rate })
            }
            "latency" => {
                let v = value.trim();
                if v.starts_with('x') {
                    return Err(bad(
                        "the generator adds latency (+<n>ms); a self-time factor (xF) is for simulate",
                    ));
                }
                let v = v.strip_prefix('+').unwrap_or(v);
                let (num, scale) = if let Some(n) = v.strip_suffix("ms") {
                    (n, 1.0)
                } else if let Some(n) = v.strip_suffix('s') {
                    (n, 1000.0)
                } else {
                    return Err(bad("the latency needs a unit, ms or s (e.g. +500ms)"));
                };
                let n: f64 = num
                    .trim()
                    .parse()
                    .map_err(|_| bad("the added latency is not a number"))?;
                if !n.is_finite() || n < 0.0 || n * scale > 86_400_000.0 {
                    return Err(bad(
                        "the added latency must be between 0 and a day (86400000ms)",
                    ));
                }
                Ok(Fault::Latency {
                    service,
                    add_ms: n * scale,
                })
            }
            _ => Err(bad(
                "unknown fault kind (want down, error=<rate> or latency=+<n>ms)",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_good_faults_and_prints_them_back() {
        let cases = [
            ("payment:down", Fault::Down("payment".into())),
            (
                "payment:error=0.3",
                Fault::Error {
                    service: "payment".into(),
                    rate: 0.3,
                },
            ),
            (
                "payment:latency=+500ms",
                Fault::Latency {
                    service: "payment".into(),
                    add_ms: 500.0,
                },
            ),
        ];
        for (text, want) in cases {
            let got: Fault = text.parse().unwrap();
            assert_eq!(got, want);
            assert_eq!(got.to_string(), text);
            assert_eq!(got.target(), "payment");
        }
        let secs: Fault = " shipping : latency=2s ".parse().unwrap();
        assert_eq!(
            secs,
            Fault::Latency {
                service: "shipping".into(),
                add_ms: 2000.0
            }
        );
    }

    #[test]
    fn rejects_bad_faults_with_a_reason() {
        for bad in [
            "",
            "payment",
            ":down",
            "payment:up",
            "payment:error=1.5",
            "payment:error=-0.1",
            "payment:error=lots",
            "payment:latency=500",
            "payment:latency=-5ms",
            "payment:latency=fastms",
            "payment:slow=3",
        ] {
            let err = bad.parse::<Fault>().unwrap_err();
            assert_eq!(err.input, bad);
            assert!(!err.reason.is_empty());
            assert!(err.to_string().contains("expected"), "{err}");
        }
    }
}
