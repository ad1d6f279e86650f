//! Early-exit rounds (arXiv 2505.21594): pre-draft on the verifier's provisional
//! verdict.
//!
//! ```text
//! edge:   draft B ─ send B ───────── provisional(B) ─ draft B' ─ send B' ── verdict(B)
//! cloud:            pass over B: layers 0..L ─ exit L ─ layers L+1.. ─ verdict(B)
//! ```
//!
//! With block B in flight, the verifier's first provisional verdict on B (read off an
//! intermediate layer mid-pass) predicts its accepted length and next token; the edge
//! drafts B' on the sequence it predicts and sends it at once, while the rest of B's
//! pass runs. If B's verdict agrees, B' is already at the verifier and becomes the
//! block in flight; if not, it is stale (the verifier refuses it as it refuses any block
//! that does not extend what it committed) and dropped. Only verdicts commit: the output
//! is the target's whatever the exits predict. A verdict that comes before any
//! provisional one (a verifier without exits) makes this a synchronous round.

use tandem_protocol::pb;

use super::Run;
use super::rounds::{Answer, Extends, InFlight, agrees};
use crate::{DraftError, Strategy};

impl Run<'_, '_> {
    /// One early-exit round on `inflight` (or on a fresh block); returns the block
    /// pre-drafted on an agreeing provisional verdict, to be the next one in flight.
    pub(super) async fn early_exit_step(
        &mut self,
        inflight: Option<InFlight>,
    ) -> Result<Option<InFlight>, DraftError> {
        let mut f = match inflight {
            Some(f) => f,
            None => match self.start_block().await? {
                Some(f) => f,
                None => return Ok(None),
            },
        };
        let mut next: Option<InFlight> = None;
        let v = loop {
            match self.answer(&f).await {
                Ok(Answer::Final(v)) => break v,
                // Later exits of the same pass only confirm or contradict what was
                // acted on, and exits other than the chosen one are not acted on; the
                // verdict settles it.
                Ok(Answer::Provisional(p)) if f.provisional.is_some() || !self.acts_on(&p) => {}
                Ok(Answer::Provisional(p)) => {
                    let at = (self.clock.now() - f.sent).as_nanos() as u64;
                    next = self.predraft(&f, &p).await?;
                    f.provisional = Some((p, at));
                }
                Err(lost) => {
                    if let Some(f2) = next {
                        self.drop_ahead(f2);
                    }
                    self.unverified_block(f.block, f.k, f.draft_ns, lost)
                        .await?;
                    return Ok(None);
                }
            }
        };
        self.apply(&f, &v)?;
        let Some(f2) = next else { return Ok(None) };
        let confirmed = f.provisional.as_ref().is_some_and(|(p, _)| agrees(p, &v));
        if confirmed && self.done.is_none() {
            return Ok(Some(f2));
        }
        self.drop_ahead(f2);
        Ok(None)
    }

    /// Whether the strategy acts on `p`: its chosen exit's, or any if none is chosen.
    fn acts_on(&self, p: &pb::ProvisionalVerdict) -> bool {
        match self.mode {
            Strategy::EarlyExit { exit: Some(l), .. } => p.layer == l,
            _ => true,
        }
    }

    /// Drafts and sends the block after what `p` predicts for `f`, unless that already
    /// ends the request; `None` then, or when the send failed (the loss shows at the
    /// verdict).
    async fn predraft(
        &mut self,
        f: &InFlight,
        p: &pb::ProvisionalVerdict,
    ) -> Result<Option<InFlight>, DraftError> {
        let accepted = (p.accepted as usize).min(f.block.tokens.len());
        let mut predicted = self.committed.clone();
        predicted.extend_from_slice(&f.block.tokens[..accepted]);
        predicted.push(p.next_token);
        let new = &predicted[self.committed.len()..];
        let ends = !self.cfg.ignore_eos && new.iter().any(|t| self.eos.contains(t));
        let room = self
            .cfg
            .max_new_tokens
            .saturating_sub(self.output_len() + new.len());
        if ends || room == 0 {
            return Ok(None);
        }
        let k = self.policy.next_k().min(self.max_draft).min(room).max(1);
        let (block, draft_ns) = self.draft_after(&predicted, k, false).await?;
        Ok(self
            .send(Extends::of(&predicted), block, k, draft_ns)
            .await
            .ok()
            .map(|mut f2| {
                f2.ahead = true;
                f2
            }))
    }
}
