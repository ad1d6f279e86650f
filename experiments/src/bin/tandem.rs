//! `tandem`: the researcher's command line.

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use tandem_experiments::predict::{self, Setting};

/// Speculative edge-cloud decoding: predict, run and report experiments.
#[derive(Parser, Debug)]
#[command(name = "tandem", version, about, long_about = None)]
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
    Predict(PredictArgs),
}

#[derive(Args, Debug)]
struct PredictArgs {
    /// Per-token acceptance probability α (mean accepted length 1 + α + … + α^k).
    #[arg(long, default_value_t = 0.8)]
    alpha: f64,
    /// Draft lengths to compare, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3,4,6,8")]
    k: Vec<usize>,
    /// Time of one draft step on the edge, ms.
    #[arg(long, default_value_t = 72.0)]
    draft_ms: f64,
    /// Time of one plain decoding step of the target in the cloud, ms.
    #[arg(long, default_value_t = 25.0)]
    target_ms: f64,
    /// Verification pass, fixed part, ms.
    #[arg(long, default_value_t = 620.0)]
    verify_ms: f64,
    /// Verification pass, additional time per verified token, ms.
    #[arg(long, default_value_t = 0.0)]
    verify_ms_per_token: f64,
    /// Round-trip time between edge and cloud, ms.
    #[arg(long, default_value_t = 120.0)]
    rtt_ms: f64,
    /// Link bandwidth each way, Mbit/s (`inf` for unlimited).
    #[arg(long, default_value_t = f64::INFINITY)]
    bandwidth_mbps: f64,
    /// Bytes on the wire per drafted token (4 for an id; add 8 per q entry in
    /// stochastic mode).
    #[arg(long, default_value_t = 4.0)]
    bytes_per_token: f64,
    /// Framing bytes per block and per verdict.
    #[arg(long, default_value_t = 32.0)]
    bytes_per_message: f64,
}

impl From<PredictArgs> for Setting {
    fn from(a: PredictArgs) -> Self {
        Setting {
            alpha: a.alpha,
            ks: a.k,
            draft_ms: a.draft_ms,
            target_ms: a.target_ms,
            verify_ms: a.verify_ms,
            verify_ms_per_token: a.verify_ms_per_token,
            rtt_ms: a.rtt_ms,
            bandwidth_mbps: a.bandwidth_mbps,
            bytes_per_token: a.bytes_per_token,
            bytes_per_message: a.bytes_per_message,
        }
    }
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Predict(args) => {
            let setting = Setting::from(args);
            if let Err(msg) = setting.validate() {
                bail!(msg);
            }
            print!("{}", predict::render(&setting));
        }
    }
    Ok(())
}
