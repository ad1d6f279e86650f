//! Charts of labelled rows against a numeric axis: ranges and stacked bars.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::{Figure, color, e, log_tick, tick, upto};

/// How a row chart's x axis is drawn: from 0 to a little above the largest value, or
/// logarithmic (values are then log10 of the data) when they span two decades or more.
#[derive(Debug, Clone, Copy)]
struct RowAxis {
    log: bool,
    min: f64,
    max: f64,
}

impl RowAxis {
    fn of(values: impl Iterator<Item = f64>) -> RowAxis {
        let (min, max) = values
            .filter(|v| v.is_finite() && *v > 0.0)
            .fold((f64::MAX, 0f64), |(a, b), v| (a.min(v), b.max(v)));
        RowAxis {
            log: max > 0.0 && max / min >= 100.0,
            min,
            max,
        }
    }

    /// Where `v` goes on the axis.
    fn at(&self, v: f64) -> f64 {
        if self.log { v.max(self.min).log10() } else { v }
    }

    fn range(&self) -> std::ops::Range<f64> {
        if self.log {
            let (lo, hi) = (self.min.log10(), self.max.log10());
            lo - 0.05 * (hi - lo)..hi + 0.05 * (hi - lo)
        } else {
            upto(self.max)
        }
    }
}

/// A chart with one labelled row per entry of `labels` (top to bottom in segments of
/// the y axis) and a numeric x axis as `axis` says, its mesh drawn. The label area is
/// as wide as the longest label.
fn labelled_rows<'a, DB: DrawingBackend>(
    root: &'a DrawingArea<DB, Shift>,
    title: &str,
    x_desc: &str,
    labels: &[String],
    axis: RowAxis,
) -> Result<RowChart<'a, DB>, String>
where
    DB::ErrorType: 'static,
{
    root.fill(&WHITE).map_err(e)?;
    let n = labels.len().max(1);
    let widest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size((widest as u32 * 8 + 16).clamp(80, 360))
        .build_cartesian_2d(axis.range(), (0..n).into_segmented())
        .map_err(e)?;
    let max = axis.max;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| {
            if axis.log {
                log_tick(*v)
            } else {
                tick(*v, max)
            }
        })
        .x_desc(x_desc)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(e)?;
    Ok(chart)
}

/// A chart of labelled rows against a numeric x axis.
type RowChart<'a, DB> = ChartContext<
    'a,
    DB,
    Cartesian2d<
        plotters::coord::types::RangedCoordf64,
        plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordusize>,
    >,
>;

/// Horizontal ranges (p10–p90) with a median dot, one row per label.
pub struct Ranges {
    /// File name, without extension.
    pub name: &'static str,
    /// The caption.
    pub title: String,
    /// The x axis, with its unit.
    pub x_desc: String,
    /// (label, p10, p50, p90, color index)
    pub rows: Vec<(String, f64, f64, f64, usize)>,
}

impl Figure for Ranges {
    fn name(&self) -> &'static str {
        self.name
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        let axis = RowAxis::of(self.rows.iter().flat_map(|r| [r.1, r.3]));
        let labels: Vec<String> = self.rows.iter().map(|r| r.0.clone()).collect();
        let mut chart = labelled_rows(root, &self.title, &self.x_desc, &labels, axis)?;
        for (i, (_, lo, mid, hi, c)) in self.rows.iter().enumerate() {
            let col = color(*c);
            let y = || SegmentValue::CenterOf(i);
            let (lo, mid, hi) = (&axis.at(*lo), &axis.at(*mid), &axis.at(*hi));
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(*lo, y()), (*hi, y())],
                    col.stroke_width(5),
                )))
                .map_err(e)?;
            chart
                .draw_series(std::iter::once(Circle::new((*mid, y()), 6, BLACK.filled())))
                .map_err(e)?;
        }
        Ok(())
    }
}

/// Stacked horizontal bars: per row, segments in a fixed order.
pub struct Stacked {
    /// File name, without extension.
    pub name: &'static str,
    /// The caption.
    pub title: String,
    /// The x axis, with its unit.
    pub x_desc: String,
    /// The segments, in stacking order.
    pub parts: Vec<&'static str>,
    /// (label, one value per part)
    pub rows: Vec<(String, Vec<f64>)>,
}

impl Figure for Stacked {
    fn name(&self) -> &'static str {
        self.name
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        let max = self
            .rows
            .iter()
            .map(|r| r.1.iter().sum::<f64>())
            .fold(0.0, f64::max);
        let labels: Vec<String> = self.rows.iter().map(|r| r.0.clone()).collect();
        let axis = RowAxis {
            log: false,
            min: 0.0,
            max,
        };
        let mut chart = labelled_rows(root, &self.title, &self.x_desc, &labels, axis)?;
        for (p, part) in self.parts.iter().enumerate() {
            let col = color(p);
            let bars = self.rows.iter().enumerate().map(|(i, (_, values))| {
                let start: f64 = values[..p].iter().sum();
                Rectangle::new(
                    [
                        (start, SegmentValue::Exact(i)),
                        (start + values[p], SegmentValue::Exact(i + 1)),
                    ],
                    col.filled(),
                )
            });
            chart
                .draw_series(bars)
                .map_err(e)?
                .label(*part)
                .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], col.filled()));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(e)
    }
}
