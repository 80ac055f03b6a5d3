//! The timeline's HTML page: every timeline's SVG and table, no script and no network.

use std::fmt::Write as _;

use anyhow::Result;

use super::{svg, Mark, Phase, Timeline};

/// A self-contained page (inline SVG and CSS, nothing fetched) with every timeline.
pub fn page(title: &str, intro: &str, timelines: &[Timeline]) -> Result<String> {
    let mut html = String::new();
    html.push_str(&page_head(title));
    writeln!(html, "<h1>{}</h1>\n<p>{}</p>", escape(title), escape(intro))?;
    html.push_str("<p class=\"legend\">");
    for phase in Phase::ALL {
        write!(
            html,
            "<span class=\"swatch\" style=\"background:{}\"></span>{} ",
            phase.css(),
            escape(phase.label())
        )?;
    }
    html.push_str("<span class=\"tick\"></span>listening <span class=\"dot\"></span>healthy (hollow: at or before); upgrade: a red cross where an old replica exited</p>\n");
    for timeline in timelines {
        writeln!(html, "<section>\n<h2>{}</h2>", escape(&timeline.title))?;
        writeln!(
            html,
            "<p class=\"note\">second 0 is {} (UTC)</p>",
            timeline.origin.format("%Y-%m-%d %H:%M:%S%.3f")
        )?;
        html.push_str(&svg(timeline)?);
        let versions = timeline.rows.iter().any(|r| r.version.is_some());
        html.push_str("\n<table>\n<tr><th>replica</th>");
        if versions {
            html.push_str("<th>version</th>");
        }
        for mark in Mark::ALL {
            write!(html, "<th>{}</th>", escape(mark.label()))?;
        }
        if versions {
            html.push_str("<th>exited</th>");
        }
        html.push_str("<th>schema</th></tr>\n");
        for row in &timeline.rows {
            write!(html, "<tr><th>{}</th>", escape(&row.replica))?;
            if versions {
                write!(
                    html,
                    "<td>{}</td>",
                    escape(row.version.as_deref().unwrap_or("–"))
                )?;
            }
            for mark in Mark::ALL {
                match row.at(mark) {
                    Some(t) if mark == Mark::Healthy && !row.healthy_exact => {
                        write!(html, "<td>≤ {t:.3}</td>")?
                    }
                    Some(t) => write!(html, "<td>{t:.3}</td>")?,
                    None => html.push_str("<td>–</td>"),
                }
            }
            if versions {
                match row.stopped {
                    Some(t) => write!(html, "<td>{t:.3}</td>")?,
                    None => html.push_str("<td>–</td>"),
                }
            }
            writeln!(html, "<td class=\"role\">{}</td></tr>", escape(&row.role()))?;
        }
        html.push_str("</table>\n</section>\n");
    }
    html.push_str("</body>\n</html>\n");
    Ok(html)
}

/// The head of every page this module and `bench` write: inline CSS only.
pub fn page_head(title: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{}</title>\n<style>\n{}\n</style>\n</head>\n<body>\n",
        escape(title),
        "body { font-family: sans-serif; margin: 24px; color: #222; max-width: 1000px; }\n\
         h2 { margin-top: 32px; font-size: 18px; }\n\
         table { border-collapse: collapse; font-size: 13px; margin-top: 8px; }\n\
         th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }\n\
         td.role { text-align: left; white-space: nowrap; }\n\
         .legend { font-size: 13px; line-height: 22px; }\n\
         .swatch { display: inline-block; width: 14px; height: 12px; margin: 0 4px 0 10px; vertical-align: middle; }\n\
         .tick { display: inline-block; width: 2px; height: 14px; background: #000; margin: 0 4px 0 10px; vertical-align: middle; }\n\
         .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; background: #000; margin: 0 4px 0 10px; }\n\
         .note { color: #666; font-size: 13px; }"
    )
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
