//! Reading TOML files the user names, with one error class: a file that cannot be read or parsed is a usage
//! error (exit code 2) naming the file and what it was for.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::UsageError;

/// Reads and parses a TOML file; `what` names it in messages ("quality config", "[gate]", …).
///
/// # Errors
/// [`UsageError`] when the file cannot be read or does not parse as `T`.
pub fn load_toml<T: DeserializeOwned>(path: &Path, what: &str) -> anyhow::Result<T> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| UsageError(format!("cannot read the {what} {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| UsageError(format!("{}: invalid {what}: {e}", path.display())).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn unreadable_and_invalid_files_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing = load_toml::<T>(&dir.path().join("nope.toml"), "quality config").unwrap_err();
        assert_eq!(crate::exit_code(&missing), crate::exit::BAD_INPUT);
        assert!(missing.to_string().contains("nope.toml"), "{missing}");
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "b = 1\n").unwrap();
        let bad = load_toml::<T>(&p, "quality config").unwrap_err();
        assert_eq!(crate::exit_code(&bad), crate::exit::BAD_INPUT);
        assert!(bad.to_string().contains("invalid quality config"), "{bad}");
        std::fs::write(&p, "a = 1\n").unwrap();
        assert!(load_toml::<T>(&p, "quality config").is_ok());
    }
}
