//! The state directory: versions committed atomically, one JSON manifest each.
//!
//! ```text
//! STATE/
//!   LOCK                          held (flock) by the run that may commit next
//!   manifest-0000000003.json      version 3: the files it is made of, inputs, runs
//!   v0000000003-pools-<run>.parquet    files written by the run that committed version 3
//!   v0000000003-history-<run>.parquet
//!   v0000000003-claims-<run>.parquet
//! ```
//!
//! A run reads the latest version (or `--state-version N`, read-only), writes only new files,
//! fsyncs them, and commits version N+1 as its very last step by hard-linking a fsynced
//! temporary manifest to `manifest-(N+1).json`: the link fails if the name exists, so two runs
//! can never both commit N+1, and a run killed at any moment leaves version N as it was. Files
//! no manifest names are a killed run's leftovers; the next run that takes the lock removes
//! them. Older versions stay readable (their files are never rewritten) until
//! `yibao state compact` drops them.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Version of the state's format (manifest and tables); a reader refuses any other. Format 2:
/// the history is appended run by run (own claims and refunds, with `claim_key` and
/// `reverses_key`) instead of rewritten per person.
pub const FORMAT: u32 = 2;

/// One committed version of the state.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub format: u32,
    /// 0 for the empty state (no manifest yet).
    pub version: u64,
    /// The latest service year the state has seen: years before `latest_year − 1` are dropped.
    pub latest_year: Option<i32>,
    /// [`super::HISTORY_DAYS`] when the history was written.
    pub history_days: i32,
    /// Per-person pools, oldest first: the newest file holding a person has its pools.
    pub pools: Vec<Piece>,
    /// The history, oldest first: each run's own claims, or several runs' merged.
    pub history: Vec<Piece>,
    /// The claim index, a file per run, oldest first.
    pub claims: Vec<Piece>,
    /// Every claims file absorbed, by content hash.
    pub inputs: Vec<Input>,
    /// Every run that committed a version still described here.
    pub runs: Vec<RunRecord>,
    /// Each policy version that settled claims into the state, by id: the hash of its text
    /// ([`crate::policy::Version::text_hash`]). A run whose text of one of them differs is
    /// refused: a reversal gives back what the claim's settlement took, under the text that
    /// settled it, and every settlement stays traceable to it. A change is a new version.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub policy_versions: std::collections::BTreeMap<String, String>,
}

/// One Parquet file of a table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Piece {
    pub file: String,
    pub rows: u64,
    pub bytes: u64,
    /// The service years of its rows (`None` for an empty file).
    pub min_year: Option<i32>,
    pub max_year: Option<i32>,
    /// How many runs' files it merges (1 for a file a run wrote).
    #[serde(default = "one_run")]
    pub runs: u32,
    /// A history file whose rows a merge kept ([`super::retained`]), rather than every claim
    /// of a run.
    #[serde(default)]
    pub retained: bool,
    /// A claims file whose claims are one ordered run of `claim_key` (a compaction's merge),
    /// rather than a run's: a run writes an ordered run a part of its claims (each spilled
    /// partition, each window of a night), and a later night probes every key of a run smaller
    /// than its own key set.
    #[serde(default)]
    pub ordered: bool,
}

fn one_run() -> u32 {
    1
}

/// A claims file a run absorbed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Input {
    /// BLAKE3 of the file's bytes, hex.
    pub blake3: String,
    /// The path as the run was given it.
    pub path: String,
    pub bytes: u64,
    pub rows: u64,
    /// The version its run committed.
    pub version: u64,
}

/// A run that committed a version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub version: u64,
    /// The version it read.
    pub read_version: u64,
    pub engine: String,
    /// Seconds since the Unix epoch when it committed.
    pub committed_at: u64,
    pub claims: u64,
    pub out: String,
    pub bytes_read: u64,
    pub bytes_written: u64,
    /// The command line and the hashed inputs and policy files of the run (absent in versions
    /// written before runs kept it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_trail: Option<crate::output::summary::AuditTrail>,
}

impl Manifest {
    /// Rows of the per-person tables (`pools`, `history`) of the years held: a bound on the
    /// state a run's persons may bring into memory.
    pub fn person_rows(&self) -> u64 {
        let first_year = self.first_year();
        self.pools
            .iter()
            .chain(&self.history)
            .filter(|p| p.max_year.is_none_or(|y| y >= first_year))
            .map(|p| p.rows)
            .sum()
    }

    /// The version a run on `dir` would read (`version`, or the latest committed), without
    /// taking the lock: `None` when there is none yet.
    pub fn peek(dir: &Path, version: Option<u64>) -> Result<Option<Manifest>> {
        match version {
            Some(0) => Ok(None),
            Some(v) => read_manifest(dir, v).map(Some),
            None if !dir.exists() => Ok(None),
            None => match versions(dir)?.last() {
                Some(&v) => read_manifest(dir, v).map(Some),
                None => Ok(None),
            },
        }
    }

    /// The first year whose rows are kept.
    pub fn first_year(&self) -> i32 {
        self.latest_year.map_or(i32::MIN, |y| y - 1)
    }

    /// Every file this version names.
    pub fn files(&self) -> impl Iterator<Item = &Piece> {
        self.pools.iter().chain(&self.history).chain(&self.claims)
    }

    /// The absorbed input with content hash `blake3`, if any.
    pub fn input(&self, blake3: &str) -> Option<&Input> {
        self.inputs.iter().find(|i| i.blake3 == blake3)
    }
}

/// An open state directory.
pub struct Store {
    pub dir: PathBuf,
    /// The version read.
    pub manifest: Manifest,
    /// Held while the store may commit; `None` when read-only.
    _lock: Option<File>,
}

pub(crate) fn manifest_name(version: u64) -> String {
    format!("manifest-{version:010}.json")
}

fn manifest_version(name: &str) -> Option<u64> {
    name.strip_prefix("manifest-")?
        .strip_suffix(".json")?
        .parse()
        .ok()
}

impl Store {
    /// Opens `dir` to be advanced: creates it if need be, takes its lock (failing at once if
    /// another run holds it), reads the latest version and removes a killed run's leftovers.
    pub fn open(dir: &Path) -> Result<Store> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock_path = dir.join("LOCK");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(Error::Usage(format!(
                    "{}: another run holds this state directory",
                    dir.display()
                )))
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(Error::io(&lock_path, e)),
        }
        let versions = versions(dir)?;
        let manifest = match versions.last() {
            Some(&v) => read_manifest(dir, v)?,
            None => Manifest {
                format: FORMAT,
                history_days: super::HISTORY_DAYS,
                ..Manifest::default()
            },
        };
        let store = Store {
            dir: dir.to_path_buf(),
            manifest,
            _lock: Some(lock),
        };
        store.remove_unnamed(&versions)?;
        Ok(store)
    }

    /// Opens version `version` of `dir` read-only: nothing is locked, written or removed.
    pub fn open_version(dir: &Path, version: u64) -> Result<Store> {
        let manifest = if version == 0 {
            Manifest {
                format: FORMAT,
                history_days: super::HISTORY_DAYS,
                ..Manifest::default()
            }
        } else {
            read_manifest(dir, version)?
        };
        Ok(Store {
            dir: dir.to_path_buf(),
            manifest,
            _lock: None,
        })
    }

    pub fn read_only(&self) -> bool {
        self._lock.is_none()
    }

    pub fn path(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// A name for a new file of `table` in the version this run may commit: unique to the run,
    /// so even a run that lost the race to commit never overwrote a committed file.
    pub fn new_file(&self, table: &str) -> String {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        format!(
            "v{:010}-{table}-{}-{nanos:09}.parquet",
            self.manifest.version + 1,
            std::process::id()
        )
    }

    /// Removes what none of `versions` names (files of a run killed before it committed,
    /// temporary files, files of versions compacted away). Only a holder of the lock gets here,
    /// so no other run is writing.
    pub(crate) fn remove_unnamed(&self, versions: &[u64]) -> Result<()> {
        let mut named = std::collections::HashSet::new();
        for &v in versions {
            for piece in read_manifest(&self.dir, v)?.files() {
                named.insert(piece.file.clone());
            }
        }
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let leftover = is_state_file(&name) && !named.contains(&name);
            if leftover {
                let path = entry.path();
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        Ok(())
    }

    /// Commits `next` as version `self.manifest.version + 1`: the files it names must be
    /// complete and fsynced. Fails, committing nothing, if that version exists.
    pub fn commit(&self, mut next: Manifest) -> Result<u64> {
        if self.read_only() {
            return Err(Error::Usage(
                "a state opened at an older version is read-only".into(),
            ));
        }
        next.format = FORMAT;
        next.version = self.manifest.version + 1;
        let json = serde_json::to_vec_pretty(&next)
            .map_err(|e| Error::Usage(format!("state manifest: {e}")))?;
        let name = manifest_name(next.version);
        let tmp = self.dir.join(format!("{name}.{}.tmp", std::process::id()));
        let path = self.dir.join(&name);
        let written = (|| {
            std::fs::write(&tmp, &json)?;
            File::open(&tmp)?.sync_all()?;
            // Create-exclusive: a link never replaces an existing name.
            std::fs::hard_link(&tmp, &path)
        })();
        let _ = std::fs::remove_file(&tmp);
        match written {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::Usage(format!(
                    "{}: version {} was committed by another run",
                    self.dir.display(),
                    next.version
                )))
            }
            Err(e) => return Err(Error::io(&path, e)),
        }
        crate::output::parquet::sync_dir(&self.dir)?;
        Ok(next.version)
    }
}

/// Whether `name` is a file the engine writes in a state directory (a table file, or a table
/// file's or a manifest's temporary file): only those are ever removed, whatever else an
/// operator keeps beside them.
fn is_state_file(name: &str) -> bool {
    let table_file = |n: &str| {
        n.strip_prefix('v').is_some_and(|rest| {
            let (version, rest) = rest.split_at(rest.len().min(10));
            version.len() == 10
                && version.bytes().all(|b| b.is_ascii_digit())
                && ["-pools-", "-history-", "-claims-"]
                    .iter()
                    .any(|t| rest.starts_with(t))
                && rest.ends_with(".parquet")
        })
    };
    match name.strip_suffix(".tmp") {
        Some(base) => table_file(base) || base.starts_with("manifest-"),
        None => table_file(name),
    }
}

/// The committed versions in `dir`, ascending.
pub fn versions(dir: &Path) -> Result<Vec<u64>> {
    let mut versions = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(versions),
        Err(e) => return Err(Error::io(dir, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(dir, e))?;
        if let Some(v) = manifest_version(&entry.file_name().to_string_lossy()) {
            versions.push(v);
        }
    }
    versions.sort_unstable();
    Ok(versions)
}

/// Reads version `version`'s manifest.
pub fn read_manifest(dir: &Path, version: u64) -> Result<Manifest> {
    let path = dir.join(manifest_name(version));
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Value {
        path: path.clone(),
        column: "manifest".into(),
        row: e.line() as u64,
        reason: e.to_string(),
    })?;
    if manifest.format != FORMAT || manifest.version != version {
        return Err(Error::Value {
            path,
            column: "manifest".into(),
            row: 0,
            reason: format!(
                "format {} version {}: this engine reads format {FORMAT}",
                manifest.format, manifest.version
            ),
        });
    }
    Ok(manifest)
}

/// `yibao state inspect`: the versions of `dir`, the runs and inputs its latest version records,
/// and that version's files with their rows, bytes and years.
pub fn inspect(dir: &Path) -> Result<String> {
    use std::fmt::Write;
    let versions = versions(dir)?;
    let mut out = String::new();
    let Some(&latest) = versions.last() else {
        writeln!(out, "{}: no committed version", dir.display()).unwrap();
        return Ok(out);
    };
    let m = read_manifest(dir, latest)?;
    let list: Vec<String> = versions.iter().map(u64::to_string).collect();
    writeln!(out, "state {}", dir.display()).unwrap();
    writeln!(out, "versions: {} (latest {latest})", list.join(" ")).unwrap();
    let years = m
        .latest_year
        .map_or("none".into(), |y| format!("{}–{y}", y - 1));
    writeln!(
        out,
        "years held: {years}; history window {} days",
        m.history_days
    )
    .unwrap();
    writeln!(out, "runs:").unwrap();
    for r in &m.runs {
        writeln!(
            out,
            "  version {:>4} (read {:>4}): {:>11} claims, {:>13} bytes read, {:>13} written, out {}",
            r.version, r.read_version, r.claims, r.bytes_read, r.bytes_written, r.out
        )
        .unwrap();
    }
    writeln!(out, "inputs:").unwrap();
    for i in &m.inputs {
        writeln!(
            out,
            "  version {:>4}: {} {:>11} rows {:>13} bytes  {}",
            i.version,
            &i.blake3[..16.min(i.blake3.len())],
            i.rows,
            i.bytes,
            i.path
        )
        .unwrap();
    }
    for (table, pieces) in [
        ("pools", &m.pools),
        ("history", &m.history),
        ("claims", &m.claims),
    ] {
        let rows: u64 = pieces.iter().map(|p| p.rows).sum();
        let bytes: u64 = pieces.iter().map(|p| p.bytes).sum();
        writeln!(
            out,
            "{table}: {} files, {rows} rows, {bytes} bytes",
            pieces.len()
        )
        .unwrap();
        for p in pieces {
            let years = match (p.min_year, p.max_year) {
                (Some(a), Some(b)) => format!("{a}–{b}"),
                _ => "-".into(),
            };
            writeln!(
                out,
                "  {:<52} {:>11} rows {:>13} bytes  years {years}",
                p.file, p.rows, p.bytes
            )
            .unwrap();
        }
    }
    Ok(out)
}

/// BLAKE3 of a file's bytes, hex: what identifies an input already absorbed.
pub fn content_hash(path: &Path) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = blake3::Hasher::new();
    // Large reads hashed on every core.
    let mut buffer = vec![0u8; 8 << 20];
    loop {
        let n = file.read(&mut buffer).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update_rayon(&buffer[..n]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_is_committed_once_and_leftovers_are_removed_by_the_next_opener() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("state");
        let store = Store::open(&d).unwrap();
        assert_eq!(store.manifest.version, 0);
        // A second opener is refused while the first holds the lock.
        assert!(Store::open(&d).is_err());
        let piece = store.new_file("pools");
        std::fs::write(store.path(&piece), b"x").unwrap();
        let next = Manifest {
            pools: vec![Piece {
                file: piece.clone(),
                rows: 1,
                bytes: 1,
                min_year: Some(2024),
                max_year: Some(2024),
                runs: 1,
                retained: false,
                ordered: false,
            }],
            latest_year: Some(2024),
            ..store.manifest.clone()
        };
        assert_eq!(store.commit(next.clone()).unwrap(), 1);
        // The same version again: refused, as a second run racing to commit it would be.
        assert!(store.commit(next).is_err());
        // A killed run's file, never committed, and an operator's own file beside the state.
        std::fs::write(d.join("v0000000002-pools-1-000000001.parquet"), b"y").unwrap();
        std::fs::write(d.join("visits.parquet"), b"mine").unwrap();
        drop(store);
        let store = Store::open(&d).unwrap();
        assert_eq!(store.manifest.version, 1);
        assert_eq!(store.manifest.pools[0].file, piece);
        assert!(d.join(&piece).exists());
        assert!(!d.join("v0000000002-pools-1-000000001.parquet").exists());
        assert!(d.join("visits.parquet").exists());
        assert!(is_state_file("v0000000002-claims-77-123.parquet.tmp"));
        assert!(is_state_file("manifest-0000000003.json.77.tmp"));
        assert!(!is_state_file("manifest-0000000003.json"));
        assert_eq!(versions(&d).unwrap(), [1]);
        // Older versions stay readable.
        let old = Store::open_version(&d, 0).unwrap();
        assert!(old.read_only() && old.manifest.pools.is_empty());
    }

    #[test]
    fn content_hash_is_blake3_of_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"abc").unwrap();
        // BLAKE3("abc"), from the reference test vectors.
        assert_eq!(
            content_hash(&p).unwrap(),
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
    }
}
