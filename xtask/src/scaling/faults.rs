//! `cargo xtask test-faults`: runs the real scaling check with each real fault injected and
//! asserts that the check catches it: verdict FAILED, the expected check failed with its
//! evidence, the checks the fault does not touch report what really happened, and nothing
//! of the project is left behind.

use std::time::Instant;

use anyhow::{bail, Result};
use xshell::Shell;

use super::{report::Report, Fault, Options};
use crate::{
    docker::Docker,
    host::dbserver::DbChoice,
    outcome::{self, CannotRun, Failed},
    scaling,
    stack::{swarm::cluster, EngineKind},
    ui, Project,
};

/// The summary table's columns: fault, caught by, time (the verdict takes the rest).
const COLUMNS: &[usize] = &[20, 10, 8];

/// What a fault must do to the report.
struct Expectation {
    fault: Fault,
    /// The check that must fail, and words its failure must contain.
    fails: &'static str,
    evidence: &'static [&'static str],
    /// Checks the fault does not touch: they must pass.
    passes: &'static [&'static str],
}

const EXPECTATIONS: &[Expectation] = &[
    Expectation {
        fault: Fault::ReplicaDown,
        fails: "TEST-01",
        evidence: &["api-4", "exited"],
        passes: &["TEST-02", "TEST-03", "TEST-04", "HTTP"],
    },
    Expectation {
        fault: Fault::LateReplica,
        fails: "TEST-02",
        evidence: &["sequential", "gap of 3"],
        passes: &["TEST-01", "TEST-03", "TEST-04", "HTTP"],
    },
    Expectation {
        fault: Fault::DataNotWritable,
        fails: "TEST-03",
        evidence: &["cannot write to /app/data", "uid 10001", "owned by 0:0"],
        passes: &["TEST-02", "TEST-04"],
    },
    Expectation {
        fault: Fault::NoLock,
        fails: "TEST-04",
        evidence: &["replicas ran migrations at once", "applied by:"],
        passes: &["TEST-03"],
    },
    Expectation {
        fault: Fault::SmallMaxConnections,
        fails: "TEST-05",
        evidence: &["max_connections is 12", "fix: raise max_connections"],
        passes: &[],
    },
    Expectation {
        fault: Fault::LockHeld,
        fails: "TEST-01",
        evidence: &["Timed out waiting for schema migration"],
        passes: &[],
    },
    Expectation {
        fault: Fault::BreakingMigration,
        fails: "U-02",
        evidence: &[
            "requests accepted by old replicas failed",
            "_rename_documents_stored_by",
            "rename documents stored by",
            "-> 500",
        ],
        // The new version itself is fine: one new replica applied both migrations, mid-roll.
        passes: &["U-01"],
    },
];

/// The same faults on Swarm, where a replica is a task `api.<slot>` on a node, and a stopped
/// task is replaced by Swarm (its slot's history shows it).
const SWARM_EXPECTATIONS: &[Expectation] = &[
    Expectation {
        fault: Fault::ReplicaDown,
        fails: "TEST-01",
        evidence: &["api.4 (node ", "was restarted"],
        passes: &["TEST-02", "TEST-03", "TEST-04", "HTTP"],
    },
    Expectation {
        fault: Fault::DataNotWritable,
        fails: "TEST-03",
        evidence: &[
            "cannot write to /app/data",
            "uid 10001",
            "owned by 0:0",
            "api.1 (node ",
        ],
        passes: &["TEST-02", "TEST-04"],
    },
    Expectation {
        fault: Fault::LocalVolume,
        fails: "TEST-03",
        evidence: &[
            "/app/data is per node, not shared",
            "scaling-node-",
            "a `local` volume exists once per node",
        ],
        passes: &["TEST-01", "TEST-02", "TEST-04"],
    },
];

/// `db`: the database server every fault run uses (`--db`); `None` is the default stack's.
/// `engine`: Compose, or Swarm with the faults that apply there.
pub fn run(
    sh: &Shell,
    project: &Project,
    only: Option<&str>,
    db: Option<DbChoice>,
    engine: EngineKind,
) -> Result<()> {
    let expectations = match engine {
        EngineKind::Compose => EXPECTATIONS,
        EngineKind::Swarm => SWARM_EXPECTATIONS,
    };
    let selected: Vec<&Expectation> = match only {
        None => expectations.iter().collect(),
        Some(list) => {
            let mut v = Vec::new();
            for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                let fault = Fault::parse(name)?;
                v.push(
                    expectations
                        .iter()
                        .find(|e| e.fault == fault)
                        .ok_or_else(|| {
                            CannotRun(format!(
                                "fault {name} is not available with --engine {}",
                                engine.name()
                            ))
                        })?,
                );
            }
            v
        }
    };
    if selected.is_empty() {
        return Err(CannotRun("--only: no fault named".into()).into());
    }
    let docker = Docker::locate()?;
    let mut outcomes = Vec::new();
    for (i, exp) in selected.iter().enumerate() {
        ui::step(&format!(
            "Fault {}/{}: {}",
            i + 1,
            selected.len(),
            exp.fault.name()
        ));
        let started = Instant::now();
        let opts = Options {
            // Images are built once, by the first run; the nodes' image by the first that
            // makes nodes.
            no_build: i > 0
                && !(exp.fault == Fault::LocalVolume
                    && selected[..i].iter().all(|e| e.fault != Fault::LocalVolume)),
            fault: Some(exp.fault),
            db: db.clone(),
            engine,
            ..Options::default()
        };
        let verdict = scaling::execute(sh, project, &opts).and_then(|report| {
            report.print_table();
            judge(exp, &report)
        });
        let mut left = docker.project_leftovers(sh, scaling::PROJECT_NAME)?;
        left.extend(cluster::leftovers(sh, &docker.program)?);
        let verdict = verdict.and_then(|()| {
            if left.is_empty() {
                Ok(())
            } else {
                bail!("left behind: {}", left.join(", "))
            }
        });
        let seconds = started.elapsed().as_secs_f64();
        outcomes.push((exp.fault.name(), exp.fails, verdict, seconds));
    }

    println!(
        "\n{}",
        outcome::row(COLUMNS, &["fault", "caught by", "time", "verdict"])
    );
    println!("engine: {}", engine.name());
    let mut failed = 0;
    for (name, check, verdict, seconds) in &outcomes {
        let time = format!("{seconds:.0} s");
        let said = match verdict {
            Ok(()) => ui::paint_stdout("caught", "1;32"),
            Err(e) => {
                failed += 1;
                format!("{} {e:#}", ui::paint_stdout("NOT CAUGHT", "1;31"))
            }
        };
        println!("{}", outcome::row(COLUMNS, &[name, check, &time, &said]));
    }
    println!(
        "faults: {} passed, {failed} failed",
        outcomes.len() - failed
    );
    if failed > 0 {
        return Err(Failed(format!("{failed} fault(s) not caught as expected")).into());
    }
    Ok(())
}

/// The assertions on one fault's report.
fn judge(exp: &Expectation, report: &Report) -> Result<()> {
    if report.passed() {
        bail!("the check PASSED with fault {} injected", exp.fault.name());
    }
    if let Some(e) = &report.error {
        bail!("the run stopped with an error instead of a verdict: {e}");
    }
    let scenario = exp.fault.scenario();
    let Some(check) = report.check(scenario, exp.fails) else {
        bail!("{} is missing from the report", exp.fails);
    };
    if check.passed {
        bail!(
            "{} passed, but fault {} should make it fail",
            exp.fails,
            exp.fault.name()
        );
    }
    let text = format!("{}\n{}", check.summary, check.evidence.join("\n"));
    for word in exp.evidence {
        if !text.contains(word) {
            bail!(
                "{} failed but its evidence does not mention {word:?}:\n{text}",
                exp.fails
            );
        }
    }
    for id in exp.passes {
        match report.check(scenario, id) {
            Some(c) if c.passed => {}
            Some(c) => bail!(
                "{id} should be untouched by fault {} but failed: {}",
                exp.fault.name(),
                c.summary
            ),
            None => bail!("{id} is missing from the report"),
        }
    }
    Ok(())
}
