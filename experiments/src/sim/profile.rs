//! A pass-time profile fitted from a real run: the simulation then times its passes
//! as the measured verifier did (on a GPU, say), at any scale.
//!
//! Each pass of the run appears in `rounds.parquet` once per session in it, with its
//! `forward_ns`, `batch_size` (sessions) and `batch_tokens`; the fit takes each pass
//! once and solves, by least squares,
//!
//! ```text
//! forward_ms ≈ pass_ms + per_session_ms · sessions + per_token_ms · tokens
//!              + verify_extra_ms · [the pass verified a draft block]
//! ```
//!
//! A term the run cannot tell apart (one session count throughout, or no verification
//! pass) is left out (0), and so is a term that comes out negative (noise; the fixed
//! time last, once every other term is ≥ 0), so every fitted time is ≥ 0.

use std::collections::BTreeMap;

use tandem_protocol::LinkProfile;

use tandem_draft::RoundKind;

use crate::results::RoundRow;

/// The fitted pass times, and how well they fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    /// Fixed time of any pass, ms.
    pub pass_ms: f64,
    /// Extra time of a pass that verifies a draft block, ms.
    pub verify_extra_ms: f64,
    /// Time per session in a pass, ms.
    pub per_session_ms: f64,
    /// Time per token in a pass, ms.
    pub per_token_ms: f64,
    /// The edge's drafting time per token of a block it sent to verify, ms (none if
    /// the run drafted no block).
    pub draft_ms_per_token: Option<f64>,
    /// The edge's time per token decoding alone (edge-only rounds), ms (none if the
    /// run had none).
    pub edge_ms_per_token: Option<f64>,
    /// Distinct passes fitted.
    pub passes: usize,
    /// Share of the passes' time variance the fit explains (1: all).
    pub r2: f64,
}

impl std::fmt::Display for Fit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.4} ms + {:.4} ms × sessions + {:.4} ms × tokens (+ {:.4} ms when verifying), from {} passes, R² = {:.3}",
            self.pass_ms,
            self.per_session_ms,
            self.per_token_ms,
            self.verify_extra_ms,
            self.passes,
            self.r2
        )?;
        if let Some(d) = self.draft_ms_per_token {
            write!(f, "; drafting {d:.4} ms a token")?;
        }
        if let Some(d) = self.edge_ms_per_token {
            write!(f, "; decoding alone {d:.4} ms a token")?;
        }
        Ok(())
    }
}

/// One pass: sessions, tokens, verifies, forward ms.
type Pass = (f64, f64, f64, f64);

/// The run's passes, each once: rows of one pass share the cell, the time and the
/// batch; it verified if any of its rows is a verified draft block.
fn passes(rounds: &[RoundRow]) -> Vec<Pass> {
    let mut by: BTreeMap<(u32, u32, u64, u32, u32), bool> = BTreeMap::new();
    // A paced pass took its forward plus the time held: the profiled machine's time.
    for r in rounds
        .iter()
        .filter(|r| r.record.batch_size > 0 && r.record.forward_ns > 0)
    {
        let key = (
            r.key.cell,
            r.key.repetition,
            r.record.forward_ns + r.record.paced_ns,
            r.record.batch_size,
            r.record.batch_tokens,
        );
        *by.entry(key).or_default() |= r.record.kind == RoundKind::Verified && r.record.drafted > 0;
    }
    by.into_iter()
        .map(|((_, _, ns, s, t), v)| {
            (
                f64::from(s),
                f64::from(t),
                f64::from(u8::from(v)),
                ns as f64 / 1e6,
            )
        })
        .collect()
}

/// Drafting time per token, ms: of blocks sent to verify (`alone` false) or of the edge
/// decoding alone (`alone` true; such a round drafts the tokens it commits). Each
/// request's own time per token, then the median over requests: a request's time is
/// the mean of its steps, and the median keeps a preempted step on a shared machine
/// from setting the pace of every simulated one.
pub fn draft_step(rounds: &[RoundRow], alone: bool) -> Option<f64> {
    let mut by: BTreeMap<(u32, u32, u32), (u64, u64)> = BTreeMap::new();
    for r in rounds
        .iter()
        .filter(|r| (r.record.kind == RoundKind::Edge) == alone)
    {
        let n = if alone {
            r.record.committed
        } else {
            r.record.drafted
        };
        if r.record.draft_ns > 0 && n > 0 {
            let e = by
                .entry((r.key.cell, r.key.repetition, r.request))
                .or_default();
            e.0 += r.record.draft_ns;
            e.1 += u64::from(n);
        }
    }
    let mut per: Vec<f64> = by
        .values()
        .map(|&(ns, n)| ns as f64 / n as f64 / 1e6)
        .collect();
    per.sort_by(f64::total_cmp);
    (!per.is_empty()).then(|| crate::summary::quantile(&per, 0.5))
}

/// Fits the profile to a run's rounds.
pub fn fit(rounds: &[RoundRow]) -> Result<Fit, String> {
    let passes = passes(rounds);
    if passes.len() < 2 {
        return Err(format!(
            "{} timed passes: a profile needs at least 2 (a run against a verifier, not a simulation or edge_only)",
            passes.len()
        ));
    }
    let feature = |p: &Pass, j: usize| match j {
        0 => 1.0,
        1 => p.0,
        2 => p.1,
        _ => p.2,
    };
    // Terms that vary in this run, after the intercept.
    let mut active: Vec<usize> = (1..4)
        .filter(|&j| {
            let first = feature(&passes[0], j);
            passes.iter().any(|p| feature(p, j) != first)
        })
        .collect();
    active.insert(0, 0);
    loop {
        let coef = match least_squares(&passes, &active, feature) {
            Ok(c) => c,
            Err(i) if active[i] == 0 || active.len() == 1 => {
                return Err("the passes' times cannot be fitted".into());
            }
            Err(i) => {
                active.remove(i);
                continue;
            }
        };
        // Drop the most negative slope and fit again; once every slope is ≥ 0, a
        // negative fixed time too (clamping it to 0 instead would leave the slopes
        // fitted to a line that no longer holds).
        let intercept = usize::from(active[0] == 0);
        let worst = coef
            .iter()
            .enumerate()
            .skip(intercept)
            .filter(|(_, c)| **c < 0.0)
            .min_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| i)
            .or((intercept == 1 && coef[0] < 0.0 && active.len() > 1).then_some(0));
        if let Some(i) = worst {
            active.remove(i);
            continue;
        }
        let mut all = [0.0; 4];
        for (&j, &c) in active.iter().zip(&coef) {
            all[j] = c;
        }
        all[0] = all[0].max(0.0);
        let predict = |p: &Pass| (0..4).map(|j| all[j] * feature(p, j)).sum::<f64>();
        let mean = passes.iter().map(|p| p.3).sum::<f64>() / passes.len() as f64;
        let total: f64 = passes.iter().map(|p| (p.3 - mean).powi(2)).sum();
        let resid: f64 = passes.iter().map(|p| (p.3 - predict(p)).powi(2)).sum();
        return Ok(Fit {
            pass_ms: all[0],
            per_session_ms: all[1],
            per_token_ms: all[2],
            verify_extra_ms: all[3],
            draft_ms_per_token: draft_step(rounds, false),
            edge_ms_per_token: draft_step(rounds, true),
            passes: passes.len(),
            r2: if total > 0.0 {
                1.0 - resid / total
            } else {
                1.0
            },
        });
    }
}

/// Least-squares coefficients of the `active` features (normal equations, Gauss-Jordan
/// elimination with partial pivoting), or the position of a feature that the others
/// already explain (to be left out).
fn least_squares(
    passes: &[Pass],
    active: &[usize],
    feature: impl Fn(&Pass, usize) -> f64,
) -> Result<Vec<f64>, usize> {
    let n = active.len();
    let mut a = vec![vec![0.0; n + 1]; n];
    for p in passes {
        for (r, &i) in active.iter().enumerate() {
            let xi = feature(p, i);
            for (c, &j) in active.iter().enumerate() {
                a[r][c] += xi * feature(p, j);
            }
            a[r][n] += xi * p.3;
        }
    }
    let scale = (0..n)
        .map(|i| a[i][i].abs())
        .fold(0.0, f64::max)
        .max(1e-300);
    for col in 0..n {
        let pivot = (col..n)
            .max_by(|&x, &y| a[x][col].abs().total_cmp(&a[y][col].abs()))
            .expect("rows left");
        if a[pivot][col].abs() < 1e-12 * scale {
            return Err(col);
        }
        a.swap(col, pivot);
        let row = a[col].clone();
        for (r, other) in a.iter_mut().enumerate() {
            if r != col {
                let f = other[col] / row[col];
                for (x, y) in other.iter_mut().zip(&row).skip(col) {
                    *x -= f * y;
                }
            }
        }
    }
    Ok((0..n).map(|i| a[i][n] / a[i][i]).collect())
}

/// The link model's expected time for a round's block to go up and its verdict to come
/// down, ms: both one-way delays and both messages' serialisation (jitter averages
/// out; loss is left to the median).
fn expected_link_ms(link: &LinkProfile, r: &RoundRow) -> f64 {
    let serialise = |bytes: u64, mbps: f64| {
        if mbps > 0.0 {
            bytes as f64 * 8.0 / (mbps * 1e3)
        } else {
            0.0
        }
    };
    2.0 * link.one_way_ms
        + serialise(r.record.bytes_up, link.up_mbps)
        + serialise(r.record.bytes_down, link.down_mbps)
}

/// Software time per message, each way, ms, and the rounds it was taken from: half the
/// median of what verified rounds spent "on the network" beyond the link model. Only
/// rounds with one message each way count (no block drafted ahead, no provisional
/// verdict).
pub fn transport(rounds: &[RoundRow], config: &crate::config::Config) -> (f64, usize) {
    let links: BTreeMap<String, LinkProfile> = crate::plan::cells(config)
        .into_iter()
        .map(|c| (c.network, c.link))
        .collect();
    let mut extra: Vec<f64> = rounds
        .iter()
        .filter(|r| {
            r.record.kind == RoundKind::Verified
                && r.record.drafted > 0
                && !r.record.ahead
                && r.record.provisional_ns == 0
        })
        .filter_map(|r| {
            let link = links.get(&r.key.network)?;
            Some(r.record.network_ns as f64 / 1e6 - expected_link_ms(link, r))
        })
        .collect();
    extra.sort_by(f64::total_cmp);
    let median = crate::summary::quantile(&extra, 0.5);
    let ms = if median.is_finite() {
        (median / 2.0).max(0.0)
    } else {
        0.0
    };
    (ms, extra.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_decoding::SessionRng;

    /// Rows of passes timed by a known profile, ±1 % noise, several rows per pass.
    fn run(verify_extra: f64, sessions: &[u32], block: u32) -> Vec<RoundRow> {
        let mut rng = SessionRng::new(3);
        let mut rows = Vec::new();
        for (i, &s) in sessions.iter().cycle().take(400).enumerate() {
            let verifies = i % 2 == 0;
            let t = if verifies { s * block } else { s };
            let ms = 25.0
                + 5.0 * f64::from(s)
                + 0.2 * f64::from(t)
                + if verifies { verify_extra } else { 0.0 };
            let ms = ms * (1.0 + 0.02 * (rng.uniform() - 0.5));
            for _ in 0..s.min(3) {
                rows.push(RoundRow {
                    record: tandem_draft::RoundRecord {
                        kind: if verifies {
                            RoundKind::Verified
                        } else {
                            RoundKind::Cloud
                        },
                        drafted: if verifies { block - 1 } else { 0 },
                        forward_ns: (ms * 1e6) as u64 + i as u64, // distinct passes
                        batch_size: s,
                        batch_tokens: t,
                        ..Default::default()
                    },
                    ..Default::default()
                });
            }
        }
        rows
    }

    #[test]
    fn recovers_a_known_profile() {
        let f = fit(&run(595.0, &[1, 2, 4, 8, 16, 32, 64], 5)).unwrap();
        assert_eq!(f.passes, 400);
        let close = |got: f64, want: f64, tol: f64| (got - want).abs() <= tol;
        assert!(close(f.pass_ms, 25.0, 2.0), "{f}");
        assert!(close(f.per_session_ms, 5.0, 0.2), "{f}");
        assert!(close(f.per_token_ms, 0.2, 0.05), "{f}");
        assert!(close(f.verify_extra_ms, 595.0, 3.0), "{f}");
        assert!(f.r2 > 0.99, "{f}");
    }

    #[test]
    fn terms_the_run_cannot_tell_apart_are_left_out() {
        // One session throughout: the per-session time is part of the fixed time.
        let f = fit(&run(0.0, &[1], 5)).unwrap();
        assert_eq!(f.per_session_ms, 0.0, "{f}");
        assert!(f.pass_ms > 25.0 && f.pass_ms < 31.0, "{f}");
        assert!(f.pass_ms >= 0.0 && f.per_token_ms >= 0.0 && f.verify_extra_ms >= 0.0);
        // Passes whose fixed time fits below zero (verifying costs more per token than
        // a prefill; here 7 ms a token verifying, 5 ms prefilling): left out, and the
        // slopes fitted again through the origin rather than kept beside a clamped 0.
        let mut rows = Vec::new();
        for i in 0..200u32 {
            let verifies = i % 4 != 0;
            let tokens = if verifies { 3 + i % 13 } else { 40 };
            let ms = if verifies { 7.0 } else { 5.0 } * f64::from(tokens);
            rows.push(RoundRow {
                record: tandem_draft::RoundRecord {
                    kind: RoundKind::Verified,
                    drafted: u32::from(verifies) * (tokens - 1),
                    forward_ns: (ms * 1e6) as u64 + u64::from(i),
                    batch_size: 1,
                    batch_tokens: tokens,
                    ..Default::default()
                },
                ..Default::default()
            });
        }
        let f = fit(&rows).unwrap();
        assert_eq!(f.pass_ms, 0.0, "{f}");
        assert!(f.r2 > 0.9, "{f}");
        let predicted = |tokens: f64, v: f64| f.per_token_ms * tokens + f.verify_extra_ms * v;
        assert!((predicted(40.0, 0.0) - 200.0).abs() < 20.0, "{f}");
        assert!((predicted(15.0, 1.0) - 105.0).abs() < 15.0, "{f}");
        // No verifier at all: refused, and says why.
        let e = fit(&[]).unwrap_err();
        assert!(e.contains("0 timed passes"), "{e}");
    }
}
