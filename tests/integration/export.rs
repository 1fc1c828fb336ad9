//! `augur export`: the model and the ranked candidates as Parquet tables, read back by the
//! polars example in docs/ when the test Python (AUGUR_OTEL_PYTHON, made by .ci/run) is there.

use std::path::Path;

use crate::common::{ok, shop_model};

#[test]
fn export_writes_tables_that_the_polars_example_reads() {
    let dir = tempfile::tempdir().unwrap();
    let model = shop_model(&dir, "1500", "4");
    let out = dir.path().join("tables");
    let (_, err) = ok(&[
        "export",
        &model,
        "--out",
        out.to_str().unwrap(),
        "--requests",
        "300",
        "--samples",
        "4",
    ]);
    let rows = |name: &str| -> usize {
        let line = err
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} not reported: {err}"));
        line.rsplit('(')
            .next()
            .unwrap()
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let (graph, _) = ok(&["graph", &model, "--format", "json"]);
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    assert_eq!(
        rows("nodes.parquet"),
        graph["nodes"].as_array().unwrap().len()
    );
    assert_eq!(
        rows("edges.parquet"),
        graph["edges"].as_array().unwrap().len()
    );
    assert!(rows("candidates.parquet") > 10);
    // A posterior per node and per call site, and one per timeout seen.
    let timeouts = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| !e["timeout_ms"].is_null())
        .count();
    assert_eq!(
        rows("posteriors.parquet"),
        rows("nodes.parquet") + rows("edges.parquet") + timeouts
    );
    for f in ["nodes", "edges", "posteriors", "candidates"] {
        let bytes = std::fs::read(out.join(format!("{f}.parquet"))).unwrap();
        assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
    }
    let Ok(python) = std::env::var("AUGUR_OTEL_PYTHON") else {
        eprintln!("SKIPPED (polars part): AUGUR_OTEL_PYTHON is not set (.ci/run makes a venv with polars)");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/export_example.py");
    let run = std::process::Command::new(python)
        .arg(&script)
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(stdout.contains("frontend POST /checkout"), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "rows: nodes={} edges={} posteriors={} candidates={}",
            rows("nodes.parquet"),
            rows("edges.parquet"),
            rows("posteriors.parquet"),
            rows("candidates.parquet")
        )),
        "{stdout}"
    );
}
