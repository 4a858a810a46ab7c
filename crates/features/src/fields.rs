//! The names the loader and the quality report share: the input's layout and the price columns (a leaf module:
//! it imports nothing of the crate, so the error type can carry a quality report without an import circle).

/// How the input file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Layout {
    /// One row per symbol and day, with a symbol column.
    Long,
    /// One symbol per file, no symbol column.
    SingleSymbol,
    /// One close column per symbol.
    Wide,
    /// Several files under a folder or glob pattern (one per symbol, or a hive-partitioned dataset), each in one
    /// of the layouts above.
    Files,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Long => "long",
            Self::SingleSymbol => "single-symbol",
            Self::Wide => "wide",
            Self::Files => "files",
        })
    }
}

/// A price column the loader knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PriceField {
    /// Opening price.
    Open,
    /// Daily high.
    High,
    /// Daily low.
    Low,
    /// Closing price (raw, as traded).
    Close,
    /// Traded volume.
    Volume,
    /// Split- and dividend-adjusted close.
    AdjClose,
}

impl PriceField {
    /// All fields, in output order.
    pub const ALL: [PriceField; 6] = [Self::Open, Self::High, Self::Low, Self::Close, Self::Volume, Self::AdjClose];

    /// Canonical column name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::High => "high",
            Self::Low => "low",
            Self::Close => "close",
            Self::Volume => "volume",
            Self::AdjClose => "adj_close",
        }
    }

    pub(crate) fn aliases(self) -> &'static [&'static str] {
        match self {
            Self::Open => &["open", "openprice", "opening"],
            Self::High => &["high", "highprice"],
            Self::Low => &["low", "lowprice"],
            Self::Close => &["close", "closeprice", "closing"],
            Self::Volume => &["volume", "vol", "sharesvolume"],
            Self::AdjClose => &["adjclose", "adjustedclose", "adjcloseprice", "adjustedcloseprice", "adjclosing"],
        }
    }
}

pub(crate) const DATE_ALIASES: &[&str] = &["date", "day", "datetime", "timestamp", "time", "tradedate", "tradingdate"];
pub(crate) const SYMBOL_ALIASES: &[&str] = &["symbol", "ticker", "sym", "instrument", "secid", "code"];
