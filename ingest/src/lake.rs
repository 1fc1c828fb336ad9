//! The span lake: Parquet files of the span table, partitioned by the hour of each span's start,
//! `DIR/hour=YYYY-MM-DDTHH/part-<unique>.parquet` (Hive-style, so polars, DuckDB and Spark read the
//! partition column too).
//!
//! Appending never rewrites an earlier part: each append writes new files, first under a hidden
//! name (`.part-….parquet.tmp`, which readers skip) and renames them when complete, so a crash
//! leaves no half-written part visible.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::parquet_io::ParquetSpanWriter;
use crate::span::{Span, SpanBatch};
use crate::IngestError;

/// How many hour partitions may be open at once while appending; past that, the least recently
/// written one is finished (a later span of that hour starts another part).
pub const MAX_OPEN_PARTITIONS: usize = 64;

static SEQ: AtomicU64 = AtomicU64::new(0);

/// The partition name of a start time: `YYYY-MM-DDTHH` (UTC).
pub fn hour_of(start_ns: i64) -> String {
    let secs = start_ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let hour = secs.rem_euclid(86_400) / 3600;
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{hour:02}")
}

/// A time as UTC text, `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_text(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let t = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        t / 3600,
        t % 3600 / 60,
        t % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Open {
    writer: ParquetSpanWriter,
    tmp: PathBuf,
    last_used: u64,
}

/// Appends span batches to a lake directory.
pub struct LakeWriter {
    dir: PathBuf,
    open: BTreeMap<String, Open>,
    tick: u64,
    written: Vec<PathBuf>,
    rows: u64,
}

impl LakeWriter {
    /// A writer appending to `dir` (created if absent).
    pub fn new(dir: &Path) -> Result<Self, IngestError> {
        if dir.exists() && !dir.is_dir() {
            return Err(IngestError::io(
                dir,
                std::io::Error::other("exists and is not a directory (a lake is a directory)"),
            ));
        }
        std::fs::create_dir_all(dir).map_err(|e| IngestError::io(dir, e))?;
        Ok(LakeWriter {
            dir: dir.to_path_buf(),
            open: BTreeMap::new(),
            tick: 0,
            written: Vec::new(),
            rows: 0,
        })
    }

    /// Appends a batch, splitting it by hour.
    pub fn append(&mut self, batch: &SpanBatch) -> Result<(), IngestError> {
        const HOUR_NS: i64 = 3_600_000_000_000;
        let hour_index = |s: &Span| s.start_ns.div_euclid(HOUR_NS);
        // Usually every span of a batch is in one hour: no split, no copy.
        let first = batch.spans.first().map(hour_index);
        if let Some(h) = first {
            if batch.spans.iter().all(|s| hour_index(s) == h) {
                return self.append_hour(&hour_of(h * HOUR_NS), batch);
            }
        }
        let mut by_hour: BTreeMap<i64, SpanBatch> = BTreeMap::new();
        for (i, s) in batch.spans.iter().enumerate() {
            let part = by_hour.entry(hour_index(s)).or_default();
            part.spans.push(*s);
            if let Some((t, l)) = batch.link_of(i) {
                part.link_last(t, l);
            }
        }
        for (h, mut part) in by_hour {
            part.strings = batch.strings.clone();
            self.append_hour(&hour_of(h * HOUR_NS), &part)?;
        }
        Ok(())
    }

    /// Appends spans that all start in `hour`.
    fn append_hour(&mut self, hour: &str, part: &SpanBatch) -> Result<(), IngestError> {
        self.tick += 1;
        if !self.open.contains_key(hour) {
            if self.open.len() >= MAX_OPEN_PARTITIONS {
                self.close_oldest()?;
            }
            let part_dir = self.dir.join(format!("hour={hour}"));
            std::fs::create_dir_all(&part_dir).map_err(|e| IngestError::io(&part_dir, e))?;
            let name = unique_part_name();
            let tmp = part_dir.join(format!(".{name}.tmp"));
            let writer = ParquetSpanWriter::create_new(&tmp)?;
            self.open.insert(
                hour.to_string(),
                Open {
                    writer,
                    tmp,
                    last_used: 0,
                },
            );
        }
        if let Some(open) = self.open.get_mut(hour) {
            open.last_used = self.tick;
            self.rows += part.spans.len() as u64;
            open.writer.write(part)?;
        }
        Ok(())
    }

    fn close_oldest(&mut self) -> Result<(), IngestError> {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, o)| o.last_used)
            .map(|(h, _)| h.clone());
        if let Some(h) = oldest {
            if let Some(o) = self.open.remove(&h) {
                self.finish_one(o)?;
            }
        }
        Ok(())
    }

    fn finish_one(&mut self, o: Open) -> Result<(), IngestError> {
        let tmp = o.writer.finish()?;
        let name = tmp
            .file_name()
            .and_then(|n| n.to_str())
            .map(|n| {
                n.trim_start_matches('.')
                    .trim_end_matches(".tmp")
                    .to_string()
            })
            .unwrap_or_else(unique_part_name);
        let fin = o.tmp.with_file_name(name);
        std::fs::rename(&tmp, &fin).map_err(|e| IngestError::io(&fin, e))?;
        if let Some(dir) = fin.parent() {
            crate::wal::sync_dir(dir)?;
        }
        self.written.push(fin);
        Ok(())
    }

    /// Finishes every open part; returns the files written and the rows in them.
    pub fn finish(mut self) -> Result<(Vec<PathBuf>, u64), IngestError> {
        let open = std::mem::take(&mut self.open);
        for (_, o) in open {
            self.finish_one(o)?;
        }
        Ok((std::mem::take(&mut self.written), self.rows))
    }
}

impl Drop for LakeWriter {
    /// A writer dropped without [`LakeWriter::finish`] (its ingest failed) removes the parts it
    /// left unfinished: readers skip them anyway, and nothing is meant to come of them.
    fn drop(&mut self) {
        for o in std::mem::take(&mut self.open).into_values() {
            let tmp = o.tmp.clone();
            drop(o);
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Removes the parts a crashed writer left unfinished (hidden `.part-….tmp` files, which readers
/// skip anyway); returns how many. The live receiver calls this before replaying its log, whose
/// records those parts held.
pub fn remove_unfinished(dir: &Path) -> Result<usize, IngestError> {
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(IngestError::io(dir, e)),
    };
    for partition in entries {
        let partition = partition.map_err(|e| IngestError::io(dir, e))?.path();
        if !partition.is_dir() {
            continue;
        }
        for part in std::fs::read_dir(&partition).map_err(|e| IngestError::io(&partition, e))? {
            let part = part.map_err(|e| IngestError::io(&partition, e))?.path();
            let hidden_tmp = part
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(".part-") && n.ends_with(".tmp"));
            if hidden_tmp {
                std::fs::remove_file(&part).map_err(|e| IngestError::io(&part, e))?;
                removed += 1;
            }
        }
    }
    Ok(removed)
}

fn unique_part_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    format!("part-{now}-{}-{seq}.parquet", std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hours_are_utc_calendar_hours() {
        assert_eq!(hour_of(0), "1970-01-01T00");
        // 2023-01-29 08:43:00 UTC
        assert_eq!(hour_of(1_674_981_780_000_000_000), "2023-01-29T08");
        assert_eq!(hour_of(951_782_400_000_000_000), "2000-02-29T00");
        assert_eq!(utc_text(1_674_981_780_000_000_000), "2023-01-29T08:43:00Z");
        assert_eq!(utc_text(-1_000_000_000), "1969-12-31T23:59:59Z");
        assert_eq!(hour_of(-1), "1969-12-31T23");
    }
}
