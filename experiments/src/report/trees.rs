//! The figures of a report whose grid drafts token trees: committed tokens per round
//! trip against the link's RTT, and tokens per round against the nodes sent, for every
//! strategy that drafts (chains and trees side by side).

use std::collections::BTreeMap;

use tandem_draft::RoundKind;
use tandem_protocol::LinkProfile;

use super::figures::Palette;
use super::plots::{Lines, Series, Style};
use crate::config::Config;
use crate::results::{RequestRow, RoundRow};

/// Per (strategy, network): the verified rounds that carried a draft, as (nodes sent,
/// tokens the round committed: the accepted path and the target's token).
fn per_cell(rounds: &[RoundRow]) -> BTreeMap<(&str, &str), Vec<(f64, f64)>> {
    let mut by: BTreeMap<(&str, &str), Vec<(f64, f64)>> = BTreeMap::new();
    for r in rounds
        .iter()
        .filter(|r| r.record.kind == RoundKind::Verified && r.record.drafted > 0)
    {
        by.entry((r.key.strategy.as_str(), r.key.network.as_str()))
            .or_default()
            .push((r.record.drafted as f64, r.record.accepted as f64 + 1.0));
    }
    by
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

/// Per drafting strategy, mean committed tokens per verified round on each link,
/// against the link's RTT (log axes).
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
    let series = strategies(requests)
        .into_iter()
        .filter_map(|s| {
            let mut points: Vec<(f64, f64)> = cells
                .iter()
                .filter(|((strategy, _), _)| *strategy == s)
                .filter_map(|((_, network), rs)| {
                    Some((*rtt.get(network)?, mean(rs.iter().map(|r| r.1))))
                })
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (!points.is_empty()).then(|| {
                let mut line = Series::new(s, points, Style::Line);
                line.look.color = Some(palette.color(s));
                line
            })
        })
        .collect();
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
    let mut series = Vec::new();
    for s in strategies(requests) {
        for ((strategy, network), rs) in &cells {
            if *strategy != s {
                continue;
            }
            let point = (mean(rs.iter().map(|r| r.0)), mean(rs.iter().map(|r| r.1)));
            let mut dot = Series::new(format!("{s} @ {network}"), vec![point], Style::Points);
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
