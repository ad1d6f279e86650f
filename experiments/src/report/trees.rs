//! The figures of a report whose grid drafts token trees: committed tokens per round
//! trip against the link's RTT, tokens per round against the nodes sent, and
//! acceptance by sibling rank, for every strategy that drafts (chains and trees side
//! by side).

use std::collections::BTreeMap;

use tandem_draft::RoundKind;
use tandem_protocol::LinkProfile;

use super::figures::{Palette, label, several_clients};
use super::plots::{Lines, Marker, Series, Style};
use crate::config::Config;
use crate::results::{RequestRow, RoundRow, rank_totals};

/// A cell's rounds: its strategy, network and client count.
type CellRounds<'a> = BTreeMap<(&'a str, &'a str, u32), Vec<(f64, f64)>>;

/// Per (strategy, network, clients): the verified rounds that carried a draft, as
/// (nodes sent, tokens the round committed: the accepted path and the target's token).
fn per_cell(rounds: &[RoundRow]) -> CellRounds<'_> {
    let mut by = CellRounds::new();
    for r in rounds
        .iter()
        .filter(|r| r.record.kind == RoundKind::Verified && r.record.drafted > 0)
    {
        let key = (
            r.key.strategy.as_str(),
            r.key.network.as_str(),
            r.key.clients,
        );
        by.entry(key)
            .or_default()
            .push((r.record.drafted as f64, r.record.accepted as f64 + 1.0));
    }
    by
}

/// The client counts of the grid, when it varies them.
fn client_counts(requests: &[RequestRow]) -> Vec<Option<u32>> {
    if !several_clients(requests) {
        return vec![None];
    }
    let mut counts: Vec<u32> = requests.iter().map(|r| r.clients).collect();
    counts.sort_unstable();
    counts.dedup();
    counts.into_iter().map(Some).collect()
}

/// "strategy" or "strategy × N".
fn named(strategy: &str, clients: Option<u32>) -> String {
    match clients {
        Some(c) => format!("{strategy} × {c}"),
        None => strategy.to_string(),
    }
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    sum / n.max(1) as f64
}

/// Whether the grid drafts token trees.
pub(super) fn has_trees(requests: &[RequestRow]) -> bool {
    requests.iter().any(|r| r.strategy_kind == "tree")
}

/// Strategies in grid order.
fn strategies(requests: &[RequestRow]) -> Vec<&str> {
    let mut sorted: Vec<&RequestRow> = requests.iter().collect();
    sorted.sort_by_key(|r| r.cell);
    let mut out: Vec<&str> = Vec::new();
    for r in sorted {
        if !out.contains(&r.strategy.as_str()) {
            out.push(&r.strategy);
        }
    }
    out
}

/// Per drafting strategy (and client count, when the grid varies it: a marker each),
/// mean committed tokens per verified round on each link, against the link's RTT (log
/// axes).
pub(super) fn tokens_per_round_trip(
    config: &Config,
    requests: &[RequestRow],
    rounds: &[RoundRow],
    palette: &Palette,
) -> Lines {
    let rtt: BTreeMap<&str, f64> = config
        .networks
        .iter()
        .filter_map(|n| {
            let link: LinkProfile = n.link.as_deref().unwrap_or(&n.name).parse().ok()?;
            Some((n.name.as_str(), link.rtt().as_secs_f64() * 1e3))
        })
        .collect();
    let cells = per_cell(rounds);
    let mut series = Vec::new();
    for clients in client_counts(requests) {
        for s in strategies(requests) {
            let mut points: Vec<(f64, f64)> = cells
                .iter()
                .filter(|((strategy, _, c), _)| *strategy == s && clients.is_none_or(|n| n == *c))
                .filter_map(|((_, network, _), rs)| {
                    Some((*rtt.get(network)?, mean(rs.iter().map(|r| r.1))))
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut line = Series::new(named(s, clients), points, Style::Line);
            line.look.color = Some(palette.color(s));
            line.look.marker = Marker::nth(series.len() / strategies(requests).len().max(1));
            series.push(line);
        }
    }
    Lines {
        name: "tokens_per_round_trip",
        title: "Committed tokens per round trip against the link's round-trip time".into(),
        x_desc: "round-trip time (ms)".into(),
        y_desc: "tokens committed per verified round".into(),
        series,
        highlight: None,
        log: true,
    }
}

/// Per drafting strategy and link, mean tokens committed per verified round against
/// the mean nodes (drafted tokens) sent per round.
pub(super) fn tokens_per_nodes(
    requests: &[RequestRow],
    rounds: &[RoundRow],
    palette: &Palette,
) -> Lines {
    let cells = per_cell(rounds);
    let several = several_clients(requests);
    let mut series = Vec::new();
    for s in strategies(requests) {
        for ((strategy, network, clients), rs) in &cells {
            if *strategy != s {
                continue;
            }
            let point = (mean(rs.iter().map(|r| r.0)), mean(rs.iter().map(|r| r.1)));
            let label = label(s, network, "", several.then_some(*clients));
            let mut dot = Series::new(label, vec![point], Style::Points);
            dot.look = palette.look(s, network);
            series.push(dot);
        }
    }
    Lines {
        name: "tokens_vs_tree_nodes",
        title: "Tokens per round against the nodes drafted per round".into(),
        x_desc: "drafted tokens (tree nodes) per round".into(),
        y_desc: "tokens committed per verified round".into(),
        series,
        highlight: None,
        log: false,
    }
}

/// Per drafting strategy, over all its verified rounds: the share of the candidates of
/// each sibling rank (0, 1, 2 and later) the verifier tested that it accepted. `None`
/// when no round counted its candidates (a results folder from before the counts).
pub(super) fn acceptance_by_rank(
    requests: &[RequestRow],
    rounds: &[RoundRow],
    palette: &Palette,
) -> Option<Lines> {
    let mut series = Vec::new();
    for s in strategies(requests) {
        let counts = rank_totals(rounds.iter().filter(|r| r.key.strategy == s));
        let points: Vec<(f64, f64)> = (0..3)
            .filter(|&i| counts[i].0 > 0)
            .map(|i| (i as f64, counts[i].1 as f64 / counts[i].0 as f64))
            .collect();
        if points.is_empty() {
            continue;
        }
        let mut line = Series::new(s, points, Style::Line);
        line.look.color = Some(palette.color(s));
        series.push(line);
    }
    (!series.is_empty()).then(|| Lines {
        name: "acceptance_by_rank",
        title: "Acceptance by sibling rank".into(),
        x_desc: "sibling rank (0: the draft's first choice; 2: the third and later)".into(),
        y_desc: "accepted / tested".into(),
        series,
        highlight: None,
        log: false,
    })
}
