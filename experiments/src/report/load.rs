//! The figures of a report under load: latency against the link's RTT and throughput
//! against the client count, each with a band over the grid's repetitions.

use std::collections::BTreeMap;

use tandem_protocol::LinkProfile;

use super::figures::{Palette, label, several_clients};
use super::plots::{Lines, Look, Marker, Series, Style};
use crate::config::Config;
use crate::results::RequestRow;
use crate::summary::quantile;

/// The 10th and 90th percentile of `values`; none for fewer than two (one run).
fn spread(mut values: Vec<f64>) -> Option<(f64, f64)> {
    if values.len() < 2 {
        return None;
    }
    values.sort_by(f64::total_cmp);
    Some((quantile(&values, 0.1), quantile(&values, 0.9)))
}

/// Per strategy, mean end-to-end latency on each network, against the link's RTT.
pub(super) fn latency_rtt(config: &Config, requests: &[RequestRow], palette: &Palette) -> Lines {
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
pub(super) fn throughput_clients(requests: &[RequestRow], palette: &Palette) -> Lines {
    let lines = crate::summary::summarise(requests);
    let by_repetition = repetitions_tokens_per_s(requests);
    let mut series: Vec<Series> = Vec::new();
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
