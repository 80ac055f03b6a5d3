//! Scenario 10, schemathesis: bad input that nobody here wrote. The pinned schemathesis
//! (host/schemathesis.rs) reads one running replica's GET /openapi.json and sends what it
//! generates from it; every answer must follow the document and none may be a 5xx.

use std::time::Duration;

use anyhow::{Context, Result};
use xshell::cmd;

use super::Verdict;
use crate::{host::schemathesis, stack::Stack, ui};

/// What every answer is checked for: no 5xx, and status, content type and body as documented.
const CHECKS: &str =
    "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance";
/// Examples per operation and phase, and the whole run's time budget: a bounded run.
const MAX_EXAMPLES: u32 = 20;
pub const MAX_TIME: Duration = Duration::from_secs(60);

pub fn run(stack: &Stack) -> Result<Verdict> {
    let st = schemathesis::ensure(stack.sh, &stack.project.target_dir)?;
    let (number, addr) = stack
        .ports()?
        .into_iter()
        .next()
        .context("no replica publishes its port")?;
    let url = format!("http://{addr}/openapi.json");
    let report = stack
        .project
        .target_dir
        .join("resilience-report")
        .join("schemathesis");
    ui::note(&format!(
        "schemathesis {} against api-{number} ({url}), at most {} s",
        schemathesis::VERSION,
        MAX_TIME.as_secs()
    ));
    // schemathesis keeps its example database in its working directory: the report's, not
    // the repository's.
    std::fs::create_dir_all(&report)?;
    let _cwd = stack.sh.push_dir(&report);
    let max_examples = MAX_EXAMPLES.to_string();
    let max_time = MAX_TIME.as_secs().to_string();
    let out = cmd!(
        stack.sh,
        "{st} --no-color run {url} --checks {CHECKS} --max-examples {max_examples} --max-time {max_time} --request-timeout 10 --workers 1 --seed 1 --report junit --report-dir {report}"
    )
    .quiet()
    .ignore_status()
    .output()
    .context("running schemathesis")?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let _ = std::fs::write(report.join("output.txt"), &text);
    Ok(judge(out.status.success(), &text))
}

/// The `N generated, N passed[, N failed…]` line under `Test cases:` in the summary.
pub fn test_cases(text: &str) -> Option<Vec<(u64, String)>> {
    let mut lines = text.lines().skip_while(|l| l.trim() != "Test cases:");
    lines.next()?;
    let line = lines.next()?.trim();
    let counts: Vec<(u64, String)> = line
        .split(',')
        .filter_map(|part| {
            let mut words = part.split_whitespace();
            let n = words.next()?.parse().ok()?;
            Some((n, words.collect::<Vec<_>>().join(" ")))
        })
        .collect();
    (!counts.is_empty()).then_some(counts)
}

pub fn judge(exit_ok: bool, text: &str) -> Verdict {
    let mut v = Verdict::default();
    let counts = test_cases(text);
    let count = |what: &str| {
        counts
            .iter()
            .flatten()
            .find(|(_, w)| w == what)
            .map(|(n, _)| *n)
    };
    let generated = count("generated").unwrap_or(0);
    let passed = count("passed").unwrap_or(0);
    if exit_ok && generated > 0 && generated == passed {
        v.figure(format!(
            "schemathesis {} sent {generated} generated requests; all {passed} answered per the OpenAPI document, 0 server errors (checks {CHECKS})",
            schemathesis::VERSION
        ));
    } else {
        let tail: Vec<&str> = text.lines().rev().take(40).collect();
        v.problem(format!(
            "schemathesis {}: exit {}, test cases {:?}; its output ends:\n{}",
            schemathesis::VERSION,
            if exit_ok { "0" } else { "non-zero" },
            counts.unwrap_or_default(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSED: &str = include_str!("../../testdata/schemathesis/summary-passed.txt");

    #[test]
    fn a_clean_run_reports_how_many_cases_it_sent() {
        assert_eq!(
            test_cases(PASSED).unwrap(),
            vec![(6661, "generated".into()), (6661, "passed".into())]
        );
        let v = judge(true, PASSED);
        assert!(v.passed(), "{:?}", v.problems);
        assert!(
            v.figures[0].contains("sent 6661 generated"),
            "{:?}",
            v.figures
        );
    }

    #[test]
    fn failures_a_bad_exit_or_no_cases_fail() {
        let failed = PASSED.replace(
            "6661 generated, 6661 passed",
            "6661 generated, 6659 passed, 2 failed",
        );
        let v = judge(false, &failed);
        assert!(
            v.problems[0].contains("(2, \"failed\")"),
            "{:?}",
            v.problems
        );
        assert!(!judge(false, PASSED).passed());
        assert!(!judge(true, "no summary at all").passed());
    }
}
