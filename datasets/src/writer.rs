//! Writers of span batches in every trace format augur reads, streaming batch by batch to any
//! [`std::io::Write`].
//!
//! JSON is written by hand into a reused buffer (no JSON trees); OTLP protobuf goes through
//! `opentelemetry-proto` and `prost`; Parquet through `augur-ingest`'s [`ParquetSpanWriter`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};

use augur_ingest::{
    fnv1a64, ParquetSpanWriter, Span, SpanBatch, SpanId, SpanKind, StatusCode, TraceId,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
use prost::Message;

use crate::error::DatasetError;
use crate::world::PeerAttribute;

/// The instrumentation scope name written in OTLP output.
pub const SCOPE_NAME: &str = "augur-datasets";

/// Default most spans per OTLP JSON line or protobuf stream message.
pub const DEFAULT_SPANS_PER_MESSAGE: usize = 4096;

/// Flush the internal buffer to the output past this size.
const FLUSH_BYTES: usize = 1 << 20;

/// The trace formats this crate writes (every format `augur-ingest` reads).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TraceFormat {
    /// One OTLP/JSON `ExportTraceServiceRequest` document (one `resourceSpans` entry per line).
    OtlpJson,
    /// The Collector file exporter: one `ExportTraceServiceRequest` JSON per line.
    OtlpJsonl,
    /// One bare protobuf `ExportTraceServiceRequest` (written as concatenated requests, which
    /// protobuf decodes as their merge: one request holding every `resourceSpans`).
    OtlpProto,
    /// Protobuf requests, each prefixed by its length as 4 bytes big-endian.
    OtlpProtoStream,
    /// Jaeger query API JSON: `{"data": [trace, ...]}`.
    Jaeger,
    /// Zipkin v2 JSON: one array of spans; a call's client and server share the span id.
    Zipkin,
    /// The TrainTicket CSV span table. It has no kinds, statuses, peers or attributes: those are
    /// lost, and the service is only recoverable from the pod name.
    Csv,
    /// augur's span table in Parquet (lossless).
    Parquet,
}

impl TraceFormat {
    /// Every format.
    pub const ALL: [TraceFormat; 8] = [
        TraceFormat::OtlpJson,
        TraceFormat::OtlpJsonl,
        TraceFormat::OtlpProto,
        TraceFormat::OtlpProtoStream,
        TraceFormat::Jaeger,
        TraceFormat::Zipkin,
        TraceFormat::Csv,
        TraceFormat::Parquet,
    ];

    /// The short name (`otlp-json`, `otlp-jsonl`, ...), the same as `augur_ingest::Format::name`.
    pub fn name(self) -> &'static str {
        match self {
            TraceFormat::OtlpJson => "otlp-json",
            TraceFormat::OtlpJsonl => "otlp-jsonl",
            TraceFormat::OtlpProto => "otlp-proto",
            TraceFormat::OtlpProtoStream => "otlp-proto-stream",
            TraceFormat::Jaeger => "jaeger-json",
            TraceFormat::Zipkin => "zipkin-json",
            TraceFormat::Csv => "csv",
            TraceFormat::Parquet => "parquet",
        }
    }

    /// A conventional file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            TraceFormat::OtlpJson | TraceFormat::Jaeger | TraceFormat::Zipkin => "json",
            TraceFormat::OtlpJsonl => "jsonl",
            TraceFormat::OtlpProto => "pb",
            TraceFormat::OtlpProtoStream => "pbstream",
            TraceFormat::Csv => "csv",
            TraceFormat::Parquet => "parquet",
        }
    }
}

impl fmt::Display for TraceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TraceFormat {
    type Err = DatasetError;
    fn from_str(s: &str) -> Result<Self, DatasetError> {
        TraceFormat::ALL
            .into_iter()
            .find(|f| {
                f.name() == s
                    || (s == "jaeger" && *f == TraceFormat::Jaeger)
                    || (s == "zipkin" && *f == TraceFormat::Zipkin)
            })
            .ok_or_else(|| DatasetError::InvalidParam {
                param: "format".into(),
                reason: format!(
                    "unknown format {s:?}; one of {}",
                    TraceFormat::ALL.map(TraceFormat::name).join(", ")
                ),
            })
    }
}

/// A file removed when dropped (Parquet is staged in a temporary file, as it needs a seekable
/// output).
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Per-batch lookups by symbol: JSON-quoted strings and peer attribute keys.
#[derive(Default)]
struct Prepared {
    quoted: Vec<Vec<u8>>,
    peer_key: Vec<&'static str>,
    pod: Vec<String>,
}

/// Writes span batches in one [`TraceFormat`] to `W`. Call [`TraceWriter::finish`] at the end:
/// the closing brackets (and Parquet's footer) are written then.
pub struct TraceWriter<W: Write> {
    format: TraceFormat,
    out: W,
    buf: Vec<u8>,
    started: bool,
    /// No item has been written yet (for separators).
    first: bool,
    spans: u64,
    spans_per_message: usize,
    peer_attrs: BTreeMap<String, PeerAttribute>,
    order: Vec<u32>,
    prep: Prepared,
    parquet: Option<(ParquetSpanWriter, TempFile)>,
}

impl<W: Write> TraceWriter<W> {
    /// A writer of `format` to `out`. Peers are written as `peer.service` unless
    /// [`TraceWriter::with_peer_attributes`] says otherwise.
    pub fn new(format: TraceFormat, out: W) -> Self {
        TraceWriter {
            format,
            out,
            buf: Vec::with_capacity(FLUSH_BYTES + (64 << 10)),
            started: false,
            first: true,
            spans: 0,
            spans_per_message: DEFAULT_SPANS_PER_MESSAGE,
            peer_attrs: BTreeMap::new(),
            order: Vec::new(),
            prep: Prepared::default(),
            parquet: None,
        }
    }

    /// Names each listed peer with its attribute (`db.system`, `messaging.destination.name`);
    /// see [`crate::World::peer_attributes`].
    pub fn with_peer_attributes(mut self, attrs: BTreeMap<String, PeerAttribute>) -> Self {
        self.peer_attrs = attrs;
        self
    }

    /// Most spans per OTLP JSON line or protobuf stream message (at least 1).
    pub fn with_spans_per_message(mut self, n: usize) -> Self {
        self.spans_per_message = n.max(1);
        self
    }

    /// Spans written so far.
    pub fn spans_written(&self) -> u64 {
        self.spans
    }

    /// Writes a batch.
    pub fn write_batch(&mut self, batch: &SpanBatch) -> Result<(), DatasetError> {
        self.start()?;
        if batch.is_empty() {
            return Ok(());
        }
        self.prepare(batch);
        match self.format {
            TraceFormat::OtlpJson => self.otlp_json(batch, false)?,
            TraceFormat::OtlpJsonl => self.otlp_json(batch, true)?,
            TraceFormat::OtlpProto | TraceFormat::OtlpProtoStream => self.otlp_proto(batch)?,
            TraceFormat::Jaeger => self.jaeger(batch)?,
            TraceFormat::Zipkin => self.zipkin(batch)?,
            TraceFormat::Csv => self.csv(batch)?,
            TraceFormat::Parquet => {
                if let Some((w, _)) = self.parquet.as_mut() {
                    w.write(batch)?;
                }
            }
        }
        self.spans += batch.len() as u64;
        self.flush_if_full()
    }

    /// Ends the file and returns the output (flushed).
    pub fn finish(mut self) -> Result<W, DatasetError> {
        self.start()?;
        match self.format {
            TraceFormat::OtlpJson => self.buf.extend_from_slice(b"\n]}\n"),
            TraceFormat::Jaeger => self
                .buf
                .extend_from_slice(b"\n],\"total\":0,\"limit\":0,\"offset\":0,\"errors\":null}\n"),
            TraceFormat::Zipkin => self.buf.extend_from_slice(b"\n]\n"),
            TraceFormat::Parquet => {
                if let Some((w, tmp)) = self.parquet.take() {
                    w.finish()?;
                    let mut f = std::fs::File::open(&tmp.0)?;
                    std::io::copy(&mut f, &mut self.out)?;
                }
            }
            _ => {}
        }
        self.out.write_all(&self.buf)?;
        self.buf.clear();
        self.out.flush()?;
        Ok(self.out)
    }

    fn start(&mut self) -> Result<(), DatasetError> {
        if self.started {
            return Ok(());
        }
        self.started = true;
        match self.format {
            TraceFormat::OtlpJson => self.buf.extend_from_slice(b"{\"resourceSpans\":[\n"),
            TraceFormat::Jaeger => self.buf.extend_from_slice(b"{\"data\":[\n"),
            TraceFormat::Zipkin => self.buf.extend_from_slice(b"[\n"),
            TraceFormat::Csv => self
                .buf
                .extend_from_slice(b"TraceID,SpanID,ParentID,PodName,OperationName,StartTimeUnixNano,EndTimeUnixNano,Duration\n"),
            TraceFormat::Parquet => {
                static COUNTER: AtomicU64 = AtomicU64::new(0);
                let path = std::env::temp_dir().join(format!(
                    "augur-datasets-{}-{}-{}.parquet",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_nanos())
                        .unwrap_or(0)
                ));
                let w = ParquetSpanWriter::create_new(&path)?;
                self.parquet = Some((w, TempFile(path)));
            }
            TraceFormat::OtlpJsonl | TraceFormat::OtlpProto | TraceFormat::OtlpProtoStream => {}
        }
        Ok(())
    }

    fn flush_if_full(&mut self) -> Result<(), DatasetError> {
        if self.buf.len() >= FLUSH_BYTES {
            self.out.write_all(&self.buf)?;
            self.buf.clear();
        }
        Ok(())
    }

    fn prepare(&mut self, batch: &SpanBatch) {
        let p = &mut self.prep;
        p.quoted.clear();
        p.peer_key.clear();
        p.pod.clear();
        for s in batch.strings.strings() {
            let mut q = Vec::with_capacity(s.len() + 2);
            push_json_str(&mut q, s);
            p.quoted.push(q);
            p.peer_key.push(
                self.peer_attrs
                    .get(s)
                    .copied()
                    .unwrap_or(PeerAttribute::PeerService)
                    .key(),
            );
            if self.format == TraceFormat::Csv {
                let mut pod = Vec::new();
                push_csv_field(&mut pod, &pod_name(s));
                p.pod.push(String::from_utf8_lossy(&pod).into_owned());
            }
        }
    }

    /// Each linking span's link, by its (trace id, span id).
    fn links_of(batch: &SpanBatch) -> Links {
        batch
            .links
            .iter()
            .filter_map(|l| {
                let s = batch.spans.get(l.span as usize)?;
                Some(((s.trace_id, s.span_id), (l.trace_id, l.span_id)))
            })
            .collect()
    }

    /// Orders span indices of `spans` by service (stable), into `self.order`.
    fn order_by_service(&mut self, spans: &[Span]) {
        self.order.clear();
        self.order.extend(0..spans.len() as u32);
        self.order
            .sort_by_key(|&i| spans.get(i as usize).map_or(0, |s| s.service));
    }

    fn otlp_json(&mut self, batch: &SpanBatch, lines: bool) -> Result<(), DatasetError> {
        let links = Self::links_of(batch);
        let chunk = if lines {
            self.spans_per_message
        } else {
            usize::MAX
        };
        for spans in batch.spans.chunks(chunk.min(batch.spans.len().max(1))) {
            self.order_by_service(spans);
            if lines {
                self.buf.extend_from_slice(b"{\"resourceSpans\":[");
            }
            let mut i = 0;
            let mut first_rs = true;
            while i < self.order.len() {
                let service = spans.get(self.order[i] as usize).map_or(0, |s| s.service);
                if lines {
                    if !first_rs {
                        self.buf.push(b',');
                    }
                } else if !self.first {
                    self.buf.extend_from_slice(b",\n");
                }
                first_rs = false;
                self.first = false;
                self.buf.extend_from_slice(b"{\"resource\":{\"attributes\":[{\"key\":\"service.name\",\"value\":{\"stringValue\":");
                self.buf.extend_from_slice(quoted(&self.prep, service));
                self.buf
                    .extend_from_slice(b"}}]},\"scopeSpans\":[{\"scope\":{\"name\":\"");
                self.buf.extend_from_slice(SCOPE_NAME.as_bytes());
                self.buf.extend_from_slice(b"\"},\"spans\":[");
                let mut first_span = true;
                while let Some(s) = self.order.get(i).and_then(|&k| spans.get(k as usize)) {
                    if s.service != service {
                        break;
                    }
                    if !first_span {
                        self.buf.push(b',');
                    }
                    first_span = false;
                    otlp_json_span(&mut self.buf, &self.prep, s, link(&links, s));
                    i += 1;
                }
                self.buf.extend_from_slice(b"]}]}");
            }
            if lines {
                self.buf.extend_from_slice(b"]}\n");
            }
            self.flush_if_full()?;
        }
        Ok(())
    }

    fn otlp_proto(&mut self, batch: &SpanBatch) -> Result<(), DatasetError> {
        let links = Self::links_of(batch);
        for spans in batch.spans.chunks(self.spans_per_message) {
            self.order_by_service(spans);
            let mut req = ExportTraceServiceRequest::default();
            let mut i = 0;
            while i < self.order.len() {
                let service = spans.get(self.order[i] as usize).map_or(0, |s| s.service);
                let mut out = Vec::new();
                while let Some(s) = self.order.get(i).and_then(|&k| spans.get(k as usize)) {
                    if s.service != service {
                        break;
                    }
                    out.push(proto_span(batch, &self.prep, s, link(&links, s)));
                    i += 1;
                }
                req.resource_spans.push(ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![kv("service.name", batch.str(service))],
                        ..Default::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: SCOPE_NAME.into(),
                            ..Default::default()
                        }),
                        spans: out,
                        ..Default::default()
                    }],
                    ..Default::default()
                });
            }
            let len = req.encoded_len();
            if self.format == TraceFormat::OtlpProtoStream {
                let n = u32::try_from(len).map_err(|_| DatasetError::InvalidParam {
                    param: "spans_per_message".into(),
                    reason: format!("a message of {len} bytes does not fit a 4-byte length prefix"),
                })?;
                self.buf.extend_from_slice(&n.to_be_bytes());
            }
            self.buf.reserve(len);
            req.encode_raw(&mut self.buf);
            self.flush_if_full()?;
        }
        Ok(())
    }

    fn jaeger(&mut self, batch: &SpanBatch) -> Result<(), DatasetError> {
        let links = Self::links_of(batch);
        let mut procs: Vec<u32> = Vec::new();
        let mut start = 0;
        while start < batch.spans.len() {
            let tid = batch
                .spans
                .get(start)
                .map(|s| s.trace_id)
                .unwrap_or_default();
            let end = batch.spans[start..]
                .iter()
                .position(|s| s.trace_id != tid)
                .map_or(batch.spans.len(), |p| start + p);
            let trace = batch.spans.get(start..end).unwrap_or(&[]);
            procs.clear();
            for s in trace {
                if !procs.contains(&s.service) {
                    procs.push(s.service);
                }
            }
            if !self.first {
                self.buf.extend_from_slice(b",\n");
            }
            self.first = false;
            self.buf.extend_from_slice(b"{\"traceID\":\"");
            push_hex(&mut self.buf, &tid);
            self.buf.extend_from_slice(b"\",\"spans\":[");
            for (k, s) in trace.iter().enumerate() {
                if k > 0 {
                    self.buf.push(b',');
                }
                let p = procs.iter().position(|&x| x == s.service).unwrap_or(0) + 1;
                jaeger_span(&mut self.buf, &self.prep, s, p, link(&links, s));
            }
            self.buf.extend_from_slice(b"],\"processes\":{");
            for (k, &svc) in procs.iter().enumerate() {
                if k > 0 {
                    self.buf.push(b',');
                }
                self.buf.extend_from_slice(b"\"p");
                push_u64(&mut self.buf, k as u64 + 1);
                self.buf.extend_from_slice(b"\":{\"serviceName\":");
                self.buf.extend_from_slice(quoted(&self.prep, svc));
                self.buf.extend_from_slice(b",\"tags\":[]}");
            }
            self.buf.extend_from_slice(b"},\"warnings\":null}");
            self.flush_if_full()?;
            start = end;
        }
        Ok(())
    }

    fn zipkin(&mut self, batch: &SpanBatch) -> Result<(), DatasetError> {
        // Which spans are CLIENT spans, and which SERVER spans share their client parent's id.
        let kinds: HashMap<(TraceId, SpanId), SpanKind> = batch
            .spans
            .iter()
            .map(|s| ((s.trace_id, s.span_id), s.kind))
            .collect();
        let mut shared: HashMap<(TraceId, SpanId), SpanId> = HashMap::new();
        for s in &batch.spans {
            if let (SpanKind::Server, Some(p)) = (s.kind, s.parent_span_id) {
                if kinds.get(&(s.trace_id, p)) == Some(&SpanKind::Client) {
                    shared.insert((s.trace_id, s.span_id), p);
                }
            }
        }
        let parents: HashMap<(TraceId, SpanId), Option<SpanId>> = batch
            .spans
            .iter()
            .map(|s| ((s.trace_id, s.span_id), s.parent_span_id))
            .collect();
        for s in &batch.spans {
            let key = (s.trace_id, s.span_id);
            let (id, parent, is_shared) = match shared.get(&key) {
                // The server half: the client's id and the client's parent.
                Some(&client) => (
                    client,
                    parents.get(&(s.trace_id, client)).copied().flatten(),
                    true,
                ),
                None => {
                    // Children of a shared server span name the shared id.
                    let parent = s
                        .parent_span_id
                        .map(|p| shared.get(&(s.trace_id, p)).copied().unwrap_or(p));
                    (s.span_id, parent, false)
                }
            };
            if !self.first {
                self.buf.extend_from_slice(b",\n");
            }
            self.first = false;
            zipkin_span(&mut self.buf, &self.prep, s, id, parent, is_shared);
            self.flush_if_full()?;
        }
        Ok(())
    }

    fn csv(&mut self, batch: &SpanBatch) -> Result<(), DatasetError> {
        let mut name = Vec::new();
        for s in &batch.spans {
            let b = &mut self.buf;
            push_hex(b, &s.trace_id);
            b.push(b',');
            push_hex(b, &s.span_id);
            b.push(b',');
            match s.parent_span_id {
                Some(p) => push_hex(b, &p),
                None => b.extend_from_slice(b"root"),
            }
            b.push(b',');
            b.extend_from_slice(
                self.prep
                    .pod
                    .get(s.service as usize)
                    .map_or("", String::as_str)
                    .as_bytes(),
            );
            b.push(b',');
            name.clear();
            push_csv_field(&mut name, batch.str(s.name));
            b.extend_from_slice(&name);
            b.push(b',');
            push_i64(b, s.start_ns);
            b.push(b',');
            push_i64(b, s.end_ns);
            b.push(b',');
            push_i64(b, s.duration_ns() / 1000);
            b.push(b'\n');
            self.flush_if_full()?;
        }
        Ok(())
    }
}

fn quoted(p: &Prepared, sym: u32) -> &[u8] {
    p.quoted.get(sym as usize).map_or(b"\"\"", Vec::as_slice)
}

fn peer_key(p: &Prepared, sym: u32) -> &'static str {
    p.peer_key
        .get(sym as usize)
        .copied()
        .unwrap_or("peer.service")
}

/// The attributes of a span worth writing, as (key, symbol) pairs.
fn attributes(p: &Prepared, s: &Span) -> [(&'static str, Option<u32>); 5] {
    [
        (s.peer.map_or("peer.service", |x| peer_key(p, x)), s.peer),
        ("http.route", s.http_route),
        ("rpc.method", s.rpc_method),
        ("error.type", s.error_type),
        (augur_ingest::EXPERIMENT_ATTRIBUTE, s.experiment),
    ]
}

/// Links by the linking span's (trace id, span id).
type Links = std::collections::HashMap<(TraceId, SpanId), (TraceId, SpanId)>;

fn link(links: &Links, s: &Span) -> Option<(TraceId, SpanId)> {
    if links.is_empty() {
        return None;
    }
    links.get(&(s.trace_id, s.span_id)).copied()
}

fn otlp_json_span(b: &mut Vec<u8>, p: &Prepared, s: &Span, link: Option<(TraceId, SpanId)>) {
    b.extend_from_slice(b"{\"traceId\":\"");
    push_hex(b, &s.trace_id);
    b.extend_from_slice(b"\",\"spanId\":\"");
    push_hex(b, &s.span_id);
    if let Some(parent) = s.parent_span_id {
        b.extend_from_slice(b"\",\"parentSpanId\":\"");
        push_hex(b, &parent);
    }
    b.extend_from_slice(b"\",\"name\":");
    b.extend_from_slice(quoted(p, s.name));
    b.extend_from_slice(b",\"kind\":");
    push_u64(b, s.kind as u64);
    b.extend_from_slice(b",\"startTimeUnixNano\":\"");
    push_i64(b, s.start_ns);
    b.extend_from_slice(b"\",\"endTimeUnixNano\":\"");
    push_i64(b, s.end_ns);
    b.push(b'"');
    let mut first = true;
    for (key, val) in attributes(p, s) {
        let Some(v) = val else { continue };
        b.extend_from_slice(if first { b",\"attributes\":[" } else { b"," });
        first = false;
        b.extend_from_slice(b"{\"key\":\"");
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(b"\",\"value\":{\"stringValue\":");
        b.extend_from_slice(quoted(p, v));
        b.extend_from_slice(b"}}");
    }
    if !first {
        b.push(b']');
    }
    if let Some((t, l)) = link {
        b.extend_from_slice(b",\"links\":[{\"traceId\":\"");
        push_hex(b, &t);
        b.extend_from_slice(b"\",\"spanId\":\"");
        push_hex(b, &l);
        b.extend_from_slice(b"\"}]");
    }
    if s.status.otlp() != 0 {
        b.extend_from_slice(b",\"status\":{\"code\":");
        push_u64(b, s.status.otlp() as u64);
        b.push(b'}');
    }
    b.push(b'}');
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn proto_span(
    batch: &SpanBatch,
    p: &Prepared,
    s: &Span,
    link: Option<(TraceId, SpanId)>,
) -> opentelemetry_proto::tonic::trace::v1::Span {
    opentelemetry_proto::tonic::trace::v1::Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent_span_id.map(|x| x.to_vec()).unwrap_or_default(),
        name: batch.str(s.name).into(),
        kind: s.kind as i32,
        start_time_unix_nano: u64::try_from(s.start_ns).unwrap_or(0),
        end_time_unix_nano: u64::try_from(s.end_ns).unwrap_or(0),
        attributes: attributes(p, s)
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| kv(k, batch.str(v))))
            .collect(),
        status: (s.status.otlp() != 0).then(|| Status {
            code: s.status.otlp(),
            ..Default::default()
        }),
        links: link
            .map(|(t, l)| opentelemetry_proto::tonic::trace::v1::span::Link {
                trace_id: t.to_vec(),
                span_id: l.to_vec(),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        ..Default::default()
    }
}

fn jaeger_span(
    b: &mut Vec<u8>,
    p: &Prepared,
    s: &Span,
    process: usize,
    link: Option<(TraceId, SpanId)>,
) {
    b.extend_from_slice(b"{\"traceID\":\"");
    push_hex(b, &s.trace_id);
    b.extend_from_slice(b"\",\"spanID\":\"");
    push_hex(b, &s.span_id);
    b.extend_from_slice(b"\",\"operationName\":");
    b.extend_from_slice(quoted(p, s.name));
    b.extend_from_slice(b",\"references\":[");
    if let Some(parent) = s.parent_span_id {
        b.extend_from_slice(b"{\"refType\":\"CHILD_OF\",\"traceID\":\"");
        push_hex(b, &s.trace_id);
        b.extend_from_slice(b"\",\"spanID\":\"");
        push_hex(b, &parent);
        b.extend_from_slice(b"\"}");
    }
    if let Some((t, l)) = link {
        if s.parent_span_id.is_some() {
            b.push(b',');
        }
        b.extend_from_slice(b"{\"refType\":\"FOLLOWS_FROM\",\"traceID\":\"");
        push_hex(b, &t);
        b.extend_from_slice(b"\",\"spanID\":\"");
        push_hex(b, &l);
        b.extend_from_slice(b"\"}");
    }
    b.extend_from_slice(b"],\"startTime\":");
    push_i64(b, s.start_ns.div_euclid(1000));
    b.extend_from_slice(b",\"duration\":");
    push_i64(b, (s.duration_ns() / 1000).max(0));
    b.extend_from_slice(b",\"tags\":[");
    let mut first = true;
    let mut sep = |b: &mut Vec<u8>| {
        if !first {
            b.push(b',');
        }
        first = false;
    };
    if s.kind != SpanKind::Unspecified {
        sep(b);
        b.extend_from_slice(b"{\"key\":\"span.kind\",\"type\":\"string\",\"value\":\"");
        b.extend_from_slice(s.kind.as_str().as_bytes());
        b.extend_from_slice(b"\"}");
    }
    match s.status {
        StatusCode::Error => {
            sep(b);
            b.extend_from_slice(b"{\"key\":\"error\",\"type\":\"bool\",\"value\":true},{\"key\":\"otel.status_code\",\"type\":\"string\",\"value\":\"ERROR\"}");
        }
        StatusCode::Ok => {
            sep(b);
            b.extend_from_slice(
                b"{\"key\":\"otel.status_code\",\"type\":\"string\",\"value\":\"OK\"}",
            );
        }
        StatusCode::Unset | StatusCode::Unknown => {}
    }
    for (key, val) in attributes(p, s) {
        let Some(v) = val else { continue };
        sep(b);
        b.extend_from_slice(b"{\"key\":\"");
        b.extend_from_slice(key.as_bytes());
        b.extend_from_slice(b"\",\"type\":\"string\",\"value\":");
        b.extend_from_slice(quoted(p, v));
        b.push(b'}');
    }
    b.extend_from_slice(b"],\"logs\":[],\"processID\":\"p");
    push_u64(b, process as u64);
    b.extend_from_slice(b"\",\"warnings\":null}");
}

fn zipkin_span(
    b: &mut Vec<u8>,
    p: &Prepared,
    s: &Span,
    id: SpanId,
    parent: Option<SpanId>,
    shared: bool,
) {
    b.extend_from_slice(b"{\"traceId\":\"");
    push_hex(b, &s.trace_id);
    b.extend_from_slice(b"\",\"id\":\"");
    push_hex(b, &id);
    b.push(b'"');
    if let Some(parent) = parent {
        b.extend_from_slice(b",\"parentId\":\"");
        push_hex(b, &parent);
        b.push(b'"');
    }
    let kind = match s.kind {
        SpanKind::Client => Some("CLIENT"),
        SpanKind::Server => Some("SERVER"),
        SpanKind::Producer => Some("PRODUCER"),
        SpanKind::Consumer => Some("CONSUMER"),
        SpanKind::Internal | SpanKind::Unspecified => None,
    };
    if let Some(k) = kind {
        b.extend_from_slice(b",\"kind\":\"");
        b.extend_from_slice(k.as_bytes());
        b.push(b'"');
    }
    b.extend_from_slice(b",\"name\":");
    b.extend_from_slice(quoted(p, s.name));
    b.extend_from_slice(b",\"timestamp\":");
    push_i64(b, s.start_ns.div_euclid(1000));
    b.extend_from_slice(b",\"duration\":");
    push_i64(b, (s.duration_ns() / 1000).max(0));
    b.extend_from_slice(b",\"localEndpoint\":{\"serviceName\":");
    b.extend_from_slice(quoted(p, s.service));
    b.push(b'}');
    if let Some(peer) = s.peer {
        b.extend_from_slice(b",\"remoteEndpoint\":{\"serviceName\":");
        b.extend_from_slice(quoted(p, peer));
        b.push(b'}');
    }
    b.extend_from_slice(b",\"tags\":{");
    let mut first = true;
    let mut tag = |b: &mut Vec<u8>, key: &[u8], value: &[u8]| {
        if !first {
            b.push(b',');
        }
        first = false;
        b.push(b'"');
        b.extend_from_slice(key);
        b.extend_from_slice(b"\":");
        b.extend_from_slice(value);
    };
    match s.status {
        StatusCode::Error => {
            tag(b, b"error", b"\"true\"");
            tag(b, b"otel.status_code", b"\"ERROR\"");
        }
        StatusCode::Ok => tag(b, b"otel.status_code", b"\"OK\""),
        StatusCode::Unset | StatusCode::Unknown => {}
    }
    // The peer travels as remoteEndpoint.serviceName; the rest as tags.
    for (key, val) in attributes(p, s).into_iter().skip(1) {
        if let Some(v) = val {
            tag(b, key.as_bytes(), quoted(p, v));
        }
    }
    b.push(b'}');
    if shared {
        b.extend_from_slice(b",\"shared\":true");
    }
    b.push(b'}');
}

/// A Kubernetes-style pod name for a service: `<service>-<10 chars>-<5 chars>`, stable per service
/// (`augur-ingest`'s CSV reader strips the two suffixes back off).
pub fn pod_name(service: &str) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = fnv1a64(service.as_bytes());
    let mut pick = |n: usize| -> String {
        (0..n)
            .map(|_| {
                let c = ALPHABET
                    .get((h % ALPHABET.len() as u64) as usize)
                    .copied()
                    .unwrap_or(b'x');
                h = (h / ALPHABET.len() as u64)
                    ^ h.rotate_left(17).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                c as char
            })
            .collect()
    };
    let rs = pick(10);
    let pod = pick(5);
    format!("{service}-{rs}-{pod}")
}

fn push_csv_field(b: &mut Vec<u8>, s: &str) {
    if s.bytes().any(|c| matches!(c, b',' | b'"' | b'\n' | b'\r')) {
        b.push(b'"');
        for c in s.bytes() {
            if c == b'"' {
                b.push(b'"');
            }
            b.push(c);
        }
        b.push(b'"');
    } else {
        b.extend_from_slice(s.as_bytes());
    }
}

/// Appends `s` as a JSON string literal (with quotes).
fn push_json_str(b: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    b.push(b'"');
    for &c in s.as_bytes() {
        match c {
            b'"' => b.extend_from_slice(b"\\\""),
            b'\\' => b.extend_from_slice(b"\\\\"),
            b'\n' => b.extend_from_slice(b"\\n"),
            b'\r' => b.extend_from_slice(b"\\r"),
            b'\t' => b.extend_from_slice(b"\\t"),
            0..=0x1f => {
                b.extend_from_slice(b"\\u00");
                b.push(HEX[(c >> 4) as usize]);
                b.push(HEX[(c & 15) as usize]);
            }
            _ => b.push(c),
        }
    }
    b.push(b'"');
}

fn push_hex(b: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &x in bytes {
        b.push(HEX[(x >> 4) as usize]);
        b.push(HEX[(x & 15) as usize]);
    }
}

fn push_u64(b: &mut Vec<u8>, mut v: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        tmp[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    b.extend_from_slice(&tmp[i..]);
}

fn push_i64(b: &mut Vec<u8>, v: i64) {
    if v < 0 {
        b.push(b'-');
    }
    push_u64(b, v.unsigned_abs());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_helpers() {
        let mut b = Vec::new();
        push_json_str(&mut b, "a\"b\\c\n\u{1}é");
        assert_eq!(
            String::from_utf8(b.clone()).unwrap(),
            r#""a\"b\\c\n\u0001é""#
        );
        let v: String = serde_json::from_slice(&b).unwrap();
        assert_eq!(v, "a\"b\\c\n\u{1}é");
        for n in [
            0i64,
            7,
            10,
            1_793_491_200_000_000_000,
            -42,
            i64::MIN,
            i64::MAX,
        ] {
            let mut b = Vec::new();
            push_i64(&mut b, n);
            assert_eq!(String::from_utf8(b).unwrap(), n.to_string());
        }
    }

    #[test]
    fn pod_names_are_stable_and_k8s_shaped() {
        let p = pod_name("checkout");
        assert_eq!(p, pod_name("checkout"));
        assert_ne!(p, pod_name("cart"));
        let parts: Vec<&str> = p.rsplitn(3, '-').collect();
        assert_eq!(parts[2], "checkout");
        assert_eq!(parts[1].len(), 10);
        assert_eq!(parts[0].len(), 5);
    }

    #[test]
    fn formats_parse_by_name() {
        for f in TraceFormat::ALL {
            assert_eq!(f.name().parse::<TraceFormat>().unwrap(), f);
        }
        assert!("xml".parse::<TraceFormat>().is_err());
    }
}
