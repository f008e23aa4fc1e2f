//! Line plots as PNG (plotters' bitmap backend), with text drawn by ab_glyph from Debian's
//! fonts-dejavu-core, so that no system fontconfig is needed.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context as _, Result, anyhow};
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (960, 540);
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

pub struct Plot {
    /// The PNG's file name.
    pub file: String,
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
}

/// One contender's line.
pub struct Series {
    pub name: String,
    pub points: Vec<(f64, f64)>,
}

pub fn draw(plot: &Plot, path: &Path) -> Result<()> {
    register_dejavu()?;
    let max = |axis: fn(&(f64, f64)) -> f64| {
        plot.series
            .iter()
            .flat_map(|s| s.points.iter().map(axis))
            .fold(0.0, f64::max)
    };
    let (x_max, y_max) = (max(|p| p.0) * 1.1, max(|p| p.1) * 1.2);
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(&plot.title, ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart
        .configure_mesh()
        .x_desc(&plot.x_label)
        .y_desc(&plot.y_label)
        .label_style(("sans-serif", 15))
        .y_label_formatter(&|y| format!("{y:.0}"))
        .draw()?;
    for (series, color) in plot.series.iter().zip(COLORS.iter().cycle()) {
        let style = color.stroke_width(2);
        chart
            .draw_series(LineSeries::new(series.points.iter().copied(), style))?
            .label(&series.name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
        chart.draw_series(
            (series.points.iter()).map(|&point| Circle::new(point, 4, color.filled())),
        )?;
    }
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 15))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(legend_position(plot, x_max, y_max))
        .draw()?;
    root.present()
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// The left corner where the legend's box covers fewer points (the lower one when even): flat
/// lines leave the lower one free, lines rising from the left the upper one. The box takes about
/// 40 % of the width and 5 % of the height per series plus 5 %.
fn legend_position(plot: &Plot, x_max: f64, y_max: f64) -> SeriesLabelPosition {
    let height = y_max * 0.05 * (plot.series.len() + 1) as f64;
    let covered = |band: Range<f64>| {
        (plot.series.iter())
            .flat_map(|s| &s.points)
            .filter(|&&(x, y)| x < x_max * 0.4 && band.contains(&y))
            .count()
    };
    if covered(y_max - height..f64::INFINITY) < covered(0.0..height) {
        SeriesLabelPosition::UpperLeft
    } else {
        SeriesLabelPosition::LowerLeft
    }
}

/// ab_glyph knows only registered fonts; plotters keeps them for the process's lifetime.
fn register_dejavu() -> Result<()> {
    static REGISTERED: OnceLock<Result<(), String>> = OnceLock::new();
    REGISTERED
        .get_or_init(|| {
            let bytes = std::fs::read(FONT)
                .map_err(|e| format!("{FONT} (Debian's fonts-dejavu-core): {e}"))?;
            register_font("sans-serif", FontStyle::Normal, Box::leak(bytes.into()))
                .map_err(|_| format!("{FONT} is no font ab_glyph reads"))
        })
        .clone()
        .map_err(|e| anyhow!(e))
}
