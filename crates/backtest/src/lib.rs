//! Walk-forward evaluation for stockcast: splitters, out-of-sample runs, signal/forecast/portfolio metrics and reports.
//!
//! The crate is part of the workspace layout from the start so dependencies point one way
//! (`features` ← `models` ← `backtest`; `infer` uses `features` + `models`); its code arrives with its issue.
