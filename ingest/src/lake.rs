//! The span lake: Parquet files of the span table, partitioned by the hour of each span's start,
//! `DIR/hour=YYYY-MM-DDTHH/part-<unique>.parquet` (Hive-style, so polars, DuckDB and Spark read the
//! partition column too).
//!
//! Appending never rewrites an earlier part: each append writes new files, first under a hidden
//! name (`.part-….parquet.tmp`, which readers skip) and renames them when complete, so a crash
//! leaves no half-written part visible.
//!
//! ## Runs: all of an ingest or none of it
//! A run ([`begin_run`]) stores a batch of trace files together with the lake's list of files it
//! holds (a manifest kept by the caller). Before its first part it writes a hidden marker,
//! `.augur-ingest-pending` (the run's id and the manifest's size); its parts are named after the
//! run (`part-<run>-<n>.parquet`); [`commit`] replaces the manifest with its longer version (a
//! rename) and removes the marker. A marker found at the next run's start ([`recover`]) means
//! the run before it stopped: if the manifest grew since the marker was written, the run had
//! committed and only the marker is left; otherwise its parts are removed, so that ingesting its
//! files again stores them once. A run that fails is rolled back the same way at once
//! ([`LakeWriter::abandon`]).

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

/// The hidden marker of a run that has not committed (see the module docs).
pub const PENDING: &str = ".augur-ingest-pending";

/// The marker's content.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Pending {
    /// The run's id: its parts are `part-<run>-<n>.parquet`.
    run: String,
    /// The manifest's size when the run began: a larger one means the run committed.
    manifest_bytes: u64,
}

/// What [`recover`] found of the run before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Every run before had finished.
    Clean,
    /// The run before had committed but stopped before removing its marker.
    Committed,
    /// The run before had not committed: its parts (this many) were removed.
    RolledBack {
        /// Parts removed, finished and unfinished.
        parts: usize,
    },
}

fn file_len(path: &Path) -> Result<u64, IngestError> {
    match std::fs::metadata(path) {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(IngestError::io(path, e)),
    }
}

/// Finishes what the run before left (see the module docs): removes the parts of a run that had
/// not committed and the marker.
pub fn recover(dir: &Path, manifest: &Path) -> Result<Recovery, IngestError> {
    let marker = dir.join(PENDING);
    let text = match std::fs::read_to_string(&marker) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Recovery::Clean),
        Err(e) => return Err(IngestError::io(&marker, e)),
    };
    let pending: Pending = serde_json::from_str(&text).map_err(|e| {
        IngestError::io(
            &marker,
            std::io::Error::other(format!(
                "not a run marker ({e}); a run that stopped left it: remove the parts it names \
                 and the marker by hand"
            )),
        )
    })?;
    let done = if file_len(manifest)? > pending.manifest_bytes {
        Recovery::Committed
    } else {
        Recovery::RolledBack {
            parts: remove_run_parts(dir, &pending.run)?,
        }
    };
    std::fs::remove_file(&marker).map_err(|e| IngestError::io(&marker, e))?;
    crate::wal::sync_dir(dir)?;
    Ok(done)
}

/// Removes every part of `run`, finished or not; returns how many.
fn remove_run_parts(dir: &Path, run: &str) -> Result<usize, IngestError> {
    let finished = format!("part-{run}-");
    let unfinished = format!(".part-{run}-");
    remove_parts(dir, |n| {
        n.starts_with(&finished) || n.starts_with(&unfinished)
    })
}

/// Starts a run (see the module docs) after recovering the one before: writes the marker and
/// returns a writer whose parts are named after the run, and what was recovered.
pub fn begin_run(dir: &Path, manifest: &Path) -> Result<(LakeWriter, Recovery), IngestError> {
    let mut writer = LakeWriter::new(dir)?;
    let recovered = recover(dir, manifest)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let run = format!("{now}-{}", std::process::id());
    let pending = Pending {
        run: run.clone(),
        manifest_bytes: file_len(manifest)?,
    };
    let marker = dir.join(PENDING);
    let text = serde_json::to_string(&pending)
        .map_err(|e| IngestError::io(&marker, std::io::Error::other(e)))?;
    write_synced(&marker, text.as_bytes())?;
    crate::wal::sync_dir(dir)?;
    writer.run = Some(run);
    Ok((writer, recovered))
}

/// Writes `bytes` to `path` and syncs it.
fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), IngestError> {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).map_err(|e| IngestError::io(path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| IngestError::io(path, e))
}

/// Commits a run whose writer finished: the manifest gains `lines` (replaced whole by a rename,
/// so it is never seen half written) and the marker goes.
pub fn commit(dir: &Path, manifest: &Path, lines: &str) -> Result<(), IngestError> {
    if !lines.is_empty() {
        let mut text = match std::fs::read(manifest) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(IngestError::io(manifest, e)),
        };
        if text.last().is_some_and(|&b| b != b'\n') {
            text.push(b'\n');
        }
        text.extend_from_slice(lines.as_bytes());
        let name = manifest
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("manifest");
        let tmp = manifest.with_file_name(format!(".{name}.tmp"));
        write_synced(&tmp, &text)?;
        std::fs::rename(&tmp, manifest).map_err(|e| IngestError::io(manifest, e))?;
    }
    let marker = dir.join(PENDING);
    match std::fs::remove_file(&marker) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(IngestError::io(&marker, e)),
    }
    crate::wal::sync_dir(dir)
}

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
    /// The run whose parts this writer writes ([`begin_run`]), if any.
    run: Option<String>,
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
            run: None,
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
            let name = match &self.run {
                Some(run) => format!("part-{run}-{}.parquet", SEQ.fetch_add(1, Ordering::Relaxed)),
                None => unique_part_name(),
            };
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

    /// Rolls back a run that failed: removes every part it wrote, finished or not, and its
    /// marker; returns how many parts. A writer that is not a run only drops its unfinished
    /// parts.
    pub fn abandon(mut self) -> Result<usize, IngestError> {
        let open = std::mem::take(&mut self.open);
        let mut removed = 0;
        for o in open.into_values() {
            let tmp = o.tmp.clone();
            drop(o);
            if std::fs::remove_file(&tmp).is_ok() {
                removed += 1;
            }
        }
        if self.run.is_none() {
            return Ok(removed);
        }
        for part in std::mem::take(&mut self.written) {
            std::fs::remove_file(&part).map_err(|e| IngestError::io(&part, e))?;
            removed += 1;
        }
        let marker = self.dir.join(PENDING);
        match std::fs::remove_file(&marker) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(IngestError::io(&marker, e)),
        }
        crate::wal::sync_dir(&self.dir)?;
        Ok(removed)
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
    remove_parts(dir, |n| n.starts_with(".part-") && n.ends_with(".tmp"))
}

/// Removes the files of every partition whose name `doomed` picks; returns how many.
fn remove_parts(dir: &Path, doomed: impl Fn(&str) -> bool) -> Result<usize, IngestError> {
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
        let mut any = false;
        for part in std::fs::read_dir(&partition).map_err(|e| IngestError::io(&partition, e))? {
            let part = part.map_err(|e| IngestError::io(&partition, e))?.path();
            if part
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(&doomed)
            {
                std::fs::remove_file(&part).map_err(|e| IngestError::io(&part, e))?;
                removed += 1;
                any = true;
            }
        }
        if any {
            crate::wal::sync_dir(&partition)?;
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

    /// A batch of spans starting in `hours` distinct hours.
    fn spans_over(hours: i64) -> SpanBatch {
        let mut b = SpanBatch::new();
        for h in 0..hours {
            b.push_owned(&crate::OwnedSpan {
                trace_id: [h as u8; 16],
                span_id: [1; 8],
                parent_span_id: None,
                service: "svc".into(),
                name: "op".into(),
                kind: 2,
                start_ns: h * 3_600_000_000_000,
                end_ns: h * 3_600_000_000_000 + 50,
                status: 0,
                peer: None,
                peer_kind: Default::default(),
                http_route: None,
                rpc_method: None,
                error_type: None,
                experiment: None,
                link: None,
            });
        }
        b
    }

    /// Every file under the lake's partitions.
    fn parts(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for p in std::fs::read_dir(dir).unwrap() {
            let p = p.unwrap().path();
            if p.is_dir() {
                for f in std::fs::read_dir(&p).unwrap() {
                    out.push(f.unwrap().file_name().to_string_lossy().into_owned());
                }
            }
        }
        out.sort();
        out
    }

    #[test]
    fn a_run_that_stopped_before_committing_is_rolled_back_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let (lake, manifest) = (dir.path().join("lake"), dir.path().join("lake/list"));
        // A committed run: its parts and the manifest stay.
        let (mut w, rec) = begin_run(&lake, &manifest).unwrap();
        assert_eq!(rec, Recovery::Clean);
        w.append(&spans_over(2)).unwrap();
        w.finish().unwrap();
        commit(&lake, &manifest, "a\n").unwrap();
        let kept = parts(&lake);
        assert_eq!(kept.len(), 2);
        // A run that stopped (a crash) after more partitions than may stay open had made it
        // finish some parts early, before committing.
        let (mut w, rec) = begin_run(&lake, &manifest).unwrap();
        assert_eq!(rec, Recovery::Clean);
        w.append(&spans_over(MAX_OPEN_PARTITIONS as i64 + 3))
            .unwrap();
        std::mem::forget(w);
        assert!(parts(&lake).len() > kept.len() + MAX_OPEN_PARTITIONS);
        assert!(lake.join(PENDING).exists());
        // The next start removes all of them, finished and unfinished, and nothing else.
        assert_eq!(
            recover(&lake, &manifest).unwrap(),
            Recovery::RolledBack {
                parts: MAX_OPEN_PARTITIONS + 3
            }
        );
        assert_eq!(parts(&lake), kept);
        assert!(!lake.join(PENDING).exists());
        assert_eq!(std::fs::read_to_string(&manifest).unwrap(), "a\n");
    }

    #[test]
    fn a_run_that_committed_keeps_its_parts_though_its_marker_was_left() {
        let dir = tempfile::tempdir().unwrap();
        let (lake, manifest) = (dir.path().join("lake"), dir.path().join("lake/list"));
        let (mut w, _) = begin_run(&lake, &manifest).unwrap();
        w.append(&spans_over(3)).unwrap();
        w.finish().unwrap();
        // The manifest was replaced, then the process stopped before removing the marker.
        let marker = std::fs::read(lake.join(PENDING)).unwrap();
        commit(&lake, &manifest, "a\n").unwrap();
        std::fs::write(lake.join(PENDING), marker).unwrap();
        let (w, rec) = begin_run(&lake, &manifest).unwrap();
        assert_eq!(rec, Recovery::Committed);
        assert_eq!(parts(&lake).len(), 3);
        // A run that fails rolls itself back at once, and takes nothing else with it.
        let mut w2 = w;
        w2.append(&spans_over(MAX_OPEN_PARTITIONS as i64 + 1))
            .unwrap();
        assert_eq!(w2.abandon().unwrap(), MAX_OPEN_PARTITIONS + 1);
        assert_eq!(parts(&lake).len(), 3);
        assert!(!lake.join(PENDING).exists());
        // A marker that is not one is an error that says what to do, not a guess.
        std::fs::write(lake.join(PENDING), "garbage").unwrap();
        let e = recover(&lake, &manifest).unwrap_err().to_string();
        assert!(e.contains("not a run marker"), "{e}");
    }
}
