//! Object storage for run directories, price files and the model registry: `s3://bucket/prefix`, `gs://…`,
//! `az://container/prefix` through the `object_store` crate, configured from the environment as each cloud's
//! tools are (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL` and
//! `AWS_ALLOW_HTTP=true` for an S3-compatible server; `GOOGLE_SERVICE_ACCOUNT`; `AZURE_STORAGE_ACCOUNT_NAME`, …).
//! `file://` URLs are plain local paths ([`local_path`]).
//!
//! Calls are blocking: each runs on one small runtime of this module's own, so they work from plain threads and
//! from inside an async server alike (a caller's runtime is never entered or nested).
//!
//! What stays atomic without rename: one object is written whole or not at all; a conditional put
//! ([`Objects::put_new`]: `If-None-Match: *`, [`Objects::put_if`]: `If-Match: <etag>`) lets exactly one of two
//! writers win, which the registry uses for version numbers and aliases.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use futures_util::StreamExt as _;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutMode, PutOptions, PutPayload, UpdateVersion};

use crate::error::{Error, Result};

/// Schemes that name an object store.
const SCHEMES: [&str; 6] = ["s3://", "s3a://", "gs://", "az://", "azure://", "abfs://"];

/// True when `s` names an object store (not `file://`, which is a local path).
pub fn is_object_url(s: &str) -> bool {
    SCHEMES.iter().any(|p| s.starts_with(p))
}

/// True when `path` (as given on the command line) names an object store.
pub fn is_object_path(path: &Path) -> bool {
    path.to_str().is_some_and(is_object_url)
}

/// The local path of a `file://` URL; other text is returned as a path unchanged.
pub fn local_path(s: &str) -> PathBuf {
    match url::Url::parse(s) {
        Ok(u) if u.scheme() == "file" => u.to_file_path().unwrap_or_else(|()| PathBuf::from(s)),
        _ => PathBuf::from(s),
    }
}

/// A prefix in an object store: every key below it is named relative to it (`a/b.json`).
#[derive(Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: ObjectPath,
    url: String,
}

impl std::fmt::Debug for Objects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Objects({})", self.url)
    }
}

/// An object's content and the version tag a conditional update names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The bytes.
    pub bytes: Vec<u8>,
    /// Its entity tag (and version id where the store keeps versions).
    pub version: (Option<String>, Option<String>),
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("stockcast-objects")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("cannot start the object-store runtime: {e}"))
    })
}

/// Runs `fut` on this module's runtime and waits for it from any thread (async or not).
fn block_on<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| panic!("the object-store runtime dropped a request"))
}

impl Objects {
    /// Opens `url` (`s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`), with credentials and
    /// endpoints from the environment.
    ///
    /// # Errors
    /// [`Error::Storage`] for an unparseable URL, an unknown scheme or a store that cannot be configured.
    pub fn open(url: &str) -> Result<Self> {
        Self::open_with(url, &[])
    }

    /// [`Objects::open`] with S3 settings on top of the environment's (`aws_endpoint`, `aws_allow_http`,
    /// `aws_access_key_id`, … as `object_store` names them).
    ///
    /// # Errors
    /// As [`Objects::open`]; an unknown setting.
    pub fn open_with(url: &str, s3_options: &[(&str, &str)]) -> Result<Self> {
        let bad = |m: String| Error::Storage { url: url.to_owned(), message: m, user: true };
        let parsed = url::Url::parse(url).map_err(|e| bad(format!("not a URL: {e}")))?;
        let store: Arc<dyn ObjectStore> = match parsed.scheme() {
            "s3" | "s3a" => Arc::new(
                s3_options
                    .iter()
                    .try_fold(object_store::aws::AmazonS3Builder::from_env(), |b, (k, v)| {
                        k.parse::<object_store::aws::AmazonS3ConfigKey>().map(|key| b.with_config(key, *v))
                    })
                    .map_err(|e| bad(e.to_string()))?
                    .with_url(url)
                    .with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "gs" => Arc::new(
                object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            "az" | "azure" | "abfs" => Arc::new(
                object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url)
                    .build()
                    .map_err(|e| bad(e.to_string()))?,
            ),
            other => return Err(bad(format!("unknown scheme {other:?} (s3://, gs://, az:// or a local path)"))),
        };
        let prefix = ObjectPath::from_url_path(parsed.path()).map_err(|e| bad(e.to_string()))?;
        Ok(Self { store, prefix, url: url.trim_end_matches('/').to_owned() })
    }

    /// The URL it was opened with (no trailing `/`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The URL of `rel`.
    pub fn url_of(&self, rel: &str) -> String {
        if rel.is_empty() { self.url.clone() } else { format!("{}/{rel}", self.url) }
    }

    fn key(&self, rel: &str) -> ObjectPath {
        rel.split('/').filter(|p| !p.is_empty()).fold(self.prefix.clone(), |k, p| k.clone().join(p))
    }

    fn err(&self, rel: &str, e: &object_store::Error) -> Error {
        let user = matches!(
            e,
            object_store::Error::NotFound { .. }
                | object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        );
        Error::Storage { url: self.url_of(rel), message: e.to_string(), user }
    }

    /// The object `rel` with its version tag, or `None` when there is none.
    ///
    /// # Errors
    /// [`Error::Storage`] for failures other than a missing object.
    pub fn get(&self, rel: &str) -> Result<Option<Versioned>> {
        let (store, key) = (Arc::clone(&self.store), self.key(rel));
        let got = block_on(async move {
            let r = store.get(&key).await?;
            let version = (r.meta.e_tag.clone(), r.meta.version.clone());
            Ok::<_, object_store::Error>((r.bytes().await?.to_vec(), version))
        });
        match got {
            Ok((bytes, version)) => Ok(Some(Versioned { bytes, version })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.err(rel, &e)),
        }
    }

    /// The object `rel`.
    ///
    /// # Errors
    /// [`Error::Storage`] (a user error) when it is missing.
    pub fn read(&self, rel: &str) -> Result<Vec<u8>> {
        self.get(rel)?.map(|v| v.bytes).ok_or_else(|| Error::Storage {
            url: self.url_of(rel),
            message: "no such object".into(),
            user: true,
        })
    }

    fn put_mode(&self, rel: &str, bytes: Vec<u8>, mode: PutMode) -> Result<bool> {
        fault_point();
        let (store, key) = (Arc::clone(&self.store), self.key(rel));
        let opts = PutOptions { mode, ..PutOptions::default() };
        match block_on(async move { store.put_opts(&key, PutPayload::from(bytes), opts).await }) {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }) => Ok(false),
            Err(e) => Err(self.err(rel, &e)),
        }
    }

    /// Writes `rel` whole, replacing what is there.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn put(&self, rel: &str, bytes: Vec<u8>) -> Result<()> {
        self.put_mode(rel, bytes, PutMode::Overwrite).map(|_| ())
    }

    /// Creates `rel` only if no object is there (`If-None-Match: *`); false when one is.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn put_new(&self, rel: &str, bytes: Vec<u8>) -> Result<bool> {
        self.put_mode(rel, bytes, PutMode::Create)
    }

    /// Replaces `rel` only if it is still the version `seen` (`If-Match`), or creates it when `seen` is `None`
    /// and there is none; false when another writer got there first.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn put_if(&self, rel: &str, bytes: Vec<u8>, seen: Option<&Versioned>) -> Result<bool> {
        let mode = match seen {
            None => PutMode::Create,
            Some(v) => PutMode::Update(UpdateVersion { e_tag: v.version.0.clone(), version: v.version.1.clone() }),
        };
        self.put_mode(rel, bytes, mode)
    }

    /// Every key below `rel` (recursively), relative to this prefix, sorted.
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn list(&self, rel: &str) -> Result<Vec<String>> {
        let (store, key) = (Arc::clone(&self.store), self.key(rel));
        let listed = block_on(async move {
            let mut s = store.list(Some(&key));
            let mut out = Vec::new();
            while let Some(m) = s.next().await {
                out.push(m?.location);
            }
            Ok::<_, object_store::Error>(out)
        })
        .map_err(|e| self.err(rel, &e))?;
        let base: Vec<_> = self.prefix.parts().collect();
        let mut out: Vec<String> = listed
            .iter()
            .map(|k| {
                let parts: Vec<String> = k.parts().skip(base.len()).map(|p| p.as_ref().to_owned()).collect();
                parts.join("/")
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Deletes `rel` (no error when it is already gone).
    ///
    /// # Errors
    /// [`Error::Storage`].
    pub fn delete(&self, rel: &str) -> Result<()> {
        let (store, key) = (Arc::clone(&self.store), self.key(rel));
        match block_on(async move { store.delete(&key).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.err(rel, &e)),
        }
    }

    /// Uploads every file below the local directory `dir` to the same relative keys below `rel`, the file named
    /// `last` (if any) after all the others: readers that look for `last` see a complete set.
    ///
    /// # Errors
    /// Read errors of local files; [`Error::Storage`].
    pub fn upload_dir(&self, dir: &Path, rel: &str, last: Option<&str>) -> Result<Vec<String>> {
        let mut files = Vec::new();
        walk(dir, Path::new(""), &mut files)?;
        files.sort_by_key(|f| (Some(f.as_str()) == last, f.clone()));
        for f in &files {
            let bytes = std::fs::read(dir.join(f)).map_err(|e| Error::io(dir.join(f), e))?;
            self.put(&join(rel, f), bytes)?;
        }
        Ok(files)
    }

    /// Downloads every object below `rel` into the local directory `dir` (same relative paths).
    ///
    /// # Errors
    /// [`Error::Storage`]; write errors.
    pub fn download_dir(&self, rel: &str, dir: &Path) -> Result<Vec<String>> {
        let prefix = if rel.is_empty() { String::new() } else { format!("{}/", rel.trim_end_matches('/')) };
        let keys = self.list(rel)?;
        let mut out = Vec::new();
        for k in &keys {
            let sub = k.strip_prefix(&prefix).unwrap_or(k);
            let path = dir.join(sub);
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).map_err(|e| Error::io(p, e))?;
            }
            std::fs::write(&path, self.read(k)?).map_err(|e| Error::io(&path, e))?;
            out.push(sub.to_owned());
        }
        Ok(out)
    }
}

/// Fault injection for the tests of interrupted uploads: with `STOCKCAST_FAULT_ABORT_AFTER_PUTS=N` in the
/// environment, the process aborts (as a kill would stop it) before its (N+1)-th object write. Unset (always, in
/// use): nothing happens.
fn fault_point() {
    static PUTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    static LIMIT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let limit = LIMIT.get_or_init(|| std::env::var("STOCKCAST_FAULT_ABORT_AFTER_PUTS").ok()?.parse().ok());
    if let Some(n) = *limit
        && PUTS.fetch_add(1, std::sync::atomic::Ordering::SeqCst) >= n
    {
        eprintln!("stockcast: STOCKCAST_FAULT_ABORT_AFTER_PUTS={n}: aborting before object write {}", n + 1);
        std::process::abort();
    }
}

/// `a/b` from `a` and `b` (either may be empty).
pub fn join(a: &str, b: &str) -> String {
    match (a.trim_end_matches('/'), b) {
        ("", b) => b.to_owned(),
        (a, "") => a.to_owned(),
        (a, b) => format!("{a}/{b}"),
    }
}

fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) -> Result<()> {
    let dir = root.join(rel);
    for e in std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
        let e = e.map_err(|e| Error::io(&dir, e))?;
        let r = rel.join(e.file_name());
        if e.file_type().map_err(|err| Error::io(e.path(), err))?.is_dir() {
            walk(root, &r, out)?;
        } else {
            out.push(r.to_string_lossy().replace('\\', "/"));
        }
    }
    Ok(())
}

/// A local copy of a price file named by URL, downloaded into a temporary directory (removed on drop).
#[derive(Debug)]
pub struct LocalCopy {
    dir: PathBuf,
    /// The downloaded file (same file name as the object, so its extension still tells the format).
    pub path: PathBuf,
}

impl Drop for LocalCopy {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static COPIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Downloads the object at `url` into a fresh temporary directory.
///
/// # Errors
/// [`Error::Storage`] (a missing object is a user error); write errors.
pub fn download(url: &str) -> Result<LocalCopy> {
    let (parent, name) = url.rsplit_once('/').filter(|(p, _)| !p.ends_with('/')).ok_or_else(|| Error::Storage {
        url: url.to_owned(),
        message: "names no object (expected scheme://bucket/key)".into(),
        user: true,
    })?;
    let bytes = Objects::open(parent)?.read(name)?;
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("stockcast-download-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let path = dir.join(name);
    std::fs::write(&path, bytes).map_err(|e| Error::io(&path, e))?;
    Ok(LocalCopy { dir, path })
}
