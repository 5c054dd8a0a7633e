//! `switchboard-loadgen chart`: an SVG of p99 engine overhead, p99 frame lateness, engine CPU and
//! memory per call against the number of concurrent calls, drawn by hand (axes, polylines, the
//! budget as a dashed line) from a set of reports. Every point carries its value; a panel with a
//! budget is scaled to at most [`OFF_SCALE_BUDGETS`] budgets so the region that matters stays
//! readable, and a point beyond it is drawn on the top edge with an arrow and its value.

use std::fmt::Write as _;

use crate::report::Report;

/// One panel: a metric against N.
struct Panel {
    title: &'static str,
    unit: &'static str,
    budget: Option<f64>,
    pick: fn(&Report) -> Option<f64>,
}

const PANELS: [Panel; 4] = [
    Panel {
        title: "p99 engine overhead",
        unit: "ms",
        budget: Some(10.0),
        pick: |r| r.engine_overhead_ms.p99,
    },
    Panel {
        title: "p99 frame lateness",
        unit: "ms",
        budget: Some(20.0),
        pick: |r| r.frame_lateness_ms.p99,
    },
    Panel {
        title: "engine CPU (avg)",
        unit: "% of one core",
        budget: None,
        pick: |r| r.engine.cpu_percent_avg,
    },
    Panel {
        title: "engine RSS per call",
        unit: "KiB",
        budget: Some(256.0),
        pick: |r| r.engine.rss_per_call_kb,
    },
];

/// A budgeted panel's y axis ends at most at this many budgets.
pub const OFF_SCALE_BUDGETS: f64 = 5.0;

const W: f64 = 960.0;
const H: f64 = 640.0;
const PW: f64 = 400.0;
const PH: f64 = 240.0;

/// A "nice" upper bound ≥ `v` (1, 2, 5 × 10^k).
pub fn nice_ceiling(v: f64) -> f64 {
    if !(v.is_finite() && v > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(v.log10().floor());
    for m in [1.0, 2.0, 5.0, 10.0] {
        if m * mag >= v {
            return m * mag;
        }
    }
    10.0 * mag
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The SVG for `reports` (N = `calls.started` of each; sorted by N).
pub fn render(reports: &[Report]) -> String {
    let mut rs: Vec<&Report> = reports.iter().collect();
    rs.sort_by_key(|r| r.calls.started);
    let max_n = rs.iter().map(|r| r.calls.started).max().unwrap_or(1).max(1) as f64;
    let x_max = nice_ceiling(max_n);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = write!(s, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = write!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="16">switchboard-loadgen: engine against concurrent calls (N)</text>"#,
        W / 2.0
    );
    for (k, p) in PANELS.iter().enumerate() {
        let ox = 70.0 + (k % 2) as f64 * (PW + 60.0);
        let oy = 50.0 + (k / 2) as f64 * (PH + 60.0);
        let pts: Vec<(f64, f64)> = rs
            .iter()
            .filter_map(|r| (p.pick)(r).map(|v| (r.calls.started as f64, v)))
            .collect();
        let data_max = pts.iter().map(|&(_, v)| v).fold(0.0, f64::max);
        let y_max = match p.budget {
            Some(b) => nice_ceiling(data_max.min(b * OFF_SCALE_BUDGETS).max(b * 1.1)),
            None => nice_ceiling(data_max),
        };
        let sx = |n: f64| ox + n / x_max * PW;
        let sy = |v: f64| oy + PH - (v / y_max).clamp(0.0, 1.0) * PH;
        let _ = write!(
            s,
            r#"<text x="{ox}" y="{}" font-size="13">{} ({})</text>"#,
            oy - 8.0,
            esc(p.title),
            esc(p.unit)
        );
        let _ = write!(
            s,
            r##"<rect x="{ox}" y="{oy}" width="{PW}" height="{PH}" fill="none" stroke="#444"/>"##
        );
        for i in 0..=4 {
            let f = f64::from(i) / 4.0;
            let y = oy + PH - f * PH;
            let x = ox + f * PW;
            let _ = write!(
                s,
                r##"<line x1="{ox}" y1="{y}" x2="{}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" text-anchor="end">{}</text>"##,
                ox + PW,
                ox - 6.0,
                y + 4.0,
                fmt_tick(f * y_max)
            );
            let _ = write!(
                s,
                r#"<text x="{x}" y="{}" text-anchor="middle">{}</text>"#,
                oy + PH + 16.0,
                fmt_tick(f * x_max)
            );
        }
        if let Some(b) = p.budget {
            let y = sy(b);
            let _ = write!(
                s,
                r##"<line x1="{ox}" y1="{y}" x2="{}" y2="{y}" stroke="#c33" stroke-dasharray="6 4"/><text x="{}" y="{}" text-anchor="end" fill="#c33">budget {}</text>"##,
                ox + PW,
                ox + PW - 4.0,
                y - 4.0,
                fmt_tick(b)
            );
        }
        if !pts.is_empty() {
            let line: Vec<String> = pts
                .iter()
                .map(|&(n, v)| format!("{:.1},{:.1}", sx(n), sy(v)))
                .collect();
            let _ = write!(
                s,
                r##"<polyline points="{}" fill="none" stroke="#1f5fbf" stroke-width="2"/>"##,
                line.join(" ")
            );
            for &(n, v) in &pts {
                let _ = write!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#1f5fbf"><title>N={n}: {v:.2}</title></circle>"##,
                    sx(n),
                    sy(v)
                );
                let (label, y) = if v > y_max {
                    (format!("↑ {}", fmt_value(v)), oy + 14.0)
                } else {
                    (fmt_value(v), sy(v) - 8.0)
                };
                let _ = write!(
                    s,
                    r##"<text x="{:.1}" y="{y:.1}" text-anchor="middle" font-size="10" fill="#1f5fbf">{}</text>"##,
                    sx(n),
                    esc(&label)
                );
            }
        } else {
            let _ = write!(
                s,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">not measured</text>"##,
                ox + PW / 2.0,
                oy + PH / 2.0
            );
        }
        let _ = write!(
            s,
            r#"<text x="{}" y="{}" text-anchor="middle">concurrent calls N</text>"#,
            ox + PW / 2.0,
            oy + PH + 32.0
        );
    }
    s.push_str("</svg>\n");
    s
}

/// A point's label: one decimal below 100, whole numbers above.
fn fmt_value(v: f64) -> String {
    if v.abs() < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn fmt_tick(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{}", v.round() as i64)
    } else {
        format!("{v:.1}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nice_ceilings() {
        assert_eq!(nice_ceiling(0.0), 1.0);
        assert_eq!(nice_ceiling(7.0), 10.0);
        assert_eq!(nice_ceiling(11.0), 20.0);
        assert_eq!(nice_ceiling(256.0 * 1.1), 500.0);
        assert_eq!(nice_ceiling(1000.0), 1000.0);
    }

    #[test]
    fn svg_has_a_line_per_measured_panel() {
        let mut a = Report::default();
        a.calls.started = 1;
        a.engine_overhead_ms.p99 = Some(2.0);
        a.frame_lateness_ms.p99 = Some(0.0);
        let mut b = a.clone();
        b.calls.started = 500;
        b.engine_overhead_ms.p99 = Some(8.0);
        let svg = render(&[b, a]);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert_eq!(svg.matches("not measured").count(), 2);
        assert!(svg.contains("N=500: 8.00"));
        assert!(svg.contains(">8.0</text>"));
    }

    #[test]
    fn points_far_over_budget_sit_on_the_top_edge_with_their_value() {
        let mut a = Report::default();
        a.calls.started = 500;
        a.engine_overhead_ms.p99 = Some(7.9);
        let mut b = a.clone();
        b.calls.started = 1000;
        b.engine_overhead_ms.p99 = Some(882.3);
        let svg = render(&[a, b]);
        // Axis ends at 5 budgets (50 ms), not at 1000 ms: the 7.9 ms point stays readable.
        assert!(svg.contains(">50</text>"));
        assert!(svg.contains("↑ 882"));
    }
}
