//! Plots of a run (per-task loss and metric curves, task weights, gradient cosines over time,
//! gradient-cosine, task-affinity and task-relation heatmaps) and of a comparison (the per-task
//! trade-off), drawn with plotters.
//!
//! Every plot is one [`Figure`]: it knows its size in pixels and draws itself on any plotters
//! backend. [`save`] draws it twice, as `NAME.svg` and as `NAME.png` beside it, so that a plot
//! reads the same in a browser and in an image viewer. The PNG's text is drawn with DejaVu Sans,
//! shipped in the binary (`assets/DejaVuSans.ttf`), so that it looks the same on every machine.
//!
//! - [`lines`]: line charts, raw curves with their smoothed trend, panels, and error bars;
//! - [`heatmap`]: `T × T` matrices on a diverging colour scale;
//! - [`smooth`]: the exponential moving average and window means behind the smoothed curves.

pub mod heatmap;
pub mod lines;
pub mod smooth;

use std::path::Path;
use std::sync::Once;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{CliError, Result};
use crate::output::write_atomic;

pub use heatmap::{diverging_heatmap, heatmap};
pub use lines::{line_chart, pair_panels, panels, smoothed_chart, spread_chart};

/// The font family every plot's text uses.
const FONT: &str = "sans-serif";

fn plot_error(e: impl std::fmt::Debug) -> CliError {
    CliError::Invalid(format!("cannot draw a plot: {e:?}"))
}

/// The colour of series `i`: ten colours that read on white (Tableau 10), then plotters' 99.
fn color(i: usize) -> RGBAColor {
    const TEN: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    match TEN.get(i) {
        Some(&(r, g, b)) => RGBColor(r, g, b).to_rgba(),
        None => Palette99::pick(i).to_rgba(),
    }
}

/// A named series of `(x, y)` points.
#[derive(Debug, Clone)]
pub struct Series {
    /// The legend's label.
    pub name: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// A plot that draws itself on any backend.
trait Figure {
    /// Width and height in pixels.
    fn size(&self) -> (u32, u32);
    /// Draws the whole figure on `root`, which is [`Figure::size`] large and already white.
    fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// Makes DejaVu Sans the font of the plots' text (once per process).
fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/DejaVuSans.ttf");
        plotters::style::register_font(FONT, FontStyle::Normal, bytes)
            .unwrap_or_else(|_| panic!("the font shipped in the binary is a valid TrueType font"));
    });
}

/// Writes `figure` to `svg` (a path ending in `.svg`) and as PNG beside it (the same name
/// ending in `.png`); returns the two file names.
fn save(svg: &Path, figure: &impl Figure) -> Result<[String; 2]> {
    register_font();
    let (width, height) = figure.size();
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        figure.draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    let mut pixels = vec![255u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        figure.draw(&root)?;
        root.present().map_err(plot_error)?;
    }
    let png_path = svg.with_extension("png");
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &pixels,
        width,
        height,
        image::ColorType::Rgb8,
    )
    .map_err(plot_error)?;
    write_atomic(svg, text.as_bytes())?;
    write_atomic(&png_path, &png)?;
    let name = |p: &Path| p.file_name().map(|n| n.to_string_lossy().into_owned());
    Ok([name(svg).unwrap_or_default(), name(&png_path).unwrap_or_default()])
}

/// The style of text at `size` points, anchored at its `h` side and `v` side.
fn anchored(size: u32, h: HPos, v: VPos) -> TextStyle<'static> {
    TextStyle::from((FONT, size).into_font()).pos(Pos::new(h, v))
}

/// The width in pixels of `text` at `size` points, as the plots' font draws it.
fn text_width(text: &str, size: u32) -> u32 {
    register_font();
    (FONT, size)
        .into_font()
        .box_size(text)
        .map(|(w, _)| w)
        .unwrap_or(text.chars().count() as u32 * size * 6 / 10)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Square;
    impl Figure for Square {
        fn size(&self) -> (u32, u32) {
            (40, 30)
        }
        fn draw<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
            root.draw(&Rectangle::new([(10, 10), (20, 20)], RED.filled())).map_err(plot_error)?;
            root.draw(&Text::new("ab", (0, 0), (FONT, 12))).map_err(plot_error)
        }
    }

    #[test]
    fn save_writes_an_svg_and_a_png_of_the_same_drawing() {
        let dir = tempfile::tempdir().unwrap();
        let names = save(&dir.path().join("square.svg"), &Square).unwrap();
        assert_eq!(names, ["square.svg".to_string(), "square.png".to_string()]);
        let svg = std::fs::read_to_string(dir.path().join("square.svg")).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("\nab\n</text>"), "{svg}");
        let png = image::open(dir.path().join("square.png")).unwrap().to_rgb8();
        assert_eq!(png.dimensions(), (40, 30));
        assert_eq!(png.get_pixel(15, 15).0, [255, 0, 0], "the square");
        assert_eq!(png.get_pixel(35, 25).0, [255, 255, 255], "the background");
        // The text is drawn in the PNG too: some pixel of its box is not white.
        let inked = (0..12).any(|x| (0..12).any(|y| png.get_pixel(x, y).0 != [255, 255, 255]));
        assert!(inked, "the PNG has the text");
    }
}
