//! The chart of the classic experiment: a host's packet rate over time as Reflex estimated
//! it and as the switch's port counters saw it, the threshold line, and the moment of the
//! block, drawn to PNG with plotters' bitmap backend.
//!
//! Text needs a TrueType font: [`load_font`] registers `--font` (or `$REFLEX_CHART_FONT`),
//! else the first of the usual DejaVu Sans paths (Debian's `fonts-dejavu-core`). With none
//! (or `--no-text`), the chart is drawn without any text (lines, mesh and marks only)
//! rather than not at all.

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::series::Series;

/// Where DejaVu Sans lives on common distributions.
const FONT_PATHS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",
];

const FAMILY: &str = "sans-serif";

/// Registers `path` as the chart's font.
pub fn register(path: &Path) -> Result<(), String> {
    let bytes = std::fs::read(path).map_err(|e| format!("font {}: {e}", path.display()))?;
    // plotters keeps fonts for the life of the process.
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    plotters::style::register_font(FAMILY, FontStyle::Normal, bytes)
        .map_err(|_| format!("font {}: not a TrueType/OpenType font", path.display()))
}

/// Registers the font for the chart's text: `explicit` (an error if unusable), else the
/// first usable of the usual DejaVu Sans paths. `Ok(None)`: no font, no text.
pub fn load_font(explicit: Option<&Path>) -> Result<Option<PathBuf>, String> {
    if let Some(path) = explicit {
        return register(path).map(|()| Some(path.to_path_buf()));
    }
    Ok(FONT_PATHS
        .iter()
        .map(PathBuf::from)
        .find(|p| register(p).is_ok()))
}

/// What to draw besides the series.
#[derive(Clone, Debug)]
pub struct Look {
    pub title: String,
    /// Whether a font is registered (no text is drawn otherwise).
    pub text: bool,
}

impl Look {
    /// The default title for `series`.
    pub fn for_series(series: &Series, text: bool) -> Look {
        let who = series.key.as_deref().unwrap_or("the host");
        let flow = series
            .flow
            .as_deref()
            .map_or(String::new(), |f| format!(", flow {f}"));
        Look {
            title: format!("{who}: packet rate{flow}"),
            text,
        }
    }
}

const REFLEX: RGBColor = RGBColor(31, 119, 180);
const OVS: RGBColor = RGBColor(255, 127, 14);
const THRESHOLD: RGBColor = RGBColor(214, 39, 40);
const BLOCK: RGBColor = RGBColor(40, 40, 40);
const EVENT: RGBColor = RGBColor(150, 150, 150);

fn err<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// Draws `series` on `root` (any plotters backend).
pub fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    series: &Series,
    look: &Look,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(err)?;
    let (t0, t1) = series.span().ok_or("the series has no samples")?;
    let x = |t: f64| t - t0;
    let xmax = (t1 - t0).max(1.0);
    let peak = series
        .reflex
        .iter()
        .chain(&series.ovs)
        .chain(&series.threshold)
        .map(|p| p.1)
        .fold(0.0, f64::max);
    let ymax = if peak > 0.0 { peak * 1.15 } else { 1.0 };

    let mut builder = ChartBuilder::on(root);
    builder.margin(16);
    if look.text {
        builder
            .caption(&look.title, (FAMILY, 26))
            .x_label_area_size(44)
            .y_label_area_size(70);
    }
    let mut chart = builder
        .build_cartesian_2d(0f64..xmax, 0f64..ymax)
        .map_err(err)?;
    let mut mesh = chart.configure_mesh();
    mesh.light_line_style(RGBColor(235, 235, 235));
    if look.text {
        mesh.x_desc("seconds")
            .y_desc("packets per second")
            .label_style((FAMILY, 15))
            .y_label_formatter(&|v| format!("{v:.0}"));
    } else {
        mesh.x_labels(0).y_labels(0);
    }
    mesh.draw().map_err(err)?;

    // The threshold as a step line across the whole span.
    if !series.threshold.is_empty() {
        let mut pts = Vec::new();
        let mut value = series.threshold[0].1;
        pts.push((0.0, value));
        for &(t, v) in &series.threshold {
            let tx = x(t).clamp(0.0, xmax);
            pts.push((tx, value));
            pts.push((tx, v));
            value = v;
        }
        pts.push((xmax, value));
        let s = chart
            .draw_series(DashedLineSeries::new(pts, 10, 6, THRESHOLD.stroke_width(2)))
            .map_err(err)?;
        if look.text {
            s.label(format!(
                "threshold ({}/s)",
                series.threshold[series.threshold.len() - 1].1
            ))
            .legend(|(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], THRESHOLD.stroke_width(2))
            });
        }
    }

    for (points, color, name) in [
        (&series.ovs, OVS, "OVS port counters"),
        (&series.reflex, REFLEX, "Reflex estimate (sFlow)"),
    ] {
        if points.is_empty() {
            continue;
        }
        let s = chart
            .draw_series(LineSeries::new(
                points.iter().map(|&(t, v)| (x(t), v)),
                color.stroke_width(2),
            ))
            .map_err(err)?;
        if look.text {
            s.label(name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], color.stroke_width(2))
            });
        }
    }

    for m in &series.marks {
        let tx = x(m.t);
        if !(0.0..=xmax).contains(&tx) {
            continue;
        }
        let style = if m.block {
            BLOCK.stroke_width(2)
        } else {
            EVENT.stroke_width(1)
        };
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(tx, 0.0), (tx, ymax)],
                style,
            )))
            .map_err(err)?;
        if look.text && m.block {
            let label = format!("block at {:.2} s", tx);
            chart
                .draw_series(std::iter::once(Text::new(
                    label,
                    (tx + xmax * 0.006, ymax * 0.97),
                    (FAMILY, 16).into_font().color(&BLOCK),
                )))
                .map_err(err)?;
        }
    }

    if look.text {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(180, 180, 180))
            .label_font((FAMILY, 15))
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)?;
    Ok(())
}

/// Renders to an RGB buffer (`width * height * 3` bytes).
pub fn render_rgb(
    series: &Series,
    look: &Look,
    width: u32,
    height: u32,
) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        draw(&root, series, look)?;
    }
    Ok(buf)
}

/// Renders to a PNG file.
pub fn render_png(
    series: &Series,
    look: &Look,
    out: &Path,
    width: u32,
    height: u32,
) -> Result<(), String> {
    let root = BitMapBackend::new(out, (width, height)).into_drawing_area();
    draw(&root, series, look).map_err(|e| format!("{}: {e}", out.display()))
}

/// `WIDTHxHEIGHT`, each 200..=8000.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("size `{s}` is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (200..=8000).contains(n))
            .ok_or_else(|| format!("size `{s}`: each side must be 200..8000 pixels"))
    };
    Ok((parse(w)?, parse(h)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::Mark;

    /// A flood from t=2 s, detected at 2.3 s, blocked at once: the estimate decays.
    pub(crate) fn synthetic() -> Series {
        let t0 = 1_764_633_600.0;
        let mut s = Series {
            flow: Some("ddos".into()),
            key: Some("10.0.0.1".into()),
            threshold: vec![(t0, 100.0)],
            ..Series::default()
        };
        for i in 0..100 {
            let t = i as f64 * 0.1;
            let ovs = if t < 2.0 { 1.0 } else { 3000.0 };
            let reflex = if t < 2.0 {
                1.0
            } else if t < 2.3 {
                3000.0 * (1.0 - (-(t - 2.0) / 0.3).exp())
            } else {
                1900.0 * (-(t - 2.3)).exp()
            };
            s.ovs.push((t0 + t, ovs));
            s.reflex.push((t0 + t, reflex));
        }
        s.marks.push(Mark {
            t: t0 + 2.3,
            label: "auth(10.0.0.1) authenticated -> clear".into(),
            block: true,
        });
        s
    }

    fn count(buf: &[u8], color: RGBColor) -> usize {
        buf.chunks(3)
            .filter(|p| p[0] == color.0 && p[1] == color.1 && p[2] == color.2)
            .count()
    }

    #[test]
    fn lines_threshold_and_block_are_drawn_even_without_a_font() {
        let s = synthetic();
        let look = Look::for_series(&s, false);
        let buf = render_rgb(&s, &look, 640, 360).unwrap();
        let white = count(&buf, WHITE);
        assert!(white < 640 * 360, "blank chart");
        for (name, c) in [
            ("reflex", REFLEX),
            ("ovs", OVS),
            ("threshold", THRESHOLD),
            ("block", BLOCK),
        ] {
            assert!(count(&buf, c) > 100, "{name} line missing");
        }
    }

    #[test]
    fn text_is_drawn_with_a_font() {
        let Ok(Some(_)) = load_font(None) else {
            eprintln!("no DejaVu font here; text rendering not tested");
            return;
        };
        let s = synthetic();
        let plain = render_rgb(&s, &Look::for_series(&s, false), 640, 360).unwrap();
        let text = render_rgb(&s, &Look::for_series(&s, true), 640, 360).unwrap();
        assert_ne!(plain, text);
    }

    #[test]
    fn an_unusable_font_is_an_error() {
        assert!(load_font(Some(Path::new("/nonexistent.ttf")))
            .unwrap_err()
            .contains("/nonexistent.ttf"));
        assert!(register(Path::new("/etc/hostname")).is_err());
    }

    #[test]
    fn sizes_parse_within_bounds() {
        assert_eq!(parse_size("1200x600"), Ok((1200, 600)));
        assert!(parse_size("12x6").is_err());
        assert!(parse_size("wide").is_err());
        assert!(parse_size("1200x").is_err());
    }

    #[test]
    fn an_empty_series_is_an_error_not_a_panic() {
        let look = Look::for_series(&Series::default(), false);
        assert!(render_rgb(&Series::default(), &look, 300, 200).is_err());
    }
}
