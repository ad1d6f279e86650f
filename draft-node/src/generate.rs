//! One generation request, from prompt to last token, under any strategy.
//!
//! The loop keeps the committed sequence (prompt + output). Each round either sends a
//! draft block and commits what the verdict confirms (`speculative`, `adaptive`,
//! `pipelined`), takes one streamed token (`cloud_only`), or lets the draft model go
//! on alone (`edge_only`, and fallback while the verifier is lost). A verifier that
//! does not answer within the deadline, or whose connection breaks, puts the loop in
//! fallback: tokens are drafted alone and marked unverified, and every `retry` the
//! loop reconnects and re-opens its session with the whole committed sequence.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tandem_decoding::policy::{DraftLengthPolicy, RoundObservation};
use tandem_decoding::rng::stream;
use tandem_decoding::{SamplingParams, SessionRng};
use tandem_models::LanguageModel;
use tandem_protocol::convert::{distribution_to_pb, sampling_to_pb};
use tandem_protocol::{WireError, pb};

use crate::drafter::{Block, Drafter};
use crate::record::{Report, RoundRecord};
use crate::remote::{Lost, Remote, VerifierTarget};
use crate::{DraftError, Strategy};

/// What to generate, and how.
#[derive(Debug, Clone)]
pub struct GenerateConfig {
    /// The strategy.
    pub strategy: Strategy,
    /// Prompt token ids.
    pub prompt: Vec<u32>,
    /// Most tokens to generate.
    pub max_new_tokens: usize,
    /// Sampling, for the draft and the target alike.
    pub sampling: SamplingParams,
    /// Seed of every random stream of the request.
    pub seed: u64,
    /// Do not stop at end-of-sequence tokens.
    pub ignore_eos: bool,
    /// How long to wait for the verifier before going on alone.
    pub deadline: Duration,
    /// Go on alone when the verifier is lost (else fail).
    pub fallback: bool,
    /// How often to try to reach the verifier again during fallback.
    pub retry: Duration,
}

/// The edge's resources: the draft model, the verifier, the tokenizer facts.
pub struct Edge<'m, M: LanguageModel> {
    /// The draft model (required unless `cloud_only`).
    pub draft: Option<&'m M>,
    /// The verifier (required unless `edge_only`).
    pub verifier: Option<VerifierTarget>,
}

/// Called with each run of newly committed tokens and whether the target verified them.
pub type OnTokens<'a> = &'a mut (dyn FnMut(&[u32], bool) + Send);

/// A block in flight.
struct InFlight {
    seq: u64,
    ahead: bool,
    block: Block,
    k: usize,
    draft_ns: u64,
    sent: Instant,
    bytes: (u64, u64),
}

struct Run<'a, 'm, M: LanguageModel> {
    cfg: &'a GenerateConfig,
    drafter: Option<Drafter<'m, M>>,
    remote: Option<Remote>,
    fingerprint: String,
    eos: Vec<u32>,
    max_draft: usize,
    policy: Box<dyn DraftLengthPolicy>,
    committed: Vec<u32>,
    report: Report,
    on_tokens: OnTokens<'a>,
    start: Instant,
    first_at: Option<Instant>,
    done: Option<&'static str>,
    /// In fallback: when to try the verifier next.
    retry_at: Option<Instant>,
    session_id: u64,
    seq: u64,
    dropped: HashSet<u64>,
}

/// Generates with `edge` as `cfg` says, calling `on_tokens` as tokens are committed.
pub async fn generate<M: LanguageModel>(
    edge: &Edge<'_, M>,
    cfg: &GenerateConfig,
    on_tokens: OnTokens<'_>,
) -> Result<Report, DraftError> {
    if cfg.prompt.is_empty() {
        return Err(DraftError::Usage("the prompt is empty".into()));
    }
    if cfg.max_new_tokens == 0 {
        return Err(DraftError::Usage(
            "--max-new-tokens must be at least 1".into(),
        ));
    }
    cfg.sampling
        .validate()
        .map_err(|e| DraftError::Usage(e.to_string()))?;
    let strategy = cfg.strategy;
    if strategy.needs_draft() && edge.draft.is_none() {
        return Err(DraftError::Usage(format!(
            "strategy {strategy} needs a draft model (--draft)"
        )));
    }
    if strategy.needs_verifier() && edge.verifier.is_none() {
        return Err(DraftError::Usage(format!(
            "strategy {strategy} needs a verifier (--verifier)"
        )));
    }
    let drafter = edge.draft.map(|m| {
        Drafter::new(
            m,
            cfg.sampling,
            SessionRng::for_stream(cfg.seed, stream::DRAFT),
        )
    });
    let (fingerprint, eos) = edge
        .draft
        .map(|m| {
            (
                m.info().tokenizer_fingerprint.clone(),
                m.info().eos_token_ids.clone(),
            )
        })
        .unwrap_or_default();
    let mut run = Run {
        cfg,
        drafter,
        remote: edge.verifier.clone().map(Remote::new),
        fingerprint,
        eos,
        max_draft: usize::MAX,
        policy: strategy.policy().build(),
        committed: cfg.prompt.clone(),
        report: Report {
            strategy: strategy.to_string(),
            prompt_ids: cfg.prompt.clone(),
            ..Default::default()
        },
        on_tokens,
        start: Instant::now(),
        first_at: None,
        done: None,
        retry_at: None,
        session_id: 0,
        seq: 0,
        dropped: HashSet::new(),
    };
    run.start_remote().await?;
    run.start = Instant::now();
    if run.remote.is_some() && run.retry_at.is_none() {
        run.open().await?;
    }
    let mut inflight: Option<InFlight> = None;
    while run.done.is_none() {
        if run.retry_at.is_some() || strategy == Strategy::EdgeOnly {
            run.alone_step().await?;
            continue;
        }
        match strategy {
            Strategy::CloudOnly => run.cloud_step().await?,
            Strategy::Pipelined { .. } => inflight = run.pipelined_step(inflight.take()).await?,
            _ => run.sync_step().await?,
        }
    }
    if let Some(r) = run.remote.as_mut() {
        r.close();
    }
    Ok(run.finish())
}

impl<'m, M: LanguageModel> Run<'_, 'm, M> {
    /// Connects and checks the verifier; with fallback, a verifier that is down only
    /// means starting alone.
    async fn start_remote(&mut self) -> Result<(), DraftError> {
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

    fn check_info(&mut self, info: &pb::InfoResponse) -> Result<(), DraftError> {
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
        }
        Ok(())
    }

    /// Opens (or re-opens) the session with the whole committed sequence.
    async fn open(&mut self) -> Result<(), DraftError> {
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
            generate: self.cfg.strategy == Strategy::CloudOnly,
            ignore_eos: self.cfg.ignore_eos,
            auth_token: String::new(),
        };
        let remote = self.remote.as_mut().expect("has a verifier");
        let sent = Instant::now();
        let (up0, down0) = remote.bytes();
        match remote.open(open, self.cfg.deadline).await {
            Ok(opened) => {
                let (up1, down1) = remote.bytes();
                self.session_id = opened.session_id;
                self.retry_at = None;
                let t = opened.timing.unwrap_or_default();
                let wait_ns = sent.elapsed().as_nanos() as u64;
                self.record(RoundRecord {
                    kind: if self.cfg.strategy == Strategy::CloudOnly {
                        "cloud"
                    } else {
                        "verified"
                    },
                    committed: 1,
                    wait_ns,
                    network_ns: wait_ns.saturating_sub(t.queue_ns + t.forward_ns),
                    queue_ns: t.queue_ns,
                    forward_ns: t.forward_ns,
                    batch_size: t.batch_size,
                    batch_tokens: t.batch_tokens,
                    bytes_up: up1 - up0,
                    bytes_down: down1 - down0,
                    ..Default::default()
                });
                self.commit(&[opened.first_token], true);
                Ok(())
            }
            Err(lost) => self.lose(lost),
        }
    }

    /// The verifier is lost: go on alone if allowed, else fail.
    fn lose(&mut self, lost: Lost) -> Result<(), DraftError> {
        match lost {
            Lost::Refused(w) => Err(DraftError::Refused(w)),
            lost if self.cfg.fallback && self.drafter.is_some() => {
                tracing::warn!("verifier lost ({lost}); going on with the draft alone");
                self.report.summary.fallbacks += 1;
                self.retry_at = Some(Instant::now() + self.cfg.retry);
                Ok(())
            }
            Lost::Link(e) => Err(DraftError::Protocol(e)),
            Lost::Timeout(d) => Err(DraftError::Protocol(
                tandem_protocol::ProtocolError::Disconnected(format!(
                    "no answer from the verifier within {d:?}"
                )),
            )),
        }
    }

    /// One token from the draft alone (edge-only, or fallback); in fallback, first try
    /// to reach the verifier again when it is time.
    async fn alone_step(&mut self) -> Result<(), DraftError> {
        if let Some(at) = self.retry_at
            && Instant::now() >= at
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
                Err(_) => self.retry_at = Some(Instant::now() + self.cfg.retry),
            }
        }
        let t0 = Instant::now();
        let drafter = self.drafter.as_mut().expect("alone needs a draft model");
        let block = drafter.draft(&self.committed, 1, |_, _| true)?;
        let draft_ns = t0.elapsed().as_nanos() as u64;
        self.record(RoundRecord {
            kind: "edge",
            k: 1,
            committed: 1,
            draft_ns,
            ..Default::default()
        });
        self.commit(&block.tokens, false);
        Ok(())
    }

    /// Cloud-only: take the next streamed token.
    async fn cloud_step(&mut self) -> Result<(), DraftError> {
        let remote = self.remote.as_mut().expect("cloud_only has a verifier");
        let t0 = Instant::now();
        let (up0, down0) = remote.bytes();
        match remote.recv(self.cfg.deadline).await {
            Ok(pb::cloud_message::Kind::Token(tok)) => {
                let (up1, down1) = remote.bytes();
                let t = tok.timing.unwrap_or_default();
                let wait_ns = t0.elapsed().as_nanos() as u64;
                self.record(RoundRecord {
                    kind: "cloud",
                    committed: 1,
                    wait_ns,
                    network_ns: wait_ns.saturating_sub(t.queue_ns + t.forward_ns),
                    queue_ns: t.queue_ns,
                    forward_ns: t.forward_ns,
                    batch_size: t.batch_size,
                    batch_tokens: t.batch_tokens,
                    bytes_up: up1 - up0,
                    bytes_down: down1 - down0,
                    ..Default::default()
                });
                self.commit(&[tok.token], true);
                Ok(())
            }
            Ok(pb::cloud_message::Kind::Finished(f)) => {
                self.done = Some(if f.reason == "eos" { "eos" } else { "length" });
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

    /// The next draft length: the policy's, within the verifier's limit and the tokens
    /// still wanted.
    fn next_k(&self) -> usize {
        let wanted = self.cfg.max_new_tokens - self.output_len();
        self.policy.next_k().min(self.max_draft).min(wanted).max(1)
    }

    fn draft_after(
        &mut self,
        seq: &[u32],
        k: usize,
        adaptive: bool,
    ) -> Result<(Block, u64), DraftError> {
        let t0 = Instant::now();
        let policy = &self.policy;
        let drafter = self
            .drafter
            .as_mut()
            .expect("speculation needs a draft model");
        let block = if adaptive {
            drafter.draft(seq, k, |i, p| policy.keep_drafting(i, p))?
        } else {
            drafter.draft(seq, k, |_, _| true)?
        };
        Ok((block, t0.elapsed().as_nanos() as u64))
    }

    /// Sends `block` as extending `base` (the edge's view of the committed sequence).
    async fn send(
        &mut self,
        base: &[u32],
        block: Block,
        k: usize,
        draft_ns: u64,
    ) -> Result<InFlight, Lost> {
        self.seq += 1;
        let remote = self.remote.as_mut().expect("has a verifier");
        let bytes = remote.bytes();
        let draft = pb::Draft {
            session_id: self.session_id,
            base_len: base.len() as u32,
            anchor: *base.last().expect("never empty"),
            tokens: block.tokens.clone(),
            q: block.q.iter().map(distribution_to_pb).collect(),
            seq: self.seq,
        };
        let sent = Instant::now();
        remote.send(pb::edge_message::Kind::Draft(draft)).await?;
        Ok(InFlight {
            seq: self.seq,
            ahead: false,
            block,
            k,
            draft_ns,
            sent,
            bytes,
        })
    }

    /// Waits for the verdict on `f`, skipping answers to dropped blocks.
    async fn verdict(&mut self, f: &InFlight) -> Result<pb::Verdict, Lost> {
        let remote = self.remote.as_mut().expect("has a verifier");
        loop {
            match remote.recv(self.cfg.deadline).await? {
                pb::cloud_message::Kind::Verdict(v) if v.seq == f.seq => return Ok(v),
                pb::cloud_message::Kind::Verdict(v) if self.dropped.remove(&v.seq) => continue,
                pb::cloud_message::Kind::Error(e) if self.dropped.remove(&e.seq) => continue,
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
    fn apply(&mut self, f: &InFlight, v: &pb::Verdict) -> Result<(), DraftError> {
        let accepted = v.accepted as usize;
        if accepted > f.block.tokens.len() {
            return Err(DraftError::Violation(format!(
                "verdict accepts {accepted} of {} drafted tokens",
                f.block.tokens.len()
            )));
        }
        let received = Instant::now();
        let (up, down) = self.remote.as_ref().expect("has a verifier").bytes();
        let t = v.timing.unwrap_or_default();
        let wait_ns = (received - f.sent).as_nanos() as u64;
        let mut tokens = f.block.tokens[..accepted].to_vec();
        tokens.push(v.next_token);
        self.record(RoundRecord {
            kind: "verified",
            k: f.k,
            ahead: f.ahead,
            drafted: f.block.tokens.len(),
            accepted,
            committed: tokens.len(),
            draft_ns: f.draft_ns,
            wait_ns,
            network_ns: wait_ns.saturating_sub(t.queue_ns + t.forward_ns),
            queue_ns: t.queue_ns,
            forward_ns: t.forward_ns,
            batch_size: t.batch_size,
            batch_tokens: t.batch_tokens,
            bytes_up: up - f.bytes.0,
            bytes_down: down - f.bytes.1,
            ..Default::default()
        });
        self.policy.observe(&RoundObservation {
            drafted: f.block.tokens.len(),
            accepted,
            draft_s: f.draft_ns as f64 / 1e9,
            remote_s: wait_ns as f64 / 1e9,
        });
        self.commit(&tokens, true);
        Ok(())
    }

    /// Draft, send, wait, commit.
    async fn sync_step(&mut self) -> Result<(), DraftError> {
        let k = self.next_k();
        let adaptive = matches!(self.cfg.strategy, Strategy::Adaptive { .. });
        let base = self.committed.clone();
        let (block, draft_ns) = self.draft_after(&base, k, adaptive)?;
        let f = match self.send(&base, block.clone(), k, draft_ns).await {
            Ok(f) => f,
            Err(lost) => return self.unverified_block(block, k, draft_ns, lost),
        };
        match self.verdict(&f).await {
            Ok(v) => self.apply(&f, &v),
            Err(lost) => self.unverified_block(f.block, k, draft_ns, lost),
        }
    }

    /// The verifier was lost with `block` drafted: keep it, unverified, and go on alone.
    fn unverified_block(
        &mut self,
        block: Block,
        k: usize,
        draft_ns: u64,
        lost: Lost,
    ) -> Result<(), DraftError> {
        self.lose(lost)?;
        self.record(RoundRecord {
            kind: "edge",
            k,
            drafted: block.tokens.len(),
            committed: block.tokens.len(),
            draft_ns,
            ..Default::default()
        });
        self.commit(&block.tokens, false);
        Ok(())
    }

    /// Pipelined: with block B in flight, draft a guess `g` for the verifier's token and
    /// the next block B' after `B + g`, send B', then wait for B's verdict. If B was
    /// accepted whole and the verifier's token is `g`, B' is already on its way and
    /// becomes the block in flight; otherwise B' is stale and dropped.
    async fn pipelined_step(
        &mut self,
        inflight: Option<InFlight>,
    ) -> Result<Option<InFlight>, DraftError> {
        let f = match inflight {
            Some(f) => f,
            None => {
                let k = self.next_k();
                let base = self.committed.clone();
                let (block, draft_ns) = self.draft_after(&base, k, false)?;
                match self.send(&base, block.clone(), k, draft_ns).await {
                    Ok(f) => f,
                    Err(lost) => {
                        self.unverified_block(block, k, draft_ns, lost)?;
                        return Ok(None);
                    }
                }
            }
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
            let (ahead, draft_ns) = self.draft_after(&ahead_seq, k + 1, false)?;
            if ahead.tokens.len() == k + 1 {
                let guess = ahead.tokens[0];
                let rest = Block {
                    tokens: ahead.tokens[1..].to_vec(),
                    q: ahead.q.get(1..).map(<[_]>::to_vec).unwrap_or_default(),
                };
                ahead_seq.push(guess);
                if let Ok(mut f2) = self.send(&ahead_seq, rest, k, draft_ns).await {
                    f2.ahead = true;
                    next = Some((guess, f2));
                }
            }
        }
        let v = match self.verdict(&f).await {
            Ok(v) => v,
            Err(lost) => {
                self.unverified_block(f.block, f.k, f.draft_ns, lost)?;
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
                self.dropped.insert(f2.seq);
                self.record(RoundRecord {
                    kind: "stale",
                    k: f2.k,
                    ahead: true,
                    drafted: f2.block.tokens.len(),
                    draft_ns: f2.draft_ns,
                    ..Default::default()
                });
                Ok(None)
            }
            None => Ok(None),
        }
    }

    fn output_len(&self) -> usize {
        self.committed.len() - self.cfg.prompt.len()
    }

    fn record(&mut self, mut r: RoundRecord) {
        r.round = self.report.rounds.len();
        self.report.rounds.push(r);
    }

    /// Appends tokens to the output, stopping at EOS or the length limit.
    fn commit(&mut self, tokens: &[u32], verified: bool) {
        if self.done.is_some() {
            return;
        }
        let mut take = tokens
            .len()
            .min(self.cfg.max_new_tokens - self.output_len());
        if !self.cfg.ignore_eos
            && let Some(at) = tokens[..take].iter().position(|t| self.eos.contains(t))
        {
            take = at + 1;
            self.done = Some("eos");
        }
        let tokens = &tokens[..take];
        if !verified {
            let from = self.output_len();
            self.report.unverified.extend(from..from + tokens.len());
        }
        self.committed.extend_from_slice(tokens);
        if !tokens.is_empty() && self.first_at.is_none() {
            self.first_at = Some(Instant::now());
        }
        (self.on_tokens)(tokens, verified);
        if self.done.is_none() && self.output_len() >= self.cfg.max_new_tokens {
            self.done = Some("length");
        }
    }

    fn finish(mut self) -> Report {
        let end = Instant::now();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.report.output_ids = self.committed[self.cfg.prompt.len()..].to_vec();
        let s = &mut self.report.summary;
        s.ttft_ms = self.first_at.map_or(0.0, |t| ms(t - self.start));
        s.e2e_ms = ms(end - self.start);
        s.stop = self.done.unwrap_or("length").to_string();
        if let Some(r) = &self.remote {
            (s.bytes_up, s.bytes_down) = r.bytes();
        }
        self.report.summarise();
        self.report
    }
}
