//! [`Clock`]: where "now" comes from. The engine never reads the wall clock itself: the binary's `main` (or the
//! server's start-up) makes [`Clock::system`] and passes it down; tests pass [`Clock::fixed`].

use std::sync::Arc;

use chrono::{DateTime, Utc};

/// A source of the current time, cheap to clone and share between threads.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>);

impl Clock {
    /// The operating system's clock: only the binary's start-up makes one.
    pub fn system() -> Self {
        Self(Arc::new(|| DateTime::<Utc>::from(std::time::SystemTime::now())))
    }

    /// Always `t` (tests, reproducible runs).
    pub fn fixed(t: DateTime<Utc>) -> Self {
        Self(Arc::new(move || t))
    }

    /// A clock reading `f`.
    pub fn from_fn(f: impl Fn() -> DateTime<Utc> + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }

    /// The current time.
    pub fn now(&self) -> DateTime<Utc> {
        (self.0)()
    }

    /// The current time as RFC 3339 in UTC, whole seconds (`2026-11-30T12:00:00Z`).
    pub fn now_rfc3339(&self) -> String {
        self.now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Clock").field(&self.now()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_clock_reads_its_time() {
        let t = DateTime::parse_from_rfc3339("2026-11-30T12:00:00Z").unwrap().with_timezone(&Utc);
        let c = Clock::fixed(t);
        assert_eq!(c.now(), t);
        assert_eq!(c.now_rfc3339(), "2026-11-30T12:00:00Z");
    }
}
