//! Formula features (`family = "expr"`): qlib-style expressions over data columns and earlier features, parsed
//! and checked when the spec loads and compiled to Polars expressions.
//!
//! Grammar: numbers, `$column` (a price field or a factor column of the data), `name` (a feature defined
//! earlier in the spec, not a cross-sectional one), `+ - * /`, unary `-`, parentheses and calls:
//!
//! | call | meaning |
//! |---|---|
//! | `ref(x, n)` | x of n rows earlier of the symbol (n ≥ 0; there is no look-ahead form) |
//! | `mean/std/min/max/sum(x, w)` | over the symbol's last w rows (std: sample, ddof 1), null until w rows |
//! | `rank(x, w)` | percentile of x among its last w values, `scipy.stats.percentileofscore(kind = "rank") / 100` (qlib's `Rank`) |
//! | `corr(x, y, w)` | Pearson correlation over the last w rows |
//! | `log(x)`, `abs(x)`, `sign(x)`, `clip(x, lo, hi)` | elementwise |
//! | `cs_rank(x)`, `cs_zscore(x)` | per date across symbols: mid-rank percentile (rank − 0.5)/n, z-score (ddof 1) |
//! | `group_rank(x, sector)`, `group_zscore(x, sector)` | the same within each date's sector |

use polars::prelude::*;

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Ast {
    /// A number.
    Num(f64),
    /// `$name`: a column of the data.
    Column(String),
    /// `name`: an earlier feature.
    Feature(String),
    /// Unary minus.
    Neg(Box<Ast>),
    /// `a op b` with op one of `+ - * /`.
    Bin(char, Box<Ast>, Box<Ast>),
    /// A call with its arguments.
    Call(String, Vec<Ast>),
}

/// A parse or check error: what and at which character (1-based column of the expression).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExprError {
    /// 1-based character position.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

type Parsed<T> = std::result::Result<T, ExprError>;

struct Parser<'a> {
    chars: Vec<char>,
    pos: usize,
    known: &'a dyn Fn(&str) -> bool,
}

/// Functions, their argument counts, and which arguments are integer literals (windows, lags) or a group name.
fn signature(name: &str) -> Option<(usize, &'static [usize], bool)> {
    Some(match name {
        "ref" | "mean" | "std" | "min" | "max" | "sum" | "rank" => (2, &[1], false),
        "corr" => (3, &[2], false),
        "log" | "abs" | "sign" | "cs_rank" | "cs_zscore" => (1, &[], false),
        "clip" => (3, &[], false),
        "group_rank" | "group_zscore" => (2, &[], true),
        _ => return None,
    })
}

impl Parser<'_> {
    fn err<T>(at: usize, message: impl Into<String>) -> Parsed<T> {
        Err(ExprError { column: at + 1, message: message.into() })
    }
    fn skip(&mut self) {
        while self.chars.get(self.pos).is_some_and(|c| c.is_whitespace()) {
            self.pos += 1;
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.skip();
        self.chars.get(self.pos).copied()
    }
    fn expect(&mut self, c: char) -> Parsed<()> {
        if self.peek() == Some(c) {
            self.pos += 1;
            Ok(())
        } else {
            let got = self.peek().map_or_else(|| "the end".to_owned(), |g| format!("`{g}`"));
            Self::err(self.pos, format!("expected `{c}`, found {got}"))
        }
    }
    fn sum(&mut self) -> Parsed<Ast> {
        let mut left = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.pos += 1;
            left = Ast::Bin(op, Box::new(left), Box::new(self.product()?));
        }
        Ok(left)
    }
    fn product(&mut self) -> Parsed<Ast> {
        let mut left = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.pos += 1;
            left = Ast::Bin(op, Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }
    fn unary(&mut self) -> Parsed<Ast> {
        if self.peek() == Some('-') {
            self.pos += 1;
            return Ok(Ast::Neg(Box::new(self.unary()?)));
        }
        self.atom()
    }
    fn word(&mut self) -> String {
        let start = self.pos;
        while self.chars.get(self.pos).is_some_and(|c| c.is_ascii_alphanumeric() || *c == '_') {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }
    fn atom(&mut self) -> Parsed<Ast> {
        let at = {
            self.skip();
            self.pos
        };
        match self.peek() {
            Some('(') => {
                self.pos += 1;
                let e = self.sum()?;
                self.expect(')')?;
                Ok(e)
            }
            Some('$') => {
                self.pos += 1;
                let name = self.word();
                if name.is_empty() {
                    return Self::err(at, "`$` must be followed by a column name");
                }
                Ok(Ast::Column(name))
            }
            Some(c) if c.is_ascii_digit() || c == '.' => {
                while self.chars.get(self.pos).is_some_and(|c| c.is_ascii_digit() || *c == '.' || *c == 'e') {
                    self.pos += 1;
                }
                let text: String = self.chars[at..self.pos].iter().collect();
                text.parse().map(Ast::Num).or_else(|_| Self::err(at, format!("`{text}` is not a number")))
            }
            Some(c) if c.is_ascii_alphabetic() || c == '_' => {
                let name = self.word();
                if self.peek() != Some('(') {
                    if !(self.known)(&name) {
                        return Self::err(
                            at,
                            format!(
                                "`{name}` is not a feature defined earlier in the spec (data columns are `${name}`)"
                            ),
                        );
                    }
                    return Ok(Ast::Feature(name));
                }
                let lower = name.to_ascii_lowercase();
                let Some((arity, ints, group)) = signature(&lower) else {
                    return Self::err(at, format!("unknown function `{name}`"));
                };
                self.pos += 1;
                let mut args = Vec::new();
                let mut arg_at = Vec::new();
                if self.peek() != Some(')') {
                    loop {
                        self.skip();
                        arg_at.push(self.pos);
                        if group && args.len() == 1 {
                            let g = self.word();
                            if g != "sector" && g != "industry" {
                                return Self::err(
                                    arg_at[1],
                                    format!("`{name}` groups by `sector` or `industry`, not `{g}`"),
                                );
                            }
                            args.push(Ast::Column(g));
                        } else {
                            args.push(self.sum()?);
                        }
                        if self.peek() == Some(',') {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                }
                self.expect(')')?;
                if args.len() != arity {
                    return Self::err(at, format!("`{name}` takes {arity} argument(s), got {}", args.len()));
                }
                for &i in ints {
                    let ok = matches!(args[i], Ast::Num(n) if n.fract() == 0.0 && n >= 0.0);
                    if !ok {
                        let what = if lower == "ref" {
                            "a lag of 0 or more rows (no negative lag: that would look ahead)"
                        } else {
                            "a whole number of rows"
                        };
                        return Self::err(arg_at[i], format!("`{name}`'s argument {} must be {what}", i + 1));
                    }
                    let n = if let Ast::Num(n) = args[i] { n } else { 0.0 };
                    let min = match lower.as_str() {
                        "ref" => 0.0,
                        "std" | "corr" | "rank" => 2.0,
                        _ => 1.0,
                    };
                    if n < min {
                        return Self::err(arg_at[i], format!("`{name}` needs a window of at least {min}, got {n}"));
                    }
                }
                Ok(Ast::Call(lower, args))
            }
            Some(c) => Self::err(at, format!("unexpected `{c}`")),
            None => Self::err(at, "unexpected end of the expression"),
        }
    }
}

/// Parses `text`; `known` says whether a bare name is a feature defined earlier.
///
/// # Errors
/// [`ExprError`] with the 1-based column of the first problem.
pub fn parse(text: &str, known: &dyn Fn(&str) -> bool) -> Parsed<Ast> {
    let mut p = Parser { chars: text.chars().collect(), pos: 0, known };
    let e = p.sum()?;
    if let Some(c) = p.peek() {
        return Parser::err(p.pos, format!("unexpected `{c}` after the expression"));
    }
    Ok(e)
}

impl Ast {
    /// The data columns (`$name`, group names included) the expression reads.
    pub fn columns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.walk(&mut |a| {
            if let Ast::Column(c) = a {
                out.push(c.clone());
            }
        });
        out.sort();
        out.dedup();
        out
    }

    /// Rows before t the formula itself reads: nested windows and lags add up (`mean(ref(x, 5), 20)` reads 24).
    pub fn lookback(&self) -> usize {
        match self {
            Ast::Num(_) | Ast::Column(_) | Ast::Feature(_) => 0,
            Ast::Neg(a) => a.lookback(),
            Ast::Bin(_, a, b) => a.lookback().max(b.lookback()),
            Ast::Call(name, args) => {
                let inner = args.iter().map(Ast::lookback).max().unwrap_or(0);
                let reach = match name.as_str() {
                    "ref" => num(&args[1]),
                    "mean" | "std" | "min" | "max" | "sum" | "rank" => num(&args[1]).saturating_sub(1),
                    "corr" => num(&args[2]).saturating_sub(1),
                    _ => 0,
                };
                inner + reach
            }
        }
    }

    /// Whether the formula compares symbols (cs_* or group_* calls): it needs every symbol of a date at once.
    pub fn is_cross_sectional(&self) -> bool {
        let mut any = false;
        self.walk(&mut |a| {
            if let Ast::Call(n, _) = a {
                any |= n.starts_with("cs_") || n.starts_with("group_");
            }
        });
        any
    }

    fn walk(&self, f: &mut dyn FnMut(&Ast)) {
        f(self);
        match self {
            Ast::Neg(a) => a.walk(f),
            Ast::Bin(_, a, b) => {
                a.walk(f);
                b.walk(f);
            }
            Ast::Call(_, args) => args.iter().for_each(|a| a.walk(f)),
            _ => {}
        }
    }
}

/// What compiling needs from the feature builder: shifts and windows within a symbol, and the date column.
pub(crate) struct Compiler<'a> {
    pub(crate) lag: &'a dyn Fn(Expr, usize) -> Expr,
    pub(crate) per_symbol: &'a dyn Fn(Expr) -> PolarsResult<Expr>,
    pub(crate) row: Expr,
    pub(crate) date: &'a str,
}

fn num(a: &Ast) -> usize {
    if let Ast::Num(n) = a { *n as usize } else { 0 }
}

impl Compiler<'_> {
    /// The Polars expression of `ast`.
    pub(crate) fn compile(&self, ast: &Ast) -> PolarsResult<Expr> {
        let null = || lit(NULL).cast(DataType::Float64);
        Ok(match ast {
            Ast::Num(n) => lit(*n),
            Ast::Column(c) | Ast::Feature(c) => col(c.as_str()).cast(DataType::Float64),
            Ast::Neg(a) => lit(0.0) - self.compile(a)?,
            Ast::Bin(op, a, b) => {
                let (a, b) = (self.compile(a)?, self.compile(b)?);
                match op {
                    '+' => a + b,
                    '-' => a - b,
                    '*' => a * b,
                    _ => a / b,
                }
            }
            Ast::Call(name, args) => {
                let x = || self.compile(&args[0]);
                match name.as_str() {
                    "ref" => (self.lag)(x()?, num(&args[1])),
                    "mean" => (self.per_symbol)(x()?.rolling_mean(crate::build::window(num(&args[1]))))?,
                    "std" => (self.per_symbol)(x()?.rolling_std(crate::build::window(num(&args[1]))))?,
                    "min" => (self.per_symbol)(x()?.rolling_min(crate::build::window(num(&args[1]))))?,
                    "max" => (self.per_symbol)(x()?.rolling_max(crate::build::window(num(&args[1]))))?,
                    "sum" => (self.per_symbol)(x()?.rolling_sum(crate::build::window(num(&args[1]))))?,
                    "rank" => {
                        // percentileofscore(window, x_t, kind = "rank") / 100 =
                        // (#{< x_t} + #{≤ x_t} + [#{≤} > #{<}]) / (2w), x_t counted in its own window.
                        let w = num(&args[1]);
                        let v = x()?;
                        let (mut below, mut upto) = (lit(0.0), lit(0.0));
                        for k in 0..w {
                            let past = (self.lag)(v.clone(), k);
                            below = below + when(past.clone().lt(v.clone())).then(lit(1.0)).otherwise(lit(0.0));
                            upto = upto + when(past.lt_eq(v.clone())).then(lit(1.0)).otherwise(lit(0.0));
                        }
                        let bonus = when(upto.clone().gt(below.clone())).then(lit(1.0)).otherwise(lit(0.0));
                        when(self.row.clone().gt_eq(lit(w as i64 - 1)).and(v.is_not_null()))
                            .then((below + upto + bonus) / lit(2.0 * w as f64))
                            .otherwise(null())
                    }
                    "corr" => {
                        let w = num(&args[2]) as IdxSize;
                        (self.per_symbol)(rolling_corr(
                            x()?,
                            self.compile(&args[1])?,
                            RollingCovOptions { window_size: w, min_periods: w, ddof: 1 },
                        ))?
                    }
                    "log" => x()?.log(lit(std::f64::consts::E)),
                    "abs" => x()?.abs(),
                    "sign" => {
                        let v = x()?;
                        when(v.clone().gt(lit(0.0)))
                            .then(lit(1.0))
                            .when(v.clone().lt(lit(0.0)))
                            .then(lit(-1.0))
                            .when(v.eq(lit(0.0)))
                            .then(lit(0.0))
                            .otherwise(null())
                    }
                    "clip" => {
                        let (v, lo, hi) = (x()?, self.compile(&args[1])?, self.compile(&args[2])?);
                        when(v.clone().lt(lo.clone())).then(lo).when(v.clone().gt(hi.clone())).then(hi).otherwise(v)
                    }
                    "cs_rank" | "group_rank" | "cs_zscore" | "group_zscore" => {
                        let mut by = vec![col(self.date)];
                        if let Some(Ast::Column(g)) = args.get(1) {
                            by.push(col(g.as_str()));
                        }
                        let v = x()?;
                        if name.ends_with("rank") {
                            let rank =
                                v.clone().rank(RankOptions { method: RankMethod::Average, descending: false }, None);
                            (rank.cast(DataType::Float64).over(by.clone())? - lit(0.5))
                                / v.count().cast(DataType::Float64).over(by)?
                        } else {
                            let sd = v.clone().std(1).over(by.clone())?;
                            when(sd.clone().gt(lit(0.0))).then((v.clone() - v.mean().over(by)?) / sd).otherwise(null())
                        }
                    }
                    _ => null(),
                }
            }
        })
    }
}
