//! `stockcast datasets ...`.

use anyhow::Context;
use stockcast_features::{SynthConfig, synth_prices};

use super::out;
use crate::cli::DatasetsCommand;
use crate::ctx::Ctx;

pub(crate) fn run(ctx: &Ctx, cmd: DatasetsCommand) -> anyhow::Result<()> {
    match cmd {
        DatasetsCommand::Synth(a) => {
            let cfg = SynthConfig { symbols: a.symbols, days: a.days, seed: a.seed, start: a.start };
            let pb = ctx.progress.step(&format!("generating {} symbols x {} days", a.symbols, a.days));
            let mut df = synth_prices(&cfg)?;
            pb.set_message(format!("writing {}", a.out.display()));
            stockcast_features::io::write_frame(&mut df, &a.out)
                .with_context(|| format!("writing {}", a.out.display()))?;
            pb.finish_and_clear();
            out(&format!("wrote {} ({} rows, seed {})", a.out.display(), df.height(), a.seed));
            Ok(())
        }
    }
}
