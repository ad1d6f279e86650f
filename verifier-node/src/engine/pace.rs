//! A cloud pace: each pass held to at least the time a profile of a faster or slower
//! machine gives it, so real tokens and real acceptance meet a target that decodes at
//! a realistic speed (an A100 serving a 7-8 B model, say) while the model actually run
//! is small. The profile is the simulator's own pass-time formula:
//!
//! ```text
//! pass ≥ pass_ms + per_session_ms · sessions + per_token_ms · tokens
//!        + verify_extra_ms · [the pass verifies a draft block]
//! ```
//!
//! The real forward time and the time held after it are reported apart
//! (`Timing.forward_ns` and `Timing.paced_ns`).

use std::time::Duration;

/// A pass-time profile the engine holds each pass to.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct PassPace {
    /// Fixed time of any pass, ms.
    pub pass_ms: f64,
    /// Time per session in the pass, ms.
    pub per_session_ms: f64,
    /// Time per token in the pass, ms.
    pub per_token_ms: f64,
    /// Extra time of a pass that verifies a draft block, ms.
    pub verify_extra_ms: f64,
}

impl PassPace {
    /// How long a pass of `sessions` sessions and `tokens` tokens takes on the profiled
    /// machine.
    pub fn pass(&self, sessions: usize, tokens: usize, verifies: bool) -> Duration {
        Duration::from_secs_f64(self.ms(sessions, tokens, verifies).max(0.0) / 1e3)
    }

    /// The same, ms (the simulator times its passes with this).
    pub fn ms(&self, sessions: usize, tokens: usize, verifies: bool) -> f64 {
        self.pass_ms
            + if verifies { self.verify_extra_ms } else { 0.0 }
            + self.per_session_ms * sessions as f64
            + self.per_token_ms * tokens as f64
    }

    /// Checks the numbers: each finite and ≥ 0.
    pub fn check(&self) -> Result<(), String> {
        for (k, v) in [
            ("pass_ms", self.pass_ms),
            ("per_session_ms", self.per_session_ms),
            ("per_token_ms", self.per_token_ms),
            ("verify_extra_ms", self.verify_extra_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(format!("{k} must be a number ≥ 0, got {v}"));
            }
        }
        Ok(())
    }
}

impl std::str::FromStr for PassPace {
    type Err = String;

    /// `pass_ms=25,per_session_ms=0.1,per_token_ms=0.05,verify_extra_ms=0`: keys in
    /// any order, absent ones 0.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut p = PassPace::default();
        for part in s.split(',').map(str::trim).filter(|x| !x.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?}: expected key=ms"))?;
            let v: f64 = v
                .trim()
                .parse()
                .map_err(|_| format!("{k}: {v:?} is not a number"))?;
            match k.trim() {
                "pass_ms" => p.pass_ms = v,
                "per_session_ms" => p.per_session_ms = v,
                "per_token_ms" => p.per_token_ms = v,
                "verify_extra_ms" => p.verify_extra_ms = v,
                other => {
                    return Err(format!(
                        "unknown key {other:?} (pass_ms, per_session_ms, per_token_ms, verify_extra_ms)"
                    ));
                }
            }
        }
        p.check()?;
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_adds_its_terms() {
        let p = PassPace {
            pass_ms: 20.0,
            per_session_ms: 0.5,
            per_token_ms: 0.1,
            verify_extra_ms: 3.0,
        };
        assert_eq!(p.pass(4, 20, true), Duration::from_secs_f64(0.027));
        assert_eq!(p.pass(1, 1, false), Duration::from_secs_f64(0.0206));
        assert!(p.check().is_ok());
        let bad = PassPace {
            per_token_ms: -1.0,
            ..p
        };
        assert!(bad.check().unwrap_err().contains("per_token_ms"));
        let parsed: PassPace = "pass_ms=20, per_token_ms=0.1,per_session_ms=0.5,verify_extra_ms=3"
            .parse()
            .unwrap();
        assert_eq!(parsed, p);
        assert!(
            "pass=3"
                .parse::<PassPace>()
                .unwrap_err()
                .contains("unknown key")
        );
        assert!(
            "pass_ms=-3"
                .parse::<PassPace>()
                .unwrap_err()
                .contains("≥ 0")
        );
    }
}
