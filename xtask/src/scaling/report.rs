//! The scaling check's report: a table on stdout, the banner, and machine-readable files
//! (JSON, and JUnit XML through quick-junit) in the report directory.

use std::{collections::BTreeMap, path::Path, time::Duration};

use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, TestCase, TestCaseStatus, TestSuite};
use serde_json::json;

use super::{Options, ScenarioResult};
use crate::{host::images::ImageSet, outcome, stack::DbState, ui};

/// The table's columns: scenario, check, name, result (the summary takes the rest).
const COLUMNS: &[usize] = &[18, 8, 26, 6];

/// Where a scenario's time went: Docker's (from `up` until every replica is healthy, faults
/// included) and the check's own (gathering the evidence and judging it: execs, log reads,
/// HTTP, SQL, the timeline), which should stay within `CHECK_BUDGET_S`.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize)]
pub struct Timing {
    pub docker_s: f64,
    pub check_s: f64,
}

/// The check's own time per scenario it aims to stay within (issue 15); reported, not judged:
/// it depends on the machine's load.
pub const CHECK_BUDGET_S: f64 = 0.5;

impl Timing {
    /// "Docker 6.2 s, the check's own 0.41 s (budget 0.5 s)".
    pub fn line(&self) -> String {
        format!(
            "Docker {:.1} s, the check's own {:.2} s ({} {CHECK_BUDGET_S} s)",
            self.docker_s,
            self.check_s,
            if self.check_s <= CHECK_BUDGET_S {
                "within"
            } else {
                "over"
            }
        )
    }
}

#[derive(Debug)]
pub struct Report {
    /// `compose` or `swarm`: what ran the stack.
    pub engine: &'static str,
    pub replicas: u32,
    pub max_startup: f64,
    pub fault: Option<String>,
    pub images: Vec<String>,
    pub scenarios: Vec<ScenarioResult>,
    /// The run stopped before its checks could finish (not a check's verdict).
    pub error: Option<String>,
    pub seconds: f64,
    /// The checkout that was checked (found from the current directory upwards).
    pub checkout: String,
    /// Variables of the user's shell that compose calls did not inherit (names only).
    pub ignored_env: Vec<String>,
    /// `--nodes`: the Swarm nodes made on this machine (0: the engine as it was).
    pub nodes: u32,
    /// `--shared-data`: the shared directory bound as the api's data volume.
    pub shared_data: Option<String>,
    /// Seconds to make the nodes (engines, swarm, images), with `--nodes`.
    pub cluster_s: Option<f64>,
}

impl Report {
    pub fn new(opts: &Options, images: &ImageSet) -> Report {
        Report {
            engine: opts.engine.name(),
            replicas: opts.replicas,
            max_startup: opts.max_startup,
            fault: opts.fault.map(|f| f.name().to_string()),
            images: images.origin.clone(),
            scenarios: Vec::new(),
            error: None,
            seconds: 0.0,
            checkout: String::new(),
            ignored_env: crate::docker::ignored_user_env(),
            nodes: opts.nodes,
            shared_data: opts.shared_data.clone(),
            cluster_s: None,
        }
    }

    pub fn passed(&self) -> bool {
        self.error.is_none()
            && !self.scenarios.is_empty()
            && self
                .scenarios
                .iter()
                .all(|s| s.checks.iter().all(|c| c.passed))
    }

    pub fn failed_checks(&self) -> Vec<String> {
        let mut failed: Vec<String> = self
            .scenarios
            .iter()
            .flat_map(|s| {
                s.checks
                    .iter()
                    .filter(|c| !c.passed)
                    .map(move |c| format!("{} {} ({})", c.id, c.name, s.scenario.name()))
            })
            .collect();
        if let Some(e) = &self.error {
            failed.push(format!("run error: {e}"));
        }
        failed
    }

    /// The check with this id in this scenario (for test-faults' assertions).
    pub fn check(&self, scenario: DbState, id: &str) -> Option<&super::Check> {
        self.scenarios
            .iter()
            .find(|s| s.scenario == scenario)?
            .checks
            .iter()
            .find(|c| c.id == id)
    }

    pub fn print_table(&self) {
        println!();
        println!(
            "{}",
            outcome::row(COLUMNS, &["scenario", "check", "name", "result", "summary"])
        );
        println!("{}", "-".repeat(100));
        for s in &self.scenarios {
            for c in &s.checks {
                let result = outcome::pass_fail(c.passed);
                println!(
                    "{}",
                    outcome::row(
                        COLUMNS,
                        &[s.scenario.name(), c.id, c.name, &result, &c.summary]
                    )
                );
                if !c.passed {
                    for line in &c.evidence {
                        let line = format!("  {line}");
                        println!("{}", outcome::row(COLUMNS, &["", "", "", "", &line]));
                    }
                }
            }
        }
        if let Some(e) = &self.error {
            println!("run error: {e}");
        }
        println!("{}", "-".repeat(100));
        for s in &self.scenarios {
            match &s.timing {
                Some(t) => println!("{}: {}", s.scenario.name(), t.line()),
                // Its client runs through the whole roll: Docker's time and the check's interleave.
                None => println!(
                    "{}: Docker's time and the check's interleave (a client runs through the roll)",
                    s.scenario.name()
                ),
            }
        }
        println!(
            "{} replicas on {}{}{}, {:.1} s in all",
            self.replicas,
            self.engine,
            match (self.nodes, self.cluster_s) {
                (0, _) => String::new(),
                (k, Some(s)) => format!(" over {k} nodes (made in {s:.1} s)"),
                (k, None) => format!(" over {k} nodes"),
            },
            self.fault
                .as_deref()
                .map(|f| format!(", fault {f}"))
                .unwrap_or_default(),
            self.seconds
        );
        println!("checked: {}", self.checkout);
        if !self.ignored_env.is_empty() {
            println!(
                "ignored from your shell (not passed to compose): {}",
                self.ignored_env.join(", ")
            );
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "passed": self.passed(),
            "engine": self.engine,
            "replicas": self.replicas,
            "max_startup_s": self.max_startup,
            "fault": self.fault,
            "images": self.images,
            "seconds": self.seconds,
            "checkout": self.checkout,
            "ignored_env": self.ignored_env,
            "nodes": self.nodes,
            "shared_data": self.shared_data,
            "cluster_s": self.cluster_s,
            "error": self.error,
            "scenarios": self.scenarios.iter().map(|s| json!({
                "scenario": s.scenario,
                "docker_s": s.timing.map(|t| t.docker_s),
                "check_s": s.timing.map(|t| t.check_s),
                "checks": s.checks,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn to_junit(&self) -> Result<String> {
        let mut junit = quick_junit::Report::new(format!("scaling-check ({})", self.engine));
        for s in &self.scenarios {
            let mut suite = TestSuite::new(format!(
                "test-scaling on {}: {}",
                self.engine,
                s.scenario.name()
            ));
            for c in &s.checks {
                let status = if c.passed {
                    TestCaseStatus::success()
                } else {
                    let mut status = TestCaseStatus::non_success(NonSuccessKind::Failure);
                    status.set_message(c.summary.clone());
                    status.set_description(c.evidence.join("\n"));
                    status
                };
                let mut case = TestCase::new(format!("{} {}", c.id, c.name), status);
                case.set_classname(format!("scaling.{}.{}", self.engine, s.scenario.slug()));
                case.set_system_out(format!("{}\n{}", c.summary, c.evidence.join("\n")));
                suite.add_test_case(case);
            }
            junit.add_test_suite(suite);
        }
        if let Some(e) = &self.error {
            let mut suite = TestSuite::new(format!("test-scaling on {}: run", self.engine));
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_message(e.clone());
            suite.add_test_case(TestCase::new("run", status));
            junit.add_test_suite(suite);
        }
        junit.set_time(Duration::from_secs_f64(self.seconds));
        junit.to_string().context("serializing the JUnit report")
    }

    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::write(
            dir.join("report.json"),
            serde_json::to_string_pretty(&self.to_json())?,
        )?;
        std::fs::write(dir.join("junit.xml"), self.to_junit()?)?;
        Ok(())
    }
}

/// `--repeat K`: how many runs passed, and each figure's spread over the runs.
#[derive(Debug, PartialEq)]
pub struct Repeated {
    pub runs: usize,
    pub passed: usize,
    /// "scenario check figure" → (min, median, max, how many runs had it).
    pub figures: BTreeMap<String, (f64, f64, f64, usize)>,
    /// Each failed run's failed checks.
    pub failures: Vec<String>,
}

impl Repeated {
    pub fn of(reports: &[Report]) -> Repeated {
        let mut values: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        let mut failures = Vec::new();
        for (i, r) in reports.iter().enumerate() {
            if !r.passed() {
                failures.push(format!("run {}: {}", i + 1, r.failed_checks().join("; ")));
            }
            values
                .entry("run seconds".into())
                .or_default()
                .push(r.seconds);
            for s in &r.scenarios {
                for c in &s.checks {
                    for (name, v) in &c.figures {
                        values
                            .entry(format!("{} {} {name}", s.scenario.slug(), c.id))
                            .or_default()
                            .push(*v);
                    }
                }
            }
        }
        let figures = values
            .into_iter()
            .map(|(k, mut v)| {
                v.sort_by(f64::total_cmp);
                let median = if v.len() % 2 == 1 {
                    v[v.len() / 2]
                } else {
                    (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
                };
                (k, (v[0], median, v[v.len() - 1], v.len()))
            })
            .collect();
        Repeated {
            runs: reports.len(),
            passed: reports.iter().filter(|r| r.passed()).count(),
            figures,
            failures,
        }
    }

    pub fn print(&self) {
        println!("\n{} of {} runs passed", self.passed, self.runs);
        for f in &self.failures {
            println!("  {f}");
        }
        const COLS: &[usize] = &[44, 10, 10, 10];
        println!(
            "{}",
            outcome::row(COLS, &["figure", "min", "median", "max", "runs"])
        );
        for (name, (min, median, max, n)) in &self.figures {
            println!(
                "{}",
                outcome::row(
                    COLS,
                    &[
                        name,
                        &format!("{min:.3}"),
                        &format!("{median:.3}"),
                        &format!("{max:.3}"),
                        &n.to_string()
                    ]
                )
            );
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "runs": self.runs,
            "passed": self.passed,
            "failures": self.failures,
            "figures": self.figures.iter().map(|(k, (min, median, max, n))| json!({
                "figure": k, "min": min, "median": median, "max": max, "runs": n,
            })).collect::<Vec<_>>(),
        })
    }
}

pub fn banner(passed: bool) -> String {
    let line = "=".repeat(40);
    let (text, code) = if passed {
        ("SCALING TEST PASSED", "1;32")
    } else {
        ("SCALING TEST FAILED", "1;31")
    };
    format!("{line}\n{}\n{line}", ui::paint_stdout(text, code))
}
