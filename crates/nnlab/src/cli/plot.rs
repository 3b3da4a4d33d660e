//! PNG plots of the studies (`nnlab study ... --plot OUT.png`): line charts and a heatmap,
//! drawn by plotters into a pixel buffer and written by `image`, labelled with egui's
//! bundled font so no system font is needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{Context, Result, anyhow, ensure};
use plotters::coord::Shift;
use plotters::prelude::*;

const FONT: &str = "sans-serif";
const SIZE: (u32, u32) = (900, 560);

/// One line of a chart.
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Points (x, y); non-finite ones are left out.
    pub points: Vec<(f64, f64)>,
    /// Dashed (a companion series, e.g. validation beside training).
    pub dashed: bool,
    /// Index into the palette: companion series share one.
    pub colour: usize,
}

/// A line chart.
pub struct Chart {
    /// Title over the chart.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// A logarithmic y axis (values must be positive).
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
}

/// A heatmap of `values[j * n + i]` at (xs[i], ys[j]).
pub struct Heatmap {
    /// Title over the map.
    pub title: String,
    /// Coordinates along x.
    pub xs: Vec<f64>,
    /// Coordinates along y.
    pub ys: Vec<f64>,
    /// The values, row by row.
    pub values: Vec<f64>,
}

fn font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        // egui's own font: the same letters as the app, and no system font needed.
        let _ = plotters::style::register_font(
            FONT,
            FontStyle::Normal,
            epaint_default_fonts::UBUNTU_LIGHT,
        );
    });
}

/// Writes `chart` to `path` as PNG.
pub fn write_chart(path: &Path, chart: &Chart) -> Result<()> {
    write_panels(path, SIZE, |area| draw_chart(area, chart))
}

/// Writes a chart and heatmaps side by side to `path` as PNG.
pub fn write_chart_and_heatmaps(path: &Path, chart: &Chart, maps: &[Heatmap]) -> Result<()> {
    let panels = 1 + maps.len() as u32;
    write_panels(path, (SIZE.0 * panels, SIZE.1), |area| {
        let (l, mut rest) = area.split_horizontally(SIZE.0);
        draw_chart(&l, chart)?;
        // One colour scale for every map, so that they compare.
        let shared = range(
            maps.iter().flat_map(log_values).filter(|v| v.is_finite()),
            false,
        );
        for m in maps {
            let (here, next) = rest.split_horizontally(SIZE.0);
            draw_heatmap(&here, m, shared)?;
            rest = next;
        }
        Ok(())
    })
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

fn write_panels(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&Area<'_>) -> Result<()>,
) -> Result<()> {
    font();
    let mut buf = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (w, h)).into_drawing_area();
        draw(&root)?;
        root.present()
            .map_err(|e| anyhow!("drawing the plot: {e}"))?;
    }
    let img = image::RgbImage::from_raw(w, h, buf).context("plot buffer")?;
    crate::checkpoint::write_atomic(path, &png_bytes(&img)?)
        .with_context(|| format!("writing {}", path.display()))
}

fn png_bytes(img: &image::RgbImage) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)?;
    Ok(out.into_inner())
}

fn finite(s: &Series) -> impl Iterator<Item = (f64, f64)> + '_ {
    s.points
        .iter()
        .copied()
        .filter(|(x, y)| x.is_finite() && y.is_finite())
}

/// (min, max) with a margin, never empty.
fn range(v: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (lo, hi) = v
        .filter(|x| !log || *x > 0.0)
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(x), b.max(x))
        });
    if !lo.is_finite() {
        return if log { (0.1, 1.0) } else { (0.0, 1.0) };
    }
    if log {
        (lo / 2.0, hi * 2.0)
    } else if hi - lo < 1e-12 {
        (lo - 0.5, hi + 0.5)
    } else {
        let m = (hi - lo) * 0.05;
        (lo - m, hi + m)
    }
}

fn colour(i: usize) -> RGBColor {
    // Okabe-Ito: distinguishable with the common colour-vision deficiencies.
    const C: [RGBColor; 7] = [
        RGBColor(0, 114, 178),
        RGBColor(213, 94, 0),
        RGBColor(0, 158, 115),
        RGBColor(204, 121, 167),
        RGBColor(230, 159, 0),
        RGBColor(86, 180, 233),
        RGBColor(0, 0, 0),
    ];
    C[i % C.len()]
}

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing the plot: {e}")
}

fn draw_chart(area: &Area<'_>, c: &Chart) -> Result<()> {
    ensure!(!c.series.is_empty(), "nothing to plot");
    area.fill(&WHITE).map_err(err)?;
    let xs = range(c.series.iter().flat_map(|s| finite(s).map(|p| p.0)), false);
    let ys = range(
        c.series.iter().flat_map(|s| finite(s).map(|p| p.1)),
        c.log_y,
    );
    let mut b = ChartBuilder::on(area);
    b.caption(&c.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(72);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut ch = $chart;
            ch.configure_mesh()
                .x_desc(c.x_label.as_str())
                .y_desc(c.y_label.as_str())
                .label_style((FONT, 14))
                .draw()
                .map_err(err)?;
            for s in &c.series {
                let col = colour(s.colour);
                let pts: Vec<(f64, f64)> = finite(s).filter(|p| !c.log_y || p.1 > 0.0).collect();
                let style = col.stroke_width(2);
                let drawn = if s.dashed {
                    ch.draw_series(DashedLineSeries::new(pts.clone(), 6, 4, style))
                        .map_err(err)?
                } else {
                    ch.draw_series(LineSeries::new(pts.clone(), style))
                        .map_err(err)?
                };
                drawn.label(s.name.as_str()).legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 20, y)], col.stroke_width(2))
                });
                ch.draw_series(pts.iter().map(|&p| Circle::new(p, 2, col.filled())))
                    .map_err(err)?;
            }
            ch.configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font((FONT, 14))
                .position(SeriesLabelPosition::UpperRight)
                .draw()
                .map_err(err)?;
        }};
    }
    if c.log_y {
        draw!(
            b.build_cartesian_2d(xs.0..xs.1, (ys.0..ys.1).log_scale())
                .map_err(err)?
        );
    } else {
        draw!(b.build_cartesian_2d(xs.0..xs.1, ys.0..ys.1).map_err(err)?);
    }
    Ok(())
}

/// The study views' viridis, as plotters wants it.
fn viridis(t: f64) -> RGBColor {
    let c = crate::app::views::study::viridis(t as f32);
    RGBColor(c.r(), c.g(), c.b())
}

/// The log of each value (the loss), NaN where not positive: the basin's shape shows next
/// to huge values at the edges.
fn log_values(h: &Heatmap) -> Vec<f64> {
    h.values
        .iter()
        .map(|v| if *v > 0.0 { v.ln() } else { f64::NAN })
        .collect()
}

fn draw_heatmap(area: &Area<'_>, h: &Heatmap, (lo, hi): (f64, f64)) -> Result<()> {
    let (nx, ny) = (h.xs.len(), h.ys.len());
    ensure!(
        nx >= 2 && ny >= 2 && h.values.len() == nx * ny,
        "a heatmap needs at least 2x2 values"
    );
    area.fill(&WHITE).map_err(err)?;
    let logv = log_values(h);
    let (dx, dy) = (
        (h.xs[nx - 1] - h.xs[0]) / (nx - 1) as f64,
        (h.ys[ny - 1] - h.ys[0]) / (ny - 1) as f64,
    );
    let mut ch = ChartBuilder::on(area)
        .caption(
            format!("{} (dark {:.2}, light {:.2})", h.title, lo.exp(), hi.exp()),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(42)
        .y_label_area_size(56)
        .build_cartesian_2d(
            h.xs[0] - dx / 2.0..h.xs[nx - 1] + dx / 2.0,
            h.ys[0] - dy / 2.0..h.ys[ny - 1] + dy / 2.0,
        )
        .map_err(err)?;
    ch.configure_mesh()
        .disable_mesh()
        .x_desc("alpha (direction 1)")
        .y_desc("beta (direction 2)")
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    ch.draw_series((0..ny).flat_map(|j| {
        let logv = &logv;
        (0..nx).map(move |i| {
            let v = logv[j * nx + i];
            let c = if v.is_finite() {
                viridis((v - lo) / (hi - lo))
            } else {
                RGBColor(200, 200, 200)
            };
            let (x, y) = (h.xs[i], h.ys[j]);
            Rectangle::new(
                [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)],
                c.filled(),
            )
        })
    }))
    .map_err(err)?;
    ch.draw_series(std::iter::once(Cross::new(
        (0.0, 0.0),
        6,
        WHITE.stroke_width(2),
    )))
    .map_err(err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_and_a_heatmap_become_a_png_of_the_stated_size() -> Result<()> {
        let dir = std::env::temp_dir().join(format!("nnlab-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let chart = Chart {
            title: "t".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_y: true,
            series: vec![Series {
                name: "a".into(),
                points: vec![(0.0, 1e-3), (1.0, f64::NAN), (2.0, 10.0)],
                dashed: false,
                colour: 0,
            }],
        };
        let map = Heatmap {
            title: "m".into(),
            xs: vec![-1.0, 0.0, 1.0],
            ys: vec![-1.0, 1.0],
            values: vec![1.0, 0.5, 2.0, 3.0, f64::NAN, 9.0],
        };
        let p = dir.join("p.png");
        write_chart_and_heatmaps(&p, &chart, &[map])?;
        let img = image::open(&p)?.to_rgb8();
        assert_eq!(img.dimensions(), (SIZE.0 * 2, SIZE.1));
        // Something was drawn in both panels: not every pixel is white.
        let inked = |x0: u32| {
            (x0..x0 + SIZE.0)
                .flat_map(|x| (0..SIZE.1).map(move |y| (x, y)))
                .filter(|&(x, y)| img.get_pixel(x, y).0 != [255, 255, 255])
                .count()
        };
        assert!(inked(0) > 1000 && inked(SIZE.0) > 10_000);
        std::fs::remove_dir_all(&dir)?;
        Ok(())
    }
}
