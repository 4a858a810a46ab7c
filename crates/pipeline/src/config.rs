//! Reading TOML files the user names, with one error class: a file that cannot be read or parsed is a usage
//! error (exit code 2) naming the file and what it was for.

/// The one TOML reader of every crate: an unreadable file is a user error (exit code 2) naming the file, an
/// invalid one a config error (exit code 2) naming the file and key.
pub use stockcast_features::io::load_toml;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Error, Kind};

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct T {
        #[allow(dead_code)]
        a: u32,
    }

    #[test]
    fn unreadable_and_invalid_files_are_usage_errors() {
        let dir = tempfile::tempdir().unwrap();
        let missing: Error = load_toml::<T>(&dir.path().join("nope.toml"), "quality config").unwrap_err().into();
        assert_eq!(missing.kind(), Kind::Usage);
        assert!(missing.to_string().contains("nope.toml"), "{missing}");
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, "b = 1\n").unwrap();
        let bad: Error = load_toml::<T>(&p, "quality config").unwrap_err().into();
        assert_eq!(bad.kind(), Kind::Usage);
        assert!(bad.to_string().contains("invalid quality config"), "{bad}");
        std::fs::write(&p, "a = 1\n").unwrap();
        assert!(load_toml::<T>(&p, "quality config").is_ok());
    }

    /// Every crate reads user-named files the same way (exit code 2) and fails writes the same way (exit 1).
    #[test]
    fn unreadable_inputs_are_usage_errors_and_failed_writes_are_failures_in_every_crate() {
        let dir = tempfile::tempdir().unwrap();
        let nope = dir.path().join("nope");
        let reads: Vec<Error> = vec![
            stockcast_backtest::portfolio::load_index(&nope, stockcast_backtest::portfolio::IndexKind::Price)
                .unwrap_err()
                .into(),
            stockcast_backtest::BacktestConfig::from_file(&nope).unwrap_err().into(),
            stockcast_models::ModelConfig::from_file(&nope).unwrap_err().into(),
            stockcast_features::FeatureSpec::from_file(&nope).unwrap_err().into(),
            stockcast_infer::server::ServeConfig::from_file(&nope).unwrap_err().into(),
        ];
        for e in &reads {
            assert_eq!(e.kind(), Kind::Usage, "{e}");
            assert!(e.to_string().contains("nope"), "{e}");
        }
        // A write under a path whose parent is a file: the environment, not the input (models, reports and
        // features all write through these errors).
        let file = dir.path().join("a-file");
        std::fs::write(&file, "x").unwrap();
        let e: Error = stockcast_features::io::write_atomic(&file.join("out.json"), b"{}").unwrap_err().into();
        assert_eq!(e.kind(), Kind::Failure, "{e}");
    }
}
