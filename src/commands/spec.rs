//! `stockcast spec`.

use anyhow::Context;
use stockcast_features::FeatureSpec;

use super::out;
use crate::cli::SpecArgs;

pub(crate) fn run(args: &SpecArgs) -> anyhow::Result<()> {
    let spec = match &args.spec {
        Some(p) => FeatureSpec::from_file(p).with_context(|| format!("reading feature spec {}", p.display()))?,
        None => stockcast_features::Checked::default(),
    };
    out(&format!("# feature spec hash: {}", spec.hash()));
    out(&format!("# {} features (before skipping families whose columns are absent)", spec.output_names().len()));
    out(&spec.to_toml());
    Ok(())
}
