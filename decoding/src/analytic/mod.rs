//! The analytical model of speculative decoding, with and without a network.
//!
//! Formulas (see `REFERENCES.md`):
//! - expected tokens per target call under i.i.d. acceptance `α`:
//!   `E[N] = (1 − α^(k+1)) / (1 − α)` (Leviathan et al. 2023, eq. 1);
//! - speedup with no network, `c = t_draft / t_target`:
//!   `S = E[N] / (k·c + 1)` (Leviathan Thm 3.8);
//! - a synchronous edge-cloud round:
//!   `T = k·t_d + RTT + bytes_up/B_up + bytes_down/B_down + t_v(k+1)`, per-token `T / E[N]`;
//! - a pipelined round, hit probability `h`:
//!   `T ≈ h·max(k·t_d, RTT + t_v + tx) + (1 − h)·(k·t_d + RTT + t_v + tx)`;
//! - cloud-only decoding: TTFT ≈ RTT + prefill, time per output token ≈ `t_target`.
//!
//! Reports overlay these predictions on measurements; the goodput policy maximises
//! `E[N] / T` with them. Token trees: [`tree`].

pub mod best_tree;
pub mod tree;

/// Expected tokens committed per round (accepted + the target's own) for per-token
/// acceptance probability `alpha` and draft length `k`. `α = 1` gives `k + 1`.
pub fn expected_tokens_per_round(alpha: f64, k: usize) -> f64 {
    let alpha = alpha.clamp(0.0, 1.0);
    if (1.0 - alpha).abs() < 1e-12 {
        return (k + 1) as f64;
    }
    (1.0 - alpha.powi(k as i32 + 1)) / (1.0 - alpha)
}

/// Leviathan et al.'s walltime speedup over plain target decoding with no network:
/// `E[N] / (k·c + 1)`, `c` the cost of a draft step relative to a target step.
pub fn speedup_without_network(alpha: f64, k: usize, c: f64) -> f64 {
    expected_tokens_per_round(alpha, k) / (k as f64 * c + 1.0)
}

/// Probability that all `k` drafted tokens are accepted, `α^k`: the natural estimate of
/// a pipelined round's hit probability.
pub fn full_accept_probability(alpha: f64, k: usize) -> f64 {
    alpha.clamp(0.0, 1.0).powi(k as i32)
}

/// The link between edge and cloud.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Round-trip time, seconds.
    pub rtt_s: f64,
    /// Uplink bandwidth, bytes per second (`f64::INFINITY` for none to speak of).
    pub up_bytes_per_s: f64,
    /// Downlink bandwidth, bytes per second.
    pub down_bytes_per_s: f64,
}

/// Bytes that cross the link per round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WireCost {
    /// Uplink bytes per draft block regardless of its length (framing, ids, lengths).
    pub up_fixed_bytes: f64,
    /// Uplink bytes per drafted token (token id, and `q` in stochastic mode).
    pub up_per_token_bytes: f64,
    /// Downlink bytes per verdict.
    pub down_bytes: f64,
}

/// Time of one verification pass over `n` tokens: `fixed_s + per_token_s · n`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VerifyCost {
    /// Time independent of the block length (weights read once per pass).
    pub fixed_s: f64,
    /// Additional time per verified token.
    pub per_token_s: f64,
}

/// Everything the analytical model needs to predict a strategy's latency.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SystemModel {
    /// Per-token acceptance probability `α`.
    pub alpha: f64,
    /// Time of one draft step on the edge, seconds.
    pub draft_token_s: f64,
    /// Time of one plain decoding step of the target in the cloud, seconds.
    pub target_token_s: f64,
    /// Time of the target's verification pass.
    pub verify: VerifyCost,
    /// The network between the two.
    pub link: Link,
    /// Bytes per round on the wire.
    pub wire: WireCost,
}

impl SystemModel {
    /// `E[N]` for draft length `k`.
    pub fn expected_tokens(&self, k: usize) -> f64 {
        expected_tokens_per_round(self.alpha, k)
    }

    /// Verification time of a `k`-token block (`k + 1` target positions).
    pub fn verify_s(&self, k: usize) -> f64 {
        self.verify.fixed_s + self.verify.per_token_s * (k + 1) as f64
    }

    /// Transmission time of one block up and one verdict down.
    pub fn transfer_s(&self, k: usize) -> f64 {
        let up = self.wire.up_fixed_bytes + self.wire.up_per_token_bytes * k as f64;
        up / self.link.up_bytes_per_s + self.wire.down_bytes / self.link.down_bytes_per_s
    }

    /// A synchronous round: draft, send, verify, answer.
    pub fn sync_round_s(&self, k: usize) -> f64 {
        k as f64 * self.draft_token_s + self.link.rtt_s + self.transfer_s(k) + self.verify_s(k)
    }

    /// A pipelined round with hit probability `hit`: on a hit, drafting the next block
    /// overlaps the verification of this one.
    pub fn pipelined_round_s(&self, k: usize, hit: f64) -> f64 {
        let draft = k as f64 * self.draft_token_s;
        let remote = self.link.rtt_s + self.verify_s(k) + self.transfer_s(k);
        hit * draft.max(remote) + (1.0 - hit) * (draft + remote)
    }

    /// Expected time per output token of synchronous speculation.
    pub fn speculative_tpot_s(&self, k: usize) -> f64 {
        self.sync_round_s(k) / self.expected_tokens(k)
    }

    /// Expected time per output token of pipelined speculation, with the hit
    /// probability estimated as `α^k`.
    pub fn pipelined_tpot_s(&self, k: usize) -> f64 {
        self.pipelined_round_s(k, full_accept_probability(self.alpha, k)) / self.expected_tokens(k)
    }

    /// Time per output token of cloud-only decoding: the target's step (tokens stream
    /// back, so the network is paid once, in the TTFT).
    pub fn cloud_only_tpot_s(&self) -> f64 {
        self.target_token_s
    }

    /// Time to first token of cloud-only decoding: one round trip plus the prefill.
    pub fn cloud_only_ttft_s(&self, prefill_s: f64) -> f64 {
        self.link.rtt_s + prefill_s
    }

    /// Time per output token of the draft model alone on the edge.
    pub fn edge_only_tpot_s(&self) -> f64 {
        self.draft_token_s
    }

    /// Whether synchronous speculation with `k` beats cloud-only decoding:
    /// `E[N] · t_target > T`.
    pub fn beats_cloud_only(&self, k: usize) -> bool {
        self.expected_tokens(k) * self.target_token_s > self.sync_round_s(k)
    }

    /// The largest RTT (seconds) at which synchronous speculation with `k` still beats
    /// cloud-only decoding; negative when it never does.
    pub fn break_even_rtt_s(&self, k: usize) -> f64 {
        let without_rtt = self.sync_round_s(k) - self.link.rtt_s;
        self.expected_tokens(k) * self.target_token_s - without_rtt
    }

    /// The `k` in `1..=k_max` with the lowest synchronous time per output token, and
    /// that time. Ties go to the smaller `k`.
    pub fn best_k(&self, k_max: usize) -> (usize, f64) {
        (1..=k_max.max(1))
            .map(|k| (k, self.speculative_tpot_s(k)))
            .fold(
                (0, f64::INFINITY),
                |best, cur| if cur.1 < best.1 { cur } else { best },
            )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
    }

    #[test]
    fn expected_tokens_equals_the_geometric_sum() {
        for &alpha in &[0.0, 0.1, 0.5, 0.8, 0.99, 1.0] {
            for k in 0..10 {
                let direct: f64 = (0..=k).map(|i| f64::powi(alpha, i as i32)).sum();
                assert!(
                    close(expected_tokens_per_round(alpha, k), direct),
                    "α={alpha} k={k}"
                );
            }
        }
    }

    /// The network-aware model with no network, a constant-time verifier equal to one
    /// target step, and no transfer reduces to Leviathan's speedup.
    #[test]
    fn network_model_reduces_to_leviathan_without_a_network() {
        let m = SystemModel {
            alpha: 0.7,
            draft_token_s: 0.002,
            target_token_s: 0.040,
            verify: VerifyCost {
                fixed_s: 0.040,
                per_token_s: 0.0,
            },
            link: Link {
                rtt_s: 0.0,
                up_bytes_per_s: f64::INFINITY,
                down_bytes_per_s: f64::INFINITY,
            },
            wire: WireCost {
                up_fixed_bytes: 64.0,
                up_per_token_bytes: 4.0,
                down_bytes: 32.0,
            },
        };
        for k in 1..8 {
            let via_network = m.cloud_only_tpot_s() / m.speculative_tpot_s(k);
            assert!(
                close(via_network, speedup_without_network(0.7, k, 0.05)),
                "k={k}"
            );
        }
    }

    /// The setting of arXiv 2505.21594: drafting 288 ms for γ=4, verification 620 ms,
    /// communication 120 ms. Cloud decoding of a 7B model on an A100 at ~25 ms/token is
    /// far faster than a 1 s round, so speculation at that distance must lose, and the
    /// break-even RTT must say so.
    #[test]
    fn paper_setting_round_time_and_window() {
        let m = SystemModel {
            alpha: 0.8,
            draft_token_s: 0.072,
            target_token_s: 0.025,
            verify: VerifyCost {
                fixed_s: 0.620,
                per_token_s: 0.0,
            },
            link: Link {
                rtt_s: 0.120,
                up_bytes_per_s: f64::INFINITY,
                down_bytes_per_s: f64::INFINITY,
            },
            wire: WireCost {
                up_fixed_bytes: 0.0,
                up_per_token_bytes: 0.0,
                down_bytes: 0.0,
            },
        };
        assert!(close(m.sync_round_s(4), 0.288 + 0.120 + 0.620));
        assert!(!m.beats_cloud_only(4));
        assert!(m.break_even_rtt_s(4) < 0.0);
        // Pipelining can only help: it never takes longer than the synchronous round.
        for k in 1..8 {
            assert!(m.pipelined_round_s(k, 0.5) <= m.sync_round_s(k) + 1e-12);
            assert!(close(m.pipelined_round_s(k, 0.0), m.sync_round_s(k)));
        }
    }

    #[test]
    fn break_even_rtt_is_where_the_decision_flips() {
        let mut m = SystemModel {
            alpha: 0.8,
            draft_token_s: 0.005,
            target_token_s: 0.050,
            verify: VerifyCost {
                fixed_s: 0.050,
                per_token_s: 0.001,
            },
            link: Link {
                rtt_s: 0.0,
                up_bytes_per_s: 1e6,
                down_bytes_per_s: 1e6,
            },
            wire: WireCost {
                up_fixed_bytes: 100.0,
                up_per_token_bytes: 4.0,
                down_bytes: 50.0,
            },
        };
        let rtt = m.break_even_rtt_s(4);
        assert!(rtt > 0.0);
        m.link.rtt_s = rtt * 0.99;
        assert!(m.beats_cloud_only(4));
        m.link.rtt_s = rtt * 1.01;
        assert!(!m.beats_cloud_only(4));
    }

    #[test]
    fn best_k_grows_with_acceptance() {
        let base = SystemModel {
            alpha: 0.3,
            draft_token_s: 0.004,
            target_token_s: 0.030,
            verify: VerifyCost {
                fixed_s: 0.030,
                per_token_s: 0.0005,
            },
            link: Link {
                rtt_s: 0.020,
                up_bytes_per_s: f64::INFINITY,
                down_bytes_per_s: f64::INFINITY,
            },
            wire: WireCost {
                up_fixed_bytes: 0.0,
                up_per_token_bytes: 0.0,
                down_bytes: 0.0,
            },
        };
        let low = base.best_k(16).0;
        let high = SystemModel { alpha: 0.9, ..base }.best_k(16).0;
        assert!(high > low, "best k at α=0.9 is {high}, at α=0.3 {low}");
        // best_k really is the minimum over the range.
        let (k, t) = base.best_k(16);
        assert!((1..=16).all(|j| base.speculative_tpot_s(j) >= t));
        assert!(k >= 1);
    }
}
