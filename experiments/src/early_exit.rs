//! The report's early-exit table (arXiv 2505.21594): for each `early_exit` line, how
//! often the verifier's provisional verdict agreed with its final one, how long before
//! the verdict the edge knew, how many pre-drafted blocks were kept, and its time per
//! token beside `speculative` and `pipelined` with the same `k` on the same setting.
//!
//! - *heard*: verified rounds whose block got a provisional verdict the edge acted on;
//! - *agreed*: of those, the share the final verdict agreed with (accepted length and
//!   next token) — the block pre-drafted on it was kept;
//! - *lead*: how much of the pass was still to run when the verifier sent it (the
//!   verdict's forward time minus the provisional verdict's time into the pass), mean;
//! - *saved per round*: speculative's median TPOT minus this line's, times this line's
//!   committed tokens per verified round.

use std::collections::BTreeMap;

use tandem_draft::RoundKind;

use crate::results::RoundRow;
use crate::summary::Line;

/// One `early_exit` line's figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitLine {
    /// The exit acted on (the layer of the provisional verdicts heard; `None` when
    /// none was heard or they came from several).
    pub layer: Option<u32>,
    /// Verified rounds that heard a provisional verdict.
    pub heard: u64,
    /// Share of those the verdict agreed with.
    pub agreement: f64,
    /// Mean ms of the pass still to run when the provisional verdict was sent.
    pub lead_ms: f64,
    /// Blocks drafted on a provisional verdict and kept.
    pub kept: u64,
    /// Committed tokens per verified round.
    pub tokens_per_round: f64,
}

/// The figures of each cell's rounds, keyed by (strategy, network, device, clients).
fn exit_lines(rounds: &[RoundRow]) -> BTreeMap<(String, String, String, u32), ExitLine> {
    let mut by: BTreeMap<_, Vec<&RoundRow>> = BTreeMap::new();
    for r in rounds
        .iter()
        .filter(|r| r.key.strategy.starts_with("early_exit"))
    {
        let k = &r.key;
        by.entry((
            k.strategy.clone(),
            k.network.clone(),
            k.device.clone(),
            k.clients,
        ))
        .or_default()
        .push(r);
    }
    by.into_iter()
        .map(|(key, rs)| (key, exit_line(&rs)))
        .collect()
}

fn exit_line(rs: &[&RoundRow]) -> ExitLine {
    let verified: Vec<_> = rs
        .iter()
        .map(|r| &r.record)
        .filter(|r| r.kind == RoundKind::Verified && r.drafted > 0)
        .collect();
    let heard: Vec<_> = verified.iter().filter(|r| r.provisional_ns > 0).collect();
    let n = heard.len() as f64;
    let mut layers: Vec<u32> = heard
        .iter()
        .map(|r| u32::from(r.provisional_layer))
        .collect();
    layers.dedup();
    ExitLine {
        layer: (layers.len() == 1).then(|| layers[0]),
        heard: heard.len() as u64,
        agreement: heard.iter().filter(|r| r.provisional_agreed).count() as f64 / n,
        lead_ms: heard
            .iter()
            .map(|r| r.provisional_lead_ns as f64 / 1e6)
            .sum::<f64>()
            / n,
        kept: verified.iter().filter(|r| r.ahead).count() as u64,
        tokens_per_round: verified.iter().map(|r| r.committed as f64).sum::<f64>()
            / verified.len().max(1) as f64,
    }
}

/// The draft length in a strategy's name (`early_exit(k=4,exit=2)` → 4).
fn k_of(strategy: &str) -> Option<&str> {
    let rest = strategy.split_once("k=")?.1;
    Some(rest.split([',', ')']).next().unwrap_or(rest))
}

/// The "Early exits" section of `report.md`; empty without an `early_exit` line.
pub fn section_md(lines: &[Line], rounds: &[RoundRow]) -> String {
    let exits = exit_lines(rounds);
    if exits.is_empty() {
        return String::new();
    }
    let tpot: BTreeMap<(&str, &str, &str, u32), f64> = lines
        .iter()
        .map(|l| {
            let key = (
                l.strategy.as_str(),
                l.network.as_str(),
                l.device.as_str(),
                l.clients,
            );
            (key, l.tpot_ms_p50)
        })
        .collect();
    let mut s = String::from(
        "\n## Early exits\n\nProvisional verdicts from the target's intermediate layers (arXiv 2505.21594): heard = verified rounds that got one, agreed = the share the final verdict agreed with (the block drafted on it was kept), lead = how much of the pass was still to run when it was sent; TPOT p50 beside speculative and pipelined with the same k on the same setting; saved per round = (speculative's TPOT − this TPOT) × committed tokens per round.\n\n| strategy | network | device | clients | exit layer | heard | agreed | lead ms | kept blocks | TPOT ms p50 | speculative | pipelined | saved per round ms |\n|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    let ms = |v: Option<&f64>| v.map_or("–".to_string(), |v| format!("{v:.2}"));
    // In the grid's order (the summary's), not the names'.
    let ordered = lines.iter().filter_map(|l| {
        let key = (
            l.strategy.clone(),
            l.network.clone(),
            l.device.clone(),
            l.clients,
        );
        exits.get(&key).map(|e| (key, e))
    });
    for ((strategy, network, device, clients), e) in ordered {
        let k = k_of(&strategy).unwrap_or("?");
        let at = |name: String| {
            tpot.get(&(name.as_str(), network.as_str(), device.as_str(), clients))
                .copied()
        };
        let own = at(strategy.clone());
        let spec = at(format!("speculative(k={k})"));
        let pipe = at(format!("pipelined(k={k})"));
        let saved = match (own, spec) {
            (Some(o), Some(s)) => format!("{:.2}", (s - o) * e.tokens_per_round),
            _ => "–".into(),
        };
        let layer = e.layer.map_or("–".to_string(), |l| l.to_string());
        let device = if device.is_empty() { "–" } else { &device };
        s += &format!(
            "| {strategy} | {network} | {device} | {clients} | {layer} | {} | {:.1} % | {:.2} | {} | {} | {} | {} | {saved} |\n",
            e.heard,
            e.agreement * 100.0,
            e.lead_ms,
            e.kept,
            ms(own.as_ref()),
            ms(spec.as_ref()),
            ms(pipe.as_ref()),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use tandem_draft::RoundRecord;

    fn round(provisional_ns: u64, agreed: bool, ahead: bool) -> RoundRow {
        let mut r = RoundRow::default();
        std::sync::Arc::make_mut(&mut r.key).strategy = "early_exit(k=4,exit=2)".into();
        r.record = RoundRecord {
            kind: RoundKind::Verified,
            drafted: 4,
            committed: 3,
            wait_ns: 10_000_000,
            provisional_ns,
            provisional_layer: 2,
            provisional_agreed: agreed,
            provisional_lead_ns: provisional_ns / 2,
            ahead,
            ..Default::default()
        };
        r
    }

    #[test]
    fn agreement_lead_and_savings_are_counted_per_line() {
        let rounds = vec![
            round(6_000_000, true, false),
            round(4_000_000, false, true),
            round(0, false, false),
        ];
        let line = |strategy: &str, tpot: f64| Line {
            strategy: strategy.into(),
            tpot_ms_p50: tpot,
            ..Default::default()
        };
        let lines = [
            line("early_exit(k=4,exit=2)", 8.0),
            line("speculative(k=4)", 10.0),
        ];
        let e = &exit_lines(&rounds)[&("early_exit(k=4,exit=2)".into(), "".into(), "".into(), 0)];
        assert_eq!((e.layer, e.heard, e.kept), (Some(2), 2, 1));
        assert_eq!(
            (e.agreement, e.lead_ms, e.tokens_per_round),
            (0.5, 2.5, 3.0)
        );
        let md = section_md(&lines, &rounds);
        assert!(
            md.contains("| 2 | 2 | 50.0 % | 2.50 | 1 | 8.00 | 10.00 | – | 6.00 |"),
            "{md}"
        );
        assert_eq!(k_of("early_exit(k=12)"), Some("12"));
        assert!(section_md(&lines, &[]).is_empty());
    }
}
