//! The report's figures, drawn with plotters, each saved as SVG and PNG. Text uses
//! DejaVu Sans from the system (Debian's fonts-dejavu-core), registered once.
//!
//! - this module: the font, [`Figure`] and [`save`], the palette, axis ticks;
//! - [`rows`]: charts of labelled rows ([`Ranges`], [`Stacked`]);
//! - [`series`]: a line chart's series, their looks, markers and legends;
//! - [`lines`]: [`Lines`], series on numeric (or log) axes.

mod lines;
mod rows;
mod series;

pub use lines::Lines;
pub use rows::{Ranges, Stacked};
pub use series::{Look, Marker, Series, Style};

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

/// A tick of a log10 axis: the value it stands for to two significant digits,
/// compactly (`200k`, `10M`, `0.05`, `2.5`). Ticks are evenly spaced in log10, so a
/// decade reads 1, 1.3, 1.6, 2, 2.5, 3.2, 4, 5, 6.3, 7.9 (and 10^0.999… reads 10).
pub(crate) fn log_tick(v: f64) -> String {
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
pub(crate) fn tick(v: f64, max: f64) -> String {
    match max.abs() {
        m if m >= 100.0 => format!("{v:.0}"),
        m if m >= 1.0 => format!("{v:.1}"),
        _ => format!("{v:.3}"),
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
