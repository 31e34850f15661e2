//! Where the simulator reads the time ([`Clock`]: the real one, or a [`ManualClock`] a test moves
//! by hand) and the bounds of the skew between SAE's clock and it.
//!
//! A leaf: it depends on no other simulator module.

use std::sync::Mutex;

use jiff::Timestamp;

/// Where the simulator reads the time. One clock for everything lazy (change orders, quota,
/// nonces, skew), so a test can move time by hand. SAE's clock is this plus the configured
/// `clock_skew` ([`Simulator::now`](crate::simulator::Simulator::now)).
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn set(&self, t: Timestamp) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = t;
    }

    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut t = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *t = t.saturating_add(by).unwrap_or(*t);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The largest clock skew accepted, either way: ten years.
pub const MAX_CLOCK_SKEW_SECS: f64 = 10.0 * 365.0 * 86_400.0;

/// A clock skew in seconds (negative: SAE's clock is behind), as the flag and admin API take it.
pub fn clock_skew_from_secs(secs: f64) -> Result<jiff::SignedDuration, String> {
    if !(secs.is_finite() && secs.abs() <= MAX_CLOCK_SKEW_SECS) {
        return Err(format!(
            "clockSkewSeconds must be a number of seconds within ±{MAX_CLOCK_SKEW_SECS}, got {secs}"
        ));
    }
    jiff::SignedDuration::try_from_secs_f64(secs).map_err(|e| e.to_string())
}

/// The longest read lag accepted (`listLagSeconds`, `describeLagSeconds`): ten minutes. A lag
/// longer than any change order's life only hides everything, which no test needs.
pub const MAX_LAG_SECS: f64 = 600.0;

/// The longest `preparingSeconds` setting accepted: one day.
pub const MAX_PREPARING_SECS: f64 = 86_400.0;

/// A number of seconds from 0 to `max` (fractions allowed) as a duration, for the settings that
/// delay what SAE shows or does; `what` names the setting in the error.
pub fn bounded_secs(secs: f64, max: f64, what: &str) -> Result<jiff::SignedDuration, String> {
    if !(secs.is_finite() && (0.0..=max).contains(&secs)) {
        return Err(format!(
            "{what} must be a number of seconds from 0 to {max}, got {secs}"
        ));
    }
    jiff::SignedDuration::try_from_secs_f64(secs).map_err(|e| format!("{what}: {e}"))
}
