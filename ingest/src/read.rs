//! Reading trace files: find the files, undo compression, detect the format by content, and stream
//! spans to a consumer in batches.

use std::fs::File;
use std::io::{BufRead, BufReader, Cursor, Read};
use std::path::{Path, PathBuf};

use crate::report::IngestReport;
use crate::span::{Span, SpanBatch};
use crate::IngestError;

/// How many spans a batch holds before it is handed to the consumer.
pub const DEFAULT_BATCH_SIZE: usize = 64 * 1024;

/// How many bytes are looked at to detect a file's format.
const PEEK_BYTES: usize = 64 * 1024;

/// Options of a read.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// Any bad record is an error (by default it is skipped and counted).
    pub strict: bool,
    /// Spans per batch handed to the consumer.
    pub batch_size: usize,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            strict: false,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }
}

/// The trace formats augur reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One OTLP `ExportTraceServiceRequest` as JSON.
    OtlpJson,
    /// JSON Lines of OTLP requests (the Collector's file exporter).
    OtlpJsonLines,
    /// One OTLP `ExportTraceServiceRequest` as protobuf.
    OtlpProto,
    /// Length-prefixed OTLP protobuf messages (the Collector's file exporter, `format: proto`).
    OtlpProtoStream,
    /// Jaeger's query API / UI JSON (`{"data": [...]}` or one trace object).
    JaegerJson,
    /// Zipkin v2 JSON (an array of spans, or an array of traces).
    ZipkinJson,
    /// A CSV span table with the TrainTicket (Nezha) columns.
    Csv,
    /// A Parquet file of augur's span table.
    Parquet,
}

impl Format {
    /// A short name for reports.
    pub fn name(self) -> &'static str {
        match self {
            Format::OtlpJson => "otlp-json",
            Format::OtlpJsonLines => "otlp-jsonl",
            Format::OtlpProto => "otlp-proto",
            Format::OtlpProtoStream => "otlp-proto-stream",
            Format::JaegerJson => "jaeger-json",
            Format::ZipkinJson => "zipkin-json",
            Format::Csv => "csv",
            Format::Parquet => "parquet",
        }
    }
}

/// Compression wrapped around a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// None.
    None,
    /// gzip.
    Gzip,
    /// zstd.
    Zstd,
}

/// The reading state shared by every format reader: the batch being filled, where bad records go,
/// and the consumer.
pub(crate) struct Ctx<'a> {
    pub path: &'a Path,
    pub opts: &'a ReadOptions,
    pub report: &'a mut IngestReport,
    pub batch: SpanBatch,
    sink: &'a mut dyn FnMut(SpanBatch) -> Result<(), IngestError>,
}

impl<'a> Ctx<'a> {
    /// Adds one accepted span.
    pub fn push(&mut self, span: Span) {
        self.batch.spans.push(span);
    }

    /// Hands the batch to the consumer if it is full.
    pub fn maybe_flush(&mut self) -> Result<(), IngestError> {
        if self.batch.spans.len() >= self.opts.batch_size {
            self.flush()?;
        }
        Ok(())
    }

    /// Hands whatever the batch holds to the consumer, strings included: the next span starts a
    /// fresh interner, so a reader must not hold symbols across a flush (see
    /// [`Ctx::maybe_flush_keeping_strings`] for one that does).
    pub fn flush(&mut self) -> Result<(), IngestError> {
        self.hand_over(SpanBatch::take_all)
    }

    /// [`Ctx::maybe_flush`] for a reader that holds symbols of the batch's interner across the
    /// flush (the Zipkin reader converts a whole file before pushing): the strings are copied into
    /// the next batch rather than moved.
    pub fn maybe_flush_keeping_strings(&mut self) -> Result<(), IngestError> {
        if self.batch.spans.len() >= self.opts.batch_size {
            self.hand_over(SpanBatch::take)?;
        }
        Ok(())
    }

    fn hand_over(&mut self, take: fn(&mut SpanBatch) -> SpanBatch) -> Result<(), IngestError> {
        if self.batch.spans.is_empty() {
            return Ok(());
        }
        self.report.spans += self.batch.spans.len() as u64;
        let batch = take(&mut self.batch);
        (self.sink)(batch)
    }

    /// Records a bad record: an error in strict mode, else counted and skipped.
    pub fn bad(
        &mut self,
        location: impl Into<String>,
        reason: impl Into<String>,
    ) -> Result<(), IngestError> {
        let (location, reason) = (location.into(), reason.into());
        if self.opts.strict {
            return Err(IngestError::BadRecord {
                path: self.path.to_path_buf(),
                location,
                reason,
            });
        }
        self.report.reject(self.path, location, reason);
        Ok(())
    }

    /// Why the first skipped record of this file was skipped (for an error saying that none
    /// was good).
    pub fn first_problem(&self) -> Option<String> {
        self.report
            .problems
            .iter()
            .find(|p| p.path == self.path)
            .map(|p| format!("{}: {}", p.location, p.reason))
    }

    /// A whole-file error for this file.
    pub fn unreadable(&self, format: Format, reason: impl Into<String>) -> IngestError {
        IngestError::Unreadable {
            path: self.path.to_path_buf(),
            format: format.name(),
            reason: reason.into(),
        }
    }
}

/// Every file below the given paths (directories are walked recursively, in name order; hidden
/// files and directories are skipped).
pub fn expand_paths(paths: &[PathBuf]) -> Result<Vec<PathBuf>, IngestError> {
    let mut out = Vec::new();
    for p in paths {
        let meta = std::fs::metadata(p).map_err(|e| IngestError::io(p, e))?;
        if meta.is_dir() {
            walk(p, &mut out)?;
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), IngestError> {
    walk_once(dir, out, &mut std::collections::HashSet::new())
}

/// [`walk`], entering each directory once (by its real path): a symbolic link back up the tree
/// (`traces/loop -> ..`) would otherwise be followed until the OS refuses.
fn walk_once(
    dir: &Path,
    out: &mut Vec<PathBuf>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), IngestError> {
    let real = std::fs::canonicalize(dir).map_err(|e| IngestError::io(dir, e))?;
    if !seen.insert(real) {
        tracing::warn!(dir = %dir.display(), "a directory already read (a link back up the tree): not read again");
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| IngestError::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            !p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk_once(&p, out, seen)?;
        } else {
            out.push(p);
        }
    }
    Ok(())
}

/// Reads every file below `paths`, handing spans to `sink` in batches; returns what it saw.
pub fn read_paths(
    paths: &[PathBuf],
    opts: &ReadOptions,
    sink: &mut dyn FnMut(SpanBatch) -> Result<(), IngestError>,
) -> Result<IngestReport, IngestError> {
    let mut report = IngestReport::default();
    for file in expand_paths(paths)? {
        read_file(&file, opts, &mut report, sink)?;
    }
    Ok(report)
}

/// Reads one file, detecting its compression and format; adds to `report`.
pub fn read_file(
    path: &Path,
    opts: &ReadOptions,
    report: &mut IngestReport,
    sink: &mut dyn FnMut(SpanBatch) -> Result<(), IngestError>,
) -> Result<Format, IngestError> {
    let file = File::open(path).map_err(|e| IngestError::io(path, e))?;
    let mut raw = BufReader::with_capacity(256 * 1024, file);
    let magic = raw.fill_buf().map_err(|e| IngestError::io(path, e))?;
    let compression = if magic.starts_with(&[0x1f, 0x8b]) {
        Compression::Gzip
    } else if magic.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Compression::Zstd
    } else {
        Compression::None
    };
    let is_parquet = magic.starts_with(b"PAR1");
    if compression == Compression::None && is_parquet {
        drop(raw);
        let mut ctx = Ctx {
            path,
            opts,
            report,
            batch: SpanBatch::with_capacity(opts.batch_size),
            sink,
        };
        crate::parquet_io::read_parquet_file(&mut ctx)?;
        ctx.flush()?;
        report.count_format(Format::Parquet.name());
        return Ok(Format::Parquet);
    }
    let decoder: Box<dyn Read> = match compression {
        Compression::None => Box::new(raw),
        Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(raw)),
        Compression::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(raw).map_err(|e| IngestError::io(path, e))?,
        ),
    };
    // A compressed file cut short (a collector still writing it, a copy interrupted) reads as
    // what it decompressed to so far, like a plain file cut short: the partial last record is
    // skipped and counted, and the cut is reported once the file is read.
    let cut: std::rc::Rc<std::cell::RefCell<Option<std::io::Error>>> = Default::default();
    let mut inner: Box<dyn Read> = if compression == Compression::None {
        decoder
    } else {
        Box::new(CutShort {
            inner: decoder,
            cut: cut.clone(),
        })
    };
    // Peek at the start of the decompressed content.
    let mut head = Vec::with_capacity(PEEK_BYTES);
    (&mut inner)
        .take(PEEK_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| decompress_error(path, compression, e))?;
    if head.is_empty() {
        if let Some(e) = cut.borrow_mut().take() {
            // Cut short before its first byte: nothing to go on.
            return Err(decompress_error(path, compression, e));
        }
        return Err(IngestError::Empty {
            path: path.to_path_buf(),
        });
    }
    let format = detect(&head).map_err(|reason| IngestError::UnknownFormat {
        path: path.to_path_buf(),
        reason,
    })?;
    // A UTF-8 byte order mark (some editors and Windows tools write one) is not part of any
    // text format.
    let mut head = Cursor::new(head);
    if format != Format::OtlpProto
        && format != Format::OtlpProtoStream
        && head.get_ref().starts_with(b"\xEF\xBB\xBF")
    {
        head.set_position(3);
    }
    let counted = CountingReader {
        inner: head.chain(inner),
        count: 0,
    };
    let mut reader = BufReader::with_capacity(256 * 1024, counted);
    let mut ctx = Ctx {
        path,
        opts,
        report,
        batch: SpanBatch::with_capacity(opts.batch_size.min(1 << 20)),
        sink,
    };
    let result = match format {
        // One JSON document is parsed as a whole, so a single byte that is not UTF-8 (an SDK
        // passing bytes through unchecked into an attribute) would cost every span of the file:
        // its bad bytes read as U+FFFD instead (JSON Lines do the same line by line).
        Format::OtlpJson | Format::JaegerJson | Format::ZipkinJson => {
            // Buffered on top: serde_json reads a byte at a time, and BufReader's `read` of one
            // byte is faster than LossyUtf8's (measured: documents read 40% slower without).
            let mut text = BufReader::with_capacity(64 * 1024, LossyUtf8::new(&mut reader));
            let result = match format {
                Format::OtlpJson => crate::otlp_json::read_document(&mut text, &mut ctx),
                Format::JaegerJson => crate::jaeger::read(&mut text, &mut ctx),
                _ => crate::zipkin::read(&mut text, &mut ctx),
            };
            let replaced = text.into_inner().replaced;
            if replaced > 0 {
                tracing::warn!(
                    path = %path.display(),
                    "not UTF-8 text: {replaced} bad byte sequence{} read as U+FFFD",
                    if replaced == 1 { "" } else { "s" }
                );
            }
            result
        }
        Format::OtlpJsonLines => crate::otlp_json::read_lines(&mut reader, &mut ctx),
        Format::OtlpProto => crate::otlp_proto::read_bare(&mut reader, &mut ctx),
        Format::OtlpProtoStream => crate::otlp_proto::read_stream(&mut reader, &mut ctx),
        Format::Csv => crate::csv::read(&mut reader, &mut ctx),
        Format::Parquet => {
            // Compressed Parquet: Parquet needs random access, so decompress into memory.
            let mut bytes = Vec::new();
            reader
                .read_to_end(&mut bytes)
                .map_err(|e| decompress_error(path, compression, e))?;
            crate::parquet_io::read_parquet_bytes(bytes, &mut ctx)
        }
    };
    let cut = cut.borrow_mut().take();
    let result = match (result, cut) {
        // An I/O error while decompressing is a damaged (often truncated) file.
        (Err(IngestError::Io { source, .. }), _) => {
            Err(decompress_error(path, compression, source))
        }
        // What was read before the cut did not parse on its own (one JSON document, Parquet).
        (Err(_), Some(e)) => Err(decompress_error(path, compression, e)),
        (r, cut) => r.map(|()| cut),
    };
    if let Some(e) = result? {
        ctx.bad(
            "end of file",
            format!(
                "the {} stream is cut short or damaged ({e}): what came before it was read",
                if compression == Compression::Gzip {
                    "gzip"
                } else {
                    "zstd"
                }
            ),
        )
        .map_err(|_| decompress_error(path, compression, e))?;
    }
    ctx.flush()?;
    report.bytes += reader.get_ref().count;
    report.count_format(format.name());
    Ok(format)
}

fn decompress_error(path: &Path, compression: Compression, e: std::io::Error) -> IngestError {
    match compression {
        Compression::None => IngestError::io(path, e),
        Compression::Gzip | Compression::Zstd => IngestError::Unreadable {
            path: path.to_path_buf(),
            format: if compression == Compression::Gzip {
                "gzip"
            } else {
                "zstd"
            },
            reason: format!("cannot decompress (truncated or damaged?): {e}"),
        },
    }
}

/// Ends the stream where the decompressor fails, keeping the failure for the caller.
struct CutShort {
    inner: Box<dyn Read>,
    cut: std::rc::Rc<std::cell::RefCell<Option<std::io::Error>>>,
}

impl Read for CutShort {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cut.borrow().is_some() {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                *self.cut.borrow_mut() = Some(e);
                Ok(0)
            }
            ok => ok,
        }
    }
}

struct CountingReader<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// What tells one file's content from another's cheaply, without reading it all: its size and
/// a hash (FNV-1a) of its first, its middle and its last [`FINGERPRINT_BYTES`]. A model remembers the
/// files it learned by these, so that learning a directory into it again skips the files it
/// already holds (their traces would count twice).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint {
    /// Hash of the first bytes.
    pub head: u64,
    /// Hash of the last bytes.
    pub tail: u64,
    /// Hash of the bytes in the middle.
    pub middle: u64,
    /// Size in bytes.
    pub bytes: u64,
}

/// The bytes hashed at each end of a file by [`fingerprint`].
pub const FINGERPRINT_BYTES: u64 = 64 * 1024;

/// The [`Fingerprint`] of the file at `path`.
pub fn fingerprint(path: &Path) -> Result<Fingerprint, IngestError> {
    use std::io::{Seek, SeekFrom};
    let io = |e| IngestError::io(path, e);
    let mut f = File::open(path).map_err(io)?;
    let bytes = f.metadata().map_err(io)?.len();
    let mut buf = Vec::with_capacity(FINGERPRINT_BYTES as usize);
    (&mut f)
        .take(FINGERPRINT_BYTES)
        .read_to_end(&mut buf)
        .map_err(io)?;
    let head = crate::span::fnv1a64(&buf);
    let mut at = |from: u64| -> Result<u64, IngestError> {
        buf.clear();
        f.seek(SeekFrom::Start(from)).map_err(io)?;
        (&mut f)
            .take(FINGERPRINT_BYTES)
            .read_to_end(&mut buf)
            .map_err(io)?;
        Ok(crate::span::fnv1a64(&buf))
    };
    let middle = at((bytes / 2).saturating_sub(FINGERPRINT_BYTES / 2))?;
    let tail = at(bytes.saturating_sub(FINGERPRINT_BYTES))?;
    Ok(Fingerprint {
        head,
        tail,
        middle,
        bytes,
    })
}

/// A reader of text that passes UTF-8 through and replaces every byte sequence that is not
/// UTF-8 with U+FFFD (as [`String::from_utf8_lossy`] does), counting them. Buffered itself:
/// a chunk that is valid UTF-8 (nearly always) is handed out as read, without a copy.
struct LossyUtf8<R> {
    inner: R,
    /// Text ready to be read: `out[at..]`.
    out: Vec<u8>,
    at: usize,
    /// The buffer the next chunk is read into (the one handed out before).
    spare: Vec<u8>,
    /// The start of a character cut by the end of the last chunk read (at most 3 bytes).
    carry: Vec<u8>,
    eof: bool,
    /// Byte sequences replaced so far.
    replaced: u64,
}

/// Bytes [`LossyUtf8`] reads at a time.
const LOSSY_CHUNK: usize = 64 * 1024;

impl<R: Read> LossyUtf8<R> {
    fn new(inner: R) -> Self {
        LossyUtf8 {
            inner,
            out: Vec::new(),
            at: 0,
            spare: Vec::new(),
            carry: Vec::new(),
            eof: false,
            replaced: 0,
        }
    }

    /// Reads the next chunk into `out`, replacing what is not UTF-8.
    fn fill(&mut self) -> std::io::Result<()> {
        let mut chunk = std::mem::take(&mut self.spare);
        chunk.clear();
        chunk.append(&mut self.carry);
        let start = chunk.len();
        chunk.resize(start + LOSSY_CHUNK, 0);
        let n = loop {
            match self.inner.read(&mut chunk[start..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.spare = chunk;
                    return Err(e);
                }
            }
        };
        chunk.truncate(start + n);
        self.eof = n == 0;
        self.at = 0;
        let bad = match std::str::from_utf8(&chunk) {
            Ok(_) => None,
            // A character the chunk's end cut: completed by the next chunk.
            Err(e) if e.error_len().is_none() && !self.eof => {
                self.carry.extend_from_slice(&chunk[e.valid_up_to()..]);
                chunk.truncate(e.valid_up_to());
                None
            }
            Err(e) => Some(e.valid_up_to()),
        };
        let Some(valid) = bad else {
            self.spare = std::mem::replace(&mut self.out, chunk);
            return Ok(());
        };
        self.out.clear();
        self.out.extend_from_slice(&chunk[..valid]);
        let mut rest = &chunk[valid..];
        loop {
            match std::str::from_utf8(rest) {
                Ok(_) => {
                    self.out.extend_from_slice(rest);
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    self.out.extend_from_slice(good);
                    match e.error_len() {
                        Some(len) => {
                            self.out.extend_from_slice("\u{FFFD}".as_bytes());
                            self.replaced += 1;
                            rest = &bad[len..];
                        }
                        None if !self.eof => {
                            self.carry.extend_from_slice(bad);
                            break;
                        }
                        None => {
                            self.out.extend_from_slice("\u{FFFD}".as_bytes());
                            self.replaced += 1;
                            break;
                        }
                    }
                }
            }
        }
        self.spare = chunk;
        Ok(())
    }
}

impl<R: Read> BufRead for LossyUtf8<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        while self.at == self.out.len() && !self.eof {
            self.fill()?;
        }
        Ok(&self.out[self.at..])
    }

    fn consume(&mut self, n: usize) {
        self.at = (self.at + n).min(self.out.len());
    }
}

impl<R: Read> Read for LossyUtf8<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let available = self.fill_buf()?;
        let n = buf.len().min(available.len());
        buf[..n].copy_from_slice(&available[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Detects the format from the first bytes of a (decompressed) file.
pub fn detect(head: &[u8]) -> Result<Format, String> {
    if head.starts_with(b"PAR1") {
        return Ok(Format::Parquet);
    }
    let text = head.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(head);
    let start = text.iter().position(|b| !b.is_ascii_whitespace());
    let Some(start) = start else {
        return Err("only white space".into());
    };
    let body = &text[start..];
    match body[0] {
        b'{' => {
            let key = first_key(body);
            let otlp = |k: &str| matches!(k, "resourceSpans" | "resource_spans");
            let jaeger = |k: &str| {
                matches!(
                    k,
                    "data"
                        | "traceID"
                        | "spans"
                        | "processes"
                        | "total"
                        | "limit"
                        | "offset"
                        | "errors"
                        | "warnings"
                )
            };
            let is_otlp = match key.as_deref() {
                Some(k) if otlp(k) => true,
                Some(k) if jaeger(k) => false,
                _ if contains(body, b"\"resourceSpans\"") || contains(body, b"\"resource_spans\"") => true,
                _ if contains(body, b"\"traceID\"") || contains(body, b"\"processes\"") => false,
                _ => {
                    return Err(format!(
                        "a JSON object whose first key is {} (neither OTLP's resourceSpans nor Jaeger's data/traceID)",
                        key.map(|k| format!("\"{k}\"")).unwrap_or_else(|| "unreadable".into())
                    ))
                }
            };
            if !is_otlp {
                return Ok(Format::JaegerJson);
            }
            // JSON Lines when the first line is a whole object (or no line ends within the peek:
            // a minified document is a single line, which line mode reads too).
            match body.iter().position(|&b| b == b'\n') {
                None => Ok(Format::OtlpJsonLines),
                Some(nl) => {
                    let line = body[..nl].trim_ascii();
                    if line.ends_with(b"}") {
                        Ok(Format::OtlpJsonLines)
                    } else {
                        Ok(Format::OtlpJson)
                    }
                }
            }
        }
        b'[' => {
            // Zipkin v2: a list of spans, each with a `traceId` (required); an empty list too.
            // Another JSON list (a list of experiments beside the traces) is not a trace file.
            let rest = body[1..].trim_ascii_start();
            if rest.starts_with(b"]") || contains(body, b"\"traceId\"") {
                Ok(Format::ZipkinJson)
            } else {
                Err("it opens like a JSON list, but holds no Zipkin span (no \"traceId\")".into())
            }
        }
        _ => {
            let first_line_end = body.iter().position(|&b| b == b'\n').unwrap_or(body.len());
            let line = &body[..first_line_end];
            let lower = String::from_utf8_lossy(line).to_ascii_lowercase();
            if lower.contains(',') && (lower.contains("spanid") || lower.contains("span_id")) {
                return Ok(Format::Csv);
            }
            if head.first() == Some(&0x0a) {
                return Ok(Format::OtlpProto);
            }
            if head.len() >= 5 && head[0] == 0 && head[4] == 0x0a {
                return Ok(Format::OtlpProtoStream);
            }
            if head.first() == Some(&0) && head.len() < 5 {
                return Err("too short to be a length-prefixed protobuf stream".into());
            }
            let text = std::str::from_utf8(line).ok().filter(|l| {
                l.contains(',') && l.chars().all(|c| !c.is_control() || c == '\r' || c == '\t')
            });
            if let Some(text) = text {
                // A table, but not of spans as augur knows them: say which columns it needs.
                let shown: String = text.trim_end().chars().take(80).collect();
                return Err(format!(
                    "a CSV whose header ({shown}) has no SpanID column; a span table needs \
                     TraceID, SpanID, ParentID, ServiceName (or PodName), OperationName, \
                     StartTimeUnixNano and EndTimeUnixNano (or Duration, in microseconds), in \
                     any order and case"
                ));
            }
            let shown: String = head
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect::<Vec<_>>()
                .join(" ");
            Err(format!("it starts with bytes {shown}"))
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The first key of a JSON object that starts at `body[0] == b'{'`, if it is a plain string.
fn first_key(body: &[u8]) -> Option<String> {
    let rest = &body[1..];
    let q = rest.iter().position(|b| !b.is_ascii_whitespace())?;
    if rest[q] != b'"' {
        return None;
    }
    let key = &rest[q + 1..];
    let end = key.iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&key[..end]).ok().map(str::to_string)
}

impl<'a> Ctx<'a> {
    /// A context filling a fresh batch (for readers of something other than a file).
    pub(crate) fn new(
        path: &'a Path,
        opts: &'a ReadOptions,
        report: &'a mut IngestReport,
        sink: &'a mut dyn FnMut(SpanBatch) -> Result<(), IngestError>,
    ) -> Self {
        Ctx {
            path,
            opts,
            report,
            batch: SpanBatch::new(),
            sink,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_carry_only_their_own_strings() {
        // Span names unique per span: if each batch kept the strings of all earlier ones, handing
        // batches over would grow quadratically with the input.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unique.jsonl");
        let mut text = String::new();
        for i in 0..40u32 {
            text.push_str(&format!(
                r#"{{"resourceSpans":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"s"}}}}]}},"scopeSpans":[{{"spans":[{{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"{:016x}","name":"op {i}","startTimeUnixNano":"1","endTimeUnixNano":"2"}}]}}]}}]}}"#,
                i + 1
            ));
            text.push('\n');
        }
        std::fs::write(&path, text).unwrap();
        let opts = ReadOptions {
            strict: true,
            batch_size: 4,
        };
        let mut sizes = Vec::new();
        let mut names = Vec::new();
        let report = read_paths(&[path], &opts, &mut |b| {
            sizes.push(b.strings.len());
            names.extend(b.spans.iter().map(|s| b.str(s.name).to_string()));
            Ok(())
        })
        .unwrap();
        assert_eq!(report.spans, 40);
        assert_eq!(names.len(), 40);
        assert_eq!(names[39], "op 39");
        assert!(sizes.iter().all(|&n| n <= 8), "{sizes:?}");
    }

    /// Hands out one byte per read, so every character is cut by a chunk's end.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(out)) => {
                    *out = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn lossy_text_reads_as_from_utf8_lossy(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Strategy::prop_map("[a-z€✓😀 ]{0,6}", String::into_bytes),
                    proptest::collection::vec(proptest::num::u8::ANY, 0..4),
                ],
                0..12,
            ),
            trickle in proptest::bool::ANY,
        ) {
            let bytes: Vec<u8> = parts.concat();
            let mut out = Vec::new();
            let replaced = if trickle {
                let mut r = LossyUtf8::new(Trickle(&bytes));
                r.read_to_end(&mut out).unwrap();
                r.replaced
            } else {
                let mut r = LossyUtf8::new(&bytes[..]);
                r.read_to_end(&mut out).unwrap();
                r.replaced
            };
            let expected = String::from_utf8_lossy(&bytes);
            proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), expected.as_ref());
            proptest::prop_assert_eq!(replaced == 0, std::str::from_utf8(&bytes).is_ok());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_link_back_up_the_tree_is_read_once() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t.jsonl"), "{}\n").unwrap();
        std::os::unix::fs::symlink(".", dir.path().join("loop")).unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::os::unix::fs::symlink("..", sub.join("up")).unwrap();
        let files = expand_paths(&[dir.path().to_path_buf()]).unwrap();
        assert_eq!(files, vec![dir.path().join("t.jsonl")], "{files:?}");
    }

    #[test]
    fn detects_by_content() {
        assert_eq!(
            detect(b"{\"resourceSpans\":[]}\n{\"resourceSpans\":[]}"),
            Ok(Format::OtlpJsonLines)
        );
        assert_eq!(detect(b"{\n  \"resourceSpans\": [\n"), Ok(Format::OtlpJson));
        assert_eq!(detect(b"{\"data\": []}"), Ok(Format::JaegerJson));
        assert_eq!(detect(b"  {\n \"traceID\": \"1\""), Ok(Format::JaegerJson));
        assert_eq!(detect(b"[{\"traceId\":\"1\"}]"), Ok(Format::ZipkinJson));
        assert_eq!(detect(b" [ ]\n"), Ok(Format::ZipkinJson));
        // Another JSON list (past experiments kept beside the traces) is no trace file.
        assert!(detect(b"[{\"target\":\"cart\",\"kind\":\"down\",\"duration\":\"3m\"}]").is_err());
        assert_eq!(detect(b"TraceID,SpanID,ParentID\n"), Ok(Format::Csv));
        assert_eq!(detect(b"\x0a\x05hello"), Ok(Format::OtlpProto));
        assert_eq!(
            detect(b"\x00\x00\x00\x10\x0a\x0e"),
            Ok(Format::OtlpProtoStream)
        );
        assert_eq!(detect(b"PAR1...."), Ok(Format::Parquet));
        assert!(detect(b"hello world").is_err());
        // A table that is not of spans says which columns a span table needs.
        let e = detect(b"trace,span,parent,svc\n1,2,3,a\n").unwrap_err();
        assert!(
            e.contains("trace,span,parent,svc") && e.contains("StartTimeUnixNano"),
            "{e}"
        );
        assert!(detect(b"   \n ").is_err());
        assert!(detect(b"{\"foo\": 1}").is_err());
    }
}
