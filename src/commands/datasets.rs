//! `stockcast datasets ...`.

use anyhow::Context;
use stockcast_features::{SynthConfig, synth_prices};

use super::out;
use crate::cli::DatasetsCommand;
use stockcast_pipeline::Ctx;

pub(crate) fn run(ctx: &Ctx, cmd: DatasetsCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetsCommand::Synth(a) => {
            let cfg = SynthConfig { symbols: a.symbols, days: a.days, seed: a.seed, start: a.start };
            let pb = ctx.step(&format!("generating {} symbols x {} days", a.symbols, a.days));
            let mut df = synth_prices(&cfg)?;
            pb.update(0, 0, &format!("writing {}", a.out.display()));
            stockcast_features::io::write_frame(&mut df, &a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            pb.finish();
            out(&format!("wrote {} ({} rows, seed {})", a.out.display(), df.height(), a.seed));
            Ok(())
        }
    }
}
