//! `tandem`: the researcher's command line.

mod generate;
mod model;
mod run;

use anyhow::{Result, bail};
use clap::{Parser, Subcommand};
use generate::LocalGenerateArgs;
use model::{QuantizeArgs, TrainTinyArgs};
use run::RunArgs;
use tandem_experiments::predict::{self, Setting};

/// Tandem: speculative edge-cloud decoding, measured. Predict, train models, run and
/// report experiments.
#[derive(Parser, Debug)]
#[command(name = "tandem", version, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Predict per-token latency of speculative vs cloud-only decoding from the
    /// analytical model (Leviathan et al. 2023, with a network between draft and target).
    ///
    /// The defaults take drafting, verification and communication times from arXiv
    /// 2505.21594 (Jetson Nano draft, A100 target: drafting 288 ms for k = 4,
    /// verification 620 ms, communication 120 ms). The cloud decoding step (25 ms) is an
    /// assumption, not from the paper: set --target-ms to your own measurement.
    Predict(Setting),
    /// Train the shipped tiny target/draft pair (seeded corpus, byte-level BPE, candle
    /// on the CPU) and write them in HF layout.
    TrainTiny(TrainTinyArgs),
    /// Convert an HF-layout model to a quantized GGUF file for an edge draft.
    Quantize(QuantizeArgs),
    /// Generate with a draft model and a target, the verifier running in this process
    /// behind a loopback socket (the options of `draft-node generate`, plus --target).
    Generate(Box<LocalGenerateArgs>),
    /// Run an experiment config: every cell of its grid, written to
    /// OUT/<name>/<run-id>/ (Parquet rounds and requests, summary.csv, report.md,
    /// manifest.json). Prints the results folder last.
    Run(RunArgs),
    /// Redraw the figures and report.md of a results folder (tandem run does this at
    /// its end).
    Report {
        /// The results folder (OUT/<name>/<run-id>).
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
    /// Fit the simulator to a real run's own records (pass times, acceptance by
    /// position, draft step, transport time, token trees' acceptance by sibling rank;
    /// a greedy run's draft outcomes, replayed) and replay its grid on the virtual
    /// clock:
    /// writes resimulation.csv (each cell measured and simulated: TTFT, TPOT p50 and
    /// p90, tokens/s, acceptance, relative errors) and resimulation.toml (the fitted
    /// [simulation] table) into the folder, and redraws its report.
    Resimulate {
        /// The results folder of a real run (OUT/<name>/<run-id>).
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

/// The simulator allocates and frees a few small objects per event (tasks, timers,
/// messages): mimalloc makes a 100 000-client cell take half the time glibc's
/// allocator does, and hands freed memory back.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[allow(unsafe_code)]
fn main() -> Result<()> {
    // SAFETY: first statement of main; no other thread exists yet.
    unsafe { tandem_models::cpu::init_threads() };
    match Cli::parse().command {
        Command::Predict(setting) => {
            if let Err(msg) = setting.validate() {
                bail!(msg);
            }
            print!("{}", predict::render(&setting));
        }
        Command::TrainTiny(args) => model::train(&args)?,
        Command::Quantize(args) => model::quantize(&args)?,
        Command::Generate(args) => {
            logging("warn");
            tokio::runtime::Runtime::new()?.block_on(generate::generate(*args))?
        }
        Command::Report { dir } => {
            let written = tandem_experiments::report::from_dir(&dir)?;
            if let Some(why) = written.skipped {
                bail!("figures not drawn: {why}");
            }
            println!("{}", dir.join("report.md").display());
        }
        Command::Resimulate { dir } => {
            let r = tandem_experiments::resimulate::resimulate(&dir)?;
            let written = tandem_experiments::report::from_dir(&dir)?;
            if let Some(why) = written.skipped {
                bail!("figures not drawn: {why}");
            }
            for line in r.describe() {
                eprintln!("fitted, {line}");
            }
            for c in &r.cells {
                let (measured, simulated) = c.tpot();
                eprintln!(
                    "{:<24} {:<8} {:>3} clients: TPOT p50 {:.3} ms measured, {:.3} ms simulated ({:+.1} %)",
                    c.strategy,
                    c.network,
                    c.clients,
                    measured,
                    simulated,
                    c.tpot_error() * 100.0
                );
            }
            println!(
                "{}",
                dir.join(tandem_experiments::resimulate::CSV).display()
            );
        }
        Command::Run(args) => {
            // Fallbacks are recorded per round; warnings would break the progress bar.
            logging("error");
            tokio::runtime::Runtime::new()?.block_on(run::run(args))?
        }
    }
    Ok(())
}

/// Logs at `level` and above to stderr (RUST_LOG overrides).
fn logging(level: &str) {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
}
