//! The simulated verifier forms the real scheduler's passes. Blocks of `KS[i] + 1`
//! tokens, one per session, queue while the verifier is busy with session 0's block;
//! each lands in a pass (its verdict's batch size and tokens) under a budget of 3
//! sessions and 9 tokens that forces the "stop at the first job that does not fit"
//! rule. The real verifier runs the tiny target held at a gate; the simulated one runs
//! on its virtual clock. Any drift between the two (how a job is sized, which sessions
//! are reserved, the gather rule) changes the passes and fails this test.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tandem_decoding::SamplingParams;
use tandem_draft::{Clock, Dial};
use tandem_experiments::sim::SimSpec;
use tandem_experiments::sim::exec::Executor;
use tandem_experiments::sim::verifier::{SimDial, start};
use tandem_models::{Llama, LoadOptions};
use tandem_protocol::limits::{DraftBlock, OpenRequest};
use tandem_protocol::pb;
use tandem_verifier::testing::{Gate, Gated};
use tandem_verifier::{BatchPolicy, EngineConfig, EngineHandle};

/// Drafted tokens per session; session 0's block holds the verifier up.
const KS: [usize; 6] = [2, 4, 2, 1, 5, 1];
const PROMPT: usize = 6;
const MAX_SESSIONS: usize = 3;
const MAX_TOKENS: usize = 9;

/// (batch size, batch tokens) of each session's verdict, in session order.
type Passes = Vec<(u32, u32)>;

fn real() -> Passes {
    let model: Llama = "builtin:tiny-target"
        .parse::<tandem_models::ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap()
        .model;
    let gate = Arc::new(Gate::default());
    gate.open();
    let config = EngineConfig {
        batch: BatchPolicy {
            max_sessions: MAX_SESSIONS,
            max_tokens: MAX_TOKENS,
            max_wait: Duration::ZERO,
            prefill_chunk: 512,
        },
        ..EngineConfig::new("agreement")
    };
    let engine = EngineHandle::start(
        Gated {
            inner: model,
            gate: gate.clone(),
        },
        config,
    );
    // One thread: spawned requests reach the engine in the order they were spawned.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut opened = Vec::new();
        for _ in KS {
            let req = OpenRequest {
                prompt: (2..2 + PROMPT as u32).collect(),
                sampling: SamplingParams::greedy(),
                seed: 0,
                stochastic: false,
                max_new_tokens: 32,
                generate: false,
                ignore_eos: true,
            };
            opened.push(engine.open(req, None).await.unwrap());
        }
        gate.shut();
        let entered = gate.entered();
        let mut replies = Vec::new();
        for (i, (o, &k)) in opened.iter().zip(&KS).enumerate() {
            let block = DraftBlock {
                session_id: o.session_id,
                base_len: o.committed_len,
                anchor: o.first_token,
                tokens: vec![3; k],
                q: vec![],
                parents: vec![],
                seq: 1,
            };
            let (e, id) = (engine.clone(), o.session_id);
            replies.push(tokio::spawn(async move { e.verify(id, block).await }));
            if i == 0 {
                // Session 0's pass is under way (held at the gate) before the rest come.
                while gate.entered() == entered {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(engine.queued(), KS.len(), "every block reached the engine");
        gate.open();
        let mut out = Vec::new();
        for r in replies {
            let t = r.await.unwrap().unwrap().timing.unwrap();
            out.push((t.batch_size, t.batch_tokens));
        }
        out
    })
}

fn simulated() -> Passes {
    let spec: SimSpec = toml::from_str(&format!(
        "pass_ms = 10\nacceptance = 0.5\nmax_batch_sessions = {MAX_SESSIONS}\nmax_batch_tokens = {MAX_TOKENS}\n"
    ))
    .unwrap();
    let mut ex = Executor::new();
    let clock = ex.clock();
    let dial = SimDial {
        hub: start(&clock, &spec),
        link: "loopback".parse().unwrap(),
        seed: 0,
    };
    let out = Arc::new(Mutex::new(Vec::new()));
    let (c, got) = (clock.clone(), out.clone());
    clock.spawn(async move {
        let conn = dial.connect().await.unwrap();
        let mut sessions = Vec::new();
        for _ in KS {
            let mut ch = conn.open_session().await.unwrap();
            let open = pb::Open {
                prompt_ids: (2..2 + PROMPT as u32).collect(),
                max_new_tokens: 32,
                ignore_eos: true,
                ..Default::default()
            };
            let msg = |kind| Box::new(pb::EdgeMessage { kind: Some(kind) });
            ch.tx
                .send(msg(pb::edge_message::Kind::Open(open)))
                .await
                .unwrap();
            let Some(pb::cloud_message::Kind::Opened(o)) =
                ch.rx.recv().await.unwrap().unwrap().kind
            else {
                panic!("not opened");
            };
            sessions.push((ch, o));
        }
        for (i, ((ch, o), &k)) in sessions.iter().zip(&KS).enumerate() {
            let draft = pb::Draft {
                session_id: o.session_id,
                base_len: o.committed_len,
                anchor: o.first_token,
                tokens: vec![3; k],
                seq: 1,
                ..Default::default()
            };
            let kind = pb::edge_message::Kind::Draft(draft);
            ch.tx
                .send(Box::new(pb::EdgeMessage { kind: Some(kind) }))
                .await
                .unwrap();
            if i == 0 {
                c.sleep(Duration::from_millis(1)).await;
            }
        }
        for (ch, _) in &mut sessions {
            let Some(pb::cloud_message::Kind::Verdict(v)) =
                ch.rx.recv().await.unwrap().unwrap().kind
            else {
                panic!("no verdict");
            };
            let t = v.timing.unwrap();
            got.lock().unwrap().push((t.batch_size, t.batch_tokens));
        }
    });
    ex.run();
    out.lock().unwrap().clone()
}

#[test]
fn the_simulated_verifier_forms_the_real_schedulers_passes() {
    let real = real();
    // Session 0 alone; then blocks of 5 + 3 fit in 9 and the next (2) does not, so
    // it waits; then 2 + 6; then the last.
    let expected: Passes = vec![(1, 3), (2, 8), (2, 8), (2, 8), (2, 8), (1, 2)];
    assert_eq!(real, expected, "the real verifier's passes");
    assert_eq!(simulated(), real, "the simulated verifier's passes");
}
