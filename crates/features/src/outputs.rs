//! What an output may replace. Every directory stockcast replaces as a whole (a backtest run, a saved model, a
//! shard) is one it wrote itself, recognised by a marker: a JSON file in it with a known top-level key
//! (`report.json` / `plan.json` / `model.json` with `"format"`). An existing non-empty directory without one is
//! refused ([`Error::Refused`], exit code 2) unless the user says `--force` ([`Replace::Force`]); the root, the home
//! directory, `.`, `..`, the working directory and its parents are refused even then. A file output never
//! replaces a directory.
//!
//! Replacing is [`replace_dir`]: the old directory is moved aside to a hidden sibling first, the complete new one
//! is renamed into place, and only then is the old one removed, so a crash at any point leaves the old output or
//! the new one complete (the old one at `.NAME.old-PID` if the crash came between the two renames).

use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

/// A file whose presence, as a JSON object with `key` at the top level, marks a directory as stockcast's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Marker {
    /// File name inside the directory.
    pub file: &'static str,
    /// A top-level key of its JSON object.
    pub key: &'static str,
}

/// Whether an output may replace a directory that has none of its markers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Replace {
    /// Only an absent or empty directory, or one with a marker (what the command wrote before).
    #[default]
    Own,
    /// Any directory the user names (`--force`), except the protected ones.
    Force,
}

impl Replace {
    /// [`Replace::Force`] when `force`, else [`Replace::Own`].
    pub fn forced(force: bool) -> Self {
        if force { Self::Force } else { Self::Own }
    }
}

/// True for a name that is safe as one path component: 1 to `max_len` ASCII letters, digits, `-`, `_` and `.`,
/// not starting with `.` (so never `.`, `..`, hidden, absolute or nested). Run and model names are such names.
pub fn is_plain_name(name: &str, max_len: usize) -> bool {
    !name.is_empty()
        && name.len() <= max_len
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

fn refused(path: &Path, reason: impl Into<String>) -> Error {
    Error::Refused { path: path.to_path_buf(), reason: reason.into() }
}

/// `path` made absolute with symbolic links resolved as far as it exists (a path that does not exist yet is
/// resolved through its nearest existing ancestor).
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let mut rest = Vec::new();
    let mut cur = path;
    loop {
        match (cur.parent(), cur.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_owned());
                let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
                if let Ok(mut p) = parent.canonicalize() {
                    p.extend(rest.iter().rev());
                    return p;
                }
                cur = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Refuses the paths no output ever replaces, `--force` or not: an empty path, `.`, `..`, the root, the home
/// directory, and the working directory or any of its parents.
///
/// # Errors
/// [`Error::Refused`] naming the path and why.
pub fn check_not_protected(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        return Err(refused(path, "an empty path is not an output"));
    }
    if matches!(
        path.components().next_back(),
        None | Some(Component::CurDir | Component::ParentDir | Component::RootDir | Component::Prefix(_))
    ) {
        return Err(refused(path, "`.`, `..` and the root are never replaced; name a directory of its own"));
    }
    let target = resolved(path);
    if target.parent().is_none() {
        return Err(refused(path, "the root directory is never replaced"));
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty())
        && resolved(Path::new(&home)) == target
    {
        return Err(refused(path, "the home directory is never replaced"));
    }
    if let Ok(cwd) = std::env::current_dir()
        && resolved(&cwd).starts_with(&target)
    {
        return Err(refused(path, "the working directory and its parents are never replaced"));
    }
    Ok(())
}

/// True when `dir/marker.file` is a JSON object with the key `marker.key`.
fn has_marker(dir: &Path, marker: &Marker) -> bool {
    std::fs::read(dir.join(marker.file))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .is_some_and(|v| v.get(marker.key).is_some())
}

/// Checks that an output `what` (e.g. "backtest run") may be written to the directory `dir`, replacing what is
/// there: `dir` is absent or empty, holds one of `markers`, or `replace` is [`Replace::Force`]; and it is not a
/// protected path ([`check_not_protected`]) nor a file.
///
/// # Errors
/// [`Error::Refused`] naming the directory, what is in it and how to proceed; [`Error::Io`] when it cannot be
/// listed.
pub fn check_output_dir(dir: &Path, what: &str, markers: &[Marker], replace: Replace) -> Result<()> {
    check_not_protected(dir)?;
    let meta = match std::fs::metadata(dir) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(dir, e)),
    };
    if !meta.is_dir() {
        return Err(refused(dir, format!("it is a file, not a {what} directory; choose another path")));
    }
    let mut entries: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect();
    if entries.is_empty() || markers.iter().any(|m| has_marker(dir, m)) || replace == Replace::Force {
        return Ok(());
    }
    Err(not_ours(dir, what, markers, &mut entries))
}

/// The refusal of a directory (or object-store prefix) holding `entries` and none of `markers`: names the first
/// entries and how to proceed.
pub fn not_ours(path: &Path, what: &str, markers: &[Marker], entries: &mut [String]) -> Error {
    entries.sort();
    let shown: Vec<&str> = entries.iter().take(3).map(String::as_str).collect();
    let more = if entries.len() > 3 { format!(" and {} more", entries.len() - 3) } else { String::new() };
    let names: Vec<&str> = markers.iter().map(|m| m.file).collect();
    refused(
        path,
        format!(
            "it exists and is not a {what} written by stockcast (no {}); it holds {}{more}. Nothing was changed: \
             choose another directory, or pass --force to replace it with everything in it",
            names.join(" or "),
            shown.join(", ")
        ),
    )
}

/// Refuses a file output at `path` that would replace a directory or a protected path.
///
/// # Errors
/// [`Error::Refused`].
pub fn check_output_file(path: &Path) -> Result<()> {
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return Err(refused(path, "it is a directory; a file output never replaces a directory"));
    }
    check_not_protected(path)
}

/// Moves `dir` (if it exists) aside to `.NAME.old-PID` (or `.NAME.old-PID-N`, the first name that is free: an
/// earlier crash's moved-aside output is never removed), moves the entries `carry` of the old directory into the
/// complete new directory `new`, renames `new` to `dir`, fsyncs the parent, then removes the old directory.
/// `between` runs after the old directory was moved aside and before anything else (tests inject crashes there).
/// On an error the old directory is put back as it was. The caller checked `dir` ([`check_output_dir`]).
///
/// # Errors
/// [`Error::Io`] naming the path that could not be moved.
pub fn replace_dir(new: &Path, dir: &Path, carry: &[&str], between: &dyn Fn(&Path)) -> Result<()> {
    let name = dir.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    let pid = std::process::id();
    let mut old = dir.with_file_name(format!(".{name}.old-{pid}"));
    let mut n = 0;
    while std::fs::symlink_metadata(&old).is_ok() {
        n += 1;
        old = dir.with_file_name(format!(".{name}.old-{pid}-{n}"));
    }
    let had_old = std::fs::symlink_metadata(dir).is_ok();
    if had_old {
        std::fs::rename(dir, &old).map_err(|e| Error::io(dir, e))?;
    }
    between(&old);
    let carried: Vec<&str> =
        if had_old { carry.iter().copied().filter(|e| old.join(e).exists()).collect() } else { Vec::new() };
    let mut moved = Vec::new();
    let result = (|| {
        for entry in &carried {
            std::fs::rename(old.join(entry), new.join(entry)).map_err(|e| Error::io(old.join(entry), e))?;
            moved.push(*entry);
        }
        std::fs::rename(new, dir).map_err(|e| Error::io(dir, e))
    })();
    if let Err(e) = result {
        for entry in moved {
            let _ = std::fs::rename(new.join(entry), old.join(entry));
        }
        if had_old {
            let _ = std::fs::rename(&old, dir);
        }
        return Err(e);
    }
    crate::io::sync_dir(dir.parent().unwrap_or(Path::new(".")))?;
    if had_old {
        let _ = std::fs::remove_dir_all(&old);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARK: &[Marker] = &[Marker { file: "report.json", key: "format" }];

    fn dir_with(files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let d = t.path().join("out");
        std::fs::create_dir_all(&d).unwrap();
        for (f, text) in files {
            std::fs::write(d.join(f), text).unwrap();
        }
        (t, d)
    }

    #[test]
    fn a_foreign_directory_is_refused_unless_forced() {
        let (_t, d) = dir_with(&[("thesis.txt", "years of work")]);
        let e = check_output_dir(&d, "backtest run", MARK, Replace::Own).unwrap_err();
        assert!(e.is_user_error());
        let msg = e.to_string();
        assert!(msg.contains("thesis.txt") && msg.contains("--force") && msg.contains("out"), "{msg}");
        check_output_dir(&d, "backtest run", MARK, Replace::Force).unwrap();
    }

    #[test]
    fn a_marker_needs_its_key() {
        let (_t, d) = dir_with(&[("report.json", "{\"title\": 1}")]);
        assert!(check_output_dir(&d, "run", MARK, Replace::Own).is_err());
        std::fs::write(d.join("report.json"), "{\"format\": 1}").unwrap();
        check_output_dir(&d, "run", MARK, Replace::Own).unwrap();
        std::fs::write(d.join("report.json"), "not json").unwrap();
        assert!(check_output_dir(&d, "run", MARK, Replace::Own).is_err());
    }

    #[test]
    fn absent_and_empty_directories_are_fine_files_are_not() {
        let (t, d) = dir_with(&[]);
        check_output_dir(&d, "run", MARK, Replace::Own).unwrap();
        check_output_dir(&t.path().join("new/deeper"), "run", MARK, Replace::Own).unwrap();
        std::fs::write(t.path().join("f"), "x").unwrap();
        assert!(check_output_dir(&t.path().join("f"), "run", MARK, Replace::Force).is_err());
        assert!(check_output_file(&d).is_err());
        check_output_file(&t.path().join("f")).unwrap();
    }

    #[test]
    fn protected_paths_are_refused_even_when_forced() {
        for p in [".", "..", "./", "/", ""] {
            let e = check_output_dir(Path::new(p), "run", MARK, Replace::Force).unwrap_err();
            assert!(matches!(e, Error::Refused { .. }), "{p}: {e}");
        }
        let cwd = std::env::current_dir().unwrap();
        for p in [cwd.clone(), cwd.parent().unwrap().to_path_buf(), cwd.join("sub/..")] {
            assert!(check_output_dir(&p, "run", MARK, Replace::Force).is_err(), "{}", p.display());
        }
        if let Some(home) = std::env::var_os("HOME") {
            assert!(check_not_protected(Path::new(&home)).is_err());
        }
        check_not_protected(&cwd.join("runs/x")).unwrap();
    }

    #[test]
    fn replacing_moves_the_old_aside_and_carries_entries() {
        let (t, d) = dir_with(&[("report.json", "{\"format\": 1}"), ("old.txt", "old")]);
        std::fs::create_dir_all(d.join("shards/0")).unwrap();
        std::fs::write(d.join("shards/0/s"), "shard").unwrap();
        let new = t.path().join(".out.tmp");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(new.join("report.json"), "{\"format\": 2}").unwrap();
        replace_dir(&new, &d, &["shards", "plan.json"], &|_| {}).unwrap();
        assert_eq!(std::fs::read_to_string(d.join("report.json")).unwrap(), "{\"format\": 2}");
        assert_eq!(std::fs::read_to_string(d.join("shards/0/s")).unwrap(), "shard");
        assert!(!d.join("old.txt").exists() && !new.exists());
        let left: Vec<_> = std::fs::read_dir(t.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("out")]);
    }

    #[test]
    fn an_earlier_crash_s_moved_aside_output_is_never_removed() {
        let (t, d) = dir_with(&[("report.json", "{\"format\": 1}")]);
        let aside = t.path().join(format!(".out.old-{}", std::process::id()));
        std::fs::create_dir_all(&aside).unwrap();
        std::fs::write(aside.join("report.json"), "the run a crash left").unwrap();
        let new = t.path().join(".out.tmp");
        std::fs::create_dir_all(&new).unwrap();
        replace_dir(&new, &d, &[], &|_| {}).unwrap();
        assert_eq!(std::fs::read_to_string(aside.join("report.json")).unwrap(), "the run a crash left");
        assert!(d.is_dir() && !new.exists());
    }

    #[test]
    fn a_crash_between_the_renames_leaves_the_old_directory_complete() {
        let (t, d) = dir_with(&[("report.json", "{\"format\": 1}"), ("a.txt", "a")]);
        let new = t.path().join(".out.tmp");
        std::fs::create_dir_all(&new).unwrap();
        let crashed = std::panic::catch_unwind(|| {
            replace_dir(&new, &d, &[], &|_| panic!("injected crash")).unwrap();
        });
        assert!(crashed.is_err());
        let old = t.path().join(format!(".out.old-{}", std::process::id()));
        assert_eq!(std::fs::read_to_string(old.join("a.txt")).unwrap(), "a");
        assert_eq!(std::fs::read_to_string(old.join("report.json")).unwrap(), "{\"format\": 1}");
    }
}
