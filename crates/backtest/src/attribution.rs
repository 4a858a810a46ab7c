//! Return attribution (`report.json → models.<m>.attribution`, the report's attribution charts): each date's
//! portfolio return split into market, sector and selection, from the weights held at the previous close.
//!
//! With `w_i` the weights at the close of t−1 (position value / equity), `r_i` each name's close-to-close return
//! to t (0 for a held name without a close at t: it stays marked at its last one), `r_b` the equal-weight
//! benchmark's return (the mean over the universe's members at t−1 with both closes, as the benchmark curve
//! computes it), `r_g` the same mean over the members of sector g (the sector each name had at t−1; names without
//! one form their own group; a group with no member return uses `r_b`), `W_g = Σ_(i in g) w_i` and `β` the
//! strategy's beta against the benchmark over the run (`risk.benchmark.beta`):
//!
//! - market = β · r_b
//! - sector = Σ_g W_g (r_g − r_b): over- and underweighting sectors that beat or trailed the market
//! - selection = Σ_i w_i (r_i − r_g(i)): picking names within their sectors
//! - other = r_p − market − sector − selection, r_p the strategy's return: costs, cash interest and borrow, and
//!   the net exposure's difference from β (Σ_i w_i r_b − β r_b).
//!
//! The four add up to r_p on every date; the run's totals are sums of the daily contributions (arithmetic, not
//! compounded).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::Serialize;

use crate::portfolio::{Market, Simulation};

/// Daily contributions and their sums over the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attribution {
    /// The beta the market term uses.
    pub beta: f64,
    /// Sum over dates of the market contribution.
    pub market: f64,
    /// Sum of the sector contribution.
    pub sector: f64,
    /// Sum of the selection contribution.
    pub selection: f64,
    /// Sum of the rest (costs, cash, exposure away from β).
    pub other: f64,
    /// Sum of the daily returns (= market + sector + selection + other).
    pub total: f64,
    /// Dates of the daily contributions (from the second simulated date).
    #[serde(skip)]
    pub dates: Vec<NaiveDate>,
    /// Daily (market, sector, selection, other).
    #[serde(skip)]
    pub daily: Vec<[f64; 4]>,
}

/// Attributes `sim`'s daily returns (equity over the previous close; the first date has none) on `market`.
pub fn attribute(sim: &Simulation, market: &Market, beta: f64) -> Attribution {
    let mut out = Attribution {
        beta,
        market: 0.0,
        sector: 0.0,
        selection: 0.0,
        other: 0.0,
        total: 0.0,
        dates: Vec::new(),
        daily: Vec::new(),
    };
    let index: Vec<Option<usize>> = sim.dates.iter().map(|d| market.dates.binary_search(d).ok()).collect();
    for k in 1..sim.dates.len() {
        let (Some(prev), Some(now)) = (index[k - 1], index[k]) else { continue };
        let ret = |s: usize| market.close_return(s, prev, now);
        // Benchmark and sector means over the members at the previous close.
        let mut all = (0.0, 0usize);
        let mut groups: BTreeMap<Option<&str>, (f64, usize)> = BTreeMap::new();
        for s in (0..market.symbols.len()).filter(|&s| market.is_member(s, prev)) {
            if let Some(r) = ret(s) {
                all.0 += r;
                all.1 += 1;
                let g = groups.entry(market.sector_at(s, prev)).or_default();
                g.0 += r;
                g.1 += 1;
            }
        }
        if all.1 == 0 {
            continue;
        }
        let rb = all.0 / all.1 as f64;
        let group_mean = |g: Option<&str>| groups.get(&g).filter(|x| x.1 > 0).map_or(rb, |x| x.0 / x.1 as f64);
        let (mut sector, mut selection) = (0.0, 0.0);
        for &(s, w) in &sim.holdings[k - 1] {
            let s = s as usize;
            let rg = group_mean(market.sector_at(s, prev));
            sector += w * (rg - rb);
            selection += w * (ret(s).unwrap_or(0.0) - rg);
        }
        let rp = sim.equity[k] / sim.equity[k - 1] - 1.0;
        let market_term = beta * rb;
        let other = rp - market_term - sector - selection;
        out.market += market_term;
        out.sector += sector;
        out.selection += selection;
        out.other += other;
        out.total += rp;
        out.dates.push(sim.dates[k]);
        out.daily.push([market_term, sector, selection, other]);
    }
    out
}
