//! End to end on loopback with the shipped tiny pair, verifier in process:
//!
//! - `verify_round/{grpc,quic}`: one k = 4 block sent and its verdict received (no
//!   drafting): transport + engine + one target pass.
//! - `generate_32/{transport}/{strategy}`: a whole 32-token greedy request, drafting
//!   included; divide by the rounds it reports for the time per round.

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use tandem_decoding::SamplingParams;
use tandem_draft::{Edge, GenerateConfig, Strategy, VerifierTarget};
use tandem_models::{LanguageModel, LoadOptions, Loaded, ModelSpec};
use tandem_protocol::client::{ConnectOptions, Connection, Endpoint, Transport};
use tandem_protocol::pb::{self, cloud_message::Kind as Down, edge_message::Kind as Up};
use tandem_verifier::{EngineConfig, EngineHandle, ListenConfig};

fn load(spec: &str) -> Loaded {
    spec.parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap()
}

struct Setup {
    rt: tokio::runtime::Runtime,
    targets: Vec<(Transport, VerifierTarget)>,
    draft: Loaded,
    prompt: Vec<u32>,
    fingerprint: String,
    _certs: tempfile::TempDir,
}

fn setup() -> Setup {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let certs = tempfile::tempdir().unwrap();
    let target = load("builtin:tiny-target");
    let fingerprint = target.model.info().tokenizer_fingerprint.clone();
    let mut prompt = vec![target.model.info().bos_token_id.unwrap()];
    prompt.extend(
        target
            .tokenizer
            .encode("Once upon a time, there was a kind owl named")
            .unwrap(),
    );
    let engine = EngineHandle::start(target.model, EngineConfig::new("builtin:tiny-target"));
    let running = rt
        .block_on(tandem_verifier::serve(
            engine,
            ListenConfig::loopback(certs.path()),
        ))
        .unwrap();
    let at = |transport, addr: std::net::SocketAddr| VerifierTarget {
        replicas: Vec::new(),
        endpoint: Endpoint::at(transport, addr),
        options: ConnectOptions {
            ca: running.cert_path.clone(),
            ..Default::default()
        },
    };
    let targets = vec![
        (
            Transport::Grpc,
            at(Transport::Grpc, running.grpc_addr.unwrap()),
        ),
        (
            Transport::Quic,
            at(Transport::Quic, running.quic_addr.unwrap()),
        ),
    ];
    std::mem::forget(running); // serve for the whole bench process
    Setup {
        rt,
        targets,
        draft: load("builtin:tiny-draft"),
        prompt,
        fingerprint,
        _certs: certs,
    }
}

/// Times `iters` send→verdict round trips, re-opening the session every 64 rounds so
/// the sequence stays short.
async fn verify_rounds(t: &VerifierTarget, s: &Setup, iters: u64) -> Duration {
    let conn = Connection::connect(&t.endpoint, t.options.clone())
        .await
        .unwrap();
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let mut chan = conn.open_session().await.unwrap();
        let open = pb::Open {
            prompt_ids: s.prompt.clone(),
            tokenizer_fingerprint: s.fingerprint.clone(),
            max_new_tokens: 1024,
            mode: pb::AcceptanceMode::Greedy as i32,
            ..Default::default()
        };
        chan.tx
            .send(Box::new(pb::EdgeMessage {
                kind: Some(Up::Open(open)),
            }))
            .await
            .unwrap();
        let Some(Down::Opened(o)) = chan.rx.recv().await.unwrap().unwrap().kind else {
            panic!("no Opened")
        };
        let (mut len, mut last) = (o.committed_len, o.first_token);
        for seq in 0..64.min(iters - done) {
            let draft = pb::Draft {
                session_id: o.session_id,
                base_len: len,
                anchor: last,
                tokens: vec![5, 6, 7, 8],
                q: vec![],
                seq,
                parents: vec![],
            };
            let t0 = Instant::now();
            chan.tx
                .send(Box::new(pb::EdgeMessage {
                    kind: Some(Up::Draft(draft)),
                }))
                .await
                .unwrap();
            let Some(Down::Verdict(v)) = chan.rx.recv().await.unwrap().unwrap().kind else {
                panic!("no verdict")
            };
            total += t0.elapsed();
            len = v.committed_len;
            last = v.next_token;
            done += 1;
        }
    }
    total
}

fn benches(c: &mut Criterion) {
    let s = setup();
    let mut g = c.benchmark_group("verify_round");
    for (transport, t) in &s.targets {
        g.bench_function(format!("{transport:?}").to_lowercase(), |b| {
            b.iter_custom(|iters| s.rt.block_on(verify_rounds(t, &s, iters)))
        });
    }
    g.finish();
    let mut g = c.benchmark_group("generate_32");
    for (transport, t) in &s.targets {
        for strategy in [
            Strategy::CloudOnly,
            Strategy::Speculative { k: 4 },
            Strategy::Pipelined { k: 4 },
        ] {
            let cfg = GenerateConfig {
                strategy,
                prompt: s.prompt.clone(),
                max_new_tokens: 32,
                sampling: SamplingParams::greedy(),
                seed: 1,
                ignore_eos: true,
                deadline: Duration::from_secs(10),
                fallback: false,
                retry: Duration::from_secs(1),
            };
            let edge = Edge {
                device: None,
                draft: Some(&s.draft.model),
                verifier: Some(t.clone()),
            };
            let name = format!("{}/{}", format!("{transport:?}").to_lowercase(), strategy);
            let report =
                s.rt.block_on(tandem_draft::generate(&edge, &cfg, &mut |_, _| {}))
                    .unwrap();
            eprintln!("{name}: {} rounds", report.summary.rounds);
            g.bench_function(name, |b| {
                b.iter(|| {
                    s.rt.block_on(tandem_draft::generate(&edge, &cfg, &mut |_, _| {}))
                        .unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(loopback, benches);

#[allow(unsafe_code)]
fn main() {
    // SAFETY: first statement of main; no other thread exists yet.
    unsafe { tandem_models::cpu::init_threads() };
    loopback();
    Criterion::default().configure_from_args().final_summary();
}
