//! The session with the verifier over a request's life: connect and check, open and
//! re-open, lose it (fallback), go on alone and come back (resync), and cloud-only
//! streaming.

use tandem_protocol::convert::sampling_to_pb;
use tandem_protocol::{WireError, pb};

use super::Run;
use crate::record::{DraftStop, RoundKind, RoundRecord, StopReason};
use crate::remote::Lost;
use crate::{DraftError, Strategy};

impl Run<'_, '_> {
    /// Connects and checks the verifier; with fallback, a verifier that is down only
    /// means starting alone.
    pub(super) async fn start_remote(&mut self) -> Result<(), DraftError> {
        let Some(remote) = self.remote.as_mut() else {
            return Ok(());
        };
        match remote.connect(self.cfg.deadline).await {
            Ok(info) => {
                let info = info.clone();
                self.check_info(&info)?;
                Ok(())
            }
            Err(lost) => self.lose(lost),
        }
    }

    pub(super) fn check_info(&mut self, info: &pb::InfoResponse) -> Result<(), DraftError> {
        if let Strategy::EarlyExit { exit, .. } = self.mode {
            let exits = &info.early_exit_layers;
            match exit {
                Some(l) if !exits.is_empty() && !exits.contains(&l) => {
                    return Err(DraftError::Usage(format!(
                        "the verifier has early exits after layers {exits:?}, not after layer {l}"
                    )));
                }
                _ if exits.is_empty() => tracing::warn!(
                    "the verifier has no early exits (verifier-node --early-exit-layer): early_exit runs as speculative"
                ),
                _ => {}
            }
        }
        if self.drafter.is_some() {
            if self.fingerprint != info.tokenizer_fingerprint {
                return Err(DraftError::Usage(format!(
                    "the draft's tokenizer ({}) is not the verifier's ({}): draft and target must share one tokenizer",
                    self.fingerprint, info.tokenizer_fingerprint
                )));
            }
        } else {
            self.fingerprint = info.tokenizer_fingerprint.clone();
        }
        self.eos = info.eos_token_ids.clone();
        if let Some(l) = &info.limits {
            self.max_draft = l.max_draft_tokens.max(1) as usize;
            self.max_tree = (l.max_tree_nodes as usize, l.max_tree_depth as usize);
        }
        Ok(())
    }

    /// Opens (or re-opens) the session with the whole committed sequence.
    pub(super) async fn open(&mut self) -> Result<(), DraftError> {
        let remaining = self.cfg.max_new_tokens - self.output_len();
        let open = pb::Open {
            prompt_ids: self.committed.clone(),
            sampling: Some(sampling_to_pb(&self.cfg.sampling)),
            seed: self.cfg.seed,
            mode: if self.cfg.sampling.is_greedy() {
                pb::AcceptanceMode::Greedy
            } else {
                pb::AcceptanceMode::Stochastic
            } as i32,
            tokenizer_fingerprint: self.fingerprint.clone(),
            max_new_tokens: remaining as u32,
            generate: self.mode == Strategy::CloudOnly,
            ignore_eos: self.cfg.ignore_eos,
            auth_token: String::new(),
            early_exit: matches!(self.mode, Strategy::EarlyExit { .. }),
        };
        let remote = self.remote.as_mut().expect("has a verifier");
        let sent = self.clock.now();
        let (up0, down0) = remote.bytes();
        match remote.open(open, self.cfg.deadline).await {
            Ok(opened) => {
                let (up1, down1) = remote.bytes();
                self.session_id = opened.session_id;
                self.retry_at = None;
                self.backoff = None;
                let t = opened.timing.unwrap_or_default();
                let wait_ns = (self.clock.now() - sent).as_nanos() as u64;
                let kind = if self.mode == Strategy::CloudOnly {
                    RoundKind::Cloud
                } else {
                    RoundKind::Verified
                };
                let bytes = (up1 - up0, down1 - down0);
                self.record(RoundRecord::answered(kind, 1, wait_ns, t, bytes));
                if let Some(sizer) = self.sizer() {
                    sizer.observe_open(&super::tree::observation((&[], &[]), 0, wait_ns, &t));
                }
                self.commit(&[opened.first_token], true);
                Ok(())
            }
            Err(lost) => self.lose(lost),
        }
    }

    /// The draft cannot go on: the request goes on as cloud-only from everything
    /// committed, in a fresh `generate` session. Fails when there is no verifier to
    /// take over (none configured, as for a private prompt, or lost at this moment).
    pub(super) async fn hand_to_cloud(&mut self, why: DraftStop) -> Result<(), DraftError> {
        if self.remote.is_none() || self.retry_at.is_some() {
            return Err(DraftError::DraftStopped(why));
        }
        let at = self.clock.now() - self.start;
        tracing::info!("the draft cannot go on ({why}): going on in the cloud");
        let s = &mut self.report.summary;
        s.to_cloud += 1;
        s.draft_stop = Some(why);
        s.to_cloud_at_ms = at.as_secs_f64() * 1e3;
        self.mode = Strategy::CloudOnly;
        self.open().await
    }

    /// The verifier is lost: go on alone if allowed, else fail.
    pub(super) fn lose(&mut self, lost: Lost) -> Result<(), DraftError> {
        match lost {
            Lost::Refused(w) => Err(DraftError::Refused(w)),
            lost if self.cfg.fallback && self.drafter.is_some() => {
                tracing::warn!("verifier lost ({lost}); going on with the draft alone");
                self.report.summary.fallbacks += 1;
                self.schedule_retry();
                Ok(())
            }
            Lost::Link(e) => Err(DraftError::Protocol(e)),
            Lost::Evicted(w) => Err(DraftError::Refused(w)),
            Lost::Timeout(d) => Err(DraftError::Protocol(
                tandem_protocol::ProtocolError::Disconnected(format!(
                    "no answer from the verifier within {d:?}"
                )),
            )),
        }
    }

    /// Sets when to try the verifier next: the next wait of the back-off, which starts
    /// with the first loss and is reset once a session is open again.
    fn schedule_retry(&mut self) {
        let retry = self.cfg.retry;
        let wait = self
            .backoff
            .get_or_insert_with(|| super::backoff::Backoff::new(retry))
            .next_wait();
        self.retry_at = Some(self.clock.now() + wait);
    }

    /// One token from the draft alone (edge-only, or fallback); in fallback, first try
    /// to reach the verifier again when it is time.
    pub(super) async fn alone_step(&mut self) -> Result<(), DraftError> {
        if let Some(at) = self.retry_at
            && self.clock.now() >= at
        {
            let remote = self.remote.as_mut().expect("fallback needs a verifier");
            match remote.connect(self.cfg.deadline).await {
                Ok(info) => {
                    let info = info.clone();
                    self.check_info(&info)?;
                    self.retry_at = None;
                    self.open().await?;
                    if self.retry_at.is_none() {
                        self.report.summary.resyncs += 1;
                        tracing::info!(
                            "verifier back: session re-opened at {} tokens",
                            self.committed.len()
                        );
                        return Ok(());
                    }
                }
                Err(Lost::Refused(w)) => return Err(DraftError::Refused(w)),
                Err(_) => self.schedule_retry(),
            }
        }
        let committed = self.committed.clone();
        let (block, draft_ns) = self.draft_after(&committed, 1, false).await?;
        self.record(RoundRecord {
            kind: RoundKind::Edge,
            k: 1,
            committed: 1,
            draft_ns,
            ..Default::default()
        });
        self.commit(&block.tokens, false);
        Ok(())
    }

    /// Cloud-only: take the next streamed token.
    pub(super) async fn cloud_step(&mut self) -> Result<(), DraftError> {
        let remote = self.remote.as_mut().expect("cloud_only has a verifier");
        let t0 = self.clock.now();
        let (up0, down0) = remote.bytes();
        match remote.recv(self.cfg.deadline).await {
            Ok(pb::cloud_message::Kind::Token(tok)) => {
                let (up1, down1) = remote.bytes();
                let t = tok.timing.unwrap_or_default();
                let wait_ns = (self.clock.now() - t0).as_nanos() as u64;
                let bytes = (up1 - up0, down1 - down0);
                self.record(RoundRecord::answered(
                    RoundKind::Cloud,
                    1,
                    wait_ns,
                    t,
                    bytes,
                ));
                self.commit(&[tok.token], true);
                Ok(())
            }
            Ok(pb::cloud_message::Kind::Finished(f)) => {
                let reason = StopReason::from_wire(&f.reason).ok_or_else(|| {
                    DraftError::Violation(format!(
                        "the verifier finished for an unknown reason {:?} (eos, length or context)",
                        f.reason
                    ))
                })?;
                self.done = Some(reason);
                Ok(())
            }
            Ok(pb::cloud_message::Kind::Error(e)) => {
                Err(DraftError::Refused(WireError::from_pb(&e)))
            }
            Ok(other) => Err(DraftError::Violation(format!(
                "unexpected {other:?} in cloud-only generation"
            ))),
            Err(lost) => self.lose(lost),
        }
    }
}
