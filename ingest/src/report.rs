//! What a read saw: counts, and the bad records it skipped with where they were.

use std::fmt;
use std::path::{Path, PathBuf};

/// How many problems are kept with their full location; past that, only counted.
pub const MAX_KEPT_PROBLEMS: usize = 20;

/// One skipped record: where it was and why it was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub path: PathBuf,
    /// `line N`, `byte N`, or a path into the document.
    pub location: String,
    /// The reason.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {}",
            self.path.display(),
            self.location,
            self.reason
        )
    }
}

/// Counts of one read (one call over many files); add reads together with [`IngestReport::absorb`].
#[derive(Debug, Clone, Default)]
pub struct IngestReport {
    /// Files read.
    pub files: u64,
    /// Bytes read (after decompression).
    pub bytes: u64,
    /// Spans accepted.
    pub spans: u64,
    /// Records skipped as bad.
    pub rejected: u64,
    /// The first [`MAX_KEPT_PROBLEMS`] skipped records, with where and why.
    pub problems: Vec<Problem>,
    /// Files read per format name.
    pub formats: Vec<(&'static str, u64)>,
}

impl IngestReport {
    /// Records a skipped record.
    pub fn reject(&mut self, path: &Path, location: impl Into<String>, reason: impl Into<String>) {
        self.rejected += 1;
        if self.problems.len() < MAX_KEPT_PROBLEMS {
            self.problems.push(Problem {
                path: path.to_path_buf(),
                location: location.into(),
                reason: reason.into(),
            });
        }
    }

    /// Counts a file read as `format`.
    pub fn count_format(&mut self, format: &'static str) {
        self.files += 1;
        match self.formats.iter_mut().find(|(f, _)| *f == format) {
            Some((_, n)) => *n += 1,
            None => self.formats.push((format, 1)),
        }
    }

    /// Adds another report's counts to this one.
    pub fn absorb(&mut self, other: IngestReport) {
        self.files += other.files;
        self.bytes += other.bytes;
        self.spans += other.spans;
        self.rejected += other.rejected;
        for p in other.problems {
            if self.problems.len() < MAX_KEPT_PROBLEMS {
                self.problems.push(p);
            }
        }
        for (f, n) in other.formats {
            match self.formats.iter_mut().find(|(g, _)| *g == f) {
                Some((_, m)) => *m += n,
                None => self.formats.push((f, n)),
            }
        }
    }
}
