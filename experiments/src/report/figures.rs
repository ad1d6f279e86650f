//! From rows to figures: the numbers each figure shows, computed here, drawn by
//! [`super::plots`].

use std::collections::BTreeMap;
use std::path::Path;

use tandem_decoding::analytic::expected_tokens_per_round;
use tandem_draft::RoundKind;
use tandem_protocol::LinkProfile;

use super::plots::{self, Lines, Look, Marker, Ranges, Series, Stacked, Style};
use crate::config::Config;
use crate::results::{RequestRow, RoundRow};
use crate::summary::quantile;

/// The figures, in report order.
const FIGURES: &[(&str, &str)] = &[
    ("tpot", "Time per output token by strategy"),
    ("time_breakdown", "Where the time per output token goes"),
    ("accepted_length_vs_k", "Mean accepted length against k"),
    ("acceptance_by_position", "Acceptance by draft position"),
    ("cost_vs_latency", "Cost against latency"),
    (
        "latency_vs_rtt",
        "End-to-end latency against round-trip time",
    ),
    (
        "throughput_vs_clients",
        "Throughput against the number of clients",
    ),
    ("cost_vs_volume", "Cost per day against tokens per day"),
    ("capacity", "p90 time per output token against clients"),
    (
        "resimulation",
        "Simulated against measured time per output token",
    ),
];

/// A figure's title.
pub fn title(name: &str) -> &'static str {
    FIGURES.iter().find(|f| f.0 == name).map_or("", |f| f.1)
}

/// What each figure shows and how it is computed, for its caption.
const CAPTIONS: &[(&str, &str)] = &[
    (
        "tpot",
        "Bars: 10th to 90th percentile of the requests' time per output token (after the first); dots: the median. Colour: strategy.",
    ),
    (
        "time_breakdown",
        "Per output token, over all requests of a row: drafting, network (a round's wait less the verifier's queue and forward time), verifier queue, verifier forward; other: the rest of the end-to-end time.",
    ),
    (
        "accepted_length_vs_k",
        "Tokens committed per verified round of the fixed-k speculative cells (full-length blocks), with the i.i.d. expectation for the acceptance α measured on the same rounds (dashed).",
    ),
    (
        "acceptance_by_position",
        "Of the blocks that drafted position i, the share accepted there, per k.",
    ),
    (
        "cost_vs_latency",
        "Mean end-to-end latency and dollars per million output tokens. Colour: strategy; marker: link; circled: the Pareto front among strategies whose output the target verified.",
    ),
    (
        "latency_vs_rtt",
        "Mean end-to-end latency against each link's round-trip time. Colour: strategy; marker: client count.",
    ),
    (
        "throughput_vs_clients",
        "Generated tokens per second of a cell's wall time, all clients together. Colour: strategy; marker: link.",
    ),
    (
        "cost_vs_volume",
        "Dollars a day at each daily volume with the edge hardware priced; circled: the volumes where a drafting strategy breaks even with cloud-only. Colour: strategy; marker: link.",
    ),
    (
        "capacity",
        "p90 time per output token at each client count. Colour: strategy; marker: link; dashed: the SLO. Capacity is where a curve crosses it (docs/PROTOCOL.md).",
    ),
    (
        "resimulation",
        "Each cell's TPOT p50 as measured (x) and as the simulator fitted to this run gave it (y, 8 replays pooled). Colour: strategy; marker: link; dashed: equality and the ±10 % band.",
    ),
];

/// A figure's caption: what it shows, then what ran.
pub fn caption(name: &str, config: &Config) -> String {
    let what = CAPTIONS.iter().find(|c| c.0 == name).map_or("", |c| c.1);
    let reps = config.workload.repetitions;
    let band = if reps > 1 && BANDED.contains(&name) {
        format!(" Shaded: 10th to 90th percentile of the {reps} repetitions' values.")
    } else {
        String::new()
    };
    format!("{what}{band} {}", crate::summary::what_ran(config))
}

/// The figures whose lines carry a band over the repetitions.
const BANDED: &[&str] = &["latency_vs_rtt", "throughput_vs_clients"];

/// The 10th and 90th percentile of `values`; none for fewer than two (one run).
fn spread(mut values: Vec<f64>) -> Option<(f64, f64)> {
    if values.len() < 2 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((quantile(&values, 0.1), quantile(&values, 0.9)))
}

/// "strategy @ network" (and "@ device" when there is one, "× N" clients when the
/// grid varies the clients).
fn label(strategy: &str, network: &str, device: &str, clients: Option<u32>) -> String {
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
fn several_clients(requests: &[RequestRow]) -> bool {
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
        plots::save(&latency_rtt(config, requests, &palette), dir)?;
        drawn.push("latency_vs_rtt");
    }
    if several_clients(requests) {
        plots::save(&throughput_clients(requests, &palette), dir)?;
        drawn.push("throughput_vs_clients");
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
    for r in rounds {
        let l = label(
            &r.key.strategy,
            &r.key.network,
            &r.key.device,
            several.then_some(r.key.clients),
        );
        let s = sums.entry(l).or_default();
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

/// Per strategy, mean end-to-end latency on each network, against the link's RTT.
fn latency_rtt(config: &Config, requests: &[RequestRow], palette: &Palette) -> Lines {
    let rtt: BTreeMap<&str, f64> = config
        .networks
        .iter()
        .filter_map(|n| {
            let spec = n.link.as_deref().unwrap_or(&n.name);
            let link: LinkProfile = spec.parse().ok()?;
            Some((n.name.as_str(), link.rtt().as_secs_f64() * 1e3))
        })
        .collect();
    let several = several_clients(requests);
    // One marker per client count, the same in every strategy.
    let mut counts: Vec<u32> = requests.iter().map(|r| r.clients).collect();
    counts.sort_unstable();
    counts.dedup();
    // Per line, per network, per repetition: the requests' latencies.
    type ByRep = BTreeMap<String, BTreeMap<u32, Vec<f64>>>;
    let mut by: Vec<(String, Look, ByRep)> = Vec::new();
    for r in requests.iter().filter(|r| r.error.is_empty()) {
        let mut key = r.strategy.clone();
        if !r.device.is_empty() {
            key += &format!(" on {}", r.device);
        }
        // One line per client count: latency under load is another curve (its part
        // after " @ " names the marker in a compact legend).
        if several {
            key += &format!(" @ {} clients", r.clients);
        }
        let i = match by.iter().position(|(k, ..)| *k == key) {
            Some(i) => i,
            None => {
                let look = Look {
                    color: Some(palette.color(&r.strategy)),
                    marker: Marker::nth(counts.binary_search(&r.clients).unwrap_or(0)),
                };
                by.push((key, look, BTreeMap::new()));
                by.len() - 1
            }
        };
        by[i]
            .2
            .entry(r.network.clone())
            .or_default()
            .entry(r.repetition)
            .or_default()
            .push(r.e2e_ms);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let series = by
        .into_iter()
        .map(|(s, look, nets)| {
            let (mut points, mut band) = (Vec::new(), Vec::new());
            for (n, reps) in &nets {
                let Some(&x) = rtt.get(n.as_str()) else {
                    continue;
                };
                let all: Vec<f64> = reps.values().flatten().copied().collect();
                points.push((x, mean(&all)));
                if let Some((lo, hi)) = spread(reps.values().map(|v| mean(v)).collect()) {
                    band.push((x, lo, hi));
                }
            }
            Series::new(s, points, Style::Line)
                .with(look)
                .with_band(band)
        })
        .collect();
    Lines {
        name: "latency_vs_rtt",
        title: "End-to-end latency against the link's round-trip time".into(),
        x_desc: "round-trip time (ms)".into(),
        y_desc: "mean end-to-end latency (ms)".into(),
        series,
        highlight: None,
        log: false,
    }
}

/// A summary line's strategy, network, device and clients.
type LineKey = (String, String, String, u32);

fn line_key(l: &crate::summary::Line) -> LineKey {
    (
        l.strategy.clone(),
        l.network.clone(),
        l.device.clone(),
        l.clients,
    )
}

/// Each line's tokens per second in each repetition, by setting and strategy (nothing
/// with one repetition).
fn repetitions_tokens_per_s(requests: &[RequestRow]) -> BTreeMap<LineKey, Vec<f64>> {
    let mut out: BTreeMap<_, Vec<f64>> = BTreeMap::new();
    let reps: std::collections::BTreeSet<u32> = requests.iter().map(|r| r.repetition).collect();
    if reps.len() < 2 {
        return out;
    }
    for rep in reps {
        let rows: Vec<RequestRow> = requests
            .iter()
            .filter(|r| r.repetition == rep)
            .cloned()
            .collect();
        for l in crate::summary::summarise(&rows) {
            out.entry(line_key(&l)).or_default().push(l.tokens_per_s);
        }
    }
    out
}

/// Per strategy and network, generated tokens per second of the cell's wall time (all
/// clients together) against the number of closed-loop clients.
fn throughput_clients(requests: &[RequestRow], palette: &Palette) -> Lines {
    let lines = crate::summary::summarise(requests);
    let by_repetition = repetitions_tokens_per_s(requests);
    let mut series: Vec<plots::Series> = Vec::new();
    for l in lines.iter().filter(|l| l.clients > 0) {
        let name = label(&l.strategy, &l.network, &l.device, None);
        let x = l.clients as f64;
        let point = (x, l.tokens_per_s);
        let spread = by_repetition
            .get(&line_key(l))
            .and_then(|v| spread(v.clone()))
            .map(|(lo, hi)| (x, lo, hi));
        let s = match series.iter().position(|s| s.label == name) {
            Some(i) => &mut series[i],
            None => {
                series.push(
                    Series::new(name, Vec::new(), Style::Line)
                        .with(palette.look(&l.strategy, &l.network)),
                );
                series.last_mut().expect("just pushed")
            }
        };
        s.points.push(point);
        s.band.extend(spread);
    }
    let spans = |f: fn(&(f64, f64)) -> f64| {
        let v: Vec<f64> = series.iter().flat_map(|s| s.points.iter().map(f)).collect();
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(a, b), &x| (a.min(x), b.max(x)));
        lo > 0.0 && hi / lo >= 100.0
    };
    let log = spans(|p| p.0) && spans(|p| p.1);
    Lines {
        name: "throughput_vs_clients",
        title: "Throughput against the number of concurrent clients".into(),
        x_desc: "closed-loop clients".into(),
        y_desc: "generated tokens per second (all clients)".into(),
        series,
        highlight: None,
        log,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(clients: u32, repetition: u32, tokens: u32) -> RequestRow {
        RequestRow {
            strategy: "cloud_only".into(),
            network: "lte".into(),
            clients,
            repetition,
            tokens,
            e2e_ms: 1000.0,
            ..Default::default()
        }
    }

    #[test]
    fn repeated_cells_get_a_band_over_their_repetitions() {
        // At 1 and 2 clients, two repetitions each: 40 and 60 tokens/s.
        let rows = [row(1, 0, 40), row(1, 1, 60), row(2, 0, 40), row(2, 1, 60)];
        let fig = throughput_clients(&rows, &Palette::of(&rows));
        let s = &fig.series[0];
        assert_eq!(s.points, [(1.0, 50.0), (2.0, 50.0)]);
        assert_eq!(s.band.len(), 2);
        for (b, x) in s.band.iter().zip([1.0, 2.0]) {
            assert_eq!(b.0, x);
            // The 10th and 90th percentile of {40, 60}.
            assert!(
                (b.1 - 42.0).abs() < 1e-9 && (b.2 - 58.0).abs() < 1e-9,
                "{b:?}"
            );
        }
        let one = [row(1, 0, 40), row(2, 0, 40)];
        let fig = throughput_clients(&one, &Palette::of(&one));
        assert!(fig.series[0].band.is_empty(), "one run: no band");
    }
}
