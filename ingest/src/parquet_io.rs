//! Arrow conversion of span batches, and Parquet files of the span table.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::builder::FixedSizeBinaryBuilder;
use arrow_array::cast::AsArray;
use arrow_array::types::Int32Type;
use arrow_array::{
    Array, ArrayRef, DictionaryArray, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

use crate::read::{Ctx, Format};
use crate::schema::span_table_schema;
use crate::span::{PeerKind, Span, SpanBatch, SpanKind, StatusCode, Sym};
use crate::IngestError;

impl SpanBatch {
    /// The batch as an Arrow record batch of the span table schema.
    pub fn to_record_batch(&self) -> Result<RecordBatch, arrow_schema::ArrowError> {
        let n = self.spans.len();
        let values: ArrayRef = Arc::new(StringArray::from_iter_values(self.strings.strings()));
        let dict_of = |keys: Vec<Option<i32>>| -> Result<ArrayRef, arrow_schema::ArrowError> {
            Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
                Int32Array::from(keys),
                values.clone(),
            )?))
        };
        let sym = |s: Sym| Some(s as i32);
        let opt = |s: Option<Sym>| s.map(|s| s as i32);
        let mut trace = FixedSizeBinaryBuilder::with_capacity(n, 16);
        let mut span = FixedSizeBinaryBuilder::with_capacity(n, 8);
        let mut parent = FixedSizeBinaryBuilder::with_capacity(n, 8);
        let mut link_trace = FixedSizeBinaryBuilder::with_capacity(n, 16);
        let mut link_span = FixedSizeBinaryBuilder::with_capacity(n, 8);
        let mut links = self.links.iter().peekable();
        for (i, s) in self.spans.iter().enumerate() {
            trace.append_value(s.trace_id)?;
            span.append_value(s.span_id)?;
            match &s.parent_span_id {
                Some(p) => parent.append_value(p)?,
                None => parent.append_null(),
            }
            match links.next_if(|l| l.span as usize == i) {
                Some(l) => {
                    link_trace.append_value(l.trace_id)?;
                    link_span.append_value(l.span_id)?;
                }
                None => {
                    link_trace.append_null();
                    link_span.append_null();
                }
            }
        }
        let kinds: ArrayRef = Arc::new(StringArray::from_iter_values(
            self.spans.iter().map(|s| s.kind.as_str()),
        ));
        let statuses: ArrayRef = Arc::new(StringArray::from_iter_values(
            self.spans.iter().map(|s| s.status.as_str()),
        ));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(trace.finish()),
            Arc::new(span.finish()),
            Arc::new(parent.finish()),
            dict_of(self.spans.iter().map(|s| sym(s.service)).collect())?,
            dict_of(self.spans.iter().map(|s| sym(s.name)).collect())?,
            arrow_cast_dict(&kinds)?,
            Arc::new(Int64Array::from_iter_values(
                self.spans.iter().map(|s| s.start_ns),
            )),
            Arc::new(Int64Array::from_iter_values(
                self.spans.iter().map(|s| s.end_ns),
            )),
            arrow_cast_dict(&statuses)?,
            dict_of(self.spans.iter().map(|s| opt(s.peer)).collect())?,
            dict_of(self.spans.iter().map(|s| opt(s.http_route)).collect())?,
            dict_of(self.spans.iter().map(|s| opt(s.rpc_method)).collect())?,
            dict_of(self.spans.iter().map(|s| opt(s.error_type)).collect())?,
            dict_of(self.spans.iter().map(|s| opt(s.experiment)).collect())?,
            Arc::new(DictionaryArray::<Int32Type>::from_iter(
                self.spans.iter().map(|s| s.peer_kind.as_str()),
            )),
            Arc::new(link_trace.finish()),
            Arc::new(link_span.finish()),
        ];
        RecordBatch::try_new(span_table_schema(), columns)
    }
}

/// Dictionary-encodes a small-cardinality string column.
fn arrow_cast_dict(strings: &ArrayRef) -> Result<ArrayRef, arrow_schema::ArrowError> {
    let s = strings.as_string::<i32>();
    let dict: DictionaryArray<Int32Type> = s.iter().collect();
    Ok(Arc::new(dict))
}

/// A string column of any of the encodings other tools write (dictionary, utf8, large utf8, view).
enum StrCol<'a> {
    Dict(&'a DictionaryArray<Int32Type>, &'a StringArray),
    Utf8(&'a StringArray),
    Large(&'a arrow_array::LargeStringArray),
    View(&'a arrow_array::StringViewArray),
    Absent,
}

impl<'a> StrCol<'a> {
    fn of(batch: &'a RecordBatch, name: &str) -> Result<StrCol<'a>, String> {
        let Some(col) = batch.column_by_name(name) else {
            return Ok(StrCol::Absent);
        };
        match col.data_type() {
            DataType::Dictionary(k, v) if **k == DataType::Int32 && **v == DataType::Utf8 => {
                let d = col.as_dictionary::<Int32Type>();
                Ok(StrCol::Dict(d, d.values().as_string::<i32>()))
            }
            DataType::Utf8 => Ok(StrCol::Utf8(col.as_string::<i32>())),
            DataType::LargeUtf8 => Ok(StrCol::Large(col.as_string::<i64>())),
            DataType::Utf8View => Ok(StrCol::View(col.as_string_view())),
            other => Err(format!("column {name} has type {other}, expected a string")),
        }
    }

    fn get(&self, i: usize) -> Option<&'a str> {
        match self {
            StrCol::Dict(d, v) => {
                if d.is_null(i) {
                    return None;
                }
                let k = usize::try_from(d.keys().value(i)).ok()?;
                (k < v.len() && !v.is_null(k)).then(|| v.value(k))
            }
            StrCol::Utf8(a) => (!a.is_null(i)).then(|| a.value(i)),
            StrCol::Large(a) => (!a.is_null(i)).then(|| a.value(i)),
            StrCol::View(a) => (!a.is_null(i)).then(|| a.value(i)),
            StrCol::Absent => None,
        }
    }
}

fn fixed<'a>(
    batch: &'a RecordBatch,
    name: &str,
    width: i32,
) -> Result<&'a arrow_array::FixedSizeBinaryArray, String> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| format!("no column {name}: not an augur span table"))?;
    match col.data_type() {
        DataType::FixedSizeBinary(w) if *w == width => Ok(col.as_fixed_size_binary()),
        other => Err(format!(
            "column {name} has type {other}, expected fixed_size_binary({width})"
        )),
    }
}

fn optional_fixed<'a>(
    batch: &'a RecordBatch,
    name: &str,
    width: i32,
) -> Result<Option<&'a arrow_array::FixedSizeBinaryArray>, String> {
    if batch.column_by_name(name).is_none() {
        return Ok(None);
    }
    fixed(batch, name, width).map(Some)
}

fn int64<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a Int64Array, String> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| format!("no column {name}: not an augur span table"))?;
    col.as_any()
        .downcast_ref::<Int64Array>()
        .ok_or_else(|| format!("column {name} has type {}, expected int64", col.data_type()))
}

/// Appends the spans of an Arrow record batch of the span table to `out`; bad rows go to `bad`.
pub(crate) fn push_record_batch(
    batch: &RecordBatch,
    out: &mut SpanBatch,
    bad: &mut dyn FnMut(usize, String) -> Result<(), IngestError>,
) -> Result<(), String> {
    let trace = fixed(batch, "trace_id", 16)?;
    let span = fixed(batch, "span_id", 8)?;
    let parent = fixed(batch, "parent_span_id", 8)?;
    let start = int64(batch, "start_ns")?;
    let end = int64(batch, "end_ns")?;
    let service = StrCol::of(batch, "service")?;
    let name = StrCol::of(batch, "name")?;
    let kind = StrCol::of(batch, "kind")?;
    let status = StrCol::of(batch, "status")?;
    let peer = StrCol::of(batch, "peer")?;
    let http_route = StrCol::of(batch, "http_route")?;
    let rpc_method = StrCol::of(batch, "rpc_method")?;
    let error_type = StrCol::of(batch, "error_type")?;
    let experiment = StrCol::of(batch, "experiment")?;
    let peer_kind = StrCol::of(batch, "peer_kind")?;
    // Absent in files written before links were kept: no links.
    let link_trace = optional_fixed(batch, "link_trace_id", 16)?;
    let link_span = optional_fixed(batch, "link_span_id", 8)?;
    for i in 0..batch.num_rows() {
        if trace.is_null(i) || span.is_null(i) || start.is_null(i) || end.is_null(i) {
            bad(i, "null trace_id, span_id, start_ns or end_ns".into())
                .map_err(|e| e.to_string())?;
            continue;
        }
        let mut trace_id = [0u8; 16];
        trace_id.copy_from_slice(trace.value(i));
        let mut span_id = [0u8; 8];
        span_id.copy_from_slice(span.value(i));
        let parent_span_id = (!parent.is_null(i)).then(|| {
            let mut p = [0u8; 8];
            p.copy_from_slice(parent.value(i));
            p
        });
        let strings = &mut out.strings;
        let mut opt = |c: &StrCol<'_>| c.get(i).map(|s| strings.intern(s));
        let s = Span {
            trace_id,
            span_id,
            parent_span_id,
            service: 0,
            name: 0,
            kind: kind
                .get(i)
                .and_then(SpanKind::from_name)
                .unwrap_or_default(),
            start_ns: start.value(i),
            end_ns: end.value(i),
            status: status
                .get(i)
                .and_then(StatusCode::from_name)
                .unwrap_or_default(),
            peer: opt(&peer),
            peer_kind: peer_kind
                .get(i)
                .map_or(PeerKind::Unknown, PeerKind::from_name),
            http_route: opt(&http_route),
            rpc_method: opt(&rpc_method),
            error_type: opt(&error_type),
            experiment: opt(&experiment),
        };
        let service = out.strings.intern(
            service
                .get(i)
                .filter(|s| !s.is_empty())
                .unwrap_or("unknown_service"),
        );
        let name = out.strings.intern(name.get(i).unwrap_or(""));
        out.spans.push(Span { service, name, ..s });
        if let (Some(lt), Some(ls)) = (link_trace, link_span) {
            if !lt.is_null(i) && !ls.is_null(i) {
                let (mut t, mut l) = ([0u8; 16], [0u8; 8]);
                t.copy_from_slice(lt.value(i));
                l.copy_from_slice(ls.value(i));
                out.link_last(t, l);
            }
        }
    }
    Ok(())
}

pub(crate) fn read_parquet_file(ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let file = File::open(ctx.path).map_err(|e| IngestError::io(ctx.path, e))?;
    let len = file.metadata().map(|m| m.len()).unwrap_or(0);
    ctx.report.bytes += len;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| ctx.unreadable(Format::Parquet, e.to_string()))?;
    read_batches(builder, ctx)
}

pub(crate) fn read_parquet_bytes(bytes: Vec<u8>, ctx: &mut Ctx<'_>) -> Result<(), IngestError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(|e| ctx.unreadable(Format::Parquet, e.to_string()))?;
    read_batches(builder, ctx)
}

fn read_batches<T: parquet::file::reader::ChunkReader + 'static>(
    builder: ParquetRecordBatchReaderBuilder<T>,
    ctx: &mut Ctx<'_>,
) -> Result<(), IngestError> {
    let mut reader = builder
        .with_batch_size(ctx.opts.batch_size.clamp(1024, 1 << 20))
        .build()
        .map_err(|e| ctx.unreadable(Format::Parquet, e.to_string()))?;
    let mut row0 = 0usize;
    loop {
        // The parquet crate panics on some damaged pages instead of returning an error (a
        // mutated file found one in its bit unpacking, 2026-12-02). A damaged file is bad
        // input, not a reason to crash: its panic is caught and reported as the file's error.
        let next = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| reader.next()));
        let batch = match next {
            Ok(None) => break,
            Ok(Some(batch)) => batch,
            Err(panic) => {
                let why = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "no reason given".into());
                return Err(ctx.unreadable(
                    Format::Parquet,
                    format!("row {row0}: the Parquet decoder failed on damaged data ({why})"),
                ));
            }
        };
        let batch =
            batch.map_err(|e| ctx.unreadable(Format::Parquet, format!("row {row0}: {e}")))?;
        let mut problems: Vec<(usize, String)> = Vec::new();
        let mut bad = |i: usize, reason: String| {
            problems.push((i, reason));
            Ok(())
        };
        push_record_batch(&batch, &mut ctx.batch, &mut bad)
            .map_err(|m| ctx.unreadable(Format::Parquet, m))?;
        for (i, reason) in problems {
            ctx.bad(format!("row {}", row0 + i), reason)?;
        }
        row0 += batch.num_rows();
        ctx.maybe_flush()?;
    }
    Ok(())
}

/// Writes span batches to one Parquet file (zstd-compressed, the span table schema).
pub struct ParquetSpanWriter {
    path: PathBuf,
    writer: ArrowWriter<File>,
    rows: u64,
}

impl ParquetSpanWriter {
    /// Creates `path`, which must not exist yet (a span file is never overwritten).
    pub fn create_new(path: &Path) -> Result<Self, IngestError> {
        let file = File::options()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| IngestError::io(path, e))?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
            .set_max_row_group_row_count(Some(256 * 1024));
        // Ids and times are (nearly) unique per span: a dictionary for them is pure cost (its
        // hashing and comparing was a quarter of lake writing, perf 2026-11-25); zstd still
        // compresses a trace id's repeats.
        let props = [
            "trace_id",
            "span_id",
            "parent_span_id",
            "start_ns",
            "end_ns",
        ]
        .into_iter()
        .fold(props, |p, c| {
            p.set_column_dictionary_enabled(ColumnPath::from(c), false)
        })
        .build();
        let writer = ArrowWriter::try_new(file, span_table_schema(), Some(props)).map_err(|e| {
            IngestError::Write {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }
        })?;
        Ok(ParquetSpanWriter {
            path: path.to_path_buf(),
            writer,
            rows: 0,
        })
    }

    /// Appends a batch.
    pub fn write(&mut self, batch: &SpanBatch) -> Result<(), IngestError> {
        let err = |e: String| IngestError::Write {
            path: self.path.clone(),
            reason: e,
        };
        let rb = batch.to_record_batch().map_err(|e| err(e.to_string()))?;
        self.writer.write(&rb).map_err(|e| err(e.to_string()))?;
        self.rows += batch.len() as u64;
        Ok(())
    }

    /// Rows written so far.
    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Finishes the file (writes the footer and syncs it to disk).
    pub fn finish(self) -> Result<PathBuf, IngestError> {
        let path = self.path;
        let file = self.writer.into_inner().map_err(|e| IngestError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        file.sync_all().map_err(|e| IngestError::io(&path, e))?;
        Ok(path)
    }
}

/// Writes one batch as a new Parquet file.
pub fn write_parquet(path: &Path, batch: &SpanBatch) -> Result<(), IngestError> {
    let mut w = ParquetSpanWriter::create_new(path)?;
    w.write(batch)?;
    w.finish().map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrow_round_trip_is_lossless() {
        let mut b = SpanBatch::new();
        for i in 0..10u8 {
            b.push_owned(&crate::OwnedSpan {
                trace_id: [i; 16],
                span_id: [i + 1; 8],
                parent_span_id: (i % 2 == 0).then_some([9; 8]),
                service: format!("svc{}", i % 3),
                name: "op".into(),
                kind: i % 6,
                start_ns: i64::from(i) * 100,
                end_ns: i64::from(i) * 100 + 50,
                status: i % 3,
                peer: (i == 3).then(|| "db".to_string()),
                peer_kind: Default::default(),
                http_route: None,
                rpc_method: Some("M".into()),
                error_type: None,
                experiment: (i == 4).then(|| "x:down".to_string()),
                link: (i % 4 == 1).then_some(([7; 16], [i; 8])),
            });
        }
        let rb = b.to_record_batch().unwrap();
        let mut back = SpanBatch::new();
        push_record_batch(&rb, &mut back, &mut |_, _| Ok(())).unwrap();
        assert_eq!(back.to_owned_spans(), b.to_owned_spans());
        assert_eq!(back.links.len(), 3);
        // A table without the link columns (an older lake) reads as spans without links.
        let mut keep = rb
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect::<Vec<_>>();
        keep.retain(|n| !n.starts_with("link_"));
        let idx: Vec<usize> = keep
            .iter()
            .map(|n| rb.schema().index_of(n).unwrap())
            .collect();
        let old = rb.project(&idx).unwrap();
        let mut back = SpanBatch::new();
        push_record_batch(&old, &mut back, &mut |_, _| Ok(())).unwrap();
        assert!(back.links.is_empty());
        assert_eq!(back.len(), 10);
    }
}
