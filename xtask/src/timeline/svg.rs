//! The timeline drawn as an inline SVG (plotters): one row per replica, one bar per phase.

use anyhow::Result;
use plotters::{
    prelude::*,
    style::text_anchor::{HPos, Pos, VPos},
};

use super::{phases, Mark, Timeline};

/// The chart: one row per replica, coloured stretches, a dot where it turned healthy (hollow
/// when that time is an upper bound), its role in words, and a dashed line at "all healthy".
pub fn svg(timeline: &Timeline) -> Result<String> {
    let rows = timeline.rows.len().max(1);
    let end = timeline.end().max(0.5);
    // Room on the right for each row's role.
    let x_max = end * 1.28;
    let height = 90 + 30 * rows as u32;
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, height)).into_drawing_area();
        root.fill(&WHITE).map_err(chart_error)?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0f64..x_max, -0.5f64..(rows as f64 - 0.5))
            .map_err(chart_error)?;
        let names: Vec<String> = timeline.rows.iter().map(|r| r.label()).collect();
        // Row 0 at the top.
        let y_of = move |i: usize| (rows - 1 - i) as f64;
        let label_of = move |y: &f64| {
            let i = rows as f64 - 1.0 - y.round();
            if (y - y.round()).abs() < 1e-6 && i >= 0.0 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(rows * 2 + 1)
            .y_label_formatter(&label_of)
            .x_desc("seconds since `docker compose up`")
            .x_label_formatter(&|x| format!("{x:.1}"))
            .label_style(("sans-serif", 13))
            .draw()
            .map_err(chart_error)?;

        let bars = timeline.rows.iter().enumerate().flat_map(|(i, row)| {
            let y = y_of(i);
            phases(row).into_iter().map(move |(phase, from, to)| {
                Rectangle::new([(from, y - 0.3), (to, y + 0.3)], phase.color().filled())
            })
        });
        chart.draw_series(bars).map_err(chart_error)?;

        // A tick where the replica started listening: the api's own start-up is often a few
        // milliseconds, too short to see as a stretch.
        let ticks = timeline.rows.iter().enumerate().filter_map(|(i, row)| {
            let x = row.at(Mark::Ready)?;
            Some(PathElement::new(
                [(x, y_of(i) - 0.38), (x, y_of(i) + 0.38)],
                BLACK.stroke_width(2),
            ))
        });
        chart.draw_series(ticks).map_err(chart_error)?;

        // The upgrade scenario: a red cross where an old replica exited, so the overlap of
        // the two versions shows.
        let exits = timeline.rows.iter().enumerate().filter_map(|(i, row)| {
            Some(Cross::new((row.stopped?, y_of(i)), 6, RED.stroke_width(2)))
        });
        chart.draw_series(exits).map_err(chart_error)?;

        let dots = timeline.rows.iter().enumerate().filter_map(|(i, row)| {
            let style = if row.healthy_exact {
                BLACK.filled()
            } else {
                BLACK.stroke_width(2)
            };
            Some(Circle::new((row.at(Mark::Healthy)?, y_of(i)), 4, style))
        });
        chart.draw_series(dots).map_err(chart_error)?;

        let roles = timeline.rows.iter().enumerate().map(|(i, row)| {
            let x = row
                .marks
                .values()
                .copied()
                .chain(row.stopped)
                .fold(0.0, f64::max)
                + end * 0.02;
            Text::new(
                row.role(),
                (x, y_of(i)),
                TextStyle::from(("sans-serif", 12).into_font())
                    .pos(Pos::new(HPos::Left, VPos::Center)),
            )
        });
        chart.draw_series(roles).map_err(chart_error)?;

        if let Some(all) = timeline.slowest(Mark::Healthy) {
            let top = rows as f64 - 0.5;
            chart
                .draw_series(DashedLineSeries::new(
                    [(all, -0.5), (all, top)],
                    6,
                    4,
                    BLACK.stroke_width(1),
                ))
                .map_err(chart_error)?;
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("all healthy {all:.2} s"),
                    (all + end * 0.01, top - 0.05),
                    ("sans-serif", 12),
                )))
                .map_err(chart_error)?;
        }
        root.present().map_err(chart_error)?;
    }
    Ok(out)
}

fn chart_error<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the chart: {e:?}")
}

/// The text of every `<text>` element of an SVG, for tests of what a chart says.
#[cfg(test)]
pub fn svg_texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter_map(|t| {
            Some(
                t.split_once('>')?
                    .1
                    .split_once("</text>")?
                    .0
                    .trim()
                    .to_string(),
            )
        })
        .collect()
}
