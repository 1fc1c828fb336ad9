//! `augur export`: a model, its posteriors and the ranked candidate experiments as Parquet tables
//! for data scientists (`docs/EXPORT.md` reads them with polars).

use std::path::Path;

use anyhow::Result;
use augur_ingest::table::{write_table, Column};
use augur_model::View;
use augur_recommender::Recommendation;

/// Writes `nodes.parquet`, `edges.parquet`, `posteriors.parquet` and `candidates.parquet` into
/// `dir`; returns the files with their row counts.
pub(crate) fn export(
    view: &View,
    rec: &Recommendation,
    dir: &Path,
) -> Result<Vec<(String, usize)>> {
    crate::create_out_dir(dir)?;
    let mut out = Vec::new();
    let mut write = |name: &str, columns: Vec<(&str, Column)>| -> Result<()> {
        let path = dir.join(name);
        let rows = write_table(&path, columns)?;
        out.push((path.display().to_string(), rows));
        Ok(())
    };
    let n = &view.nodes;
    let s = |f: &dyn Fn(&augur_model::Node) -> String| Column::Str(n.iter().map(f).collect());
    let x = |f: &dyn Fn(&augur_model::Node) -> f64| Column::F64(n.iter().map(f).collect());
    write(
        "nodes.parquet",
        vec![
            ("id", s(&|n| n.id.clone())),
            ("service", s(&|n| n.service.clone())),
            ("operation", s(&|n| n.operation.clone())),
            (
                "virtual",
                Column::Bool(n.iter().map(|n| n.is_virtual).collect()),
            ),
            (
                "endpoint",
                Column::Bool(n.iter().map(|n| n.endpoint).collect()),
            ),
            (
                "invocations",
                Column::U64(n.iter().map(|n| n.invocations).collect()),
            ),
            ("errors", Column::U64(n.iter().map(|n| n.errors).collect())),
            ("p50_ms", x(&|n| n.duration.p50_ms)),
            ("p99_ms", x(&|n| n.duration.p99_ms)),
            ("self_p50_ms", x(&|n| n.self_time.p50_ms)),
            ("self_p99_ms", x(&|n| n.self_time.p99_ms)),
            ("p_error_mean", x(&|n| n.p_error.interval.mean)),
            ("p_error_lo", x(&|n| n.p_error.interval.lo)),
            ("p_error_hi", x(&|n| n.p_error.interval.hi)),
            (
                "traffic_share",
                Column::OptF64(
                    n.iter()
                        .map(|n| n.traffic.as_ref().map(|t| t.share))
                        .collect(),
                ),
            ),
            (
                "traffic_per_second",
                Column::OptF64(
                    n.iter()
                        .map(|n| n.traffic.as_ref().map(|t| t.per_second))
                        .collect(),
                ),
            ),
        ],
    )?;
    let e = &view.edges;
    let es = |f: &dyn Fn(&augur_model::Edge) -> String| Column::Str(e.iter().map(f).collect());
    let ex = |f: &dyn Fn(&augur_model::Edge) -> f64| Column::F64(e.iter().map(f).collect());
    write(
        "edges.parquet",
        vec![
            ("from", es(&|e| e.from.clone())),
            ("to", es(&|e| e.to.clone())),
            ("calls", Column::U64(e.iter().map(|e| e.calls).collect())),
            ("failed", Column::U64(e.iter().map(|e| e.failed).collect())),
            ("calls_per_invocation", ex(&|e| e.mean_calls())),
            ("p50_ms", ex(&|e| e.duration.p50_ms)),
            ("p99_ms", ex(&|e| e.duration.p99_ms)),
            ("mode", es(&|e| e.mode.as_str().to_string())),
            (
                "retries",
                Column::OptU64(e.iter().map(|e| e.retries.map(u64::from)).collect()),
            ),
            (
                "timeout_ms",
                Column::OptF64(
                    e.iter()
                        .map(|e| e.timeout.as_ref().map(|t| t.median_ms))
                        .collect(),
                ),
            ),
            ("p_propagate_mean", ex(&|e| e.p_propagate.interval.mean)),
            ("p_propagate_lo", ex(&|e| e.p_propagate.interval.lo)),
            ("p_propagate_hi", ex(&|e| e.p_propagate.interval.hi)),
            (
                "p_propagate_evidence",
                Column::U64(e.iter().map(|e| e.p_propagate.evidence).collect()),
            ),
            ("p_propagate_prior", es(&|e| e.p_propagate.prior.clone())),
        ],
    )?;
    write("posteriors.parquet", posteriors(view))?;
    let c = &rec.experiments;
    let cs = |f: &dyn Fn(&augur_recommender::Experiment) -> String| {
        Column::Str(c.iter().map(f).collect())
    };
    let cx =
        |f: &dyn Fn(&augur_recommender::Experiment) -> f64| Column::F64(c.iter().map(f).collect());
    write(
        "candidates.parquet",
        vec![
            ("rank", Column::U64((1..=c.len() as u64).collect())),
            ("fault", cs(&|e| e.fault.clone())),
            ("value_bits", cx(&|e| e.value_bits)),
            ("model_bits", cx(&|e| e.model_bits)),
            ("safe", Column::Bool(c.iter().map(|e| e.safe).collect())),
            ("traffic_share", cx(&|e| e.traffic_share)),
            ("harm_requests", cx(&|e| e.harm.requests)),
            (
                "harm_failed_requests_hi",
                cx(&|e| e.harm.failed_requests_hi),
            ),
            (
                "harm_p99_increase_ms_hi",
                cx(&|e| e.harm.p99_increase_ms_hi),
            ),
            ("duration_s", cx(&|e| e.harm.duration_s)),
            ("why", cs(&|e| e.why.clone())),
        ],
    )?;
    Ok(out)
}

/// One row per uncertain parameter, in long form: every operation's own error rate and every
/// call site's P(propagate) (Beta posteriors: alpha, beta, mean, 90% interval, sd, the
/// observations behind it and the prior it was shrunk towards), and every timeout seen (the
/// thresholds' median and 5th–95th percentiles; no Beta).
fn posteriors(view: &View) -> Vec<(&'static str, Column)> {
    struct Row {
        parameter: &'static str,
        target: String,
        from: Option<String>,
        to: String,
        family: &'static str,
        ab: Option<(f64, f64)>,
        mean: f64,
        lo: f64,
        hi: f64,
        sd: Option<f64>,
        evidence: u64,
        prior: Option<String>,
        /// Of a never-failed call site's P(propagate): the shares on "fallback" and
        /// "propagates" beside the Beta.
        shares: (f64, f64),
    }
    let beta = |parameter,
                target: String,
                from: Option<String>,
                to: String,
                p: &augur_model::Posterior| Row {
        parameter,
        target,
        from,
        to,
        family: if p.fallback_share > 0.0 || p.propagate_share > 0.0 {
            "beta mixture"
        } else {
            "beta"
        },
        ab: Some((p.alpha, p.beta)),
        mean: p.interval.mean,
        lo: p.interval.lo,
        hi: p.interval.hi,
        sd: p.mixture().map(|b| b.std_dev()),
        evidence: p.evidence,
        prior: Some(p.prior.clone()),
        shares: (p.fallback_share, p.propagate_share),
    };
    let mut rows: Vec<Row> = view
        .nodes
        .iter()
        .map(|n| beta("p_error", n.id.clone(), None, n.id.clone(), &n.p_error))
        .collect();
    for e in &view.edges {
        let site = format!("{} -> {}", e.from, e.to);
        rows.push(beta(
            "p_propagate",
            site.clone(),
            Some(e.from.clone()),
            e.to.clone(),
            &e.p_propagate,
        ));
        if let Some(t) = &e.timeout {
            rows.push(Row {
                parameter: "timeout_ms",
                target: site,
                from: Some(e.from.clone()),
                to: e.to.clone(),
                family: "thresholds seen",
                ab: None,
                mean: t.median_ms,
                lo: t.lo_ms,
                hi: t.hi_ms,
                sd: None,
                evidence: t.evidence,
                prior: None,
                shares: (0.0, 0.0),
            });
        }
    }
    let s = |f: &dyn Fn(&Row) -> String| Column::Str(rows.iter().map(f).collect());
    let x = |f: &dyn Fn(&Row) -> f64| Column::F64(rows.iter().map(f).collect());
    let ox = |f: &dyn Fn(&Row) -> Option<f64>| Column::OptF64(rows.iter().map(f).collect());
    vec![
        ("parameter", s(&|r| r.parameter.to_string())),
        ("target", s(&|r| r.target.clone())),
        (
            "from",
            Column::OptStr(rows.iter().map(|r| r.from.clone()).collect()),
        ),
        ("to", s(&|r| r.to.clone())),
        ("family", s(&|r| r.family.to_string())),
        ("alpha", ox(&|r| r.ab.map(|(a, _)| a))),
        ("beta", ox(&|r| r.ab.map(|(_, b)| b))),
        ("mean", x(&|r| r.mean)),
        ("lo", x(&|r| r.lo)),
        ("hi", x(&|r| r.hi)),
        ("sd", ox(&|r| r.sd)),
        (
            "evidence",
            Column::U64(rows.iter().map(|r| r.evidence).collect()),
        ),
        (
            "prior",
            Column::OptStr(rows.iter().map(|r| r.prior.clone()).collect()),
        ),
        ("fallback_share", x(&|r| r.shares.0)),
        ("propagate_share", x(&|r| r.shares.1)),
    ]
}
