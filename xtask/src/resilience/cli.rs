//! Scenario 7, the xtask's own bad input: an unknown flag, `--replicas 0`, docker missing
//! from PATH, an unreachable daemon, and Compose v1 only (with no way to fetch v2). The
//! xtask binary itself runs each as a subprocess; each must give one clear error line,
//! exit 2, and start nothing.

use std::{
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use chrono::Utc;
use xshell::Shell;

use super::{Verdict, PROJECT_NAME};
use crate::{docker::Docker, ui};

/// A child that passed its preflight by mistake would start a whole run: stop it here.
const CHILD_LIMIT: Duration = Duration::from_secs(60);

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    env: Vec<(&'static str, String)>,
    /// Words the one error line must contain.
    expect: &'static [&'static str],
}

/// What one run of the xtask did.
#[derive(Debug, Default)]
pub struct Run {
    pub code: Option<i32>,
    pub stderr: String,
    /// Containers, networks, volumes of the project, and container events, seen afterwards.
    pub traces: Vec<String>,
}

pub fn run(sh: &Shell, docker: &Docker) -> Result<Verdict> {
    let exe = std::env::current_exe().context("locating the xtask binary")?;
    let scratch = std::env::temp_dir().join(format!("xtask-resilience-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(scratch.clone());
    let empty_path = scratch.join("empty-bin");
    let v1_path = scratch.join("compose-v1-bin");
    let empty_target = scratch.join("target");
    for dir in [&empty_path, &v1_path, &empty_target] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    write_compose_v1_only(&v1_path, &docker.program)?;

    let run_args: &[&str] = &["test-resilience", "--only", "security"];
    let cases = [
        Case {
            name: "unknown flag",
            args: &["test-resilience", "--frobnicate"],
            env: vec![],
            expect: &["--frobnicate"],
        },
        Case {
            name: "--replicas 0",
            args: &["test-resilience", "--replicas", "0"],
            env: vec![],
            expect: &["--replicas 0", "between"],
        },
        Case {
            name: "docker missing from PATH",
            args: run_args,
            env: vec![("PATH", path_str(&empty_path))],
            expect: &["docker is not on PATH", "install"],
        },
        Case {
            name: "daemon unreachable",
            args: run_args,
            env: vec![("DOCKER_HOST", "unix:///nonexistent.sock".into())],
            expect: &["daemon is not reachable", "DOCKER_HOST"],
        },
        Case {
            name: "compose v1 only",
            args: run_args,
            // No cached Compose v2 under this target dir and no python3 to fetch one.
            env: vec![
                ("PATH", path_str(&v1_path)),
                ("CARGO_TARGET_DIR", path_str(&empty_target)),
            ],
            expect: &["Compose v2", "install"],
        },
    ];

    let mut v = Verdict::default();
    for case in &cases {
        ui::note(&format!("xtask {} ({})", case.args.join(" "), case.name));
        let since = (Utc::now() - chrono::Duration::seconds(1))
            .timestamp()
            .to_string();
        let mut outcome = run_child(&exe, case)?;
        let until = (Utc::now() + chrono::Duration::seconds(1))
            .timestamp()
            .to_string();
        outcome.traces = docker.project_leftovers(sh, PROJECT_NAME)?;
        let events = docker.project_events(
            sh,
            PROJECT_NAME,
            &since,
            &until,
            "{{.Action}} {{.Actor.Attributes.name}}",
        )?;
        outcome.traces.extend(
            events
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("event {l}")),
        );
        judge(&mut v, case.name, case.expect, &outcome);
    }
    Ok(v)
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

/// A `docker` that has no compose plugin (it answers `compose` like a CLI without one and
/// passes everything else to the real docker), next to a Compose v1 `docker-compose`.
fn write_compose_v1_only(dir: &Path, real_docker: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let docker = format!(
        "#!/bin/sh\nif [ \"$1\" = compose ]; then echo \"docker: 'compose' is not a docker command.\" >&2; exit 1; fi\nexec '{}' \"$@\"\n",
        real_docker.display()
    );
    let v1 = "#!/bin/sh\necho 'docker-compose version 1.29.2, build unknown'\n";
    for (name, text) in [("docker", docker.as_str()), ("docker-compose", v1)] {
        let path = dir.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}

fn run_child(exe: &Path, case: &Case) -> Result<Run> {
    let mut command = Command::new(exe);
    command
        .args(case.args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in &case.env {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("running {}", exe.display()))?;
    let mut stderr_pipe = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let code = loop {
        if let Some(status) = child.try_wait()? {
            break status.code();
        }
        if started.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.join().unwrap_or_default();
    Ok(Run {
        code,
        stderr,
        traces: Vec::new(),
    })
}

/// One case: exit 2, exactly one `error:` line naming the problem, no panic, no trace.
pub fn judge(v: &mut Verdict, name: &str, expect: &[&str], run: &Run) {
    let errors: Vec<&str> = run
        .stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("error:"))
        .collect();
    let mut problems = Vec::new();
    if run.code != Some(2) {
        problems.push(match run.code {
            None => format!("did not exit within {} s", CHILD_LIMIT.as_secs()),
            Some(code) => format!("exit {code}, expected 2"),
        });
    }
    match errors.as_slice() {
        [line] => {
            let missing: Vec<&&str> = expect.iter().filter(|w| !line.contains(**w)).collect();
            if !missing.is_empty() {
                problems.push(format!("the error line lacks {missing:?}: {line}"));
            }
        }
        lines => problems.push(format!(
            "{} `error:` lines on stderr, expected one: {:?}",
            lines.len(),
            tail(&run.stderr)
        )),
    }
    if run.stderr.contains("panicked") {
        problems.push("it panicked".into());
    }
    if !run.traces.is_empty() {
        problems.push(format!("it started something: {}", run.traces.join(", ")));
    }
    if problems.is_empty() {
        let line: String = errors[0].chars().take(150).collect();
        v.figure(format!("{name}: exit 2, nothing started — {line}"));
    } else {
        v.problem(format!("{name}: {}", problems.join("; ")));
    }
}

fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(4)..].join(" | ")
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(code: Option<i32>, stderr: &str) -> Run {
        Run {
            code,
            stderr: stderr.into(),
            traces: vec![],
        }
    }

    #[test]
    fn one_clear_error_and_exit_2_passes() {
        let mut v = Verdict::default();
        let stderr = "[   0.0s] ==> Resilience: 4 replicas\nerror: docker is not on PATH: install Docker Engine and retry\n";
        judge(
            &mut v,
            "docker missing",
            &["docker is not on PATH"],
            &run(Some(2), stderr),
        );
        assert!(v.passed(), "{:?}", v.problems);
        assert!(
            v.figures[0].starts_with(
                "docker missing: exit 2, nothing started — error: docker is not on PATH"
            ),
            "{:?}",
            v.figures
        );
    }

    #[test]
    fn a_wrong_exit_code_a_vague_or_repeated_error_or_a_trace_fails() {
        let mut v = Verdict::default();
        judge(
            &mut v,
            "a",
            &["docker"],
            &run(Some(1), "error: docker is not on PATH\n"),
        );
        assert!(
            v.problems[0].contains("exit 1, expected 2"),
            "{:?}",
            v.problems
        );

        let mut v = Verdict::default();
        judge(
            &mut v,
            "b",
            &["--replicas 0"],
            &run(Some(2), "error: something went wrong\n"),
        );
        assert!(
            v.problems[0].contains("lacks [\"--replicas 0\"]"),
            "{:?}",
            v.problems
        );

        let mut v = Verdict::default();
        judge(
            &mut v,
            "c",
            &["x"],
            &run(Some(2), "error: x\nerror: x again\n"),
        );
        assert!(
            v.problems[0].contains("2 `error:` lines"),
            "{:?}",
            v.problems
        );

        let mut v = Verdict::default();
        let mut started = run(Some(2), "error: x\n");
        started.traces = vec!["container scaling-resilience-db-1".into()];
        judge(&mut v, "d", &["x"], &started);
        assert!(
            v.problems[0].contains("it started something"),
            "{:?}",
            v.problems
        );

        let mut v = Verdict::default();
        judge(&mut v, "e", &["x"], &run(None, ""));
        assert!(
            v.problems[0].contains("did not exit within"),
            "{:?}",
            v.problems
        );
    }
}
