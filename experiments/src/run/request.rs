//! One request of one cell: generate, then turn the report into rows and a cost.

use tandem_draft::{Edge, GenerateConfig, Report, RoundKind, Strategy, VerifierTarget};
use tandem_models::Llama;

use super::cells::Cell;
use crate::config::Cost;
use crate::results::{RequestRow, RoundRow};
use crate::workload::Prompt;

/// What one request needs besides the cell.
pub struct Ask<'a> {
    pub cell: &'a Cell,
    pub request: usize,
    pub prompt_index: usize,
    pub prompt: &'a Prompt,
    pub prompt_ids: Vec<u32>,
    pub seed: u64,
    pub start_s: f64,
    /// The strategy this request runs (a routed cell's pick).
    pub strategy: tandem_draft::Strategy,
    /// Why a routed cell picked it (empty otherwise).
    pub route: &'static str,
    pub generate: GenerateConfig,
}

/// Runs `ask` on `edge`.
pub async fn run(
    ask: Ask<'_>,
    draft: &Llama,
    verifier: Option<VerifierTarget>,
    device: Option<tandem_draft::DevicePace>,
    cost: &Cost,
) -> (RequestRow, Vec<RoundRow>) {
    let strategy = ask.strategy;
    let edge = Edge {
        draft: strategy.needs_draft().then_some(draft),
        verifier: if strategy.needs_verifier() {
            verifier
        } else {
            None
        },
        device,
    };
    let mut ignore = |_: &[u32], _: bool| {};
    let result = tandem_draft::generate(&edge, &ask.generate, &mut ignore).await;
    rows_of(&ask, result, cost)
}

/// A request's rows from what its generation returned (an error is kept in the row).
pub fn rows_of(
    ask: &Ask<'_>,
    result: Result<Report, tandem_draft::DraftError>,
    cost: &Cost,
) -> (RequestRow, Vec<RoundRow>) {
    match result {
        Ok(report) => rows(ask, &report, cost),
        Err(e) => (
            RequestRow {
                error: e.to_string(),
                ..row(ask, &Report::default(), cost)
            },
            Vec::new(),
        ),
    }
}

fn rows(ask: &Ask<'_>, report: &Report, cost: &Cost) -> (RequestRow, Vec<RoundRow>) {
    let c = ask.cell;
    let rounds = report
        .rounds
        .iter()
        .map(|r| RoundRow {
            round: r.round as u32,
            kind: r.kind.to_string(),
            k: r.k as u32,
            ahead: r.ahead,
            drafted: r.drafted as u32,
            accepted: r.accepted as u32,
            committed: r.committed as u32,
            draft_ns: r.draft_ns,
            wait_ns: r.wait_ns,
            network_ns: r.network_ns,
            queue_ns: r.queue_ns,
            forward_ns: r.forward_ns,
            batch_size: r.batch_size,
            batch_tokens: r.batch_tokens,
            bytes_up: r.bytes_up,
            bytes_down: r.bytes_down,
            ..c.round_row(ask.request)
        })
        .collect();
    (row(ask, report, cost), rounds)
}

fn row(ask: &Ask<'_>, report: &Report, cost: &Cost) -> RequestRow {
    let c = ask.cell;
    let s = &report.summary;
    let k = match ask.strategy {
        Strategy::Speculative { k } | Strategy::Pipelined { k } => k as u32,
        _ => 0,
    };
    let (cloud, edge) = request_cost(ask, report, cost);
    RequestRow {
        cell: c.index as u32,
        repetition: c.repetition as u32,
        strategy: c.name.clone(),
        strategy_kind: c.kind.clone(),
        tier: ask.strategy.to_string(),
        route: ask.route.into(),
        k,
        network: c.network.clone(),
        device: c.device.clone(),
        clients: c.clients as u32,
        request: ask.request as u32,
        prompt_index: ask.prompt_index as u32,
        tag: ask.prompt.tag.clone(),
        seed: ask.seed,
        start_s: ask.start_s,
        prompt_tokens: ask.prompt_ids.len() as u32,
        tokens: s.tokens as u32,
        unverified_tokens: s.unverified_tokens as u32,
        rounds: s.rounds as u32,
        drafts: report
            .rounds
            .iter()
            .filter(|r| r.kind == RoundKind::Verified && r.drafted > 0)
            .count() as u32,
        drafted: s.drafted as u32,
        accepted: s.accepted as u32,
        acceptance_rate: s.acceptance_rate,
        mean_accepted_length: s.mean_accepted_length,
        ttft_ms: s.ttft_ms,
        tpot_ms: s.tpot_ms,
        e2e_ms: s.e2e_ms,
        bytes_up: s.bytes_up,
        bytes_down: s.bytes_down,
        fallbacks: s.fallbacks as u32,
        stop: s.stop.to_string(),
        output_ids: report
            .output_ids
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" "),
        cost_cloud_usd: cloud,
        cost_edge_usd: edge,
        cost_usd: cloud + edge,
        error: String::new(),
    }
}

/// (cloud, edge) dollars of one request.
///
/// Cloud: the request's share of every forward pass it was in (pass time ÷ sessions
/// in the pass) at the GPU-hour price, plus prompt tokens sent and tokens the verifier
/// produced at the per-token prices. Edge: drafted tokens × the device's joules per
/// token, at the kWh price.
fn request_cost(ask: &Ask<'_>, report: &Report, cost: &Cost) -> (f64, f64) {
    let uses_cloud = ask.strategy.needs_verifier();
    let gpu_s: f64 = report
        .rounds
        .iter()
        .filter(|r| r.batch_size > 0)
        .map(|r| r.forward_ns as f64 / 1e9 / r.batch_size as f64)
        .sum();
    let verified = report.output_ids.len() - report.unverified.len();
    let cloud = if uses_cloud {
        cost.gpu_dollars_per_hour * gpu_s / 3600.0
            + cost.input_dollars_per_mtok * ask.prompt_ids.len() as f64 / 1e6
            + cost.output_dollars_per_mtok * verified as f64 / 1e6
    } else {
        0.0
    };
    let drafted: usize = report
        .rounds
        .iter()
        .map(|r| {
            if r.kind == RoundKind::Edge {
                r.committed
            } else {
                r.drafted
            }
        })
        .sum();
    let joules = ask.cell.pace.as_ref().map_or(0.0, |p| p.joules_per_token()) * drafted as f64;
    let edge = cost.dollars_per_kwh * joules / 3.6e6;
    (cloud, edge)
}
