//! A latency-percentile plot written by hand as SVG (no plotting crate): one line per server,
//! x = percentile on a "nines" scale (90, 99, 99.9, ...), y = latency on a log scale.

use std::fmt::Write as _;

/// One line of the plot.
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// Stroke colour (any SVG colour).
    pub color: String,
    /// `(percentile 0–100, latency in microseconds)` points, in increasing percentile.
    pub points: Vec<(f64, f64)>,
}

/// Plot width, in pixels.
const WIDTH: f64 = 760.0;
/// Plot height, in pixels.
const HEIGHT: f64 = 440.0;
/// Margins: left, right, top, bottom.
const MARGIN: (f64, f64, f64, f64) = (70.0, 20.0, 40.0, 50.0);
/// Rightmost x: 99.9999 % (six nines); 100 % is drawn there too.
const MAX_NINES: f64 = 6.0;

/// Renders the plot.
pub fn percentile_plot(title: &str, series: &[Series]) -> String {
    let (ml, mr, mt, mb) = MARGIN;
    let pw = WIDTH - ml - mr;
    let ph = HEIGHT - mt - mb;
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.1))
        .filter(|v| *v > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(0.0, f64::max);
    let (lo_exp, hi_exp) = if all.is_empty() {
        (0.0, 3.0)
    } else {
        let lo_e = lo.log10().floor();
        let hi_e = hi.log10().ceil().max(lo_e + 1.0);
        (lo_e, hi_e)
    };
    let x_of = |pct: f64| {
        let nines = if pct >= 100.0 {
            MAX_NINES
        } else {
            (-(1.0 - pct / 100.0).log10()).clamp(0.0, MAX_NINES)
        };
        ml + pw * nines / MAX_NINES
    };
    let y_of = |us: f64| {
        let v = us.max(10f64.powf(lo_exp)).log10();
        mt + ph * (1.0 - (v - lo_exp) / (hi_exp - lo_exp))
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect width="100%" height="100%" fill="white"/><text x="{}" y="22" font-size="15" text-anchor="middle">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    // Grid: decades on y, nines on x.
    let mut e = lo_exp;
    while e <= hi_exp + 1e-9 {
        let y = y_of(10f64.powf(e));
        let _ = writeln!(
            s,
            r##"<line x1="{ml}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ddd"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            ml + pw,
            ml - 6.0,
            y + 4.0,
            crate::report::fmt_us(10f64.powf(e))
        );
        e += 1.0;
    }
    for (i, label) in ["0%", "90%", "99%", "99.9%", "99.99%", "99.999%", "99.9999%"]
        .iter()
        .enumerate()
    {
        let x = ml + pw * i as f64 / MAX_NINES;
        let _ = writeln!(
            s,
            r##"<line x1="{x:.1}" y1="{mt}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            mt + ph,
            mt + ph + 16.0
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text><text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle">latency (log scale)</text>"##,
        ml + pw / 2.0,
        HEIGHT - 10.0,
        mt + ph / 2.0
    );
    for (i, line) in series.iter().enumerate() {
        let pts: Vec<String> = line
            .points
            .iter()
            .map(|&(p, us)| format!("{:.1},{:.1}", x_of(p), y_of(us)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            escape(&line.color),
            pts.join(" ")
        );
        let ly = mt + 14.0 + 16.0 * i as f64;
        let _ = writeln!(
            s,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            ml + 10.0,
            ml + 30.0,
            escape(&line.color),
            ml + 36.0,
            ly + 4.0,
            escape(&line.name)
        );
    }
    s.push_str("</svg>\n");
    s
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_lines_and_escapes() {
        let svg = percentile_plot(
            "a <b>",
            &[Series {
                name: "engine".into(),
                color: "#d62728".into(),
                points: vec![(50.0, 20.0), (99.0, 100.0), (100.0, 5000.0)],
            }],
        );
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("a &lt;b&gt;"));
        assert!(svg.trim_end().ends_with("</svg>"));
        // An empty plot still renders.
        assert!(percentile_plot("empty", &[]).contains("</svg>"));
    }
}
