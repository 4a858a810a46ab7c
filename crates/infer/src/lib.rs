//! Inference server for stockcast: axum HTTP API over promoted model artifacts, with recommendations stored in Postgres via sqlx.
//!
//! The crate is part of the workspace layout from the start so dependencies point one way
//! (`features` ← `models` ← `backtest`; `infer` uses `features` + `models`); its code arrives with its issue.
