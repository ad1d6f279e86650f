//! `draft-node`: the edge side of Tandem. Runs a draft model and generates with a
//! verifier over gRPC or QUIC, under a chosen strategy.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use tandem_draft::cli::{GenerateArgs, run};
use tandem_models::LanguageModel;
use tandem_protocol::client::{Connection, Endpoint, Transport};

#[derive(Debug, Parser)]
#[command(
    name = "draft-node",
    version,
    about = "Tandem's edge node: drafts tokens with a small model and has a remote verifier check them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate from a prompt, streaming the text as it is committed.
    Generate(Args),
}

#[derive(Debug, clap::Args)]
struct Args {
    /// The verifier: grpc://HOST:PORT or quic://HOST:PORT. Not needed for edge_only.
    /// Several, comma-separated, are replicas of one target: each connection goes to
    /// the next in turn (the first one the seed picks), skipping those that cannot be
    /// reached, so a session lost with its replica re-joins on another.
    #[arg(long, value_name = "URL[,URL...]", value_delimiter = ',')]
    verifier: Vec<Endpoint>,
    /// QUIC: the verifier's certificate to trust (its --ca-dir/cert.pem).
    /// Default: .tandem/certs/cert.pem when it exists.
    #[arg(long, value_name = "FILE")]
    ca: Option<PathBuf>,
    #[command(flatten)]
    generate: GenerateArgs,
}

#[allow(unsafe_code)]
fn main() -> Result<()> {
    // SAFETY: first statement of main; no other thread exists yet.
    unsafe { tandem_models::cpu::init_threads() };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let Command::Generate(args) = Cli::parse().command;
    tokio::runtime::Runtime::new()?.block_on(generate(args))
}

async fn generate(args: Args) -> Result<()> {
    let g = &args.generate;
    let strategy = g.choice()?;
    if strategy.needs_verifier() && args.verifier.is_empty() {
        bail!(
            "--strategy {} needs --verifier grpc://HOST:PORT or quic://HOST:PORT",
            g.strategy
        );
    }
    let draft = match &g.draft {
        Some(spec) => Some(
            g.draft_options()
                .and_then(|opts| spec.load(&opts))
                .with_context(|| format!("loading the draft {spec} on {}", g.placement()))?,
        ),
        None if strategy.needs_draft() => bail!("--strategy {} needs --draft MODEL", g.strategy),
        None => None,
    };
    let target = match args.verifier.split_first() {
        Some((ep, replicas)) => {
            let quic = args.verifier.iter().any(|e| e.transport == Transport::Quic);
            let ca = tandem_draft::remote::ca_or_default(args.ca.clone(), quic);
            let mut target = g.target(ep.clone(), ca)?;
            target.replicas = replicas.to_vec();
            Some(target)
        }
        None => None,
    };
    let file_tokenizer = match &g.tokenizer {
        Some(path)
            if path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("gguf")) =>
        {
            Some(tandem_models::load::gguf_tokenizer(path)?)
        }
        Some(path) => Some(tandem_models::Tokenizer::from_file(path)?),
        None => None,
    };
    let tokenizer = draft
        .as_ref()
        .map(|d| &d.tokenizer)
        .or(file_tokenizer.as_ref());
    let bos = match (&draft, &target) {
        (Some(d), _) => d.model.info().bos_token_id,
        (None, Some(t)) if g.prompt_ids.is_none() => {
            // Tokenizing without a model: the verifier says which BOS to prepend.
            let conn = Connection::connect(&t.endpoint, t.options.clone()).await?;
            conn.info().await?.bos_token_id
        }
        _ => None,
    };
    let prompt = g.prompt_ids(tokenizer, bos)?;
    run(g, draft.as_ref(), target, tokenizer, prompt).await?;
    Ok(())
}
