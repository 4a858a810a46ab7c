//! `stockcast recommend`: score a day with the champion (or pinned) versions and store the recommendations.

use std::path::PathBuf;

use stockcast_features::Checked;
use stockcast_infer::recommend::{ActionRule, RecommendConfig};

use super::out;
use crate::UsageError;
use crate::cli::{ActionMethod, DataArgs, RecommendArgs};
use stockcast_pipeline::Ctx;

/// The rule the flags give, checked as any configuration is (the flags are where it enters).
fn config(a: &RecommendArgs) -> anyhow::Result<RecommendConfig> {
    let actions = match a.actions {
        ActionMethod::Quantile => ActionRule::Quantile { buy_fraction: a.buy_fraction, sell_fraction: a.sell_fraction },
        ActionMethod::Threshold => ActionRule::Threshold { buy_above: a.buy_above, sell_below: a.sell_below },
    };
    let actions = Checked::new(actions).map_err(|e| UsageError(e.to_string()))?;
    Ok(RecommendConfig { actions, calibration_days: a.calibration_days })
}

pub(crate) fn run(ctx: &Ctx, a: &RecommendArgs) -> anyhow::Result<()> {
    let cfg = config(a)?;
    let ctx = &match &a.created_at {
        Some(t) => {
            let t = chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| UsageError(format!("--created-at {t:?}: {e}")))?
                .with_timezone(&chrono::Utc);
            ctx.with_clock(stockcast_features::Clock::fixed(t))
        }
        None => ctx.clone(),
    };
    let prices = a.prices.clone().unwrap_or_else(|| PathBuf::from(&a.db.database_url));
    let data = DataArgs::file(prices, a.securities.clone(), a.on_bad_rows);
    let db = a.db.database();
    let days = stockcast_pipeline::recommend::run(ctx, &a.dir.models_dir, &a.models, &data.input(), a.date, &cfg, &db)?;
    for day in days {
        for line in day.lines(5) {
            out(&line);
        }
    }
    Ok(())
}
