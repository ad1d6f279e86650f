//! `tandem run CONFIG`: validate, run the grid with a progress bar, write the results
//! folder, print its path last. Ctrl-C stops after the requests in flight and leaves a
//! folder marked partial; a second Ctrl-C exits at once.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};

use tandem_experiments::config::Config;
use tandem_experiments::plan::Cell;
use tandem_experiments::run::{Progress, RunOptions};

/// Options of `tandem run`.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The experiment config (TOML; see experiments/configs/quickstart.toml).
    #[arg(value_name = "CONFIG")]
    pub config: PathBuf,
    /// Results root: the run writes OUT/<name>/<run-id>/.
    #[arg(long, default_value = "results", value_name = "OUT")]
    pub out: PathBuf,
    /// Validate the config and list the grid's cells, then stop.
    #[arg(long)]
    pub dry_run: bool,
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn cell(&self, cell: &Cell, of: usize) {
        let device = if cell.device.is_empty() {
            String::new()
        } else {
            format!(" on {}", cell.device)
        };
        self.0.set_message(format!(
            "cell {}/{of}: {} over {}{device}",
            cell.index + 1,
            cell.name,
            cell.network
        ));
    }

    fn request_done(&self) {
        self.0.inc(1);
    }
}

/// Runs `tandem run`.
pub async fn run(args: RunArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let cells = tandem_experiments::plan::cells(&config);
    if args.dry_run {
        for c in &cells {
            let clients = match c.clients {
                0 => "open loop".to_string(),
                n => format!("{n} clients"),
            };
            println!(
                "{:>3}  rep {}  {:<24} {:<10} {:<11} {}",
                c.index, c.repetition, c.name, c.network, clients, c.device
            );
        }
        println!(
            "{} cells × {} requests: the config is valid",
            cells.len(),
            config.workload.requests
        );
        return Ok(());
    }
    let total = (cells.len() * config.workload.requests) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {pos}/{len} requests, ETA {eta}  {msg}")
            .expect("a valid template"),
    );
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let note = bar.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            flag.store(true, Ordering::Relaxed);
            note.println("stopping after the requests in flight (Ctrl-C again to quit now)");
            if tokio::signal::ctrl_c().await.is_ok() {
                std::process::exit(130);
            }
        }
    });
    let opts = RunOptions {
        config_path: args.config.clone(),
        out: args.out.clone(),
    };
    let outcome = tandem_experiments::run::run(&config, &opts, stop, Arc::new(Bar(bar.clone())))
        .await
        .with_context(|| format!("running {}", args.config.display()))?;
    bar.finish_and_clear();
    let failed = outcome
        .requests
        .iter()
        .filter(|r| !r.error.is_empty())
        .count();
    if failed > 0 {
        eprintln!("{failed} request(s) failed: see the error column of requests.parquet");
    }
    if !outcome.complete {
        eprintln!("partial run: only the cells that finished were written");
    }
    println!("{}", outcome.dir.display());
    Ok(())
}
