//! File input and output with one error class each: a file the user names that cannot be read is
//! [`Error::Read`] (their input, exit code 2), a file that cannot be written is [`Error::Io`] (the environment,
//! exit code 1); a TOML file that does not parse is [`Error::Config`] naming the file. Output is atomic: write to
//! a temporary file in the target directory, fsync, rename.

use std::io::Write;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use crate::error::{Error, Result};

/// Reads a text file the user named.
///
/// # Errors
/// [`Error::Read`] naming the file.
pub fn read_text(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::read(path, e))
}

/// Reads a file the user named.
///
/// # Errors
/// [`Error::Read`] naming the file.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| Error::read(path, e))
}

/// The size in bytes and the SHA-256 (lowercase hex) of a file, read in blocks (any size).
///
/// # Errors
/// [`Error::Read`] naming the file.
pub fn sha256_file(path: &Path) -> Result<(u64, String)> {
    use sha2::Digest as _;
    use std::io::Read as _;
    let mut file = std::fs::File::open(path).map_err(|e| Error::read(path, e))?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::read(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex = hasher.finalize().iter().fold(String::with_capacity(64), |mut s, b| {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
        s
    });
    Ok((size, hex))
}

/// Reads and parses a TOML file; `what` names it in messages (`quality config`, `server settings`, …).
///
/// # Errors
/// [`Error::Read`] when it cannot be read, [`Error::Config`] (naming the file) when it does not parse as `T`.
pub fn load_toml<T: serde::de::DeserializeOwned>(path: &Path, what: &'static str) -> Result<T> {
    let text = read_text(path)?;
    toml::from_str(&text).map_err(|e| Error::config(what, format!("{}: {e}", path.display())))
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

fn parent_dir(path: &Path) -> Result<()> {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => std::fs::create_dir_all(p).map_err(|e| Error::io(p, e)),
        _ => Ok(()),
    }
}

/// Fsyncs the directory `dir`, so that a rename into it survives a power failure.
///
/// # Errors
/// [`Error::Io`] naming the directory.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::File::open(dir).and_then(|f| f.sync_all()).map_err(|e| Error::io(dir, e))
}

/// Writes through `fill` into a temporary sibling of `path`, fsyncs it, renames it over `path` and fsyncs the
/// directory: readers see the old file or the complete new one, never a partial write, and the rename survives a
/// power failure. The temporary file is removed on failure.
/// A path that is a directory (or `.`, `..`, the root) is refused: a file output never replaces a directory.
pub fn write_atomic_with(path: &Path, fill: impl FnOnce(&mut std::fs::File) -> Result<()>) -> Result<()> {
    crate::outputs::check_output_file(path)?;
    parent_dir(path)?;
    let tmp = temp_path(path);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?;
        fill(&mut file)?;
        file.flush().map_err(|e| Error::io(&tmp, e))?;
        file.sync_all().map_err(|e| Error::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_with(path, |f| f.write_all(bytes).map_err(|e| Error::io(path, e)))
}

/// A fresh private directory (mode 0700) under the system's temporary directory, removed with everything in it
/// when dropped: the staging copy of an object-store run, the local PostgreSQL of the demo.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates `<temp dir>/<prefix><pid>-<n>`, a name no other live directory has.
    ///
    /// # Errors
    /// [`Error::Io`] when it cannot be created.
    pub fn new(prefix: &str) -> Result<Self> {
        use std::os::unix::fs::DirBuilderExt as _;
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let base = std::env::temp_dir();
        loop {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let path = base.join(format!("{prefix}{}-{n}", std::process::id()));
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Self { path }),
                // A directory of an earlier process that had this pid: take the next number.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Output format of a frame, from the file extension (`.csv` → CSV, anything else → Parquet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameFormat {
    /// Apache Parquet (zstd).
    Parquet,
    /// Comma-separated values with a header.
    Csv,
}

impl FrameFormat {
    /// Picks the format from a path's extension.
    pub fn from_path(path: &Path) -> Self {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("csv") => Self::Csv,
            _ => Self::Parquet,
        }
    }
}

/// Writes a frame to `path` atomically, as Parquet or CSV by extension.
pub fn write_frame(df: &mut DataFrame, path: &Path) -> Result<()> {
    write_atomic_with(path, |file| {
        match FrameFormat::from_path(path) {
            FrameFormat::Parquet => {
                ParquetWriter::new(file).with_compression(ParquetCompression::Zstd(None)).finish(df)?;
            }
            FrameFormat::Csv => CsvWriter::new(file).include_header(true).finish(df)?,
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_are_private_distinct_and_removed_on_drop() {
        use std::os::unix::fs::PermissionsExt as _;
        let (a, b) = (ScratchDir::new("stockcast-test-").unwrap(), ScratchDir::new("stockcast-test-").unwrap());
        assert_ne!(a.path(), b.path());
        assert_eq!(std::fs::metadata(a.path()).unwrap().permissions().mode() & 0o777, 0o700);
        std::fs::create_dir_all(a.path().join("x/y")).unwrap();
        std::fs::write(a.path().join("x/y/z"), "z").unwrap();
        let p = a.path().to_path_buf();
        drop(a);
        assert!(!p.exists() && b.path().is_dir());
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two");
        let names: Vec<_> = std::fs::read_dir(p.parent().unwrap()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn failed_write_keeps_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.txt");
        write_atomic(&p, b"old").unwrap();
        let r = write_atomic_with(&p, |_| Err(Error::config("test", "injected failure")));
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "old");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
