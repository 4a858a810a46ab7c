//! `stockcast fit` and `stockcast predict`: use one model by hand ([`stockcast_pipeline::model`]).

use stockcast_models::Replace;
use stockcast_pipeline::Ctx;
use stockcast_pipeline::model::{self, FitRequest};

use super::out;
use crate::cli::{FitArgs, PredictArgs};

pub(crate) fn fit(ctx: &Ctx, a: &FitArgs) -> anyhow::Result<()> {
    let request = FitRequest {
        model: a.model.clone(),
        data: a.data.input(),
        spec: a.spec.clone(),
        horizon: a.horizon,
        train_until: a.train_until,
        valid_fraction: a.valid_fraction,
        seed: a.seed,
        out: a.out.clone(),
        replace: Replace::forced(a.force),
    };
    let fitted = model::fit(ctx, &request)?;
    let meta = &fitted.saved.meta;
    let (first, last) =
        meta.train_range.map_or((String::new(), String::new()), |(f, l)| (f.to_string(), l.to_string()));
    out(&format!(
        "fitted {} on {} rows ({first} .. {last}){}, {} features, seed {}; saved to {}",
        meta.kind,
        meta.train_rows,
        fitted.valid_rows.map_or_else(String::new, |v| format!(" with {v} validation rows")),
        meta.feature_names.len(),
        a.seed,
        a.out.display()
    ));
    if let Some(line) = &fitted.summary {
        out(line);
    }
    Ok(())
}

pub(crate) fn predict(ctx: &Ctx, a: &PredictArgs) -> anyhow::Result<()> {
    let quarantine_beside = a.out.clone().unwrap_or_else(|| "predictions.csv".into());
    let preds = model::predict(ctx, &a.model_dir, &a.data.input(), a.date, &quarantine_beside)?;
    if let Some(p) = &a.out {
        preds.write_csv(p)?;
        ctx.note(&format!("wrote {} predictions to {}", preds.score.len(), p.display()));
    } else {
        out(preds.to_csv().trim_end());
    }
    Ok(())
}
