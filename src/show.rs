//! `augur model show`: a model as a person reads it.

use std::fmt::Write as _;

use augur_model::{Interval, View};

fn pct(i: &Interval) -> String {
    format!(
        "{:.1}% [{:.1}, {:.1}]",
        i.mean * 100.0,
        i.lo * 100.0,
        i.hi * 100.0
    )
}

fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let mut w: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            if let Some(x) = w.get_mut(i) {
                *x = (*x).max(c.chars().count());
            }
        }
    }
    let line = |out: &mut String, cells: &[String]| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            let width = w.get(i).copied().unwrap_or(0);
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<width$}  ");
            }
        }
        let _ = writeln!(out, "{}", l.trim_end());
    };
    line(
        out,
        &header.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    );
    for r in rows {
        line(out, r);
    }
}

/// The text form of `augur model show`.
pub(crate) fn model_text(v: &View) -> String {
    let mut out = String::new();
    let q = &v.quality;
    let _ = writeln!(
        out,
        "model of {} spans in {} traces{}{}",
        q.spans - q.experiment_spans.min(q.spans),
        q.traces,
        if q.experiment_traces > 0 {
            format!(
                " ({} spans of {} experiments' traces left out)",
                q.experiment_spans, q.experiment_traces
            )
        } else {
            String::new()
        },
        match (v.window, v.traffic_seconds) {
            (Some(w), Some(t)) if t < 0.99 * w.seconds() => format!(
                ", over {t:.1} s of traffic (in a window of {:.1} s with gaps of over {} min)",
                w.seconds(),
                augur_model::TRAFFIC_GAP_NS / 60_000_000_000
            ),
            (_, Some(t)) => format!(", over {t:.1} s of traffic"),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "{} operations, {} virtual nodes, {} call sites; intervals are 90% credible intervals\n",
        v.nodes.iter().filter(|n| !n.is_virtual).count(),
        v.nodes.iter().filter(|n| n.is_virtual).count(),
        v.edges.len()
    );

    let _ = writeln!(out, "ENDPOINTS");
    let mut eps: Vec<_> = v.nodes.iter().filter(|n| n.traffic.is_some()).collect();
    eps.sort_by(|a, b| b.roots.cmp(&a.roots).then_with(|| a.id.cmp(&b.id)));
    let rows: Vec<Vec<String>> = eps
        .iter()
        .map(|n| {
            let t = n.traffic.unwrap_or(augur_model::Traffic {
                share: 0.0,
                per_second: 0.0,
            });
            vec![
                n.id.clone(),
                format!("{:.1}%", t.share * 100.0),
                format!("{:.1}/s", t.per_second),
                format!("{:.3}", n.duration.p50_ms),
                format!("{:.3}", n.duration.p99_ms),
                if n.p_error.is_unrecorded() {
                    "not recorded".to_string()
                } else {
                    format!(
                        "{:.2}%",
                        n.errors as f64 * 100.0 / n.invocations.max(1) as f64
                    )
                },
            ]
        })
        .collect();
    table(
        &mut out,
        &["ENDPOINT", "SHARE", "RATE", "P50 MS", "P99 MS", "ERRORS"],
        &rows,
    );

    let _ = writeln!(out, "\nOPERATIONS");
    let rows: Vec<Vec<String>> = v
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.id.clone(),
                if n.is_virtual { "virtual" } else { "" }.to_string(),
                n.invocations.to_string(),
                format!("{:.3}", n.self_time.p50_ms),
                format!("{:.3}", n.self_time.p99_ms),
                format!("{:.3}", n.duration.p99_ms),
                if n.p_error.is_unrecorded() {
                    "not recorded (no span status)".to_string()
                } else {
                    format!("{} (n={})", pct(&n.p_error.interval), n.p_error.evidence)
                },
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "OPERATION",
            "",
            "INVOCATIONS",
            "SELF P50",
            "SELF P99",
            "P99 MS",
            "OWN ERROR RATE",
        ],
        &rows,
    );

    let _ = writeln!(out, "\nCALL SITES");
    let rows: Vec<Vec<String>> = v
        .edges
        .iter()
        .map(|e| {
            vec![
                format!("{} -> {}", e.from, e.to),
                format!("{:.2}", e.mean_calls()),
                e.mode.as_str().to_string(),
                e.retries.map_or("?".into(), |r| r.to_string()),
                e.timeout.as_ref().map_or("?".into(), |t| {
                    format!("{} [{}, {}]", t.median_ms, t.lo_ms, t.hi_ms)
                }),
                if e.gap.count == 0 {
                    "-".to_string()
                } else {
                    format!("{:.3}", e.gap.p50_ms)
                },
                format!(
                    "{} (n={}, {})",
                    pct(&e.p_propagate.interval),
                    e.p_propagate.evidence,
                    e.p_propagate.prior
                ),
            ]
        })
        .collect();
    table(
        &mut out,
        &[
            "CALL",
            "CALLS/INV",
            "MODE",
            "RETRIES",
            "TIMEOUT MS",
            "GAP P50",
            "P(PROPAGATE)",
        ],
        &rows,
    );
    let _ = writeln!(
        out,
        "\n? = never seen (retries show only after failures; timeouts only when calls are cut)"
    );

    let _ = writeln!(out, "\nPRIORS OF P(PROPAGATE) (learned across call sites)");
    let rows: Vec<Vec<String>> = v
        .priors
        .iter()
        .map(|p| {
            let b = augur_model::beta::Beta::new(p.alpha, p.beta);
            let (lo, hi) = b.map_or((0.0, 1.0), |b| b.interval(augur_model::CREDIBLE_MASS));
            vec![
                p.group.clone(),
                format!("Beta({:.2}, {:.2})", p.alpha, p.beta),
                format!(
                    "{:.1}% [{:.1}, {:.1}]",
                    p.alpha / (p.alpha + p.beta) * 100.0,
                    lo * 100.0,
                    hi * 100.0
                ),
                match (p.sites, p.group.as_str()) {
                    (0, "all") => "no evidence anywhere: uniform".to_string(),
                    (0, _) => "too few sites or calling services: uses `all`".to_string(),
                    (n, _) => format!("fitted on {n} sites"),
                },
            ]
        })
        .collect();
    table(&mut out, &["GROUP", "PRIOR", "MEAN", "FIT"], &rows);
    out
}

/// The text form of `augur recommend` and `augur value`; `budgeted`: whether an error budget
/// was given (without one every experiment fits, and the text says so rather than "safe").
pub(crate) fn recommendation_text(r: &augur_recommender::Recommendation, budgeted: bool) -> String {
    let mut out = String::new();
    if r.experiments.is_empty() {
        out.push_str("no candidate experiment\n");
        return out;
    }
    for (k, e) in r.experiments.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}. {}  {:.2} bits  {}  traffic {:.0}% for {:.0} s  harm <= {} failed requests of {}, p99 +{} ms",
            k + 1,
            e.fault,
            e.value_bits,
            match (budgeted, e.safe) {
                (false, _) => "no budget given",
                (true, true) => "safe",
                (true, false) => "UNSAFE",
            },
            e.traffic_share * 100.0,
            e.harm.duration_s,
            e.harm.failed_requests_hi,
            e.harm.requests,
            e.harm.p99_increase_ms_hi
        );
        for i in &e.intents {
            let _ = writeln!(out, "   intent {}: P(holds) {:.2}", i.id, i.p_holds);
        }
        let _ = writeln!(out, "   why: {}", e.why);
    }
    out
}

/// The text form of `augur plan`.
pub(crate) fn plan_text(p: &augur_recommender::plan::Plan) -> String {
    let mut out = format!(
        "plan: {} experiments, {:.2} bits in all, at most {} of the budget of {} failed requests\n",
        p.experiments.len(),
        p.total_bits,
        p.total_failed_requests_hi,
        p.budget
    );
    for (k, e) in p.experiments.iter().enumerate() {
        let _ = writeln!(
            out,
            "{}. {}  +{:.2} bits (alone {:.2})  traffic {:.0}% for {:.0} s  harm <= {} failed requests\n   why: {}",
            k + 1,
            e.fault,
            e.marginal_bits,
            e.value_bits,
            e.traffic_share * 100.0,
            e.duration_s,
            e.failed_requests_hi,
            e.why
        );
    }
    out
}
