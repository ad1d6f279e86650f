//! Calibrating the simulation from recorded runs: acceptance by position and pass
//! times read from a real run's `rounds.parquet`.

use tandem_draft::RoundKind;

use crate::config::SimSpec;

use super::profile::{Fit, fit};

/// Positions a block may have (the protocol's largest block).
pub const MAX_POSITIONS: usize = 32;

/// Per-position acceptance probabilities from verified rounds: of the blocks that
/// drafted position `i` and accepted every position before it, the share that accepted
/// position `i` too. Positions no block reached take the last estimate.
pub fn acceptance_by_position(rounds: &[crate::results::RoundRow]) -> Vec<f64> {
    let (mut reached, mut accepted) = ([0u64; MAX_POSITIONS], [0u64; MAX_POSITIONS]);
    for r in rounds
        .iter()
        .filter(|r| r.record.kind == RoundKind::Verified && r.record.drafted > 0)
    {
        for i in 0..(r.record.drafted as usize).min(MAX_POSITIONS) {
            if r.record.accepted as usize >= i {
                reached[i] += 1;
                accepted[i] += u64::from(r.record.accepted as usize > i);
            }
        }
    }
    let mut p = Vec::with_capacity(MAX_POSITIONS);
    let mut last = 0.0;
    for i in 0..MAX_POSITIONS {
        if reached[i] > 0 {
            last = accepted[i] as f64 / reached[i] as f64;
        }
        p.push(last);
    }
    p
}

impl SimSpec {
    /// The acceptance probability of each position: the constant, or the trace's
    /// (read from `base`/`acceptance_trace`).
    pub fn acceptance_curve(&self, base: &std::path::Path) -> Result<Vec<f64>, String> {
        if let Some(a) = self.acceptance {
            return Ok(vec![a; MAX_POSITIONS]);
        }
        let file = self.acceptance_trace.as_deref().unwrap_or_default();
        let (path, rounds) = read_rounds(base, "acceptance_trace", file)?;
        if !rounds
            .iter()
            .any(|r| r.record.kind == RoundKind::Verified && r.record.drafted > 0)
        {
            return Err(format!(
                "acceptance_trace {}: no verified draft blocks to learn from",
                path.display()
            ));
        }
        Ok(acceptance_by_position(&rounds))
    }
}

/// The rounds of a Tandem `rounds.parquet` at `base/file`; errors name `key`.
fn read_rounds(
    base: &std::path::Path,
    key: &str,
    file: &str,
) -> Result<(std::path::PathBuf, Vec<crate::results::RoundRow>), String> {
    let path = base.join(file);
    let df = crate::results::read_parquet(&path)
        .map_err(|e| format!("{key} {}: {e}", path.display()))?;
    let rounds = crate::results::read::rounds(&df)
        .map_err(|e| format!("{key} {}: not a Tandem rounds table: {e}", path.display()))?;
    Ok((path, rounds))
}

impl SimSpec {
    /// This spec with its pass times fitted from `profile_trace` (read from
    /// `base`), and the fit; unchanged (and no fit) without a trace.
    pub fn resolve(&self, base: &std::path::Path) -> Result<(SimSpec, Option<Fit>), String> {
        let mut spec = self.clone();
        if spec.early_exit_at.is_some() && spec.early_exit_agreement.is_none() {
            spec.early_exit_agreement = Some(self.traced_agreement(base)?);
        }
        let Some(file) = &self.profile_trace else {
            return Ok((spec, None));
        };
        let (path, rounds) = read_rounds(base, "profile_trace", file)?;
        let fit = fit(&rounds).map_err(|e| format!("profile_trace {}: {e}", path.display()))?;
        let draft = match (self.draft_ms_per_token, fit.draft_ms_per_token) {
            (Some(given), _) => given,
            (None, Some(traced)) => traced,
            (None, None) => {
                return Err(format!(
                    "profile_trace {}: the run drafted nothing to time the draft step from; give draft_ms_per_token",
                    path.display()
                ));
            }
        };
        let spec = SimSpec {
            draft_ms_per_token: Some(draft),
            pass_ms: Some(fit.pass_ms),
            verify_extra_ms: Some(fit.verify_extra_ms),
            per_session_ms: Some(fit.per_session_ms),
            per_token_ms: Some(fit.per_token_ms),
            profile_trace: None,
            ..spec
        };
        Ok((spec, Some(fit)))
    }

    /// The share of provisional verdicts the final verdict agreed with in
    /// `acceptance_trace`'s run.
    fn traced_agreement(&self, base: &std::path::Path) -> Result<f64, String> {
        let file = self.acceptance_trace.as_deref().unwrap_or_default();
        let (path, rounds) = read_rounds(base, "acceptance_trace", file)?;
        let heard: Vec<bool> = rounds
            .iter()
            .filter(|r| r.record.kind == RoundKind::Verified && r.record.provisional_ns > 0)
            .map(|r| r.record.provisional_agreed)
            .collect();
        if heard.is_empty() {
            return Err(format!(
                "acceptance_trace {}: no round heard a provisional verdict (run strategy early_exit against a verifier with early exits), so early_exit_agreement must be given",
                path.display()
            ));
        }
        Ok(heard.iter().filter(|&&a| a).count() as f64 / heard.len() as f64)
    }
}
