//! Each symbol's trailing liquidity, known at the close of each date: the average daily volume (shares) and the
//! daily volatility of close-to-close returns over its last `adv_days` bars up to and including the date. The
//! square-root impact and the participation limit read them at the signal date (the fill date's previous trading
//! date for next-open fills, the fill date itself for fills at the close), so no order is sized on a bar after its
//! signal.

use super::{Error, Market, Result, metrics};

/// `adv[symbol][date]` and `sigma[symbol][date]` (NaN before a symbol has two bars with a volume and a return).
/// Computed once per market and window: every model's simulation and every capacity level read the same one.
#[derive(Debug)]
pub struct Liquidity {
    pub(super) adv: Vec<Vec<f64>>,
    pub(super) sigma: Vec<Vec<f64>>,
}

impl Liquidity {
    /// Trailing statistics over `window` bars.
    ///
    /// # Errors
    /// [`Error::Config`] when the prices have no volume column.
    pub fn new(market: &Market, window: usize) -> Result<Self> {
        if market.volume.is_empty() || market.volume.iter().flatten().all(|v| !v.is_finite()) {
            return Err(Error::Config(
                "strategy: cost_model = \"sqrt_impact\" and max_participation need the prices' volume column".into(),
            ));
        }
        let (nsym, ndates) = (market.symbols.len(), market.dates.len());
        let mut adv = vec![vec![f64::NAN; ndates]; nsym];
        let mut sigma = vec![vec![f64::NAN; ndates]; nsym];
        for (s, bars) in market.bars().iter().enumerate() {
            let close = &market.close[s];
            for (k, &d) in bars.iter().enumerate() {
                let from = (k + 1).saturating_sub(window);
                let vols: Vec<f64> =
                    bars[from..=k].iter().map(|&b| market.volume[s][b]).filter(|v| v.is_finite()).collect();
                if !vols.is_empty() {
                    adv[s][d] = metrics::mean(&vols);
                }
                let rets: Vec<f64> = bars[from..=k]
                    .windows(2)
                    .map(|w| close[w[1]] / close[w[0]] - 1.0)
                    .filter(|r| r.is_finite())
                    .collect();
                if rets.len() >= 2 {
                    sigma[s][d] = metrics::std(&rets);
                }
            }
        }
        Ok(Self { adv, sigma })
    }
}
