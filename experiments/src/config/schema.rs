//! The config's shape. Every table refuses keys it does not know.

use serde::{Deserialize, Serialize};
use tandem_models::{DeviceChoice, Placement};

/// One experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Names the results folder (`results/<name>/<run-id>/`): letters, digits, `-`,
    /// `_`, `.`.
    pub name: String,
    /// What the experiment is for, copied into the report.
    #[serde(default)]
    pub description: String,
    /// Seed of every random stream (sampling, arrivals, link jitter and loss).
    #[serde(default)]
    pub seed: u64,
    /// A running verifier (`grpc://HOST:PORT`, `quic://HOST:PORT`), or a list of
    /// replicas of one target (each session connects to the next in turn and goes on to
    /// the next when one cannot be reached); absent: one is started in process on
    /// 127.0.0.1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier: Option<OneOrMany<String>>,
    /// QUIC to a running verifier: the certificate to trust (PEM; relative to the
    /// config). Default: `.tandem/certs/cert.pem`, where `verifier-node serve` writes
    /// it, if that file exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_ca: Option<String>,
    /// A running verifier's bearer token: a file (relative to the config) whose first
    /// line is the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verifier_token_file: Option<String>,
    /// Transport to the in-process verifier.
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Draft and target (not needed with `[simulation]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Models>,
    /// Run on a simulated backend instead of models (see [`crate::sim`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simulation: Option<super::SimSpec>,
    /// Prompts, requests and arrivals.
    pub workload: Workload,
    /// Links to run over; at least one.
    #[serde(rename = "network")]
    pub networks: Vec<Network>,
    /// Edge devices; absent: the machine as it is.
    #[serde(default, rename = "device", skip_serializing_if = "Vec::is_empty")]
    pub devices: Vec<Device>,
    /// What a request costs.
    #[serde(default)]
    pub cost: Cost,
    /// The strategy grid; at least one.
    #[serde(rename = "strategy")]
    pub strategies: Vec<StrategyGrid>,
    /// Published results the report sets this run's numbers beside (`[[claim]]`; see
    /// [`crate::claims`]).
    #[serde(default, rename = "claim", skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<Claim>,
    /// A cloud pace for a real run: the in-process verifier holds each pass to at least
    /// the time this profile gives, so real tokens meet a target at another machine's
    /// speed (absent: passes take what this machine's forward takes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cloud: Option<CloudPace>,
    /// What the report adds beyond the run itself.
    #[serde(default, skip_serializing_if = "ReportOptions::is_default")]
    pub report: ReportOptions,
    /// The grid resolved from the above by [`Config::parse`] (not part of the file).
    #[serde(skip)]
    pub(super) grid: super::Grid,
}

/// The `[cloud]` table: the machine a real run's verifier passes are paced to, by the
/// simulator's pass-time formula (`pass_ms + per_session_ms·sessions +
/// per_token_ms·tokens + verify_extra_ms` when verifying; see
/// `tandem_verifier::engine::pace`), given or fitted from a run on that machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudPace {
    /// What the profile stands for (`a100-llama2-7b`), for the report.
    pub name: String,
    /// Fixed time of any pass, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pass_ms: Option<f64>,
    /// Time per session in a pass, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_session_ms: Option<f64>,
    /// Time per token in a pass, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_token_ms: Option<f64>,
    /// Extra time of a pass that verifies a draft block, ms.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verify_extra_ms: Option<f64>,
    /// A run's `rounds.parquet` on that machine (relative to the config) to fit the four
    /// times from, by least squares over its passes (as `[simulation] profile_trace`).
    /// Exclusive with them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub profile_trace: Option<String>,
    /// Where the numbers come from.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source: String,
}

/// The `[report]` table.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportOptions {
    /// After a real run, fit the simulator to its records and replay the grid on the
    /// virtual clock (`tandem resimulate`): the report then sets each cell's measured
    /// figures beside the simulated ones. Ignored by a simulated run.
    #[serde(default)]
    pub resimulate: bool,
    /// The latency SLO on time per output token, ms: a request meets it if its TPOT is
    /// at most this. With it the report gains goodput (tokens per second of requests
    /// that met the SLO) and capacity (the most clients whose p90 TPOT stays within it;
    /// see `crate::capacity`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_tpot_ms: Option<f64>,
    /// An SLO on time to first token, ms, that a request must meet too to count in
    /// goodput (capacity is by TPOT alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slo_ttft_ms: Option<f64>,
}

impl ReportOptions {
    fn is_default(&self) -> bool {
        self == &Self::default()
    }
}

fn default_transport() -> String {
    "quic".into()
}

/// The model pair: `builtin:` names, HF directories, GGUF files, or `pkg:` checkpoints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Models {
    /// The edge's draft model.
    pub draft: String,
    /// The cloud's target model.
    pub target: String,
    /// Draft with only these layers of `draft` (`"0-9"`, `"0-5,27-29"`): with the
    /// target's own checkpoint as `draft`, a self-drafted pair.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_layers: Option<String>,
    /// The in-process verifier's early exits (`verifier-node --early-exit-layer`): the
    /// decoder layers (0-based, before the last) after which each pass sends
    /// provisional verdicts to `early_exit` sessions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub early_exit_layers: Vec<usize>,
    /// Where the target runs (`verifier-node --device`): `"cpu"` (default) or
    /// `"cuda"`/`"cuda:N"` in a build with the `cuda` feature. The draft runs on the
    /// CPU, as an edge device's would, unless `draft_device` says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The target's precision (`verifier-node --dtype`): `"f32"`, `"bf16"` or `"f16"`;
    /// default f32 on the CPU, bf16 on a GPU.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dtype: Option<String>,
    /// Where the draft runs (`draft-node --device`), in its device's default precision:
    /// `"cpu"` (default) or a GPU, for a run that measures the verifier alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft_device: Option<String>,
}

impl Models {
    /// Where the in-process verifier's target (`device`, `dtype`) and the draft
    /// (`draft_device`) run; an error names the key that does not parse and why.
    pub fn placements(&self) -> Result<Placements, (&'static str, String)> {
        let device = |key: &'static str, value: &Option<String>| match value {
            Some(d) => d.parse().map_err(|e| (key, format!("{e}"))),
            None => Ok(DeviceChoice::Cpu),
        };
        let precision = match &self.dtype {
            Some(p) => Some(p.parse().map_err(|e| ("dtype", format!("{e}")))?),
            None => None,
        };
        Ok(Placements {
            target: Placement {
                device: device("device", &self.device)?,
                precision,
            },
            draft: Placement {
                device: device("draft_device", &self.draft_device)?,
                precision: None,
            },
        })
    }
}

/// Where a real run's models run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placements {
    /// The target (the in-process verifier's).
    pub target: Placement,
    /// The draft (every edge client's).
    pub draft: Placement,
}

/// What is asked and when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// `builtin:NAME` or a JSONL file (one `{"prompt": …, "tag": …, "slo_ms": …}` per
    /// line, `tag` and `slo_ms` optional; a path
    /// is relative to the config file).
    pub prompts: String,
    /// Requests per cell (prompts are used in turn).
    pub requests: usize,
    /// Closed loop: this many clients, each sending its next request when the last
    /// one ends; a list makes a grid axis. Exclusive with `arrival_rate`; default 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<OneOrMany<usize>>,
    /// Open loop: Poisson arrivals at this many requests per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrival_rate: Option<f64>,
    /// Most new tokens per request.
    pub max_new_tokens: usize,
    /// Sampling temperature (0: greedy).
    #[serde(default)]
    pub temperature: f32,
    /// Top-k (0: off).
    #[serde(default)]
    pub top_k: usize,
    /// Top-p (1: off).
    #[serde(default = "one")]
    pub top_p: f32,
    /// Generate `max_new_tokens` even past end-of-sequence (comparable lengths).
    #[serde(default = "yes")]
    pub ignore_eos: bool,
    /// How many times the whole grid runs (each repetition with its own seed).
    #[serde(default = "one_usize")]
    pub repetitions: usize,
    /// How long the edge waits for any answer from the verifier before it counts it
    /// lost and (where the strategy drafts) goes on alone, ms.
    #[serde(
        default = "default_deadline_ms",
        skip_serializing_if = "is_default_deadline"
    )]
    pub deadline_ms: u64,
    /// After going on alone, the longest wait between the edge's tries to reach the
    /// verifier again, ms (the first comes 0.5 ms after the loss, each next one twice
    /// as late, up to this).
    #[serde(default = "default_retry_ms", skip_serializing_if = "is_default_retry")]
    pub retry_ms: u64,
}

/// The edge's patience by default: 30 s.
pub const DEFAULT_DEADLINE_MS: u64 = 30_000;
/// How often a fallen-back edge retries by default: every 250 ms.
pub const DEFAULT_RETRY_MS: u64 = 250;

fn default_deadline_ms() -> u64 {
    DEFAULT_DEADLINE_MS
}

fn is_default_deadline(v: &u64) -> bool {
    *v == DEFAULT_DEADLINE_MS
}

fn default_retry_ms() -> u64 {
    DEFAULT_RETRY_MS
}

fn is_default_retry(v: &u64) -> bool {
    *v == DEFAULT_RETRY_MS
}

fn one() -> f32 {
    1.0
}

fn one_usize() -> usize {
    1
}

fn yes() -> bool {
    true
}

/// One emulated link.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// The name in results; also the profile when `link` is absent (`lan`, `wifi`,
    /// `5g`, `lte`, `wan`, `satellite`, `loopback`).
    pub name: String,
    /// `delay=MS,jitter=MS,up=MBPS,down=MBPS,loss=P`, or a profile name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
}

/// An edge device: how much slower than this machine its draft model runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Device {
    /// The name in results.
    pub name: String,
    /// Draft time × this (≥ 1).
    #[serde(default = "one_f64")]
    pub draft_slowdown: f64,
    /// Sustained-load throttle: after `throttle_after_s` seconds of drafting, draft
    /// time grows linearly to × `throttle_factor` more over `throttle_ramp_s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle_after_s: Option<f64>,
    /// See `throttle_after_s` (≥ 1).
    #[serde(default = "one_f64")]
    pub throttle_factor: f64,
    /// See `throttle_after_s`.
    #[serde(default = "ten")]
    pub throttle_ramp_s: f64,
    /// Edge energy per drafted token, joules.
    #[serde(default)]
    pub joules_per_token: f64,
    /// Thermal shutdown: after this many seconds of drafting the device drafts no
    /// more, and its requests go on in the cloud (edge → cloud fallback).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown_after_s: Option<f64>,
    /// Memory the device gives the draft's KV cache, MiB: a request whose draft cache
    /// would need more goes on in the cloud (real drafts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_budget_mb: Option<f64>,
}

fn one_f64() -> f64 {
    1.0
}

fn ten() -> f64 {
    10.0
}

/// Prices. Any subset; absent prices cost nothing.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cost {
    /// Cloud: dollars per GPU-hour, charged for the verifier's forward time (owned or
    /// rented GPUs; an API is priced per token instead, below).
    #[serde(default)]
    pub gpu_dollars_per_hour: f64,
    /// Cloud: the share of the GPU's hours that serve requests (0 < u ≤ 1; default
    /// 1): a request pays its forward time ÷ u, the idle hours included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_utilisation: Option<f64>,
    /// Cloud: dollars per million prompt tokens sent to the verifier.
    #[serde(default)]
    pub input_dollars_per_mtok: f64,
    /// Cloud: dollars per million tokens the verifier committed.
    #[serde(default)]
    pub output_dollars_per_mtok: f64,
    /// Edge: dollars per kWh of drafting energy (and of idle power).
    #[serde(default)]
    pub dollars_per_kwh: f64,
    /// Edge: one device's price, dollars, for the report's cost by volume.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub edge_device_dollars: f64,
    /// Edge: days the device's price is spread over (needed with a price).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub edge_amortisation_days: f64,
    /// Edge: the device's draw when idle, watts (paid around the clock).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub edge_idle_watts: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Cost {
    /// The GPU's utilisation (1 unless given).
    pub fn utilisation(&self) -> f64 {
        self.gpu_utilisation.unwrap_or(1.0)
    }

    /// Whether the edge hardware has a cost (the report then prices volumes).
    pub fn prices_hardware(&self) -> bool {
        self.edge_device_dollars > 0.0 || self.edge_idle_watts > 0.0
    }
}

/// One or more strategies: `k` (and `policy`) may be lists, giving one cell each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StrategyGrid {
    /// `cloud_only`, `edge_only`, `speculative`, `pipelined`, `early_exit`, `adaptive`,
    /// `tree` or `routed`.
    pub kind: String,
    /// Draft length(s), for `speculative`, `pipelined` and `early_exit`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub k: Option<OneOrMany<usize>>,
    /// `early_exit`: the exit layer(s) whose provisional verdict the edge acts on (one
    /// of the verifier's `[models] early_exit_layers`); absent: the first to come.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_layer: Option<OneOrMany<u32>>,
    /// Policy(ies) for `adaptive` (`fixed:K`, `+2/-1[:MAX]`, `p_min:P[:MAX]`,
    /// `goodput[:MAX]`); default `+2/-1:8`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<OneOrMany<String>>,
    /// Tree shape(s) for `tree`: a branching per depth (`"3,2,1"`), `"dynamic:N[:DEPTH]"`
    /// or `"auto[:N]"`; default `"auto"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tree: Option<OneOrMany<String>>,
    /// The rules of a `routed` strategy (`[strategy.route]`; see
    /// [`tandem_draft::route`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<tandem_draft::route::RouteSpec>,
}

/// A value or a list of values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// One value.
    One(T),
    /// A grid axis.
    Many(Vec<T>),
}

impl<T: Clone> OneOrMany<T> {
    /// The values, in order.
    pub fn values(&self) -> Vec<T> {
        match self {
            Self::One(v) => vec![v.clone()],
            Self::Many(v) => v.clone(),
        }
    }
}

/// A published result to reproduce: the latency reduction a paper reports for one
/// strategy over another, set beside the one this run measures on each setting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Claim {
    /// What is claimed, as the report's row calls it.
    pub label: String,
    /// The cell the claim is about, as the report names it (`speculative(k=4)`).
    pub strategy: String,
    /// The cell it is measured against (`cloud_only`).
    pub baseline: String,
    /// The paper's reduction of time per output token, a fraction (0.35 for 35 %).
    pub paper: f64,
    /// Where the paper says it (table, figure, section).
    #[serde(default)]
    pub source: String,
    /// Time per token the baseline pays beyond its measured one, ms: a baseline
    /// defined differently from Tandem's (a round trip per token, say).
    #[serde(default)]
    pub baseline_extra_ms: f64,
    /// Which assumption makes Tandem's number differ from the paper's, for the report.
    #[serde(default)]
    pub note: String,
}
