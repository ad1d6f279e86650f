//! One line per (strategy, network, device): what `summary.csv` holds and `report.md`
//! tabulates, with cloud-only on the same link and device as the 1.00× baseline.

use std::collections::BTreeMap;

use polars::prelude::{DataFrame, PolarsResult};

use crate::config::Config;
use crate::results::RequestRow;

/// Totals and means of one group of requests.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Line {
    /// The strategy, with its parameters (`speculative(k=4)`).
    pub strategy: String,
    /// The network's name.
    pub network: String,
    /// The device's name (empty: this machine as it is).
    pub device: String,
    /// Closed-loop clients (0: Poisson arrivals).
    pub clients: u32,
    /// Requests in the group.
    pub requests: u32,
    /// Requests that failed.
    pub failed: u32,
    /// Generated tokens.
    pub tokens: u64,
    /// Generated tokens the target never verified.
    pub unverified_tokens: u64,
    /// Of those, drafted alone after losing the verifier (a routed request's edge-only
    /// tier is left out: it never meant to be verified).
    pub fallback_tokens: u64,
    /// Requests that went on in the cloud because the draft could not (edge → cloud).
    pub to_cloud: u64,
    /// Time to first token, ms.
    pub ttft_ms: f64,
    /// Median time per output token, ms.
    pub tpot_ms_p50: f64,
    /// 90th percentile time per output token, ms.
    pub tpot_ms_p90: f64,
    /// End-to-end latency, ms.
    pub e2e_ms: f64,
    /// Accepted ÷ drafted tokens (NaN without drafts).
    pub acceptance_rate: f64,
    /// 1 + accepted ÷ drafts (vLLM's definition).
    pub mean_accepted_length: f64,
    /// Generated tokens per second of the cell's wall time.
    pub tokens_per_s: f64,
    /// Bytes on the link per generated token.
    pub bytes_per_token: f64,
    /// Dollars per million generated tokens.
    pub usd_per_mtok: f64,
    /// Cloud-only's median TPOT over this one's on the same network and device (NaN
    /// without a cloud-only baseline).
    pub speedup: f64,
}

impl Line {
    /// Whether `other` is the same setting: strategy, network, device and clients.
    pub fn same_setting(&self, other: &Line) -> bool {
        (&self.strategy, &self.network, &self.device, self.clients)
            == (
                &other.strategy,
                &other.network,
                &other.device,
                other.clients,
            )
    }

    /// The first four cells of a table row: strategy, network, device (– for this
    /// machine), clients (`open` for Poisson arrivals).
    fn setting(&self) -> String {
        let device = if self.device.is_empty() {
            "–"
        } else {
            &self.device
        };
        let clients = match self.clients {
            0 => "open".to_string(),
            n => n.to_string(),
        };
        format!(
            "{} | {} | {device} | {clients}",
            self.strategy, self.network
        )
    }
}

/// Groups `rows` (in first-seen order of the grid) and summarises each group.
pub fn summarise(rows: &[RequestRow]) -> Vec<Line> {
    type Key = (String, String, String, u32);
    let mut groups: BTreeMap<(u32, Key), Vec<&RequestRow>> = BTreeMap::new();
    let mut first_cell: BTreeMap<Key, u32> = BTreeMap::new();
    for r in rows {
        let key = (
            r.strategy.clone(),
            r.network.clone(),
            r.device.clone(),
            r.clients,
        );
        let cell = *first_cell.entry(key.clone()).or_insert(r.cell);
        groups.entry((cell, key)).or_default().push(r);
    }
    let mut lines: Vec<Line> = groups
        .into_iter()
        .map(|((_, key), rs)| line(key, &rs))
        .collect();
    let setting = |l: &Line| (l.network.clone(), l.device.clone(), l.clients);
    let baseline: BTreeMap<(String, String, u32), f64> = lines
        .iter()
        .filter(|l| l.strategy == "cloud_only")
        .map(|l| (setting(l), l.tpot_ms_p50))
        .collect();
    for l in &mut lines {
        l.speedup = baseline
            .get(&setting(l))
            .map_or(f64::NAN, |b| b / l.tpot_ms_p50);
    }
    lines
}

/// The wall time of a cell's requests, s: from its start to its last request's end,
/// each repetition's (each starts at 0) added up, so that tokens pooled over the
/// repetitions are divided by the time they took.
pub fn wall_s<'a>(requests: impl IntoIterator<Item = &'a RequestRow>) -> f64 {
    let mut walls: BTreeMap<u32, f64> = BTreeMap::new();
    for r in requests {
        let end = walls.entry(r.repetition).or_insert(0.0);
        *end = end.max(r.start_s + r.e2e_ms / 1e3);
    }
    walls.values().sum()
}

fn line(
    (strategy, network, device, clients): (String, String, String, u32),
    rs: &[&RequestRow],
) -> Line {
    let ok: Vec<&&RequestRow> = rs.iter().filter(|r| r.error.is_empty()).collect();
    let n = ok.len().max(1) as f64;
    let sum = |f: fn(&RequestRow) -> f64| ok.iter().map(|r| f(r)).sum::<f64>();
    let tokens = sum(|r| r.tokens as f64);
    let drafted = sum(|r| r.drafted as f64);
    let accepted = sum(|r| r.accepted as f64);
    let drafts = sum(|r| r.drafts as f64);
    let mut tpot: Vec<f64> = ok.iter().map(|r| r.tpot_ms).collect();
    tpot.sort_by(f64::total_cmp);
    let wall = wall_s(ok.iter().map(|r| **r));
    Line {
        strategy,
        network,
        device,
        clients,
        requests: rs.len() as u32,
        failed: (rs.len() - ok.len()) as u32,
        tokens: tokens as u64,
        unverified_tokens: sum(|r| r.unverified_tokens as f64) as u64,
        fallback_tokens: rs
            .iter()
            .filter(|r| r.tier != "edge_only")
            .map(|r| r.unverified_tokens as u64)
            .sum(),
        to_cloud: rs.iter().map(|r| r.to_cloud as u64).sum(),
        ttft_ms: sum(|r| r.ttft_ms) / n,
        tpot_ms_p50: quantile(&tpot, 0.5),
        tpot_ms_p90: quantile(&tpot, 0.9),
        e2e_ms: sum(|r| r.e2e_ms) / n,
        acceptance_rate: if drafted > 0.0 {
            accepted / drafted
        } else {
            f64::NAN
        },
        mean_accepted_length: if drafts > 0.0 {
            1.0 + accepted / drafts
        } else {
            f64::NAN
        },
        tokens_per_s: if wall > 0.0 { tokens / wall } else { 0.0 },
        bytes_per_token: if tokens > 0.0 {
            sum(|r| (r.bytes_up + r.bytes_down) as f64) / tokens
        } else {
            0.0
        },
        usd_per_mtok: if tokens > 0.0 {
            sum(|r| r.cost_usd) / tokens * 1e6
        } else {
            0.0
        },
        speedup: f64::NAN,
    }
}

/// The `q` quantile of sorted `xs` (linear interpolation); NaN when empty.
pub fn quantile(xs: &[f64], q: f64) -> f64 {
    match xs.len() {
        0 => f64::NAN,
        1 => xs[0],
        n => {
            let at = q * (n - 1) as f64;
            let (lo, hi) = (at.floor() as usize, at.ceil() as usize);
            xs[lo] + (xs[hi] - xs[lo]) * (at - lo as f64)
        }
    }
}

/// The summary as a table.
pub fn frame(lines: &[Line]) -> PolarsResult<DataFrame> {
    DataFrame::new(
        lines.len(),
        crate::results::columns!(lines; strategy, network, device, clients, requests, failed, tokens,
            unverified_tokens, ttft_ms, tpot_ms_p50, tpot_ms_p90, e2e_ms, acceptance_rate,
            mean_accepted_length, tokens_per_s, bytes_per_token, usd_per_mtok, speedup),
    )
}

/// `report.md`: what ran and the summary table.
pub fn report_md(config: &Config, lines: &[Line], complete: bool) -> String {
    let mut s = format!("# {}\n\n", config.name);
    if !config.description.is_empty() {
        s += &format!("{}\n\n", config.description.trim());
    }
    if !complete {
        s += "**Partial run:** stopped before every cell ran; the table holds the cells that finished.\n\n";
    }
    s += &format!("{}\n\n", what_ran(config));
    s += "| strategy | network | device | clients | TTFT ms | TPOT ms p50 | TPOT ms p90 | end-to-end ms | acceptance | mean accepted length | tokens/s | $ / M tokens | speedup vs cloud_only |\n";
    s += "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    let num = |v: f64, d: usize| {
        if v.is_nan() {
            "–".to_string()
        } else {
            format!("{v:.d$}")
        }
    };
    for l in lines {
        s += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            l.setting(),
            num(l.ttft_ms, 1),
            num(l.tpot_ms_p50, 2),
            num(l.tpot_ms_p90, 2),
            num(l.e2e_ms, 1),
            num(l.acceptance_rate, 3),
            num(l.mean_accepted_length, 2),
            num(l.tokens_per_s, 0),
            num(l.usd_per_mtok, 4),
            if l.speedup.is_nan() {
                "–".into()
            } else {
                format!("{:.2}×", l.speedup)
            },
        );
    }
    let failed: u32 = lines.iter().map(|l| l.failed).sum();
    if failed > 0 {
        s +=
            &format!("\n{failed} request(s) failed; see the `error` column of requests.parquet.\n");
    }
    s
}

/// When requests failed or verified strategies fell back to the draft alone: per
/// line, how many failed and what share of the tokens the target never verified (the
/// timing columns above include those tokens). Empty otherwise.
pub fn reliability_md(lines: &[Line]) -> String {
    let hit = |l: &&Line| {
        l.failed > 0
            || l.to_cloud > 0
            || (l.fallback_tokens > 0 && !l.strategy.starts_with("edge_only"))
    };
    if !lines.iter().any(|l| hit(&l)) {
        return String::new();
    }
    let mut s = String::from(
        "\n## Failures and fallback\n\nRequests that failed; tokens drafted alone while the verifier was out of reach (cloud → edge: never verified; the table above counts them); requests that went on in the cloud because the draft could not (edge → cloud: its context full, its device shut down).\n\n| strategy | network | device | clients | requests | failed | unverified tokens | to the cloud |\n|---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for l in lines
        .iter()
        .filter(|l| !l.strategy.starts_with("edge_only"))
    {
        let share = if l.tokens > 0 {
            100.0 * l.fallback_tokens as f64 / l.tokens as f64
        } else {
            0.0
        };
        s += &format!(
            "| {} | {} | {} | {} ({share:.1} %) | {} |\n",
            l.setting(),
            l.requests,
            l.failed,
            l.fallback_tokens,
            l.to_cloud,
        );
    }
    s
}

/// Which rule routed `r`: its reason, and for a tag rule the request's tags.
fn rule(r: &RequestRow) -> String {
    match r.route.as_str() {
        "tag" => format!("tag: {}", r.tag),
        why => why.to_string(),
    }
}

/// For each routed setting (network, device, clients): the share of requests each tier
/// took and by which rule, with the mix's latency and cost. Empty without routed cells.
pub fn routing_md(requests: &[RequestRow]) -> String {
    type Setting = (String, String, u32);
    let mut by: BTreeMap<Setting, BTreeMap<(String, String), Vec<&RequestRow>>> = BTreeMap::new();
    for r in requests
        .iter()
        .filter(|r| r.strategy_kind == "routed" && r.error.is_empty())
    {
        by.entry((r.network.clone(), r.device.clone(), r.clients))
            .or_default()
            .entry((r.tier.clone(), rule(r)))
            .or_default()
            .push(r);
    }
    if by.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Routing\n\n| network | device | tier | why | share | mean end-to-end ms | TPOT ms p50 | $ / M tokens | bytes up |\n|---|---|---|---|---:|---:|---:|---:|---:|\n",
    );
    for ((network, device, _), tiers) in &by {
        let total: usize = tiers.values().map(Vec::len).sum();
        for ((tier, why), rs) in tiers {
            let n = rs.len() as f64;
            let tokens: f64 = rs.iter().map(|r| r.tokens as f64).sum::<f64>().max(1.0);
            let mut tpot: Vec<f64> = rs.iter().map(|r| r.tpot_ms).collect();
            tpot.sort_by(f64::total_cmp);
            s += &format!(
                "| {network} | {} | {tier} | {why} | {:.0} % | {:.1} | {:.2} | {:.4} | {} |\n",
                if device.is_empty() { "–" } else { device },
                100.0 * n / total as f64,
                rs.iter().map(|r| r.e2e_ms).sum::<f64>() / n,
                quantile(&tpot, 0.5),
                rs.iter().map(|r| r.cost_usd).sum::<f64>() / tokens * 1e6,
                rs.iter().map(|r| r.bytes_up).sum::<u64>(),
            );
        }
    }
    s
}

/// One sentence on what ran: models, requests, prompts, tokens, clients, seed.
pub fn what_ran(config: &Config) -> String {
    let w = &config.workload;
    format!(
        "Draft `{}`, target `{}`; {} requests per cell from `{}`, {} new tokens each, {}; seed {}.",
        config
            .models
            .as_ref()
            .map_or("simulated", |m| m.draft.as_str()),
        config
            .models
            .as_ref()
            .map_or("simulated", |m| m.target.as_str()),
        w.requests,
        w.prompts,
        w.max_new_tokens,
        match (&w.clients, w.arrival_rate) {
            (_, Some(r)) => format!("Poisson arrivals at {r}/s"),
            (c, None) => {
                let c = c.as_ref().map_or(vec![1], |c| c.values());
                let list: Vec<String> = c.iter().map(usize::to_string).collect();
                format!("{} closed-loop client(s)", list.join(", "))
            }
        },
        config.seed
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&xs, 0.5), 2.5);
        assert_eq!(quantile(&xs, 0.0), 1.0);
        assert_eq!(quantile(&xs, 1.0), 4.0);
        assert!(quantile(&[], 0.5).is_nan());
    }

    fn row(strategy: &str, tokens: u32, unverified: u32, error: &str) -> RequestRow {
        RequestRow {
            strategy: strategy.into(),
            network: "lte".into(),
            tokens,
            unverified_tokens: unverified,
            tpot_ms: 1.0,
            error: error.into(),
            ..Default::default()
        }
    }

    #[test]
    fn failures_and_fallback_are_tabled_only_when_there_are_some() {
        let clean = [row("cloud_only", 10, 0, ""), row("edge_only", 10, 10, "")];
        assert_eq!(
            reliability_md(&summarise(&clean)),
            "",
            "edge-only is never verified"
        );
        let hit = [
            row("cloud_only", 10, 0, ""),
            row("cloud_only", 0, 0, "the verifier is down"),
            row("speculative(k=4)", 10, 3, ""),
            row("speculative(k=4)", 10, 0, ""),
        ];
        let md = reliability_md(&summarise(&hit));
        assert!(
            md.contains("| cloud_only | lte | – | open | 2 | 1 | 0 (0.0 %) | 0 |"),
            "{md}"
        );
        assert!(
            md.contains("| speculative(k=4) | lte | – | open | 2 | 0 | 3 (15.0 %) | 0 |"),
            "{md}"
        );
        // A routed request sent to the edge tier is not a fallback.
        let routed = |tier: &str, unverified| RequestRow {
            tier: tier.into(),
            ..row("routed", 10, unverified, "")
        };
        let by_design = [routed("edge_only", 10), routed("speculative(k=4)", 0)];
        assert_eq!(reliability_md(&summarise(&by_design)), "");
        let lost = [routed("edge_only", 10), routed("speculative(k=4)", 4)];
        let md = reliability_md(&summarise(&lost));
        assert!(
            md.contains("| routed | lte | – | open | 2 | 0 | 4 (20.0 %) | 0 |"),
            "{md}"
        );
        // A request the cloud took over from a stopped draft is tabled too.
        let took_over = [RequestRow {
            to_cloud: 1,
            ..row("speculative(k=4)", 10, 0, "")
        }];
        let md = reliability_md(&summarise(&took_over));
        assert!(md.ends_with("| 1 | 0 | 0 (0.0 %) | 1 |\n"), "{md}");
    }

    #[test]
    fn repetitions_pool_their_tokens_and_their_time() {
        // Two repetitions of one cell, each 100 tokens in 2 s: 50 tokens/s, not 100.
        let rep = |repetition, start_s| RequestRow {
            repetition,
            start_s,
            e2e_ms: 1000.0,
            ..row("cloud_only", 50, 0, "")
        };
        let rows = [rep(0, 0.0), rep(0, 1.0), rep(1, 0.0), rep(1, 1.0)];
        let lines = summarise(&rows);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].tokens_per_s, 50.0);
    }
}
