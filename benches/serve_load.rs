//! Load on `augur serve` over loopback: sustained spans per second accepted (logged, synced,
//! acknowledged) with the export latency, then behaviour under overload. Bounded in count and
//! time; not a criterion bench because the thing measured is another process.
//!
//! `cargo bench --bench serve_load` (figures in docs/PERFORMANCE.md). Environment:
//! `AUGUR_LOAD_SECONDS` (default 10), `AUGUR_LOAD_CLIENTS` (default 8).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use augur_ingest::live::encode_batch;
use augur_ingest::{read_paths, ReadOptions, SpanBatch};

const SPANS_PER_REQUEST: usize = 2048;

fn post(addr: SocketAddr, body: &[u8]) -> u16 {
    let mut s = TcpStream::connect(addr).unwrap();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    String::from_utf8_lossy(&raw[..raw.len().min(16)])
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

struct Run {
    accepted_spans: u64,
    refused: u64,
    latencies: Vec<Duration>,
    seconds: f64,
    peak_rss_kib: u64,
}

fn load(queue_spans: &str, bodies: &Arc<Vec<Vec<u8>>>, seconds: f64, clients: usize) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_augur"))
        .args([
            "serve",
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
            "--queue-spans",
            queue_spans,
        ])
        .arg("--state")
        .arg(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let http: SocketAddr = loop {
        let line = lines.next().unwrap().unwrap();
        if let Some(rest) = line.split("http://").nth(1) {
            break rest.split(' ').next().unwrap().parse().unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let (stop, accepted, refused, latencies, bodies) = (
                Arc::clone(&stop),
                Arc::clone(&accepted),
                Arc::clone(&refused),
                Arc::clone(&latencies),
                Arc::clone(bodies),
            );
            std::thread::spawn(move || {
                let mut i = c;
                let mut mine = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    match post(http, &bodies[i % bodies.len()]) {
                        200 => {
                            mine.push(t.elapsed());
                            accepted.fetch_add(SPANS_PER_REQUEST as u64, Ordering::Relaxed);
                        }
                        503 => {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        other => panic!("unexpected status {other}"),
                    }
                    i += clients;
                }
                latencies.lock().unwrap().extend(mine);
            })
        })
        .collect();
    let mut peak = 0;
    while started.elapsed().as_secs_f64() < seconds {
        std::thread::sleep(Duration::from_millis(200));
        peak = peak.max(rss_kib(child.id()));
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = child.kill();
    let _ = child.wait();
    let mut latencies = std::mem::take(&mut *latencies.lock().unwrap());
    latencies.sort();
    Run {
        accepted_spans: accepted.load(Ordering::Relaxed),
        refused: refused.load(Ordering::Relaxed),
        latencies,
        seconds: elapsed,
        peak_rss_kib: peak,
    }
}

fn report(what: &str, r: &Run) {
    let q = |p: f64| {
        r.latencies
            .get(((r.latencies.len() as f64 * p) as usize).min(r.latencies.len().saturating_sub(1)))
            .map(|d| d.as_secs_f64() * 1000.0)
            .unwrap_or(f64::NAN)
    };
    println!(
        "{what}: {:.0} spans/s accepted ({} spans in {:.1} s), {} requests refused, export latency p50 {:.1} ms p99 {:.1} ms, peak RSS {} MiB",
        r.accepted_spans as f64 / r.seconds,
        r.accepted_spans,
        r.seconds,
        r.refused,
        q(0.5),
        q(0.99),
        r.peak_rss_kib / 1024
    );
}

fn main() {
    // `cargo bench` passes --bench; any other argument is a filter we do not use.
    let seconds: f64 = std::env::var("AUGUR_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let clients: usize = std::env::var("AUGUR_LOAD_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("shop.jsonl");
    let out = Command::new(env!("CARGO_BIN_EXE_augur"))
        .args([
            "generate", "--world", "shop", "--traces", "20000", "--seed", "1", "--out",
        ])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success());
    let mut bodies = Vec::new();
    read_paths(&[file], &ReadOptions::default(), &mut |b| {
        for chunk in b.spans.chunks(SPANS_PER_REQUEST) {
            if chunk.len() == SPANS_PER_REQUEST {
                bodies.push(encode_batch(&SpanBatch {
                    spans: chunk.to_vec(),
                    strings: b.strings.clone(),
                    links: Vec::new(),
                }));
            }
        }
        Ok(())
    })
    .unwrap();
    let bodies = Arc::new(bodies);
    println!(
        "{} requests of {SPANS_PER_REQUEST} spans ({} KiB each), {clients} HTTP clients, {seconds} s per run",
        bodies.len(),
        bodies[0].len() / 1024
    );
    report(
        "sustained (queue 1,000,000 spans)",
        &load("1000000", &bodies, seconds, clients),
    );
    report(
        "overload (queue 4,096 spans)",
        &load("4096", &bodies, seconds, clients),
    );
}
