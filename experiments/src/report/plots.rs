//! The report's figures, drawn with plotters, each saved as SVG and PNG. Text uses
//! DejaVu Sans from the system (Debian's fonts-dejavu-core), registered once.

use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

/// Where the font comes from.
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Registers the font (once); an error says which package provides it.
pub fn register_font() -> Result<(), String> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = std::fs::read(FONT_PATH).map_err(|e| {
            format!(
                "no font at {FONT_PATH} ({e}): install Debian's fonts-dejavu-core to draw plots"
            )
        })?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{FONT_PATH} is not a usable TrueType font"))
    })
    .clone()
}

/// A figure that can draw itself on any backend.
pub trait Figure {
    /// File name without extension.
    fn name(&self) -> &'static str;
    /// Draws on `root`.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<(), String>
    where
        DB::ErrorType: 'static;
}

/// Writes `fig` as `dir/NAME.svg` and `dir/NAME.png`.
pub fn save(fig: &impl Figure, dir: &Path) -> Result<(), String> {
    register_font()?;
    let size = (900, 560);
    let svg = dir.join(format!("{}.svg", fig.name()));
    {
        let root = SVGBackend::new(&svg, size).into_drawing_area();
        fig.draw(&root)?;
        root.present().map_err(|e| e.to_string())?;
    }
    let png = dir.join(format!("{}.png", fig.name()));
    let root = BitMapBackend::new(&png, size).into_drawing_area();
    fig.draw(&root)?;
    root.present().map_err(|e| e.to_string())
}

/// The colour index of reference lines (an SLO, `y = x`): black.
pub const REFERENCE: usize = usize::MAX;

/// The `i`th series color ([`REFERENCE`]: black).
pub fn color(i: usize) -> RGBColor {
    if i == REFERENCE {
        return RGBColor(0, 0, 0);
    }
    const C: [RGBColor; 12] = [
        RGBColor(31, 119, 180),
        RGBColor(255, 127, 14),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
        RGBColor(140, 86, 75),
        RGBColor(227, 119, 194),
        RGBColor(127, 127, 127),
        RGBColor(188, 189, 34),
        RGBColor(23, 190, 207),
        RGBColor(0, 0, 128),
        RGBColor(128, 0, 0),
    ];
    C[i % C.len()]
}

pub(crate) fn e<E: std::fmt::Display>(err: E) -> String {
    err.to_string()
}

/// A range from 0 to a little above `max` (1 when nothing is positive).
pub fn upto(max: f64) -> std::ops::Range<f64> {
    let top = if max.is_finite() && max > 0.0 {
        max * 1.1
    } else {
        1.0
    };
    0.0..top
}

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
    fn bare(self) -> bool {
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
const COMPACT_LEGEND: usize = 10;

/// A compact legend's entries: each colour once, named by the first part of its
/// series' labels (`strategy` of `strategy @ link`), then each marker once, named by
/// the second part (the link); series without a colour of their own (reference lines)
/// keep their own entries.
fn legend_entries(series: &[Series]) -> Vec<(String, Option<usize>, Option<Marker>)> {
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
fn legend_by_look<DB: DrawingBackend, X, Y>(
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
fn markers<DB: DrawingBackend, X, Y>(
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

/// A tick of a log10 axis: the value it stands for to two significant digits,
/// compactly (`200k`, `10M`, `0.05`, `2.5`). Ticks are evenly spaced in log10, so a
/// decade reads 1, 1.3, 1.6, 2, 2.5, 3.2, 4, 5, 6.3, 7.9 (and 10^0.999… reads 10).
fn log_tick(v: f64) -> String {
    let x = 10f64.powf(v);
    let step = 10f64.powi(x.log10().floor() as i32 - 1);
    let x = (x / step).round() * step;
    let (scaled, unit) = match x {
        x if x >= 1e9 => (x / 1e9, "G"),
        x if x >= 1e6 => (x / 1e6, "M"),
        x if x >= 1e3 => (x / 1e3, "k"),
        x => (x, ""),
    };
    let digits = (1 - scaled.log10().floor() as i32).max(0) as usize;
    let text = format!("{scaled:.digits$}");
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        &text
    };
    format!("{text}{unit}")
}

/// An axis label with as many decimals as the axis' range needs (none from 100 up).
fn tick(v: f64, max: f64) -> String {
    match max.abs() {
        m if m >= 100.0 => format!("{v:.0}"),
        m if m >= 1.0 => format!("{v:.1}"),
        _ => format!("{v:.3}"),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_ticks_read_to_two_significant_digits() {
        let read = |x: f64| log_tick(x.log10());
        assert_eq!(read(1.0), "1");
        assert_eq!(read(0.999_999_9), "1");
        assert_eq!(read(9.999_999), "10");
        assert_eq!(read(10f64.powf(0.1)), "1.3");
        assert_eq!(read(10f64.powf(-0.4)), "0.4");
        assert_eq!(read(0.0501), "0.05");
        assert_eq!(read(2.5), "2.5");
        assert_eq!(read(316.2), "320");
        assert_eq!(read(200_000.0), "200k");
        assert_eq!(read(1.26e7), "13M");
    }
}
