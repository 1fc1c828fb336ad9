//! Long reads show progress on a terminal and stay quiet when stderr is piped.

use crate::common::{augur, ok};

fn traces(dir: &tempfile::TempDir) -> String {
    let file = dir.path().join("t.jsonl");
    let f = file.to_str().unwrap().to_string();
    ok(&["generate", "--traces", "300", "--out", &f]);
    f
}

#[test]
fn piped_stderr_has_no_progress_bar() {
    let dir = tempfile::tempdir().unwrap();
    let f = traces(&dir);
    let m = dir.path().join("m.json");
    let (_, stderr) = ok(&["learn", &f, "--out", m.to_str().unwrap()]);
    assert!(
        !stderr.contains('\u{1b}') && !stderr.contains('\r'),
        "{stderr:?}"
    );
    assert!(!stderr.contains("spans ·"), "{stderr}");
}

#[test]
fn a_terminal_gets_a_progress_bar() {
    // `script` (util-linux) runs the command on a pseudo-terminal.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: `script` (util-linux) is not installed, so no terminal can be faked");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let f = traces(&dir);
    let m = dir.path().join("m.json");
    let bin = augur().get_program().to_str().unwrap().to_string();
    let cmd = format!("{bin} learn {f} --out {}", m.to_str().unwrap());
    let out = std::process::Command::new("script")
        .args(["-qec", &cmd, "/dev/null"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("spans ·") && text.contains("t.jsonl"),
        "{text}"
    );
    assert!(text.contains("learned from"), "{text}");
}
