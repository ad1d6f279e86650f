//! The verifier's throughput bench (`verifier-node bench`, and `cargo bench --bench
//! throughput` on the tiny target): committed tokens per second against the number of
//! concurrent sessions, with batching on (one pass serves every waiting session) and
//! off (one session per pass), beside the raw batched forward time at the same batch
//! sizes and, for dense weights, that pass's memory-bound time.
//!
//! Clients drive the engine in process (no transport), so the figure is the verifier's
//! own: queueing, batching, acceptance and rollback around the model. Each client
//! proposes k = 4 tokens a round from the target's own greedy continuation, each token
//! corrupted with probability 0.2, so acceptance is realistic and the committed output
//! is known (and checked: the verifier must stay lossless). "Engine in forward" is the
//! share of the batched run's wall time spent inside forward passes, from the verdicts'
//! own `forward_ns`; the rest is everything around the model, measured in the same run.
//!
//! Terms, per row (`S` sessions, `K + 1` tokens each a pass, context `c` tokens each):
//! - raw bound = `S / raw pass × committed per round`: the committed rate if the engine
//!   did nothing but back-to-back raw passes;
//! - memory-bound pass = (weight bytes + `S·(c + K + 1)` × KV bytes per token) /
//!   bandwidth: the least time a pass takes when it must read every weight and its
//!   sessions' caches once.

use std::time::{Duration, Instant};

use tandem_decoding::{SamplingParams, SessionRng};
use tandem_models::{BatchEntry, LanguageModel, Loaded, Positions, SessionCache};
use tandem_protocol::limits::{DraftBlock, OpenRequest};

use crate::{BatchPolicy, EngineConfig, EngineHandle};

/// Tokens drafted a round.
pub const K: usize = 4;
/// Chance that a drafted token is not the target's.
const CORRUPT: f64 = 0.2;
const PROMPTS: &[&str] = &[
    "Once upon a time, there was a kind owl named",
    "Count by 3 from 12: 12 15",
    "The green box has a kite. The red box has a bell. Question: what is in the red box? Answer:",
    "Repeat after me: fox blue drum cup. Again:",
];

/// What to measure.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// Concurrent session counts, one row each.
    pub sessions: Vec<usize>,
    /// Tokens each session commits.
    pub new_tokens: usize,
    /// The device's memory bandwidth, GB/s (the memory-bound column); `None`: left out.
    pub bandwidth_gbs: Option<f64>,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Concurrent sessions.
    pub sessions: usize,
    /// Committed tokens per second, batching on.
    pub batched: f64,
    /// Committed tokens per second, one session a pass.
    pub unbatched: f64,
    /// Mean sessions per pass (batching on).
    pub mean_batch: f64,
    /// Mean queue wait of a block, ms (batching on).
    pub queue_ms: f64,
    /// One raw batched pass of every session's K + 1 tokens, ms.
    pub raw_pass_ms: f64,
    /// The committed rate back-to-back raw passes would give.
    pub raw_bound: f64,
    /// Share of the batched run's wall time inside forward passes.
    pub busy: f64,
    /// The raw pass's memory-bound time, ms (dense weights and a bandwidth only).
    pub memory_bound_ms: Option<f64>,
}

impl Row {
    /// The table's header, in Markdown.
    pub const HEADER: &'static str = "| sessions | batched tok/s | unbatched tok/s | batched / unbatched | mean batch | mean queue | raw pass | raw rate × committed/round | batched / raw bound | engine in forward | memory-bound pass | raw / memory-bound |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|";

    /// The row, in Markdown.
    pub fn markdown(&self) -> String {
        let (mem, ratio) = match self.memory_bound_ms {
            Some(m) => (
                format!("{m:.2} ms"),
                format!("{:.0} %", 100.0 * m / self.raw_pass_ms),
            ),
            None => ("–".into(), "–".into()),
        };
        format!(
            "| {} | {:.0} | {:.0} | {:.2}× | {:.1} | {:.2} ms | {:.2} ms | {:.0} | {:.0} % | {:.0} % | {mem} | {ratio} |",
            self.sessions,
            self.batched,
            self.unbatched,
            self.batched / self.unbatched,
            self.mean_batch,
            self.queue_ms,
            self.raw_pass_ms,
            self.raw_bound,
            100.0 * self.batched / self.raw_bound,
            100.0 * self.busy,
        )
    }
}

/// A prompt and the target's greedy continuation of it.
#[derive(Debug, Clone)]
struct Work {
    prompt: Vec<u32>,
    greedy: Vec<u32>,
}

/// Runs every row of `cfg` on `target`, calling `each` as a row is done.
pub fn run(target: &Loaded, cfg: &BenchConfig, mut each: impl FnMut(&Row)) -> Vec<Row> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let work = workloads(target, cfg.new_tokens);
    let mut rows = Vec::new();
    for &sessions in &cfg.sessions {
        let on_policy = BatchPolicy {
            max_sessions: 1024,
            ..BatchPolicy::default()
        };
        let off_policy = BatchPolicy {
            max_sessions: 1,
            max_wait: Duration::ZERO,
            ..BatchPolicy::default()
        };
        let on = serve(&rt, target, sessions, on_policy, &work, cfg.new_tokens);
        let off = serve(&rt, target, sessions, off_policy, &work, cfg.new_tokens);
        let (pass, context) = raw_forward(target, sessions, &work, cfg.new_tokens);
        let row = Row {
            sessions,
            batched: on.rate,
            unbatched: off.rate,
            mean_batch: on.batch,
            queue_ms: on.queue_ms,
            raw_pass_ms: pass.as_secs_f64() * 1e3,
            raw_bound: sessions as f64 / pass.as_secs_f64() * on.per_round,
            busy: on.busy,
            memory_bound_ms: cfg
                .bandwidth_gbs
                .zip(pass_bytes(target, sessions, context))
                .map(|(gbs, bytes)| bytes / (gbs * 1e9) * 1e3),
        };
        each(&row);
        rows.push(row);
    }
    rows
}

/// Bytes a pass must read at least: every weight once and the sessions' caches, for a
/// model whose weights are dense (`None` for quantized ones).
fn pass_bytes(t: &Loaded, sessions: usize, context: usize) -> Option<f64> {
    let info = t.model.info();
    let dtype_bytes = match info.weights.as_str() {
        "f32" => 4,
        "bf16" | "f16" => 2,
        _ => return None,
    };
    let weights = info.num_parameters * dtype_bytes;
    let kv = sessions * (context + K + 1) * info.kv_bytes_per_token;
    Some((weights + kv) as f64)
}

/// Prompt ids and the target's greedy continuation (`new + K + 1` tokens).
fn workloads(t: &Loaded, new: usize) -> Vec<Work> {
    PROMPTS
        .iter()
        .map(|p| {
            let mut prompt: Vec<u32> = t.model.info().bos_token_id.into_iter().collect();
            prompt.extend(t.tokenizer.encode(p).expect("the bench prompts tokenize"));
            let mut cache = t.model.new_cache();
            let mut last = t.model.prefill(&mut cache, &prompt).expect("prefill");
            let mut greedy = Vec::new();
            while greedy.len() < new + K + 1 {
                let next = tandem_decoding::sampling::argmax(last.last());
                greedy.push(next);
                last = t
                    .model
                    .forward(&mut cache, &[next], Positions::Last)
                    .expect("decode");
            }
            Work { prompt, greedy }
        })
        .collect()
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    tokens: usize,
    rounds: usize,
    batch_sizes: usize,
    queue_ns: u64,
    /// This client's share of the passes it was in (its prefill's included):
    /// Σ forward_ns / batch_size.
    forward_share_ns: f64,
}

impl Seen {
    fn add(&mut self, s: Seen) {
        self.tokens += s.tokens;
        self.rounds += s.rounds;
        self.batch_sizes += s.batch_sizes;
        self.queue_ns += s.queue_ns;
        self.forward_share_ns += s.forward_share_ns;
    }
}

/// One client's session, from open to `new` committed tokens.
struct Client {
    engine: EngineHandle,
    work: Work,
    seed: u64,
    vocab: u32,
    new: usize,
}

impl Client {
    async fn run(self) -> Seen {
        let Client {
            engine,
            work,
            seed,
            vocab,
            new,
        } = self;
        let req = OpenRequest {
            prompt: work.prompt.clone(),
            sampling: SamplingParams::greedy(),
            seed,
            stochastic: false,
            max_new_tokens: (new + K + 1) as u32,
            generate: false,
            ignore_eos: true,
        };
        let opened = engine.open(req, None).await.expect("open");
        let mut rng = SessionRng::new(seed);
        let mut out = vec![opened.first_token];
        let mut seen = Seen::default();
        let t = opened.timing.unwrap_or_default();
        seen.forward_share_ns += t.forward_ns as f64 / t.batch_size.max(1) as f64;
        while out.len() < new {
            let tokens: Vec<u32> = work.greedy[out.len()..out.len() + K]
                .iter()
                .map(|&t| {
                    if rng.uniform() < CORRUPT {
                        (t + 1) % vocab
                    } else {
                        t
                    }
                })
                .collect();
            let block = DraftBlock {
                session_id: opened.session_id,
                base_len: (work.prompt.len() + out.len()) as u32,
                anchor: *out.last().expect("the first token"),
                tokens: tokens.clone(),
                q: vec![],
                seq: seen.rounds as u64,
                parents: vec![],
            };
            let v = engine
                .verify(opened.session_id, block)
                .await
                .expect("verify");
            out.extend_from_slice(&tokens[..v.accepted as usize]);
            out.push(v.next_token);
            assert_eq!(
                out[..],
                work.greedy[..out.len()],
                "the verifier is not lossless"
            );
            let t = v.timing.unwrap_or_default();
            seen.rounds += 1;
            seen.batch_sizes += t.batch_size as usize;
            seen.queue_ns += t.queue_ns;
            seen.forward_share_ns += t.forward_ns as f64 / t.batch_size.max(1) as f64;
        }
        engine.close(opened.session_id);
        seen.tokens = out.len() - 1;
        seen
    }
}

/// What a served run measured.
struct Served {
    /// Committed tokens per second.
    rate: f64,
    /// Mean committed tokens per round.
    per_round: f64,
    /// Mean sessions per pass, as the blocks saw it.
    batch: f64,
    /// Mean queue wait of a block, ms.
    queue_ms: f64,
    /// Share of the run's wall time the engine spent inside forward passes.
    busy: f64,
}

/// Serves `sessions` clients to the end.
fn serve(
    rt: &tokio::runtime::Runtime,
    t: &Loaded,
    sessions: usize,
    batch: BatchPolicy,
    work: &[Work],
    new: usize,
) -> Served {
    let vocab = t.model.info().vocab_size as u32;
    let engine = EngineHandle::start(
        t.model.clone(),
        EngineConfig {
            limits: tandem_protocol::Limits {
                max_sessions: 1024,
                ..Default::default()
            },
            batch,
            ..EngineConfig::new(&t.model.info().name)
        },
    );
    let start = Instant::now();
    let seen = rt.block_on(async {
        let tasks: Vec<_> = (0..sessions)
            .map(|i| {
                let client = Client {
                    engine: engine.clone(),
                    work: work[i % work.len()].clone(),
                    seed: i as u64,
                    vocab,
                    new,
                };
                tokio::spawn(client.run())
            })
            .collect();
        let mut total = Seen::default();
        for t in tasks {
            total.add(t.await.expect("a client"));
        }
        total
    });
    let secs = start.elapsed().as_secs_f64();
    let rounds = seen.rounds as f64;
    Served {
        rate: seen.tokens as f64 / secs,
        per_round: seen.tokens as f64 / rounds,
        batch: seen.batch_sizes as f64 / rounds,
        queue_ms: seen.queue_ns as f64 / rounds / 1e6,
        busy: seen.forward_share_ns / 1e9 / secs,
    }
}

/// Mean time of one raw batched forward of `sessions` × (K + 1) tokens, each session
/// with a context like the clients' mid-run, and that context's mean length.
fn raw_forward(t: &Loaded, sessions: usize, work: &[Work], new: usize) -> (Duration, usize) {
    let mut caches: Vec<_> = (0..sessions)
        .map(|i| {
            let w = &work[i % work.len()];
            let mut ctx = w.prompt.clone();
            ctx.extend_from_slice(&w.greedy[..new / 2]);
            let mut c = t.model.new_cache();
            t.model.prefill(&mut c, &ctx).expect("prefill");
            c
        })
        .collect();
    let lens: Vec<usize> = caches.iter().map(|c| c.len()).collect();
    let block: Vec<u32> = work[0].greedy[..K + 1].to_vec();
    let iters = (200 / sessions).clamp(3, 50);
    let mut pass = || {
        let mut entries: Vec<_> = caches
            .iter_mut()
            .map(|cache| BatchEntry {
                cache,
                tokens: &block,
                positions: Positions::All,
                tree: None,
            })
            .collect();
        t.model.forward_batch(&mut entries).expect("a pass");
        for (c, &l) in caches.iter_mut().zip(&lens) {
            c.truncate(l).expect("truncate");
        }
    };
    pass(); // warm-up: a GPU's first pass loads its kernels
    let start = Instant::now();
    for _ in 0..iters {
        pass();
    }
    let context = lens.iter().sum::<usize>() / sessions.max(1);
    (start.elapsed() / iters as u32, context)
}
