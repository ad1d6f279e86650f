//! An emulated edge device: the draft model runs `slowdown` times slower than on this
//! machine, and slower still under sustained load (a thermal throttle), so that one
//! workstation can stand in for a phone or a Jetson-class board.
//!
//! The throttle follows a linear ramp: after `throttle_after` of drafting, the extra
//! factor grows from 1 to `throttle_factor` over `ramp`:
//!
//! ```text
//! busy ≤ after:            slowdown
//! after < busy < after+ramp: slowdown · (1 + (factor − 1) · (busy − after) / ramp)
//! busy ≥ after + ramp:     slowdown · factor
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::record::DraftStop;

/// Tokens a draft may still propose after a sequence of `seq_len`, on `device` (none:
/// this machine): its cache holds at most `max_context` tokens, or what the device's KV
/// budget holds at `kv_bytes_per_token` each, and a block's last token is never
/// forwarded, so the cache holds `seq_len + n − 1`. `Err` says why the draft cannot go
/// on: shut down, its context full, or out of memory.
pub fn room(
    device: Option<&DevicePace>,
    seq_len: usize,
    max_context: usize,
    kv_bytes_per_token: u64,
) -> Result<usize, DraftStop> {
    if device.is_some_and(DevicePace::is_shut_down) {
        return Err(DraftStop::ThermalShutdown);
    }
    let (mut cap, mut why) = (max_context, DraftStop::ContextFull);
    if let Some(bytes) = device.and_then(|p| p.kv_budget) {
        let fits = (bytes / kv_bytes_per_token.max(1)) as usize;
        if fits < cap {
            (cap, why) = (fits, DraftStop::OutOfMemory);
        }
    }
    match cap.saturating_add(1).saturating_sub(seq_len) {
        0 => Err(why),
        n => Ok(n),
    }
}

/// A device's pace, shared by every request that runs on that device (clones share the
/// drafting time it has accumulated).
#[derive(Debug, Clone)]
pub struct DevicePace {
    /// Draft time × this (≥ 1).
    pub slowdown: f64,
    /// Drafting time after which the throttle starts; `None`: never.
    pub throttle_after: Option<Duration>,
    /// The throttle's full extra factor (≥ 1).
    pub throttle_factor: f64,
    /// How long the throttle takes to reach its full factor.
    pub ramp: Duration,
    /// Drafting time after which the device shuts down (thermal); `None`: never.
    pub shutdown_after: Option<Duration>,
    /// Bytes the device gives the draft's KV cache; `None`: no bound.
    pub kv_budget: Option<u64>,
    busy: Arc<Mutex<Duration>>,
}

impl DevicePace {
    /// A device `slowdown` times slower than this machine, never throttled.
    pub fn new(slowdown: f64) -> Self {
        Self {
            slowdown: slowdown.max(1.0),
            throttle_after: None,
            throttle_factor: 1.0,
            ramp: Duration::from_secs(10),
            shutdown_after: None,
            kv_budget: None,
            busy: Arc::default(),
        }
    }

    /// With a throttle: after `after` of drafting, × up to `factor` over `ramp`.
    pub fn with_throttle(mut self, after: Duration, factor: f64, ramp: Duration) -> Self {
        self.throttle_after = Some(after);
        self.throttle_factor = factor.max(1.0);
        self.ramp = ramp.max(Duration::from_nanos(1));
        self
    }

    /// With a thermal shutdown after `after` of drafting.
    pub fn with_shutdown(mut self, after: Duration) -> Self {
        self.shutdown_after = Some(after);
        self
    }

    /// With `bytes` of memory for the draft's KV cache.
    pub fn with_kv_budget(mut self, bytes: u64) -> Self {
        self.kv_budget = Some(bytes);
        self
    }

    /// Whether the device has shut down (it drafts no more).
    pub fn is_shut_down(&self) -> bool {
        let busy = *self.busy.lock().expect("pace lock");
        self.shutdown_after.is_some_and(|after| busy >= after)
    }

    /// The factor now, given the drafting time accumulated so far.
    pub fn factor(&self) -> f64 {
        let busy = *self.busy.lock().expect("pace lock");
        self.factor_at(busy)
    }

    fn factor_at(&self, busy: Duration) -> f64 {
        let Some(after) = self.throttle_after else {
            return self.slowdown;
        };
        let into = busy.saturating_sub(after).as_secs_f64() / self.ramp.as_secs_f64();
        self.slowdown * (1.0 + (self.throttle_factor - 1.0) * into.min(1.0))
    }

    /// Charges drafting that took `took` on this machine: returns how much longer the
    /// device would have taken (to be slept), and counts the device's time as busy.
    pub fn charge(&self, took: Duration) -> Duration {
        let mut busy = self.busy.lock().expect("pace lock");
        let on_device = took.mul_f64(self.factor_at(*busy));
        *busy += on_device;
        on_device.saturating_sub(took)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn slowdown_alone_stretches_every_draft() {
        let p = DevicePace::new(3.0);
        assert_eq!(p.charge(10 * MS), 20 * MS);
        assert_eq!(p.charge(10 * MS), 20 * MS);
        assert_eq!(p.factor(), 3.0);
    }

    #[test]
    fn the_throttle_ramps_linearly_then_holds() {
        let p = DevicePace::new(2.0).with_throttle(100 * MS, 3.0, 100 * MS);
        assert_eq!(p.factor_at(50 * MS), 2.0);
        assert!((p.factor_at(150 * MS) - 4.0).abs() < 1e-9); // 2 · (1 + 2 · 0.5)
        assert!((p.factor_at(1000 * MS) - 6.0).abs() < 1e-9);
        // Clones share the device's busy time.
        let q = p.clone();
        q.charge(100 * MS); // 200 ms on the device
        assert!((p.factor() - 6.0).abs() < 1e-9);
    }
}
