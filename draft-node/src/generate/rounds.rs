//! Verified rounds: draft a block, send it, wait for its verdict, commit what it
//! confirms; synchronously, or pipelined with the next block drafted ahead.

use std::time::Instant;

use tandem_decoding::analytic::tree::{RankCount, rank_outcomes};
use tandem_decoding::policy::RoundObservation;
use tandem_decoding::tree_shape::tree_depth;
use tandem_protocol::convert::distribution_to_pb;
use tandem_protocol::{WireError, pb};

use super::Run;
use crate::drafter::Block;
use crate::record::{RoundKind, RoundRecord};
use crate::remote::Lost;
use crate::{DraftError, Strategy};

/// A block in flight.
pub(super) struct InFlight {
    pub(super) seq: u64,
    pub(super) ahead: bool,
    pub(super) block: Block,
    pub(super) k: usize,
    pub(super) draft_ns: u64,
    pub(super) sent: Instant,
    bytes: (u64, u64),
    /// Early exit: the provisional verdict acted on, and when it came (ns after `sent`).
    pub(super) provisional: Option<(pb::ProvisionalVerdict, u64)>,
}

/// What the verifier said about the block in flight.
pub(super) enum Answer {
    /// A provisional verdict from an early exit: nothing committed yet.
    Provisional(pb::ProvisionalVerdict),
    /// The verdict.
    Final(pb::Verdict),
}

/// Where a block starts: the length of the sequence it extends and that sequence's last
/// token (`Draft.base_len`, `Draft.anchor`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Extends {
    len: usize,
    anchor: u32,
}

impl Extends {
    /// The end of `seq` (never empty: it holds at least the prompt).
    pub(super) fn of(seq: &[u32]) -> Self {
        Self {
            len: seq.len(),
            anchor: *seq.last().expect("never empty"),
        }
    }
}

impl Run<'_, '_> {
    /// The next draft length: the policy's, within the verifier's limit and the tokens
    /// still wanted.
    pub(super) fn next_k(&self) -> usize {
        let wanted = self.cfg.max_new_tokens - self.output_len();
        self.policy.next_k().min(self.max_draft).min(wanted).max(1)
    }

    /// Drafts `k` tokens after `seq` (fewer if `adaptive` and the policy stops early),
    /// waits out the device's extra time, and returns the block with its drafting time.
    pub(super) async fn draft_after(
        &mut self,
        seq: &[u32],
        k: usize,
        adaptive: bool,
    ) -> Result<(Block, u64), DraftError> {
        let t0 = self.clock.now();
        let policy = &self.policy;
        let drafter = self
            .drafter
            .as_mut()
            .expect("speculation needs a draft model");
        let drafted = if adaptive {
            drafter.propose(seq, k, &mut |i, p| policy.keep_drafting(i, p))?
        } else {
            drafter.propose(seq, k, &mut |_, _| true)?
        };
        if !drafted.extra.is_zero() {
            self.clock.sleep(drafted.extra).await;
        }
        Ok((drafted.block, (self.clock.now() - t0).as_nanos() as u64))
    }

    /// [`Self::draft_after`] the committed sequence. The sequence is lent to the draft,
    /// not copied: it is the whole context, and this runs every round.
    pub(super) async fn draft_on_committed(
        &mut self,
        k: usize,
        adaptive: bool,
    ) -> Result<(Block, u64), DraftError> {
        let seq = std::mem::take(&mut self.committed);
        let drafted = self.draft_after(&seq, k, adaptive).await;
        self.committed = seq;
        drafted
    }

    /// Sends `block` as extending `base` (the edge's view of the committed sequence).
    pub(super) async fn send(
        &mut self,
        base: Extends,
        block: Block,
        k: usize,
        draft_ns: u64,
    ) -> Result<InFlight, Lost> {
        self.seq += 1;
        let remote = self.remote.as_mut().expect("has a verifier");
        let bytes = remote.bytes();
        let draft = pb::Draft {
            session_id: self.session_id,
            base_len: base.len as u32,
            anchor: base.anchor,
            tokens: block.tokens.clone(),
            q: block.q.iter().map(distribution_to_pb).collect(),
            seq: self.seq,
            parents: block.parents.clone(),
        };
        let sent = self.clock.now();
        remote.send(pb::edge_message::Kind::Draft(draft)).await?;
        Ok(InFlight {
            seq: self.seq,
            ahead: false,
            block,
            k,
            draft_ns,
            sent,
            bytes,
            provisional: None,
        })
    }

    /// Waits for the verdict on `f`, skipping answers to dropped blocks and provisional
    /// verdicts.
    pub(super) async fn verdict(&mut self, f: &InFlight) -> Result<pb::Verdict, Lost> {
        loop {
            if let Answer::Final(v) = self.answer(f).await? {
                return Ok(v);
            }
        }
    }

    /// Waits for the next word on `f`, a provisional verdict or the verdict, skipping
    /// answers to dropped blocks.
    pub(super) async fn answer(&mut self, f: &InFlight) -> Result<Answer, Lost> {
        let remote = self.remote.as_mut().expect("has a verifier");
        loop {
            match remote.recv(self.cfg.deadline).await? {
                pb::cloud_message::Kind::Verdict(v) if v.seq == f.seq => {
                    return Ok(Answer::Final(v));
                }
                pb::cloud_message::Kind::Provisional(p) if p.seq == f.seq => {
                    return Ok(Answer::Provisional(p));
                }
                pb::cloud_message::Kind::Provisional(p) if self.dropped.contains(&p.seq) => {
                    continue;
                }
                pb::cloud_message::Kind::Verdict(v) if self.dropped.remove(&v.seq) => continue,
                pb::cloud_message::Kind::Error(e) if self.dropped.remove(&e.seq) => continue,
                pb::cloud_message::Kind::Error(e) if e.code == tonic::Code::NotFound as i32 => {
                    return Err(Lost::Evicted(WireError::from_pb(&e)));
                }
                pb::cloud_message::Kind::Error(e) => {
                    return Err(Lost::Refused(WireError::from_pb(&e)));
                }
                other => {
                    return Err(Lost::Refused(WireError::internal(format!(
                        "expected the verdict on block {}, got {other:?}",
                        f.seq
                    ))));
                }
            }
        }
    }

    /// Commits what a verdict confirmed, records the round, feeds the policy.
    pub(super) fn apply(&mut self, f: &InFlight, v: &pb::Verdict) -> Result<(), DraftError> {
        let path = accepted_path(&f.block, v).map_err(DraftError::Violation)?;
        let accepted = path.len();
        let received = self.clock.now();
        let (up, down) = self.remote.as_ref().expect("has a verifier").bytes();
        let t = v.timing.unwrap_or_default();
        let wait_ns = (received - f.sent).as_nanos() as u64;
        let mut tokens: Vec<u32> = path.iter().map(|&n| f.block.tokens[n]).collect();
        tokens.push(v.next_token);
        let bytes = (up - f.bytes.0, down - f.bytes.1);
        // What the output kept: the end of the request may cut the verdict short.
        let committed = self.commit(&tokens, true);
        let (provisional_ns, provisional_layer, provisional_agreed, provisional_lead_ns) =
            match &f.provisional {
                Some((p, at)) => (
                    *at,
                    u16::try_from(p.layer).unwrap_or(u16::MAX),
                    agrees(p, v),
                    (t.forward_ns + t.paced_ns).saturating_sub(p.elapsed_ns),
                ),
                None => (0, 0, false, 0),
            };
        self.record(RoundRecord {
            k: f.k as u32,
            ahead: f.ahead,
            drafted: f.block.tokens.len() as u32,
            accepted: accepted as u32,
            draft_ns: f.draft_ns,
            provisional_ns,
            provisional_layer,
            provisional_agreed,
            provisional_lead_ns,
            tree_depth: tree_depth(&f.block.parents) as u16,
            ..RoundRecord::answered(RoundKind::Verified, committed as u32, wait_ns, t, bytes)
                .with_ranks(rank_outcomes_of(&f.block, &v.path, accepted))
        });
        if let Some(sizer) = &mut self.sizer {
            let tree = (&f.block.parents[..], &v.path[..]);
            sizer.observe(&super::tree::observation(tree, f.draft_ns, wait_ns, &t));
        }
        self.policy.observe(&RoundObservation {
            drafted: f.block.tokens.len(),
            accepted,
            draft_s: f.draft_ns as f64 / 1e9,
            remote_s: wait_ns as f64 / 1e9,
        });
        Ok(())
    }

    /// Draft, send, wait, commit.
    pub(super) async fn sync_step(&mut self) -> Result<(), DraftError> {
        let k = self.next_k();
        let adaptive = matches!(self.cfg.strategy, Strategy::Adaptive { .. });
        let (block, draft_ns) = self.draft_on_committed(k, adaptive).await?;
        self.verify(Extends::of(&self.committed), block, k, draft_ns)
            .await
    }

    /// Sends `block` (drafted after `base`), waits for its verdict and commits it; if
    /// the verifier is lost meanwhile, goes on with the block unverified.
    pub(super) async fn verify(
        &mut self,
        base: Extends,
        block: Block,
        k: usize,
        draft_ns: u64,
    ) -> Result<(), DraftError> {
        let f = match self.send(base, block.clone(), k, draft_ns).await {
            Ok(f) => f,
            Err(lost) => return self.unverified_block(block, k, draft_ns, lost).await,
        };
        match self.verdict(&f).await {
            Ok(v) => self.apply(&f, &v),
            Err(lost) => self.unverified_block(f.block, k, draft_ns, lost).await,
        }
    }

    /// The verifier was lost with `block` drafted. If it only forgot the session
    /// (evicted), re-open it with everything committed and drop the block; otherwise
    /// keep the block (a tree: its first path), unverified, and go on alone.
    pub(super) async fn unverified_block(
        &mut self,
        block: Block,
        k: usize,
        draft_ns: u64,
        lost: Lost,
    ) -> Result<(), DraftError> {
        if let Lost::Evicted(e) = &lost {
            tracing::info!(
                "{e}; re-opening the session at {} tokens",
                self.committed.len()
            );
            self.dropped.clear();
            self.report.summary.resyncs += 1;
            return self.open().await;
        }
        self.lose(lost)?;
        let block = block.first_path();
        let committed = self.commit(&block.tokens, false);
        self.record(RoundRecord {
            kind: RoundKind::Edge,
            k: k as u32,
            drafted: block.tokens.len() as u32,
            committed: committed as u32,
            draft_ns,
            ..Default::default()
        });
        Ok(())
    }

    /// Pipelined: with block B in flight, draft a guess `g` for the verifier's token and
    /// the next block B' after `B + g`, send B', then wait for B's verdict. If B was
    /// accepted whole and the verifier's token is `g`, B' is already on its way and
    /// becomes the block in flight; otherwise B' is stale and dropped.
    pub(super) async fn pipelined_step(
        &mut self,
        inflight: Option<InFlight>,
    ) -> Result<Option<InFlight>, DraftError> {
        let f = match inflight {
            Some(f) => f,
            None => match self.start_block().await? {
                Some(f) => f,
                None => return Ok(None),
            },
        };
        // Draft ahead while B is in flight, unless B already reaches the end.
        let mut ahead_seq = self.committed.clone();
        ahead_seq.extend_from_slice(&f.block.tokens);
        let room = self
            .cfg
            .max_new_tokens
            .saturating_sub(self.output_len() + f.block.tokens.len() + 1);
        let mut next: Option<(u32, InFlight)> = None;
        if room > 0 {
            let k = self.policy.next_k().min(self.max_draft).min(room).max(1);
            let (ahead, draft_ns) = self.draft_after(&ahead_seq, k + 1, false).await?;
            if ahead.tokens.len() == k + 1 {
                let guess = ahead.tokens[0];
                let rest = Block {
                    tokens: ahead.tokens[1..].to_vec(),
                    q: ahead.q.get(1..).map(<[_]>::to_vec).unwrap_or_default(),
                    parents: Vec::new(),
                };
                ahead_seq.push(guess);
                let base = Extends::of(&ahead_seq);
                if let Ok(mut f2) = self.send(base, rest, k, draft_ns).await {
                    f2.ahead = true;
                    next = Some((guess, f2));
                }
            }
        }
        let v = match self.verdict(&f).await {
            Ok(v) => v,
            Err(lost) => {
                self.unverified_block(f.block, f.k, f.draft_ns, lost)
                    .await?;
                return Ok(None);
            }
        };
        self.apply(&f, &v)?;
        let confirmed = v.accepted as usize == f.block.tokens.len();
        match next {
            Some((guess, f2)) if confirmed && v.next_token == guess && self.done.is_none() => {
                Ok(Some(f2))
            }
            Some((_, f2)) => {
                self.drop_ahead(f2);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    /// Drafts and sends a block on the committed sequence; `None` when the verifier was
    /// lost meanwhile (the block was then kept, unverified).
    pub(super) async fn start_block(&mut self) -> Result<Option<InFlight>, DraftError> {
        let k = self.next_k();
        let (block, draft_ns) = self.draft_on_committed(k, false).await?;
        let base = Extends::of(&self.committed);
        match self.send(base, block.clone(), k, draft_ns).await {
            Ok(f) => Ok(Some(f)),
            Err(lost) => {
                self.unverified_block(block, k, draft_ns, lost).await?;
                Ok(None)
            }
        }
    }

    /// A block drafted ahead whose guess missed: its answer will be skipped, and it is
    /// recorded as stale.
    pub(super) fn drop_ahead(&mut self, f: InFlight) {
        self.dropped.insert(f.seq);
        self.record(RoundRecord {
            kind: RoundKind::Stale,
            k: f.k as u32,
            ahead: true,
            drafted: f.block.tokens.len() as u32,
            draft_ns: f.draft_ns,
            ..Default::default()
        });
    }
}

/// A verdict's outcomes by sibling rank (`path` checked by [`accepted_path`]). A chain
/// is the tree of one candidate a row: its first `accepted` tokens were tested and
/// accepted, and the next, if any, tested and rejected.
fn rank_outcomes_of(block: &Block, path: &[u32], accepted: usize) -> [RankCount; 3] {
    if block.parents.is_empty() {
        let tested = accepted + usize::from(accepted < block.tokens.len());
        let first = RankCount {
            tested: tested as u32,
            accepted: accepted as u32,
        };
        return [first, RankCount::default(), RankCount::default()];
    }
    rank_outcomes(&block.parents, path).unwrap_or_default()
}

/// The drafted tokens a verdict accepted, as block offsets: a chain's first `accepted`,
/// a tree's path (each node a child of the one before, the first of the context).
fn accepted_path(block: &Block, v: &pb::Verdict) -> Result<Vec<usize>, String> {
    let (n, accepted) = (block.tokens.len(), v.accepted as usize);
    if block.parents.is_empty() {
        return match accepted <= n {
            true => Ok((0..accepted).collect()),
            false => Err(format!("verdict accepts {accepted} of {n} drafted tokens")),
        };
    }
    if v.path.len() != accepted {
        return Err(format!(
            "tree verdict accepts {accepted} nodes but its path names {}",
            v.path.len()
        ));
    }
    let mut row = 0u32;
    for &node in &v.path {
        if block.parents.get(node as usize) != Some(&row) {
            return Err(format!(
                "tree verdict's path {:?} is not a path of the {n}-node tree sent",
                v.path
            ));
        }
        row = node + 1;
    }
    Ok(v.path.iter().map(|&n| n as usize).collect())
}

/// Whether a final verdict says what a provisional one did.
pub(super) fn agrees(p: &pb::ProvisionalVerdict, v: &pb::Verdict) -> bool {
    p.accepted == v.accepted && p.next_token == v.next_token
}
