//! The write-ahead log of the live receiver: every accepted request is appended here, and made
//! durable (`fdatasync`), before it is acknowledged, so an acknowledged span survives `kill -9`
//! and a power cut.
//!
//! ```text
//! DIR/wal-00000000000000000007.log   segment 7: records, appended, never rewritten
//!     record = len (u32 LE, of kind + payload) · crc32 (u32 LE, of kind + payload) · kind (u8) · payload
//! ```
//!
//! - **Group commit**: [`Wal::append`] writes a record and returns its end position; [`Wal::sync`]
//!   makes everything up to a position durable. Concurrent callers share one `fdatasync`: the
//!   first to arrive syncs everything written so far, the others find their position covered.
//! - **Segments**: [`Wal::rotate`] closes the current segment (synced) and starts the next; a
//!   snapshot that covers segments up to N lets [`remove_through`] delete them.
//! - **Replay** ([`replay`]) reads the segments after a snapshot in order. A record cut short or
//!   failing its checksum ends its segment (a write the crash interrupted: never acknowledged,
//!   since acknowledgement waits for the sync) and is counted, not an error.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::IngestError;

const HEADER: usize = 9;

/// The largest record accepted (a request larger than this is refused before it gets here).
pub const MAX_RECORD_BYTES: usize = 1 << 30;

struct Current {
    seq: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Bytes written to the log since it was opened, over all segments.
    written: u64,
}

/// An open write-ahead log.
pub struct Wal {
    dir: PathBuf,
    current: Mutex<Current>,
    /// Bytes known durable (same counting as `Current::written`).
    synced: Mutex<u64>,
}

/// What a replay found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// Segments read.
    pub segments: u64,
    /// Records handed over.
    pub records: u64,
    /// Records cut short or failing their checksum (each ends its segment).
    pub torn: u64,
    /// The highest segment number present (0 when none).
    pub last_segment: u64,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("wal-{seq:020}.log"))
}

/// The segment numbers present in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u64>, IngestError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(IngestError::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| IngestError::io(dir, e))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if let Some(seq) = name
            .strip_prefix("wal-")
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Makes a directory's entries (files created, renamed or removed in it) durable.
pub fn sync_dir(dir: &Path) -> Result<(), IngestError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| IngestError::io(dir, e))
}

/// What [`replay`] hands each record to: segment, kind, payload.
pub type RecordSink<'a> = dyn FnMut(u64, u8, &[u8]) -> Result<(), IngestError> + 'a;

/// Reads every record of the segments numbered above `after`, in order.
pub fn replay(dir: &Path, after: u64, f: &mut RecordSink<'_>) -> Result<Replayed, IngestError> {
    let mut out = Replayed::default();
    for seq in segments(dir)? {
        out.last_segment = out.last_segment.max(seq);
        if seq <= after {
            continue;
        }
        let path = segment_path(dir, seq);
        let bytes = std::fs::read(&path).map_err(|e| IngestError::io(&path, e))?;
        out.segments += 1;
        let mut at = 0usize;
        while at < bytes.len() {
            let Some(record) = record_at(&bytes, at) else {
                out.torn += 1;
                tracing::warn!(
                    "{}: byte {at}: a record cut short or damaged ends the segment (a write interrupted before it was acknowledged)",
                    path.display()
                );
                break;
            };
            let (kind, payload, next) = record;
            f(seq, kind, payload)?;
            out.records += 1;
            at = next;
        }
    }
    Ok(out)
}

/// The record starting at `at`: kind, payload and where the next starts; `None` if it is cut
/// short or fails its checksum.
fn record_at(bytes: &[u8], at: usize) -> Option<(u8, &[u8], usize)> {
    let header = bytes.get(at..at.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    if len == 0 || len > MAX_RECORD_BYTES + 1 {
        return None;
    }
    let end = at.checked_add(8)?.checked_add(len)?;
    let body = bytes.get(at + 8..end)?;
    (crc32fast::hash(body) == crc).then(|| (body[0], &body[1..], end))
}

/// Removes the segments numbered `seq` and below.
pub fn remove_through(dir: &Path, seq: u64) -> Result<usize, IngestError> {
    let mut removed = 0;
    for s in segments(dir)? {
        if s <= seq {
            let path = segment_path(dir, s);
            std::fs::remove_file(&path).map_err(|e| IngestError::io(&path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        sync_dir(dir)?;
    }
    Ok(removed)
}

impl Wal {
    /// Opens the log in `dir` (created if absent), starting a new segment after every one present.
    pub fn open(dir: &Path) -> Result<Wal, IngestError> {
        std::fs::create_dir_all(dir).map_err(|e| IngestError::io(dir, e))?;
        let seq = segments(dir)?.last().copied().unwrap_or(0) + 1;
        let (path, file) = create_segment(dir, seq)?;
        Ok(Wal {
            dir: dir.to_path_buf(),
            current: Mutex::new(Current {
                seq,
                path,
                file: Arc::new(file),
                written: 0,
            }),
            synced: Mutex::new(0),
        })
    }

    fn current(&self) -> MutexGuard<'_, Current> {
        // A panic while holding the lock leaves nothing half-done that matters here: positions
        // only grow after a complete write.
        self.current.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one record; `then` runs with the log still locked, given the record's segment (so
    /// callers can queue work in log order). Returns the position to pass to [`Wal::sync`].
    pub fn append<T>(
        &self,
        kind: u8,
        payload: &[u8],
        then: impl FnOnce(u64) -> T,
    ) -> Result<(u64, T), IngestError> {
        if payload.len() > MAX_RECORD_BYTES {
            return Err(IngestError::Sink(format!(
                "a record of {} bytes is larger than the log's limit of {MAX_RECORD_BYTES}",
                payload.len()
            )));
        }
        let mut record = Vec::with_capacity(HEADER + payload.len());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&[kind]);
        hasher.update(payload);
        record.extend_from_slice(&((payload.len() + 1) as u32).to_le_bytes());
        record.extend_from_slice(&hasher.finalize().to_le_bytes());
        record.push(kind);
        record.extend_from_slice(payload);
        let mut cur = self.current();
        (&*cur.file)
            .write_all(&record)
            .map_err(|e| IngestError::io(&cur.path, e))?;
        cur.written += record.len() as u64;
        let out = then(cur.seq);
        Ok((cur.written, out))
    }

    /// Blocks until everything up to `position` is durable (one `fdatasync` for all waiting).
    pub fn sync(&self, position: u64) -> Result<(), IngestError> {
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        if *synced >= position {
            return Ok(());
        }
        let (target, file, path) = {
            let cur = self.current();
            (cur.written, Arc::clone(&cur.file), cur.path.clone())
        };
        file.sync_data().map_err(|e| IngestError::io(&path, e))?;
        *synced = target;
        Ok(())
    }

    /// Closes the current segment (durable) and starts the next; returns the closed segment's
    /// number: every record appended before this call is in it or an earlier one.
    pub fn rotate(&self) -> Result<u64, IngestError> {
        let mut cur = self.current();
        cur.file
            .sync_data()
            .map_err(|e| IngestError::io(&cur.path, e))?;
        let closed = cur.seq;
        let (path, file) = create_segment(&self.dir, closed + 1)?;
        cur.seq = closed + 1;
        cur.path = path;
        cur.file = Arc::new(file);
        let written = cur.written;
        drop(cur);
        let mut synced = self.synced.lock().unwrap_or_else(|p| p.into_inner());
        *synced = (*synced).max(written);
        Ok(closed)
    }

    /// The directory of the log.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn create_segment(dir: &Path, seq: u64) -> Result<(PathBuf, File), IngestError> {
    let path = segment_path(dir, seq);
    let file = File::options()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(|e| IngestError::io(&path, e))?;
    sync_dir(dir)?;
    Ok((path, file))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(dir: &Path, after: u64) -> (Vec<(u64, u8, Vec<u8>)>, Replayed) {
        let mut got = Vec::new();
        let r = replay(dir, after, &mut |seq, kind, p| {
            got.push((seq, kind, p.to_vec()));
            Ok(())
        })
        .unwrap();
        (got, r)
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        let (p1, s1) = wal.append(1, b"one", |s| s).unwrap();
        wal.sync(p1).unwrap();
        assert_eq!(wal.rotate().unwrap(), s1);
        let (p2, s2) = wal.append(2, b"two", |s| s).unwrap();
        wal.sync(p2).unwrap();
        assert_eq!(s2, s1 + 1);
        drop(wal);
        let wal = Wal::open(dir.path()).unwrap();
        wal.append(1, b"three", |_| ()).unwrap();
        drop(wal);
        let (got, r) = all(dir.path(), 0);
        let payloads: Vec<&[u8]> = got.iter().map(|g| g.2.as_slice()).collect();
        assert_eq!(payloads, [&b"one"[..], b"two", b"three"]);
        assert_eq!((r.records, r.torn, r.last_segment), (3, 0, 3));
        let (after1, _) = all(dir.path(), 1);
        assert_eq!(after1.len(), 2);
        assert_eq!(remove_through(dir.path(), 2).unwrap(), 2);
        assert_eq!(segments(dir.path()).unwrap(), vec![3]);
    }

    #[test]
    fn a_torn_or_damaged_tail_ends_the_segment_without_error() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Wal::open(dir.path()).unwrap();
        wal.append(1, b"kept", |_| ()).unwrap();
        wal.append(1, b"cut short", |_| ()).unwrap();
        drop(wal);
        let path = segment_path(dir.path(), 1);
        let len = std::fs::metadata(&path).unwrap().len();
        let f = File::options().write(true).open(&path).unwrap();
        f.set_len(len - 3).unwrap();
        let (got, r) = all(dir.path(), 0);
        assert_eq!(got.len(), 1);
        assert_eq!(r.torn, 1);
        // A flipped byte fails the checksum.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[HEADER + 1] ^= 0x20;
        std::fs::write(&path, &bytes).unwrap();
        let (got, r) = all(dir.path(), 0);
        assert_eq!((got.len(), r.torn), (0, 1));
    }

    #[test]
    fn concurrent_appends_share_syncs_and_lose_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let wal = Arc::new(Wal::open(dir.path()).unwrap());
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let wal = Arc::clone(&wal);
                std::thread::spawn(move || {
                    for i in 0..50u8 {
                        let (p, ()) = wal.append(t, &[t, i], |_| ()).unwrap();
                        wal.sync(p).unwrap();
                        if i == 25 && t == 0 {
                            wal.rotate().unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (got, r) = all(dir.path(), 0);
        assert_eq!((got.len(), r.torn), (200, 0));
        for t in 0..4u8 {
            let mine: Vec<u8> = got.iter().filter(|g| g.1 == t).map(|g| g.2[1]).collect();
            assert_eq!(
                mine,
                (0..50).collect::<Vec<u8>>(),
                "thread {t} kept its order"
            );
        }
    }
}
