//! SVG plots of a run (per-task loss and metric curves, task weights, gradient-cosine and
//! task-affinity heatmaps) and of a comparison (the per-task trade-off), drawn with plotters.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;

use crate::error::{CliError, Result};
use crate::output::write_atomic;

fn plot_error(e: impl std::fmt::Debug) -> CliError {
    CliError::Invalid(format!("cannot draw a plot: {e:?}"))
}

fn color(i: usize) -> RGBAColor {
    Palette99::pick(i).to_rgba()
}

/// A named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's label.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

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

/// Draws line series into `area`.
fn draw_lines(
    area: &DrawingArea<SVGBackend<'_>, Shift>,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<()> {
    let (x0, x1) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.0)));
    let (y0, y1) = range(series.iter().flat_map(|s| s.points.iter().map(|p| p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(plot_error)?;
    for (i, s) in series.iter().enumerate() {
        let c = color(i);
        let points: Vec<(f64, f64)> =
            s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
        let single = points.len() == 1;
        chart
            .draw_series(LineSeries::new(points.clone(), ShapeStyle::from(c).stroke_width(2)))
            .map_err(plot_error)?
            .label(s.name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2)));
        if single || points.len() <= 30 {
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(plot_error)?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(plot_error)?;
    Ok(())
}

/// One chart of line series, written to `path`.
pub fn line_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<()> {
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        draw_lines(&root, title, x_desc, y_desc, series)?;
        root.present().map_err(plot_error)?;
    }
    write_atomic(path, svg.as_bytes())
}

/// Line series with a vertical bar of ± `spread` at every point (one spread per point), on a
/// log-scaled x axis with a tick at every x the series share (K = 1, 5, 10, 50), written to
/// `path`. The series are shifted sideways a little, so that their bars do not hide each other,
/// and the legend sits above the data.
pub fn spread_chart(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[(Series, Vec<f64>)],
) -> Result<()> {
    let points = || series.iter().flat_map(|(s, sd)| s.points.iter().zip(sd));
    let (x0, x1) = range(points().map(|(p, _)| p.0.max(1e-12).ln()));
    let (y0, y1) = range(points().flat_map(|(p, sd)| [p.1 - sd, p.1 + sd]));
    // Room above the data for the legend, one line per series.
    let y1 = y1 + (y1 - y0) * (0.05 + 0.05 * series.len() as f64);
    let dodge = |i: usize| (i as f64 - (series.len() as f64 - 1.0) / 2.0) * 0.012 * (x1 - x0);
    let mut ticks: Vec<f64> = points().map(|(p, _)| p.0).collect();
    ticks.sort_by(f64::total_cmp);
    ticks.dedup();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 500)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(0)
            .x_desc(x_desc)
            .y_desc(y_desc)
            .draw()
            .map_err(plot_error)?;
        // The x axis is ln(x); its ticks are the x values themselves.
        chart
            .draw_series(
                ticks.iter().map(|&t| {
                    Text::new(format!("{t}"), (t.ln(), y0), ("sans-serif", 13).into_font())
                }),
            )
            .map_err(plot_error)?;
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
                .map_err(plot_error)?
                .label(s.name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(pts.iter().map(|&(x, y, sd)| {
                    PathElement::new(vec![(x, y - sd), (x, y + sd)], c.stroke_width(2))
                }))
                .map_err(plot_error)?;
            chart
                .draw_series(pts.iter().map(|&(x, y, _)| Circle::new((x, y), 3, c.filled())))
                .map_err(plot_error)?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(plot_error)?;
        root.present().map_err(plot_error)?;
    }
    write_atomic(path, svg.as_bytes())
}

/// One panel per entry of `panels` (title, y label, series), side by side, written to `path`.
pub fn panels(path: &Path, x_desc: &str, panels: &[(String, String, Vec<Series>)]) -> Result<()> {
    let n = panels.len().max(1);
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (420 * n as u32, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let areas = root.split_evenly((1, n));
        for (area, (title, y_desc, series)) in areas.iter().zip(panels) {
            draw_lines(area, title, x_desc, y_desc, series)?;
        }
        root.present().map_err(plot_error)?;
    }
    write_atomic(path, svg.as_bytes())
}

/// A `T × T` heatmap of `values` (row-major, in `-1..=1`, `NaN` where unknown) labelled with
/// `names`, written to `path`: blue where tasks agree, red where they conflict.
pub fn heatmap(path: &Path, title: &str, names: &[String], values: &[f64]) -> Result<()> {
    diverging_heatmap(path, title, names, values, 1.0)
}

/// The digits after the point that show values up to `limit` with two significant digits.
fn decimals(limit: f64) -> usize {
    if limit > 0.0 && limit.is_finite() {
        (1.0 - limit.log10().floor()).clamp(2.0, 8.0) as usize
    } else {
        2
    }
}

/// A `T × T` heatmap on a diverging scale around 0: white at 0, full blue at `+limit` and full
/// red at `-limit` (values beyond are clamped), grey where unknown; see [`heatmap`].
pub fn diverging_heatmap(
    path: &Path,
    title: &str,
    names: &[String],
    values: &[f64],
    limit: f64,
) -> Result<()> {
    let t = names.len();
    let limit = if limit > 0.0 && limit.is_finite() { limit } else { 1.0 };
    let places = decimals(limit);
    let mut svg = String::new();
    {
        let side = 160 + 110 * t as u32;
        let root = SVGBackend::with_string(&mut svg, (side + 60, side)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(110)
            .build_cartesian_2d((0..t).into_segmented(), (0..t).into_segmented())
            .map_err(plot_error)?;
        let label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        // Row r is drawn at y = t - 1 - r, so the first task is at the top.
        let row_label = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) if *i < t => names[t - 1 - i].clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(t + 1)
            .y_labels(t + 1)
            .x_label_formatter(&label)
            .y_label_formatter(&row_label)
            .draw()
            .map_err(plot_error)?;
        for r in 0..t {
            for c in 0..t {
                let v = values[r * t + c];
                let unit = v / limit;
                let fill = if !v.is_finite() {
                    RGBColor(220, 220, 220)
                } else if unit >= 0.0 {
                    let k = (255.0 * (1.0 - unit.min(1.0))) as u8;
                    RGBColor(k, k, 255)
                } else {
                    let k = (255.0 * (1.0 + unit.max(-1.0))) as u8;
                    RGBColor(255, k, k)
                };
                let cell = [
                    (SegmentValue::Exact(c), SegmentValue::Exact(t - 1 - r)),
                    (SegmentValue::Exact(c + 1), SegmentValue::Exact(t - r)),
                ];
                chart
                    .draw_series(std::iter::once(Rectangle::new(cell, fill.filled())))
                    .map_err(plot_error)?;
                let text = if v.is_finite() { format!("{v:+.places$}") } else { "n/a".into() };
                chart
                    .draw_series(std::iter::once(Text::new(
                        text,
                        (SegmentValue::CenterOf(c), SegmentValue::CenterOf(t - 1 - r)),
                        ("sans-serif", 16).into_font().color(&BLACK),
                    )))
                    .map_err(plot_error)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    write_atomic(path, svg.as_bytes())
}
