//! The simulator fitted to a real run's own records: everything a simulated cell needs
//! that the run measured, for the cells of one link (acceptance, a property of the
//! models and the prompts, is fitted over the whole run: `crate::sim::acceptance_by_prompt`).
//!
//! | simulator input | taken from the link's rounds |
//! |---|---|
//! | pass time (fixed, per session, per token, verifying) | each pass's `forward_ns` ([`fit`]) |
//! | draft step, edge-alone step | `draft_ns` per drafted token, of blocks and of edge rounds |
//! | transport (software time per message, each way) | median over verified rounds of `network_ns` less the link model's expected round trip for their bytes, halved |
//! | prompt length | the requests' mean |
//! | token trees: acceptance of a row's later candidates | the run's rank-1 and rank-2+ counts (`crate::sim::sibling_acceptance`), set by the caller |
//! | the verifier's batch limits and gathering window | the real verifier's defaults |
//!
//! Rounds of cells with a `[[device]]` are left out of the draft steps: their draft
//! time includes the device's pace, which the simulation adds itself.
//!
//! Each cell then drafts at its own measured step where it drafted ([`per_cell`]): in a
//! real run on one machine every client's draft shares the processor with the others
//! and with the verifier (the committed clients sweep: 0.13 ms a token with 2 clients,
//! 0.54 ms with 16), which an edge device of its own would not.

use std::collections::BTreeMap;

use crate::config::{Config, SimSpec};
use crate::results::{RequestRow, RoundRow};
use crate::sim::{Fit, draft_step, fit, transport};

/// The fitted simulation of a run's cells on one link.
#[derive(Debug, Clone)]
pub struct Fitted {
    /// The simulated backend, its acceptance trace the run's own `rounds.parquet`.
    pub spec: SimSpec,
    /// The pass-time fit.
    pub fit: Fit,
    /// Verified rounds the transport time was taken from.
    pub transport_rounds: usize,
    /// Token trees: rank-1 candidates the run's `sibling_acceptance` was measured on
    /// (0: the run drafted no trees with more than one candidate in a row).
    pub siblings_tested: u64,
}

/// Fits the simulator to `config`'s run on one link, recorded as `requests` and
/// `rounds` (of that link's cells).
pub fn fit_link(
    config: &Config,
    requests: &[RequestRow],
    rounds: &[RoundRow],
) -> Result<Fitted, String> {
    let fit = fit(rounds)?;
    let bare: Vec<RoundRow> = rounds
        .iter()
        .filter(|r| r.key.device.is_empty())
        .cloned()
        .collect();
    let (draft, edge) = (draft_step(&bare, false), draft_step(&bare, true));
    let Some(draft_ms) = draft.or(edge) else {
        return Err(
            "no cell without a [[device]] drafted: nothing to time the draft step from".into(),
        );
    };
    let (transport_ms, transport_rounds) = transport(rounds, config);
    let ok: Vec<&RequestRow> = requests.iter().filter(|r| r.error.is_empty()).collect();
    let prompt_tokens = (ok.iter().map(|r| f64::from(r.prompt_tokens)).sum::<f64>()
        / ok.len().max(1) as f64)
        .round()
        .max(1.0) as usize;
    let policy = tandem_verifier::BatchPolicy::default();
    let spec = SimSpec {
        acceptance: None,
        acceptance_trace: Some("rounds.parquet".into()),
        sibling_acceptance: Vec::new(),
        draft_ms_per_token: Some(draft_ms),
        edge_ms_per_token: edge,
        transport_ms,
        pass_ms: Some(fit.pass_ms),
        verify_extra_ms: Some(fit.verify_extra_ms),
        per_session_ms: Some(fit.per_session_ms),
        per_token_ms: Some(fit.per_token_ms),
        profile_trace: None,
        draft_context: None,
        draft_kv_kib_per_token: None,
        prompt_tokens,
        max_batch_sessions: policy.max_sessions,
        max_batch_tokens: policy.max_tokens,
        outages: Vec::new(),
        gather_ms: policy.max_wait.as_secs_f64() * 1e3,
        early_exit_at: None,
        early_exit_agreement: None,
    };
    Ok(Fitted {
        spec,
        fit,
        transport_rounds,
        siblings_tested: 0,
    })
}

/// The link's spec for each of its cells (by grid index), with the draft and
/// edge-alone steps the cell itself measured where it has them (a cell with a
/// `[[device]]` keeps the link's: its measured step includes the device's pace).
pub fn per_cell(link: &SimSpec, rounds: &[RoundRow]) -> BTreeMap<u32, SimSpec> {
    let mut by_cell: BTreeMap<u32, Vec<RoundRow>> = BTreeMap::new();
    for r in rounds.iter().filter(|r| r.key.device.is_empty()) {
        by_cell.entry(r.key.cell).or_default().push(r.clone());
    }
    by_cell
        .into_iter()
        .map(|(cell, own)| {
            let mut spec = link.clone();
            if let Some(ms) = draft_step(&own, false) {
                spec.draft_ms_per_token = Some(ms);
            }
            if let Some(ms) = draft_step(&own, true) {
                spec.edge_ms_per_token = Some(ms);
            }
            (cell, spec)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tandem_draft::{RoundKind, RoundRecord};

    use super::*;
    use crate::results::CellKey;

    fn block(cell: u32, device: &str, draft_ms: u64) -> RoundRow {
        RoundRow {
            key: Arc::new(CellKey {
                cell,
                device: device.into(),
                ..Default::default()
            }),
            request: 0,
            record: RoundRecord {
                kind: RoundKind::Verified,
                drafted: 4,
                accepted: 2,
                committed: 3,
                draft_ns: draft_ms * 4_000_000,
                ..Default::default()
            },
        }
    }

    #[test]
    fn each_cell_drafts_at_its_own_step_but_a_device_cell_at_the_links() {
        let link: SimSpec = toml::from_str("acceptance = 0.8\ndraft_ms_per_token = 1.0").unwrap();
        let rounds = [block(0, "", 2), block(1, "", 5), block(2, "phone", 9)];
        let cells = per_cell(&link, &rounds);
        assert_eq!(cells[&0].draft_ms_per_token, Some(2.0));
        assert_eq!(cells[&1].draft_ms_per_token, Some(5.0));
        assert!(
            !cells.contains_key(&2),
            "a device cell keeps the link's fit"
        );
    }
}
