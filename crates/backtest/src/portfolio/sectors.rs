//! Sector constraints: the sector-neutral long-short selection, the per-name and per-sector caps (water-filled),
//! and the check every book passes after weighting.
//!
//! A name's sector is the one it has on the signal date ([`Market::sector_at`]); names without one count as one
//! sector, "(no sector)", for the caps, and are left out of a sector-neutral book.

use std::collections::BTreeMap;

use super::book::targets;
use super::{Error, Market, Result, Rule, StrategyConfig};

/// The name a sector is reported by.
fn label(sector: Option<&str>) -> &str {
    sector.unwrap_or("(no sector)")
}

/// Fails unless the prices carry sectors when the strategy needs them.
///
/// # Errors
/// [`Error::Config`] naming the setting.
pub(super) fn require(cfg: &StrategyConfig, market: &Market) -> Result<()> {
    let setting = if cfg.sector_neutral {
        "sector_neutral"
    } else if cfg.max_sector_weight.is_some() {
        "max_sector_weight"
    } else {
        return Ok(());
    };
    if market.sector.iter().all(|v| v.iter().all(|x| x.1.is_none())) {
        return Err(Error::Config(format!(
            "strategy: {setting} needs each name's sector, and the prices have none: give a securities file \
             (symbol,name,sector) or a point-in-time classification"
        )));
    }
    Ok(())
}

/// Sector-neutral long-short targets for date index `d`: up to `k` names a side, placed sector by sector. Each
/// sector with n ≥ 2 scored names (and a sector) takes places for at most ⌊n/2⌋ names a side; the places go one
/// at a time to the sector with the largest n / (places + 1) (D'Hondt: in proportion to the scored names), ties
/// to the first sector by name. In a sector given m places, its m best names are long and its m worst short
/// (ties at a cut-off share places, as for `long_short`); every place weighs ½ / (places given), so each sector's
/// long and short totals are equal.
pub(super) fn neutral_targets(k: usize, market: &Market, d: usize, scored: &[(usize, f64)]) -> BTreeMap<usize, f64> {
    let mut by_sector: BTreeMap<&str, Vec<(usize, f64)>> = BTreeMap::new();
    for &(s, v) in scored {
        if let Some(sector) = market.sector_at(s, d) {
            by_sector.entry(sector).or_default().push((s, v));
        }
    }
    let sectors: Vec<&Vec<(usize, f64)>> = by_sector.values().collect();
    let mut places = vec![0usize; sectors.len()];
    for _ in 0..k {
        let best = (0..sectors.len()).filter(|&i| places[i] < sectors[i].len() / 2).max_by(|&a, &b| {
            let q = |i: usize| sectors[i].len() as f64 / (places[i] + 1) as f64;
            q(a).total_cmp(&q(b)).then(b.cmp(&a))
        });
        match best {
            Some(i) => places[i] += 1,
            None => break,
        }
    }
    let given: usize = places.iter().sum();
    let mut w = BTreeMap::new();
    for (names, &m) in sectors.iter().zip(&places).filter(|(_, m)| **m > 0) {
        // The rule's long-short targets within the sector (±½ / m a place), scaled to its share of the places.
        for (s, v) in targets(&Rule::LongShort { k: m }, names, &[]) {
            w.insert(s, v * m as f64 / given as f64);
        }
    }
    w
}

/// Caps the values at `cap` keeping their sum: the ones above are set to it and the excess shared among the
/// rest in proportion to their values, repeated until none is above. Returns whether any value was above. The
/// caller checks that the values can hold their sum (count · cap ≥ sum).
pub(super) fn water_fill(values: &mut [f64], cap: f64) -> bool {
    let mut changed = false;
    for _ in 0..values.len() {
        let over: f64 = values.iter().map(|v| (v - cap).max(0.0)).sum();
        if over <= 1e-15 {
            break;
        }
        changed = true;
        let free: f64 = values.iter().filter(|v| **v < cap).sum();
        for v in values.iter_mut() {
            *v = if *v >= cap { cap } else { *v + over * *v / free };
        }
    }
    changed
}

/// The names of the side `sign` of `w`, grouped by sector (names without one under `None`).
fn side_by_sector<'m>(
    market: &'m Market,
    d: usize,
    w: &BTreeMap<usize, f64>,
    sign: f64,
) -> BTreeMap<Option<&'m str>, Vec<usize>> {
    let mut out: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (&s, &v) in w {
        if v * sign > 0.0 {
            out.entry(market.sector_at(s, d)).or_default().push(s);
        }
    }
    out
}

/// The groups a side's weight is shared within: each side, or with `sector_neutral` each sector's side (so the
/// weighting and the name cap keep every sector's long and short totals). Each group: its sign and names.
pub(super) fn groups(
    cfg: &StrategyConfig,
    market: &Market,
    d: usize,
    w: &BTreeMap<usize, f64>,
) -> Vec<(f64, Vec<usize>)> {
    let mut out = Vec::new();
    for sign in [1.0, -1.0] {
        if cfg.sector_neutral {
            out.extend(side_by_sector(market, d, w, sign).into_values().map(|names| (sign, names)));
        } else {
            out.push((sign, w.iter().filter(|(_, v)| **v * sign > 0.0).map(|(s, _)| *s).collect()));
        }
    }
    out
}

/// The mean-variance solve's sector caps for one side's `names` (indices into them, the cap): none without
/// `max_sector_weight`, or with `sector_neutral` (whose sector totals are set before the solve).
pub(super) fn solver_groups(
    cfg: &StrategyConfig,
    market: &Market,
    d: usize,
    names: &[usize],
) -> Vec<(Vec<usize>, f64)> {
    let Some(cap) = cfg.max_sector_weight.filter(|_| !cfg.sector_neutral) else { return Vec::new() };
    let mut by_sector: BTreeMap<Option<&str>, Vec<usize>> = BTreeMap::new();
    for (i, &s) in names.iter().enumerate() {
        by_sector.entry(market.sector_at(s, d)).or_default().push(i);
    }
    by_sector.into_values().map(|idx| (idx, cap)).collect()
}

/// Applies `max_sector_weight` (each side's total in a sector) and `max_weight` (each name) to `w` by
/// water-filling, alternating until both hold: a sector's names scale together, a capped name's excess goes to
/// its group's other names ([`groups`]).
///
/// # Errors
/// [`Error::Data`] when a side's sectors or a group's names cannot hold its total under the cap.
pub(super) fn cap(cfg: &StrategyConfig, market: &Market, d: usize, w: &mut BTreeMap<usize, f64>) -> Result<()> {
    let date = market.dates[d];
    // Both caps: a side holds at most Σ over its sectors of min(max_sector_weight, names · max_weight).
    if let (Some(sector_cap), Some(name_cap)) = (cfg.max_sector_weight, cfg.max_weight) {
        for sign in [1.0, -1.0] {
            let sectors = side_by_sector(market, d, w, sign);
            let total: f64 = sectors.values().flatten().map(|s| w[s].abs()).sum();
            let most: f64 = sectors.values().map(|n| sector_cap.min(n.len() as f64 * name_cap)).sum();
            if most < total - 1e-12 {
                return Err(Error::Data(format!(
                    "{date}: max_sector_weight = {sector_cap} and max_weight = {name_cap} cannot hold {total:.4} of \
                     equity in these {} sectors (at most {most:.4})",
                    sectors.len()
                )));
            }
        }
    }
    for _ in 0..100 {
        let mut changed = false;
        if let Some(cap) = cfg.max_sector_weight {
            for sign in [1.0, -1.0] {
                let sectors = side_by_sector(market, d, w, sign);
                let before: Vec<f64> = sectors.values().map(|n| n.iter().map(|s| w[s].abs()).sum()).collect();
                let total: f64 = before.iter().sum();
                if (sectors.len() as f64) * cap < total - 1e-12 {
                    return Err(Error::Data(format!(
                        "{date}: max_sector_weight = {cap} cannot hold {total:.4} of equity in {} sectors",
                        sectors.len()
                    )));
                }
                let mut after = before.clone();
                if water_fill(&mut after, cap) {
                    changed = true;
                    for ((names, b), a) in sectors.values().zip(&before).zip(&after) {
                        for s in names {
                            let v = w[s];
                            w.insert(*s, v * a / b);
                        }
                    }
                }
            }
        }
        if let Some(cap) = cfg.max_weight {
            for (sign, names) in groups(cfg, market, d, w) {
                let mut values: Vec<f64> = names.iter().map(|s| w[s].abs()).collect();
                let total: f64 = values.iter().sum();
                if (names.len() as f64) * cap < total - 1e-12 {
                    let within = if cfg.sector_neutral {
                        format!(" of sector {}", label(market.sector_at(names[0], d)))
                    } else {
                        String::new()
                    };
                    return Err(Error::Data(format!(
                        "{date}: max_weight = {cap} cannot hold {total:.4} of equity in {} names{within}",
                        names.len()
                    )));
                }
                if water_fill(&mut values, cap) {
                    changed = true;
                    for (s, v) in names.iter().zip(values) {
                        w.insert(*s, sign * v);
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
    Ok(())
}

/// Checks a weighted book against every constraint: no name above `max_weight`, no side of a sector above
/// `max_sector_weight`, and with `sector_neutral` every sector's net weight zero (to 1e-9 of the gross).
///
/// # Errors
/// [`Error::Data`] naming the date, the name or sector and the constraint it breaks.
pub(super) fn check(cfg: &StrategyConfig, market: &Market, d: usize, w: &BTreeMap<usize, f64>) -> Result<()> {
    let date = market.dates[d];
    if let Some(cap) = cfg.max_weight
        && let Some((s, v)) = w.iter().find(|(_, v)| v.abs() > cap * (1.0 + 1e-9))
    {
        return Err(Error::Data(format!(
            "{date}: {} would hold {v:.6} of equity, above max_weight = {cap}",
            market.symbols[*s]
        )));
    }
    if let Some(cap) = cfg.max_sector_weight {
        for sign in [1.0, -1.0] {
            for (sector, names) in side_by_sector(market, d, w, sign) {
                let total: f64 = names.iter().map(|s| w[s].abs()).sum();
                if total > cap * (1.0 + 1e-9) {
                    let side = if sign > 0.0 { "long" } else { "short" };
                    return Err(Error::Data(format!(
                        "{date}: the {side} side holds {total:.6} of equity in sector {}, above max_sector_weight = {cap}",
                        label(sector)
                    )));
                }
            }
        }
    }
    if cfg.sector_neutral {
        let gross: f64 = w.values().map(|v| v.abs()).sum();
        let mut net: BTreeMap<Option<&str>, f64> = BTreeMap::new();
        for (&s, &v) in w {
            *net.entry(market.sector_at(s, d)).or_default() += v;
        }
        if let Some((sector, v)) = net.iter().find(|(_, v)| v.abs() > 1e-9 * gross.max(1.0)) {
            return Err(Error::Data(format!(
                "{date}: sector {} has a net weight of {v:.3e}, and the book is sector-neutral",
                label(*sector)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn water_fill_caps_and_keeps_the_sum() {
        // By hand: [0.5, 0.3, 0.2] capped at 0.4 → 0.1 over, shared 3:2 → [0.4, 0.36, 0.24].
        let mut v = [0.5, 0.3, 0.2];
        assert!(water_fill(&mut v, 0.4));
        for (got, want) in v.iter().zip([0.4, 0.36, 0.24]) {
            assert!((got - want).abs() < 1e-12, "{v:?}");
        }
        // A second pass when the share pushes another above: [0.6, 0.35, 0.05] at 0.4 → [0.4, 0.4, 0.2].
        let mut v = [0.6, 0.35, 0.05];
        assert!(water_fill(&mut v, 0.4));
        for (got, want) in v.iter().zip([0.4, 0.4, 0.2]) {
            assert!((got - want).abs() < 1e-12, "{v:?}");
        }
        let mut v = [0.3, 0.3];
        assert!(!water_fill(&mut v, 0.4));
    }
}
