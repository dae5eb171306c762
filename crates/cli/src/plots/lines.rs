//! Line charts: curves (raw, or faint raw under their smoothed trend) on a linear or log axis
//! with the legend in a strip beside the data, one panel per task, one panel per task pair, and
//! points with error bars.

use std::path::Path;

use plotters::coord::ranged1d::ValueFormatter;
use plotters::coord::types::RangedCoordf64;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::smooth::{ema, spans_decades, window_for, window_means, EMA_ALPHA, EMA_MIN_POINTS};
use super::{anchored, color, plot_error, save, text_width, Figure, Series, FONT};
use crate::error::Result;

fn range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite()) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = (hi - lo) * 0.05;
    (lo - pad, hi + pad)
}

/// A tick label with three significant digits at most and no trailing zeros.
fn tick(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    let magnitude = v.abs().log10().floor();
    if !(-3.0..5.0).contains(&magnitude) {
        return format!("{v:.1e}");
    }
    let places = (2.0 - magnitude).max(0.0) as usize;
    let text = format!("{v:.places$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

/// One curve of a chart: its points, and optionally their smoothed trend, drawn bold over the
/// points, which are then drawn faint.
#[derive(Debug, Clone)]
struct Curve {
    name: String,
    color: RGBAColor,
    raw: Vec<(f64, f64)>,
    trend: Vec<(f64, f64)>,
}

impl Curve {
    fn finite(&self) -> impl Iterator<Item = &(f64, f64)> {
        self.raw.iter().chain(&self.trend).filter(|p| p.0.is_finite() && p.1.is_finite())
    }
}

/// The y axis of a chart.
#[derive(Debug, Clone, Copy)]
enum Axis {
    /// Linear, fitted to the data.
    Linear,
    /// Linear from `lo` to `hi`, with a line at 0 and the part below it shaded (cosines).
    Signed(f64, f64),
    /// Logarithmic, fitted to the (positive) data.
    Log,
}

/// Everything a chart of curves says besides the curves.
struct Frame<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    axis: Axis,
    /// Marks at the points of curves with at most this many points.
    dots_up_to: usize,
}

/// Draws `curves` into `area` (a chart, no legend).
fn draw_curves<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    frame: &Frame<'_>,
    curves: &[Curve],
) -> Result<()> {
    let (x0, x1) = range(curves.iter().flat_map(|c| c.finite().map(|p| p.0)));
    let ys = || curves.iter().flat_map(|c| c.finite().map(|p| p.1));
    let mut builder = ChartBuilder::on(area);
    builder.caption(frame.title, (FONT, 17)).margin(10).x_label_area_size(40);
    match frame.axis {
        Axis::Log => {
            let (lo, hi) = ys()
                .filter(|&y| y > 0.0)
                .fold((f64::INFINITY, 0.0f64), |(lo, hi), y| (lo.min(y), hi.max(y)));
            // From the decade below the data, so that its lowest curves have labelled ticks.
            let (lo, hi) = if lo.is_finite() {
                (10f64.powf((lo / 1.25).log10().floor()), hi * 1.25)
            } else {
                (0.1, 1.0)
            };
            builder.y_label_area_size(60);
            let chart =
                builder.build_cartesian_2d(x0..x1, (lo..hi).log_scale()).map_err(plot_error)?;
            fill_chart(chart, frame, curves)
        }
        Axis::Linear | Axis::Signed(..) => {
            let (y0, y1) = match frame.axis {
                Axis::Signed(lo, hi) => (lo, hi),
                _ => range(ys()),
            };
            let width = text_width(&tick(y0), 12).max(text_width(&tick(y1), 12)) as i32;
            builder.y_label_area_size(width + 38);
            let chart = builder.build_cartesian_2d(x0..x1, y0..y1).map_err(plot_error)?;
            fill_chart(chart, frame, curves)
        }
    }
}

fn fill_chart<DB: DrawingBackend, Y>(
    mut chart: ChartContext<'_, DB, Cartesian2d<RangedCoordf64, Y>>,
    frame: &Frame<'_>,
    curves: &[Curve],
) -> Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    // Whole x values (epochs) get a tick each, when there are few of them.
    let xs = || curves.iter().flat_map(|c| c.finite().map(|p| p.0));
    let whole = xs().all(|x| x.fract() == 0.0);
    let (lo, hi) = xs().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(x), h.max(x)));
    let x_labels = if whole && hi - lo <= 15.0 { (hi - lo) as usize + 1 } else { 10 };
    chart
        .configure_mesh()
        .x_labels(x_labels)
        .x_desc(frame.x_desc)
        .y_desc(frame.y_desc)
        .label_style((FONT, 12))
        .axis_desc_style((FONT, 14))
        .x_label_formatter(&|v| tick(*v))
        .y_label_formatter(&|v| tick(*v))
        .light_line_style(RGBColor(240, 240, 240))
        .draw()
        .map_err(plot_error)?;
    if let Axis::Signed(lo, _) = frame.axis {
        let (x0, x1) = (chart.x_range().start, chart.x_range().end);
        let below = RGBColor(253, 236, 236).filled();
        chart.draw_series([Rectangle::new([(x0, lo), (x1, 0.0)], below)]).map_err(plot_error)?;
        let zero = LineSeries::new([(x0, 0.0), (x1, 0.0)], RGBColor(120, 120, 120));
        chart.draw_series(zero).map_err(plot_error)?;
    }
    for curve in curves {
        let c = curve.color;
        let raw: Vec<(f64, f64)> =
            curve.raw.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
        let (raw_style, dots) = if curve.trend.is_empty() {
            (c.stroke_width(2), raw.len() <= frame.dots_up_to)
        } else {
            (c.mix(0.25).stroke_width(1), false)
        };
        chart.draw_series(LineSeries::new(raw.iter().copied(), raw_style)).map_err(plot_error)?;
        if dots {
            chart
                .draw_series(raw.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(plot_error)?;
        }
        if !curve.trend.is_empty() {
            let trend = curve.trend.iter().copied().filter(|p| p.1.is_finite());
            chart.draw_series(LineSeries::new(trend, c.stroke_width(2))).map_err(plot_error)?;
        }
    }
    Ok(())
}

/// The width of a legend strip for `names`.
fn legend_width(names: impl Iterator<Item = usize>) -> u32 {
    let widest = names.max().unwrap_or(0) as u32;
    (widest + 48).clamp(90, 320)
}

/// The legend of `curves` in `area`, one entry a line from the top.
fn draw_legend<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, curves: &[Curve]) -> Result<()> {
    for (i, curve) in curves.iter().enumerate() {
        let y = 44 + 22 * i as i32;
        let sample = vec![(4, y), (26, y)];
        area.draw(&PathElement::new(sample, curve.color.stroke_width(3))).map_err(plot_error)?;
        let style = anchored(13, HPos::Left, VPos::Center);
        area.draw(&Text::new(curve.name.as_str(), (32, y), style)).map_err(plot_error)?;
    }
    Ok(())
}

/// A chart of curves with their legend in a strip to the right.
struct CurveChart<'a> {
    frame: Frame<'a>,
    curves: Vec<Curve>,
}

impl CurveChart<'_> {
    fn legend(&self) -> u32 {
        legend_width(self.curves.iter().map(|c| text_width(&c.name, 13) as usize))
    }
}

impl Figure for CurveChart<'_> {
    fn size(&self) -> (u32, u32) {
        (800 + self.legend(), (520).max(60 + 22 * self.curves.len() as u32))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (width, _) = self.size();
        let (chart, legend) = root.split_horizontally(width - self.legend());
        draw_curves(&chart, &self.frame, &self.curves)?;
        draw_legend(&legend, &self.curves)
    }
}

/// One chart of line series (a dot at each point of series of at most 30 points), written to
/// `path` and as PNG beside it; returns the names of the files written.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<[String; 2]> {
    let curves = series
        .iter()
        .enumerate()
        .map(|(i, s)| Curve {
            name: s.name.clone(),
            color: color(i),
            raw: s.points.clone(),
            trend: Vec::new(),
        })
        .collect();
    let frame = Frame { title, x_desc, y_desc, axis: Axis::Linear, dots_up_to: 30 };
    save(path, &CurveChart { frame, curves })
}

/// Noisy per-step series, each drawn faint with its EMA (α = [`EMA_ALPHA`]) bold over it (when
/// some series has [`EMA_MIN_POINTS`] or more; shorter ones are drawn as they are), on a log y
/// axis when the values are positive and span a factor of 10 or more, written to `path` and as
/// PNG beside it; returns the names of the files written. The title says the α.
pub fn smoothed_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<[String; 2]> {
    let log = spans_decades(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let smooth = series.iter().any(|s| s.points.len() >= EMA_MIN_POINTS);
    let curves = series
        .iter()
        .enumerate()
        .map(|(i, s)| Curve {
            name: s.name.clone(),
            color: color(i),
            raw: s.points.clone(),
            trend: if smooth { ema(&s.points, EMA_ALPHA) } else { Vec::new() },
        })
        .collect();
    let title = if smooth {
        format!("{title} (faint: each step; bold: EMA, α = {EMA_ALPHA})")
    } else {
        title.to_string()
    };
    let y_desc = if log { format!("{y_desc} (log scale)") } else { y_desc.to_string() };
    let axis = if log { Axis::Log } else { Axis::Linear };
    let frame = Frame { title: &title, x_desc, y_desc: &y_desc, axis, dots_up_to: 0 };
    save(path, &CurveChart { frame, curves })
}

/// Panels side by side (or in rows of three), each a chart of curves, under one legend.
struct Panels<'a> {
    title: Option<&'a str>,
    panels: Vec<(Frame<'a>, Vec<Curve>)>,
    legend: Vec<Curve>,
    panel_size: (u32, u32),
}

impl Panels<'_> {
    fn grid(&self) -> (usize, usize) {
        let n = self.panels.len().max(1);
        let columns = n.min(3);
        (n.div_ceil(columns), columns)
    }
    fn header(&self) -> u32 {
        match (self.title.is_some(), self.legend.is_empty()) {
            (true, false) => 64,
            (true, true) => 40,
            (false, _) => 34,
        }
    }
}

impl Figure for Panels<'_> {
    fn size(&self) -> (u32, u32) {
        let (rows, columns) = self.grid();
        let (w, h) = self.panel_size;
        (w * columns as u32, self.header() + h * rows as u32)
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (header, body) = root.split_vertically(self.header());
        let mut x = 12;
        let legend_y = if let Some(title) = self.title {
            header.draw(&Text::new(title, (12, 10), (FONT, 18))).map_err(plot_error)?;
            46
        } else {
            18
        };
        for curve in &self.legend {
            let sample = vec![(x, legend_y), (x + 22, legend_y)];
            header
                .draw(&PathElement::new(sample, curve.color.stroke_width(3)))
                .map_err(plot_error)?;
            let style = anchored(13, HPos::Left, VPos::Center);
            header
                .draw(&Text::new(curve.name.as_str(), (x + 28, legend_y), style))
                .map_err(plot_error)?;
            x += 28 + text_width(&curve.name, 13) as i32 + 24;
        }
        let areas = body.split_evenly(self.grid());
        for (area, (frame, curves)) in areas.iter().zip(&self.panels) {
            draw_curves(area, frame, curves)?;
        }
        Ok(())
    }
}

/// One panel per entry of `panels` (title, y label, series), side by side, written to `path`
/// and as PNG beside it, with one legend above them (the series of every panel have the same
/// names, in the same order); returns the names of the files written.
pub fn panels(
    path: &Path,
    x_desc: &str,
    panels: &[(String, String, Vec<Series>)],
) -> Result<[String; 2]> {
    let curves = |series: &[Series]| -> Vec<Curve> {
        series
            .iter()
            .enumerate()
            .map(|(i, s)| Curve {
                name: s.name.clone(),
                color: color(i),
                raw: s.points.clone(),
                trend: Vec::new(),
            })
            .collect()
    };
    let figure = Panels {
        title: None,
        legend: panels.first().map(|p| curves(&p.2)).unwrap_or_default(),
        panels: panels
            .iter()
            .map(|(title, y_desc, series)| {
                let frame = Frame { title, x_desc, y_desc, axis: Axis::Linear, dots_up_to: 30 };
                (frame, curves(series))
            })
            .collect(),
        panel_size: (420, 400),
    };
    save(path, &figure)
}

/// The gradient cosine of each task pair over the steps: one panel per pair (`(name, points)`,
/// cosines in `-1..=1`), each with the per-step cosines faint and their means over windows of
/// steps bold (at most 60 windows), on one symmetric axis around 0 for all pairs (fitted to the
/// largest cosine, at least ±0.2) with conflict (below 0) shaded;
/// written to `path` and as PNG beside it. Returns the names of the files written.
pub fn pair_panels(path: &Path, title: &str, pairs: &[Series]) -> Result<[String; 2]> {
    let n = pairs.iter().map(|p| p.points.len()).max().unwrap_or(0);
    let window = window_for(n, 60);
    // One symmetric scale for every pair, fitted to the largest cosine (in tenths).
    let largest = pairs.iter().flat_map(|p| &p.points).map(|p| p.1.abs()).filter(|c| c.is_finite());
    let limit = (largest.fold(0.0f64, f64::max) * 1.05 * 10.0).ceil().clamp(2.0, 10.0) / 10.0;
    let full_title = if window > 1 {
        format!("{title} (faint: each step; bold: mean over windows of {window} steps)")
    } else {
        title.to_string()
    };
    let panels = pairs
        .iter()
        .enumerate()
        .map(|(i, pair)| {
            let trend = if window > 1 { window_means(&pair.points, window) } else { Vec::new() };
            let curve =
                Curve { name: pair.name.clone(), color: color(i), raw: pair.points.clone(), trend };
            let frame = Frame {
                title: pair.name.as_str(),
                x_desc: "step",
                y_desc: "cosine",
                axis: Axis::Signed(-limit, limit),
                dots_up_to: 0,
            };
            (frame, vec![curve])
        })
        .collect();
    let figure =
        Panels { title: Some(&full_title), panels, legend: Vec::new(), panel_size: (460, 320) };
    let width = text_width(&full_title, 18) + 24;
    let figure = Panels {
        panel_size: (figure.panel_size.0.max(width / figure.grid().1 as u32), 320),
        ..figure
    };
    save(path, &figure)
}

/// Line series with a vertical bar of ± `spread` at every point (one spread per point), on a
/// log-scaled x axis with a tick at every x the series share (K = 1, 5, 10, 50), written to
/// `path` and as PNG beside it; returns the names of the files written. The series are shifted
/// sideways a little, so that their bars do not hide each other, and the legend sits beside the
/// data.
pub fn spread_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(Series, Vec<f64>)],
) -> Result<[String; 2]> {
    save(path, &SpreadChart { title, x_desc, y_desc, series })
}

struct SpreadChart<'a> {
    title: &'a str,
    x_desc: &'a str,
    y_desc: &'a str,
    series: &'a [(Series, Vec<f64>)],
}

impl SpreadChart<'_> {
    fn legend(&self) -> u32 {
        legend_width(self.series.iter().map(|(s, _)| text_width(&s.name, 13) as usize))
    }
}

impl Figure for SpreadChart<'_> {
    fn size(&self) -> (u32, u32) {
        (800 + self.legend(), (520).max(60 + 22 * self.series.len() as u32))
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let series = self.series;
        let (width, _) = self.size();
        let (area, legend) = root.split_horizontally(width - self.legend());
        let points = || series.iter().flat_map(|(s, sd)| s.points.iter().zip(sd));
        let (x0, x1) = range(points().map(|(p, _)| p.0.max(1e-12).ln()));
        let (y0, y1) = range(points().flat_map(|(p, sd)| [p.1 - sd, p.1 + sd]));
        let dodge = |i: usize| (i as f64 - (series.len() as f64 - 1.0) / 2.0) * 0.012 * (x1 - x0);
        let mut ticks: Vec<f64> = points().map(|(p, _)| p.0).collect();
        ticks.sort_by(f64::total_cmp);
        ticks.dedup();
        let mut chart = ChartBuilder::on(&area)
            .caption(self.title, (FONT, 17))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc(self.x_desc)
            .y_desc(self.y_desc)
            .label_style((FONT, 12))
            .axis_desc_style((FONT, 14))
            .y_label_formatter(&|v| tick(*v))
            .draw()
            .map_err(plot_error)?;
        // The x axis is ln(x); its ticks are the x values themselves.
        chart
            .draw_series(ticks.iter().map(|&t| {
                Text::new(format!("{t}"), (t.ln(), y0), anchored(13, HPos::Center, VPos::Top))
            }))
            .map_err(plot_error)?;
        let mut curves = Vec::new();
        for (i, (s, sd)) in series.iter().enumerate() {
            let c = color(i);
            let pts: Vec<(f64, f64, f64)> = s
                .points
                .iter()
                .zip(sd)
                .filter(|(p, sd)| p.0 > 0.0 && p.1.is_finite() && sd.is_finite())
                .map(|(p, &sd)| (p.0.ln() + dodge(i), p.1, sd))
                .collect();
            chart
                .draw_series(LineSeries::new(
                    pts.iter().map(|&(x, y, _)| (x, y)),
                    ShapeStyle::from(c).stroke_width(2),
                ))
                .map_err(plot_error)?;
            chart
                .draw_series(pts.iter().map(|&(x, y, sd)| {
                    PathElement::new(vec![(x, y - sd), (x, y + sd)], c.stroke_width(2))
                }))
                .map_err(plot_error)?;
            chart
                .draw_series(pts.iter().map(|&(x, y, _)| Circle::new((x, y), 3, c.filled())))
                .map_err(plot_error)?;
            curves.push(Curve {
                name: s.name.clone(),
                color: c,
                raw: Vec::new(),
                trend: Vec::new(),
            });
        }
        draw_legend(&legend, &curves)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_short() {
        assert_eq!(tick(0.5), "0.5");
        assert_eq!(tick(0.123456), "0.123");
        assert_eq!(tick(2.0), "2");
        assert_eq!(tick(1500.0), "1500");
        assert_eq!(tick(0.0001), "1.0e-4");
        assert_eq!(tick(-0.25), "-0.25");
    }

    #[test]
    fn a_smoothed_chart_draws_raw_and_ema_and_goes_log_over_decades() {
        let dir = tempfile::tempdir().unwrap();
        let decades = Series {
            name: "task".into(),
            points: (0..200).map(|k| (k as f64, 10f64.powf(-(k as f64) / 40.0))).collect(),
        };
        let path = dir.path().join("loss.svg");
        let files = smoothed_chart(&path, "loss", "step", "loss", &[decades]).unwrap();
        assert_eq!(files, ["loss.svg".to_string(), "loss.png".to_string()]);
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("loss (log scale)") && svg.contains("α = 0.1"), "{svg}");
        // The faint raw curve, the bold EMA and the legend's sample, in the series' colour.
        let faint = r##"opacity="0.25" stroke="#1F77B4" stroke-width="1""##;
        let bold = r##"opacity="1" stroke="#1F77B4" stroke-width="2""##;
        assert_eq!((svg.matches(faint).count(), svg.matches(bold).count()), (1, 1));
        let flat = Series {
            name: "task".into(),
            points: (0..100).map(|k| (k as f64, 1.0 + (k % 2) as f64)).collect(),
        };
        smoothed_chart(&path, "loss", "step", "loss", std::slice::from_ref(&flat)).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(!svg.contains("log scale"), "a linear axis within a decade");
        assert_eq!((svg.matches(faint).count(), svg.matches(bold).count()), (1, 1));
        // A short curve is drawn as it is: no EMA trailing behind it.
        let short = Series { name: "task".into(), points: flat.points[..99].to_vec() };
        smoothed_chart(&path, "loss", "step", "loss", &[short]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(!svg.contains("EMA"), "{svg}");
        assert_eq!((svg.matches(faint).count(), svg.matches(bold).count()), (0, 1));
    }

    #[test]
    fn pair_panels_average_in_windows_when_there_are_many_steps() {
        let dir = tempfile::tempdir().unwrap();
        let pair = Series {
            name: "a – b".into(),
            points: (0..1000).map(|k| (k as f64, (k as f64 / 100.0).sin())).collect(),
        };
        let path = dir.path().join("cosines_over_time.svg");
        pair_panels(&path, "Gradient cosine", &[pair]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("windows of 17 steps") && svg.contains("a – b"), "{svg}");
        assert!(dir.path().join("cosines_over_time.png").is_file());
    }
}
