//! Durable state for things that must survive a restart (FSM states, timed blocks): an
//! append-only log of JSON lines, fsynced before a change is acknowledged, compacted into a
//! snapshot once it grows.
//!
//! Layout in the state directory: `snapshot.json` (the state at the last compaction) and
//! `journal.log` (one record per line since then). Compaction writes the snapshot under a
//! temporary name, fsyncs it, renames it over the old one, then starts an empty log, so a
//! crash at any point leaves either the old pair or the new pair. A torn last line (a crash
//! mid-write, before the acknowledgement) is ignored on recovery.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why the journal could not be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("state directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path}: corrupt snapshot: {message}")]
    Snapshot { path: PathBuf, message: String },
    #[error("{path} line {line}: corrupt record: {message}")]
    Record {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

/// What was found on disk at open.
#[derive(Debug)]
pub struct Recovered<S, R> {
    pub snapshot: Option<S>,
    pub records: Vec<R>,
    /// A partial last line was dropped (a write interrupted by a crash).
    pub torn_tail: bool,
}

/// A journal just opened, with what it held.
pub type Opened<S, R> = (Journal<S, R>, Recovered<S, R>);

/// An open journal of records `R` over snapshots `S`.
pub struct Journal<S, R> {
    dir: PathBuf,
    log: File,
    records: usize,
    _types: PhantomData<fn(S, R)>,
}

const SNAPSHOT: &str = "snapshot.json";
const LOG: &str = "journal.log";

impl<S: Serialize + DeserializeOwned, R: Serialize + DeserializeOwned> Journal<S, R> {
    /// Opens (creating if needed) the journal in `dir` and returns what it held.
    pub fn open(dir: &Path) -> Result<Opened<S, R>, JournalError> {
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| JournalError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let snap_path = dir.join(SNAPSHOT);
        let snapshot = match std::fs::read(&snap_path) {
            Ok(bytes) => {
                Some(
                    serde_json::from_slice(&bytes).map_err(|e| JournalError::Snapshot {
                        path: snap_path.clone(),
                        message: e.to_string(),
                    })?,
                )
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&snap_path)(e)),
        };
        let log_path = dir.join(LOG);
        let mut records = Vec::new();
        let mut torn_tail = false;
        let mut good_len: u64 = 0;
        match File::open(&log_path) {
            Ok(f) => {
                let mut reader = BufReader::new(f);
                let mut line = Vec::new();
                let mut number = 0;
                loop {
                    line.clear();
                    let n = reader
                        .read_until(b'\n', &mut line)
                        .map_err(io_err(&log_path))?;
                    if n == 0 {
                        break;
                    }
                    number += 1;
                    if line.last() != Some(&b'\n') {
                        torn_tail = true;
                        break;
                    }
                    let record =
                        serde_json::from_slice(&line).map_err(|e| JournalError::Record {
                            path: log_path.clone(),
                            line: number,
                            message: e.to_string(),
                        })?;
                    records.push(record);
                    good_len += n as u64;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&log_path)(e)),
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(io_err(&log_path))?;
        if torn_tail {
            log.set_len(good_len).map_err(io_err(&log_path))?;
        }
        let journal = Journal {
            dir: dir.to_owned(),
            log,
            records: records.len(),
            _types: PhantomData,
        };
        Ok((
            journal,
            Recovered {
                snapshot,
                records,
                torn_tail,
            },
        ))
    }

    /// Appends a record and waits until it is on stable storage.
    pub fn append(&mut self, record: &R) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(record).map_err(|e| JournalError::Io {
            path: self.dir.join(LOG),
            source: io::Error::other(e),
        })?;
        line.push(b'\n');
        let path = self.dir.join(LOG);
        self.log
            .write_all(&line)
            .and_then(|_| self.log.sync_data())
            .map_err(|source| JournalError::Io { path, source })?;
        self.records += 1;
        Ok(())
    }

    /// Records appended since the last compaction.
    pub fn len(&self) -> usize {
        self.records
    }

    /// True when no record was appended since the last compaction.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// Replaces snapshot + log by `snapshot` alone.
    pub fn compact(&mut self, snapshot: &S) -> Result<(), JournalError> {
        let snap_path = self.dir.join(SNAPSHOT);
        let tmp = self.dir.join("snapshot.json.tmp");
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |source| JournalError::Io { path, source }
        };
        let bytes = serde_json::to_vec(snapshot).map_err(|e| JournalError::Io {
            path: snap_path.clone(),
            source: io::Error::other(e),
        })?;
        let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&bytes)
            .and_then(|_| f.sync_all())
            .map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, &snap_path).map_err(io_err(&snap_path))?;
        if let Ok(d) = File::open(&self.dir) {
            let _ = d.sync_all();
        }
        let log_path = self.dir.join(LOG);
        self.log.set_len(0).map_err(io_err(&log_path))?;
        self.log.sync_all().map_err(io_err(&log_path))?;
        self.records = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type J = Journal<Vec<u32>, u32>;

    #[test]
    fn records_survive_reopen_and_compaction() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, rec) = J::open(dir.path()).unwrap();
            assert!(rec.snapshot.is_none() && rec.records.is_empty());
            j.append(&1).unwrap();
            j.append(&2).unwrap();
        }
        {
            let (mut j, rec) = J::open(dir.path()).unwrap();
            assert_eq!(rec.records, vec![1, 2]);
            j.compact(&vec![1, 2]).unwrap();
            assert!(j.is_empty());
            j.append(&3).unwrap();
        }
        let (_, rec) = J::open(dir.path()).unwrap();
        assert_eq!(rec.snapshot, Some(vec![1, 2]));
        assert_eq!(rec.records, vec![3]);
        assert!(!rec.torn_tail);
    }

    #[test]
    fn a_torn_last_line_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut j, _) = J::open(dir.path()).unwrap();
            j.append(&7).unwrap();
        }
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(LOG))
            .unwrap();
        f.write_all(b"12").unwrap();
        drop(f);
        {
            let (mut j, rec) = J::open(dir.path()).unwrap();
            assert_eq!(rec.records, vec![7]);
            assert!(rec.torn_tail);
            j.append(&8).unwrap();
        }
        let (_, rec) = J::open(dir.path()).unwrap();
        assert_eq!(rec.records, vec![7, 8]);
    }

    #[test]
    fn a_corrupt_line_in_the_middle_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG), b"1\nbanana\n3\n").unwrap();
        let err = J::open(dir.path()).err().unwrap();
        assert!(err.to_string().contains("line 2"), "{err}");
    }
}
