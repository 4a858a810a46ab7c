//! Settings checked once, where they enter (linfa's `ParamGuard` is the model): a configuration type implements
//! [`Params`], and [`Checked<T>`] is the only way a job receives it — made by [`Checked::new`] or by deserialising
//! (a TOML file, a stored artifact), both of which run the checks. A function that takes a `&Checked<T>` never
//! checks again, and a value that failed its checks cannot reach it.

use std::fmt::Display;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize};

/// A configuration with rules of its own.
pub trait Params {
    /// What a failed check says.
    type Error;
    /// Checks every parameter, naming the first that is wrong.
    ///
    /// # Errors
    /// The first parameter that is wrong.
    fn check(&self) -> Result<(), Self::Error>;
}

/// A `T` that passed [`Params::check`]; read it through `Deref`, change it through [`Checked::into_inner`] and
/// [`Checked::new`] again.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Checked<T>(T);

impl<T: Params> Checked<T> {
    /// Checks `value`.
    ///
    /// # Errors
    /// The first parameter that is wrong.
    pub fn new(value: T) -> Result<Self, T::Error> {
        value.check()?;
        Ok(Self(value))
    }
}

impl<T> Checked<T> {
    /// The value, to change it (and check it again with [`Checked::new`]).
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Checked<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> AsRef<T> for Checked<T> {
    fn as_ref(&self) -> &T {
        &self.0
    }
}

/// Deserialising checks: a file or a stored artifact gives a checked value or an error naming the parameter.
impl<'de, T> Deserialize<'de> for Checked<T>
where
    T: Deserialize<'de> + Params,
    T::Error: Display,
{
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::new(T::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// The default settings, which meet their own rules (each type's tests say so).
impl<T> Default for Checked<T>
where
    T: Params + Default,
    T::Error: std::fmt::Debug,
{
    fn default() -> Self {
        Self::new(T::default()).expect("the default settings pass their checks")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Deserialize, Serialize)]
    struct Window {
        days: usize,
    }

    impl Params for Window {
        type Error = String;
        fn check(&self) -> Result<(), String> {
            if self.days == 0 { Err("days must be at least 1".into()) } else { Ok(()) }
        }
    }

    #[test]
    fn only_values_that_pass_their_checks_are_made_by_new_or_by_deserialising() {
        assert_eq!(Checked::new(Window { days: 0 }).unwrap_err(), "days must be at least 1");
        assert_eq!(Checked::new(Window { days: 3 }).map(|w| w.days), Ok(3));
        let e = toml::from_str::<Checked<Window>>("days = 0").unwrap_err().to_string();
        assert!(e.contains("days must be at least 1"), "{e}");
        let w: Checked<Window> = toml::from_str("days = 5").unwrap();
        assert_eq!(w.days, 5);
        assert_eq!(toml::to_string(&w).unwrap().trim(), "days = 5");
    }
}
