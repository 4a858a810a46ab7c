//! Models for stockcast: `XGBoost` gradient boosting, burn LSTM, forecasting, linfa baselines, rule baselines and the artifact registry. Depends on `stockcast-features` for `FeatureMatrix`.
//!
//! The crate is part of the workspace layout from the start so dependencies point one way
//! (`features` ← `models` ← `backtest`; `infer` uses `features` + `models`); its code arrives with its issue.
