//! Cost by volume: what a day of tokens costs each strategy once the edge hardware is
//! paid for, and the daily volume from which drafting on it pays. The seed frames the
//! decision this way ("below roughly 200,000 tokens/day cloud economics win; above
//! 10 million tokens/day with predictable load edge wins").
//!
//! A strategy's day at `V` tokens, from the run's measured figures:
//!
//! - `variable`: its measured dollars per token (cloud passes or API tokens, drafting
//!   energy: the `$ / M tokens` column);
//! - `fixed`: one edge device's price over its amortisation period plus its idle power
//!   for a day (cloud-only needs no device);
//! - `capacity`: the tokens one device produces in a day at the strategy's median time
//!   per output token, serving one request at a time;
//! - `cost(V) = ⌈V / capacity⌉ · fixed + V · variable`.
//!
//! Against cloud-only (`cost_c(V) = V · variable_c`) a strategy saves `d = variable_c −
//! variable` per token, so its first device pays from `V* = fixed / d` on, provided that
//! is within the device's capacity (`fixed ≤ capacity · d`); otherwise a device costs more
//! than the cloud tokens it can replace, and the strategy never breaks even.

use crate::config::Cost;
use crate::summary::Line;

/// Seconds in a day.
const DAY_S: f64 = 86_400.0;

/// The volumes the report prices, tokens a day (the seed's two thresholds).
pub const VOLUMES: [f64; 2] = [200_000.0, 10_000_000.0];

/// One strategy's day, by volume.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DailyCost {
    /// Dollars per token.
    pub variable: f64,
    /// Dollars a day per edge device (0: no device).
    pub fixed: f64,
    /// Tokens a day one device produces (infinite: no device).
    pub capacity: f64,
}

/// Where a strategy starts to cost less than cloud-only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BreakEven {
    /// From this many tokens a day (up to one device's capacity; each further device
    /// starts its own stretch).
    At(f64),
    /// Never: it costs more per token, or a busy device costs more than the cloud
    /// tokens it replaces.
    Never,
}

impl DailyCost {
    /// A strategy's day from its measured line: `uses_edge` when it runs a draft model.
    pub fn of(line: &Line, cost: &Cost, uses_edge: bool) -> Self {
        let variable = if line.usd_per_mtok.is_finite() {
            line.usd_per_mtok / 1e6
        } else {
            0.0
        };
        if !uses_edge {
            return Self {
                variable,
                fixed: 0.0,
                capacity: f64::INFINITY,
            };
        }
        Self {
            variable,
            fixed: device_dollars_per_day(cost),
            capacity: if line.tpot_ms_p50 > 0.0 {
                DAY_S * 1e3 / line.tpot_ms_p50
            } else {
                f64::INFINITY
            },
        }
    }

    /// Dollars for `tokens` a day.
    pub fn at(&self, tokens: f64) -> f64 {
        let devices = if self.fixed > 0.0 && tokens > 0.0 {
            (tokens / self.capacity).ceil().max(1.0)
        } else {
            0.0
        };
        devices * self.fixed + tokens * self.variable
    }

    /// Where this strategy starts to cost less than `cloud`.
    pub fn break_even(&self, cloud: &DailyCost) -> BreakEven {
        let saved = cloud.variable - self.variable;
        if saved <= 0.0 {
            return BreakEven::Never;
        }
        let v = self.fixed / saved;
        if v <= self.capacity {
            BreakEven::At(v)
        } else {
            BreakEven::Never
        }
    }
}

/// One edge device's dollars a day: its price over the amortisation period, and its
/// idle power around the clock.
pub fn device_dollars_per_day(cost: &Cost) -> f64 {
    let capital = if cost.edge_amortisation_days > 0.0 {
        cost.edge_device_dollars / cost.edge_amortisation_days
    } else {
        0.0
    };
    capital + cost.edge_idle_watts * 24.0 / 1e3 * cost.dollars_per_kwh
}

/// One summary line priced by volume.
#[derive(Debug, Clone, Copy)]
pub struct Priced<'a> {
    /// The line.
    pub line: &'a Line,
    /// Whether its strategy runs a draft model (and so needs a device).
    pub drafts: bool,
    /// Its day.
    pub day: DailyCost,
    /// Where it breaks even against cloud-only on the same setting (`None`: it is
    /// cloud-only, or the setting has no cloud-only line).
    pub break_even: Option<BreakEven>,
}

/// Every line of `lines` priced by volume, each against the cloud-only line of its
/// setting (network, device, clients).
pub fn price<'a>(lines: &'a [Line], cost: &Cost) -> Vec<Priced<'a>> {
    let setting = |l: &Line| (l.network.clone(), l.device.clone(), l.clients);
    lines
        .iter()
        .map(|line| {
            let drafts = line.strategy != "cloud_only";
            let day = DailyCost::of(line, cost, drafts);
            let break_even = lines
                .iter()
                .find(|c| c.strategy == "cloud_only" && setting(c) == setting(line))
                .filter(|_| drafts)
                .map(|c| day.break_even(&DailyCost::of(c, cost, false)));
            Priced {
                line,
                drafts,
                day,
                break_even,
            }
        })
        .collect()
}

/// The report's "Cost by volume" table: per setting, each strategy's dollars a day at
/// [`VOLUMES`] and its break-even against cloud-only on the same setting. Empty when the
/// config prices no edge hardware.
pub fn volume_md(lines: &[Line], cost: &Cost) -> String {
    if !cost.prices_hardware() {
        return String::new();
    }
    let mut s = format!(
        "\n## Cost by volume\n\nOne edge device costs ${:.3} a day (its price over {} days and {} W idle); a strategy that drafts needs one for each \"tokens a day per device\" (what one device makes at the strategy's median TPOT, one request at a time). Break-even: the daily volume from which it costs less than cloud-only on the same link and device.\n\n| network | device | clients | strategy | $ / M tokens | tokens a day per device | $ a day at 200 k tokens | $ a day at 10 M tokens | break-even vs cloud-only, tokens a day |\n|---|---|---:|---|---:|---:|---:|---:|---:|\n",
        device_dollars_per_day(cost),
        cost.edge_amortisation_days,
        cost.edge_idle_watts,
    );
    for Priced {
        line: l,
        drafts,
        day,
        break_even,
    } in price(lines, cost)
    {
        let break_even = match (break_even, drafts) {
            (_, false) => "–".to_string(),
            (None, true) => "no cloud-only cell".to_string(),
            (Some(BreakEven::At(v)), true) => format!("{v:.0}"),
            (Some(BreakEven::Never), true) => "never".to_string(),
        };
        let capacity = if day.capacity.is_finite() {
            format!("{:.0}", day.capacity)
        } else {
            "–".to_string()
        };
        s += &format!(
            "| {} | {} | {} | {} | {:.4} | {capacity} | {:.2} | {:.2} | {break_even} |\n",
            l.network,
            if l.device.is_empty() {
                "–"
            } else {
                &l.device
            },
            l.clients,
            l.strategy,
            day.variable * 1e6,
            day.at(VOLUMES[0]),
            day.at(VOLUMES[1]),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost() -> Cost {
        Cost {
            dollars_per_kwh: 0.30,
            edge_device_dollars: 1_095.0,
            edge_amortisation_days: 1_095.0,
            edge_idle_watts: 5.0,
            ..Cost::default()
        }
    }

    fn line(usd_per_mtok: f64, tpot_ms_p50: f64) -> Line {
        Line {
            usd_per_mtok,
            tpot_ms_p50,
            ..Line::default()
        }
    }

    #[test]
    fn a_device_costs_its_price_over_its_life_and_its_idle_power() {
        // $1 a day of capital, 5 W × 24 h = 0.12 kWh at $0.30 = $0.036.
        assert!((device_dollars_per_day(&cost()) - 1.036).abs() < 1e-12);
        let no_life = Cost {
            edge_amortisation_days: 0.0,
            ..cost()
        };
        assert!((device_dollars_per_day(&no_life) - 0.036).abs() < 1e-12);
    }

    #[test]
    fn the_break_even_is_the_device_cost_over_the_saving_per_token() {
        let c = cost();
        let cloud = DailyCost::of(&line(2.0, 20.0), &c, false);
        // $1 per M tokens, 10 ms a token: 8.64 M tokens a day per device.
        let spec = DailyCost::of(&line(1.0, 10.0), &c, true);
        assert_eq!(spec.capacity, 8_640_000.0);
        assert_eq!(cloud.at(1e6), 2.0);
        assert!((spec.at(1e6) - (1.036 + 1.0)).abs() < 1e-9);
        // Saves $1 per M tokens, so $1.036 a day pays from 1.036 M tokens a day.
        match spec.break_even(&cloud) {
            BreakEven::At(v) => assert!((v - 1_036_000.0).abs() < 1e-3, "{v}"),
            BreakEven::Never => panic!("it breaks even"),
        }
        // Past one device's capacity, a second is bought.
        assert!((spec.at(9e6) - (2.0 * 1.036 + 9.0)).abs() < 1e-9);
    }

    #[test]
    fn no_break_even_when_the_edge_costs_more_per_token_or_cannot_make_enough() {
        let c = cost();
        let cloud = DailyCost::of(&line(2.0, 20.0), &c, false);
        let dearer = DailyCost::of(&line(3.0, 10.0), &c, true);
        assert_eq!(dearer.break_even(&cloud), BreakEven::Never);
        // Saves $1 per M tokens but makes only 86 400 tokens a day (1 s a token): a
        // full device saves $0.086, less than its $1.036 a day.
        let slow = DailyCost::of(&line(1.0, 1_000.0), &c, true);
        assert_eq!(slow.break_even(&cloud), BreakEven::Never);
        // Without hardware costs, any saving pays at once.
        let free = DailyCost::of(&line(1.0, 10.0), &Cost::default(), true);
        assert_eq!(free.break_even(&cloud), BreakEven::At(0.0));
        assert_eq!(free.at(1e6), 1.0);
    }
}
