//! The book: holdings, orders waiting for a bar, fills at the open or close with costs, delistings, the
//! trades it closes, and the target weights of each rule.

use super::liquidity::Liquidity;
use super::{BTreeMap, CostModel, Fill, Market, NaiveDate, Rule, StrategyConfig, Trade};

pub(super) struct OpenTrade {
    pub(super) side: i8,
    pub(super) entry_date: NaiveDate,
    pub(super) entry_price: f64,
    pub(super) flow: f64,
    pub(super) max_value: f64,
}

/// The book of a simulation: cash, shares, the last close of each symbol, open and closed trades, fills and
/// costs. [`simulate`] decides when and what to trade; the book executes orders and keeps the accounts.
pub(super) struct Book {
    pub(super) cash: f64,
    pub(super) shares: Vec<f64>,
    pub(super) last_close: Vec<f64>,
    pub(super) open_trades: Vec<Option<OpenTrade>>,
    pub(super) trades: Vec<Trade>,
    pub(super) fills: usize,
    /// Costs paid, by kind (currency).
    pub(super) paid: Costs,
    /// Target weights of orders that found no bar at their fill, by symbol: they fill at the symbol's next bar.
    pub(super) waiting: BTreeMap<usize, f64>,
    pub(super) delisted: usize,
    /// Trailing volume and volatility, when the cost model or the participation limit needs them.
    pub(super) liquidity: Option<std::sync::Arc<Liquidity>>,
}

/// What trading cost, by kind, in currency; and what the participation limit cut.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(super) struct Costs {
    /// Commission + slippage summed fill by fill (the figure `costs` always reported).
    pub(super) traded: f64,
    pub(super) commission: f64,
    /// Slippage (`bps`) or market impact (`sqrt_impact`).
    pub(super) slippage: f64,
    pub(super) borrow: f64,
    /// Interest earned on cash (negative: paid).
    pub(super) interest: f64,
    /// Value of the orders as the rule wanted them, and the part the participation limit cut.
    pub(super) wanted: f64,
    pub(super) cut: f64,
    /// Orders cut by the limit.
    pub(super) capped: usize,
}

impl Costs {
    /// Commission, slippage or impact, and borrow fees.
    pub(super) fn total(&self) -> f64 {
        self.traded + self.borrow
    }
}

impl Book {
    pub(super) fn new(capital: f64, nsym: usize) -> Self {
        Self {
            cash: capital,
            shares: vec![0.0; nsym],
            last_close: vec![f64::NAN; nsym],
            open_trades: (0..nsym).map(|_| None).collect(),
            trades: Vec::new(),
            fills: 0,
            paid: Costs::default(),
            waiting: BTreeMap::new(),
            delisted: 0,
            liquidity: None,
        }
    }

    /// Interest on the cash held since the previous close: `cash · daily_rate` (a negative balance pays it).
    pub(super) fn accrue_interest(&mut self, daily_rate: f64) {
        let interest = self.cash * daily_rate;
        self.cash += interest;
        self.paid.interest += interest;
    }

    /// The day's borrow fee on the short positions at the last closes: Σ |short value| · `borrow_bps` / 10⁴ / 252.
    pub(super) fn charge_borrow(&mut self, borrow_bps: f64) {
        let short: f64 = (0..self.shares.len())
            .filter(|&s| self.shares[s] < 0.0 && self.last_close[s].is_finite())
            .map(|s| -self.shares[s] * self.last_close[s])
            .sum();
        let fee = short * borrow_bps / 1e4 / crate::metrics::YEAR;
        self.cash -= fee;
        self.paid.borrow += fee;
    }

    /// The slippage fraction of an order of `dq` shares of `s` filled on date `d` (against it), after the
    /// participation limit, which may cut `dq`; `None` when the order cannot be sized (no volume or volatility
    /// known at its signal date under a model that needs them).
    fn order_terms(
        &mut self,
        cfg: &StrategyConfig,
        s: usize,
        d: usize,
        fill: Fill,
        dq: &mut f64,
        price: f64,
    ) -> Option<f64> {
        let Some(liq) = &self.liquidity else { return Some(cfg.slippage_bps / 1e4) };
        // What was known at the signal: the previous trading date for next-open fills.
        let known = if fill == Fill::NextOpen { d.saturating_sub(1) } else { d };
        let (adv, sigma) = (liq.adv[s][known], liq.sigma[s][known]);
        self.paid.wanted += dq.abs() * price;
        if let Some(p) = cfg.max_participation {
            let cap = if adv.is_finite() { p * adv } else { 0.0 };
            if dq.abs() > cap {
                self.paid.cut += (dq.abs() - cap) * price;
                self.paid.capped += 1;
                *dq = dq.signum() * cap;
            }
        }
        match cfg.cost_model {
            CostModel::Bps => Some(cfg.slippage_bps / 1e4),
            CostModel::SqrtImpact => {
                let impact = cfg.impact_coefficient * sigma * (dq.abs() / adv).sqrt();
                if impact.is_finite() {
                    Some(impact)
                } else {
                    self.paid.cut += dq.abs() * price;
                    self.paid.capped += 1;
                    None
                }
            }
        }
    }

    /// Symbols held (long or short).
    pub(super) fn held(&self) -> Vec<usize> {
        (0..self.shares.len()).filter(|&s| self.shares[s] != 0.0).collect()
    }

    /// Remembers the closes of date `d` (a missing close keeps the previous one).
    pub(super) fn mark_closes(&mut self, market: &Market, d: usize) {
        for (lc, close) in self.last_close.iter_mut().zip(&market.close) {
            if close[d].is_finite() {
                *lc = close[d];
            }
        }
    }

    /// The held names' weights at the last closes: (symbol, position value / `equity`).
    pub(super) fn weights(&self, equity: f64) -> Vec<(u32, f64)> {
        (0..self.shares.len())
            .filter(|&s| self.shares[s] != 0.0 && self.last_close[s].is_finite())
            .map(|s| (s as u32, self.shares[s] * self.last_close[s] / equity))
            .collect()
    }

    /// Equity at the last closes and gross exposure (Σ|position value|).
    pub(super) fn equity_and_gross(&self) -> (f64, f64) {
        let n = self.shares.len();
        let gross: f64 = (0..n).map(|s| (self.shares[s] * self.last_close[s]).abs()).filter(|v| v.is_finite()).sum();
        let equity = self.cash
            + (0..n).filter(|&s| self.shares[s] != 0.0).map(|s| self.shares[s] * self.last_close[s]).sum::<f64>();
        (equity, gross)
    }

    /// Trades to the target weights `w` at the `fill` prices of date `d` (a new rebalance: orders still waiting
    /// for a bar are replaced); returns the equity before trading (at those prices) and the value traded.
    pub(super) fn rebalance(
        &mut self,
        cfg: &StrategyConfig,
        market: &Market,
        d: usize,
        w: &BTreeMap<usize, f64>,
        fill: Fill,
    ) -> (f64, f64) {
        self.waiting.clear();
        self.trade_to(cfg, market, d, w, fill, None)
    }

    /// Fills the waiting orders of symbols that have a bar at date `d`.
    pub(super) fn fill_waiting(&mut self, cfg: &StrategyConfig, market: &Market, d: usize, fill: Fill) -> (f64, f64) {
        let ready: Vec<usize> =
            self.waiting.keys().copied().filter(|&s| market.fill_price(s, d, fill).is_finite()).collect();
        if ready.is_empty() {
            return (f64::NAN, 0.0);
        }
        let w: BTreeMap<usize, f64> = ready.iter().map(|s| (*s, self.waiting[s])).collect();
        for s in &ready {
            self.waiting.remove(s);
        }
        self.trade_to(cfg, market, d, &w, fill, Some(&ready))
    }

    /// Sells every held symbol whose prices ended before date `d` at its last close × (1 + `delisting_return`),
    /// without costs, and drops its waiting order.
    pub(super) fn delist(&mut self, cfg: &StrategyConfig, market: &Market, d: usize, last_bar: &[usize]) {
        for (s, &last) in last_bar.iter().enumerate() {
            if last >= d {
                continue;
            }
            self.waiting.remove(&s);
            if self.shares[s] != 0.0 && self.last_close[s].is_finite() {
                let price = self.last_close[s] * (1.0 + cfg.delisting_return);
                self.fill((0.0, 0.0), market, s, -self.shares[s], price, market.dates[d]);
                self.delisted += 1;
            }
        }
    }

    /// Trades symbols (all, or `only`) to the weights `w` at the `fill` prices of date `d`. A symbol without a
    /// price there gets its target kept as a waiting order.
    pub(super) fn trade_to(
        &mut self,
        cfg: &StrategyConfig,
        market: &Market,
        d: usize,
        w: &BTreeMap<usize, f64>,
        fill: Fill,
        only: Option<&[usize]>,
    ) -> (f64, f64) {
        let nsym = self.shares.len();
        let cost_rate = (cfg.commission_bps + cfg.slippage_bps) / 1e4;
        let price: Vec<f64> = (0..nsym)
            .map(|s| {
                let p = market.fill_price(s, d, fill);
                if p.is_finite() { p } else { f64::NAN }
            })
            .collect();
        let mark = |s: usize| if price[s].is_finite() { price[s] } else { self.last_close[s] };
        let equity: f64 =
            self.cash + (0..nsym).filter(|&s| self.shares[s] != 0.0).map(|s| self.shares[s] * mark(s)).sum::<f64>();
        let sizing = equity / (1.0 + cost_rate);
        // Names kept on the same side keep their shares unless `reweight`; exits and flips go to zero; new
        // names get their target weight of the equity. Sells first (they raise the cash the buys use).
        let comm = cfg.commission_bps / 1e4;
        let mut orders: Vec<(usize, f64, f64, f64)> = Vec::new();
        for s in (0..nsym).filter(|s| only.is_none_or(|o| o.contains(s))) {
            let tw = w.get(&s).copied().unwrap_or(0.0);
            let cur = self.shares[s];
            let stays = tw != 0.0 && cur != 0.0 && cur.signum() == tw.signum();
            let keep = stays && !cfg.reweights();
            if keep || (tw == 0.0 && cur == 0.0) {
                continue;
            }
            if !price[s].is_finite() {
                self.waiting.insert(s, tw);
                continue;
            }
            let mut dq = tw * sizing / price[s] - cur;
            // A small adjustment of a name that stays is not worth its costs.
            if stays && (dq * price[s]).abs() < cfg.min_trade * equity {
                continue;
            }
            if dq.abs() > 1e-9 {
                // The participation limit may cut the order; an order that cannot be costed is not placed.
                if let Some(slip) = self.order_terms(cfg, s, d, fill, &mut dq, price[s])
                    && dq.abs() > 1e-9
                {
                    // The cost rate of the cash check: the configured one under `bps` (as it always was).
                    let rate = if self.liquidity.is_some() { comm + slip } else { cost_rate };
                    orders.push((s, dq, slip, rate));
                }
            }
        }
        // Buys never spend more than the cash after the sells.
        let proceeds: f64 =
            orders.iter().filter(|o| o.1 < 0.0).map(|(s, dq, _, rate)| -dq * price[*s] * (1.0 - rate)).sum();
        let spend: f64 =
            orders.iter().filter(|o| o.1 > 0.0).map(|(s, dq, _, rate)| dq * price[*s] * (1.0 + rate)).sum();
        let available = (self.cash + proceeds).max(0.0);
        if spend > available && spend > 0.0 {
            let scale = available / spend;
            for o in orders.iter_mut().filter(|o| o.1 > 0.0) {
                o.1 *= scale;
                // Market impact is that of the order as placed (smaller now: it costs less than was set aside).
                if cfg.cost_model == CostModel::SqrtImpact {
                    o.2 *= scale.sqrt();
                }
            }
        }
        orders.sort_by(|a, b| (a.1 > 0.0).cmp(&(b.1 > 0.0)).then(a.0.cmp(&b.0)));
        let mut traded = 0.0;
        for (s, dq, slip, _) in orders {
            traded += (dq * price[s]).abs();
            self.fill((comm, slip), market, s, dq, price[s], market.dates[d]);
        }
        (equity, traded)
    }

    /// Executes `dq` shares of symbol `s` at `price` (plus slippage against the order, plus commission, both as
    /// fractions) and keeps the trade ledger: a position opened, grown, closed or flipped.
    pub(super) fn fill(
        &mut self,
        (comm, slip): (f64, f64),
        market: &Market,
        s: usize,
        dq: f64,
        price: f64,
        date: NaiveDate,
    ) {
        let exec = price * (1.0 + slip * dq.signum());
        let value = dq * exec;
        let commission = value.abs() * comm;
        self.cash -= value + commission;
        self.paid.traded += commission + (dq * price * slip).abs();
        self.paid.commission += commission;
        self.paid.slippage += (dq * price * slip).abs();
        self.fills += 1;
        let before = self.shares[s];
        let after = before + dq;
        self.shares[s] = if after.abs() < 1e-9 { 0.0 } else { after };
        let now = self.shares[s];
        let flow = -value - commission;
        let opened = |flow: f64| OpenTrade {
            side: now.signum() as i8,
            entry_date: date,
            entry_price: exec,
            flow,
            max_value: (now * exec).abs(),
        };
        // Close (or flip) an open trade.
        if before != 0.0 && (now == 0.0 || now.signum() != before.signum()) {
            if let Some(t) = self.open_trades[s].take() {
                // The part of the flow that closes the old position.
                let closing_share = if now == 0.0 { 1.0 } else { before.abs() / dq.abs() };
                let pnl = t.flow + flow * closing_share;
                self.trades.push(Trade {
                    symbol: market.symbols[s].clone(),
                    side: t.side,
                    entry_date: t.entry_date,
                    entry_price: t.entry_price,
                    exit_date: Some(date),
                    exit_price: exec,
                    pnl,
                    return_pct: pnl / t.max_value,
                });
                if now != 0.0 {
                    self.open_trades[s] = Some(opened(flow * (1.0 - closing_share)));
                }
            }
        } else if before == 0.0 {
            self.open_trades[s] = Some(opened(flow));
        } else if let Some(t) = self.open_trades[s].as_mut() {
            t.flow += flow;
            t.max_value = t.max_value.max((now * exec).abs());
        }
    }

    /// Closes the books: open trades are marked at the last close; returns every trade, fills, costs and
    /// delistings.
    pub(super) fn finish(mut self, market: &Market) -> (Vec<Trade>, usize, Costs, usize) {
        for (s, t) in std::mem::take(&mut self.open_trades).into_iter().enumerate() {
            if let Some(t) = t {
                let value = self.shares[s] * self.last_close[s];
                let pnl = t.flow + value;
                self.trades.push(Trade {
                    symbol: market.symbols[s].clone(),
                    side: t.side,
                    entry_date: t.entry_date,
                    entry_price: t.entry_price,
                    exit_date: None,
                    exit_price: self.last_close[s],
                    pnl,
                    return_pct: pnl / t.max_value,
                });
            }
        }
        (self.trades, self.fills, self.paid, self.delisted)
    }
}

/// The groups of equal scores in `ranked` (sorted best first), as index ranges.
fn tie_groups(ranked: &[(usize, f64)]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < ranked.len() {
        let j = i + ranked[i..].iter().take_while(|x| x.1.total_cmp(&ranked[i].1).is_eq()).count();
        out.push(i..j);
        i = j;
    }
    out
}

/// The names of `ranked` (sorted best first) that fill `places` places, each with its share of a place: every
/// name above the cut-off a whole place, the `m` names tied at the cut-off the `r` places left between them
/// (`r / m` each), so the choice never depends on how the tied names are spelled or ordered.
pub(super) fn take_places(ranked: &[(usize, f64)], places: f64) -> Vec<(usize, f64)> {
    let mut out = Vec::new();
    let mut left = places;
    for g in tie_groups(ranked) {
        if left <= 0.0 {
            break;
        }
        let m = g.len() as f64;
        let share = if m <= left { 1.0 } else { left / m };
        out.extend(ranked[g].iter().map(|x| (x.0, share)));
        left -= share * m;
    }
    out
}

/// Sorts `(symbol, score)` best first (symbol order only makes the sort deterministic: every choice below is
/// made per group of tied scores).
fn best_first(v: &mut [(usize, f64)]) {
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
}

/// Target weights of `rule` from the scores of one date (`held`: current holdings, for n-drop). No choice depends
/// on symbol names: names tied at a cut-off share its places ([`take_places`]); for n-drop, a tied group of
/// holdings at the sell cut-off is sold only when the whole group fits in the `n_drop` places (fewer sells
/// otherwise).
pub(super) fn targets(rule: &Rule, scores: &[(usize, f64)], held: &[usize]) -> BTreeMap<usize, f64> {
    let mut ranked: Vec<(usize, f64)> = scores.to_vec();
    best_first(&mut ranked);
    let mut w = BTreeMap::new();
    match *rule {
        Rule::TopK { k, n_drop: None } => {
            for (s, share) in take_places(&ranked, k as f64) {
                w.insert(s, share / k as f64);
            }
        }
        Rule::TopK { k, n_drop: Some(n_drop) } => {
            let score_of = |s: usize| scores.iter().find(|x| x.0 == s).map_or(f64::NEG_INFINITY, |x| x.1);
            // Holdings by score, worst last; unscored holdings count as the worst.
            let mut last: Vec<(usize, f64)> = held.iter().map(|&s| (s, score_of(s))).collect();
            best_first(&mut last);
            let want_new = (n_drop + k).saturating_sub(last.len());
            // Candidates: the `want_new` best names not held, with every name tied with the last of them.
            let fresh: Vec<(usize, f64)> = ranked.iter().filter(|(s, _)| !held.contains(s)).copied().collect();
            let today = &fresh[..take_places(&fresh, want_new as f64).len()];
            let mut comb: Vec<(usize, f64)> = last.iter().chain(today).copied().collect();
            best_first(&mut comb);
            // Sold: holdings whose whole tie group lies within the bottom `n_drop` of the combined list.
            let mut sell = Vec::new();
            let mut below = 0;
            for g in tie_groups(&comb).into_iter().rev() {
                below += g.len();
                if below > n_drop {
                    break;
                }
                sell.extend(comb[g].iter().map(|x| x.0).filter(|s| held.contains(s)));
            }
            let n_buy = (sell.len() + k).saturating_sub(last.len());
            let mut slots: Vec<(usize, f64)> =
                last.iter().map(|x| x.0).filter(|s| !sell.contains(s)).map(|s| (s, 1.0)).collect();
            slots.extend(take_places(today, n_buy as f64));
            let total: f64 = slots.iter().map(|x| x.1).sum();
            for (s, slot) in slots {
                w.insert(s, slot / total);
            }
        }
        Rule::LongShort { k } => {
            let k = k.min(ranked.len() / 2);
            let worst_first: Vec<(usize, f64)> = ranked.iter().rev().copied().collect();
            // A name in both tie groups (every score equal, say) nets its long and short shares.
            for (side, list) in [(0.5, &ranked), (-0.5, &worst_first)] {
                for (s, share) in take_places(list, k as f64) {
                    *w.entry(s).or_insert(0.0) += side * share / k as f64;
                }
            }
            w.retain(|_, v| *v != 0.0);
        }
        Rule::Threshold { threshold } => {
            // No cut-off by rank: every name above the threshold is in, whatever its name.
            let chosen: Vec<usize> = ranked.iter().filter(|x| x.1 > threshold).map(|x| x.0).collect();
            for s in &chosen {
                w.insert(*s, 1.0 / chosen.len() as f64);
            }
        }
    }
    w
}
