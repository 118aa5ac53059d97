//! The spool: runs that the store could not take (down, locked, full, read-only) wait here
//! as one JSON file each until the store takes them back.
//!
//! A file appears whole or not at all (written under a temporary name, synced, renamed, and
//! the directory synced), so a crash while spooling never leaves half a run to replay. File
//! names start with the run's start time, so draining replays runs in order. This module
//! must not talk to the database: [`Store`](super::Store) decides when to spool and drain.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine;
use chrono::DateTime;
use serde::{Deserialize, Serialize};

use super::RunRecord;

const SUFFIX: &str = ".run.json";
const TMP_PREFIX: &str = ".tmp-";
const BAD_SUFFIX: &str = ".bad";

/// The file format of one spooled run (versioned: a spool may outlive an upgrade).
#[derive(Serialize, Deserialize)]
struct SpooledRun {
    format: u32,
    probe: String,
    started_at_us: i64,
    fingerprint: String,
    grade: String,
    document: serde_json::Value,
    figures: Vec<(String, f64)>,
    /// Base64 of the encoded histogram.
    histogram: Option<String>,
}

/// A directory of runs waiting for the store.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    count: AtomicUsize,
}

impl Spool {
    /// Opens (creating it when missing) a spool directory and counts what waits in it.
    /// Temporary files left by a crash while spooling are removed: their run was never
    /// acknowledged as spooled.
    pub fn open(dir: impl Into<PathBuf>) -> std::io::Result<Spool> {
        let dir = dir.into();
        fs::create_dir_all(&dir)?;
        let spool = Spool {
            dir,
            count: AtomicUsize::new(0),
        };
        for entry in fs::read_dir(&spool.dir)?.flatten() {
            let name = entry.file_name();
            if name.to_string_lossy().starts_with(TMP_PREFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        spool.count.store(spool.pending()?.len(), Ordering::Relaxed);
        Ok(spool)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many runs wait (as this process last saw; another process sharing the directory
    /// is seen at the next [`pending`](Self::pending)).
    pub fn len(&self) -> usize {
        self.count.load(Ordering::Relaxed)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes a run to the spool, durably; returns its file.
    pub fn put(&self, run: &RunRecord) -> std::io::Result<PathBuf> {
        let started_at_us = run.started_at.timestamp_micros();
        let body = SpooledRun {
            format: 1,
            probe: run.probe.clone(),
            started_at_us,
            fingerprint: run.fingerprint.clone(),
            grade: run.grade.clone(),
            document: run.document.clone(),
            // JSON has no NaN: a figure that is not finite (never stored anyway) would make
            // the file unreadable.
            figures: run
                .figures
                .iter()
                .filter(|(_, v)| v.is_finite())
                .cloned()
                .collect(),
            histogram: run
                .histogram
                .as_ref()
                .map(|h| base64::engine::general_purpose::STANDARD.encode(h)),
        };
        let bytes = serde_json::to_vec(&body).map_err(std::io::Error::other)?;
        // Sorting by name replays in start order; the random part keeps names unique.
        let name = format!(
            "{:020}-{:016x}{SUFFIX}",
            started_at_us.max(0),
            fastrand::u64(..)
        );
        let tmp = self.dir.join(format!("{TMP_PREFIX}{name}"));
        let path = self.dir.join(&name);
        {
            let mut f = fs::File::create(&tmp)?;
            if let Err(e) = f.write_all(&bytes).and_then(|_| f.sync_all()) {
                drop(f);
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
        }
        fs::rename(&tmp, &path)?;
        fs::File::open(&self.dir)?.sync_all()?;
        self.count.fetch_add(1, Ordering::Relaxed);
        Ok(path)
    }

    /// The spooled files, oldest run first (re-reading the directory, which also refreshes
    /// [`len`](Self::len)).
    pub fn pending(&self) -> std::io::Result<Vec<PathBuf>> {
        let mut files: Vec<PathBuf> = fs::read_dir(&self.dir)?
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(SUFFIX) && !n.starts_with(TMP_PREFIX))
            })
            .collect();
        files.sort();
        self.count.store(files.len(), Ordering::Relaxed);
        Ok(files)
    }

    /// Reads a spooled run. A file that cannot be understood is renamed `*.bad` (kept for a
    /// human, no longer counted or replayed) and reported as `Ok(None)`.
    pub fn read(&self, path: &Path) -> std::io::Result<Option<RunRecord>> {
        let bytes = fs::read(path)?;
        match decode(&bytes) {
            Some(run) => Ok(Some(run)),
            None => {
                let mut bad = path.as_os_str().to_owned();
                bad.push(BAD_SUFFIX);
                fs::rename(path, bad)?;
                self.count.fetch_sub(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Removes a run that the store has taken.
    pub fn remove(&self, path: &Path) -> std::io::Result<()> {
        match fs::remove_file(path) {
            Ok(()) => {
                let _ = self
                    .count
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| c.checked_sub(1));
                Ok(())
            }
            // Another drainer took it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn decode(bytes: &[u8]) -> Option<RunRecord> {
    let s: SpooledRun = serde_json::from_slice(bytes).ok()?;
    if s.format != 1 {
        return None;
    }
    let histogram = match s.histogram {
        Some(h) => Some(base64::engine::general_purpose::STANDARD.decode(h).ok()?),
        None => None,
    };
    Some(RunRecord {
        probe: s.probe,
        started_at: DateTime::from_timestamp_micros(s.started_at_us)?,
        fingerprint: s.fingerprint,
        grade: s.grade,
        document: s.document,
        figures: s.figures,
        histogram,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(i: i64) -> RunRecord {
        RunRecord {
            probe: "p".into(),
            started_at: DateTime::from_timestamp(1_800_000_000 + i, 0).unwrap(),
            fingerprint: "f".into(),
            grade: "good".into(),
            document: serde_json::json!({"i": i}),
            figures: vec![("p99".into(), 41.0 + i as f64)],
            histogram: Some(vec![1, 2, 3, i as u8]),
        }
    }

    #[test]
    fn put_read_remove_in_start_order() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path().join("spool")).unwrap();
        for i in [3, 1, 2] {
            let mut r = run(i);
            r.figures.push(("nan".into(), f64::NAN));
            spool.put(&r).unwrap();
        }
        // A crash mid-spool leaves a temporary file: not counted, removed at the next open.
        fs::write(spool.dir().join(".tmp-x.run.json"), b"{").unwrap();
        let spool = Spool::open(spool.dir()).unwrap();
        assert_eq!(spool.len(), 3);
        let files = spool.pending().unwrap();
        let runs: Vec<RunRecord> = files
            .iter()
            .map(|f| spool.read(f).unwrap().unwrap())
            .collect();
        assert_eq!(runs, vec![run(1), run(2), run(3)]);
        for f in &files {
            spool.remove(f).unwrap();
            spool.remove(f).unwrap();
        }
        assert!(spool.is_empty());
    }

    #[test]
    fn unreadable_file_is_set_aside() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(dir.path()).unwrap();
        fs::write(dir.path().join("0-0.run.json"), b"not json").unwrap();
        let files = spool.pending().unwrap();
        assert_eq!(spool.len(), 1);
        assert!(spool.read(&files[0]).unwrap().is_none());
        assert_eq!(spool.len(), 0);
        assert!(dir.path().join("0-0.run.json.bad").exists());
    }
}
