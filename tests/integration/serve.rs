//! `augur serve`: a real server process, fed by real OTLP clients (a plain HTTP/1.1 client, a
//! tonic gRPC client, and the OpenTelemetry Python SDK when `.ci/run` made its venv), then
//! checked through its API, its state directory and the other commands.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use augur_ingest::live::encode_batch;
use augur_ingest::{read_paths, ReadOptions};

use crate::common::{augur, generate_shop, ok};

/// A running `augur serve`.
struct Server {
    child: Child,
    grpc: SocketAddr,
    http: SocketAddr,
    stderr: Arc<Mutex<String>>,
}

impl Server {
    fn start(state: &Path, extra: &[&str]) -> Server {
        let mut child = augur()
            .arg("serve")
            .arg("--state")
            .arg(state)
            .args([
                "--grpc",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--trace-idle",
                "0.5",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("augur serve starts");
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let pipe = child.stderr.take().unwrap();
        let log = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if let Some(rest) = line.strip_prefix("augur serve: OTLP/gRPC") {
                    let rest = rest.trim_start_matches(" (TLS)").trim_start_matches(" on ");
                    let grpc = rest.split(',').next().unwrap_or("").to_string();
                    let http = rest
                        .split("://")
                        .nth(1)
                        .and_then(|r| r.split(' ').next())
                        .unwrap_or("")
                        .to_string();
                    let _ = tx.send((grpc, http));
                }
                let mut log = log.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        let Ok((grpc, http)) = rx.recv_timeout(Duration::from_secs(60)) else {
            let _ = child.kill();
            panic!("augur serve did not start:\n{}", stderr.lock().unwrap());
        };
        Server {
            child,
            grpc: grpc.parse().unwrap(),
            http: http.parse().unwrap(),
            stderr,
        }
    }

    /// SIGTERM, and waits for the graceful stop.
    fn stop(mut self) -> String {
        let status = std::process::Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let started = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                let log = self.stderr.lock().unwrap().clone();
                assert!(s.success(), "augur serve exited with {s}:\n{log}");
                assert!(!log.contains("panicked"), "{log}");
                return log;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "augur serve did not stop on SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// kill -9.
    fn crash(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn get(&self, path: &str) -> (u16, String) {
        let (s, _, b) = http(self.http, "GET", path, &[], &[]);
        (s, String::from_utf8_lossy(&b).into_owned())
    }

    fn post_json(&self, path: &str, body: &str) -> (u16, String) {
        let (s, _, b) = http(
            self.http,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        );
        (s, String::from_utf8_lossy(&b).into_owned())
    }

    /// Waits until the model the API answers from holds `spans` spans.
    fn wait_for_model_spans(&self, spans: u64) {
        let started = Instant::now();
        loop {
            let (_, m) = self.get("/metrics");
            if metric(&m, "augur_model_spans") == Some(spans as f64) {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the model never reached {spans} spans; metrics:\n{m}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// A minimal HTTP/1.1 client: one request per connection. Returns status, headers, body.
fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.lines();
    let status: u16 = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .expect("a status line");
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, headers, raw[split + 4..].to_vec())
}

/// The shop's traces as protobuf export requests of about `per_request` spans each.
fn requests(file: &Path, per_request: usize) -> (Vec<Vec<u8>>, u64) {
    let opts = ReadOptions {
        strict: true,
        batch_size: per_request,
    };
    let mut out = Vec::new();
    let mut spans = 0;
    read_paths(&[file.to_path_buf()], &opts, &mut |b| {
        spans += b.len() as u64;
        // Readers batch by their own units (a JSON line is one batch), so split further.
        for chunk in b.spans.chunks(per_request) {
            out.push(encode_batch(&augur_ingest::SpanBatch {
                spans: chunk.to_vec(),
                strings: b.strings.clone(),
                links: Vec::new(),
            }));
        }
        Ok(())
    })
    .unwrap();
    (out, spans)
}

/// A runtime for the async clients (tonic, tokio-rustls).
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn shop(dir: &Path, traces: &str) -> PathBuf {
    PathBuf::from(generate_shop(dir, "shop.jsonl", traces, "5", &[]))
}

fn post_proto(
    server: &Server,
    body: &[u8],
    gzipped: bool,
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut headers = vec![("Content-Type", "application/x-protobuf")];
    let body = if gzipped {
        headers.push(("Content-Encoding", "gzip"));
        gzip(body)
    } else {
        body.to_vec()
    };
    http(server.http, "POST", "/v1/traces", &headers, &body)
}

#[test]
fn live_exports_build_the_model_learn_builds_and_the_api_answers_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = shop(dir.path(), "1500");
    let state = dir.path().join("state");
    let server = Server::start(&state, &[]);
    let (bodies, spans) = requests(&file, 700);
    for (i, body) in bodies.iter().enumerate() {
        let (status, _, resp) = post_proto(&server, body, i % 2 == 1);
        assert_eq!(status, 200, "{}", String::from_utf8_lossy(&resp));
        // A full success is an empty ExportTraceServiceResponse.
        assert!(resp.is_empty(), "no partial success expected");
    }
    // A JSON request with one good and one bad span: partial success, in JSON.
    let json = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"extra"}}]},"scopeSpans":[{"spans":[
        {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"GET /x","kind":"SPAN_KIND_SERVER","startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000001000000"},
        {"traceId":"","spanId":"b7ad6b7169203332","name":"bad"}]}]}]}"#;
    let (status, body) = server.post_json("/v1/traces", json);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["partialSuccess"]["rejectedSpans"], "1", "{body}");
    let spans = spans + 1;

    server.wait_for_model_spans(spans);
    let (status, graph) = server.get("/api/graph");
    assert_eq!(status, 200);
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    assert!(
        graph["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == "payment Charge"),
        "{graph}"
    );

    let (status, sim) = server.post_json(
        "/api/simulate",
        r#"{"faults":["payment:down"],"requests":500,"samples":4}"#,
    );
    assert_eq!(status, 200, "{sim}");
    let sim: serde_json::Value = serde_json::from_str(&sim).unwrap();
    assert_eq!(sim["faults"][0], "payment:down");
    assert!(sim["endpoints"][0]["predicted"]["error_rate"]["hi"].is_number());
    let (status, err) = server.post_json("/api/simulate", r#"{"faults":["paymnt:down"]}"#);
    assert_eq!(status, 400);
    assert!(err.contains("did you mean payment"), "{err}");
    let (status, rec) =
        server.get("/api/recommendations?top=2&scope=service&requests=300&samples=4");
    assert_eq!(status, 200, "{rec}");
    let rec: serde_json::Value = serde_json::from_str(&rec).unwrap();
    assert_eq!(rec["experiments"].as_array().unwrap().len(), 2);
    let (status, err) = server.get("/api/recommendations?top=0");
    assert_eq!(status, 400, "{err}");
    assert!(err.contains("at least 1"), "{err}");
    let (status, err) = server.get("/api/recommendations?top=2&top=3");
    assert_eq!(status, 400, "{err}");
    assert!(err.contains("given twice"), "{err}");
    let (status, err) = server.get("/api/recommendations?error_budget=inf");
    assert_eq!(status, 400, "{err}");
    let (status, value) = server.post_json(
        "/api/value",
        r#"{"fault":"payment:error=0.5","requests":300,"samples":4}"#,
    );
    assert_eq!(status, 200, "{value}");
    assert!(serde_json::from_str::<serde_json::Value>(&value).unwrap()["value_bits"].is_number());
    let (status, ledger) = server.get("/api/ledger");
    assert_eq!(status, 200, "{ledger}");
    let ledger: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    assert_eq!(ledger["entries"], serde_json::json!([]));
    assert_eq!(server.get("/api/nothing").0, 404);
    let (_, metrics) = server.get("/metrics");
    assert_eq!(
        metric(&metrics, "augur_spans_received_total"),
        Some(spans as f64)
    );
    assert_eq!(metric(&metrics, "augur_spans_rejected_total"), Some(1.0));
    assert!(metrics.contains("augur_http_request_duration_seconds_bucket{route=\"/api/simulate\""));

    let log = server.stop();
    assert!(log.contains("stopped"), "{log}");
    // The model kept in the state directory is the model `augur learn` makes of the same spans.
    let extra = dir.path().join("extra.json");
    std::fs::write(&extra, json).unwrap();
    let learned = dir.path().join("learned.json");
    ok(&[
        "learn",
        file.to_str().unwrap(),
        extra.to_str().unwrap(),
        "--out",
        learned.to_str().unwrap(),
    ]);
    // Which trace files a model learned is not what it learned (serve reads none).
    let load = |p: &Path| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        if let Some(o) = v.as_object_mut() {
            o.remove("learned_files");
        }
        v
    };
    assert_eq!(load(&state.join("model.json")), load(&learned));
    // And the lake holds every accepted span.
    let from_lake = dir.path().join("lake.json");
    ok(&[
        "learn",
        state.join("lake").to_str().unwrap(),
        "--out",
        from_lake.to_str().unwrap(),
    ]);
    assert_eq!(load(&from_lake), load(&learned));
}

#[test]
fn acknowledged_spans_survive_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let file = shop(dir.path(), "400");
    let state = dir.path().join("state");
    let (bodies, spans) = requests(&file, 300);
    let server = Server::start(&state, &["--snapshot-every", "3600"]);
    let (first, second) = bodies.split_at(bodies.len() / 2);
    for body in first {
        assert_eq!(post_proto(&server, body, false).0, 200);
    }
    // Killed right after the last acknowledgement: no snapshot was ever written.
    server.crash();
    let server = Server::start(&state, &[]);
    for body in second {
        assert_eq!(post_proto(&server, body, false).0, 200);
    }
    server.wait_for_model_spans(spans);
    let log = server.stop();
    assert!(log.contains("replayed"), "{log}");
    let learned = dir.path().join("learned.json");
    ok(&[
        "learn",
        file.to_str().unwrap(),
        "--out",
        learned.to_str().unwrap(),
    ]);
    let from_lake = dir.path().join("lake.json");
    ok(&[
        "learn",
        state.join("lake").to_str().unwrap(),
        "--out",
        from_lake.to_str().unwrap(),
    ]);
    // Which trace files a model learned is not what it learned (serve reads none).
    let load = |p: &Path| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        if let Some(o) = v.as_object_mut() {
            o.remove("learned_files");
        }
        v
    };
    assert_eq!(load(&state.join("model.json")), load(&learned), "model");
    assert_eq!(load(&from_lake), load(&learned), "lake: every span once");
    // A second server on the same state directory is refused while the first runs.
    let server = Server::start(&state, &[]);
    let out = augur()
        .args([
            "serve",
            "--state",
            state.to_str().unwrap(),
            "--grpc",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another augur serve"));
    server.stop();
}

#[test]
fn grpc_exports_from_a_tonic_client_and_bearer_tokens() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    let dir = tempfile::tempdir().unwrap();
    let file = shop(dir.path(), "200");
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let state = dir.path().join("state");
    let server = Server::start(
        &state,
        &[
            "--token-file",
            token.to_str().unwrap(),
            "--max-message-bytes",
            "200000",
        ],
    );
    let (bodies, spans) = requests(&file, 100);
    let rt = runtime();
    let endpoint = format!("http://{}", server.grpc);
    rt.block_on(async {
        let mut client = TraceServiceClient::connect(endpoint.clone()).await.unwrap();
        let req = ExportTraceServiceRequest::decode(&bodies[0][..]).unwrap();
        let denied = client.export(req.clone()).await.unwrap_err();
        assert_eq!(denied.code(), tonic::Code::Unauthenticated);
        for body in &bodies {
            let mut req =
                tonic::Request::new(ExportTraceServiceRequest::decode(&body[..]).unwrap());
            req.metadata_mut()
                .insert("authorization", "Bearer s3cret-token".parse().unwrap());
            let resp = client.export(req).await.unwrap().into_inner();
            assert!(resp.partial_success.is_none());
        }
        // Larger than --max-message-bytes: refused with a clear status.
        let all = ExportTraceServiceRequest {
            resource_spans: bodies
                .iter()
                .flat_map(|b| {
                    ExportTraceServiceRequest::decode(&b[..])
                        .unwrap()
                        .resource_spans
                })
                .collect(),
        };
        let mut req = tonic::Request::new(all);
        req.metadata_mut()
            .insert("authorization", "Bearer s3cret-token".parse().unwrap());
        let too_big = client.export(req).await.unwrap_err();
        assert_eq!(too_big.code(), tonic::Code::OutOfRange, "{too_big:?}");

        // Raw bytes over gRPC, as a client with its own encoder may send them: a message that is
        // not protobuf is INVALID_ARGUMENT (counted below with HTTP's), and an attribute value
        // that is not UTF-8 costs its request nothing (prost would refuse it whole).
        let channel = tonic::transport::Channel::from_shared(endpoint.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut raw = tonic::client::Grpc::new(channel);
        let path = tonic::codegen::http::uri::PathAndQuery::from_static(
            "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
        );
        let authorized = |bytes: Vec<u8>| {
            let mut req = tonic::Request::new(bytes);
            req.metadata_mut()
                .insert("authorization", "Bearer s3cret-token".parse().unwrap());
            req
        };
        raw.ready().await.unwrap();
        let garbage = raw
            .unary(authorized(b"\xff\xff\xff".to_vec()), path.clone(), RawBytes)
            .await
            .unwrap_err();
        assert_eq!(garbage.code(), tonic::Code::InvalidArgument, "{garbage:?}");
        let mut one = ExportTraceServiceRequest::decode(&bodies[0][..]).unwrap();
        let span = &mut one.resource_spans[0].scope_spans[0].spans[0];
        span.attributes
            .push(opentelemetry_proto::tonic::common::v1::KeyValue {
                key: "note".into(),
                value: Some(opentelemetry_proto::tonic::common::v1::AnyValue {
                    value: Some(
                        opentelemetry_proto::tonic::common::v1::any_value::Value::StringValue(
                            "zz-not-utf8-zz".into(),
                        ),
                    ),
                }),
                ..Default::default()
            });
        let mut bytes = one.encode_to_vec();
        let at = bytes
            .windows(14)
            .position(|w| w == b"zz-not-utf8-zz")
            .unwrap();
        bytes[at] = 0xff;
        raw.ready().await.unwrap();
        let kept = raw
            .unary(authorized(bytes), path, RawBytes)
            .await
            .unwrap()
            .into_inner();
        assert!(kept.partial_success.is_none(), "{kept:?}");
    });
    // HTTP needs the token too, except /healthz.
    assert_eq!(server.get("/healthz").0, 200);
    assert_eq!(server.get("/api/graph").0, 401);
    let (status, _, _) = http(
        server.http,
        "GET",
        "/metrics",
        &[("Authorization", "Bearer s3cret-token")],
        &[],
    );
    assert_eq!(status, 200);
    let (status, _, body) = http(
        server.http,
        "POST",
        "/v1/traces",
        &[
            ("Authorization", "Bearer s3cret-token"),
            ("Content-Type", "application/x-protobuf"),
        ],
        &vec![0u8; 300_000],
    );
    assert_eq!(status, 413, "{}", String::from_utf8_lossy(&body));
    // Not OTLP: garbage, and (with the scheme's name in lower case) a gzip body that does not
    // decompress. Both are a 400, counted with the requests that were not OTLP.
    for (scheme, encoding, body) in [
        ("Bearer", None, &b"\xff\xff\xff"[..]),
        ("bearer", Some("gzip"), &b"\x1f\x8b not gzip"[..]),
    ] {
        let auth = format!("{scheme} s3cret-token");
        let mut headers = vec![
            ("Authorization", auth.as_str()),
            ("Content-Type", "application/x-protobuf"),
        ];
        headers.extend(encoding.map(|e| ("Content-Encoding", e)));
        let (status, _, _) = http(server.http, "POST", "/v1/traces", &headers, body);
        assert_eq!(status, 400, "{scheme} {encoding:?}");
    }
    let (_, _, m) = http(
        server.http,
        "GET",
        "/metrics",
        &[("Authorization", "BEARER s3cret-token")],
        &[],
    );
    let m = String::from_utf8_lossy(&m);
    assert_eq!(
        metric(&m, "augur_export_requests_invalid_total"),
        Some(3.0), // the gRPC garbage, the HTTP garbage and the gzip that is not
        "{m}"
    );
    let log = server.stop();
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("model.json")).unwrap()).unwrap();
    // Every request's spans, and the first request's once more (sent again with the bad byte).
    let first: usize = ExportTraceServiceRequest::decode(&bodies[0][..])
        .unwrap()
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    assert_eq!(model["quality"]["spans"], spans + first as u64, "{log}");
}

/// The OpenTelemetry Python SDK's own OTLP exporters (gRPC and HTTP/protobuf) against a running
/// server. Needs AUGUR_OTEL_PYTHON: a Python with opentelemetry-sdk and both exporters (`.ci/run`
/// makes that venv and sets it).
#[test]
fn the_opentelemetry_python_sdk_exports_to_augur() {
    let Ok(python) = std::env::var("AUGUR_OTEL_PYTHON") else {
        eprintln!("SKIPPED: AUGUR_OTEL_PYTHON is not set (a Python with the OpenTelemetry SDK and OTLP exporters; .ci/run makes one)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let server = Server::start(&state, &[]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/otel_export.py");
    for (protocol, endpoint) in [
        ("grpc", format!("http://{}", server.grpc)),
        ("http", format!("http://{}/v1/traces", server.http)),
    ] {
        let out = std::process::Command::new(&python)
            .arg(&script)
            .args([protocol, &endpoint, "20"])
            .output()
            .expect("python runs");
        assert!(
            out.status.success(),
            "the {protocol} exporter failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // 20 requests × 3 spans, by each exporter.
    server.wait_for_model_spans(120);
    let (_, graph) = server.get("/api/graph");
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    let edges = graph["edges"].as_array().unwrap();
    for protocol in ["grpc", "http"] {
        let from = format!("py-frontend-{protocol} GET /checkout");
        let to = format!("py-payment-{protocol} Charge");
        let edge = edges
            .iter()
            .find(|e| e["from"] == from.as_str() && e["to"] == to.as_str())
            .unwrap_or_else(|| panic!("no edge {from} -> {to} in {graph}"));
        assert_eq!(edge["calls"], 20, "{edge}");
    }
    server.stop();
}

#[test]
fn tls_on_both_listeners() {
    use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls;

    let dir = tempfile::tempdir().unwrap();
    let file = shop(dir.path(), "50");
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    // A key that is not one is a clear error at start.
    let bad = augur()
        .args([
            "serve",
            "--state",
            dir.path().join("s0").to_str().unwrap(),
            "--tls-cert",
        ])
        .arg(&cert_path)
        .arg("--tls-key")
        .arg(&cert_path)
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a PEM private key"));

    let state = dir.path().join("state");
    let server = Server::start(
        &state,
        &[
            "--tls-cert",
            cert_path.to_str().unwrap(),
            "--tls-key",
            key_path.to_str().unwrap(),
        ],
    );
    let (bodies, spans) = requests(&file, 400);
    let rt = runtime();
    rt.block_on(async {
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(cert.pem()))
            .domain_name("localhost");
        let channel = tonic::transport::Channel::from_shared(format!("https://{}", server.grpc))
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = TraceServiceClient::new(channel);
        for body in &bodies {
            client
                .export(ExportTraceServiceRequest::decode(&body[..]).unwrap())
                .await
                .unwrap();
        }
        // Plain text to a TLS listener does not get through.
        let plain = TraceServiceClient::connect(format!("http://{}", server.grpc)).await;
        if let Ok(mut c) = plain {
            let req = ExportTraceServiceRequest::decode(&bodies[0][..]).unwrap();
            assert!(c.export(req).await.is_err());
        }
        // HTTPS to the API, trusting only our certificate.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.der().clone()).unwrap();
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let tcp = tokio::net::TcpStream::connect(server.http).await.unwrap();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut tls = connector.connect(name, tcp).await.unwrap();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        let _ = tls.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    });
    // Plain HTTP to the TLS listener gets no HTTP answer.
    let mut s = TcpStream::connect(server.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    assert!(!String::from_utf8_lossy(&raw).starts_with("HTTP/1.1 200"));
    server.stop();
    let model: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("model.json")).unwrap()).unwrap();
    assert_eq!(model["quality"]["spans"], spans);
}

#[test]
fn an_experiment_received_live_is_recorded_and_the_live_model_learns_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let normal = shop(dir.path(), "1500");
    let experiment = PathBuf::from(generate_shop(
        dir.path(),
        "payment-down.jsonl",
        "500",
        "6",
        &["--fault", "payment:down"],
    ));
    let state = dir.path().join("state");
    let server = Server::start(&state, &[]);
    let (mut bodies, mut spans) = requests(&normal, 700);
    let (more, n) = requests(&experiment, 700);
    bodies.extend(more);
    spans += n;
    for body in &bodies {
        assert_eq!(post_proto(&server, body, false).0, 200);
    }
    server.wait_for_model_spans(spans);
    // The experiment's traces wait, named by their fault, outside the live model.
    let started = Instant::now();
    let waiting = loop {
        let (status, body) = server.get("/api/experiments");
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        if v["experiments"][0]["traces"] == 500 {
            break v;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the experiment's traces never all arrived: {body}"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(waiting["experiments"][0]["fault"], "payment:down");
    assert_eq!(waiting["experiments"].as_array().unwrap().len(), 1);
    let (_, before) = server.get("/api/graph");

    // Wrong asks are clear errors.
    let (status, err) = server.post_json("/api/outcome", r#"{"fault":"paymnt:down"}"#);
    assert_eq!(status, 422, "{err}");
    assert!(err.contains("did you mean payment"), "{err}");
    let (status, err) = server.post_json("/api/outcome", r#"{"fault":"cart:down"}"#);
    assert_eq!(status, 404, "{err}");
    assert!(err.contains("waiting: payment:down"), "{err}");
    let (status, err) = server.post_json(
        "/api/outcome",
        r#"{"fault":"payment:down","traffic_share":2}"#,
    );
    assert_eq!(status, 400, "{err}");

    let ask = r#"{"fault":"payment:down","requests":500,"samples":8,"seed":3}"#;
    let (status, live_report) = server.post_json("/api/outcome", ask);
    assert_eq!(status, 200, "{live_report}");
    let live_report: serde_json::Value = serde_json::from_str(&live_report).unwrap();
    let (_, after) = server.get("/api/graph");
    assert_ne!(before, after, "the evidence changed the live model");
    let none = serde_json::json!({ "experiments": [] });
    let json_of =
        |(_, body): (u16, String)| -> serde_json::Value { serde_json::from_str(&body).unwrap() };
    assert_eq!(json_of(server.get("/api/experiments")), none);
    let (status, again) = server.post_json("/api/outcome", ask);
    assert_eq!(status, 404, "recorded once: {again}");
    let (_, ledger) = server.get("/api/ledger");
    let ledger: serde_json::Value = serde_json::from_str(&ledger).unwrap();
    assert_eq!(ledger["entries"].as_array().unwrap().len(), 1, "{ledger}");

    // The same as `augur outcome` on the model `augur learn` makes of the normal traffic, with
    // the experiment's trace file: the same report, the same refined model.
    let learned = dir.path().join("normal.json");
    ok(&[
        "learn",
        normal.to_str().unwrap(),
        "--out",
        learned.to_str().unwrap(),
    ]);
    let refined = dir.path().join("refined.json");
    let (cli_report, _) = ok(&[
        "outcome",
        learned.to_str().unwrap(),
        "--fault",
        "payment:down",
        "--traces",
        experiment.to_str().unwrap(),
        "--out",
        refined.to_str().unwrap(),
        "--requests",
        "500",
        "--samples",
        "8",
        "--seed",
        "3",
        "--json",
    ]);
    let cli_report: serde_json::Value = serde_json::from_str(&cli_report).unwrap();
    assert_eq!(live_report, cli_report);
    let graph_of = |model: &Path| -> serde_json::Value {
        serde_json::from_str(&ok(&["graph", model.to_str().unwrap(), "--format", "json"]).0)
            .unwrap()
    };
    let after: serde_json::Value = serde_json::from_str(&after).unwrap();
    assert_eq!(after, graph_of(&refined));

    // The evidence lives in the ledger: a restarted server has it, and no experiment waits.
    server.stop();
    // Which trace files a model learned is not what it learned (serve reads none).
    let load = |p: &Path| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
        if let Some(o) = v.as_object_mut() {
            o.remove("learned_files");
        }
        v
    };
    // The model kept in the state directory is the refined one, but for having read (and set
    // aside) the experiment's spans too.
    let (mut kept, refined) = (load(&state.join("model.json")), load(&refined));
    assert_eq!(kept["quality"]["experiment_traces"], 500);
    let q = &mut kept["quality"];
    q["spans"] = (q["spans"].as_u64().unwrap() - q["experiment_spans"].as_u64().unwrap()).into();
    q["experiment_traces"] = 0.into();
    q["experiment_spans"] = 0.into();
    assert_eq!(kept, refined);
    let server = Server::start(&state, &[]);
    let (_, graph) = server.get("/api/graph");
    let graph: serde_json::Value = serde_json::from_str(&graph).unwrap();
    assert_eq!(graph, after);
    assert_eq!(json_of(server.get("/api/experiments")), none);

    // An outcome recorded with `augur outcome --ledger` into the server's ledger reaches the
    // live model too, while it runs.
    let second = generate_shop(
        dir.path(),
        "currency-error.jsonl",
        "300",
        "7",
        &["--fault", "currency:error=0.5"],
    );
    let refined2 = dir.path().join("refined2.json");
    ok(&[
        "outcome",
        state.join("model.json").to_str().unwrap(),
        "--fault",
        "currency:error=0.5",
        "--traces",
        &second,
        "--out",
        refined2.to_str().unwrap(),
        "--ledger",
        state.join("model.ledger.jsonl").to_str().unwrap(),
        "--requests",
        "500",
        "--samples",
        "8",
    ]);
    let want = graph_of(&refined2);
    assert_ne!(want, after);
    let started = Instant::now();
    while json_of(server.get("/api/graph")) != want {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the live model never took in the ledger's new evidence"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    server.stop();
}

/// A gRPC codec sending a request's bytes as they are (what tonic's generated client cannot:
/// its messages are always valid protobuf).
#[derive(Clone, Copy, Default)]
struct RawBytes;

impl tonic::codec::Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl tonic::codec::Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Vec<u8>,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        prost::bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}

impl tonic::codec::Decoder for RawBytes {
    type Item = opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Self::Item>, tonic::Status> {
        use prost::Message;
        Self::Item::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}
