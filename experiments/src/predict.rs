//! `tandem predict`: what the analytical model says about a setting, before running it.
//!
//! For each draft length it prints the expected committed tokens per round, the
//! synchronous and pipelined round and per-token times, the speedup over cloud-only
//! decoding and the largest RTT at which speculation still wins, so a researcher can see
//! the window of RTT and acceptance where edge-cloud speculation pays off.

use std::fmt::Write as _;

use tandem_decoding::analytic::{Link, SystemModel, VerifyCost, WireCost, full_accept_probability};

/// Inputs of a prediction, in the units a person types (milliseconds, Mbit/s). These
/// are also the flags of `tandem predict`; the doc comments are its `--help`.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Setting {
    /// Per-token acceptance probability α (mean accepted length 1 + α + … + α^k).
    #[arg(long, default_value_t = 0.8)]
    pub alpha: f64,
    /// Draft lengths to compare, comma-separated.
    #[arg(
        long = "k",
        value_name = "K",
        value_delimiter = ',',
        default_value = "1,2,3,4,6,8"
    )]
    pub ks: Vec<usize>,
    /// Time of one draft step on the edge, ms.
    #[arg(long, default_value_t = 72.0)]
    pub draft_ms: f64,
    /// Time of one plain decoding step of the target in the cloud, ms.
    #[arg(long, default_value_t = 25.0)]
    pub target_ms: f64,
    /// Verification pass, fixed part, ms.
    #[arg(long, default_value_t = 620.0)]
    pub verify_ms: f64,
    /// Verification pass, additional time per verified token, ms.
    #[arg(long, default_value_t = 0.0)]
    pub verify_ms_per_token: f64,
    /// Round-trip time between edge and cloud, ms.
    #[arg(long, default_value_t = 120.0)]
    pub rtt_ms: f64,
    /// Link bandwidth each way, Mbit/s (`inf` for unlimited).
    #[arg(long, default_value_t = f64::INFINITY)]
    pub bandwidth_mbps: f64,
    /// Bytes on the wire per drafted token (4 for an id; add 8 per q entry in
    /// stochastic mode).
    #[arg(long, default_value_t = 4.0)]
    pub bytes_per_token: f64,
    /// Framing bytes per block and per verdict.
    #[arg(long, default_value_t = 32.0)]
    pub bytes_per_message: f64,
}

impl Setting {
    /// Checks every input's domain, naming the flag at fault.
    pub fn validate(&self) -> Result<(), String> {
        let positive = |name: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(format!("--{name} must be a finite number >= 0, got {v}"))
            }
        };
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(format!("--alpha must be in [0, 1], got {}", self.alpha));
        }
        if self.ks.is_empty() || self.ks.contains(&0) {
            return Err("--k needs one or more draft lengths >= 1, e.g. --k 1,2,4,8".into());
        }
        positive("draft-ms", self.draft_ms)?;
        positive("target-ms", self.target_ms)?;
        positive("verify-ms", self.verify_ms)?;
        positive("verify-ms-per-token", self.verify_ms_per_token)?;
        positive("rtt-ms", self.rtt_ms)?;
        positive("bytes-per-token", self.bytes_per_token)?;
        positive("bytes-per-message", self.bytes_per_message)?;
        if self.bandwidth_mbps.is_nan() || self.bandwidth_mbps <= 0.0 {
            return Err(format!(
                "--bandwidth-mbps must be > 0 (inf for unlimited), got {}",
                self.bandwidth_mbps
            ));
        }
        Ok(())
    }

    /// The analytical model in SI units.
    pub fn model(&self) -> SystemModel {
        let bytes_per_s = self.bandwidth_mbps * 1e6 / 8.0;
        SystemModel {
            alpha: self.alpha,
            draft_token_s: self.draft_ms / 1e3,
            target_token_s: self.target_ms / 1e3,
            verify: VerifyCost {
                fixed_s: self.verify_ms / 1e3,
                per_token_s: self.verify_ms_per_token / 1e3,
            },
            link: Link {
                rtt_s: self.rtt_ms / 1e3,
                up_bytes_per_s: bytes_per_s,
                down_bytes_per_s: bytes_per_s,
            },
            wire: WireCost {
                up_fixed_bytes: self.bytes_per_message,
                up_per_token_bytes: self.bytes_per_token,
                down_bytes: self.bytes_per_message,
            },
        }
    }
}

/// One row of the prediction table.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    /// Draft length.
    pub k: usize,
    /// Expected committed tokens per round.
    pub expected_tokens: f64,
    /// Synchronous round time, ms.
    pub round_ms: f64,
    /// Synchronous time per output token, ms.
    pub tpot_ms: f64,
    /// Pipelined time per output token (hit probability α^k), ms.
    pub pipelined_tpot_ms: f64,
    /// Cloud-only time per output token divided by synchronous speculation's.
    pub speedup: f64,
    /// Largest RTT at which synchronous speculation beats cloud-only, ms (negative: never).
    pub break_even_rtt_ms: f64,
}

/// The prediction for every requested `k`.
pub fn rows(setting: &Setting) -> Vec<Row> {
    let m = setting.model();
    setting
        .ks
        .iter()
        .map(|&k| Row {
            k,
            expected_tokens: m.expected_tokens(k),
            round_ms: m.sync_round_s(k) * 1e3,
            tpot_ms: m.speculative_tpot_s(k) * 1e3,
            pipelined_tpot_ms: m.pipelined_tpot_s(k) * 1e3,
            speedup: m.cloud_only_tpot_s() / m.speculative_tpot_s(k),
            break_even_rtt_ms: m.break_even_rtt_s(k) * 1e3,
        })
        .collect()
}

/// The human-readable report printed by `tandem predict`.
pub fn render(setting: &Setting) -> String {
    let m = setting.model();
    let rows = rows(setting);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "α = {:.3}, draft {} ms/token, target {} ms/token, verify {} ms + {} ms/token, RTT {} ms, {} Mbit/s",
        setting.alpha,
        setting.draft_ms,
        setting.target_ms,
        setting.verify_ms,
        setting.verify_ms_per_token,
        setting.rtt_ms,
        setting.bandwidth_mbps
    );
    let _ = writeln!(
        out,
        "cloud-only: {:.2} ms/token (TTFT adds one RTT); edge-only: {:.2} ms/token (draft quality)\n",
        m.cloud_only_tpot_s() * 1e3,
        m.edge_only_tpot_s() * 1e3
    );
    let _ = writeln!(
        out,
        "{:>3}  {:>7}  {:>9}  {:>10}  {:>13}  {:>12}  {:>14}",
        "k", "E[N]", "round ms", "TPOT ms", "pipelined ms", "vs cloud", "wins if RTT <"
    );
    for r in &rows {
        let window = if r.break_even_rtt_ms > 0.0 {
            format!("{:.1} ms", r.break_even_rtt_ms)
        } else {
            "never".into()
        };
        let _ = writeln!(
            out,
            "{:>3}  {:>7.3}  {:>9.2}  {:>10.2}  {:>13.2}  {:>11.2}×  {:>14}",
            r.k, r.expected_tokens, r.round_ms, r.tpot_ms, r.pipelined_tpot_ms, r.speedup, window
        );
    }
    let best = rows
        .iter()
        .min_by(|a, b| a.tpot_ms.total_cmp(&b.tpot_ms))
        .expect("validated: at least one k");
    let verdict = if best.speedup > 1.0 {
        format!(
            "speculative k={} is {:.2}× faster per token than cloud-only here",
            best.k, best.speedup
        )
    } else {
        format!(
            "cloud-only wins here: the best speculative setting (k={}) takes {:.2}× as long per token",
            best.k,
            1.0 / best.speedup
        )
    };
    let p_hit = full_accept_probability(setting.alpha, best.k);
    let _ = writeln!(
        out,
        "\n{verdict}; a pipelined block of {} is fully accepted with probability {p_hit:.2}.",
        best.k
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setting() -> Setting {
        Setting {
            alpha: 0.8,
            ks: vec![1, 2, 4, 8],
            draft_ms: 5.0,
            target_ms: 40.0,
            verify_ms: 45.0,
            verify_ms_per_token: 0.5,
            rtt_ms: 20.0,
            bandwidth_mbps: f64::INFINITY,
            bytes_per_token: 4.0,
            bytes_per_message: 32.0,
        }
    }

    #[test]
    fn rows_agree_with_the_decoding_model_and_the_break_even_flips_the_verdict() {
        let s = setting();
        for r in rows(&s) {
            assert!((r.tpot_ms * r.expected_tokens - r.round_ms).abs() < 1e-9);
            let faster = r.speedup > 1.0;
            assert_eq!(faster, s.rtt_ms < r.break_even_rtt_ms, "k = {}", r.k);
        }
        let text = render(&s);
        assert!(text.contains("faster per token than cloud-only"), "{text}");
        let far = Setting {
            rtt_ms: 400.0,
            ..setting()
        };
        assert!(render(&far).contains("cloud-only wins here"));
    }

    #[test]
    fn validation_names_the_flag() {
        for (bad, flag) in [
            (
                Setting {
                    alpha: 1.2,
                    ..setting()
                },
                "--alpha",
            ),
            (
                Setting {
                    ks: vec![0],
                    ..setting()
                },
                "--k",
            ),
            (
                Setting {
                    rtt_ms: -1.0,
                    ..setting()
                },
                "--rtt-ms",
            ),
            (
                Setting {
                    bandwidth_mbps: 0.0,
                    ..setting()
                },
                "--bandwidth-mbps",
            ),
        ] {
            assert!(bad.validate().unwrap_err().contains(flag), "{flag}");
        }
        assert!(setting().validate().is_ok());
    }
}
