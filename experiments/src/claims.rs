//! The report's "Against the paper" table: each `[[claim]]` of the config (a paper's
//! latency reduction of one strategy over another) beside the reduction this run
//! measured on every setting where both cells ran.
//!
//! Reduction = 1 − TPOT(strategy) / (TPOT(baseline) + `baseline_extra_ms`), on median
//! times per output token: 0.35 means 35 % less time per token than the baseline.

use crate::config::Claim;
use crate::summary::Line;

/// The reduction one claim measures on one setting.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// Network, device, clients.
    pub setting: (String, String, u32),
    /// The baseline's time per token, ms (its measured median plus the claim's extra).
    pub baseline_ms: f64,
    /// The strategy's median time per token, ms.
    pub strategy_ms: f64,
    /// 1 − strategy ÷ baseline.
    pub reduction: f64,
}

/// What `claim` measures on each setting where both its cells ran, in the lines' order.
pub fn measure(claim: &Claim, lines: &[Line]) -> Vec<Measured> {
    let setting = |l: &Line| (l.network.clone(), l.device.clone(), l.clients);
    lines
        .iter()
        .filter(|s| s.strategy == claim.strategy)
        .filter_map(|s| {
            let b = lines
                .iter()
                .find(|b| b.strategy == claim.baseline && setting(b) == setting(s))?;
            let baseline_ms = b.tpot_ms_p50 + claim.baseline_extra_ms;
            Some(Measured {
                setting: setting(s),
                baseline_ms,
                strategy_ms: s.tpot_ms_p50,
                reduction: 1.0 - s.tpot_ms_p50 / baseline_ms,
            })
        })
        .collect()
}

/// The "Against the paper" section of `report.md`; empty without claims.
pub fn section_md(claims: &[Claim], lines: &[Line]) -> String {
    if claims.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Against the paper\n\nEach claim's reduction of time per output token (median) as this run measures it, beside the paper's: 1 − strategy ÷ baseline; a negative reduction means the strategy is slower.\n\n| claim | strategy | baseline | network | device | clients | baseline TPOT ms | strategy TPOT ms | Tandem | paper | source |\n|---|---|---|---|---|---:|---:|---:|---:|---:|---|\n",
    );
    for c in claims {
        let extra = match c.baseline_extra_ms {
            0.0 => String::new(),
            ms => format!(" + {ms} ms/token"),
        };
        for m in measure(c, lines) {
            let (network, device, clients) = &m.setting;
            let device = if device.is_empty() { "–" } else { device };
            s += &format!(
                "| {} | {} | {}{extra} | {network} | {device} | {clients} | {:.1} | {:.1} | {:.0} % | {:.0} % | {} |\n",
                c.label,
                c.strategy,
                c.baseline,
                m.baseline_ms,
                m.strategy_ms,
                m.reduction * 100.0,
                c.paper * 100.0,
                c.source,
            );
        }
    }
    let notes: Vec<String> = claims
        .iter()
        .filter(|c| !c.note.trim().is_empty())
        .map(|c| format!("- **{}**: {}", c.label, c.note.trim()))
        .collect();
    if !notes.is_empty() {
        s += &format!("\n{}\n", notes.join("\n"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(strategy: &str, clients: u32, tpot: f64) -> Line {
        Line {
            strategy: strategy.into(),
            network: "paper".into(),
            clients,
            tpot_ms_p50: tpot,
            ..Default::default()
        }
    }

    #[test]
    fn reductions_are_measured_per_setting_against_the_named_baseline() {
        let lines = [
            line("cloud_only", 1, 600.0),
            line("speculative(k=4)", 1, 390.0),
            line("cloud_only", 16, 100.0),
            line("speculative(k=4)", 16, 150.0),
            line("speculative(k=4)", 64, 150.0),
        ];
        let claim = Claim {
            label: "speculation".into(),
            strategy: "speculative(k=4)".into(),
            baseline: "cloud_only".into(),
            paper: 0.35,
            source: "abstract".into(),
            baseline_extra_ms: 0.0,
            note: "why".into(),
        };
        let m = measure(&claim, &lines);
        assert_eq!(m.len(), 2, "64 clients have no baseline");
        assert!((m[0].reduction - 0.35).abs() < 1e-12);
        assert!((m[1].reduction + 0.5).abs() < 1e-12);
        let with_rtt = Claim {
            baseline_extra_ms: 150.0,
            ..claim.clone()
        };
        assert!((measure(&with_rtt, &lines)[0].reduction - (1.0 - 390.0 / 750.0)).abs() < 1e-12);
        let md = section_md(&[claim], &lines);
        assert!(
            md.contains("| 600.0 | 390.0 | 35 % | 35 % | abstract |"),
            "{md}"
        );
        assert!(md.contains("- **speculation**: why"));
        assert!(section_md(&[], &lines).is_empty());
    }
}
