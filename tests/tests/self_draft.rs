//! A real pair from one real checkpoint: SmolLM2-135M-Instruct Q4_1 (the GGUF llama.cpp's
//! converter wrote, fetched on first use) as the verifier's target, and its own first
//! layers as the edge's draft (`--draft-layers`). Greedy speculative decoding over gRPC
//! and QUIC, with chat-templated prompts, must equal the target's plain greedy decoding
//! token for token, and stop at the template's end-of-turn token.

mod common;

use std::sync::OnceLock;

use tandem_draft::{Edge, Strategy, VerifierTarget};
use tandem_models::fetch::SMOLLM2_135M_Q4_1;
use tandem_models::{LanguageModel, LayerSelection, LoadOptions, Loaded, Message, ModelSpec};
use tandem_protocol::client::{ConnectOptions, Endpoint, Transport};
use tandem_verifier::{EngineConfig, EngineHandle, ListenConfig};

const NEW: usize = 24;

fn spec() -> ModelSpec {
    let path = SMOLLM2_135M_Q4_1
        .fetch()
        .unwrap_or_else(|e| panic!("the SmolLM2 checkpoint is needed for this test: {e}"));
    ModelSpec::Gguf(path)
}

fn target() -> &'static Loaded {
    static T: OnceLock<Loaded> = OnceLock::new();
    T.get_or_init(|| spec().load(&LoadOptions::default()).unwrap())
}

fn draft(layers: &str) -> Loaded {
    let opts = LoadOptions {
        layers: Some(layers.parse::<LayerSelection>().unwrap()),
        ..LoadOptions::default()
    };
    spec().load(&opts).unwrap()
}

fn chat_prompt(user: &str) -> Vec<u32> {
    target()
        .tokenizer
        .encode_chat(&[Message::new("user", user)])
        .unwrap()
}

async fn check(transport: Transport) {
    let certs = tempfile::tempdir().unwrap();
    let engine = EngineHandle::start(target().model.clone(), EngineConfig::new("smollm2"));
    let running = tandem_verifier::serve(engine, ListenConfig::loopback(certs.path()))
        .await
        .unwrap();
    let addr = match transport {
        Transport::Grpc => running.grpc_addr.unwrap(),
        Transport::Quic => running.quic_addr.unwrap(),
    };
    let d = draft("0-9");
    assert!(d.model.info().name.ends_with("[layers 0-9]"));
    assert_eq!(d.model.config().num_layers, 10);
    let (mut drafted, mut accepted) = (0, 0);
    for user in ["What is the capital of France?", "Name three colours."] {
        let prompt = chat_prompt(user);
        let want = common::greedy_with(&target().model, &prompt, NEW, false);
        for strategy in [Strategy::Speculative { k: 4 }, Strategy::Pipelined { k: 3 }] {
            let edge = Edge {
                device: None,
                draft: Some(&d.model),
                verifier: Some(VerifierTarget {
                    replicas: Vec::new(),
                    endpoint: Endpoint::at(transport, addr),
                    options: ConnectOptions {
                        ca: running.cert_path.clone(),
                        ..Default::default()
                    },
                }),
            };
            let cfg = common::config(strategy, prompt.clone(), NEW);
            let report = tandem_draft::generate(&edge, &cfg, &mut |_, _| {})
                .await
                .unwrap();
            assert_eq!(
                report.output_ids, want,
                "{strategy} over {transport:?}: {user:?}"
            );
            drafted += report.summary.drafted;
            accepted += report.summary.accepted;
        }
    }
    // The self-draft is a real draft: it agrees with its target often, not always.
    assert!(accepted > 0 && accepted < drafted, "{accepted}/{drafted}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_drafted_smollm2_over_grpc_is_target_greedy() {
    check(Transport::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn self_drafted_smollm2_over_quic_is_target_greedy() {
    check(Transport::Quic).await;
}
