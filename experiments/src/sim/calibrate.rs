//! Calibrating the simulation from recorded runs: acceptance by position and pass
//! times read from a real run's `rounds.parquet`.

use tandem_draft::RoundKind;

use crate::config::SimSpec;

use super::profile::{Fit, fit};

/// Positions a block may have (the protocol's largest block).
pub const MAX_POSITIONS: usize = 32;

/// Blocks that reached each position, and of those the ones accepted there.
type Counts = ([u64; MAX_POSITIONS], [u64; MAX_POSITIONS]);

/// Whether a round verified a chain block: its accepted length is a prefix of what it
/// drafted (a tree's is a path through it, and its `drafted` counts every node).
fn verified_chain(r: &crate::results::RoundRow) -> bool {
    r.record.kind == RoundKind::Verified && r.record.drafted > 0 && r.record.tree_depth == 0
}

/// Counts, over verified chain blocks, how many reached each position (accepted every
/// position before it) and how many of those were accepted there too.
fn count<'a>(rounds: impl Iterator<Item = &'a crate::results::RoundRow>) -> Counts {
    let (mut reached, mut accepted) = ([0u64; MAX_POSITIONS], [0u64; MAX_POSITIONS]);
    for r in rounds.filter(|r| verified_chain(r)) {
        for i in 0..(r.record.drafted as usize).min(MAX_POSITIONS) {
            if r.record.accepted as usize >= i {
                reached[i] += 1;
                accepted[i] += u64::from(r.record.accepted as usize > i);
            }
        }
    }
    (reached, accepted)
}

/// Per-position acceptance probabilities from verified rounds: of the chain blocks
/// that drafted position `i` and accepted every position before it, the share that
/// accepted position `i` too. Positions no block reached take the last estimate. A run
/// that drafted only trees gives every position its first choices' acceptance (a
/// row's rank-0 candidate is the draft's chain token there), pooled over depths.
pub fn acceptance_by_position(rounds: &[crate::results::RoundRow]) -> Vec<f64> {
    let (reached, accepted) = count(rounds.iter());
    if reached[0] == 0 {
        let [first, ..] = crate::results::rank_totals(rounds);
        if first.0 > 0 {
            return vec![first.1 as f64 / first.0 as f64; MAX_POSITIONS];
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

/// The acceptance of a tree row's later candidates given the earlier ones missed —
/// rank 1, then ranks 2 and later pooled — over a run's verified rounds: the
/// simulator's `sibling_acceptance`, and the rank-1 candidates it was measured on.
/// Stops at the first rank never tested (empty for a run of chains).
pub fn sibling_acceptance(rounds: &[crate::results::RoundRow]) -> (Vec<f64>, u64) {
    let [_, rank1, rank2] = crate::results::rank_totals(rounds);
    let a = [rank1, rank2]
        .iter()
        .take_while(|(tested, _)| *tested > 0)
        .map(|&(tested, accepted)| accepted as f64 / tested as f64)
        .collect();
    (a, rank1.0)
}

/// Pseudo-blocks of the run's overall curve added to each prompt's own counts, so a
/// position a prompt's blocks rarely reached stays near the overall estimate.
const PRIOR_BLOCKS: f64 = 4.0;

/// Per-prompt acceptance curves (index: the prompt's place in the set): how well the
/// draft guesses depends on the text (a list continues itself, a story does not), and
/// with few requests a cell's median follows its prompts, not the average. Each
/// position's estimate is the prompt's own counts plus [`PRIOR_BLOCKS`] blocks at the
/// overall rate.
pub fn acceptance_by_prompt(
    rounds: &[crate::results::RoundRow],
    requests: &[crate::results::RequestRow],
) -> Vec<Vec<f64>> {
    let overall = acceptance_by_position(rounds);
    let prompt_of: std::collections::BTreeMap<(u32, u32, u32), u32> = requests
        .iter()
        .map(|r| ((r.cell, r.repetition, r.request), r.prompt_index))
        .collect();
    let prompts = requests
        .iter()
        .map(|r| r.prompt_index + 1)
        .max()
        .unwrap_or(0);
    (0..prompts)
        .map(|p| {
            let (reached, accepted) =
                count(rounds.iter().filter(|r| {
                    prompt_of.get(&(r.key.cell, r.key.repetition, r.request)) == Some(&p)
                }));
            (0..MAX_POSITIONS)
                .map(|i| {
                    (accepted[i] as f64 + PRIOR_BLOCKS * overall[i])
                        / (reached[i] as f64 + PRIOR_BLOCKS)
                })
                .collect()
        })
        .collect()
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
        let traced = fit.draft_ms_per_token.or(fit.edge_ms_per_token);
        let draft = match (self.draft_ms_per_token, traced) {
            (Some(given), _) => given,
            (None, Some(traced)) => traced,
            (None, None) => {
                return Err(format!(
                    "profile_trace {}: the run drafted nothing to time the draft step from; give draft_ms_per_token",
                    path.display()
                ));
            }
        };
        let transport_ms = match self.transport_ms {
            0.0 => traced_transport(&path, &rounds),
            given => given,
        };
        let spec = SimSpec {
            transport_ms,
            draft_ms_per_token: Some(draft),
            edge_ms_per_token: self.edge_ms_per_token.or(fit.edge_ms_per_token),
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

/// The traced run's software time per message (`super::transport`), its links read
/// from the `config.toml` beside its `rounds.parquet`; 0 when that config cannot be
/// read (a trace from elsewhere: give `transport_ms`).
fn traced_transport(path: &std::path::Path, rounds: &[crate::results::RoundRow]) -> f64 {
    let beside = path.with_file_name("config.toml");
    let Ok(text) = std::fs::read_to_string(&beside) else {
        return 0.0;
    };
    let Ok(config) = crate::config::Config::parse(&text, &beside) else {
        return 0.0;
    };
    super::transport(rounds, &config).0
}

impl crate::config::CloudPace {
    /// The pace this profile gives the verifier, its pass times fitted from
    /// `profile_trace` (read from `base`) if it names one, and this profile with the
    /// fitted numbers written in.
    pub fn resolve(
        &self,
        base: &std::path::Path,
    ) -> Result<(tandem_verifier::PassPace, crate::config::CloudPace), String> {
        let mut given = self.clone();
        if let Some(file) = &self.profile_trace {
            let (path, rounds) = read_rounds(base, "cloud.profile_trace", file)?;
            let f =
                fit(&rounds).map_err(|e| format!("cloud.profile_trace {}: {e}", path.display()))?;
            given = crate::config::CloudPace {
                pass_ms: Some(f.pass_ms),
                per_session_ms: Some(f.per_session_ms),
                per_token_ms: Some(f.per_token_ms),
                verify_extra_ms: Some(f.verify_extra_ms),
                profile_trace: None,
                source: format!("fitted from {file}: {f}"),
                ..self.clone()
            };
        }
        let pace = tandem_verifier::PassPace {
            pass_ms: given.pass_ms.unwrap_or(0.0),
            per_session_ms: given.per_session_ms.unwrap_or(0.0),
            per_token_ms: given.per_token_ms.unwrap_or(0.0),
            verify_extra_ms: given.verify_extra_ms.unwrap_or(0.0),
        };
        Ok((pace, given))
    }
}

#[cfg(test)]
mod tests {
    use tandem_decoding::analytic::tree::RankCount;
    use tandem_draft::RoundRecord;

    use super::*;
    use crate::results::RoundRow;

    fn verified(drafted: u32, accepted: u32, tree_depth: u16, ranks: [(u32, u32); 3]) -> RoundRow {
        let count = |(tested, accepted)| RankCount { tested, accepted };
        RoundRow {
            key: Default::default(),
            request: 0,
            record: RoundRecord {
                kind: RoundKind::Verified,
                drafted,
                accepted,
                tree_depth,
                ..Default::default()
            }
            .with_ranks(ranks.map(count)),
        }
    }

    /// A chain of 4 accepting 2 (rank 0: 3 tested, 2 accepted).
    fn chain() -> RoundRow {
        verified(4, 2, 0, [(3, 2), (0, 0), (0, 0)])
    }

    /// A 3,2,1,1 tree (21 nodes) whose path is 3 rows long, through second choices.
    fn tree() -> RoundRow {
        verified(21, 3, 4, [(4, 1), (3, 2), (1, 0)])
    }

    #[test]
    fn a_trees_accepted_path_is_not_read_as_a_chains_prefix() {
        let chains = acceptance_by_position(&[chain(), chain()]);
        let mixed = acceptance_by_position(&[chain(), tree(), chain(), tree()]);
        assert_eq!(chains, mixed);
        assert_eq!(&chains[..4], &[1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn a_run_of_trees_alone_takes_its_first_choices_acceptance_at_every_position() {
        let a = acceptance_by_position(&[tree(), tree()]);
        assert!(a.iter().all(|&p| p == 0.25), "{a:?}");
    }

    #[test]
    fn later_siblings_acceptance_is_pooled_by_rank_and_stops_at_an_untested_rank() {
        let (a, tested) = sibling_acceptance(&[chain(), tree(), tree()]);
        assert_eq!(a, vec![2.0 / 3.0, 0.0]);
        assert_eq!(tested, 6);
        let rank1_only = verified(6, 1, 2, [(2, 1), (1, 1), (0, 0)]);
        assert_eq!(sibling_acceptance(&[rank1_only]), (vec![1.0], 1));
        assert_eq!(sibling_acceptance(&[chain()]), (Vec::new(), 0));
    }
}
