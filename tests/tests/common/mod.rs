//! Shared by the end-to-end tests: the shipped pair, a verifier on 127.0.0.1 with both
//! transports, plain target decoding as the reference, and a generation helper.
#![allow(dead_code)]

pub mod raw;
pub mod scrape;

use std::sync::OnceLock;
use std::time::Duration;

use tandem_decoding::SamplingParams;
use tandem_draft::{Edge, GenerateConfig, Report, Strategy, VerifierTarget};
use tandem_models::{LanguageModel, LoadOptions, Loaded, ModelSpec, Positions};
use tandem_protocol::client::{ConnectOptions, Endpoint, Transport};
use tandem_protocol::{Limits, LinkProfile};
use tandem_verifier::bounds::ClientBounds;
use tandem_verifier::{BatchPolicy, EngineConfig, EngineHandle, KvBudget, ListenConfig, Running};

pub const PROMPTS: &[&str] = &[
    "Once upon a time, there was a kind owl named",
    "Count by 3 from 12: 12 15",
    "The green box has a kite. The red box has a bell. The pink box has a map. Question: what is in the red box? Answer:",
    "Repeat after me: fox blue drum cup. Again:",
];

fn load(spec: &str) -> Loaded {
    spec.parse::<ModelSpec>()
        .unwrap()
        .load(&LoadOptions::default())
        .unwrap()
}

/// The shipped draft, loaded once per test binary.
pub fn draft() -> &'static Loaded {
    static D: OnceLock<Loaded> = OnceLock::new();
    D.get_or_init(|| load("builtin:tiny-draft"))
}

/// The shipped target (a reference copy; each verifier loads its own).
pub fn target() -> &'static Loaded {
    static T: OnceLock<Loaded> = OnceLock::new();
    T.get_or_init(|| load("builtin:tiny-target"))
}

/// A prompt's ids: BOS, then the text.
pub fn prompt_ids(text: &str) -> Vec<u32> {
    let t = target();
    let mut ids = vec![t.model.info().bos_token_id.unwrap()];
    ids.extend(t.tokenizer.encode(text).unwrap());
    ids
}

/// Plain greedy decoding with the target: the reference every lossless strategy must
/// reproduce token for token.
pub fn greedy_reference(prompt: &[u32], max_new: usize, ignore_eos: bool) -> Vec<u32> {
    greedy_with(&target().model, prompt, max_new, ignore_eos)
}

/// Plain greedy decoding with `model`, one token at a time.
pub fn greedy_with(
    model: &tandem_models::Llama,
    prompt: &[u32],
    max_new: usize,
    ignore_eos: bool,
) -> Vec<u32> {
    let mut cache = model.new_cache();
    let mut last = model.prefill(&mut cache, prompt).unwrap();
    let mut out = Vec::new();
    loop {
        let next = tandem_decoding::sampling::argmax(last.last());
        out.push(next);
        if out.len() == max_new || (!ignore_eos && model.info().eos_token_ids.contains(&next)) {
            return out;
        }
        last = model.forward(&mut cache, &[next], Positions::Last).unwrap();
    }
}

/// A verifier serving the shipped target on 127.0.0.1, both transports.
pub struct Verifier {
    pub running: Running,
    pub certs: tempfile::TempDir,
}

#[derive(Clone)]
pub struct VerifierOptions {
    pub limits: Limits,
    pub batch: BatchPolicy,
    pub idle_timeout: std::time::Duration,
    pub kv: KvBudget,
    pub max_queued: usize,
    pub auth_token: Option<String>,
    pub grpc: String,
    pub quic: String,
    pub bounds: ClientBounds,
    pub early_exit_layers: Vec<usize>,
}

impl Default for VerifierOptions {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            batch: BatchPolicy::default(),
            idle_timeout: tandem_verifier::DEFAULT_IDLE_TIMEOUT,
            kv: KvBudget::default(),
            max_queued: EngineConfig::new("").max_queued,
            auth_token: None,
            grpc: "127.0.0.1:0".into(),
            quic: "127.0.0.1:0".into(),
            bounds: ClientBounds::default(),
            early_exit_layers: Vec::new(),
        }
    }
}

impl VerifierOptions {
    /// Default options on the addresses `running` listens on: a restart in its place.
    pub fn in_place_of(running: &Running) -> Self {
        Self {
            grpc: running.grpc_addr.unwrap().to_string(),
            quic: running.quic_addr.unwrap().to_string(),
            ..Self::default()
        }
    }
}

pub async fn start_verifier(opts: VerifierOptions) -> Verifier {
    let certs = tempfile::tempdir().unwrap();
    let running = serve_in(opts, certs.path()).await;
    Verifier { running, certs }
}

/// A verifier whose QUIC certificate lives in `cert_dir` (reused if already there).
pub async fn serve_in(opts: VerifierOptions, cert_dir: &std::path::Path) -> Running {
    let engine = EngineHandle::start(
        load("builtin:tiny-target").model,
        EngineConfig {
            model_name: "builtin:tiny-target".into(),
            limits: opts.limits,
            batch: opts.batch,
            idle_timeout: opts.idle_timeout,
            kv: opts.kv,
            max_queued: opts.max_queued,
            early_exit_layers: opts.early_exit_layers,
            pace: None,
        },
    );
    tandem_verifier::serve(
        engine,
        ListenConfig {
            grpc: Some(opts.grpc.parse().unwrap()),
            quic: Some(opts.quic.parse().unwrap()),
            cert_dir: cert_dir.to_path_buf(),
            auth_token: opts.auth_token,
            metrics: Some("127.0.0.1:0".parse().unwrap()),
            bounds: opts.bounds,
        },
    )
    .await
    .unwrap()
}

impl Verifier {
    pub fn endpoint(&self, transport: Transport) -> Endpoint {
        let addr = match transport {
            Transport::Grpc => self.running.grpc_addr.unwrap(),
            Transport::Quic => self.running.quic_addr.unwrap(),
        };
        Endpoint::at(transport, addr)
    }

    pub fn target(&self, transport: Transport, link: Option<&str>) -> VerifierTarget {
        VerifierTarget {
            replicas: Vec::new(),
            endpoint: self.endpoint(transport),
            options: ConnectOptions {
                ca: self.running.cert_path.clone(),
                link: link.map(|l| l.parse::<LinkProfile>().unwrap()),
                link_seed: 5,
                ..Default::default()
            },
        }
    }
}

/// A generation config with test defaults: greedy, no fallback.
pub fn config(strategy: Strategy, prompt: Vec<u32>, max_new: usize) -> GenerateConfig {
    GenerateConfig {
        strategy,
        prompt,
        max_new_tokens: max_new,
        sampling: SamplingParams::greedy(),
        seed: 11,
        ignore_eos: false,
        deadline: Duration::from_secs(20),
        fallback: false,
        retry: Duration::from_millis(100),
    }
}

/// Runs one generation with the shipped draft against `target`.
pub async fn run(target: Option<VerifierTarget>, cfg: &GenerateConfig) -> Report {
    try_run(target, cfg).await.unwrap()
}

pub async fn try_run(
    target: Option<VerifierTarget>,
    cfg: &GenerateConfig,
) -> Result<Report, tandem_draft::DraftError> {
    try_run_with(target, cfg, &mut |_, _| {}).await
}

/// Like [`try_run`], calling `on_tokens` as tokens are committed (tests steer a run
/// from there: block in it until the test has done something).
pub async fn try_run_with(
    target: Option<VerifierTarget>,
    cfg: &GenerateConfig,
    on_tokens: &mut (dyn FnMut(&[u32], bool) + Send),
) -> Result<Report, tandem_draft::DraftError> {
    let edge = Edge {
        device: None,
        draft: Some(&draft().model),
        verifier: target,
    };
    tandem_draft::generate(&edge, cfg, on_tokens).await
}

/// Checks a greedy run that may have gone on alone for a while: every stretch of
/// verified tokens equals the target's greedy continuation of everything committed
/// before it (unverified tokens included). Returns the number of verified tokens.
pub fn assert_verified_exact(report: &Report) -> usize {
    let out = &report.output_ids;
    let unverified: std::collections::HashSet<usize> = report.unverified.iter().copied().collect();
    let mut verified = 0;
    let mut i = 0;
    while i < out.len() {
        if unverified.contains(&i) {
            i += 1;
            continue;
        }
        let end = (i..out.len())
            .find(|j| unverified.contains(j))
            .unwrap_or(out.len());
        let mut context = report.prompt_ids.clone();
        context.extend_from_slice(&out[..i]);
        assert_eq!(
            &out[i..end],
            greedy_reference(&context, end - i, true).as_slice(),
            "verified tokens {i}..{end} are not the target's greedy continuation"
        );
        verified += end - i;
        i = end;
    }
    verified
}

/// A sampled session replayed in process, as the verifier runs it: the shipped draft
/// on the request's draft stream, the target's cache after the prompt, the verifier's
/// stream, and the committed sequence (the prompt and the target's first token).
pub struct Replay {
    pub drafter: tandem_draft::drafter::Drafter<'static, tandem_models::Llama>,
    pub rng: tandem_decoding::SessionRng,
    pub cache: <tandem_models::Llama as LanguageModel>::Cache,
    pub committed: Vec<u32>,
    prompt_len: usize,
    eos: Vec<u32>,
}

impl Replay {
    pub fn start(prompt: &[u32], sampling: SamplingParams, seed: u64) -> Self {
        use tandem_decoding::{SessionRng, rng::stream};
        let t = &target().model;
        let drafter = tandem_draft::drafter::Drafter::new(
            &draft().model,
            sampling,
            SessionRng::for_stream(seed, stream::DRAFT),
        );
        let mut rng = SessionRng::for_stream(seed, stream::VERIFY);
        let mut cache = t.new_cache();
        let first = sampling
            .distribution(t.prefill(&mut cache, prompt).unwrap().last())
            .sample(&mut rng);
        Replay {
            drafter,
            rng,
            cache,
            committed: [prompt, &[first]].concat(),
            prompt_len: prompt.len(),
            eos: t.info().eos_token_ids.clone(),
        }
    }

    /// Tokens generated so far.
    pub fn generated(&self) -> usize {
        self.committed.len() - self.prompt_len
    }

    /// Whether the session has more to generate, up to `max_new` tokens.
    pub fn goes_on(&self, max_new: usize) -> bool {
        let ended = self.committed[self.prompt_len..]
            .iter()
            .any(|t| self.eos.contains(t));
        self.generated() < max_new && !ended
    }

    /// The output as the edge reports it: cut after the first EOS and at `max_new`.
    pub fn output(&self, max_new: usize) -> Vec<u32> {
        let mut output = self.committed[self.prompt_len..].to_vec();
        if let Some(at) = output.iter().position(|t| self.eos.contains(t)) {
            output.truncate(at + 1);
        }
        output.truncate(max_new);
        output
    }
}
