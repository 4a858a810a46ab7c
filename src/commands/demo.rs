//! `stockcast demo`: every stage on the bundled data ([`stockcast_pipeline::demo::run`]).

use crate::cli::DemoArgs;
use stockcast_pipeline::Ctx;
use stockcast_pipeline::demo::DemoOptions;

pub(crate) fn run(ctx: &Ctx, args: &DemoArgs) -> anyhow::Result<()> {
    let opts = DemoOptions {
        prices: args.prices.clone(),
        out: args.out.clone(),
        replace: stockcast_features::outputs::Replace::forced(args.force),
        database_url: args.database_url.clone().filter(|u| !u.is_empty()),
    };
    Ok(stockcast_pipeline::demo::run(ctx, &opts)?)
}
