//! Capacity and goodput under a latency SLO (`[report] slo_tpot_ms`, optionally
//! `slo_ttft_ms`), and the analytical capacity law beside the measured capacity.
//!
//! - **Goodput** of a line (strategy, network, device, clients): tokens of the requests
//!   that met the SLO ÷ the cell's wall time (first start to last end), tokens/s.
//! - **Capacity** of a strategy on a link: the most closed-loop clients whose p90 TPOT
//!   stays within the SLO. The grid's client counts are the sweep; between the last
//!   count within the SLO and the first beyond it the crossing is interpolated on log
//!   axes (p90 TPOT against clients). Beyond the sweep it is only a bound: `≥ N` when
//!   every count met the SLO, `< N` when none did.
//! - **The law** ("speculation at a distance", arXiv 2606.25091): a saturated verifier
//!   carries about `1 + γ·t_d/t_v` times the clients of cloud-only decoding, where γ is
//!   the draft length, `t_d` the draft's time per token and `t_v` the verification
//!   pass, both measured at the strategy's smallest client count: while a client
//!   drafts, the verifier serves others.

use std::collections::BTreeMap;

use tandem_draft::RoundKind;

use crate::config::ReportOptions;
use crate::report::Palette;
use crate::report::plots::{Lines, Look, Marker, REFERENCE, Series, Style};
use crate::results::{RequestRow, RoundRow};
use crate::summary::quantile;

/// The SLO a report measures against.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slo {
    /// Most TPOT a request may have, ms.
    pub tpot_ms: f64,
    /// Most TTFT a request may have to count in goodput, ms (none: no bound).
    pub ttft_ms: Option<f64>,
}

impl Slo {
    /// The config's SLO, if it sets one.
    pub fn of(report: &ReportOptions) -> Option<Slo> {
        report.slo_tpot_ms.map(|tpot_ms| Slo {
            tpot_ms,
            ttft_ms: report.slo_ttft_ms,
        })
    }

    /// Whether a request met it (a failed request did not).
    pub fn met(&self, r: &RequestRow) -> bool {
        r.error.is_empty()
            && r.tpot_ms <= self.tpot_ms
            && self.ttft_ms.is_none_or(|t| r.ttft_ms <= t)
    }
}

/// One client count of a strategy's sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Closed-loop clients.
    pub clients: u32,
    /// 90th percentile TPOT, ms.
    pub tpot_p90_ms: f64,
    /// Tokens per second of requests that met the SLO.
    pub goodput: f64,
    /// Share of requests that met it.
    pub met: f64,
}

/// How many clients a strategy carries within the SLO.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Capacity {
    /// Not even the smallest client count met it.
    Below(u32),
    /// The crossing, interpolated between two client counts of the sweep.
    About(f64),
    /// Every client count met it, up to this one.
    AtLeast(u32),
}

impl Capacity {
    /// The number, where there is one.
    pub fn value(&self) -> Option<f64> {
        match self {
            Capacity::About(c) => Some(*c),
            _ => None,
        }
    }
}

impl std::fmt::Display for Capacity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Capacity::Below(n) => write!(f, "< {n}"),
            Capacity::About(c) if *c >= 100.0 => write!(f, "{c:.0}"),
            Capacity::About(c) => write!(f, "{c:.1}"),
            Capacity::AtLeast(n) => write!(f, "≥ {n}"),
        }
    }
}

/// A strategy's sweep over client counts on one link and device.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// The strategy, with its parameters.
    pub strategy: String,
    /// The strategy's draft length (0: none, or it varies).
    pub k: u32,
    /// The network.
    pub network: String,
    /// The device (empty: this machine).
    pub device: String,
    /// By client count, ascending (open-loop lines are left out).
    pub points: Vec<Point>,
    /// Its capacity under the SLO.
    pub capacity: Capacity,
    /// What the law predicts from cloud-only's capacity on the same link and device
    /// (none for cloud-only, without a draft length, or without a cloud-only number).
    pub law: Option<f64>,
}

/// The capacity of a sweep: see the module's doc.
pub fn capacity(points: &[Point], slo: f64) -> Capacity {
    // A p90 that is NaN (every request failed) is beyond the SLO too.
    let within = |p: &Point| p.tpot_p90_ms <= slo;
    let Some(first_out) = points.iter().position(|p| !within(p)) else {
        return Capacity::AtLeast(points.last().map_or(0, |p| p.clients));
    };
    if first_out == 0 {
        return Capacity::Below(points[0].clients);
    }
    let (a, b) = (points[first_out - 1], points[first_out]);
    let (x0, x1) = (f64::from(a.clients).ln(), f64::from(b.clients).ln());
    let (y0, y1) = (a.tpot_p90_ms.max(1e-9).ln(), b.tpot_p90_ms.ln());
    let t = if y1 > y0 {
        ((slo.ln() - y0) / (y1 - y0)).clamp(0.0, 1.0)
    } else {
        0.0
    };
    Capacity::About((x0 + t * (x1 - x0)).exp())
}

type LineKey = (String, String, String);

/// Every closed-loop sweep of the run, with its capacity and the law's prediction.
pub fn curves(requests: &[RequestRow], rounds: &[RoundRow], slo: Slo) -> Vec<Curve> {
    let mut order: Vec<LineKey> = Vec::new();
    let mut by: BTreeMap<LineKey, BTreeMap<u32, Vec<&RequestRow>>> = BTreeMap::new();
    let mut k_of: BTreeMap<String, u32> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.clients > 0) {
        let key = (r.strategy.clone(), r.network.clone(), r.device.clone());
        if !by.contains_key(&key) {
            order.push(key.clone());
        }
        k_of.insert(r.strategy.clone(), r.k);
        by.entry(key)
            .or_default()
            .entry(r.clients)
            .or_default()
            .push(r);
    }
    let mut out: Vec<Curve> = order
        .into_iter()
        .map(|key| {
            let points: Vec<Point> = by[&key]
                .iter()
                .map(|(&clients, rs)| point(clients, rs, slo))
                .collect();
            Curve {
                k: k_of[&key.0],
                capacity: capacity(&points, slo.tpot_ms),
                strategy: key.0,
                network: key.1,
                device: key.2,
                points,
                law: None,
            }
        })
        .collect();
    let cloud: BTreeMap<(String, String), f64> = out
        .iter()
        .filter(|c| c.strategy == "cloud_only")
        .filter_map(|c| Some(((c.network.clone(), c.device.clone()), c.capacity.value()?)))
        .collect();
    for c in &mut out {
        let Some(&base) = cloud.get(&(c.network.clone(), c.device.clone())) else {
            continue;
        };
        if c.k == 0 || c.strategy == "cloud_only" {
            continue;
        }
        let fewest = c.points.first().map_or(0, |p| p.clients);
        if let Some((t_d, t_v)) = unloaded_times(rounds, c, fewest) {
            c.law = Some(base * (1.0 + f64::from(c.k) * t_d / t_v));
        }
    }
    out
}

fn point(clients: u32, rs: &[&RequestRow], slo: Slo) -> Point {
    let mut tpot: Vec<f64> = rs
        .iter()
        .filter(|r| r.error.is_empty())
        .map(|r| r.tpot_ms)
        .collect();
    tpot.sort_by(f64::total_cmp);
    let wall = crate::summary::wall_s(rs.iter().copied());
    let met: Vec<&&RequestRow> = rs.iter().filter(|r| slo.met(r)).collect();
    let tokens = met.iter().fold(0.0, |t, r| t + f64::from(r.tokens));
    Point {
        clients,
        tpot_p90_ms: quantile(&tpot, 0.9),
        goodput: if wall > 0.0 { tokens / wall } else { 0.0 },
        met: met.len() as f64 / rs.len().max(1) as f64,
    }
}

/// The draft's time per drafted token and the mean verification pass, ms, in the
/// curve's cell with `clients` clients.
fn unloaded_times(rounds: &[RoundRow], c: &Curve, clients: u32) -> Option<(f64, f64)> {
    let cell = rounds.iter().filter(|r| {
        r.key.strategy == c.strategy
            && r.key.network == c.network
            && r.key.device == c.device
            && r.key.clients == clients
            && r.record.kind == RoundKind::Verified
            && r.record.drafted > 0
    });
    let (mut draft_ns, mut drafted, mut forward_ns, mut passes) = (0u64, 0u64, 0u64, 0u64);
    for r in cell {
        draft_ns += r.record.draft_ns;
        drafted += u64::from(r.record.drafted);
        forward_ns += r.record.forward_ns + r.record.paced_ns;
        passes += 1;
    }
    (drafted > 0 && forward_ns > 0).then(|| {
        (
            draft_ns as f64 / drafted as f64 / 1e6,
            forward_ns as f64 / passes as f64 / 1e6,
        )
    })
}

/// The report's section: per sweep, p90 TPOT and goodput at each client count, the
/// capacity and the law's prediction.
pub fn section_md(curves: &[Curve], slo: Slo) -> String {
    if curves.is_empty() {
        return String::new();
    }
    let mut s = format!(
        "\n## Capacity and goodput under the SLO\n\nSLO: TPOT ≤ {} ms",
        slo.tpot_ms
    );
    if let Some(t) = slo.ttft_ms {
        s += &format!(" and TTFT ≤ {t} ms (goodput)");
    }
    s += ". Capacity: the most closed-loop clients whose p90 TPOT stays within it \
          (interpolated between the grid's client counts; `≥`/`<` where the sweep does not \
          cross it). Law: cloud-only's capacity × (1 + k·t_d/t_v), t_d and t_v measured at \
          the strategy's fewest clients (arXiv 2606.25091). Each sweep point: p90 TPOT ms / \
          goodput tokens/s (share of requests within the SLO).\n\n";
    let counts: Vec<u32> = {
        let mut v: Vec<u32> = curves
            .iter()
            .flat_map(|c| c.points.iter().map(|p| p.clients))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    s += "| strategy | network | device | capacity | law |";
    for n in &counts {
        s += &format!(" {n} clients |");
    }
    s += "\n|---|---|---|---:|---:|";
    s += &"---:|".repeat(counts.len());
    s += "\n";
    for c in curves {
        let device = if c.device.is_empty() {
            "–"
        } else {
            &c.device
        };
        let law = c.law.map_or("–".to_string(), |l| format!("{l:.1}"));
        s += &format!(
            "| {} | {} | {device} | {} | {law} |",
            c.strategy, c.network, c.capacity
        );
        for n in &counts {
            match c.points.iter().find(|p| p.clients == *n) {
                Some(p) => {
                    s += &format!(
                        " {:.2} / {:.0} ({:.0} %) |",
                        p.tpot_p90_ms,
                        p.goodput,
                        p.met * 100.0
                    )
                }
                None => s += " – |",
            }
        }
        s += "\n";
    }
    s
}

/// p90 TPOT against clients, a series per sweep, with the SLO as a dashed line.
pub fn figure(curves: &[Curve], slo: Slo, palette: &Palette) -> Option<Lines> {
    let mut series: Vec<Series> = curves
        .iter()
        .filter(|c| c.points.len() > 1)
        .map(|c| {
            let mut label = format!("{} @ {}", c.strategy, c.network);
            if !c.device.is_empty() {
                label += &format!(" @ {}", c.device);
            }
            let pts = c
                .points
                .iter()
                .map(|p| (f64::from(p.clients), p.tpot_p90_ms))
                .collect();
            Series::new(label, pts, Style::Line).with(palette.look(&c.strategy, &c.network))
        })
        .collect();
    if series.is_empty() {
        return None;
    }
    let (lo, hi) = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| f64::from(p.clients)))
        .fold((f64::MAX, f64::MIN), |(a, b), x| (a.min(x), b.max(x)));
    series.push(
        Series::new(
            format!("SLO: TPOT ≤ {} ms", slo.tpot_ms),
            vec![(lo, slo.tpot_ms), (hi, slo.tpot_ms)],
            Style::Dashed,
        )
        .with(Look {
            color: Some(REFERENCE),
            marker: Marker::Circle,
        }),
    );
    Some(Lines {
        name: "capacity",
        title: "p90 time per output token against clients, with the SLO".into(),
        x_desc: "closed-loop clients".into(),
        y_desc: "p90 TPOT (ms)".into(),
        series,
        highlight: None,
        log: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(p90: &[(u32, f64)]) -> Vec<Point> {
        p90.iter()
            .map(|&(clients, tpot_p90_ms)| Point {
                clients,
                tpot_p90_ms,
                goodput: 0.0,
                met: 0.0,
            })
            .collect()
    }

    #[test]
    fn capacity_interpolates_the_crossing_and_bounds_the_rest() {
        // 16 clients at 5 ms, 64 at 20 ms, SLO 10 ms: on log axes, halfway: 32.
        let c = capacity(&pts(&[(1, 1.0), (16, 5.0), (64, 20.0)]), 10.0);
        let Capacity::About(v) = c else {
            panic!("{c:?}")
        };
        assert!((v - 32.0).abs() < 1e-9, "{v}");
        assert_eq!(
            capacity(&pts(&[(1, 1.0), (16, 5.0)]), 10.0),
            Capacity::AtLeast(16)
        );
        assert_eq!(
            capacity(&pts(&[(4, 11.0), (16, 50.0)]), 10.0),
            Capacity::Below(4)
        );
        assert_eq!(Capacity::AtLeast(16).to_string(), "≥ 16");
    }

    fn req(strategy: &str, k: u32, clients: u32, tpot_ms: f64, e2e_ms: f64) -> RequestRow {
        RequestRow {
            strategy: strategy.into(),
            k,
            network: "lan".into(),
            clients,
            tokens: 10,
            tpot_ms,
            e2e_ms,
            ..Default::default()
        }
    }

    #[test]
    fn goodput_counts_only_requests_within_the_slo_and_the_law_scales_cloud_only() {
        let slo = Slo {
            tpot_ms: 10.0,
            ttft_ms: Some(100.0),
        };
        let mut late = req("cloud_only", 0, 1, 3.0, 1000.0);
        late.ttft_ms = 500.0; // within the TPOT SLO, not the TTFT one
        let mut rows = vec![
            req("cloud_only", 0, 1, 2.0, 1000.0),
            late,
            req("cloud_only", 0, 4, 20.0, 1000.0),
        ];
        rows.push(req("speculative(k=4)", 4, 1, 1.0, 500.0));
        rows.push(req("speculative(k=4)", 4, 4, 2.0, 500.0));
        let verified = RoundRow {
            key: std::sync::Arc::new(crate::results::CellKey {
                strategy: "speculative(k=4)".into(),
                network: "lan".into(),
                clients: 1,
                ..Default::default()
            }),
            record: tandem_draft::RoundRecord {
                kind: RoundKind::Verified,
                drafted: 4,
                draft_ns: 4_000_000,   // 1 ms a token
                forward_ns: 8_000_000, // an 8 ms pass
                ..Default::default()
            },
            ..Default::default()
        };
        let cs = curves(&rows, &[verified], slo);
        let cloud = &cs[0];
        // One of two requests within both SLOs: 10 tokens in 1 s.
        assert_eq!(cloud.points[0].goodput, 10.0);
        assert_eq!(cloud.points[0].met, 0.5);
        let base = cloud.capacity.value().unwrap();
        assert!(base > 1.0 && base < 4.0, "{base}");
        let spec = &cs[1];
        assert_eq!(spec.capacity, Capacity::AtLeast(4));
        // 1 + 4 · 1 ms / 8 ms = 1.5× cloud-only's capacity.
        assert!((spec.law.unwrap() - 1.5 * base).abs() < 1e-9);
        assert!(section_md(&cs, slo).contains("| speculative(k=4) | lan | – | ≥ 4 |"));
    }
}
