//! `stockcast report ...`.

use stockcast_backtest::compare::compare;

use super::out;
use crate::cli::ReportCommand;

pub(crate) fn run(cmd: ReportCommand) -> anyhow::Result<()> {
    match cmd {
        ReportCommand::Compare(a) => {
            let c = compare(&a.run_a, &a.run_b)?;
            out(&c.markdown());
            if let Some(dir) = &a.out {
                c.write(dir)?;
                out(&format!("compare: {}", dir.join("compare.html").display()));
            }
            Ok(())
        }
    }
}
