//! The model registry: `<root>/<name>/<version>/` holds a saved model (see [`TrainedModel::save`]) plus
//! `manifest.json` (name, version, creation time passed in, kind and parameters, feature spec hash, data range and
//! hash, training range, walk-forward metrics, seed, stockcast version, git commit, sha256 of every file).
//! Versions are published atomically: written into a hidden temporary directory, fsynced, then renamed into
//! place, so a crash leaves no partial version (hidden directories are ignored and removed by [`Registry::gc`]).
//! Aliases (`champion` and user-named) live in `<root>/<name>/aliases.json`, replaced atomically, with the
//! history of every move.
//!
//! The root may also be an object store (`s3://bucket/models`, `gs://…`, `az://…`; see
//! [`stockcast_features::objects`]). There, with no rename and no file lock: a version's files are uploaded under
//! its prefix and `manifest.json` last, created only if absent, as the commit point (a version without a manifest
//! does not exist for readers); the version number is claimed by a conditional replace of `<name>/.high_water`
//! and every alias move is a conditional replace of `aliases.json` (read, change, write if unchanged, else
//! again), so of two concurrent writers both publish distinct versions and no alias move is lost.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use stockcast_features::objects::{self, Objects, Versioned};

use crate::error::{Error, Result};
use stockcast_features::Checked;

use crate::model::{ModelConfig, TrainedModel, list_files, sha256_file};

/// The alias the server and `recommend` use.
pub const CHAMPION: &str = "champion";

/// Facts about the data a version was trained on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DataInfo {
    /// Price file or table.
    pub source: String,
    /// Hash of the price data.
    pub data_hash: String,
    /// First and last date of the data used.
    pub first_date: Option<NaiveDate>,
    /// Last date (the as-of date of the run).
    pub last_date: Option<NaiveDate>,
    /// Symbols.
    pub symbols: usize,
    /// Price rows.
    pub rows: usize,
}

/// `manifest.json` of a published version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version.
    pub format: u32,
    /// Registry name.
    pub name: String,
    /// Version number (1, 2, ...).
    pub version: u64,
    /// Creation time (RFC 3339), passed in by the caller.
    pub created_at: String,
    /// Model kind.
    pub kind: String,
    /// Its parameters.
    pub config: Checked<ModelConfig>,
    /// Feature spec hash (the spec itself is `spec.toml` in the version directory).
    pub feature_spec_hash: String,
    /// Data facts.
    pub data: DataInfo,
    /// First and last training date of the final fit.
    pub train_range: Option<(NaiveDate, NaiveDate)>,
    /// Walk-forward metrics (the backtest report's per-model keys).
    pub metrics: serde_json::Value,
    /// Seed of the final fit.
    pub seed: u64,
    /// stockcast version.
    pub stockcast_version: String,
    /// Git commit of the build, if known.
    pub git_commit: Option<String>,
    /// sha256 of every other file in the version directory.
    pub files: BTreeMap<String, String>,
}

/// What a caller supplies to publish a version.
#[derive(Debug, Clone)]
pub struct Publish<'a> {
    /// The fitted model.
    pub model: &'a TrainedModel,
    /// The feature spec (TOML) the model was trained with.
    pub spec_toml: &'a str,
    /// Creation time, RFC 3339.
    pub created_at: &'a str,
    /// Data facts.
    pub data: DataInfo,
    /// Walk-forward metrics.
    pub metrics: serde_json::Value,
    /// stockcast version.
    pub stockcast_version: &'a str,
    /// Git commit, if known.
    pub git_commit: Option<String>,
}

/// One move of an alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AliasMove {
    /// Alias.
    pub alias: String,
    /// Version it pointed to before (none: new alias).
    pub from: Option<u64>,
    /// Version it points to now.
    pub to: u64,
    /// When (RFC 3339, passed in).
    pub at: String,
    /// Why (promotion, rollback, manual).
    pub reason: String,
}

/// `aliases.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Aliases {
    /// Alias → version.
    pub aliases: BTreeMap<String, u64>,
    /// Every move, oldest first.
    pub history: Vec<AliasMove>,
}

/// A registry rooted at a directory (default `models/`).
///
/// Every process that changes it (`train`, `models promote | rollback | gc`) first takes its exclusive lock
/// ([`Registry::try_lock`], [`Registry::lock`]): an OS file lock (`flock`) on `<root>/.registry.lock`, which the
/// kernel releases when the holder exits or dies, so there is no stale lock to take over and no window between
/// creating the file and writing the pid. Readers (the server, `show`, `list`) take no lock: versions appear by
/// an atomic rename and aliases by an atomic file replace.
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
    /// The object store when the root is a URL (or why it cannot be opened).
    remote: Option<std::result::Result<Objects, String>>,
}

/// Name of the lock file in the registry root.
pub const LOCK_FILE: &str = ".registry.lock";

/// The registry's append-only audit log (local registries): one JSON event a line.
pub const AUDIT_FILE: &str = "audit.jsonl";

/// The registry's exclusive lock; released on drop (or by the kernel when the process ends).
#[derive(Debug)]
pub struct RegistryLock {
    /// The locked file; `None` for an object-store registry, whose writers rely on conditional puts instead.
    file: Option<std::fs::File>,
}

impl Drop for RegistryLock {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            let _ = f.set_len(0);
            let _ = f.unlock();
        }
    }
}

/// Tries of a read-change-conditional-write before giving up (each lost race means another writer succeeded).
const CAS_TRIES: usize = 1000;

fn fsync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Checks a registry name: letters, digits, `-`, `_`, `.` (not leading), at most 64 characters.
fn check_name(name: &str) -> Result<()> {
    if stockcast_features::outputs::is_plain_name(name, 64) {
        Ok(())
    } else {
        Err(Error::Config(format!("invalid model name {name:?}: use letters, digits, -, _ and .")))
    }
}

/// Which version of a model a reference means.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum At {
    /// A bare `NAME`: its champion (for [`Registry::resolve`], the newest version when none is promoted).
    Default,
    /// `NAME@3`.
    Version(u64),
    /// `NAME@staging`: whatever version the alias points to.
    Alias(String),
}

/// A model reference, the one grammar of the CLI, the server's settings and query parameters, and
/// recommendation runs: `NAME`, `NAME@VERSION` (digits) or `NAME@ALIAS`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ModelRef {
    /// Registry name.
    pub name: String,
    /// Which version.
    pub at: At,
}

impl ModelRef {
    /// `NAME@VERSION`.
    pub fn version(name: impl Into<String>, version: u64) -> Self {
        Self { name: name.into(), at: At::Version(version) }
    }

    /// A bare name becomes `NAME@champion`; others stay as they are.
    #[must_use]
    pub fn champion_if_bare(self) -> Self {
        match self.at {
            At::Default => Self { name: self.name, at: At::Alias(CHAMPION.to_owned()) },
            _ => self,
        }
    }
}

impl std::str::FromStr for ModelRef {
    type Err = Error;

    /// # Errors
    /// [`Error::Config`] naming the reference and the grammar.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Config(format!("invalid model reference {s:?}: use NAME, NAME@VERSION or NAME@ALIAS"));
        let (name, at) = match s.split_once('@') {
            None => (s, At::Default),
            Some((_, "")) => return Err(bad()),
            Some((n, w)) if w.bytes().all(|b| b.is_ascii_digit()) => (n, At::Version(w.parse().map_err(|_| bad())?)),
            Some((n, w)) => {
                check_name(w).map_err(|_| bad())?;
                (n, At::Alias(w.to_owned()))
            }
        };
        check_name(name).map_err(|_| bad())?;
        Ok(Self { name: name.to_owned(), at })
    }
}

impl TryFrom<String> for ModelRef {
    type Error = Error;
    fn try_from(s: String) -> Result<Self> {
        s.parse()
    }
}

impl From<ModelRef> for String {
    fn from(r: ModelRef) -> Self {
        r.to_string()
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.at {
            At::Default => write!(f, "{}", self.name),
            At::Version(v) => write!(f, "{}@{v}", self.name),
            At::Alias(a) => write!(f, "{}@{a}", self.name),
        }
    }
}

impl Registry {
    /// A registry at `root` (created on the first publish): a directory, or an object-store URL.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let root = root.into();
        let remote = objects::is_object_path(&root)
            .then(|| Objects::open(root.to_string_lossy().trim_end_matches('/')).map_err(|e| e.to_string()));
        let root = if remote.is_none() { objects::local_path(&root.to_string_lossy()) } else { root };
        Self { root, remote }
    }

    /// True when the root is an object-store URL (no local directory: callers keep their own files elsewhere).
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// Writes a file of the registry's own beside the models (e.g. `runs/<summary>.json`): atomically replaced
    /// in a directory, one object on a store.
    ///
    /// # Errors
    /// I/O or object-store errors.
    pub fn write_file(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        match self.remote()? {
            Some(o) => Ok(o.put(rel, bytes)?),
            None => Ok(stockcast_features::io::write_atomic(&self.root.join(rel), &bytes)?),
        }
    }

    /// The object store of a URL root (`None` for a directory).
    fn remote(&self) -> Result<Option<&Objects>> {
        match &self.remote {
            None => Ok(None),
            Some(Ok(o)) => Ok(Some(o)),
            Some(Err(e)) => Err(Error::Config(format!("registry {}: {e}", self.root.display()))),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn dir(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn open_lock(&self) -> Result<std::fs::File> {
        std::fs::create_dir_all(&self.root).map_err(|e| Error::io(&self.root, e))?;
        let path = self.root.join(LOCK_FILE);
        // O_NOFOLLOW: a lock file that is a symbolic link is refused (ELOOP), never followed, so taking the lock
        // cannot truncate or write the file it points to.
        std::os::unix::fs::OpenOptionsExt::custom_flags(
            std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false),
            libc::O_NOFOLLOW,
        )
        .open(&path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::Data(format!(
                    "{}: the registry lock file is a symbolic link; refusing to follow it (remove it: a lock file is \
                     an empty regular file)",
                    path.display()
                ))
            } else {
                Error::io(&path, e)
            }
        })
    }

    fn holding(file: std::fs::File, holder: &str) -> RegistryLock {
        use std::io::Write as _;
        let mut f = &file;
        // Who holds it, for the messages of those who wait (the lock itself is the flock, not this text).
        let _ = file.set_len(0);
        let _ = writeln!(f, "pid {} {holder}", std::process::id());
        let _ = file.sync_data();
        RegistryLock { file: Some(file) }
    }

    /// Appends `event` (with who made it: the user and process) to the registry's append-only audit log:
    /// `<root>/audit.jsonl`, one JSON object a line (written with one `write` under `O_APPEND`, fsynced; a link is
    /// refused), or on an object store one object per event under `audit/` (created only if absent).
    fn audit(&self, event: &serde_json::Value) -> Result<()> {
        let mut e = event.clone();
        e["by"] = serde_json::json!(format!(
            "{} (pid {})",
            std::env::var("USER").or_else(|_| std::env::var("LOGNAME")).unwrap_or_else(|_| "unknown".into()),
            std::process::id()
        ));
        let mut line = serde_json::to_vec(&e).map_err(|err| Error::Data(err.to_string()))?;
        if let Some(o) = self.remote()? {
            let stem = format!(
                "audit/{}-{}-{}-{}",
                e["at"].as_str().unwrap_or("unknown").replace(':', ""),
                e["model"].as_str().unwrap_or("?"),
                e["action"].as_str().unwrap_or("?"),
                std::process::id()
            );
            for k in 0..100 {
                if o.put_new(&format!("{stem}-{k}.json"), line.clone())? {
                    return Ok(());
                }
            }
            return Err(Error::Data(format!("{stem}: no free audit key")));
        }
        line.push(b'\n');
        let path = self.root.join(AUDIT_FILE);
        let mut f = std::os::unix::fs::OpenOptionsExt::custom_flags(
            std::fs::OpenOptions::new().append(true).create(true),
            libc::O_NOFOLLOW,
        )
        .open(&path)
        .map_err(|err| Error::io(&path, err))?;
        std::io::Write::write_all(&mut f, &line).map_err(|err| Error::io(&path, err))?;
        f.sync_data().map_err(|err| Error::io(&path, err))
    }

    /// The audit log's events, oldest first (local registries; object stores: the `audit/` objects in key order).
    ///
    /// # Errors
    /// Read errors; a line that is not JSON.
    pub fn audit_log(&self) -> Result<Vec<serde_json::Value>> {
        let parse = |b: &[u8]| serde_json::from_slice(b).map_err(|e| Error::Data(format!("audit log: {e}")));
        if let Some(o) = self.remote()? {
            return o.list("audit")?.iter().map(|k| parse(&o.read(k)?)).collect();
        }
        let path = self.root.join(AUDIT_FILE);
        match std::fs::read(&path) {
            Ok(b) => b.split(|c| *c == b'\n').filter(|l| !l.is_empty()).map(parse).collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Who holds the lock, as its holder wrote it (`pid N what`), or `unknown`.
    pub fn lock_holder(&self) -> String {
        let path = self.root.join(LOCK_FILE);
        let plain = std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_file());
        let text = if plain { std::fs::read_to_string(&path).unwrap_or_default() } else { String::new() };
        let t = text.trim();
        if t.is_empty() { "unknown".to_owned() } else { t.to_owned() }
    }

    /// Takes the registry's exclusive lock if it is free; `Ok(None)` when another process (or another handle in
    /// this one) holds it. `holder` says what takes it (e.g. `train`), for the messages of others.
    ///
    /// # Errors
    /// I/O errors opening or locking the lock file.
    pub fn try_lock(&self, holder: &str) -> Result<Option<RegistryLock>> {
        if self.remote()?.is_some() {
            // Object stores: no lock; publishes and alias moves are conditional puts.
            return Ok(Some(RegistryLock { file: None }));
        }
        let file = self.open_lock()?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Self::holding(file, holder))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(self.root.join(LOCK_FILE), e)),
        }
    }

    /// Takes the registry's exclusive lock, waiting for it; `on_wait` is told who holds it when it must wait.
    ///
    /// # Errors
    /// I/O errors opening or locking the lock file.
    pub fn lock(&self, holder: &str, on_wait: &dyn Fn(&str)) -> Result<RegistryLock> {
        if let Some(l) = self.try_lock(holder)? {
            return Ok(l);
        }
        on_wait(&self.lock_holder());
        let file = self.open_lock()?;
        file.lock().map_err(|e| Error::io(self.root.join(LOCK_FILE), e))?;
        Ok(Self::holding(file, holder))
    }

    /// The highest version number ever given to `name` (its `.high_water` file, or its newest version): numbers
    /// never go back, so a deleted version's number is never reused.
    fn high_water(&self, name: &str) -> Result<u64> {
        let stored = std::fs::read_to_string(self.dir(name).join(".high_water"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .unwrap_or(0);
        Ok(stored.max(self.versions(name)?.last().copied().unwrap_or(0)))
    }

    /// Directory of a version.
    pub fn version_dir(&self, name: &str, version: u64) -> PathBuf {
        self.dir(name).join(version.to_string())
    }

    /// Registered names (directories with at least one version), sorted.
    pub fn names(&self) -> Result<Vec<String>> {
        if let Some(o) = self.remote()? {
            let mut names: Vec<String> =
                o.list("")?.iter().filter_map(|k| manifest_key(k).map(|(n, _)| n.to_owned())).collect();
            names.dedup();
            return Ok(names);
        }
        if !self.root.exists() {
            return Ok(Vec::new());
        }
        let mut names = Vec::new();
        for e in std::fs::read_dir(&self.root).map_err(|e| Error::io(&self.root, e))? {
            let e = e.map_err(|e| Error::io(&self.root, e))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if e.path().is_dir() && check_name(&name).is_ok() && !self.versions(&name)?.is_empty() {
                names.push(name);
            }
        }
        names.sort();
        Ok(names)
    }

    /// Published versions of `name`, ascending (complete ones only: a directory named by a number with a
    /// manifest).
    pub fn versions(&self, name: &str) -> Result<Vec<u64>> {
        if let Some(o) = self.remote()? {
            check_name(name)?;
            let mut v: Vec<u64> = o
                .list(name)?
                .iter()
                .filter_map(|k| manifest_key(k).filter(|(n, _)| *n == name).map(|(_, v)| v))
                .collect();
            v.sort_unstable();
            return Ok(v);
        }
        let dir = self.dir(name);
        if !dir.exists() {
            return Ok(Vec::new());
        }
        let mut v = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let e = e.map_err(|e| Error::io(&dir, e))?;
            if let Ok(n) = e.file_name().to_string_lossy().parse::<u64>()
                && e.path().join("manifest.json").is_file()
            {
                v.push(n);
            }
        }
        v.sort_unstable();
        Ok(v)
    }

    /// Publishes a new version; `before_rename` runs after every file is written and fsynced, just before the
    /// rename that makes the version visible (tests inject crashes there). The number is one above the high-water
    /// mark, which is raised (durably) before the rename. The caller holds the lock ([`Registry::lock`]).
    ///
    /// # Errors
    /// I/O errors; an invalid name.
    pub fn publish_with(&self, name: &str, p: &Publish<'_>, before_rename: &dyn Fn(&Path)) -> Result<Manifest> {
        let m = self.publish_inner(name, p, before_rename)?;
        self.audit(&serde_json::json!({
            "at": p.created_at, "action": "publish", "model": name, "version": m.version, "kind": m.kind,
        }))?;
        Ok(m)
    }

    fn publish_inner(&self, name: &str, p: &Publish<'_>, before_rename: &dyn Fn(&Path)) -> Result<Manifest> {
        check_name(name)?;
        if let Some(o) = self.remote()? {
            return self.publish_remote(o, name, p, before_rename);
        }
        let dir = self.dir(name);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let version = self.high_water(name)? + 1;
        stockcast_features::io::write_atomic(&dir.join(".high_water"), format!("{version}\n").as_bytes())?;
        let tmp = dir.join(format!(".tmp-{version}-{}", std::process::id()));
        let manifest = write_version(&tmp, name, version, p)?;
        fsync_dir(&tmp)?;
        before_rename(&tmp);
        let target = self.version_dir(name, version);
        std::fs::rename(&tmp, &target).map_err(|e| Error::io(&target, e))?;
        fsync_dir(&dir)?;
        Ok(manifest)
    }

    /// [`Registry::publish_with`] on an object store: claim the number, upload the files, then the manifest.
    fn publish_remote(
        &self,
        o: &Objects,
        name: &str,
        p: &Publish<'_>,
        before_commit: &dyn Fn(&Path),
    ) -> Result<Manifest> {
        let hw = format!("{name}/.high_water");
        let mut version = None;
        for _ in 0..CAS_TRIES {
            let seen = o.get(&hw)?;
            let stored = seen.as_ref().and_then(|v| String::from_utf8_lossy(&v.bytes).trim().parse::<u64>().ok());
            let next = stored.unwrap_or(0).max(self.versions(name)?.last().copied().unwrap_or(0)) + 1;
            if o.put_if(&hw, format!("{next}\n").into_bytes(), seen.as_ref())? {
                version = Some(next);
                break;
            }
        }
        let version = version
            .ok_or_else(|| Error::Data(format!("{}: no version number after {CAS_TRIES} tries", o.url_of(&hw))))?;
        let tmp = std::env::temp_dir().join(format!("stockcast-publish-{name}-{version}-{}", std::process::id()));
        let result = (|| {
            let manifest = write_version(&tmp, name, version, p)?;
            let rel = format!("{name}/{version}");
            let manifest_bytes = std::fs::read(tmp.join("manifest.json")).map_err(|e| Error::io(&tmp, e))?;
            std::fs::remove_file(tmp.join("manifest.json")).map_err(|e| Error::io(&tmp, e))?;
            o.upload_dir(&tmp, &rel, None)?;
            before_commit(&tmp);
            // The commit point: created only if absent, so a version is never published twice.
            if !o.put_new(&format!("{rel}/manifest.json"), manifest_bytes)? {
                return Err(Error::Data(format!("{}: already published by another writer", o.url_of(&rel))));
            }
            Ok(manifest)
        })();
        let _ = std::fs::remove_dir_all(&tmp);
        result
    }

    /// Publishes a new version (see [`Registry::publish_with`]).
    ///
    /// # Errors
    /// As [`Registry::publish_with`].
    pub fn publish(&self, name: &str, p: &Publish<'_>) -> Result<Manifest> {
        self.publish_with(name, p, &|_| {})
    }

    /// The manifest of a version.
    ///
    /// # Errors
    /// [`Error::Artifact`] when missing or invalid.
    pub fn manifest(&self, name: &str, version: u64) -> Result<Manifest> {
        let dir = self.version_dir(name, version);
        if let Some(o) = self.remote()? {
            let bytes = o.get(&format!("{name}/{version}/manifest.json"))?.ok_or_else(|| {
                Error::artifact(&dir, format!("manifest.json: no such object (is {name}@{version} published?)"))
            })?;
            return serde_json::from_slice(&bytes.bytes)
                .map_err(|e| Error::artifact(&dir, format!("invalid manifest.json: {e}")));
        }
        let text = std::fs::read_to_string(dir.join("manifest.json"))
            .map_err(|e| Error::artifact(&dir, format!("manifest.json: {e} (is {name}@{version} published?)")))?;
        serde_json::from_str(&text).map_err(|e| Error::artifact(&dir, format!("invalid manifest.json: {e}")))
    }

    /// Re-checks every file of a version against its manifest; returns the problems (empty: intact).
    ///
    /// # Errors
    /// [`Error::Artifact`] when the manifest itself is unreadable.
    pub fn verify(&self, name: &str, version: u64) -> Result<Vec<String>> {
        let m = self.manifest(name, version)?;
        if let Some(o) = self.remote()? {
            let tmp = Self::download(o, name, version)?;
            let problems = verify_dir(&tmp, &m);
            let _ = std::fs::remove_dir_all(&tmp);
            return problems;
        }
        verify_dir(&self.version_dir(name, version), &m)
    }

    /// Downloads a version of an object-store registry into a fresh temporary directory.
    fn download(o: &Objects, name: &str, version: u64) -> Result<PathBuf> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tmp = std::env::temp_dir().join(format!("stockcast-fetch-{name}-{version}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        if let Err(e) = o.download_dir(&format!("{name}/{version}"), &tmp) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
        Ok(tmp)
    }

    /// One file of a version (e.g. its `spec.toml`), as stored.
    ///
    /// # Errors
    /// [`Error::Artifact`] when it is missing.
    pub fn version_file(&self, name: &str, version: u64, rel: &str) -> Result<Vec<u8>> {
        let dir = self.version_dir(name, version);
        if let Some(o) = self.remote()? {
            return o
                .get(&format!("{name}/{version}/{rel}"))?
                .map(|v| v.bytes)
                .ok_or_else(|| Error::artifact(&dir, format!("{rel}: no such object")));
        }
        std::fs::read(dir.join(rel)).map_err(|e| Error::artifact(&dir, format!("{rel}: {e}")))
    }

    /// Loads a version after verifying every file hash (and the model's own checks).
    ///
    /// # Errors
    /// [`Error::Artifact`] naming the first problem.
    pub fn load(&self, name: &str, version: u64) -> Result<(Manifest, TrainedModel)> {
        if let Some(o) = self.remote()? {
            // Verified and loaded from one downloaded copy: what is checked is what is loaded.
            let tmp = Self::download(o, name, version)?;
            let loaded = self.load_dir(name, version, &tmp);
            let _ = std::fs::remove_dir_all(&tmp);
            return loaded;
        }
        self.load_dir(name, version, &self.version_dir(name, version))
    }

    fn load_dir(&self, name: &str, version: u64, dir: &Path) -> Result<(Manifest, TrainedModel)> {
        let manifest = self.manifest(name, version)?;
        let problems = verify_dir(dir, &manifest)?;
        let shown = self.version_dir(name, version);
        if let Some(p) = problems.first() {
            return Err(Error::artifact(&shown, format!("{name}@{version} failed verification: {p}")));
        }
        let model = TrainedModel::load(dir)?;
        if model.meta.spec_hash != manifest.feature_spec_hash {
            return Err(Error::artifact(&shown, "the manifest's feature spec hash differs from model.json's"));
        }
        Ok((manifest, model))
    }

    /// The aliases of `name` (empty when none).
    ///
    /// # Errors
    /// [`Error::Artifact`] when `aliases.json` is unreadable.
    pub fn aliases(&self, name: &str) -> Result<Aliases> {
        Ok(self.aliases_versioned(name)?.0)
    }

    /// The aliases and, on an object store, the stored object they were read from (for a conditional replace).
    fn aliases_versioned(&self, name: &str) -> Result<(Aliases, Option<Versioned>)> {
        if let Some(o) = self.remote()? {
            let Some(v) = o.get(&format!("{name}/aliases.json"))? else { return Ok((Aliases::default(), None)) };
            let a = serde_json::from_slice(&v.bytes)
                .map_err(|e| Error::artifact(self.dir(name), format!("invalid aliases.json: {e}")))?;
            return Ok((a, Some(v)));
        }
        Ok((self.aliases_local(name)?, None))
    }

    fn aliases_local(&self, name: &str) -> Result<Aliases> {
        let p = self.dir(name).join("aliases.json");
        if !p.exists() {
            return Ok(Aliases::default());
        }
        let text = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        serde_json::from_str(&text).map_err(|e| Error::artifact(self.dir(name), format!("invalid aliases.json: {e}")))
    }

    /// Points `alias` at `version` (atomically replacing `aliases.json`), recording the move.
    ///
    /// # Errors
    /// [`Error::Config`] when the version does not exist.
    pub fn set_alias(&self, name: &str, alias: &str, version: u64, at: &str, reason: &str) -> Result<()> {
        let from = self.set_alias_inner(name, alias, version, at, reason)?;
        self.audit(&serde_json::json!({
            "at": at, "action": "alias", "model": name, "alias": alias, "from": from, "version": version,
            "reason": reason,
        }))
    }

    /// Moves the alias; the version it pointed to before.
    fn set_alias_inner(&self, name: &str, alias: &str, version: u64, at: &str, reason: &str) -> Result<Option<u64>> {
        check_name(alias)?;
        if alias.parse::<u64>().is_ok() {
            return Err(Error::Config(format!("alias {alias:?} looks like a version number")));
        }
        if !self.versions(name)?.contains(&version) {
            return Err(Error::Config(format!("{name}@{version} is not published")));
        }
        for _ in 0..CAS_TRIES {
            let (mut a, seen) = self.aliases_versioned(name)?;
            let from = a.aliases.insert(alias.to_owned(), version);
            a.history.push(AliasMove {
                alias: alias.to_owned(),
                from,
                to: version,
                at: at.to_owned(),
                reason: reason.to_owned(),
            });
            let json = serde_json::to_vec_pretty(&a).map_err(|e| Error::Data(e.to_string()))?;
            // Written only if nobody moved an alias since it was read; otherwise read again and redo the move.
            if let Some(o) = self.remote()? {
                if o.put_if(&format!("{name}/aliases.json"), json, seen.as_ref())? {
                    return Ok(from);
                }
            } else {
                stockcast_features::io::write_atomic(&self.dir(name).join("aliases.json"), &json)?;
                return Ok(from);
            }
        }
        Err(Error::Data(format!("{name}: aliases.json kept changing; {alias} not moved after {CAS_TRIES} tries")))
    }

    /// Moves the champion back to the version it pointed to before its latest promotion.
    ///
    /// # Errors
    /// [`Error::Config`] when there is no earlier champion.
    pub fn rollback(&self, name: &str, at: &str) -> Result<(u64, u64)> {
        let a = self.aliases(name)?;
        let current = *a.aliases.get(CHAMPION).ok_or_else(|| Error::Config(format!("{name} has no champion")))?;
        let previous = a
            .history
            .iter()
            .rev()
            .find(|m| m.alias == CHAMPION && m.to == current && m.reason != "rollback")
            .and_then(|m| m.from)
            .ok_or_else(|| Error::Config(format!("{name}: no earlier champion to roll back to")))?;
        self.set_alias(name, CHAMPION, previous, at, "rollback")?;
        Ok((current, previous))
    }

    /// Resolves `NAME`, `NAME@VERSION` or `NAME@ALIAS` (bare name: the champion, else the latest version).
    ///
    /// # Errors
    /// [`Error::Config`] for unknown names, versions or aliases.
    pub fn resolve(&self, reference: &ModelRef) -> Result<(String, u64)> {
        let name = reference.name.as_str();
        let versions = self.versions(name)?;
        if versions.is_empty() {
            return Err(Error::Config(format!("no model named {name:?} in {}", self.root.display())));
        }
        let aliases = self.aliases(name)?;
        let v = match &reference.at {
            At::Default => aliases.aliases.get(CHAMPION).copied().unwrap_or(versions[versions.len() - 1]),
            At::Version(v) => *v,
            At::Alias(w) => {
                *aliases.aliases.get(w).ok_or_else(|| Error::Config(format!("{name} has no alias {w:?}")))?
            }
        };
        if !versions.contains(&v) {
            return Err(Error::Config(format!("{name}@{v} is not published (versions: {versions:?})")));
        }
        Ok((name.to_owned(), v))
    }

    /// Removes all but the newest `keep` (≥ 1) versions of `name` (never one an alias points to) and leftovers of
    /// interrupted publishes; returns the removed versions. The caller holds the lock ([`Registry::lock`]), so no
    /// publish is in flight: every hidden `.tmp-*` directory is a crashed one's.
    ///
    /// # Errors
    /// [`Error::Config`] for `keep = 0`; I/O errors.
    pub fn gc(&self, name: &str, keep: usize, at: &str) -> Result<Vec<u64>> {
        let removed = self.gc_inner(name, keep)?;
        if !removed.is_empty() {
            self.audit(&serde_json::json!({
                "at": at, "action": "gc", "model": name, "removed": removed, "keep": keep,
            }))?;
        }
        Ok(removed)
    }

    fn gc_inner(&self, name: &str, keep: usize) -> Result<Vec<u64>> {
        if keep == 0 {
            return Err(Error::Config("gc --keep must be at least 1 (the newest version is always kept)".into()));
        }
        let dir = self.dir(name);
        if let Some(o) = self.remote()? {
            // No lock on an object store: a version without a manifest may be another writer's upload in flight,
            // so only complete versions are removed (the manifest first: the version is gone for readers at once).
            let pinned: Vec<u64> = self.aliases(name)?.aliases.values().copied().collect();
            let versions = self.versions(name)?;
            let cut = versions.len().saturating_sub(keep);
            let mut removed = Vec::new();
            for v in versions[..cut].iter().filter(|v| !pinned.contains(v)) {
                let rel = format!("{name}/{v}");
                o.delete(&format!("{rel}/manifest.json"))?;
                for k in o.list(&rel)? {
                    o.delete(&k)?;
                }
                removed.push(*v);
            }
            return Ok(removed);
        }
        if dir.exists() {
            for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let e = e.map_err(|e| Error::io(&dir, e))?;
                // Only what an interrupted publish leaves: its `.tmp-V-PID` directory and the save's siblings of it
                // (`..tmp-V-PID.tmp-PID`, `..tmp-V-PID.old-PID`); any other hidden entry is not the registry's.
                let name = e.file_name().to_string_lossy().into_owned();
                if (name.starts_with(".tmp-") || name.starts_with("..tmp-")) && e.path().is_dir() {
                    std::fs::remove_dir_all(e.path()).map_err(|err| Error::io(e.path(), err))?;
                }
            }
        }
        let pinned: Vec<u64> = self.aliases(name)?.aliases.values().copied().collect();
        let versions = self.versions(name)?;
        let cut = versions.len().saturating_sub(keep);
        let mut removed = Vec::new();
        for v in &versions[..cut] {
            if !pinned.contains(v) {
                let d = self.version_dir(name, *v);
                std::fs::remove_dir_all(&d).map_err(|e| Error::io(&d, e))?;
                removed.push(*v);
            }
        }
        Ok(removed)
    }
}

/// `(name, version)` of a key `<name>/<version>/manifest.json`.
fn manifest_key(key: &str) -> Option<(&str, u64)> {
    let mut parts = key.split('/');
    let (name, version, file) = (parts.next()?, parts.next()?, parts.next()?);
    (parts.next().is_none() && file == "manifest.json" && check_name(name).is_ok())
        .then(|| version.parse().ok().map(|v| (name, v)))
        .flatten()
}

/// Saves `p`'s model into the new directory `dir` with its spec and a manifest of every file's sha256 (files
/// fsynced): a complete version directory.
fn write_version(dir: &Path, name: &str, version: u64, p: &Publish<'_>) -> Result<Manifest> {
    let _ = std::fs::remove_dir_all(dir);
    p.model.save(dir, &[(stockcast_features::spec::SPEC_FILE, p.spec_toml.as_bytes())], crate::Replace::Own)?;
    let mut rel = Vec::new();
    list_files(dir, Path::new(""), &mut rel)?;
    let mut files = BTreeMap::new();
    for r in &rel {
        let path = dir.join(r);
        std::fs::File::open(&path).and_then(|f| f.sync_all()).map_err(|e| Error::io(&path, e))?;
        files.insert(r.to_string_lossy().into_owned(), sha256_file(&path)?);
    }
    let manifest = Manifest {
        format: 1,
        name: name.to_owned(),
        version,
        created_at: p.created_at.to_owned(),
        kind: p.model.meta.kind.clone(),
        config: p.model.meta.config.clone(),
        feature_spec_hash: p.model.meta.spec_hash.clone(),
        data: p.data.clone(),
        train_range: p.model.meta.train_range,
        metrics: p.metrics.clone(),
        seed: p.model.meta.seed,
        stockcast_version: p.stockcast_version.to_owned(),
        git_commit: p.git_commit.clone(),
        files,
    };
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| Error::Data(e.to_string()))?;
    stockcast_features::io::write_atomic(&dir.join("manifest.json"), &json)?;
    Ok(manifest)
}

/// Every file of `dir` checked against `m`: the problems (empty: intact).
fn verify_dir(dir: &Path, m: &Manifest) -> Result<Vec<String>> {
    let mut problems = Vec::new();
    for (rel, want) in &m.files {
        let p = dir.join(rel);
        if std::fs::symlink_metadata(&p).is_ok_and(|m| m.file_type().is_symlink()) {
            problems.push(format!("{rel}: a symbolic link, not a file of the version (damage)"));
        } else if !p.is_file() {
            problems.push(format!("{rel}: missing"));
        } else if &sha256_file(&p)? != want {
            problems.push(format!("{rel}: sha256 differs from the manifest (altered or truncated)"));
        }
    }
    let mut rel = Vec::new();
    if let Err(e) = list_files(dir, Path::new(""), &mut rel) {
        problems.push(e.to_string());
    }
    for r in rel {
        let r = r.to_string_lossy().into_owned();
        if r != "manifest.json" && !m.files.contains_key(&r) {
            problems.push(format!("{r}: not in the manifest"));
        }
    }
    Ok(problems)
}
