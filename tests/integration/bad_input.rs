//! Bad input never panics: a bad record is skipped, counted and located (or an error with
//! `--strict`); a wholly unreadable file is a clear error naming the file.

use std::io::Write;

use crate::common::{fails, ok};

const GOOD_LINE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"shop"}}]},"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","name":"GET /","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1000","endTimeUnixNano":"5000"}]}]}]}"#;

fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> String {
    let p = dir.path().join(name);
    std::fs::write(&p, bytes).unwrap();
    p.to_str().unwrap().to_string()
}

fn learn_fails(file: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.json");
    let err = fails(&["learn", file, "--out", out.to_str().unwrap()]);
    assert!(err.contains(file), "the error names the file:\n{err}");
    assert!(!out.exists(), "no model is written on error");
    err
}

#[test]
fn garbage_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        &dir,
        "garbage.bin",
        &[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff, 0x13, 0x37],
    );
    let err = learn_fails(&f);
    assert!(err.contains("not a trace file"), "{err}");
}

#[test]
fn empty_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(&dir, "empty.json", b"");
    let err = learn_fails(&f);
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn truncated_json_document_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let doc = GOOD_LINE.replace('\n', "");
    let pretty = format!("{doc}\n").replace("\"scopeSpans\"", "\n\"scopeSpans\"");
    let cut = &pretty.as_bytes()[..pretty.len() / 2];
    let f = write(&dir, "cut.json", cut);
    learn_fails(&f);
}

#[test]
fn truncated_gzip_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut enc = flate2_like_gzip(GOOD_LINE.repeat(200).as_bytes());
    enc.truncate(enc.len() / 2);
    let f = write(&dir, "cut.jsonl.gz", &enc);
    learn_fails(&f);
}

fn flate2_like_gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

#[test]
fn wrong_shapes_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in [
        ("object.json", r#"{"hello": "world"}"#),
        ("numbers.json", "[1, 2, 3]"),
        ("resource.json", r#"{"resourceSpans": 7}"#),
        ("csv.csv", "a,b,c\n1,2,3\n"),
    ] {
        let f = write(&dir, name, text.as_bytes());
        learn_fails(&f);
    }
}

#[test]
fn a_bad_line_is_skipped_located_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{GOOD_LINE}\nthis is not json\n{}\n",
        GOOD_LINE.replace("b174", "b175")
    );
    let f = write(&dir, "mixed.jsonl", text.as_bytes());
    let out = dir.path().join("m.json");
    let (json, stderr) = ok(&["learn", &f, "--out", out.to_str().unwrap(), "--json"]);
    assert!(stderr.contains(&f) && stderr.contains("line 2"), "{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(summary["rejected"], 1);
    assert_eq!(summary["spans"], 2);
    // Strict: the same file is an error at line 2.
    let err = fails(&["learn", &f, "--out", out.to_str().unwrap(), "--strict"]);
    assert!(err.contains("line 2") && err.contains("strict"), "{err}");
}

#[test]
fn many_bad_records_are_summarised_not_listed() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = format!("{GOOD_LINE}\n");
    for _ in 0..30 {
        text.push_str(
            "{\"resourceSpans\": [{\"scopeSpans\": [{\"spans\": [{\"name\": \"no ids\"}]}]}]}\n",
        );
    }
    let f = write(&dir, "bad.jsonl", text.as_bytes());
    let out = dir.path().join("m.json");
    let (_, stderr) = ok(&["learn", &f, "--out", out.to_str().unwrap()]);
    let listed = stderr
        .lines()
        .filter(|l| l.starts_with("warning: skipped"))
        .count();
    assert_eq!(listed, 5, "{stderr}");
    assert!(stderr.contains("25 more bad records"), "{stderr}");
    assert!(stderr.contains("records rejected: 30"), "{stderr}");
}

#[test]
fn missing_paths_and_bad_models_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.json");
    learn_fails(missing.to_str().unwrap());
    let notmodel = write(&dir, "notmodel.json", br#"{"nodes": []}"#);
    let err = fails(&["graph", &notmodel]);
    assert!(
        err.contains("notmodel.json") && err.contains("schema_version"),
        "{err}"
    );
}

#[test]
fn random_bytes_never_panic() {
    // A seeded sweep of small random files with plausible starts: every outcome is a clean
    // success or a clean error, never a crash.
    let dir = tempfile::tempdir().unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let starts: [&[u8]; 6] = [
        b"{",
        b"[",
        b"\x0a",
        b"\x00\x00\x00",
        b"TraceID,SpanID\n",
        b"PAR1",
    ];
    for i in 0..24 {
        let mut bytes = starts[i % starts.len()].to_vec();
        let n = (next() % 200) as usize;
        bytes.extend((0..n).map(|_| (next() % 256) as u8));
        let f = write(&dir, &format!("r{i}.bin"), &bytes);
        let out = crate::common::run(&[
            "learn",
            &f,
            "--out",
            dir.path().join("m.json").to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(0) | Some(1)),
            "{f}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{f}: {stderr}");
    }
}

/// A closed stderr (`augur ... 2>&1 | head` after head exits) loses the messages, not the run:
/// std's `eprintln!` panicked (exit 101) after the work was done.
#[test]
fn a_closed_stderr_does_not_fail_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.jsonl");
    let mut child = crate::common::augur()
        .args(["generate", "--traces", "10", "--out", out.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "{status:?}");
    assert!(out.exists());
}
