//! `augur serve`: live OTLP ingest (gRPC and HTTP) that keeps the model current, and the query
//! API. See `docs/SERVE.md` for the guarantees, and [`live`] for the data flow.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::future::IntoFuture;

use anyhow::{bail, Context, Result};

mod grpc;
mod http;
pub mod live;

/// `augur serve`'s options.
#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Where augur keeps its state: the write-ahead log, the Parquet span lake, the model
    /// snapshots and `model.json` (the latest snapshot's model, readable by every other command).
    /// Nothing is written outside it. One server per directory.
    #[arg(long, value_name = "DIR")]
    pub state: PathBuf,
    /// Address of the OTLP/gRPC listener (port 0 picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4317")]
    pub grpc: SocketAddr,
    /// Address of the HTTP listener: OTLP/HTTP `POST /v1/traces` and the query API.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:4318")]
    pub http: SocketAddr,
    /// A file holding a bearer token; when given, every request but `GET /healthz` must carry
    /// `Authorization: Bearer <token>` (gRPC: `authorization` metadata).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The team's hypotheses (TOML; see docs/INTENTS.md), for the recommendation and value API.
    #[arg(long, value_name = "FILE")]
    pub intents: Option<PathBuf>,
    /// Spans accepted but not yet applied that may wait in memory; past it, exports are refused
    /// with a retryable answer (gRPC UNAVAILABLE with RetryInfo, HTTP 503 with Retry-After).
    #[arg(long, value_name = "SPANS", default_value_t = 1_000_000)]
    pub queue_spans: u64,
    /// Largest export request, bytes (after decompression for HTTP).
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_message_bytes: usize,
    /// A trace with no new span for this many seconds is folded into the model.
    #[arg(long, value_name = "SECONDS", default_value_t = 10.0)]
    pub trace_idle: f64,
    /// Seconds between model snapshots (each also truncates the write-ahead log).
    #[arg(long, value_name = "SECONDS", default_value_t = 60.0)]
    pub snapshot_every: f64,
    /// Serve both listeners over TLS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

/// The certificate chain and key of `--tls-cert/--tls-key`, read and checked.
struct Tls {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    acceptor: tokio_rustls::TlsAcceptor,
}

fn load_tls(cert: &Path, key: &Path) -> Result<Tls> {
    use tokio_rustls::rustls;
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert_pem = std::fs::read(cert)
        .with_context(|| format!("reading the certificate {}", cert.display()))?;
    let key_pem =
        std::fs::read(key).with_context(|| format!("reading the private key {}", key.display()))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| anyhow::anyhow!("{}: not a PEM certificate chain: {e}", cert.display()))?;
    if chain.is_empty() {
        bail!("{}: no certificate in it (expected PEM)", cert.display());
    }
    let private = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| anyhow::anyhow!("{}: not a PEM private key: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .with_context(|| {
            format!(
                "{} and {} do not make a usable TLS identity",
                cert.display(),
                key.display()
            )
        })?;
    let mut config = config;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Tls {
        cert_pem,
        key_pem,
        acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
    })
}

/// An axum listener that completes TLS handshakes off the accept path (a slow or broken client
/// cannot hold up the others) and hands over only the connections that finished theirs.
struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(
        tokio_rustls::server::TlsStream<tokio::net::TcpStream>,
        SocketAddr,
    )>,
    addr: SocketAddr,
}

/// How long a client gets to complete its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl TlsListener {
    fn new(listener: tokio::net::TcpListener, acceptor: tokio_rustls::TlsAcceptor) -> Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::warn!("accepting a connection failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, addr })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<tokio::net::TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(c) => c,
            // The accept loop never ends while the listener lives.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// True when `given` (an `Authorization` value) is `Bearer <token>`, compared in constant time
/// (the scheme's name in any case, as RFC 7235 has it).
pub fn bearer_matches(given: Option<&str>, token: &str) -> bool {
    let Some(given) = given.and_then(|g| {
        g.get(..7)
            .filter(|s| s.eq_ignore_ascii_case("bearer "))
            .and_then(|_| g.get(7..))
    }) else {
        return false;
    };
    let (a, b) = (given.trim().as_bytes(), token.as_bytes());
    // Length is not secret; the bytes are compared without an early exit.
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn seconds(name: &str, s: f64) -> Result<Duration> {
    if !(s.is_finite() && s > 0.0) {
        bail!("{name} must be a positive number of seconds");
    }
    Ok(Duration::from_secs_f64(s))
}

/// Locks the state directory for this process (released when the process ends, even by kill -9).
fn lock_state(dir: &Path) -> Result<std::fs::File> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("LOCK");
    let file = std::fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by another augur serve (one server per state directory)",
            dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("locking {}", path.display()))
        }
    }
}

pub fn run(args: ServeArgs) -> Result<()> {
    let token = match &args.token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("reading the token file {}", p.display()))?;
            let t = t.trim().to_string();
            if t.is_empty() {
                bail!("the token file {} is empty", p.display());
            }
            Some(Arc::new(t))
        }
        None => None,
    };
    let intents = match &args.intents {
        Some(p) => {
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("reading the intents file {}", p.display()))?;
            // Endpoints and services are checked against the model at each query (the live
            // model grows); the rest now.
            augur_recommender::intents::check_syntax(&text)
                .map_err(|m| anyhow::anyhow!("--intents {}: {m}", p.display()))?;
            Some(text)
        }
        None => None,
    };
    if args.max_message_bytes < 1024 {
        bail!("--max-message-bytes must be at least 1024");
    }
    if args.queue_spans == 0 {
        bail!("--queue-spans must be at least 1");
    }
    let opts = live::LiveOptions {
        queue_spans: args.queue_spans,
        trace_idle: seconds("--trace-idle", args.trace_idle)?,
        snapshot_every: seconds("--snapshot-every", args.snapshot_every)?,
        publish_every: Duration::from_secs(1),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(load_tls(c, k)?),
        _ => None,
    };
    let _lock = lock_state(&args.state)?;
    let (live, worker, rec) = live::start(&args.state, opts)?;
    if rec.unfinished_parts > 0 {
        eprintln!(
            "removed {} lake parts left unfinished by a crash (their spans are replayed from the log)",
            rec.unfinished_parts
        );
    }
    match rec.snapshot {
        Some(b) => eprintln!(
            "resumed from snapshot {b}: {} spans in the model, {} in open traces; replayed {} logged requests ({} spans){}",
            rec.model_spans,
            rec.pending_spans,
            rec.replayed.records,
            rec.replayed_spans,
            if rec.replayed.torn > 0 { format!(", {} torn records dropped (never acknowledged)", rec.replayed.torn) } else { String::new() },
        ),
        None if rec.replayed.records > 0 => eprintln!(
            "replayed {} logged requests ({} spans) from {}",
            rec.replayed.records,
            rec.replayed_spans,
            args.state.display()
        ),
        None => {}
    }
    if rec.experiments_waiting > 0 {
        eprintln!(
            "{} experiments' traces wait to be recorded (GET /api/experiments, POST /api/outcome)",
            rec.experiments_waiting
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let served = runtime.block_on(serve(&args, Arc::clone(&live), token, intents, tls));
    // Connections still open after the grace period are closed here.
    runtime.shutdown_timeout(Duration::from_secs(1));
    // Whatever happened to the listeners, drain the queue and snapshot.
    live.close();
    let worked = worker
        .join()
        .map_err(|_| anyhow::anyhow!("the model worker panicked"))?;
    served?;
    worked?;
    eprintln!(
        "stopped; the model is in {}",
        args.state.join("model.json").display()
    );
    Ok(())
}

async fn serve(
    args: &ServeArgs,
    live: Arc<live::Live>,
    token: Option<Arc<String>>,
    intents: Option<String>,
    tls: Option<Tls>,
) -> Result<()> {
    let grpc_listener = tokio::net::TcpListener::bind(args.grpc)
        .await
        .with_context(|| format!("listening for OTLP/gRPC on {}", args.grpc))?;
    let http_listener = tokio::net::TcpListener::bind(args.http)
        .await
        .with_context(|| format!("listening for HTTP on {}", args.http))?;
    let grpc_addr = grpc_listener.local_addr()?;
    let http_addr = http_listener.local_addr()?;
    if !grpc_addr.ip().is_loopback() || !http_addr.ip().is_loopback() {
        if token.is_none() {
            tracing::warn!("listening beyond loopback without --token-file: anyone who can reach it may send spans and query");
        }
        if tls.is_none() {
            tracing::warn!("listening beyond loopback without TLS (--tls-cert/--tls-key)");
        }
    }
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!(
        "augur serve: OTLP/gRPC{} on {grpc_addr}, OTLP/HTTP and the API on {scheme}://{http_addr} (state in {})",
        if tls.is_some() { " (TLS)" } else { "" },
        args.state.display()
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let service = grpc::OtlpServer {
        live: Arc::clone(&live),
        max_message_bytes: args.max_message_bytes,
    };
    let service = tonic::service::interceptor::InterceptedService::new(
        service,
        grpc::Auth {
            token: token.clone(),
        },
    );
    let mut grpc_stop = stop_rx.clone();
    let mut builder = tonic::transport::Server::builder();
    if let Some(tls) = &tls {
        builder = builder
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(
                tonic::transport::Identity::from_pem(&tls.cert_pem, &tls.key_pem),
            ))
            .context("configuring TLS for gRPC")?;
    }
    let grpc_server = builder.add_service(service).serve_with_incoming_shutdown(
        tokio_stream_from(grpc_listener),
        async move {
            let _ = grpc_stop.wait_for(|s| *s).await;
        },
    );
    let app = Arc::new(http::App {
        live: Arc::clone(&live),
        token,
        intents,
        ledger: augur_recommender::ledger::ledger_path(&args.state.join("model.json")),
        max_body: args.max_message_bytes,
        latency: Mutex::new(Default::default()),
    });
    let router = axum::Router::new().fallback(http::handle).with_state(app);
    let mut http_stop = stop_rx.clone();
    let http_stopped = async move {
        let _ = http_stop.wait_for(|s| *s).await;
    };
    let http_server: std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<()>> + Send>,
    > = match &tls {
        Some(tls) => {
            let listener = TlsListener::new(http_listener, tls.acceptor.clone())?;
            Box::pin(
                axum::serve(listener, router)
                    .with_graceful_shutdown(http_stopped)
                    .into_future(),
            )
        }
        None => Box::pin(
            axum::serve(http_listener, router)
                .with_graceful_shutdown(http_stopped)
                .into_future(),
        ),
    };
    let mut grpc_task = tokio::spawn(grpc_server);
    let mut http_task = tokio::spawn(http_server);
    // Run until a signal, or until a listener fails.
    let early = tokio::select! {
        _ = wait_for_signal() => None,
        r = &mut grpc_task => Some(("gRPC", r.map(|r| r.map_err(anyhow::Error::from)))),
        r = &mut http_task => Some(("HTTP", r.map(|r| r.map_err(anyhow::Error::from)))),
    };
    eprintln!(
        "stopping: finishing requests in flight, then draining the queue and writing a snapshot"
    );
    let _ = stop_tx.send(true);
    if let Some((which, result)) = early {
        grpc_task.abort();
        http_task.abort();
        return match result {
            Ok(Ok(())) => Err(anyhow::anyhow!("the {which} listener stopped unexpectedly")),
            Ok(Err(e)) => Err(e.context(format!("the {which} listener"))),
            Err(e) => Err(anyhow::anyhow!("the {which} listener failed: {e}")),
        };
    }
    // Clients that keep connections open (a Collector does) must not hold the stop up: what
    // they sent and were acknowledged is already in the log.
    let both = async {
        let (g, h) = (grpc_task.await, http_task.await);
        (g, h)
    };
    match tokio::time::timeout(SHUTDOWN_GRACE, both).await {
        Ok((g, h)) => {
            g.context("the gRPC listener")?
                .context("the gRPC listener")?;
            h.context("the HTTP listener")?
                .context("the HTTP listener")?;
        }
        Err(_) => tracing::warn!(
            "connections still open after {}s; closing them",
            SHUTDOWN_GRACE.as_secs()
        ),
    }
    Ok(())
}

/// How long requests in flight get to finish after SIGTERM.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The incoming connections of a bound listener, as tonic takes them.
fn tokio_stream_from(listener: tokio::net::TcpListener) -> tonic::transport::server::TcpIncoming {
    tonic::transport::server::TcpIncoming::from(listener)
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_must_match_exactly() {
        assert!(bearer_matches(Some("Bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some("bearer s3cret"), "s3cret"));
        assert!(bearer_matches(Some("BEARER s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearers3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Basic s3cret"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cre"), "s3cret"));
        assert!(!bearer_matches(Some("Bearer s3cres"), "s3cret"));
        assert!(!bearer_matches(Some("s3cret"), "s3cret"));
        assert!(!bearer_matches(None, "s3cret"));
    }
}
