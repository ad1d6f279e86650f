//! A line chart's series: how each is drawn, its colour and marker, and the legends
//! that name them.

use plotters::prelude::*;

use super::{color, e};

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Markers joined by a line.
    Line,
    /// A dashed line, no markers (a model's prediction, a band's edge).
    Dashed,
    /// A solid line, no markers (a reference: equality).
    Plain,
    /// Markers only.
    Points,
}

impl Style {
    /// Drawn without markers, and left out of a compact legend's colours and markers.
    pub(super) fn bare(self) -> bool {
        matches!(self, Style::Dashed | Style::Plain)
    }
}

/// A series' colour and marker: a report gives each strategy one colour in every
/// figure, and each link one marker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Look {
    /// Index into [`color`] (none: the series' own position).
    pub color: Option<usize>,
    /// The marker.
    pub marker: Marker,
}

/// A point's marker.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Marker {
    /// ●
    #[default]
    Circle,
    /// ▲
    Triangle,
    /// ■
    Square,
    /// ✕
    Cross,
}

impl Marker {
    /// The `i`th marker (for the `i`th link).
    pub fn nth(i: usize) -> Marker {
        [
            Marker::Circle,
            Marker::Triangle,
            Marker::Square,
            Marker::Cross,
        ][i % 4]
    }
}

/// One series: its legend, its points, how they are drawn, and its look.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The legend.
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
    /// Line, dashes or points.
    pub style: Style,
    /// Colour and marker.
    pub look: Look,
    /// Where the repetitions spread, `(x, low, high)` (the 10th and 90th percentile of
    /// the repetitions' values): shaded in the series' colour. Empty for one run.
    pub band: Vec<(f64, f64, f64)>,
}

impl Series {
    /// A series with the default look (its position's colour, circles).
    pub fn new(label: impl Into<String>, points: Vec<(f64, f64)>, style: Style) -> Self {
        Series {
            label: label.into(),
            points,
            style,
            look: Look::default(),
            band: Vec::new(),
        }
    }

    /// The same series with the repetitions' `band`.
    pub fn with_band(mut self, band: Vec<(f64, f64, f64)>) -> Self {
        self.band = band;
        self
    }

    /// The same series with `look`.
    pub fn with(mut self, look: Look) -> Self {
        self.look = look;
        self
    }
}

/// Above this many series a figure's legend lists colours and markers, not series.
pub(super) const COMPACT_LEGEND: usize = 10;

/// A compact legend's entries: each colour once, named by the first part of its
/// series' labels (`strategy` of `strategy @ link`), then each marker once, named by
/// the second part (the link); series without a colour of their own (reference lines)
/// keep their own entries.
pub(super) fn legend_entries(series: &[Series]) -> Vec<(String, Option<usize>, Option<Marker>)> {
    let part = |l: &str, i: usize| {
        let p = l.split(" @ ").nth(i).unwrap_or(l);
        p.split(" × ").next().unwrap_or(p).to_string()
    };
    let mut out: Vec<(String, Option<usize>, Option<Marker>)> = Vec::new();
    for s in series.iter().filter(|s| !s.style.bare()) {
        let c = s.look.color;
        if c.is_some() && !out.iter().any(|e| e.1 == c && e.2.is_none()) {
            out.push((part(&s.label, 0), c, None));
        }
    }
    for s in series.iter().filter(|s| !s.style.bare()) {
        let m = Some(s.look.marker);
        if !out.iter().any(|e| e.2 == m && e.1.is_none()) {
            out.push((part(&s.label, 1), None, m));
        }
    }
    out
}

/// Draws [`legend_entries`] as legend-only series.
pub(super) fn legend_by_look<DB: DrawingBackend, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    series: &[Series],
) -> Result<(), String>
where
    DB::ErrorType: 'static,
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    for (label, c, m) in legend_entries(series) {
        match (c, m) {
            (Some(c), _) => {
                let col = color(c);
                chart
                    .draw_series(std::iter::empty::<Circle<(f64, f64), i32>>())
                    .map_err(e)?
                    .label(label)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x + 2, y - 5), (x + 12, y + 5)], col.filled())
                    });
            }
            (None, Some(m)) => markers(chart, Vec::new(), m, RGBColor(0, 0, 0), &label)?,
            (None, None) => {}
        }
    }
    Ok(())
}

/// Draws `pts` as `marker`s of `col` on `chart`, the legend entry labelled `label`
/// (none if empty).
pub(super) fn markers<DB: DrawingBackend, X, Y>(
    chart: &mut ChartContext<'_, DB, Cartesian2d<X, Y>>,
    pts: Vec<(f64, f64)>,
    marker: Marker,
    col: RGBColor,
    label: &str,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
{
    let style = col.filled();
    let anno = match marker {
        Marker::Circle => chart
            .draw_series(pts.into_iter().map(|p| Circle::new(p, 5, style)))
            .map_err(e)?,
        Marker::Triangle => chart
            .draw_series(pts.into_iter().map(|p| TriangleMarker::new(p, 7, style)))
            .map_err(e)?,
        Marker::Square => chart
            .draw_series(
                pts.into_iter()
                    .map(|p| EmptyElement::at(p) + Rectangle::new([(-4, -4), (4, 4)], style)),
            )
            .map_err(e)?,
        Marker::Cross => chart
            .draw_series(
                pts.into_iter()
                    .map(|p| Cross::new(p, 5, col.stroke_width(2))),
            )
            .map_err(e)?,
    };
    if label.is_empty() {
        return Ok(());
    }
    let anno = anno.label(label);
    match marker {
        Marker::Circle => anno.legend(move |(x, y)| Circle::new((x + 8, y), 5, style)),
        Marker::Triangle => anno.legend(move |(x, y)| TriangleMarker::new((x + 8, y), 7, style)),
        Marker::Square => {
            anno.legend(move |(x, y)| Rectangle::new([(x + 4, y - 4), (x + 12, y + 4)], style))
        }
        Marker::Cross => anno.legend(move |(x, y)| Cross::new((x + 8, y), 5, col.stroke_width(2))),
    };
    Ok(())
}
