//! One request of one cell: its seed, its strategy, the draft loop's settings, and
//! the rows and cost its report turns into.

use std::time::Duration;

use tandem_decoding::{SamplingParams, SessionRng};
use tandem_draft::route::RouteReason;
use tandem_draft::{GenerateConfig, Report, RoundKind, RoundRecord, Strategy};

use super::cells::Cell;
use crate::config::{Cost, Workload};
use crate::results::RequestRow;
use crate::workload::Prompt;

/// Streams the repetitions' seeds are drawn from (clear of the request indices).
const REPETITION_STREAM: u64 = 0x7e9e_0000_0000;

/// The seed of `repetition` of a config seeded `seed`: the config's own for the first,
/// a stream of it for the others, so no repetition of one seed is a repetition of
/// another (with `seed ^ repetition`, seed 1's second repetition was seed 0's first).
pub fn repetition_seed(seed: u64, repetition: usize) -> u64 {
    match repetition {
        0 => seed,
        r => SessionRng::for_stream(seed, REPETITION_STREAM + r as u64).next_u64(),
    }
}

/// The seed of request `i` in `repetition`: the same in every cell, so cells compare
/// pairwise.
pub fn request_seed(seed: u64, repetition: usize, i: usize) -> u64 {
    SessionRng::for_stream(repetition_seed(seed, repetition), i as u64).next_u64()
}

/// The draft loop's settings for one request.
pub fn generate_config(
    w: &Workload,
    strategy: Strategy,
    prompt: Vec<u32>,
    seed: u64,
) -> GenerateConfig {
    GenerateConfig {
        strategy,
        prompt,
        max_new_tokens: w.max_new_tokens,
        sampling: SamplingParams {
            temperature: w.temperature,
            top_k: w.top_k,
            top_p: w.top_p,
            min_p: 0.0,
        },
        seed,
        ignore_eos: w.ignore_eos,
        deadline: Duration::from_millis(w.deadline_ms),
        fallback: true,
        retry: Duration::from_millis(w.retry_ms),
    }
}

/// One request, planned: everything it runs with and its rows are keyed by.
pub struct Ask<'a> {
    /// Its cell.
    pub cell: &'a Cell,
    /// Its index in the cell (the same request, prompt and seed in every cell).
    pub request: usize,
    /// Which prompt of the set.
    pub prompt_index: usize,
    /// The prompt.
    pub prompt: &'a Prompt,
    /// The prompt's token ids.
    pub prompt_ids: Vec<u32>,
    /// Its seed (sampling, link jitter and loss).
    pub seed: u64,
    /// When it started, seconds into the cell.
    pub start_s: f64,
    /// The strategy this request runs (a routed cell's pick).
    pub strategy: tandem_draft::Strategy,
    /// Why a routed cell picked it (empty otherwise).
    pub route: Option<RouteReason>,
    /// The draft loop's settings.
    pub generate: GenerateConfig,
}

/// A request's row from what its generation returned (an error is kept in the row),
/// and its rounds' records as the draft loop kept them: moved, not copied, as a
/// simulated cell holds millions of them.
pub fn rows_of(
    ask: &Ask<'_>,
    result: Result<Report, tandem_draft::DraftError>,
    cost: &Cost,
) -> (RequestRow, Vec<RoundRecord>) {
    match result {
        Ok(report) => (row(ask, &report, cost), report.rounds),
        Err(e) => (
            RequestRow {
                error: e.to_string(),
                ..row(ask, &Report::default(), cost)
            },
            Vec::new(),
        ),
    }
}

fn row(ask: &Ask<'_>, report: &Report, cost: &Cost) -> RequestRow {
    let c = ask.cell;
    let s = &report.summary;
    let k = match ask.strategy {
        Strategy::Speculative { k } | Strategy::Pipelined { k } | Strategy::EarlyExit { k, .. } => {
            k as u32
        }
        _ => 0,
    };
    let (cloud, edge) = request_cost(ask, report, cost);
    RequestRow {
        cell: c.index as u32,
        repetition: c.repetition as u32,
        strategy: c.name.clone(),
        strategy_kind: c.kind.as_str().into(),
        tier: ask.strategy.to_string(),
        route: ask.route.map_or("", RouteReason::as_str).into(),
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
        to_cloud: s.to_cloud as u32,
        to_cloud_reason: s.draft_stop.map_or("", |w| w.as_str()).into(),
        to_cloud_at_ms: s.to_cloud_at_ms,
        stop: s.stop.to_string(),
        output_ids: ids_text(&report.output_ids),
        cost_cloud_usd: cloud,
        cost_edge_usd: edge,
        cost_usd: cloud + edge,
        error: String::new(),
    }
}

/// Token ids as text, space-separated: one string, not one a token (a simulated cell
/// writes a hundred thousand requests of hundreds of tokens).
fn ids_text(ids: &[u32]) -> String {
    use std::fmt::Write;
    let mut text = String::with_capacity(ids.len() * 6);
    for (i, id) in ids.iter().enumerate() {
        if i > 0 {
            text.push(' ');
        }
        write!(text, "{id}").expect("writing to a String cannot fail");
    }
    text
}

/// (cloud, edge) dollars of one request.
///
/// Cloud: the request's share of every forward pass it was in (pass time, paced time
/// included, ÷ sessions in the pass, ÷ the GPU's utilisation) at the GPU-hour price,
/// plus prompt tokens sent and tokens the verifier
/// produced at the per-token prices. Edge: drafted tokens × the device's joules per
/// token, at the kWh price.
fn request_cost(ask: &Ask<'_>, report: &Report, cost: &Cost) -> (f64, f64) {
    let uses_cloud = ask.strategy.needs_verifier();
    let gpu_s: f64 = report
        .rounds
        .iter()
        .filter(|r| r.batch_size > 0)
        .map(|r| (r.forward_ns + r.paced_ns) as f64 / 1e9 / r.batch_size as f64)
        .sum();
    let verified = report.output_ids.len() - report.unverified.len();
    let cloud = if uses_cloud {
        cost.gpu_dollars_per_hour * gpu_s / cost.utilisation() / 3600.0
            + cost.input_dollars_per_mtok * ask.prompt_ids.len() as f64 / 1e6
            + cost.output_dollars_per_mtok * verified as f64 / 1e6
    } else {
        0.0
    };
    let drafted: usize = report
        .rounds
        .iter()
        .map(|r| {
            (if r.kind == RoundKind::Edge {
                r.committed
            } else {
                r.drafted
            }) as usize
        })
        .sum();
    let joules = ask.cell.pace.as_ref().map_or(0.0, |p| p.joules_per_token()) * drafted as f64;
    let edge = cost.dollars_per_kwh * joules / 3.6e6;
    (cloud, edge)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_repetition_of_one_seed_is_a_repetition_of_another() {
        // With `seed ^ repetition`, seeds 0..8 × repetitions 0..8 gave 8 distinct seeds.
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..8u64 {
            for r in 0..8 {
                assert!(
                    seen.insert(request_seed(seed, r, 0)),
                    "seed {seed}, repetition {r}"
                );
            }
        }
        // The first repetition keeps the config's own seeds (committed runs unchanged).
        assert_eq!(
            request_seed(7, 0, 3),
            SessionRng::for_stream(7, 3).next_u64()
        );
    }

    #[test]
    fn ids_are_written_space_separated() {
        assert_eq!(ids_text(&[]), "");
        assert_eq!(ids_text(&[7]), "7");
        assert_eq!(ids_text(&[0, 49152, u32::MAX]), "0 49152 4294967295");
    }
}
