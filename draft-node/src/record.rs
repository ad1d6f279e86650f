//! What a generation produced and how every round went: the rows experiments record
//! and `--json` prints.

use serde::{Deserialize, Serialize};
use tandem_decoding::analytic::tree::RankCount;
pub use tandem_protocol::StopReason;

/// What a round was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RoundKind {
    /// A draft block and the verifier's verdict on it (speculative strategies; also
    /// the first token of a drafting session, which the verifier's prefill gives).
    #[default]
    Verified,
    /// One token the verifier generated alone (cloud-only).
    Cloud,
    /// One token the edge drafted alone and nobody verified (edge-only, or fallback).
    Edge,
    /// A pipelined block drafted ahead and dropped unverified: its guess missed.
    Stale,
}

impl RoundKind {
    /// Its name in records and results (`verified`, `cloud`, `edge`, `stale`).
    pub fn as_str(self) -> &'static str {
        match self {
            RoundKind::Verified => "verified",
            RoundKind::Cloud => "cloud",
            RoundKind::Edge => "edge",
            RoundKind::Stale => "stale",
        }
    }
}

impl std::fmt::Display for RoundKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One round: a draft block and its verdict, one cloud-only token, or one step the
/// edge took alone. Its fields, in this order, are also the round columns of an
/// experiment's `rounds.parquet` (after the cell and request columns).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoundRecord {
    /// 0-based round number.
    pub round: u32,
    /// What the round was.
    pub kind: RoundKind,
    /// Draft length asked for (the policy's `k`).
    pub k: u32,
    /// Pipelined: the block was drafted ahead, while the previous one was in flight.
    pub ahead: bool,
    /// Tokens drafted (a token tree's nodes).
    pub drafted: u32,
    /// Drafted tokens the verifier accepted (a token tree's accepted path).
    pub accepted: u32,
    /// A token tree's deepest path; 0: a chain.
    pub tree_depth: u16,
    /// Drafted tokens first of their row (sibling rank 0: every token of a chain) the
    /// verifier tested, their row being reached
    /// ([`tandem_decoding::analytic::tree::rank_outcomes`]).
    pub rank0_tested: u16,
    /// Of those, accepted.
    pub rank0_accepted: u16,
    /// Second candidates (rank 1) tested: their row was reached and the first rejected.
    pub rank1_tested: u16,
    /// Of those, accepted.
    pub rank1_accepted: u16,
    /// Third and later candidates (rank ≥ 2) tested.
    pub rank2_tested: u16,
    /// Of those, accepted.
    pub rank2_accepted: u16,
    /// Tokens this round added to the output.
    pub committed: u32,
    /// Time spent drafting, ns.
    pub draft_ns: u64,
    /// From sending the block to its verdict, ns (network + queue + forward).
    pub wait_ns: u64,
    /// `wait_ns` minus the verifier's queue, forward and paced time: the network's
    /// share, ns.
    pub network_ns: u64,
    /// The verifier's queue wait, ns.
    pub queue_ns: u64,
    /// The verifier's forward pass, ns.
    pub forward_ns: u64,
    /// Time the verifier held that pass after its forward to meet its cloud pace, ns
    /// (0 without one): the pass took `forward_ns + paced_ns`.
    pub paced_ns: u64,
    /// Sessions in that forward pass.
    pub batch_size: u32,
    /// Tokens in that forward pass.
    pub batch_tokens: u32,
    /// Bytes sent during the round.
    pub bytes_up: u64,
    /// Bytes received during the round.
    pub bytes_down: u64,
    /// Early exit: from sending the block to the provisional verdict the edge acted on,
    /// ns (0: none came).
    pub provisional_ns: u64,
    /// The decoder layer that provisional verdict was read after.
    pub provisional_layer: u16,
    /// How much of the pass was still to run when the verifier sent it, ns (the
    /// verdict's `forward_ns` minus the provisional verdict's `elapsed_ns`): the time
    /// the edge gained on the verdict, whatever its own loop was doing meanwhile.
    pub provisional_lead_ns: u64,
    /// Whether the final verdict agreed with it (accepted length and next token): the
    /// block pre-drafted on it was kept.
    pub provisional_agreed: bool,
}

impl RoundRecord {
    /// The verdict's outcomes by sibling rank (ranks 2 and later together), as
    /// [`RoundRecord::with_ranks`] kept them.
    pub fn by_rank(&self) -> [RankCount; 3] {
        let c = |tested: u16, accepted: u16| RankCount {
            tested: tested.into(),
            accepted: accepted.into(),
        };
        [
            c(self.rank0_tested, self.rank0_accepted),
            c(self.rank1_tested, self.rank1_accepted),
            c(self.rank2_tested, self.rank2_accepted),
        ]
    }

    /// The round with a verdict's outcomes by sibling rank (ranks 2 and later
    /// together).
    pub fn with_ranks(self, [r0, r1, r2]: [RankCount; 3]) -> Self {
        let n = |x: u32| u16::try_from(x).unwrap_or(u16::MAX);
        Self {
            rank0_tested: n(r0.tested),
            rank0_accepted: n(r0.accepted),
            rank1_tested: n(r1.tested),
            rank1_accepted: n(r1.accepted),
            rank2_tested: n(r2.tested),
            rank2_accepted: n(r2.accepted),
            ..self
        }
    }

    /// A round the verifier answered: `committed` tokens after `wait_ns` from send to
    /// answer, with the verifier's own timing and the bytes moved meanwhile. The
    /// network's share is the wait minus the verifier's queue and forward time.
    pub fn answered(
        kind: RoundKind,
        committed: u32,
        wait_ns: u64,
        t: tandem_protocol::pb::Timing,
        (bytes_up, bytes_down): (u64, u64),
    ) -> Self {
        Self {
            kind,
            committed,
            wait_ns,
            network_ns: wait_ns.saturating_sub(t.queue_ns + t.forward_ns + t.paced_ns),
            queue_ns: t.queue_ns,
            forward_ns: t.forward_ns,
            paced_ns: t.paced_ns,
            batch_size: t.batch_size,
            batch_tokens: t.batch_tokens,
            bytes_up,
            bytes_down,
            ..Self::default()
        }
    }
}

/// Why the draft model could not go on; the request then goes on as cloud-only from
/// everything committed (edge → cloud fallback).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DraftStop {
    /// The sequence filled the draft model's context (a draft with a shorter context
    /// than the target's).
    ContextFull,
    /// The device shut down to cool off (its profile's `shutdown_after_s`).
    ThermalShutdown,
    /// The draft's KV cache would pass the memory the device gives it (its profile's
    /// `kv_budget_mb`).
    OutOfMemory,
}

impl DraftStop {
    /// Its name in records: `context full`, `thermal shutdown`, `out of memory`.
    pub fn as_str(self) -> &'static str {
        match self {
            DraftStop::ContextFull => "context full",
            DraftStop::ThermalShutdown => "thermal shutdown",
            DraftStop::OutOfMemory => "out of memory",
        }
    }
}

impl std::fmt::Display for DraftStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Totals of one generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Generated tokens.
    pub tokens: usize,
    /// Generated tokens the target never verified (edge-only or fallback).
    pub unverified_tokens: usize,
    /// Rounds.
    pub rounds: usize,
    /// Tokens drafted in verified rounds.
    pub drafted: usize,
    /// Of those, accepted.
    pub accepted: usize,
    /// accepted / drafted (vLLM's definition); 0 without drafts.
    pub acceptance_rate: f64,
    /// 1 + accepted / verified rounds (vLLM's mean acceptance length); 0 without drafts.
    pub mean_accepted_length: f64,
    /// Time to first token, ms.
    pub ttft_ms: f64,
    /// Time per output token after the first, ms.
    pub tpot_ms: f64,
    /// Start to last token, ms.
    pub e2e_ms: f64,
    /// Bytes sent to the verifier.
    pub bytes_up: u64,
    /// Bytes received from it.
    pub bytes_down: u64,
    /// Times the edge lost the verifier and went on alone.
    pub fallbacks: usize,
    /// Times it re-opened its session after a fallback.
    pub resyncs: usize,
    /// Times the draft could not go on and the request went on in the cloud (0 or 1:
    /// the edge → cloud direction; `fallbacks` counts cloud → edge).
    pub to_cloud: usize,
    /// Why the draft could not go on (with `to_cloud`).
    pub draft_stop: Option<DraftStop>,
    /// When the request went on in the cloud, ms from its start (with `to_cloud`).
    pub to_cloud_at_ms: f64,
    /// Early exit: verified rounds whose block got a provisional verdict the edge
    /// acted on.
    pub provisional: usize,
    /// Of those, the ones the final verdict agreed with (their pre-drafted block kept).
    pub provisional_agreed: usize,
    /// Why generation stopped.
    pub stop: StopReason,
}

/// Everything one generation produced.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The strategy, as given.
    pub strategy: String,
    /// The prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// Generated token ids (the prompt excluded).
    pub output_ids: Vec<u32>,
    /// Indices into `output_ids` of tokens the target never verified.
    pub unverified: Vec<usize>,
    /// The generated text (empty without a tokenizer).
    pub text: String,
    /// Every round.
    pub rounds: Vec<RoundRecord>,
    /// Totals.
    pub summary: Summary,
}

impl Report {
    /// Fills `summary` from the rounds and token lists; timings are the caller's.
    pub fn summarise(&mut self) {
        let s = &mut self.summary;
        s.tokens = self.output_ids.len();
        s.unverified_tokens = self.unverified.len();
        s.rounds = self.rounds.len();
        let verified: Vec<&RoundRecord> = self
            .rounds
            .iter()
            .filter(|r| r.kind == RoundKind::Verified)
            .collect();
        s.drafted = verified.iter().map(|r| r.drafted as usize).sum();
        s.accepted = verified.iter().map(|r| r.accepted as usize).sum();
        let heard = verified.iter().filter(|r| r.provisional_ns > 0);
        s.provisional = heard.clone().count();
        s.provisional_agreed = heard.filter(|r| r.provisional_agreed).count();
        if s.drafted > 0 {
            s.acceptance_rate = s.accepted as f64 / s.drafted as f64;
            s.mean_accepted_length = 1.0 + s.accepted as f64 / verified.len() as f64;
        }
        if s.tokens > 1 {
            s.tpot_ms = (s.e2e_ms - s.ttft_ms) / (s.tokens - 1) as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_uses_vllm_definitions() {
        let round = |drafted, accepted| RoundRecord {
            kind: RoundKind::Verified,
            drafted,
            accepted,
            ..Default::default()
        };
        let mut r = Report {
            output_ids: vec![1; 11],
            rounds: vec![round(4, 4), round(4, 1), round(4, 0)],
            summary: Summary {
                ttft_ms: 10.0,
                e2e_ms: 60.0,
                ..Default::default()
            },
            ..Default::default()
        };
        r.summarise();
        assert_eq!(r.summary.acceptance_rate, 5.0 / 12.0);
        assert!((r.summary.mean_accepted_length - (1.0 + 5.0 / 3.0)).abs() < 1e-12);
        assert_eq!(r.summary.tpot_ms, 5.0);
    }
}
