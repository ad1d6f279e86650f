//! When a draft node in fallback tries the verifier again: half a millisecond after
//! the loss, then twice as long after each failed attempt, up to the configured
//! `retry`. The first try comes well inside the time the shipped draft takes for one
//! block (~0.25 ms a token on two cores), so a verifier that refused a session because
//! it was full, or was restarting, gets it back while there is still something left to
//! verify; doubling keeps a verifier that stays away from being asked more than about
//! log2(retry / 0.5 ms) times before the steady `retry` pace.

use std::time::Duration;

/// The first wait after a loss.
pub const FIRST_RETRY: Duration = Duration::from_micros(500);

/// The waits between attempts to reach the verifier again.
#[derive(Debug, Clone)]
pub(super) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits from [`FIRST_RETRY`] doubling up to `max`.
    pub(super) fn new(max: Duration) -> Self {
        Self {
            next: FIRST_RETRY.min(max),
            max,
        }
    }

    /// The wait before the next attempt (the one after is twice as long, up to `max`).
    pub(super) fn next_wait(&mut self) -> Duration {
        let wait = self.next;
        self.next = (self.next * 2).min(self.max);
        wait
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(3));
        let waits: Vec<_> = (0..5).map(|_| b.next_wait().as_micros()).collect();
        assert_eq!(waits, [500, 1000, 2000, 3000, 3000]);
        assert_eq!(Backoff::new(Duration::ZERO).next_wait(), Duration::ZERO);
    }
}
