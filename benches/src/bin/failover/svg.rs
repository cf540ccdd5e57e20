//! Hand-written SVG timelines of one failover trial: which MAC answered
//! the observer's ARP requests, and which of the client's pings were
//! answered, around the fault.

use std::fmt::Write;
use std::time::{Duration, Instant};

/// One row of answers: a label and the stretches during which it answered.
#[derive(Debug, Clone)]
pub struct Row {
    /// E.g. `node-2 (aa:bb:..)`.
    pub label: String,
    /// Answered from..to.
    pub spans: Vec<(Instant, Instant)>,
}

/// Everything one picture shows.
#[derive(Debug, Clone)]
pub struct Timeline {
    /// The title line.
    pub title: String,
    /// The fault (time zero).
    pub t0: Instant,
    /// Start of the window.
    pub from: Instant,
    /// End of the window.
    pub to: Instant,
    /// One row per MAC.
    pub rows: Vec<Row>,
    /// The client's pings: send time and whether answered.
    pub pings: Vec<(Instant, bool)>,
    /// Vertical markers (time, label).
    pub markers: Vec<(Instant, String)>,
}

const WIDTH: f64 = 1000.0;
const LEFT: f64 = 190.0;
const RIGHT: f64 = 20.0;
const ROW_H: f64 = 26.0;
const TOP: f64 = 48.0;
const COLOURS: [&str; 5] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn nice_step(span: Duration) -> Duration {
    let ms = span.as_millis() as u64;
    let steps = [10u64, 20, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000];
    let step = steps
        .iter()
        .copied()
        .find(|s| ms / s <= 12)
        .unwrap_or(10_000);
    Duration::from_millis(step)
}

/// Render the timeline as a standalone SVG document.
pub fn render(t: &Timeline) -> String {
    let plot_w = WIDTH - LEFT - RIGHT;
    let span =
        t.to.saturating_duration_since(t.from)
            .max(Duration::from_millis(1));
    let x = |at: Instant| -> f64 {
        let off = if at >= t.from {
            (at - t.from).as_secs_f64()
        } else {
            -(t.from - at).as_secs_f64()
        };
        LEFT + (off / span.as_secs_f64()).clamp(0.0, 1.0) * plot_w
    };
    let rows = t.rows.len() + 1;
    let height = TOP + rows as f64 * ROW_H + 36.0 + 14.0 * t.markers.len() as f64;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        s,
        r#"<rect x="0" y="0" width="{WIDTH}" height="{height}" fill="white"/>"#
    );
    let _ = writeln!(
        s,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">{}</text>"#,
        esc(&t.title)
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="38" fill="#555">observer: who answered its ARP/NS request (every 10 ms); client: its echo requests to the VIP (green answered, red lost); t = 0 at the fault</text>"##
    );
    // Grid and time axis.
    let step = nice_step(span);
    let axis_y = TOP + rows as f64 * ROW_H + 8.0;
    let mut k: i64 =
        -((t.t0.saturating_duration_since(t.from)).as_millis() as i64 / step.as_millis() as i64);
    loop {
        let off_ms = k * step.as_millis() as i64;
        let at = if off_ms >= 0 {
            t.t0 + Duration::from_millis(off_ms as u64)
        } else {
            t.t0 - Duration::from_millis((-off_ms) as u64)
        };
        if at > t.to {
            break;
        }
        if at >= t.from {
            let xx = x(at);
            let _ = writeln!(
                s,
                r##"<line x1="{xx:.1}" y1="{TOP}" x2="{xx:.1}" y2="{axis_y}" stroke="#ddd"/>"##
            );
            let label = if step < Duration::from_secs(1) {
                format!("{off_ms} ms")
            } else {
                format!("{:.1} s", off_ms as f64 / 1000.0)
            };
            let _ = writeln!(
                s,
                r##"<text x="{xx:.1}" y="{:.1}" text-anchor="middle" fill="#333">{label}</text>"##,
                axis_y + 14.0
            );
        }
        k += 1;
    }
    // Rows of answers.
    for (r, row) in t.rows.iter().enumerate() {
        let y = TOP + r as f64 * ROW_H;
        let colour = COLOURS[r % COLOURS.len()];
        let _ = writeln!(
            s,
            r#"<text x="10" y="{:.1}">{}</text>"#,
            y + ROW_H * 0.65,
            esc(&row.label)
        );
        for &(a, b) in &row.spans {
            if b < t.from || a > t.to {
                continue;
            }
            let (x1, x2) = (x(a), x(b));
            let _ = writeln!(
                s,
                r##"<rect x="{x1:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{colour}"/>"##,
                y + 4.0,
                (x2 - x1).max(1.0),
                ROW_H - 8.0
            );
        }
    }
    // The client's pings.
    let y = TOP + t.rows.len() as f64 * ROW_H;
    let _ = writeln!(
        s,
        r#"<text x="10" y="{:.1}">client pings</text>"#,
        y + ROW_H * 0.65
    );
    for &(at, ok) in &t.pings {
        if at < t.from || at > t.to {
            continue;
        }
        let xx = x(at);
        let colour = if ok { "#2ca02c" } else { "#d62728" };
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{:.1}" stroke="{colour}" stroke-width="1"/>"##,
            y + 4.0,
            y + ROW_H - 4.0
        );
    }
    // Markers.
    for (i, (at, label)) in t.markers.iter().enumerate() {
        let xx = x(*at);
        let _ = writeln!(
            s,
            r##"<line x1="{xx:.1}" y1="{:.1}" x2="{xx:.1}" y2="{axis_y}" stroke="#000" stroke-dasharray="4 3"/>"##,
            TOP - 4.0
        );
        let _ = writeln!(
            s,
            r#"<text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            xx + 3.0,
            axis_y + 28.0 + 14.0 * i as f64,
            esc(label)
        );
    }
    s.push_str("</svg>\n");
    s
}
