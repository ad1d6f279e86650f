//! Series on numeric axes, linear or logarithmic, with bands and highlighted points.

use plotters::coord::Shift;
use plotters::prelude::*;

use super::series::{COMPACT_LEGEND, legend_by_look, legend_entries, markers};
use super::{Figure, Series, Style, color, e, log_tick, tick, upto};

/// Lines and points on numeric axes.
pub struct Lines {
    /// File name, without extension.
    pub name: &'static str,
    /// The caption.
    pub title: String,
    /// The x axis, with its unit.
    pub x_desc: String,
    /// The y axis, with its unit.
    pub y_desc: String,
    /// The series.
    pub series: Vec<Series>,
    /// Points to circle: joined by a line on linear axes (a Pareto front), alone on
    /// log axes (break-even points).
    pub highlight: Option<(String, Vec<(f64, f64)>)>,
    /// Both axes logarithmic (base 10), the legend upper left; points that are not
    /// positive are left out.
    pub log: bool,
}

impl Figure for Lines {
    fn name(&self) -> &'static str {
        self.name
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE).map_err(e)?;
        let scale = |pts: &[(f64, f64)]| -> Vec<(f64, f64)> {
            if !self.log {
                return pts.to_vec();
            }
            pts.iter()
                .filter(|p| p.0 > 0.0 && p.1 > 0.0)
                .map(|p| (p.0.log10(), p.1.log10()))
                .collect()
        };
        let series: Vec<Vec<(f64, f64)>> = self.series.iter().map(|s| scale(&s.points)).collect();
        // A band as its two edges, low then high, each in the figure's scale.
        type Edge = Vec<(f64, f64)>;
        let bands: Vec<(Edge, Edge)> = self
            .series
            .iter()
            .map(|s| {
                let edge = |pick: fn(&(f64, f64, f64)) -> f64| {
                    let mut pts = scale(&s.band.iter().map(|b| (b.0, pick(b))).collect::<Vec<_>>());
                    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                    pts
                };
                (edge(|b| b.1), edge(|b| b.2))
            })
            .collect();
        let all = series
            .iter()
            .flatten()
            .chain(bands.iter().flat_map(|(lo, hi)| lo.iter().chain(hi)));
        let (xmax, ymax) = all
            .clone()
            .fold((f64::MIN, f64::MIN), |(x, y), p| (x.max(p.0), y.max(p.1)));
        let (xmin, ymin) = all.fold((f64::MAX, f64::MAX), |(x, y), p| (x.min(p.0), y.min(p.1)));
        // Head room above the data for the legend (upper right), a line per series.
        // Many series: one legend entry per colour (strategy) and per marker (link)
        // instead of one per series.
        let compact = self.series.len() > COMPACT_LEGEND;
        let entries = if compact {
            legend_entries(&self.series).len()
        } else {
            self.series.len()
        } + usize::from(self.highlight.is_some());
        let room = (1.0 + 0.06 * entries as f64).min(1.8);
        let (xr, yr) = if self.log && xmax >= xmin {
            let span = (ymax - ymin).max(1.0);
            (xmin..xmax, ymin - 0.05 * span..ymax + (room - 1.0) * span)
        } else {
            (upto(xmax.max(0.0)), upto(ymax.max(0.0) * room))
        };
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 22))
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(76)
            .build_cartesian_2d(xr, yr)
            .map_err(e)?;
        let (log, xmax, ymax_room) = (self.log, xmax.max(0.0), ymax.max(0.0) * room);
        chart
            .configure_mesh()
            .x_desc(self.x_desc.as_str())
            .y_desc(self.y_desc.as_str())
            .x_label_formatter(&|v| if log { log_tick(*v) } else { tick(*v, xmax) })
            .y_label_formatter(&|v| {
                if log {
                    log_tick(*v)
                } else {
                    tick(*v, ymax_room)
                }
            })
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(e)?;
        for (i, (s, (lo, hi))) in self.series.iter().zip(&bands).enumerate() {
            let col = color(s.look.color.unwrap_or(i)).mix(0.18);
            match (lo.as_slice(), hi.as_slice()) {
                // One x: an error bar.
                ([l], [h]) => chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![*l, *h],
                        col.stroke_width(6),
                    )))
                    .map_err(e)?,
                _ if lo.len() >= 2 && lo.len() == hi.len() => chart
                    .draw_series(std::iter::once(Polygon::new(
                        lo.iter()
                            .chain(hi.iter().rev())
                            .copied()
                            .collect::<Vec<_>>(),
                        col.filled(),
                    )))
                    .map_err(e)?,
                _ => continue,
            };
        }
        for (i, (s, points)) in self.series.iter().zip(&series).enumerate() {
            let col = color(s.look.color.unwrap_or(i));
            let mut pts = points.clone();
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if s.style.bare() {
                let style = col.stroke_width(2);
                let anno = if s.style == Style::Dashed {
                    chart.draw_series(DashedLineSeries::new(pts, 8, 5, style))
                } else {
                    chart.draw_series(LineSeries::new(pts, style))
                }
                .map_err(e)?;
                // A second line of the same meaning (a band's other edge) goes unlabelled.
                if !s.label.is_empty() {
                    // The legend's sample drawn as the line is: two dashes, or one stroke.
                    let gap = if s.style == Style::Dashed { 5 } else { 0 };
                    anno.label(s.label.as_str()).legend(move |(x, y)| {
                        EmptyElement::at((x, y))
                            + PathElement::new(vec![(0, 0), (9 - gap / 2, 0)], style)
                            + PathElement::new(vec![(9 + gap / 2, 0), (18, 0)], style)
                    });
                }
            } else {
                if s.style == Style::Line {
                    chart
                        .draw_series(LineSeries::new(pts.clone(), col.stroke_width(2)))
                        .map_err(e)?;
                }
                let label = if compact { "" } else { s.label.as_str() };
                markers(&mut chart, pts, s.look.marker, col, label)?;
            }
        }
        if compact {
            legend_by_look(&mut chart, &self.series)?;
        }
        if let Some((label, points)) = &self.highlight {
            let mut pts = scale(points);
            pts.sort_by(|a, b| a.0.total_cmp(&b.0));
            if !self.log {
                chart
                    .draw_series(LineSeries::new(pts.clone(), BLACK.stroke_width(1)))
                    .map_err(e)?;
            }
            chart
                .draw_series(
                    pts.into_iter()
                        .map(|p| Circle::new(p, 9, BLACK.stroke_width(2))),
                )
                .map_err(e)?
                .label(label.as_str())
                .legend(|(x, y)| Circle::new((x + 8, y), 7, BLACK.stroke_width(2)));
        }
        chart
            .configure_series_labels()
            .position(if self.log {
                SeriesLabelPosition::UpperLeft
            } else {
                SeriesLabelPosition::UpperRight
            })
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(e)
    }
}
