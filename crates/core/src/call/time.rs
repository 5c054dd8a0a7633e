//! Virtual time for the call core: milliseconds since the call started.
//!
//! The core never reads a clock. The runtime passes "now" with every event, as the number of ms
//! since it created the [`super::CallCore`]; tests pass any value they like, so a 10-minute call
//! runs in microseconds.

use std::fmt;
use std::ops::Add;

/// A point in time in ms since the start of the call (virtual time; monotonic by contract).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// The start of the call.
    pub const ZERO: Millis = Millis(0);

    /// The raw number of ms since the call started.
    pub const fn as_ms(self) -> u64 {
        self.0
    }

    /// ms from `earlier` to `self`, or 0 when `earlier` is later.
    pub const fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `self` plus `ms` milliseconds (saturating).
    pub const fn plus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }

    /// `self` minus `ms` milliseconds, not earlier than the call start.
    pub const fn minus(self, ms: u64) -> Millis {
        Millis(self.0.saturating_sub(ms))
    }
}

impl Add<u64> for Millis {
    type Output = Millis;
    fn add(self, ms: u64) -> Millis {
        self.plus(ms)
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}ms", self.0)
    }
}

/// Converts seconds (as the assistant record stores them) to whole ms; negative and NaN are 0.
pub fn secs_to_ms(secs: f32) -> u64 {
    if secs.is_finite() && secs > 0.0 {
        (f64::from(secs) * 1000.0).round() as u64
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Millis(5).since(Millis(9)), 0);
        assert_eq!(Millis(9).since(Millis(5)), 4);
        assert_eq!(Millis(3).minus(10), Millis::ZERO);
        assert_eq!(Millis(u64::MAX).plus(1), Millis(u64::MAX));
        assert_eq!(Millis(1) + 2, Millis(3));
    }

    #[test]
    fn seconds_convert_to_ms() {
        assert_eq!(secs_to_ms(0.5), 500);
        assert_eq!(secs_to_ms(2.65), 2650);
        assert_eq!(secs_to_ms(-1.0), 0);
        assert_eq!(secs_to_ms(f32::NAN), 0);
    }
}
