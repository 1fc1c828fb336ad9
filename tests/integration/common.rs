//! Helpers shared by the integration tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use augur_ingest::{read_paths, IngestReport, OwnedSpan, ReadOptions};

/// The `augur` binary under test.
pub fn augur() -> Command {
    Command::new(env!("CARGO_BIN_EXE_augur"))
}

/// Runs augur with `args`; returns the output (whatever the exit status).
pub fn run(args: &[&str]) -> Output {
    augur().args(args).output().expect("augur runs")
}

/// Runs augur and insists it succeeds; returns (stdout, stderr).
pub fn ok(args: &[&str]) -> (String, String) {
    let out = run(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "augur {args:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    (stdout, stderr)
}

/// Runs augur and insists it fails with exit code 1; returns stderr.
pub fn fails(args: &[&str]) -> String {
    let out = run(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(1),
        "augur {args:?} should fail with code 1; stderr:\n{stderr}"
    );
    assert!(!stderr.contains("panicked"), "augur panicked:\n{stderr}");
    stderr
}

/// `../shared/<rel>` if the shared directory is present; `None` (after saying why) if not, so
/// the caller can skip.
pub fn shared(rel: &str) -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("shared")
        .join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (the shared data directory is not checked out)",
            p.display()
        );
        None
    }
}

/// Every span of `path` as owned values, with the read report.
pub fn read_spans(path: &Path) -> (Vec<OwnedSpan>, IngestReport) {
    let mut spans = Vec::new();
    let report = read_paths(&[path.to_path_buf()], &ReadOptions::default(), &mut |b| {
        spans.extend(b.to_owned_spans());
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{} does not read: {e}", path.display()));
    (spans, report)
}
