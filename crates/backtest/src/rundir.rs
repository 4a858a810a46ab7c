//! Writing a run directory: the report model ([`crate::report`]) rendered as files — report.json/md, the page
//! ([`crate::page`]), plots (SVG, PNG and their data), Parquet frames and trades — built in a temporary sibling
//! and renamed into place. The model and the page do not import each other; this module joins them.

use std::path::{Path, PathBuf};

use stockcast_features::outputs::{Replace, replace_dir};

use crate::error::{Error, Result};
use crate::page;
use crate::portfolio::StrategyConfig;
use crate::predfile::Spooled;
use crate::report::{
    Evaluation, RunMeta, check_run_dir, conventions, markdown, overfitting_parts, plots, report_json, trades_csv,
    write_frames,
};
use crate::runner::WalkForward;

/// What a run directory is written from.
#[derive(Debug, Clone, Copy)]
pub struct RunParts<'a> {
    /// What the report records about the run.
    pub meta: &'a RunMeta,
    /// The walk-forward (folds, fold results and, unless `predictions` is given, the predictions).
    pub wf: &'a WalkForward,
    /// Each model's evaluation.
    pub eval: &'a Evaluation,
    /// The strategy simulated.
    pub strategy: &'a StrategyConfig,
    /// A `predictions.parquet` a streamed merge wrote already, used instead of `wf`'s predictions.
    pub predictions: Option<&'a Spooled>,
}

/// Writes the run directory atomically: built in a temporary sibling, then [`replace_dir`] moves an earlier run
/// aside, renames the new one into place (carrying a sharded run's plan, shards and logs over) and removes the
/// earlier one. `dir` must pass [`check_run_dir`].
///
/// # Errors
/// [`Error::File`] on I/O failures; a refused `dir`.
pub fn write_run(dir: &Path, run: RunParts<'_>, replace: Replace) -> Result<PathBuf> {
    write_run_with(dir, run, replace, &|_| {})
}

/// [`write_run`] with `between` run after the earlier run was moved aside and before the new one is renamed in
/// (tests inject crashes there).
///
/// # Errors
/// As [`write_run`].
pub fn write_run_with(dir: &Path, run: RunParts<'_>, replace: Replace, between: &dyn Fn(&Path)) -> Result<PathBuf> {
    let RunParts { meta, wf, eval, strategy, predictions } = run;
    check_run_dir(dir, replace)?;
    let models = &eval.models;
    let name = dir.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    let tmp = dir.with_file_name(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    let result = (|| {
        std::fs::create_dir_all(&tmp).map_err(|e| Error::file(&tmp, e))?;
        let write = |file: &str, bytes: &[u8]| {
            std::fs::write(tmp.join(file), bytes).map_err(|e| Error::file(tmp.join(file), e))
        };
        let report = report_json(meta, wf, eval, strategy)?;
        write("report.json", &serde_json::to_vec_pretty(&report).map_err(|e| Error::Data(e.to_string()))?)?;
        let plots = plots(models, wf)?;
        for (file, svg) in &plots {
            write(file, svg.as_bytes())?;
        }
        write("report.md", markdown(meta, eval, wf).as_bytes())?;
        let charts = page::charts(eval, wf);
        let plots_dir = tmp.join("plots");
        std::fs::create_dir_all(&plots_dir).map_err(|e| Error::file(&plots_dir, e))?;
        for c in &charts {
            write(&format!("plots/{}.png", c.id), &c.png()?)?;
            let mut df = c.frame()?;
            stockcast_features::io::write_frame(&mut df, &plots_dir.join(format!("{}.parquet", c.id)))?;
        }
        let (intro, table, pbo) = overfitting_parts(eval);
        let page = page::render(meta, eval, wf, &charts, &conventions(meta, strategy), (&intro, &table, &pbo))?;
        write("report.html", page.as_bytes())?;
        write("trades.csv", trades_csv(models).as_bytes())?;
        write_frames(&tmp, wf, models, predictions)?;
        if let Some(p) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(p).map_err(|e| Error::file(p, e))?;
        }
        // A sharded run's plan, shard outputs and logs stay with the report they were merged into.
        replace_dir(&tmp, dir, &crate::shard::KEPT, between)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result.map(|()| dir.to_path_buf())
}
