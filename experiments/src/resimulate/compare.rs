//! Measured against simulated, cell by cell: `resimulation.csv`, the report's table and
//! its figure.

use std::path::Path;

use polars::prelude::{Column, DataFrame, PolarsResult};

use crate::report::Palette;
use crate::report::plots::{Lines, Look, Marker, REFERENCE, Series, Style};
use crate::summary::Line;

/// How far a cell's simulated TPOT p50 may be from the measured one (relative) for the
/// simulator to count as calibrated.
pub const TPOT_BOUND: f64 = 0.10;

/// A figure compared: its column stem in `resimulation.csv`, its header in the report,
/// and where a summary line holds it.
pub struct Metric {
    /// Column stem (`tpot_ms_p50` → `tpot_ms_p50_measured`, `…_simulated`, `…_error`).
    pub stem: &'static str,
    /// Table header.
    pub header: &'static str,
    /// The value in a summary line.
    pub of: fn(&Line) -> f64,
}

/// The figures compared, in table order.
pub const METRICS: &[Metric] = &[
    Metric {
        stem: "ttft_ms",
        header: "TTFT ms",
        of: |l| l.ttft_ms,
    },
    Metric {
        stem: "tpot_ms_p50",
        header: "TPOT ms p50",
        of: |l| l.tpot_ms_p50,
    },
    Metric {
        stem: "tpot_ms_p90",
        header: "TPOT ms p90",
        of: |l| l.tpot_ms_p90,
    },
    Metric {
        stem: "tokens_per_s",
        header: "tokens/s",
        of: |l| l.tokens_per_s,
    },
    Metric {
        stem: "acceptance",
        header: "acceptance",
        of: |l| l.acceptance_rate,
    },
];

/// Where TPOT p50 is in [`METRICS`].
const TPOT_P50: usize = 1;

/// One cell: its setting, and each metric measured and simulated.
#[derive(Debug, Clone, PartialEq)]
pub struct Compared {
    /// The strategy, with its parameters.
    pub strategy: String,
    /// The network's name.
    pub network: String,
    /// The device's name (empty: this machine as it is).
    pub device: String,
    /// Closed-loop clients (0: Poisson arrivals).
    pub clients: u32,
    /// Each metric as the run measured it.
    pub measured: Vec<f64>,
    /// Each metric as the simulation gave it.
    pub simulated: Vec<f64>,
}

impl Compared {
    /// Relative error of metric `i`: simulated ÷ measured − 1 (NaN where the measured
    /// value is 0 or missing).
    pub fn error(&self, i: usize) -> f64 {
        let (m, s) = (self.measured[i], self.simulated[i]);
        if m.is_finite() && m != 0.0 {
            s / m - 1.0
        } else {
            f64::NAN
        }
    }

    /// TPOT p50, ms: (measured, simulated).
    pub fn tpot(&self) -> (f64, f64) {
        (self.measured[TPOT_P50], self.simulated[TPOT_P50])
    }

    /// Relative error of TPOT p50.
    pub fn tpot_error(&self) -> f64 {
        self.error(TPOT_P50)
    }

    /// Whether TPOT p50's error is within [`TPOT_BOUND`] (false when it is unknown).
    pub fn within_bound(&self) -> bool {
        self.tpot_error().abs() <= TPOT_BOUND
    }

    fn setting(&self) -> String {
        let device = if self.device.is_empty() {
            "–"
        } else {
            &self.device
        };
        format!(
            "{} | {} | {device} | {}",
            self.strategy, self.network, self.clients
        )
    }
}

/// Pairs each measured summary line with the simulated line of the same setting.
pub fn compare(measured: &[Line], simulated: &[Line]) -> Vec<Compared> {
    measured
        .iter()
        .filter_map(|m| {
            let s = simulated.iter().find(|s| s.same_setting(m))?;
            Some(Compared {
                strategy: m.strategy.clone(),
                network: m.network.clone(),
                device: m.device.clone(),
                clients: m.clients,
                measured: METRICS.iter().map(|x| (x.of)(m)).collect(),
                simulated: METRICS.iter().map(|x| (x.of)(s)).collect(),
            })
        })
        .collect()
}

/// `resimulation.csv`: one row per cell.
pub fn frame(cells: &[Compared]) -> PolarsResult<DataFrame> {
    let text =
        |f: fn(&Compared) -> &str| cells.iter().map(|c| f(c).to_string()).collect::<Vec<_>>();
    let mut cols = vec![
        Column::new("strategy".into(), text(|c| &c.strategy)),
        Column::new("network".into(), text(|c| &c.network)),
        Column::new("device".into(), text(|c| &c.device)),
        Column::new(
            "clients".into(),
            cells.iter().map(|c| c.clients).collect::<Vec<_>>(),
        ),
    ];
    for (i, m) in METRICS.iter().enumerate() {
        let pick = |f: &dyn Fn(&Compared) -> f64| cells.iter().map(f).collect::<Vec<f64>>();
        cols.push(Column::new(
            format!("{}_measured", m.stem).into(),
            pick(&|c| c.measured[i]),
        ));
        cols.push(Column::new(
            format!("{}_simulated", m.stem).into(),
            pick(&|c| c.simulated[i]),
        ));
        cols.push(Column::new(
            format!("{}_error", m.stem).into(),
            pick(&|c| c.error(i)),
        ));
    }
    DataFrame::new(cells.len(), cols)
}

/// Reads `resimulation.csv` back.
pub fn read(path: &Path) -> Result<Vec<Compared>, String> {
    use polars::prelude::{CsvReadOptions, DataType, SerReader};
    let df = CsvReadOptions::default()
        .with_has_header(true)
        .try_into_reader_with_file_path(Some(path.into()))
        .and_then(|r| r.finish())
        .map_err(|e| e.to_string())?;
    let text = |name: &str| -> Result<Vec<String>, String> {
        let c = df.column(name).map_err(|e| e.to_string())?;
        let c = c.cast(&DataType::String).map_err(|e| e.to_string())?;
        let c = c.str().map_err(|e| e.to_string())?;
        Ok((0..c.len())
            .map(|i| c.get(i).unwrap_or_default().to_string())
            .collect())
    };
    let numbers = |name: &str| -> Result<Vec<f64>, String> {
        let c = df.column(name).map_err(|e| e.to_string())?;
        let c = c.cast(&DataType::Float64).map_err(|e| e.to_string())?;
        let c = c.f64().map_err(|e| e.to_string())?;
        Ok((0..c.len()).map(|i| c.get(i).unwrap_or(f64::NAN)).collect())
    };
    let (strategy, network, device) = (text("strategy")?, text("network")?, text("device")?);
    let clients = numbers("clients")?;
    let mut measured = Vec::new();
    let mut simulated = Vec::new();
    for m in METRICS {
        measured.push(numbers(&format!("{}_measured", m.stem))?);
        simulated.push(numbers(&format!("{}_simulated", m.stem))?);
    }
    Ok((0..df.height())
        .map(|r| Compared {
            strategy: strategy[r].clone(),
            network: network[r].clone(),
            device: device[r].clone(),
            clients: clients[r] as u32,
            measured: measured.iter().map(|m| m[r]).collect(),
            simulated: simulated.iter().map(|s| s[r]).collect(),
        })
        .collect())
}

/// A value and its relative error, for a table cell: `1.81 / 1.75 (−3 %)`.
fn pair(m: f64, s: f64, err: f64) -> String {
    let num = |v: f64| match v {
        v if !v.is_finite() => "–".to_string(),
        v if v.abs() >= 100.0 => format!("{v:.0}"),
        v if v.abs() >= 1.0 => format!("{v:.2}"),
        v => format!("{v:.3}"),
    };
    let err = if err.is_finite() {
        format!(" ({:+.0} %)", err * 100.0).replace('-', "−")
    } else {
        String::new()
    };
    format!("{} / {}{err}", num(m), num(s))
}

/// The report's section: the fit, each cell's figures, and which cells miss the bound.
pub fn section_md(cells: &[Compared], fitted: &[String]) -> String {
    let mut s = String::from("\n## Re-simulation\n\n");
    s += "The simulator fitted to this run's own records (`tandem resimulate`; numbers in \
          `resimulation.csv`, the fitted `[simulation]` table in `resimulation.toml`) replays \
          the grid on the virtual clock. Each figure: measured / simulated (relative error).\n\n";
    if !fitted.is_empty() {
        s += "Fitted, per link:\n\n";
        for f in fitted {
            s += &format!("- {f}\n");
        }
        s += "\n";
    }
    s += "| strategy | network | device | clients |";
    for m in METRICS {
        s += &format!(" {} |", m.header);
    }
    s += "\n|---|---|---|---:|";
    s += &"---:|".repeat(METRICS.len());
    s += "\n";
    for c in cells {
        s += &format!("| {} |", c.setting());
        for i in 0..METRICS.len() {
            s += &format!(" {} |", pair(c.measured[i], c.simulated[i], c.error(i)));
        }
        s += "\n";
    }
    let off: Vec<&Compared> = cells.iter().filter(|c| !c.within_bound()).collect();
    s += &format!(
        "\nSimulated TPOT p50 within ±{:.0} % of the measured one in {} of {} cells",
        TPOT_BOUND * 100.0,
        cells.len() - off.len(),
        cells.len()
    );
    if off.is_empty() {
        s += ".\n";
    } else {
        let names: Vec<String> = off
            .iter()
            .map(|c| format!("{} @ {} × {}", c.strategy, c.network, c.clients))
            .collect();
        s += &format!("; outside: {}.\n", names.join(", "));
    }
    s
}

/// Simulated against measured TPOT p50, one point per cell, a series per strategy,
/// with the line where they are equal and the ±bound band.
pub fn figure(cells: &[Compared], palette: &Palette) -> Lines {
    let mut series: Vec<Series> = Vec::new();
    for c in cells {
        let p = c.tpot();
        let label = format!("{} @ {}", c.strategy, c.network);
        match series.iter_mut().find(|s| s.label == label) {
            Some(s) => s.points.push(p),
            None => series.push(
                Series::new(label, vec![p], Style::Points)
                    .with(palette.look(&c.strategy, &c.network)),
            ),
        }
    }
    let reference = |s: Series| {
        s.with(Look {
            color: Some(REFERENCE),
            marker: Marker::Circle,
        })
    };
    let xs = cells
        .iter()
        .flat_map(|c| [c.measured[TPOT_P50], c.simulated[TPOT_P50]])
        .filter(|v| v.is_finite() && *v > 0.0);
    let (lo, hi) = xs.fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
    if lo <= hi {
        let line = |f: f64| vec![(lo, lo * f), (hi, hi * f)];
        series.push(reference(Series::new(
            "simulated = measured",
            line(1.0),
            Style::Plain,
        )));
        let band = format!("±{:.0} %", TPOT_BOUND * 100.0);
        series.push(reference(Series::new(
            band,
            line(1.0 + TPOT_BOUND),
            Style::Dashed,
        )));
        series.push(reference(Series::new(
            "",
            line(1.0 - TPOT_BOUND),
            Style::Dashed,
        )));
    }
    Lines {
        name: "resimulation",
        title: "Simulated against measured time per output token (p50, per cell)".into(),
        x_desc: "measured TPOT p50 (ms)".into(),
        y_desc: "simulated TPOT p50 (ms)".into(),
        series,
        highlight: None,
        log: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(strategy: &str, tpot: f64) -> Line {
        Line {
            strategy: strategy.into(),
            network: "lan".into(),
            clients: 2,
            tpot_ms_p50: tpot,
            acceptance_rate: f64::NAN,
            ..Default::default()
        }
    }

    #[test]
    fn cells_pair_up_and_the_csv_reads_back() {
        let measured = [line("cloud_only", 1.0), line("speculative(k=4)", 2.0)];
        let simulated = [line("speculative(k=4)", 2.5), line("cloud_only", 0.95)];
        let cells = compare(&measured, &simulated);
        assert_eq!(cells.len(), 2);
        assert!((cells[0].tpot_error() + 0.05).abs() < 1e-12);
        assert!((cells[1].tpot_error() - 0.25).abs() < 1e-12);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resimulation.csv");
        crate::results::write_csv(&path, &mut frame(&cells).unwrap()).unwrap();
        let back = read(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(back[1].strategy, "speculative(k=4)");
        assert_eq!(back[1].simulated[TPOT_P50], 2.5);
        assert!(back[0].measured[4].is_nan());
        let md = section_md(&back, &[]);
        assert!(
            md.contains("in 1 of 2 cells; outside: speculative(k=4) @ lan × 2"),
            "{md}"
        );
        assert!(md.contains("2.00 / 2.50 (+25 %)"), "{md}");
    }
}
