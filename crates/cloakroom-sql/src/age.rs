//! When a connection the store keeps for itself is too old to use again: the pool's
//! `idle_timeout` and `max_lifetime`, applied to connections detached from it (the pool's
//! own reaper no longer sees them). sqlx does not say when it made a connection, so an age
//! counts from when the store took it from the pool, which may have kept it a while.

use std::time::{Duration, Instant};

use sqlx::{Database, Pool};

/// A pool's limits on how long a connection is kept.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Limits {
    idle_timeout: Option<Duration>,
    max_lifetime: Option<Duration>,
}

/// When a connection was made, and when its last call ended.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Age {
    made: Instant,
    used: Instant,
}

impl Age {
    /// A connection made now.
    pub(crate) fn new() -> Self {
        let now = Instant::now();
        Self {
            made: now,
            used: now,
        }
    }

    /// Its call has just ended.
    pub(crate) fn used(&mut self) {
        self.used = Instant::now();
    }
}

impl Limits {
    /// `pool`'s limits.
    pub(crate) fn of<DB: Database>(pool: &Pool<DB>) -> Self {
        let options = pool.options();
        Self {
            idle_timeout: options.get_idle_timeout(),
            max_lifetime: options.get_max_lifetime(),
        }
    }

    /// Whether a connection of `age` is past either limit at `now`.
    pub(crate) fn expired(&self, age: &Age, now: Instant) -> bool {
        let past = |limit: Option<Duration>, since: Instant| {
            limit.is_some_and(|limit| now.saturating_duration_since(since) >= limit)
        };
        past(self.idle_timeout, age.used) || past(self.max_lifetime, age.made)
    }

    /// How often idle connections are checked, as sqlx checks its own: every shorter limit
    /// (so one is closed within its limit and a period); `None` without limits.
    pub(crate) fn period(&self) -> Option<Duration> {
        match (self.idle_timeout, self.max_lifetime) {
            (Some(idle), Some(lifetime)) => Some(idle.min(lifetime)),
            (limit, None) | (None, limit) => limit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn a_connection_expires_when_idle_too_long_or_too_old() {
        let limits = Limits {
            idle_timeout: Some(10 * SECOND),
            max_lifetime: Some(60 * SECOND),
        };
        let start = Instant::now();
        let mut age = Age {
            made: start,
            used: start,
        };
        assert!(!limits.expired(&age, start + 9 * SECOND));
        assert!(limits.expired(&age, start + 10 * SECOND), "idle too long");
        age.used = start + 55 * SECOND;
        assert!(!limits.expired(&age, start + 59 * SECOND));
        assert!(limits.expired(&age, start + 60 * SECOND), "too old");
        // A clock read before `used` (another thread's) is not past anything.
        assert!(!limits.expired(&age, start));
        assert_eq!(limits.period(), Some(10 * SECOND));
    }

    #[test]
    fn without_limits_a_connection_is_kept_and_never_checked() {
        let limits = Limits::default();
        let start = Instant::now();
        let age = Age {
            made: start,
            used: start,
        };
        assert!(!limits.expired(&age, start + 1_000_000 * SECOND));
        assert_eq!(limits.period(), None);
        let lifetime = Limits {
            idle_timeout: None,
            max_lifetime: Some(SECOND),
        };
        assert_eq!(lifetime.period(), Some(SECOND));
    }
}
