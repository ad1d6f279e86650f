//! From rows to figures: the numbers each figure shows, computed here, drawn by
//! [`super::plots`].

use std::collections::BTreeMap;
use std::path::Path;

use tandem_decoding::analytic::expected_tokens_per_round;
use tandem_draft::RoundKind;

use super::plots::{self, Lines, Look, Marker, Ranges, Series, Stacked, Style};
use crate::config::Config;
use crate::results::{CellKey, RequestRow, RoundRow};
use crate::summary::quantile;

/// "strategy @ network" (and "@ device" when there is one, "× N" clients when the
/// grid varies the clients).
pub(super) fn label(strategy: &str, network: &str, device: &str, clients: Option<u32>) -> String {
    let mut l = format!("{strategy} @ {network}");
    if !device.is_empty() {
        l += &format!(" @ {device}");
    }
    if let Some(c) = clients {
        l += &format!(" × {c}");
    }
    l
}

/// One colour per strategy and one marker per link, in grid order, for every figure of
/// a report: the same strategy looks the same in each.
#[derive(Debug, Clone, Default)]
pub struct Palette {
    strategies: Vec<String>,
    networks: Vec<String>,
}

impl Palette {
    /// The strategies and links of `requests`, in the order of the grid.
    pub fn of(requests: &[RequestRow]) -> Palette {
        let mut sorted: Vec<&RequestRow> = requests.iter().collect();
        sorted.sort_by_key(|r| (r.cell, r.request));
        let mut p = Palette::default();
        for r in sorted {
            if !p.strategies.contains(&r.strategy) {
                p.strategies.push(r.strategy.clone());
            }
            if !p.networks.contains(&r.network) {
                p.networks.push(r.network.clone());
            }
        }
        p
    }

    /// The strategy's colour index.
    pub fn color(&self, strategy: &str) -> usize {
        self.strategies
            .iter()
            .position(|s| s == strategy)
            .unwrap_or(self.strategies.len())
    }

    /// The link's marker.
    pub fn marker(&self, network: &str) -> Marker {
        Marker::nth(self.networks.iter().position(|n| n == network).unwrap_or(0))
    }

    /// The strategy's colour with the link's marker.
    pub fn look(&self, strategy: &str, network: &str) -> Look {
        Look {
            color: Some(self.color(strategy)),
            marker: self.marker(network),
        }
    }
}

/// Whether the requests come from more than one client count.
pub(super) fn several_clients(requests: &[RequestRow]) -> bool {
    requests.windows(2).any(|w| w[0].clients != w[1].clients)
}

/// Requests grouped by label, in grid order, with the strategy's color index.
fn groups(requests: &[RequestRow]) -> Vec<(String, usize, Vec<&RequestRow>)> {
    let several = several_clients(requests);
    let palette = Palette::of(requests);
    let mut order: Vec<String> = Vec::new();
    let mut by: BTreeMap<String, (usize, Vec<&RequestRow>)> = BTreeMap::new();
    let mut sorted: Vec<&RequestRow> = requests.iter().filter(|r| r.error.is_empty()).collect();
    sorted.sort_by_key(|r| (r.cell, r.request));
    for r in sorted {
        let s = palette.color(&r.strategy);
        let l = label(
            &r.strategy,
            &r.network,
            &r.device,
            several.then_some(r.clients),
        );
        if !by.contains_key(&l) {
            order.push(l.clone());
        }
        by.entry(l).or_insert((s, Vec::new())).1.push(r);
    }
    order
        .into_iter()
        .map(|l| {
            let (c, rs) = by.remove(&l).expect("listed");
            (l, c, rs)
        })
        .collect()
}

/// Draws every figure into `dir`; the names of those drawn.
pub fn draw_all(
    dir: &Path,
    config: &Config,
    requests: &[RequestRow],
    rounds: &[RoundRow],
) -> Result<Vec<&'static str>, String> {
    plots::register_font()?;
    let groups = groups(requests);
    let palette = Palette::of(requests);
    let mut drawn = Vec::new();

    let rows = groups
        .iter()
        .map(|(l, c, rs)| {
            let mut t: Vec<f64> = rs.iter().map(|r| r.tpot_ms).collect();
            t.sort_by(f64::total_cmp);
            (
                l.clone(),
                quantile(&t, 0.1),
                quantile(&t, 0.5),
                quantile(&t, 0.9),
                *c,
            )
        })
        .collect();
    plots::save(
        &Ranges {
            name: "tpot",
            title: "Time per output token (10th, 50th, 90th percentile)".into(),
            x_desc: "time per output token (ms)".into(),
            rows,
        },
        dir,
    )?;
    drawn.push("tpot");

    plots::save(&breakdown(&groups, rounds, several_clients(requests)), dir)?;
    drawn.push("time_breakdown");

    if let Some(fig) = accepted_length(requests, rounds) {
        plots::save(&fig, dir)?;
        drawn.push("accepted_length_vs_k");
    }
    if let Some(fig) = by_position(requests, rounds) {
        plots::save(&fig, dir)?;
        drawn.push("acceptance_by_position");
    }
    plots::save(&cost_latency(&groups, &palette), dir)?;
    drawn.push("cost_vs_latency");
    if config.networks.len() > 1 {
        plots::save(&super::load::latency_rtt(config, requests, &palette), dir)?;
        drawn.push("latency_vs_rtt");
    }
    if several_clients(requests) {
        plots::save(&super::load::throughput_clients(requests, &palette), dir)?;
        drawn.push("throughput_vs_clients");
    }
    if super::trees::has_trees(requests) {
        if config.networks.len() > 1 {
            let fig = super::trees::tokens_per_round_trip(config, requests, rounds, &palette);
            plots::save(&fig, dir)?;
            drawn.push("tokens_per_round_trip");
        }
        plots::save(
            &super::trees::tokens_per_nodes(requests, rounds, &palette),
            dir,
        )?;
        drawn.push("tokens_vs_tree_nodes");
        if let Some(fig) = super::trees::acceptance_by_rank(requests, rounds, &palette) {
            plots::save(&fig, dir)?;
            drawn.push("acceptance_by_rank");
        }
    }
    if config.cost.prices_hardware() {
        plots::save(&cost_volume(config, requests, &palette), dir)?;
        drawn.push("cost_vs_volume");
    }
    Ok(drawn)
}

/// Per output token: drafting, network, queue, forward, and the rest of the wall time.
fn breakdown(
    groups: &[(String, usize, Vec<&RequestRow>)],
    rounds: &[RoundRow],
    several: bool,
) -> Stacked {
    let mut sums: BTreeMap<String, [f64; 4]> = BTreeMap::new();
    // A cell's rounds come together: its label is made once a run of them, not once a
    // round (a 100 000-client cell has millions).
    let mut current: Option<(&CellKey, String)> = None;
    for r in rounds {
        let key = &*r.key;
        let l = match &current {
            Some((k, l)) if std::ptr::eq(*k, key) || *k == key => l,
            _ => {
                let l = label(
                    &key.strategy,
                    &key.network,
                    &key.device,
                    several.then_some(key.clients),
                );
                &current.insert((key, l)).1
            }
        };
        let s = match sums.get_mut(l) {
            Some(s) => s,
            None => sums.entry(l.clone()).or_default(),
        };
        s[0] += r.record.draft_ns as f64;
        s[1] += r.record.network_ns as f64;
        s[2] += r.record.queue_ns as f64;
        s[3] += (r.record.forward_ns + r.record.paced_ns) as f64;
    }
    let rows = groups
        .iter()
        .map(|(l, _, rs)| {
            let tokens: f64 = rs.iter().map(|r| r.tokens as f64).sum::<f64>().max(1.0);
            let wall_ms: f64 = rs.iter().map(|r| r.e2e_ms).sum();
            let s = sums.get(l).copied().unwrap_or_default();
            let parts: Vec<f64> = s.iter().map(|ns| ns / 1e6 / tokens).collect();
            let other = (wall_ms / tokens - parts.iter().sum::<f64>()).max(0.0);
            (l.clone(), [parts, vec![other]].concat())
        })
        .collect();
    Stacked {
        name: "time_breakdown",
        title: "Where the time per output token goes (mean over requests)".into(),
        x_desc: "ms per output token".into(),
        parts: vec![
            "draft",
            "network",
            "verifier queue",
            "verifier forward",
            "other",
        ],
        rows,
    }
}

/// Verified full-length rounds of fixed-k speculative cells, by k (a request's last
/// rounds may draft fewer tokens than k to stop at its length; they are left out).
fn speculative_by_k<'a>(
    requests: &[RequestRow],
    rounds: &'a [RoundRow],
) -> BTreeMap<u32, Vec<&'a RoundRow>> {
    let k_of: BTreeMap<&str, u32> = requests
        .iter()
        .filter(|r| r.strategy_kind == "speculative")
        .map(|r| (r.strategy.as_str(), r.k))
        .collect();
    let mut by: BTreeMap<u32, Vec<&RoundRow>> = BTreeMap::new();
    for r in rounds
        .iter()
        .filter(|r| r.record.kind == RoundKind::Verified && r.record.drafted > 0)
    {
        if let Some(&k) = k_of.get(r.key.strategy.as_str())
            && r.record.k == k
            && r.record.drafted == k
        {
            by.entry(k).or_default().push(r);
        }
    }
    by
}

/// The measured mean accepted length per k, and the analytical curve for the
/// per-token acceptance α estimated from the same rounds (accepted tokens over
/// positions tried: a round tries each accepted position, plus the first rejected).
fn accepted_length(requests: &[RequestRow], rounds: &[RoundRow]) -> Option<Lines> {
    let by = speculative_by_k(requests, rounds);
    if by.is_empty() {
        return None;
    }
    let (mut accepted, mut tried) = (0.0, 0.0);
    let measured: Vec<(f64, f64)> = by
        .iter()
        .map(|(k, rs)| {
            let a: f64 = rs.iter().map(|r| r.record.accepted as f64).sum();
            accepted += a;
            tried += rs
                .iter()
                .map(|r| {
                    r.record.accepted as f64
                        + f64::from(u8::from(r.record.accepted < r.record.drafted))
                })
                .sum::<f64>();
            (*k as f64, 1.0 + a / rs.len() as f64)
        })
        .collect();
    let alpha = if tried > 0.0 { accepted / tried } else { 0.0 };
    let kmax = by.keys().max().copied().unwrap_or(1).max(8);
    let curve = (1..=kmax)
        .map(|k| (k as f64, expected_tokens_per_round(alpha, k as usize)))
        .collect();
    Some(Lines {
        name: "accepted_length_vs_k",
        title: "Mean accepted length (tokens per round) against draft length k".into(),
        x_desc: "draft length k".into(),
        y_desc: "tokens per verification round".into(),
        series: vec![
            Series::new("measured (speculative)", measured, Style::Line),
            Series::new(
                format!("(1 − α^(k+1)) / (1 − α), α = {alpha:.3}"),
                curve,
                Style::Dashed,
            ),
        ],
        highlight: None,
        log: false,
    })
}

/// Of the blocks that drafted position i, the share whose token i was accepted.
fn by_position(requests: &[RequestRow], rounds: &[RoundRow]) -> Option<Lines> {
    let by = speculative_by_k(requests, rounds);
    if by.is_empty() {
        return None;
    }
    let series = by
        .iter()
        .enumerate()
        .map(|(i, (k, rs))| {
            let points = (0..*k as usize)
                .map(|i| {
                    let drafted = rs.iter().filter(|r| r.record.drafted as usize > i).count();
                    let accepted = rs.iter().filter(|r| r.record.accepted as usize > i).count();
                    ((i + 1) as f64, accepted as f64 / drafted.max(1) as f64)
                })
                .collect();
            Series::new(format!("k = {k}"), points, Style::Line).with(Look {
                color: None,
                marker: Marker::nth(i),
            })
        })
        .collect();
    Some(Lines {
        name: "acceptance_by_position",
        title: "Share of drafted tokens accepted, by position in the block".into(),
        x_desc: "position in the draft block".into(),
        y_desc: "accepted / drafted at that position".into(),
        series,
        highlight: None,
        log: false,
    })
}

/// Each group's dollars per million tokens against its mean end-to-end latency; the
/// groups no other beats on both are the Pareto front.
fn cost_latency(groups: &[(String, usize, Vec<&RequestRow>)], palette: &Palette) -> Lines {
    // (label, latency, cost, whether the target verified most of the output, look)
    let points: Vec<(String, f64, f64, bool, Look)> = groups
        .iter()
        .map(|(l, c, rs)| {
            let n = rs.len().max(1) as f64;
            let tokens: f64 = rs.iter().map(|r| r.tokens as f64).sum::<f64>().max(1.0);
            let unverified: f64 = rs.iter().map(|r| r.unverified_tokens as f64).sum();
            let e2e = rs.iter().map(|r| r.e2e_ms).sum::<f64>() / n;
            let usd = rs.iter().map(|r| r.cost_usd).sum::<f64>() / tokens * 1e6;
            let look = Look {
                marker: rs
                    .first()
                    .map_or(Marker::Circle, |r| palette.marker(&r.network)),
                color: Some(*c),
            };
            (l.clone(), e2e, usd, unverified * 2.0 < tokens, look)
        })
        .collect();
    // The front is drawn among strategies whose output the target verified: edge-only
    // output is cheaper and faster, and not the same output.
    let verified: Vec<&(String, f64, f64, bool, Look)> = points.iter().filter(|p| p.3).collect();
    let front: Vec<(f64, f64)> = verified
        .iter()
        .filter(|(_, x, y, ..)| {
            !verified
                .iter()
                .any(|(_, x2, y2, ..)| x2 <= x && y2 <= y && (x2 < x || y2 < y))
        })
        .map(|(_, x, y, ..)| (*x, *y))
        .collect();
    Lines {
        name: "cost_vs_latency",
        title: "Cost per million tokens against end-to-end latency".into(),
        x_desc: "mean end-to-end latency (ms)".into(),
        y_desc: "$ per million output tokens".into(),
        series: points
            .into_iter()
            .map(|(l, x, y, _, look)| Series::new(l, vec![(x, y)], Style::Points).with(look))
            .collect(),
        highlight: Some(("Pareto front (verified output)".into(), front)),
        log: false,
    }
}

/// Each setting's dollars a day against tokens a day (10 k to 100 M, log-log), with the
/// volumes where drafting strategies break even against cloud-only circled (see
/// [`crate::crossover`]).
fn cost_volume(config: &Config, requests: &[RequestRow], palette: &Palette) -> Lines {
    use crate::crossover::{BreakEven, Priced};
    let lines = crate::summary::summarise(requests);
    let several = several_clients(requests);
    let volumes: Vec<f64> = (0..=40)
        .map(|i| 10f64.powf(4.0 + i as f64 / 10.0))
        .collect();
    let mut series = Vec::new();
    let mut even = Vec::new();
    for Priced {
        line: l,
        day,
        break_even,
        ..
    } in crate::crossover::price(&lines, &config.cost)
    {
        let points = volumes.iter().map(|&v| (v, day.at(v))).collect();
        let name = label(
            &l.strategy,
            &l.network,
            &l.device,
            several.then_some(l.clients),
        );
        series.push(
            Series::new(name, points, Style::Line).with(palette.look(&l.strategy, &l.network)),
        );
        if let Some(BreakEven::At(v)) = break_even {
            even.push((v, day.at(v)));
        }
    }
    Lines {
        name: "cost_vs_volume",
        title: "Dollars a day against tokens a day (edge hardware included)".into(),
        x_desc: "tokens a day".into(),
        y_desc: "$ a day".into(),
        series,
        highlight: Some(("break-even vs cloud-only".into(), even)),
        log: true,
    }
}
