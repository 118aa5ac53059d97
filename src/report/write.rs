//! Result documents onto disk: atomically (a temp file in the same directory, fsync, then a
//! link or rename into place), so a reader, a crash or a full disk never sees a torn or empty
//! document, and never in another probe's file.
//!
//! File names are a sanitized, bounded slug of the probe name plus a short hash of the full
//! name: `col.a` and `col_a` differ, and a name of any length makes a legal file name. This
//! module writes; it neither counts nor logs (the caller reports a failure to telemetry).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha1::{Digest, Sha1};

use super::ProbeResult;

/// Longest slug of a probe name kept in a file name (the hash keeps names apart).
const SLUG_MAX: usize = 64;

/// Why a result document was not written. Nothing half-written is left behind in any case.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot create the directory {}: {source}", path.display())]
    Dir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}: {source}", path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// `<slug>-<hash>-<UTC time>.json` for a result: the slug keeps ASCII letters, digits, `-`
/// and `_` of the name (others become `_`) up to [`SLUG_MAX`] characters; the hash is the
/// first 8 hex digits of the SHA-1 of the full name.
pub fn result_file_name(r: &ProbeResult) -> String {
    let stamp: String = r
        .started_at
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    format!("{}-{}-{stamp}.json", slug(&r.probe), short_hash(&r.probe))
}

fn slug(name: &str) -> String {
    let s: String = name
        .chars()
        .take(SLUG_MAX)
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "probe".into()
    } else {
        s
    }
}

fn short_hash(name: &str) -> String {
    let d = Sha1::digest(name.as_bytes());
    d[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// Writes each result document into `dir` (created if missing); returns the paths. A file of
/// the same name (the same probe started twice in one second) is never replaced: the later
/// document takes a `-2`, `-3`, … suffix.
pub fn write_into_dir(dir: &Path, results: &[ProbeResult]) -> Result<Vec<PathBuf>, WriteError> {
    std::fs::create_dir_all(dir).map_err(|source| WriteError::Dir {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut paths = Vec::new();
    for r in results {
        let name = result_file_name(r);
        let bytes = r.to_json_pretty() + "\n";
        let p = place_new(dir, &name, bytes.as_bytes())
            .map_err(|(path, source)| WriteError::Write { path, source })?;
        paths.push(p);
    }
    Ok(paths)
}

/// Writes result documents as JSON Lines (one document per line) to `path`, replacing it
/// atomically when it is a regular file (or does not exist yet). Anything else — a terminal,
/// a pipe, `/dev/stdout` — is written in place, as such files cannot be renamed over.
pub fn write_json_lines(path: &Path, results: &[ProbeResult]) -> Result<(), WriteError> {
    let mut text = Vec::new();
    for r in results {
        serde_json::to_writer(&mut text, r).expect("a result document always serializes");
        text.push(b'\n');
    }
    let err = |source| WriteError::Write {
        path: path.to_path_buf(),
        source,
    };
    let regular = match std::fs::metadata(path) {
        Ok(m) => m.is_file(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
        Err(e) => return Err(err(e)),
    };
    if !regular {
        let mut f = OpenOptions::new().write(true).open(path).map_err(err)?;
        return f.write_all(&text).and_then(|()| f.flush()).map_err(err);
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let file = path.file_name().map(|f| f.to_string_lossy().into_owned());
    let tmp = write_temp(dir, file.as_deref().unwrap_or("results"), &text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        err(e)
    })?;
    sync_dir(dir);
    Ok(())
}

/// Writes `bytes` to a fresh temp file in `dir`, synced to disk; removes it on failure.
fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    // The temp name is bounded too: a slug of the target name, never the whole of it.
    let tmp = dir.join(format!(".{}.{}-{n}.tmp", slug(name), std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    match write() {
        Ok(()) => Ok(tmp),
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// Puts `bytes` at `dir/name` (or a suffixed name if it exists) without replacing any file:
/// a hard link of a synced temp file, which either appears whole or not at all.
fn place_new(dir: &Path, name: &str, bytes: &[u8]) -> Result<PathBuf, (PathBuf, std::io::Error)> {
    let first = dir.join(name);
    let tmp = write_temp(dir, name, bytes).map_err(|e| (first.clone(), e))?;
    let stem = name.strip_suffix(".json").unwrap_or(name);
    let mut result = Err((first.clone(), std::io::Error::other("no free file name")));
    for k in 1..=100u32 {
        let p = if k == 1 {
            first.clone()
        } else {
            dir.join(format!("{stem}-{k}.json"))
        };
        match std::fs::hard_link(&tmp, &p) {
            Ok(()) => {
                result = Ok(p);
                break;
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                result = Err((p, e));
                break;
            }
        }
    }
    let _ = std::fs::remove_file(&tmp);
    if result.is_ok() {
        sync_dir(dir);
    }
    result
}

/// Makes a new directory entry durable (best effort: not every file system allows it).
fn sync_dir(dir: &Path) {
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str) -> ProbeResult {
        ProbeResult {
            schema: crate::report::SCHEMA.into(),
            probe: name.to_string(),
            kind: crate::config::Kind::Load,
            started_at: "2026-11-26T00:00:00Z".into(),
            duration_s: 1.0,
            grade: crate::verdict::Grade::Good,
            grade_reason: String::new(),
            stats: None,
            block: None,
            aborted: None,
            refused: None,
            regression: None,
            thresholds: Vec::new(),
            notes: Vec::new(),
            detail: Default::default(),
        }
    }

    #[test]
    fn col_dot_a_and_col_underscore_a_get_different_files() {
        let (a, b) = (result("col.a"), result("col_a"));
        assert_ne!(result_file_name(&a), result_file_name(&b));
        let dir = tempfile::tempdir().unwrap();
        let paths = write_into_dir(dir.path(), &[a, b]).unwrap();
        assert_ne!(paths[0], paths[1]);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_70000_character_name_makes_a_short_legal_file_name() {
        let r = result(&"x".repeat(70_000));
        let name = result_file_name(&r);
        assert!(name.len() < 120, "{name}");
        let dir = tempfile::tempdir().unwrap();
        let p = write_into_dir(dir.path(), &[r]).unwrap();
        let back: ProbeResult = serde_json::from_slice(&std::fs::read(&p[0]).unwrap()).unwrap();
        assert_eq!(back.probe.len(), 70_000);
    }

    #[test]
    fn the_same_probe_twice_in_one_second_keeps_both_documents() {
        let dir = tempfile::tempdir().unwrap();
        let r = result("twice");
        let p = write_into_dir(dir.path(), &[r.clone(), r]).unwrap();
        assert_ne!(p[0], p[1]);
        assert!(p[1].to_string_lossy().ends_with("-2.json"));
    }

    #[test]
    fn a_failed_write_into_a_read_only_dir_leaves_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let ro = dir.path().join("ro");
        std::fs::create_dir(&ro).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
        // Root ignores directory permissions: the test only means something for other users.
        if OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(ro.join("probe"))
            .is_ok()
        {
            return;
        }
        assert!(write_into_dir(&ro, &[result("ro")]).is_err());
        assert_eq!(std::fs::read_dir(&ro).unwrap().count(), 0);
    }
}
