//! The backtest's self-contained HTML report: inline SVG charts of the metrics
//! over time with drift and retrain markers, one line per model × policy, and a
//! table of the overall metrics. No script and no network needed to open it.

use std::fmt::Write;

use driftline_ml::evaluate::RunResult;

const COLORS: [&str; 12] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf", "#393b79", "#ad494a",
];

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn chart(title: &str, metric: &str, runs: &[RunResult], samples: usize) -> String {
    let (width, height, left, top, bottom) = (960.0, 320.0, 50.0, 20.0, 30.0);
    let plot_h = height - top - bottom;
    let plot_w = width - left - 20.0;
    let values: Vec<f64> = runs
        .iter()
        .flat_map(|r| {
            r.windowed
                .iter()
                .filter_map(|w| w.metrics.get(metric).copied())
        })
        .filter(|v| v.is_finite())
        .collect();
    let (lo, hi) = if metric == "log_loss" {
        (0.0, values.iter().copied().fold(0.0f64, f64::max).max(1e-9))
    } else {
        (0.0, 1.0)
    };
    let x_of = |i: usize| left + plot_w * i as f64 / samples.max(1) as f64;
    let y_of = |v: f64| top + plot_h * (1.0 - (v - lo) / (hi - lo));
    let mut svg = String::new();
    let _ = write!(
        svg,
        r#"<svg class="chart" data-metric="{metric}" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{title}">"#
    );
    let _ = write!(
        svg,
        r##"<rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>"##
    );
    for tick in 0..=4 {
        let v = lo + (hi - lo) * f64::from(tick) / 4.0;
        let y = y_of(v);
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" font-size="11" text-anchor="end">{v:.2}</text>"##,
            left + plot_w,
            left - 4.0,
            y + 4.0
        );
    }
    let _ = write!(
        svg,
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">events (0 to {samples})</text>"#,
        left + plot_w / 2.0,
        height - 8.0
    );
    for (n, run) in runs.iter().enumerate() {
        let color = COLORS[n % COLORS.len()];
        let points: Vec<String> = run
            .windowed
            .iter()
            .filter_map(|w| {
                w.metrics
                    .get(metric)
                    .filter(|v| v.is_finite())
                    .map(|v| format!("{:.1},{:.1}", x_of(w.end), y_of(*v)))
            })
            .collect();
        let label = escape(&format!("{} / {}", run.model, run.policy));
        let _ = write!(
            svg,
            r#"<polyline class="run" data-run="{label}" fill="none" stroke="{color}" stroke-width="1.5" points="{}"><title>{label}</title></polyline>"#,
            points.join(" ")
        );
        for d in &run.drifts {
            let x = x_of(*d);
            let _ = write!(
                svg,
                r#"<path class="drift" d="M{:.1},{top} l-4,-8 h8 z" fill="{color}"><title>{label}: drift at {d}</title></path>"#,
                x
            );
        }
        for r in &run.retrains {
            let x = x_of(*r);
            let _ = write!(
                svg,
                r#"<line class="retrain" x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="{color}" stroke-width="1"><title>{label}: retrain at {r}</title></line>"#,
                top + plot_h,
                top + plot_h - 8.0
            );
        }
    }
    svg.push_str("</svg>");
    format!("<h2>{}</h2>\n{svg}\n", escape(title))
}

pub fn html(file: &str, target: &str, samples: usize, runs: &[RunResult]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>driftline backtest: {}</title>\n<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f0f0f0}}td.name{{text-align:left}}.legend span{{display:inline-block;margin-right:1.2em}}.swatch{{display:inline-block;width:14px;height:4px;margin-right:4px;vertical-align:middle}}</style></head><body>\n",
        escape(file)
    );
    let _ = write!(out, "<h1>Backtest of {}</h1>\n<p>target <code>{}</code>, {samples} events, {} runs. Triangles mark detected drifts, ticks at the bottom mark retrains.</p>\n", escape(file), escape(target), runs.len());
    out.push_str("<p class=\"legend\">");
    for (n, run) in runs.iter().enumerate() {
        let _ = write!(
            out,
            "<span><i class=\"swatch\" style=\"background:{}\"></i>{} / {}</span>",
            COLORS[n % COLORS.len()],
            escape(&run.model),
            escape(&run.policy)
        );
    }
    out.push_str("</p>\n");
    out.push_str(&chart("Accuracy per window", "accuracy", runs, samples));
    out.push_str(&chart("Log loss per window", "log_loss", runs, samples));
    out.push_str("<h2>Overall</h2>\n<table><tr><th>model</th><th>policy</th><th>accuracy</th><th>balanced accuracy</th><th>F1 (macro)</th><th>log loss</th><th>drifts</th><th>retrains</th><th>events/s</th></tr>\n");
    for run in runs {
        let metric = |name: &str| {
            run.metrics
                .get(name)
                .map_or_else(|| "-".to_string(), |v| format!("{v:.4}"))
        };
        let _ = writeln!(
            out,
            "<tr><td class=\"name\">{}</td><td class=\"name\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td></tr>",
            escape(&run.model),
            escape(&run.policy),
            metric("accuracy"),
            metric("balanced_accuracy"),
            metric("f1_macro"),
            metric("log_loss"),
            run.drifts.len(),
            run.retrains.len(),
            run.samples_per_second
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}
