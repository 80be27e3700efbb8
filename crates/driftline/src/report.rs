//! The backtest's self-contained HTML report: inline SVG charts of the metrics
//! over time with drift and retrain markers, one line per model × policy, and a
//! table of the overall metrics. No script and no network needed to open it.

use std::fmt::Write;

use driftline_ml::evaluate::RunResult;
use driftline_ml::lifecycle::LifecycleEvent;

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

/// A chart's plot area and where it sits.
struct Frame {
    width: f64,
    height: f64,
    left: f64,
    top: f64,
    plot_w: f64,
    plot_h: f64,
}

/// An open `<svg class="chart">` with its plot area, five ticks from `lo` to
/// `hi` on the y axis and the x axis named; the caller draws and closes it.
fn frame(f: &Frame, attributes: &str, (lo, hi): (f64, f64), x_label: &str) -> String {
    let Frame {
        width,
        height,
        left,
        top,
        plot_w,
        plot_h,
    } = *f;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg class="chart" {attributes} xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img"><rect x="{left}" y="{top}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>"##
    );
    for tick in 0..=4 {
        let v = lo + (hi - lo) * f64::from(tick) / 4.0;
        let y = top + plot_h * (1.0 - (v - lo) / (hi - lo));
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
        r#"<text x="{}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
        left + plot_w / 2.0,
        height - 8.0,
        escape(x_label)
    );
    svg
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
    let mut svg = frame(
        &Frame {
            width,
            height,
            left,
            top,
            plot_w,
            plot_h,
        },
        &format!(r#"data-metric="{metric}" aria-label="{title}""#),
        (lo, hi),
        &format!("events (0 to {samples})"),
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

/// The report of a declared model's replay: the served accuracy over time
/// beside the first version's, every decision marked where it was taken,
/// and the decisions with their reasons.
pub fn lifecycle_html(
    model: &str,
    data: &str,
    report: &driftline_ml::lifecycle::replay::ReplayReport,
) -> String {
    use LifecycleEvent as E;
    let (width, height, left, top, bottom) = (960.0, 320.0, 50.0, 24.0, 30.0);
    let plot_h = height - top - bottom;
    let plot_w = width - left - 20.0;
    let first = report
        .windowed
        .first()
        .map_or(0, |w| w.end.saturating_sub(1));
    let last = report.windowed.last().map_or(1, |w| w.end);
    let span = (last - first).max(1) as f64;
    let x_of = |i: usize| left + plot_w * (i.saturating_sub(first)) as f64 / span;
    let y_of = |v: f64| top + plot_h * (1.0 - v);
    let mut svg = frame(
        &Frame {
            width,
            height,
            left,
            top,
            plot_w,
            plot_h,
        },
        r#"aria-label="accuracy over time""#,
        (0.0, 1.0),
        &format!("rows ({first} to {last})"),
    );
    for (class, color, value) in [("first-version", "#999", 1), ("served", "#1f77b4", 0)] {
        let points: Vec<String> = report
            .windowed
            .iter()
            .map(|w| {
                let v = if value == 0 {
                    w.accuracy
                } else {
                    w.first_version_accuracy
                };
                format!("{:.1},{:.1}", x_of(w.end), y_of(v))
            })
            .collect();
        let _ = write!(
            svg,
            r#"<polyline class="{class}" fill="none" stroke="{color}" stroke-width="1.5" points="{}"/>"#,
            points.join(" ")
        );
    }
    for step in &report.decisions {
        let x = x_of(step.index);
        let what = escape(&describe(&step.event));
        let (class, mark) = match &step.event {
            E::DriftAlarm { .. } => (
                "drift",
                format!(
                    r##"<path d="M{x:.1},{top} l-4,-8 h8 z" fill="#d62728"><title>{what}</title></path>"##
                ),
            ),
            E::DataDrift { .. } => (
                "data-drift",
                format!(
                    r##"<path d="M{x:.1},{top} l-4,-8 h8 z" fill="#9467bd"><title>{what}</title></path>"##
                ),
            ),
            E::Retrain { .. } => (
                "retrain",
                format!(
                    r##"<line x1="{x:.1}" x2="{x:.1}" y1="{}" y2="{}" stroke="#333"><title>{what}</title></line>"##,
                    top + plot_h,
                    top + plot_h - 8.0
                ),
            ),
            E::TrialStarted { .. } => (
                "trial",
                format!(
                    r##"<circle cx="{x:.1}" cy="{}" r="3" fill="#17becf"><title>{what}</title></circle>"##,
                    top + plot_h - 12.0
                ),
            ),
            E::Promoted { .. } => (
                "promotion",
                format!(
                    r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#2ca02c" stroke-dasharray="4 3"><title>{what}</title></line>"##,
                    top + plot_h
                ),
            ),
            E::Rejected { .. } => (
                "rejection",
                format!(
                    r##"<text x="{x:.1}" y="{}" font-size="11" fill="#7f7f7f" text-anchor="middle">×<title>{what}</title></text>"##,
                    top + plot_h - 14.0
                ),
            ),
            E::RolledBack { .. } => (
                "rollback",
                format!(
                    r##"<line x1="{x:.1}" x2="{x:.1}" y1="{top}" y2="{}" stroke="#ff7f0e" stroke-width="2"><title>{what}</title></line>"##,
                    top + plot_h
                ),
            ),
        };
        let _ = write!(svg, r#"<g class="{class}">{mark}</g>"#);
    }
    svg.push_str("</svg>");
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>driftline backtest: {} over {}</title>\n<style>body{{font-family:sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f0f0f0}}td.name{{text-align:left}}</style></head><body>\n",
        escape(model),
        escape(data)
    );
    let _ = write!(
        out,
        "<h1>The lifecycle of {} replayed over {}</h1>\n<p>{} events ({}), accuracy <b>{:.4}</b>, the first version alone {:.4}; v{} serving at the end.</p>\n<p>{}</p>\n",
        escape(model),
        escape(data),
        report.events,
        escape(&report.learner),
        report.accuracy,
        report.first_version_accuracy,
        report.final_champion,
        escape(&report.counts_line())
    );
    out.push_str("<h2>Accuracy per window</h2>\n<p>Blue: what served; grey: the first version had it never been replaced. Red triangles: drift alarms; purple: data-drift alarms; ticks: retrains; dashed green: promotions; ×: rejections; orange: rollbacks.</p>\n");
    out.push_str(&svg);
    if !report.alarm_to_serving.is_empty() {
        out.push_str("\n<h2>From alarm to serving</h2>\n<table><tr><th>alarm at event</th><th>serving at event</th><th>events</th><th>simulated ms</th></tr>\n");
        for a in &report.alarm_to_serving {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.alarm_index,
                a.serving_index,
                a.events,
                a.ms.map_or("-".to_string(), |ms| ms.to_string())
            );
        }
        out.push_str("</table>\n");
    }
    out.push_str("\n<h2>Decisions</h2>\n<table><tr><th>event</th><th>simulated ms</th><th>decision</th></tr>\n");
    for step in &report.decisions {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td class=\"name\">{}</td></tr>",
            step.index,
            step.at_ms,
            escape(&describe(&step.event))
        );
    }
    out.push_str("</table>\n</body></html>\n");
    out
}

/// One line per event, in the words of the demo's log.
pub fn describe(event: &LifecycleEvent) -> String {
    match event {
        LifecycleEvent::DriftAlarm {
            label,
            detector,
            statistic,
            window,
            ..
        } => format!("drift alarm ({detector}) at label {label}: error rate {statistic:.3}, change {window} labels ago"),
        LifecycleEvent::DataDrift {
            version,
            feature,
            test,
            statistic,
            threshold,
            ..
        } => format!("data drift on {feature} of v{version}: {test} {statistic:.4} (threshold {threshold})"),
        LifecycleEvent::Retrain {
            version,
            examples,
            trigger,
        } => format!("retrain v{version} on {examples} examples ({trigger})"),
        LifecycleEvent::TrialStarted { version, mode } => format!("v{version} on trial: {mode}"),
        LifecycleEvent::Promoted {
            version,
            previous,
            accuracy,
            previous_accuracy,
            ..
        } => format!(
            "v{version} promoted over v{}: {accuracy:.4} vs {previous_accuracy:.4}",
            previous.unwrap_or(0)
        ),
        LifecycleEvent::Rejected { version, reason } => format!("v{version} rejected: {reason}"),
        LifecycleEvent::RolledBack { from, to, reason } => {
            format!("rolled back v{from} -> v{to}: {reason}")
        }
    }
}
