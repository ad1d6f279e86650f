//! The options of `draft-node generate` (and `tandem generate`), and what they do.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use tandem_decoding::policy::PolicySpec;
use tandem_decoding::{SamplingParams, TreeShape};
use tandem_models::{
    DeviceChoice, LayerSelection, LoadOptions, Loaded, Message, ModelSpec, Placement, Precision,
    StreamDecoder, Tokenizer,
};
use tandem_protocol::LinkProfile;
use tandem_protocol::client::{ConnectOptions, Endpoint};

use crate::generate::{Edge, GenerateConfig, generate};
use crate::record::Report;
use crate::remote::VerifierTarget;
use crate::route::{Choice, RouteSpec, Router};
use crate::strategy::StrategyKind;
use crate::{DraftError, Strategy};

/// How to generate: strategy, prompt, sampling, link, output.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    /// Draft model: an HF directory, a .gguf file (tokenizer, special tokens and chat
    /// template read from its metadata; a tokenizer.json beside it wins), or
    /// builtin:tiny-draft. Not needed for cloud_only.
    #[arg(long, value_name = "MODEL")]
    pub draft: Option<ModelSpec>,
    /// Draft with only these layers of --draft, e.g. 0-7 or 0-5,27-29: give the target's
    /// own checkpoint as --draft for a self-drafted pair (early-exit / layer-skip
    /// drafting; the tokenizer is shared by construction).
    #[arg(long, value_name = "SPEC", requires = "draft")]
    pub draft_layers: Option<LayerSelection>,
    /// Where the models this command loads run: cpu, or cuda / cuda:N in a build with
    /// the `cuda` feature (tools/build-cuda.sh).
    #[arg(long, default_value = "cpu", value_name = "cpu|cuda[:N]")]
    pub device: DeviceChoice,
    /// Their precision. Default: f32 on the CPU, bf16 on a GPU (a GGUF file's quantized
    /// weights stay quantized at f32 and are dequantized at bf16 or f16).
    #[arg(long, value_name = "f32|bf16|f16")]
    pub dtype: Option<Precision>,
    /// cloud_only, edge_only, speculative, adaptive, pipelined, early_exit (pre-draft on
    /// the verifier's provisional verdicts: verifier-node --early-exit-layer), tree (a
    /// token tree a round, --tree), or routed (a tier per prompt, chosen here on the
    /// edge by --route's rules).
    #[arg(long, default_value = "speculative", value_name = "STRATEGY")]
    pub strategy: String,
    /// routed: the rules, a TOML file with the keys of an experiment's
    /// `[strategy.route]` (private, tight_slo_ms, tight_slo, [tags], long_prompt_tokens,
    /// long, slo_tpot_ms, over_slo, default, alpha, draft_ms, target_ms, verify_ms);
    /// absent: every default.
    #[arg(long, value_name = "FILE")]
    pub route: Option<PathBuf>,
    /// routed: the prompt's tags, comma-separated (its data class, its task); a prompt
    /// tagged `private` stays on this device.
    #[arg(long, default_value = "", value_name = "TAGS")]
    pub tag: String,
    /// routed: this request's latency SLO, ms (a rule may keep a tight one local).
    #[arg(long, value_name = "MS")]
    pub slo_ms: Option<f64>,
    /// Draft length for speculative, pipelined and early_exit.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub k: usize,
    /// early_exit: act on the provisional verdict of the verifier's exit after this
    /// layer (one of its --early-exit-layer); default: the first to come.
    #[arg(long, value_name = "L")]
    pub exit_layer: Option<u32>,
    /// tree: the tree each round: a branching per depth (3,2,2,1: the draft's 3 best
    /// candidates, 2 after each, ...), dynamic:N[:DEPTH] (EAGLE-2: the N likeliest
    /// nodes; greedy only) or auto[:N] (a tree of at most N nodes sized each round by
    /// the link's round trip, the verifier's pass time, the draft's time and the
    /// acceptance so far; greedy: its nodes picked as dynamic's are).
    #[arg(long, value_name = "SHAPE")]
    pub tree: Option<TreeShape>,
    /// Draft-length policy for adaptive: fixed:K, +2/-1[:MAX], p_min:P[:MAX], goodput[:MAX].
    #[arg(long, value_name = "POLICY")]
    pub policy: Option<PolicySpec>,
    /// Prompt text (tokenized with the draft's tokenizer, or --tokenizer).
    #[arg(
        long,
        value_name = "TEXT",
        conflicts_with = "prompt_ids",
        required_unless_present = "prompt_ids"
    )]
    pub prompt: Option<String>,
    /// Prompt as token ids, e.g. 0,52,17 (nothing is prepended).
    #[arg(long, value_name = "IDS", value_delimiter = ',')]
    pub prompt_ids: Option<Vec<u32>>,
    /// Send --prompt as a user message through the model's chat template (and stop at
    /// its end-of-turn token). A model without a template is an error.
    #[arg(long, conflicts_with = "prompt_ids")]
    pub chat: bool,
    /// With --chat: a system message before the prompt.
    #[arg(long, value_name = "TEXT", requires = "chat")]
    pub system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 is greedy (the default).
    #[arg(long, default_value_t = 0.0, value_name = "T")]
    pub temperature: f32,
    /// Keep the K most likely tokens (0: off).
    #[arg(long, default_value_t = 0, value_name = "K")]
    pub top_k: usize,
    /// Nucleus sampling mass (1: off).
    #[arg(long, default_value_t = 1.0, value_name = "P")]
    pub top_p: f32,
    /// Drop tokens below P times the top probability (0: off).
    #[arg(long, default_value_t = 0.0, value_name = "P")]
    pub min_p: f32,
    /// Seed of every random stream (sampling, acceptance, link jitter and loss).
    #[arg(long, default_value_t = 0, value_name = "S")]
    pub seed: u64,
    /// Do not stop at end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Emulated link: lan, wifi, 5g, lte, wan, satellite, or
    /// delay=MS,jitter=MS,up=MBPS,down=MBPS,loss=P.
    #[arg(long, value_name = "PROFILE")]
    pub link: Option<LinkProfile>,
    /// Print one JSON object (ids, text, rounds, summary) instead of streaming text.
    #[arg(long)]
    pub json: bool,
    /// Bearer token for the verifier (first line of the file).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// How long to wait for the verifier before going on with the draft alone, ms.
    #[arg(long, default_value_t = 5000, value_name = "MS")]
    pub deadline_ms: u64,
    /// Longest wait between tries to reach the verifier again while going on alone, ms
    /// (the first try comes 0.5 ms after the loss, each next one twice as late, up to
    /// this).
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    pub retry_ms: u64,
    /// Fail instead of going on alone when the verifier is lost.
    #[arg(long)]
    pub no_fallback: bool,
    /// tokenizer.json, or a .gguf file whose metadata holds the tokenizer (its weights are
    /// not read), for --prompt when there is no draft model (cloud_only).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
}

impl GenerateArgs {
    /// The strategy (or the router) these options name.
    pub fn choice(&self) -> Result<Choice, DraftError> {
        if StrategyKind::parse(&self.strategy) == Some(StrategyKind::Routed) {
            let spec = match &self.route {
                Some(path) => RouteSpec::from_file(path).map_err(DraftError::Usage)?,
                None => RouteSpec::default(),
            };
            let router = Router::new(&spec).map_err(|(key, message)| {
                DraftError::Usage(format!("--route: {key}: {message}"))
            })?;
            return Ok(Choice::Routed(Box::new(router)));
        }
        if self.route.is_some() {
            return Err(DraftError::Usage("--route is for --strategy routed".into()));
        }
        match Strategy::from_parts(&self.strategy, self.k, self.policy) {
            Ok(Strategy::EarlyExit { k, .. }) => Ok(Choice::One(Strategy::EarlyExit {
                k,
                exit: self.exit_layer,
            })),
            Ok(_) if self.exit_layer.is_some() => Err(DraftError::Usage(
                "--exit-layer is for --strategy early_exit".into(),
            )),
            Ok(Strategy::Tree { shape }) => Ok(Choice::One(Strategy::Tree {
                shape: self.tree.unwrap_or(shape),
            })),
            Ok(_) if self.tree.is_some() => {
                Err(DraftError::Usage("--tree is for --strategy tree".into()))
            }
            Ok(s) => Ok(Choice::One(s)),
            Err(e) => Err(DraftError::Usage(e)),
        }
    }

    /// Sampling parameters.
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
        }
    }

    /// Connection options for `endpoint` (`ca`: the certificate for QUIC).
    pub fn target(
        &self,
        endpoint: Endpoint,
        ca: Option<PathBuf>,
    ) -> Result<VerifierTarget, DraftError> {
        let auth_token = self
            .auth_token_file
            .as_deref()
            .map(crate::remote::token_from_file)
            .transpose()?;
        Ok(VerifierTarget {
            replicas: Vec::new(),
            endpoint,
            options: ConnectOptions {
                ca,
                auth_token,
                link: self.link.clone(),
                link_seed: self.seed,
                max_message_bytes: 0,
            },
        })
    }

    /// `--device` and `--dtype`.
    pub fn placement(&self) -> Placement {
        Placement {
            device: self.device,
            precision: self.dtype,
        }
    }

    /// How to load `--draft` (its device opened).
    pub fn draft_options(&self) -> Result<LoadOptions, tandem_models::ModelError> {
        Ok(LoadOptions {
            layers: self.draft_layers.clone(),
            ..self.placement().load_options()?
        })
    }

    /// The prompt's token ids: `--prompt-ids` as given; with `--chat`, the prompt rendered
    /// by the chat template (which places any BOS itself); otherwise `--prompt` tokenized
    /// with a BOS in front when the model adds one.
    pub fn prompt_ids(
        &self,
        tokenizer: Option<&Tokenizer>,
        bos: Option<u32>,
    ) -> Result<Vec<u32>, DraftError> {
        if let Some(ids) = &self.prompt_ids {
            return Ok(ids.clone());
        }
        let text = self.prompt.as_deref().unwrap_or_default();
        let tok = tokenizer.ok_or_else(|| {
            DraftError::Usage(
                "--prompt needs a tokenizer: give --draft or --tokenizer, or pass --prompt-ids"
                    .into(),
            )
        })?;
        if self.chat {
            let messages = Message::conversation(self.system.as_deref(), text);
            return Ok(tok.encode_chat(&messages)?);
        }
        let mut ids: Vec<u32> = bos.into_iter().collect();
        ids.extend(tok.encode(text)?);
        Ok(ids)
    }
}

/// Runs one generation and writes it out: text streamed to stdout as it is committed
/// (unverified tokens dimmed on a terminal) and a summary on stderr; or, with
/// `--json`, one JSON object on stdout at the end.
pub async fn run(
    args: &GenerateArgs,
    draft: Option<&Loaded>,
    verifier: Option<VerifierTarget>,
    tokenizer: Option<&Tokenizer>,
    prompt: Vec<u32>,
) -> Result<Report, DraftError> {
    let link = args
        .link
        .clone()
        .unwrap_or_else(|| LinkProfile::named("loopback").expect("a named profile"));
    let request = crate::route::Request {
        tag: &args.tag,
        prompt_tokens: prompt.len(),
        slo_ms: args.slo_ms,
    };
    let (strategy, why) = args.choice()?.pick(&request, &link);
    if let Some(why) = why {
        tracing::info!("routed: {strategy} ({why})");
        if !args.json {
            eprintln!("routed to {strategy} ({why})");
        }
    }
    let cfg = GenerateConfig {
        strategy,
        prompt,
        max_new_tokens: args.max_new_tokens,
        sampling: args.sampling(),
        seed: args.seed,
        ignore_eos: args.ignore_eos,
        deadline: Duration::from_millis(args.deadline_ms),
        fallback: !args.no_fallback,
        retry: Duration::from_millis(args.retry_ms),
    };
    let edge = Edge {
        device: None,
        draft: draft.map(|l| &l.model),
        // A strategy that needs no verifier (edge_only, a private prompt's tier) never
        // reaches it, not even for the first token.
        verifier: verifier.filter(|_| strategy.needs_verifier()),
    };
    let stream = !args.json;
    let dim = stream && std::io::stdout().is_terminal();
    let mut decoder: Option<StreamDecoder> = tokenizer.map(|t| t.stream());
    let mut on_tokens = |tokens: &[u32], verified: bool| {
        if !stream {
            return;
        }
        let mut out = std::io::stdout().lock();
        let mut text = String::new();
        for &t in tokens {
            match decoder.as_mut() {
                Some(d) => text.push_str(&d.push(t).unwrap_or_default()),
                None => text.push_str(&format!("{t} ")),
            }
        }
        let _ = if dim && !verified {
            write!(out, "\x1b[2m{text}\x1b[0m")
        } else {
            write!(out, "{text}")
        };
        let _ = out.flush();
    };
    let mut report = generate(&edge, &cfg, &mut on_tokens).await?;
    if let Some(tok) = tokenizer {
        report.text = tok.decode(&report.output_ids)?;
    }
    if stream {
        if let Some(d) = decoder.as_mut() {
            print!("{}", d.finish().unwrap_or_default());
        }
        println!();
        eprintln!("{}", summary_line(&report));
    } else {
        println!(
            "{}",
            serde_json::to_string(&report).expect("a report always serialises")
        );
    }
    Ok(report)
}

/// The closing summary, for people.
pub fn summary_line(r: &Report) -> String {
    let s = &r.summary;
    let mut line = format!(
        "[{}] {} tokens in {} rounds ({}) | TTFT {:.1} ms | TPOT {:.2} ms | end-to-end {:.1} ms | {} B up, {} B down",
        r.strategy,
        s.tokens,
        s.rounds,
        s.stop,
        s.ttft_ms,
        s.tpot_ms,
        s.e2e_ms,
        s.bytes_up,
        s.bytes_down
    );
    if s.drafted > 0 {
        line.push_str(&format!(
            " | acceptance {:.3}, mean accepted length {:.2}",
            s.acceptance_rate, s.mean_accepted_length
        ));
    }
    if s.provisional > 0 {
        line.push_str(&format!(
            " | {} of {} provisional verdicts agreed",
            s.provisional_agreed, s.provisional
        ));
    }
    if s.unverified_tokens > 0 {
        line.push_str(&format!(
            " | {} unverified tokens, {} fallbacks, {} resyncs",
            s.unverified_tokens, s.fallbacks, s.resyncs
        ));
    }
    if let Some(why) = s.draft_stop {
        line.push_str(&format!(
            " | went on in the cloud after {:.0} ms ({why})",
            s.to_cloud_at_ms
        ));
    }
    line
}
