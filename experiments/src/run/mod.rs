//! The runner behind `tandem run`: loads the models, starts the verifier (or connects to
//! one), runs every cell of the grid, and writes the results folder.
//!
//! Requests of a cell run concurrently (closed-loop clients or Poisson arrivals);
//! cells run one after another. A request's seed depends only on the config's seed,
//! the repetition and the request's index, so every cell sees the same prompts with
//! the same seeds and the same config gives the same tokens.

mod real;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::SystemTime;

use tandem_draft::VerifierTarget;
use tandem_models::{LanguageModel, LayerSelection, Llama, LoadOptions, ModelSpec, Placement};
use tandem_protocol::ConnectOptions;
use tandem_protocol::client::{Endpoint, Transport};
use tandem_verifier::{EngineConfig, EngineHandle, ListenConfig, Running};

use crate::config::Config;
use crate::plan::Cell;
use crate::results::{RequestRow, RoundRow};
use crate::workload::{Prompt, load_prompts};

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A model, prompt file or verifier could not be used.
    #[error("{0}")]
    Setup(String),
    /// Writing the results failed.
    #[error("writing results: {0}")]
    Io(#[from] std::io::Error),
    /// The report could not be written.
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// Building a table failed.
    #[error("building a results table: {0}")]
    Table(#[from] polars::prelude::PolarsError),
}

/// Where the results go and what the run is called.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The config file (relative prompt paths start from its folder).
    pub config_path: PathBuf,
    /// Results root: the run writes `<out>/<name>/<run-id>/`.
    pub out: PathBuf,
}

/// What a run produced.
#[derive(Debug)]
pub struct Outcome {
    /// The results folder.
    pub dir: PathBuf,
    /// False when stopped early: the folder then holds the cells that finished.
    pub complete: bool,
    /// Every request of every finished cell.
    pub requests: Vec<RequestRow>,
    /// Every round.
    pub rounds: Vec<RoundRow>,
    /// What the report drew.
    pub report: crate::report::Written,
}

/// Progress, for a bar: requests done out of all, and the cell running.
pub trait Progress: Send + Sync {
    /// A cell starts.
    fn cell(&self, cell: &Cell, of: usize);
    /// A request ended.
    fn request_done(&self);
}

/// The verifier the cells talk to.
struct Cloud {
    target: Option<VerifierTarget>,
    running: Option<Running>,
    _certs: Option<tempfile::TempDir>,
}

/// What the cells run on.
enum Setup {
    /// Models and a verifier over real sockets.
    Real {
        draft: Arc<Llama>,
        prompt_ids: Vec<Vec<u32>>,
        cloud: Box<Cloud>,
    },
    /// The simulated backend (its pass times resolved), and its acceptance by
    /// position.
    Simulated(Box<crate::sim::SimSpec>, Vec<f64>),
}

/// Loads the models, tokenizes the prompts and starts (or finds) the verifier.
async fn real_backend(
    config: &Config,
    models: &crate::config::Models,
    prompts: &[Prompt],
    base: &Path,
    pace: Option<tandem_verifier::PassPace>,
) -> Result<Setup, RunError> {
    let layers = models
        .draft_layers
        .as_deref()
        .map(str::parse::<LayerSelection>)
        .transpose()
        .map_err(|e| RunError::Setup(format!("models.draft_layers: {e}")))?;
    let placed = models
        .placements()
        .map_err(|(key, e)| RunError::Setup(format!("models.{key}: {e}")))?;
    let load = |spec: &str, what: &str, placement: Placement, layers: Option<LayerSelection>| {
        let spec: ModelSpec = spec.parse().map_err(|e| RunError::Setup(format!("{e}")))?;
        placement
            .load_options()
            .and_then(|opts| spec.load(&LoadOptions { layers, ..opts }))
            .map_err(|e| RunError::Setup(format!("loading the {what} {spec} on {placement}: {e}")))
    };
    let draft = load(&models.draft, "draft", placed.draft, layers)?;
    let target = load(&models.target, "target", placed.target, None)?;
    target
        .model
        .info()
        .check_draft(draft.model.info())
        .map_err(|e| RunError::Setup(e.to_string()))?;
    let bos = target.model.info().bos_token_id;
    let prompt_ids = prompts
        .iter()
        .map(|p| p.ids(&target.tokenizer, bos).map_err(RunError::Setup))
        .collect::<Result<Vec<_>, RunError>>()?;
    let exits = tandem_verifier::engine::early_exit::check_layers(
        &models.early_exit_layers,
        target.model.info().num_layers,
    )
    .map_err(|e| RunError::Setup(format!("models.early_exit_layers: {e}")))?;
    let cloud = start_cloud(
        config,
        base,
        target.model,
        EngineConfig {
            early_exit_layers: exits,
            pace,
            ..EngineConfig::new(&models.target)
        },
    )
    .await?;
    Ok(Setup::Real {
        draft: Arc::new(draft.model),
        prompt_ids,
        cloud: Box::new(cloud),
    })
}

/// Runs `config` to the end, or until `stop` is set (then finishes the requests in
/// flight, keeps the finished cells and marks the run partial).
pub async fn run(
    config: &Config,
    opts: &RunOptions,
    stop: Arc<AtomicBool>,
    progress: Arc<dyn Progress>,
) -> Result<Outcome, RunError> {
    let started = SystemTime::now();
    let base = opts.config_path.parent().unwrap_or(Path::new("."));
    let prompts = load_prompts(&config.workload.prompts, base).map_err(RunError::Setup)?;
    // What the run records as its config: a fitted pass profile is written out as
    // numbers, so the folder says what was simulated.
    let mut recorded = config.clone();
    let mut header = String::new();
    let mut backend = match (&config.simulation, &config.models) {
        (Some(sim), _) => {
            let curve = sim.acceptance_curve(base).map_err(RunError::Setup)?;
            let (spec, fit) = sim.resolve(base).map_err(RunError::Setup)?;
            if let (Some(fit), Some(file)) = (fit, &sim.profile_trace) {
                tracing::info!("pass profile fitted from {file}: {fit}");
                header = format!(
                    "# simulation pass times fitted from {file}: {fit}; transport {:.3} ms each way\n\n",
                    spec.transport_ms
                );
            }
            recorded.simulation = Some(spec.clone());
            Setup::Simulated(Box::new(spec), curve)
        }
        (None, Some(models)) => {
            let pace = match &config.cloud {
                Some(c) => {
                    let (pace, resolved) = c.resolve(base).map_err(RunError::Setup)?;
                    recorded.cloud = Some(resolved);
                    Some(pace)
                }
                None => None,
            };
            real_backend(config, models, &prompts, base, pace).await?
        }
        (None, None) => return Err(RunError::Setup("the config names no models".into())),
    };
    let dir = results_dir(&opts.out, &config.name, started)?;
    let config = &recorded;
    crate::results::write_text(
        &dir.join("config.toml"),
        &format!("{header}{}", config.resolved()),
    )?;
    let manifest = crate::manifest::Manifest::new(config, started);
    manifest.write(&dir, None)?;

    let all = crate::plan::cells(config);
    let mut requests = Vec::new();
    let mut rounds = Vec::new();
    let mut complete = true;
    for cell in &all {
        if stop.load(Ordering::Relaxed) {
            complete = false;
            break;
        }
        progress.cell(cell, all.len());
        let cell_started = std::time::Instant::now();
        let (mut req, mut rnd, finished) = match &backend {
            Setup::Simulated(spec, acceptance) => {
                let (req, rnd) = crate::sim::run_cell(&crate::sim::SimCell {
                    spec,
                    cell,
                    workload: &config.workload,
                    prompts: &prompts,
                    cost: &config.cost,
                    seed: config.seed,
                    acceptance,
                    by_prompt: &[],
                    matches: &[],
                });
                for _ in 0..req.len() {
                    progress.request_done();
                }
                (req, rnd, true)
            }
            Setup::Real {
                draft,
                prompt_ids,
                cloud,
            } => {
                let ctx = real::CellRun {
                    config,
                    cell,
                    prompts: &prompts,
                    prompt_ids,
                    draft: draft.clone(),
                    verifier: cloud.target.clone(),
                    stop: stop.clone(),
                    progress: progress.clone(),
                };
                ctx.run().await
            }
        };
        tracing::debug!(
            "cell {} ran in {:.2?}: {} requests, {} rounds",
            cell.index,
            cell_started.elapsed(),
            req.len(),
            rnd.len()
        );
        if !finished {
            // A cell cut short would compare unfairly: keep only whole cells.
            complete = false;
            break;
        }
        requests.append(&mut req);
        if rounds.is_empty() {
            rounds = rnd; // not copied: one cell may hold millions of rounds
        } else {
            rounds.append(&mut rnd);
        }
    }
    if let Setup::Real { cloud, .. } = &mut backend
        && let Some(r) = cloud.running.take()
    {
        r.stop().await;
    }
    requests.sort_by_key(|r| (r.cell, r.request));
    // Cells come in grid order and each cell's rounds in request order (see
    // `CellDriver::finish`): checked, so that millions of rows are not given a sort's
    // scratch copy for nothing.
    let order = |r: &crate::results::RoundRow| (r.key.cell, r.request, r.record.round);
    if !rounds.is_sorted_by_key(order) {
        rounds.sort_unstable_by_key(order);
    }
    crate::results::write_parquet(
        &dir.join("requests.parquet"),
        &mut crate::results::requests_frame(&requests)?,
    )?;
    // The rounds' file and the report need only what is in memory: written side by side.
    let writing = std::time::Instant::now();
    let (rounds_written, report) = std::thread::scope(|scope| {
        let file =
            scope.spawn(|| crate::results::write_rounds(&dir.join("rounds.parquet"), &rounds));
        let report = crate::report::write(&dir, config, &requests, &rounds, complete);
        (
            file.join().expect("the rounds writer does not panic"),
            report,
        )
    });
    rounds_written?;
    let mut written = report?;
    tracing::debug!(
        "rounds.parquet and the report written in {:.2?}",
        writing.elapsed()
    );
    if config.report.resimulate && config.simulation.is_none() && !requests.is_empty() {
        crate::resimulate::resimulate(&dir)?;
        written = crate::report::from_dir(&dir)?;
    }
    if let Some(why) = &written.skipped {
        tracing::warn!("figures not drawn: {why}");
    }
    manifest.write(
        &dir,
        Some(crate::manifest::Ended {
            at: SystemTime::now(),
            complete,
            cells: requests
                .iter()
                .map(|r| r.cell)
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            requests: requests.len(),
        }),
    )?;
    Ok(Outcome {
        dir,
        complete,
        requests,
        rounds,
        report: written,
    })
}

/// The config's running verifier: its replicas, certificate and token (paths relative
/// to the config's folder `base`).
fn remote_target(
    config: &Config,
    base: &Path,
    endpoint: &Endpoint,
    replicas: &[Endpoint],
) -> Result<VerifierTarget, RunError> {
    let quic = std::iter::once(endpoint)
        .chain(replicas)
        .any(|e| e.transport == Transport::Quic);
    let given = config.verifier_ca.as_ref().map(|p| base.join(p));
    let auth_token = config
        .verifier_token_file
        .as_ref()
        .map(|p| tandem_draft::remote::token_from_file(&base.join(p)))
        .transpose()
        .map_err(|e| RunError::Setup(format!("verifier_token_file: {e}")))?;
    Ok(VerifierTarget {
        endpoint: endpoint.clone(),
        replicas: replicas.to_vec(),
        options: ConnectOptions {
            ca: tandem_draft::remote::ca_or_default(given, quic),
            auth_token,
            ..Default::default()
        },
    })
}

async fn start_cloud(
    config: &Config,
    base: &Path,
    target: Llama,
    engine: EngineConfig,
) -> Result<Cloud, RunError> {
    if let Some((endpoint, replicas)) = config.grid().verifier.split_first() {
        return Ok(Cloud {
            target: Some(remote_target(config, base, endpoint, replicas)?),
            running: None,
            _certs: None,
        });
    }
    let certs = tempfile::tempdir()?;
    let engine = EngineHandle::start(target, engine);
    let running = tandem_verifier::serve(engine, ListenConfig::loopback(certs.path()))
        .await
        .map_err(|e| RunError::Setup(format!("starting the verifier: {e}")))?;
    let transport = config.grid().transport;
    let addr = match transport {
        Transport::Grpc => running.grpc_addr,
        Transport::Quic => running.quic_addr,
    };
    let addr = addr.expect("both listeners are on");
    Ok(Cloud {
        target: Some(VerifierTarget {
            replicas: Vec::new(),
            endpoint: Endpoint::at(transport, addr),
            options: ConnectOptions {
                ca: running.cert_path.clone(),
                ..Default::default()
            },
        }),
        running: Some(running),
        _certs: Some(certs),
    })
}

/// `<out>/<name>/<UTC time>`, with `-2`, `-3`... if taken.
fn results_dir(out: &Path, name: &str, at: SystemTime) -> std::io::Result<PathBuf> {
    let stamp = crate::manifest::utc(at).replace([':', '-'], "");
    let parent = out.join(name);
    std::fs::create_dir_all(&parent)?;
    for n in 1.. {
        let id = if n == 1 {
            stamp.clone()
        } else {
            format!("{stamp}-{n}")
        };
        let dir = parent.join(id);
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    unreachable!("some suffix is free")
}
