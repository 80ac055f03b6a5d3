//! The benchmark's charts (plotters, SVG only) and its report page.

use std::fmt::Write as _;

use anyhow::Result;
use plotters::prelude::*;

use super::figures::{table, Report, Run};
use crate::timeline::{escape, page_head};

const BLUE: RGBColor = RGBColor(0x4e, 0x79, 0xa7);
const ORANGE: RGBColor = RGBColor(0xf2, 0x8e, 0x2b);

/// One line of a chart: a name, a colour and one value per run (missing values are skipped).
struct Line<'a> {
    name: &'a str,
    color: RGBColor,
    value: fn(&Run) -> Option<f64>,
}

/// A line chart of figures against the replica count (runs in the order measured).
fn chart(runs: &[Run], y_desc: &str, lines: &[Line]) -> Result<String> {
    let values: Vec<f64> = lines
        .iter()
        .flat_map(|l| runs.iter().filter_map(l.value))
        .collect();
    // Headroom above the highest point keeps the legend (upper left) off the lines.
    let y_max = values.iter().copied().fold(0.0, f64::max).max(1e-3) * 1.45;
    let n = runs.len().max(1);
    let counts: Vec<u32> = runs.iter().map(|r| r.replicas).collect();
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (640, 360)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(16)
            .x_label_area_size(40)
            .y_label_area_size(64)
            .build_cartesian_2d(-0.4f64..(n as f64 - 0.6), 0f64..y_max)
            .map_err(chart_error)?;
        // The runs sit at 0, 1, 2, ... and are labelled with their replica counts.
        let x_label = |x: &f64| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                counts
                    .get(i as usize)
                    .map(|c| c.to_string())
                    .unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .x_labels(n * 2 + 1)
            .x_label_formatter(&x_label)
            .disable_x_mesh()
            .light_line_style(WHITE)
            .y_label_formatter(&|y| {
                if y_max >= 20.0 {
                    format!("{y:.0}")
                } else {
                    format!("{y:.1}")
                }
            })
            .x_desc("replicas (N)")
            .y_desc(y_desc)
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(chart_error)?;
        for line in lines {
            let points: Vec<(f64, f64)> = runs
                .iter()
                .enumerate()
                .filter_map(|(i, r)| Some((i as f64, (line.value)(r)?)))
                .collect();
            let color = line.color;
            chart
                .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
                .map_err(chart_error)?
                .label(line.name)
                .legend(move |(x, y)| {
                    PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(
                    points
                        .into_iter()
                        .map(|p| Circle::new(p, 4, color.filled())),
                )
                .map_err(chart_error)?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .background_style(WHITE.mix(0.9))
            .border_style(BLACK.mix(0.3))
            .label_font(("sans-serif", 13))
            .draw()
            .map_err(chart_error)?;
        root.present().map_err(chart_error)?;
    }
    Ok(out)
}

fn chart_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing a chart: {e:?}")
}

/// Seconds from `up` until every replica is healthy, fresh and existing database.
pub fn time_to_healthy(runs: &[Run]) -> Result<String> {
    chart(
        runs,
        "seconds from up to all healthy",
        &[
            Line {
                name: "fresh database",
                color: ORANGE,
                value: |r| r.fresh.time_to_all_healthy_s,
            },
            Line {
                name: "existing database",
                color: BLUE,
                value: |r| r.existing.time_to_all_healthy_s,
            },
        ],
    )
}

/// Requests per second over all replicas, reading and uploading.
pub fn throughput(runs: &[Run]) -> Result<String> {
    chart(
        runs,
        "requests per second (all replicas)",
        &[
            Line {
                name: "read a document",
                color: BLUE,
                value: |r| Some(r.read.requests_per_s),
            },
            Line {
                name: "upload a document",
                color: ORANGE,
                value: |r| Some(r.upload.requests_per_s),
            },
        ],
    )
}

/// The 99th percentile latency against N, reading and uploading.
pub fn p99(runs: &[Run]) -> Result<String> {
    chart(
        runs,
        "p99 latency, ms (all replicas)",
        &[
            Line {
                name: "read a document",
                color: BLUE,
                value: |r| Some(r.read.p99_ms),
            },
            Line {
                name: "upload a document",
                color: ORANGE,
                value: |r| Some(r.upload.p99_ms),
            },
        ],
    )
}

/// `index.html`: the charts inline, the tables, and links to each N's start-up timeline.
pub fn page(
    report: &Report,
    healthy_svg: &str,
    throughput_svg: &str,
    p99_svg: &str,
    timelines: &[(u32, String)],
) -> Result<String> {
    let mut html = page_head("cargo xtask bench");
    writeln!(
        html,
        "<h1>cargo xtask bench</h1>\n<p class=\"note\">{} — {} cores, Docker {}</p>",
        report.generated_at.format("%Y-%m-%d %H:%M UTC"),
        report.machine.cores,
        escape(&report.machine.docker_engine)
    )?;
    writeln!(
        html,
        "<h2>Time from <code>docker compose up</code> to all replicas healthy</h2>\n{healthy_svg}"
    )?;
    writeln!(html, "<h2>Throughput</h2>\n{throughput_svg}")?;
    writeln!(html, "<h2>p99 latency against N</h2>\n{p99_svg}")?;
    writeln!(
        html,
        "<h2>Figures</h2>\n<pre>{}</pre>",
        escape(&table(report))
    )?;
    html.push_str("<h2>Start-up timelines</h2>\n<ul>\n");
    for (n, file) in timelines {
        writeln!(html, "<li><a href=\"{}\">N = {n}</a></li>", escape(file))?;
    }
    html.push_str("</ul>\n</body>\n</html>\n");
    Ok(html)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::{
        figures::{ImageFacts, LoadSettings, Machine, StartupFigures},
        load::LoadResult,
    };

    fn run(replicas: u32, healthy: f64, rps: f64) -> Run {
        let startup = StartupFigures {
            time_to_all_healthy_s: Some(healthy),
            healthy_exact: true,
            ..Default::default()
        };
        let load = LoadResult {
            requests: 1,
            seconds: 1.0,
            requests_per_s: rps,
            p50_ms: 1.0,
            p99_ms: 2.0,
            max_ms: 3.0,
            socket_errors: 0,
            non_2xx: 0,
        };
        Run {
            replicas,
            idle_host_cpu_percent: Some(3.0),
            fresh: startup.clone(),
            existing: startup,
            read: load.clone(),
            read_server: Default::default(),
            upload: load,
            memory: vec![],
        }
    }

    #[test]
    fn the_charts_label_every_replica_count_and_the_page_links_every_timeline() {
        let runs = vec![
            run(1, 2.0, 900.0),
            run(4, 3.5, 1500.0),
            run(16, 9.0, 1400.0),
        ];
        let healthy = time_to_healthy(&runs).unwrap();
        let throughput = throughput(&runs).unwrap();
        let p99 = p99(&runs).unwrap();
        for svg in [&healthy, &throughput, &p99] {
            assert!(svg.starts_with("<svg"), "{}", &svg[..60]);
            let labels = crate::timeline::svg_texts(svg);
            for n in ["1", "4", "16"] {
                assert!(labels.iter().any(|l| l == n), "x label {n}: {labels:?}");
            }
        }
        assert!(crate::timeline::svg_texts(&healthy)
            .iter()
            .any(|l| l == "fresh database"));
        assert!(crate::timeline::svg_texts(&throughput)
            .iter()
            .any(|l| l == "upload a document"));
        let report = Report {
            generated_at: chrono::Utc::now(),
            machine: Machine {
                cores: 2,
                docker_engine: "20.10".into(),
            },
            api_image: ImageFacts {
                name: "api".into(),
                size_bytes: 1,
            },
            settings: vec![],
            baseline_host_cpu_percent: Some(1.0),
            load: LoadSettings {
                generator: "wrk".into(),
                seconds_per_measurement: 4,
                connections: 32,
                document_bytes: 4096,
            },
            runs,
        };
        let timelines = [
            (1, "timeline-n1.html".to_string()),
            (4, "timeline-n4.html".to_string()),
        ];
        let html = page(&report, &healthy, &throughput, &p99, &timelines).unwrap();
        assert_eq!(html.matches("<svg").count(), 3);
        assert!(
            html.contains("ratio to N=1"),
            "the scaling table is on the page"
        );
        assert!(html.contains("href=\"timeline-n4.html\""));
        assert!(!html.contains("<script") && !html.contains("<link"));
    }
}
