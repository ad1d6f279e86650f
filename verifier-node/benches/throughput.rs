//! Verifier throughput (committed tokens per second) against the number of concurrent
//! sessions, with batching on (one pass serves every waiting session) and off (one
//! session per pass), beside the raw batched forward time at the same batch sizes.
//!
//! Clients drive the engine in process (no transport), so the figure is the verifier's
//! own: queueing, batching, acceptance and rollback around the model. Each client
//! proposes k = 4 tokens per round from the target's own greedy continuation, each
//! token corrupted with probability 0.2, so acceptance is realistic and the
//! committed output is known. The last column is the share of the batched run's wall
//! time the engine spent inside forward passes (from the verdicts' own `forward_ns`):
//! what is left is everything around the model, measured in the same run, so it does
//! not drift with the machine the way a separately timed raw pass does. Prints a
//! table; run with
//! `cargo bench -p tandem-verifier --bench throughput`.

use std::time::{Duration, Instant};

use tandem_decoding::SessionRng;
use tandem_models::{
    BatchEntry, LanguageModel, LoadOptions, Loaded, ModelSpec, Positions, SessionCache,
};
use tandem_protocol::limits::{DraftBlock, OpenRequest};
use tandem_verifier::{BatchPolicy, EngineConfig, EngineHandle};

const K: usize = 4;
const NEW: usize = 64;
const CORRUPT: f64 = 0.2;
const PROMPTS: &[&str] = &[
    "Once upon a time, there was a kind owl named",
    "Count by 3 from 12: 12 15",
    "The green box has a kite. The red box has a bell. Question: what is in the red box? Answer:",
    "Repeat after me: fox blue drum cup. Again:",
];

fn load() -> Loaded {
    "builtin:tiny-target"
        .parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap()
}

/// Prompt ids and the target's greedy continuation (NEW + K + 1 tokens).
fn workloads(t: &Loaded) -> Vec<(Vec<u32>, Vec<u32>)> {
    PROMPTS
        .iter()
        .map(|p| {
            let mut prompt = vec![t.model.info().bos_token_id.unwrap()];
            prompt.extend(t.tokenizer.encode(p).unwrap());
            let mut cache = t.model.new_cache();
            let mut last = t.model.prefill(&mut cache, &prompt).unwrap();
            let mut out = Vec::new();
            while out.len() < NEW + K + 1 {
                let next = tandem_decoding::sampling::argmax(last.last());
                out.push(next);
                last = t
                    .model
                    .forward(&mut cache, &[next], Positions::Last)
                    .unwrap();
            }
            (prompt, out)
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

/// One client: open, then rounds until NEW tokens are committed.
async fn client(
    engine: EngineHandle,
    prompt: Vec<u32>,
    greedy: Vec<u32>,
    seed: u64,
    vocab: u32,
) -> Seen {
    let req = OpenRequest {
        prompt: prompt.clone(),
        sampling: tandem_decoding::SamplingParams::greedy(),
        seed,
        stochastic: false,
        max_new_tokens: (NEW + K + 1) as u32,
        generate: false,
        ignore_eos: true,
    };
    let opened = engine.open(req, None).await.unwrap();
    let mut rng = SessionRng::new(seed);
    let mut out = vec![opened.first_token];
    let mut seen = Seen::default();
    let t = opened.timing.unwrap_or_default();
    seen.forward_share_ns += t.forward_ns as f64 / t.batch_size.max(1) as f64;
    while out.len() < NEW {
        let tokens: Vec<u32> = greedy[out.len()..out.len() + K]
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
            base_len: (prompt.len() + out.len()) as u32,
            anchor: *out.last().unwrap(),
            tokens: tokens.clone(),
            q: vec![],
            seq: seen.rounds as u64,
            parents: vec![],
        };
        let v = engine.verify(opened.session_id, block).await.unwrap();
        out.extend_from_slice(&tokens[..v.accepted as usize]);
        out.push(v.next_token);
        assert_eq!(out[..], greedy[..out.len()], "the verifier is not lossless");
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
    sessions: usize,
    batch: BatchPolicy,
    work: &[(Vec<u32>, Vec<u32>)],
) -> Served {
    let t = load();
    let vocab = t.model.info().vocab_size as u32;
    let engine = EngineHandle::start(
        t.model,
        EngineConfig {
            limits: tandem_protocol::Limits {
                max_sessions: 1024,
                ..Default::default()
            },
            batch,
            ..EngineConfig::new("builtin:tiny-target")
        },
    );
    let start = Instant::now();
    let seen = rt.block_on(async {
        let tasks: Vec<_> = (0..sessions)
            .map(|i| {
                let (p, g) = work[i % work.len()].clone();
                tokio::spawn(client(engine.clone(), p, g, i as u64, vocab))
            })
            .collect();
        let mut total = Seen::default();
        for t in tasks {
            let s = t.await.unwrap();
            total.tokens += s.tokens;
            total.rounds += s.rounds;
            total.batch_sizes += s.batch_sizes;
            total.queue_ns += s.queue_ns;
            total.forward_share_ns += s.forward_share_ns;
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
/// with a context like the clients' mid-run.
fn raw_forward(t: &Loaded, sessions: usize, work: &[(Vec<u32>, Vec<u32>)]) -> Duration {
    let mut caches: Vec<_> = (0..sessions)
        .map(|i| {
            let (p, g) = &work[i % work.len()];
            let mut ctx = p.clone();
            ctx.extend_from_slice(&g[..NEW / 2]);
            let mut c = t.model.new_cache();
            t.model.prefill(&mut c, &ctx).unwrap();
            c
        })
        .collect();
    let lens: Vec<usize> = caches.iter().map(|c| c.len()).collect();
    let block: Vec<u32> = work[0].1[..K + 1].to_vec();
    let iters = (200 / sessions).clamp(3, 50);
    let start = Instant::now();
    for _ in 0..iters {
        let mut entries: Vec<_> = caches
            .iter_mut()
            .map(|cache| BatchEntry {
                cache,
                tokens: &block,
                positions: Positions::All,
                tree: None,
            })
            .collect();
        t.model.forward_batch(&mut entries).unwrap();
        for (c, &l) in caches.iter_mut().zip(&lens) {
            c.truncate(l).unwrap();
        }
    }
    start.elapsed() / iters as u32
}

#[allow(unsafe_code)]
fn main() {
    // SAFETY: first statement of main; no other thread exists yet.
    unsafe { tandem_models::cpu::init_threads() };
    if std::env::args().any(|a| a == "--list") {
        println!("throughput: bench");
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let t = load();
    let work = workloads(&t);
    println!(
        "| sessions | batched tok/s | unbatched tok/s | batched / unbatched | mean batch | mean queue | raw pass | raw rate × committed/round | batched / raw bound | engine in forward |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    // `cargo bench --bench throughput -- 64 256` runs only those session counts.
    let picked: Vec<usize> = std::env::args().filter_map(|a| a.parse().ok()).collect();
    for sessions in [1usize, 4, 16, 64, 256] {
        if !picked.is_empty() && !picked.contains(&sessions) {
            continue;
        }
        let on_policy = BatchPolicy {
            max_sessions: 1024,
            ..BatchPolicy::default()
        };
        let off_policy = BatchPolicy {
            max_sessions: 1,
            max_wait: std::time::Duration::ZERO,
            ..BatchPolicy::default()
        };
        let on = serve(&rt, sessions, on_policy, &work);
        let off = serve(&rt, sessions, off_policy, &work);
        let pass = raw_forward(&t, sessions, &work);
        let bound = sessions as f64 / pass.as_secs_f64() * on.per_round;
        println!(
            "| {sessions} | {:.0} | {:.0} | {:.2}× | {:.1} | {:.2} ms | {:.2} ms | {bound:.0} | {:.0} % | {:.0} % |",
            on.rate,
            off.rate,
            on.rate / off.rate,
            on.batch,
            on.queue_ms,
            pass.as_secs_f64() * 1e3,
            100.0 * on.rate / bound,
            100.0 * on.busy
        );
    }
}
