//! Line charts as inline SVG, drawn on the server: no chart library, no script (the console's
//! CSP forbids inline scripts and styles; colours come from `console.css` classes).
//!
//! Each series is a `<path>` (broken where a value is missing) with its values also in
//! `data-values`, and each point a `<circle>` whose `<title>` the browser shows on hover.
//! Every SVG element is closed explicitly (`<line …></line>`): inside `<svg>` the HTML parser
//! does not treat a bare `<line …>` as empty, and would nest what follows in it.

use maud::{Markup, PreEscaped, html};

/// Drawing area, in SVG user units (the SVG scales to the page's width).
const WIDTH: f64 = 800.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 56.0;
const RIGHT: f64 = 40.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;
/// At most this many x labels, evenly spaced.
const MAX_X_LABELS: usize = 8;
/// Horizontal grid lines (and y labels) above the zero line.
const Y_TICKS: u32 = 4;

/// One line of a chart.
#[derive(Debug, Clone)]
pub struct Series<'a> {
    /// The legend's name (also `data-series`).
    pub name: &'a str,
    /// CSS class giving its colour.
    pub class: &'a str,
    /// Drawn dashed (a second statistic of the same quantity).
    pub dashed: bool,
    /// One value per x position; `None` leaves a gap.
    pub values: Vec<Option<i64>>,
}

/// The smallest "round" number (1, 2 or 5 × 10^k) at least `v` (at least 1).
pub fn nice_ceiling(v: i64) -> i64 {
    let v = v.max(1);
    let mut unit = 1i64;
    loop {
        for m in [1, 2, 5] {
            if unit.saturating_mul(m) >= v {
                return unit.saturating_mul(m);
            }
        }
        unit = unit.saturating_mul(10);
    }
}

/// A chart of `series` over the x positions labelled `x_labels`, values in `unit` (shown on
/// the y axis). `title` labels the SVG for screen readers.
pub fn line_chart(title: &str, x_labels: &[String], series: &[Series<'_>], unit: &str) -> Markup {
    let n = x_labels.len();
    let max = series
        .iter()
        .flat_map(|s| s.values.iter().flatten())
        .copied()
        .max()
        .unwrap_or(0);
    let top = nice_ceiling(max);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let x = |i: usize| {
        if n <= 1 {
            LEFT + plot_w / 2.0
        } else {
            LEFT + plot_w * i as f64 / (n - 1) as f64
        }
    };
    let y = |v: i64| TOP + plot_h * (1.0 - v as f64 / top as f64);
    let label_every = n.div_ceil(MAX_X_LABELS).max(1);
    let view_box = format!("0 0 {WIDTH} {HEIGHT}");
    html! {
        svg.chart viewBox=(view_box) role="img" aria-label=(title)
            xmlns="http://www.w3.org/2000/svg" preserveAspectRatio="xMidYMid meet" {
            title { (title) }
            g.grid {
                @for tick in 0..=Y_TICKS {
                    @let v = top * i64::from(tick) / i64::from(Y_TICKS);
                    line x1=(LEFT) x2=(WIDTH - RIGHT) y1=(fmt(y(v))) y2=(fmt(y(v))) {}
                    text.y-label x=(LEFT - 6.0) y=(fmt(y(v) + 4.0)) text-anchor="end" {
                        (v) " " (unit)
                    }
                }
            }
            g.x-labels {
                @for (i, label) in x_labels.iter().enumerate() {
                    @if i % label_every == 0 || i + 1 == n {
                        text x=(fmt(x(i))) y=(HEIGHT - BOTTOM + 18.0) text-anchor="middle" {
                            (label)
                        }
                    }
                }
            }
            @for s in series {
                g class={"series " (s.class)} data-series=(s.name) {
                    path d=(path_data(&s.values, &x, &y)) fill="none"
                        class=[s.dashed.then_some("dashed")]
                        data-values=(values_attr(&s.values)) {}
                    @for (i, v) in s.values.iter().enumerate() {
                        @if let Some(v) = v {
                            circle cx=(fmt(x(i))) cy=(fmt(y(*v))) r="3" {
                                title { (x_labels.get(i).map_or("", String::as_str)) ": "
                                    (s.name) " " (v) " " (unit) }
                            }
                        }
                    }
                }
            }
        }
        ul.chart-legend {
            @for s in series {
                li class=(s.class) {
                    span class=(if s.dashed { "swatch dashed" } else { "swatch" }) {}
                    (s.name)
                }
            }
        }
    }
}

/// One decimal at most: short attributes.
fn fmt(v: f64) -> PreEscaped<String> {
    PreEscaped(format!("{v:.1}"))
}

/// `M x y L x y …`, starting a new subpath after each gap.
fn path_data(values: &[Option<i64>], x: &impl Fn(usize) -> f64, y: &impl Fn(i64) -> f64) -> String {
    let mut d = String::new();
    let mut pen_down = false;
    for (i, v) in values.iter().enumerate() {
        match v {
            Some(v) => {
                let cmd = if pen_down { 'L' } else { 'M' };
                d.push_str(&format!("{cmd}{:.1} {:.1} ", x(i), y(*v)));
                pen_down = true;
            }
            None => pen_down = false,
        }
    }
    d.trim_end().to_owned()
}

/// The values as `12,,40` (empty where missing).
fn values_attr(values: &[Option<i64>]) -> String {
    values
        .iter()
        .map(|v| v.map(|v| v.to_string()).unwrap_or_default())
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_axis_tops() {
        assert_eq!(nice_ceiling(0), 1);
        assert_eq!(nice_ceiling(7), 10);
        assert_eq!(nice_ceiling(130), 200);
        assert_eq!(nice_ceiling(480), 500);
        assert_eq!(nice_ceiling(501), 1000);
    }

    #[test]
    fn a_gap_starts_a_new_subpath_and_values_are_kept() {
        let labels: Vec<String> = ["a", "b", "c", "d"].map(String::from).to_vec();
        let svg = line_chart(
            "t",
            &labels,
            &[Series {
                name: "p50",
                class: "seg-total",
                dashed: false,
                values: vec![Some(100), None, Some(50), Some(200)],
            }],
            "ms",
        )
        .into_string();
        assert!(svg.contains(r#"data-values="100,,50,200""#), "{svg}");
        assert_eq!(svg.matches("<circle").count(), 3);
        // Two subpaths: one point, then two joined.
        let d = svg
            .split(" d=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("");
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(d.matches('L').count(), 1, "{d}");
        assert!(svg.contains("200 ms"), "y axis top: {svg}");
        assert!(!svg.contains("style="), "no inline style (CSP)");
    }
}
