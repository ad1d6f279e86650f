//! One generation request, from prompt to last token, under any strategy.
//!
//! The loop keeps the committed sequence (prompt + output). Each round either sends a
//! draft block and commits what the verdict confirms (`speculative`, `adaptive`,
//! `pipelined`, `early_exit`; a token tree for `tree`), takes one streamed token (`cloud_only`), or lets the draft model go
//! on alone (`edge_only`, and fallback while the verifier is lost). A verifier that
//! does not answer within the deadline, or whose connection breaks, puts the loop in
//! fallback: tokens are drafted alone and marked unverified, and the loop reconnects
//! and re-opens its session with the whole committed sequence, first 0.5 ms after the
//! loss, then backing off to every `retry` ([`backoff`]). The other direction: when the
//! draft model cannot go on (its context is full, its device shut down), the request
//! goes on as cloud-only from everything committed, if a verifier is in reach.

mod backoff;
mod early_exit;
mod lifecycle;
mod rounds;
mod tree;

pub use backoff::FIRST_RETRY;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tandem_decoding::policy::{DraftLengthPolicy, TreeSizer};
use tandem_decoding::rng::stream;
use tandem_decoding::tree_shape::MAX_TREE_DEPTH;
use tandem_decoding::{SamplingParams, SessionRng};
use tandem_models::LanguageModel;

use crate::clock::{Clock, SystemClock};
use crate::drafter::Drafter;
use crate::propose::Propose;
use crate::record::{Report, RoundRecord, StopReason};
use crate::remote::{Dial, Remote, VerifierTarget};
use crate::{DraftError, Strategy};
use rounds::InFlight;

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
    /// Longest wait between attempts to reach the verifier again during fallback (the
    /// first comes after [`FIRST_RETRY`], each next one twice as late, up to this).
    pub retry: Duration,
}

/// The edge's resources: the draft model, the verifier, the tokenizer facts.
pub struct Edge<'m, M: LanguageModel> {
    /// The draft model (required unless `cloud_only`).
    pub draft: Option<&'m M>,
    /// The verifier (required unless `edge_only`).
    pub verifier: Option<VerifierTarget>,
    /// The device the draft runs on, emulated (none: this machine as it is).
    pub device: Option<crate::DevicePace>,
}

/// The edge's parts behind the seams, for callers that bring their own: a simulator's
/// draft, verifier and virtual clock run through the same loop as the real ones.
pub struct Parts<'a> {
    /// What drafts (required unless `cloud_only`).
    pub proposer: Option<Box<dyn Propose + 'a>>,
    /// How the verifier is reached (required unless `edge_only`).
    pub verifier: Option<Arc<dyn Dial>>,
    /// The time every record and deadline is measured in.
    pub clock: Arc<dyn Clock>,
}

/// Called with each run of newly committed tokens and whether the target verified them.
pub type OnTokens<'a> = &'a mut (dyn FnMut(&[u32], bool) + Send);

struct Run<'a, 'p> {
    cfg: &'a GenerateConfig,
    /// What the loop does now: the config's strategy, or cloud-only once the draft
    /// could not go on.
    mode: Strategy,
    drafter: Option<Box<dyn Propose + 'p>>,
    clock: Arc<dyn Clock>,
    remote: Option<Remote>,
    fingerprint: String,
    eos: Vec<u32>,
    max_draft: usize,
    /// The verifier's limits on a token tree: nodes and depth.
    max_tree: (usize, usize),
    /// `tree` with an `auto` shape: what sizes each round's tree.
    sizer: Option<TreeSizer>,
    policy: Box<dyn DraftLengthPolicy>,
    committed: Vec<u32>,
    report: Report,
    on_tokens: OnTokens<'a>,
    start: Instant,
    first_at: Option<Instant>,
    done: Option<StopReason>,
    /// In fallback: when to try the verifier next.
    retry_at: Option<Instant>,
    /// In fallback: the waits between attempts (reset once a session is open).
    backoff: Option<backoff::Backoff>,
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
    let proposer = edge.draft.map(|m| {
        let drafter = Drafter::new(
            m,
            cfg.sampling,
            SessionRng::for_stream(cfg.seed, stream::DRAFT),
        )
        .with_pace(edge.device.clone());
        Box::new(drafter) as Box<dyn Propose + '_>
    });
    let parts = Parts {
        proposer,
        verifier: edge.verifier.clone().map(|t| match t.replicas.is_empty() {
            true => Arc::new(t) as Arc<dyn Dial>,
            false => Arc::new(crate::remote::Replicas::new(t, cfg.seed)) as Arc<dyn Dial>,
        }),
        clock: Arc::new(SystemClock),
    };
    generate_with(parts, cfg, on_tokens).await
}

/// Generates with `parts` as `cfg` says, calling `on_tokens` as tokens are committed.
pub async fn generate_with(
    parts: Parts<'_>,
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
    if strategy.needs_draft() && parts.proposer.is_none() {
        return Err(DraftError::Usage(format!(
            "strategy {strategy} needs a draft model (--draft)"
        )));
    }
    if strategy.needs_verifier() && parts.verifier.is_none() {
        return Err(DraftError::Usage(format!(
            "strategy {strategy} needs a verifier (--verifier)"
        )));
    }
    let vocab = parts
        .proposer
        .as_ref()
        .map(|p| p.vocabulary())
        .unwrap_or_default();
    let clock = parts.clock;
    let mut run = Run {
        cfg,
        mode: strategy,
        drafter: parts.proposer,
        remote: parts.verifier.map(|v| Remote::new(v, clock.clone())),
        fingerprint: vocab.fingerprint,
        eos: vocab.eos_token_ids,
        max_draft: usize::MAX,
        max_tree: (usize::MAX, MAX_TREE_DEPTH),
        sizer: None,
        policy: strategy.policy().build(),
        committed: cfg.prompt.clone(),
        report: Report {
            strategy: strategy.to_string(),
            prompt_ids: cfg.prompt.clone(),
            ..Default::default()
        },
        on_tokens,
        start: clock.now(),
        clock,
        first_at: None,
        done: None,
        retry_at: None,
        backoff: None,
        session_id: 0,
        seq: 0,
        dropped: HashSet::new(),
    };
    let outcome = async {
        run.start_remote().await?;
        run.start = run.clock.now();
        if run.remote.is_some() && run.retry_at.is_none() {
            run.open().await?;
        }
        let mut inflight: Option<InFlight> = None;
        while run.done.is_none() {
            let step = if run.retry_at.is_some() || run.mode == Strategy::EdgeOnly {
                run.alone_step().await
            } else {
                match run.mode {
                    Strategy::CloudOnly => run.cloud_step().await,
                    Strategy::Pipelined { .. } => run
                        .pipelined_step(inflight.take())
                        .await
                        .map(|next| inflight = next),
                    Strategy::EarlyExit { .. } => run
                        .early_exit_step(inflight.take())
                        .await
                        .map(|next| inflight = next),
                    Strategy::Tree { shape } => run.tree_step(shape).await,
                    _ => run.sync_step().await,
                }
            };
            match step {
                // The draft cannot go on: the cloud takes over (a block in flight is
                // dropped with its session).
                Err(DraftError::DraftStopped(why)) => {
                    inflight = None;
                    run.hand_to_cloud(why).await?;
                }
                other => other?,
            }
        }
        Ok::<(), DraftError>(())
    }
    .await;
    // However it ended, the session and the connection close now (the report's times
    // stop before): the verifier frees the session at once instead of waiting for the
    // connection to time out.
    let conn = run.remote.as_mut().and_then(|r| {
        r.close();
        r.take_conn()
    });
    let report = outcome.map(|()| run.finish());
    if let Some(conn) = conn {
        conn.close().await;
    }
    report
}

/// Bookkeeping: the output, the records, the end.
impl Run<'_, '_> {
    fn output_len(&self) -> usize {
        self.committed.len() - self.cfg.prompt.len()
    }

    fn record(&mut self, mut r: RoundRecord) {
        let (output, rounds) = (self.output_len(), &mut self.report.rounds);
        r.round = rounds.len() as u32;
        if rounds.len() == rounds.capacity() {
            // Grown to the rounds still expected rather than doubled: a simulated cell
            // holds every live request's records at once (100 000 × ~80 rounds), and
            // doubling would leave up to half of each unused.
            let more = if rounds.is_empty() {
                8
            } else {
                let left = self.cfg.max_new_tokens.saturating_sub(output);
                let per_round = (output / rounds.len()).max(1);
                left.div_ceil(per_round) + 4
            };
            rounds.reserve_exact(more);
        }
        rounds.push(r);
    }

    /// Appends tokens to the output, stopping at EOS or the length limit; returns how
    /// many it kept.
    fn commit(&mut self, tokens: &[u32], verified: bool) -> usize {
        if self.done.is_some() {
            return 0;
        }
        let mut take = tokens
            .len()
            .min(self.cfg.max_new_tokens - self.output_len());
        if !self.cfg.ignore_eos
            && let Some(at) = tokens[..take].iter().position(|t| self.eos.contains(t))
        {
            take = at + 1;
            self.done = Some(StopReason::Eos);
        }
        let tokens = &tokens[..take];
        if !verified {
            let from = self.output_len();
            self.report.unverified.extend(from..from + tokens.len());
        }
        self.committed.extend_from_slice(tokens);
        if !tokens.is_empty() && self.first_at.is_none() {
            self.first_at = Some(self.clock.now());
        }
        (self.on_tokens)(tokens, verified);
        if self.done.is_none() && self.output_len() >= self.cfg.max_new_tokens {
            self.done = Some(StopReason::Length);
        }
        take
    }

    fn finish(mut self) -> Report {
        let end = self.clock.now();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        self.report.output_ids = self.committed[self.cfg.prompt.len()..].to_vec();
        let s = &mut self.report.summary;
        s.ttft_ms = self.first_at.map_or(0.0, |t| ms(t - self.start));
        s.e2e_ms = ms(end - self.start);
        s.stop = self.done.unwrap_or(StopReason::Length);
        if let Some(r) = &self.remote {
            (s.bytes_up, s.bytes_down) = r.bytes();
        }
        self.report.summarise();
        self.report
    }
}
