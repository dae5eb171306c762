//! `T × T` heatmaps (gradient cosines, task affinity, the learned task relation) on a diverging
//! colour scale: red at `−limit` (conflict), white at 0, blue at `+limit` (agreement), with each
//! cell's value written in it and a colour bar beside the matrix.
//!
//! The layout is computed in pixels by [`Layout`] (not by a chart's axes), so that the matrix has
//! exactly `T` rows and `T` columns of cells, the labels fit, and the title is never cut.

use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, VPos};

use super::{anchored, plot_error, save, text_width, Figure};
use crate::error::Result;

/// The colour of `−limit` and below: conflict.
pub const RED_END: RGBColor = RGBColor(178, 24, 43);
/// The colour of `+limit` and above: agreement.
pub const BLUE_END: RGBColor = RGBColor(33, 102, 172);
/// The colour of an unknown value.
const UNKNOWN: RGBColor = RGBColor(215, 215, 215);

/// The colour of `value` on the diverging scale: white at 0, [`BLUE_END`] at `+limit`,
/// [`RED_END`] at `−limit`, linear in between and clamped beyond; grey when `value` is not
/// finite. A `limit` that is not positive and finite counts as 1.
pub fn diverging_color(value: f64, limit: f64) -> RGBColor {
    if !value.is_finite() {
        return UNKNOWN;
    }
    let limit = if limit > 0.0 && limit.is_finite() { limit } else { 1.0 };
    let unit = (value / limit).clamp(-1.0, 1.0);
    let end = if unit < 0.0 { RED_END } else { BLUE_END };
    let mix = |channel: u8| (255.0 + (f64::from(channel) - 255.0) * unit.abs()).round() as u8;
    RGBColor(mix(end.0), mix(end.1), mix(end.2))
}

/// The digits after the point that show values up to `limit` with two significant digits.
fn decimals(limit: f64) -> usize {
    if limit > 0.0 && limit.is_finite() {
        (1.0 - limit.log10().floor()).clamp(2.0, 8.0) as usize
    } else {
        2
    }
}

/// A cell's value with `places` decimals and its sign, "0.00" for what rounds to 0 (never
/// "-0.00"), "n/a" when unknown.
fn cell_text(v: f64, places: usize) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    let text = format!("{v:+.places$}");
    if text[1..].chars().all(|c| c == '0' || c == '.') {
        text[1..].to_string()
    } else {
        text
    }
}

const MARGIN: i32 = 14;
const TITLE_SIZE: u32 = 18;
const LABEL_SIZE: u32 = 14;
const TITLE_HEIGHT: i32 = 34;
/// The colour bar: gap to the matrix, bar width, room for its tick labels.
const BAR_GAP: i32 = 18;
const BAR_WIDTH: i32 = 16;
const BAR_LABELS: i32 = 64;

/// Where everything of a heatmap goes, in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// Tasks: the matrix has `t` rows and `t` columns.
    pub t: usize,
    /// The side of a cell.
    pub cell: i32,
    /// The top-left corner of the matrix.
    pub origin: (i32, i32),
    /// Whether the column labels are written upwards (they are wider than a cell).
    pub vertical_columns: bool,
    /// The height of the column labels' band below the matrix.
    pub column_band: i32,
    /// The whole figure.
    pub size: (u32, u32),
}

impl Layout {
    /// The layout for `t` tasks whose widest row label is `row_label` pixels, widest column
    /// label `column_label` pixels, under a title `title` pixels wide.
    pub fn new(t: usize, row_label: i32, column_label: i32, title: i32) -> Layout {
        let cell = if t <= 6 { 90 } else { (540 / t as i32).max(48) };
        let vertical_columns = column_label + 8 > cell;
        let column_band = if vertical_columns { column_label + 12 } else { 26 };
        let grid = cell * t as i32;
        let content = row_label + 10 + grid + BAR_GAP + BAR_WIDTH + BAR_LABELS;
        let width = (content + 2 * MARGIN).max(title + 2 * MARGIN);
        let left = (width - content) / 2 + row_label + 10;
        let height = MARGIN + TITLE_HEIGHT + grid + column_band + MARGIN;
        Layout {
            t,
            cell,
            origin: (left, MARGIN + TITLE_HEIGHT),
            vertical_columns,
            column_band,
            size: (width as u32, height as u32),
        }
    }

    /// The corners of the cell of row `r` (top to bottom) and column `c` (left to right).
    pub fn cell_rect(&self, r: usize, c: usize) -> [(i32, i32); 2] {
        let (x, y) = (self.origin.0 + c as i32 * self.cell, self.origin.1 + r as i32 * self.cell);
        [(x, y), (x + self.cell, y + self.cell)]
    }

    /// The font size of the values in the cells.
    fn value_size(&self) -> u32 {
        (self.cell / 5).clamp(11, 18) as u32
    }
}

/// A heatmap figure.
struct Heatmap<'a> {
    title: &'a str,
    names: &'a [String],
    values: &'a [f64],
    limit: f64,
    layout: Layout,
}

impl Figure for Heatmap<'_> {
    fn size(&self) -> (u32, u32) {
        self.layout.size
    }

    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let Layout { t, cell, origin, .. } = self.layout;
        let places = decimals(self.limit);
        let (width, _) = self.layout.size;
        let title = anchored(TITLE_SIZE, HPos::Center, VPos::Center);
        root.draw(&Text::new(self.title, (width as i32 / 2, MARGIN + TITLE_HEIGHT / 2 - 4), title))
            .map_err(plot_error)?;
        for r in 0..t {
            for c in 0..t {
                let v = self.values.get(r * t + c).copied().unwrap_or(f64::NAN);
                let rect = self.layout.cell_rect(r, c);
                let fill = diverging_color(v, self.limit);
                root.draw(&Rectangle::new(rect, fill.filled())).map_err(plot_error)?;
                let strong = v.is_finite() && (v / self.limit).abs() > 0.55;
                let ink = if strong { WHITE } else { BLACK };
                let text = cell_text(v, places);
                let style =
                    anchored(self.layout.value_size(), HPos::Center, VPos::Center).color(&ink);
                let middle = (rect[0].0 + cell / 2, rect[0].1 + cell / 2);
                root.draw(&Text::new(text, middle, style)).map_err(plot_error)?;
            }
        }
        // Row labels to the left, column labels below, in the order of the tasks.
        let grid = cell * t as i32;
        for (i, name) in self.names.iter().enumerate().take(t) {
            let middle = origin.1 + i as i32 * cell + cell / 2;
            let style = anchored(LABEL_SIZE, HPos::Right, VPos::Center);
            root.draw(&Text::new(name.as_str(), (origin.0 - 8, middle), style))
                .map_err(plot_error)?;
            let x = origin.0 + i as i32 * cell + cell / 2;
            let style = if self.layout.vertical_columns {
                anchored(LABEL_SIZE, HPos::Right, VPos::Center).transform(FontTransform::Rotate270)
            } else {
                anchored(LABEL_SIZE, HPos::Center, VPos::Top)
            };
            root.draw(&Text::new(name.as_str(), (x, origin.1 + grid + 6), style))
                .map_err(plot_error)?;
        }
        // The colour bar: +limit at the top, −limit at the bottom.
        let bar_x = origin.0 + grid + BAR_GAP;
        let steps = 64;
        for k in 0..steps {
            let y0 = origin.1 + grid * k / steps;
            let y1 = origin.1 + grid * (k + 1) / steps;
            let v = self.limit * (1.0 - 2.0 * (f64::from(k) + 0.5) / f64::from(steps));
            let rect = [(bar_x, y0), (bar_x + BAR_WIDTH, y1)];
            root.draw(&Rectangle::new(rect, diverging_color(v, self.limit).filled()))
                .map_err(plot_error)?;
        }
        let frame = [(bar_x, origin.1), (bar_x + BAR_WIDTH, origin.1 + grid)];
        root.draw(&Rectangle::new(frame, BLACK.stroke_width(1))).map_err(plot_error)?;
        for k in 0..=4 {
            let v = self.limit * (1.0 - 0.5 * f64::from(k));
            let y = origin.1 + grid * k / 4;
            let style = anchored(12, HPos::Left, VPos::Center);
            let tick = [(bar_x + BAR_WIDTH, y), (bar_x + BAR_WIDTH + 4, y)];
            root.draw(&PathElement::new(tick, BLACK)).map_err(plot_error)?;
            let label = if k == 2 { "0".to_string() } else { format!("{v:+.places$}") };
            root.draw(&Text::new(label, (bar_x + BAR_WIDTH + 7, y), style)).map_err(plot_error)?;
        }
        Ok(())
    }
}

/// A `T × T` heatmap of `values` (row-major, in `-1..=1`, `NaN` where unknown) labelled with
/// `names`, written to `path` and as PNG beside it: blue where tasks agree, red where they
/// conflict. Returns the names of the files written.
pub fn heatmap(path: &Path, title: &str, names: &[String], values: &[f64]) -> Result<[String; 2]> {
    diverging_heatmap(path, title, names, values, 1.0)
}

/// A `T × T` heatmap on a diverging scale around 0: white at 0, full blue at `+limit` and full
/// red at `-limit` (values beyond are clamped), grey where unknown; see [`heatmap`].
pub fn diverging_heatmap(
    path: &Path,
    title: &str,
    names: &[String],
    values: &[f64],
    limit: f64,
) -> Result<[String; 2]> {
    let limit = if limit > 0.0 && limit.is_finite() { limit } else { 1.0 };
    let widest = |size| names.iter().map(|n| text_width(n, size) as i32).max().unwrap_or(0);
    let layout = Layout::new(
        names.len(),
        widest(LABEL_SIZE),
        widest(LABEL_SIZE),
        text_width(title, TITLE_SIZE) as i32,
    );
    save(path, &Heatmap { title, names, values, limit, layout })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_is_red_at_minus_one_white_at_zero_blue_at_plus_one() {
        assert_eq!(diverging_color(-1.0, 1.0), RED_END);
        assert_eq!(diverging_color(0.0, 1.0), RGBColor(255, 255, 255));
        assert_eq!(diverging_color(1.0, 1.0), BLUE_END);
        let RGBColor(r, g, b) = RED_END;
        assert!(r > 2 * g && r > 2 * b, "red");
        let RGBColor(r, g, b) = BLUE_END;
        assert!(b > r + 100 && b > g + 50, "blue");
        // Half-way is half-way to white, beyond the limit is clamped, unknown is grey.
        assert_eq!(diverging_color(-0.5, 1.0), RGBColor(217, 140, 149));
        assert_eq!(diverging_color(-3.0, 1.0), RED_END);
        assert_eq!(diverging_color(0.2, 0.2), BLUE_END);
        assert_eq!(diverging_color(f64::NAN, 1.0), UNKNOWN);
    }

    #[test]
    fn cell_values_have_a_sign_except_zero() {
        assert_eq!(cell_text(0.5, 2), "+0.50");
        assert_eq!(cell_text(-0.123, 2), "-0.12");
        assert_eq!(cell_text(-0.001, 2), "0.00");
        assert_eq!(cell_text(0.0, 3), "0.000");
        assert_eq!(cell_text(f64::NAN, 2), "n/a");
    }

    #[test]
    fn the_layout_has_t_rows_and_t_columns_that_touch() {
        for t in [1, 2, 3, 7, 40] {
            let layout = Layout::new(t, 80, 80, 500);
            let first = layout.cell_rect(0, 0);
            let last = layout.cell_rect(t - 1, t - 1);
            assert_eq!(first[0], layout.origin);
            assert_eq!(last[1].0 - first[0].0, t as i32 * layout.cell, "t columns, no gap");
            assert_eq!(last[1].1 - first[0].1, t as i32 * layout.cell, "t rows, no gap");
            let (width, height) = layout.size;
            assert!(last[1].0 < width as i32 && last[1].1 < height as i32, "inside");
            // Below the matrix only the column labels, left of it only the row labels.
            assert_eq!(height as i32 - last[1].1, layout.column_band + MARGIN);
        }
        // A long title widens the figure instead of being cut.
        assert_eq!(Layout::new(2, 40, 40, 900).size.0, 900 + 2 * MARGIN as u32);
    }

    #[test]
    fn the_svg_has_exactly_t_by_t_cells() {
        let dir = tempfile::tempdir().unwrap();
        for t in [2usize, 3] {
            let names: Vec<String> = (0..t).map(|i| format!("task{i}")).collect();
            let values: Vec<f64> =
                (0..t * t).map(|k| if k % (t + 1) == 0 { 1.0 } else { -0.25 }).collect();
            let path = dir.path().join(format!("h{t}.svg"));
            let files = heatmap(&path, "cosines", &names, &values).unwrap();
            assert_eq!(files, [format!("h{t}.svg"), format!("h{t}.png")]);
            let svg = std::fs::read_to_string(&path).unwrap();
            let cell = Layout::new(t, 0, 0, 0).cell;
            let cells = svg.matches(&format!("width=\"{cell}\" height=\"{cell}\"")).count();
            assert_eq!(cells, t * t, "{t} tasks");
            assert_eq!(svg.matches("\n-0.25\n</text>").count(), t * t - t, "each value written");
            assert_eq!(svg.matches("\n+1.00\n</text>").count(), t + 1, "the diagonal and bar top");
            assert!(dir.path().join(format!("h{t}.png")).is_file());
        }
    }
}
