//! The xtask's own command-line behaviour, on the built binary: help, and bad input that must
//! end with exit 2 and one `error:` line naming the problem before anything touches Docker.
//!
//! Every run gets an empty PATH, so a flag check that slipped behind the Docker preflight
//! would fail here on "docker" instead of starting anything.

use std::process::{Command, Output};

fn xtask(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .env("PATH", "")
        .env("NO_COLOR", "1")
        .env_remove("DOCKER_HOST")
        .output()
        .expect("the xtask binary runs")
}

/// Exit 2, nothing on stdout, exactly one `error:` line on stderr, and it says `expected`.
fn assert_cannot_run(args: &[&str], expected: &str) {
    let out = xtask(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?} printed on stdout");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: {stderr}");
    assert!(
        errors[0].contains(expected),
        "{args:?}: {:?} does not say {expected:?}",
        errors[0]
    );
    assert!(
        !stderr.contains("docker"),
        "{args:?} reached Docker: {stderr}"
    );
}

#[test]
fn help_lists_every_command_and_exits_0() {
    let out = xtask(&["--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for command in [
        "check-docker",
        "images",
        "test-scaling",
        "test-faults",
        "test-resilience",
        "bench",
        "test",
        "test-db",
    ] {
        assert!(help.contains(command), "--help does not list {command}");
    }
    assert!(out.stderr.is_empty());
}

#[test]
fn a_misspelt_db_server_cannot_run_on_any_command_that_takes_db() {
    for command in [
        "test-scaling",
        "test-faults",
        "test-resilience",
        "bench",
        "test",
    ] {
        assert_cannot_run(
            &[command, "--db", "mysql9"],
            "expected one of mariadb-10.11, mariadb-11.8, mysql-9",
        );
    }
    assert_cannot_run(
        &["test", "--db", "mysql-9", "--matrix"],
        "--db and --matrix exclude each other",
    );
}

#[test]
fn a_command_s_help_shows_its_flags_and_defaults() {
    let out = xtask(&["test-scaling", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--replicas",
        "--max-startup",
        "--timeout",
        "--fault",
        "--keep",
    ] {
        assert!(help.contains(flag), "test-scaling --help lacks {flag}");
    }
    assert!(help.contains("default 4") && help.contains("default 180"));
}

#[test]
fn unknown_flags_commands_and_values_exit_2_with_one_error_line() {
    assert_cannot_run(&["test-scaling", "--bogus"], "--bogus");
    assert_cannot_run(&["nosuch"], "nosuch");
    assert_cannot_run(&["test-scaling", "--replicas", "x"], "--replicas");
}

#[test]
fn out_of_range_values_exit_2_before_docker() {
    assert_cannot_run(&["test-scaling", "--replicas", "0"], "between 2 and 32");
    assert_cannot_run(&["test-scaling", "--replicas", "1"], "between 2 and 32");
    assert_cannot_run(&["test-scaling", "--replicas", "33"], "between 2 and 32");
    assert_cannot_run(&["test-scaling", "--max-startup", "0"], "--max-startup 0");
    assert_cannot_run(&["test-scaling", "--timeout", "0"], "--timeout 0");
    assert_cannot_run(
        &["test-scaling", "--fault", "nope"],
        "unknown fault \"nope\"",
    );
    assert_cannot_run(&["test-faults", "--only", "nope"], "unknown fault \"nope\"");
    assert_cannot_run(
        &["test-scaling", "--engine", "k8s"],
        "choose compose or swarm",
    );
    assert_cannot_run(
        &[
            "test-scaling",
            "--engine",
            "swarm",
            "--fault",
            "late-replica",
        ],
        "not available with --engine swarm",
    );
    assert_cannot_run(
        &["test-faults", "--engine", "swarm", "--only", "no-lock"],
        "not available with --engine swarm",
    );
    assert_cannot_run(&["test-resilience", "--replicas", "1"], "between 2 and 16");
    assert_cannot_run(&["test-resilience", "--only", "nope"], "unknown scenario");
    assert_cannot_run(&["bench", "--replicas", "0"], "between 1 and 32");
    assert_cannot_run(&["bench", "--replicas", "2,2"], "--replicas");
}

#[test]
fn without_docker_on_path_a_check_cannot_run() {
    let out = xtask(&["check-docker"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{stderr}");
    assert!(errors[0].contains("docker"), "{stderr}");
}

/// A checkout copied together with its `target/` (as a CI cache restores it elsewhere): the
/// copied binary, run inside the copy, checks the copy and writes its reports there, not in
/// the checkout it was compiled in; and a developer's API_*/DB_*/COMPOSE_* variables are
/// named as ignored.
#[test]
fn a_copied_checkout_with_its_target_checks_the_copy() {
    let original = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap();
    let copy = std::env::temp_dir().join(format!("xtask-copied-checkout-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&copy);
    let files = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(original)
        .output()
        .expect("git runs");
    assert!(files.status.success());
    for name in files.stdout.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let name = std::str::from_utf8(name).unwrap();
        let (from, to) = (original.join(name), copy.join(name));
        if !from.is_file() {
            continue;
        }
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(&from, &to).unwrap();
    }
    let binary = copy.join("target/debug/xtask");
    std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_xtask"), &binary).unwrap();

    // From a subdirectory of the copy, with no docker on PATH: the run stops at the preflight
    // (exit 2), after saying what it checks and creating its report directory.
    // A binary just written can be "Text file busy" (ETXTBSY) for a moment: another test's
    // fork may still hold the copy's write descriptor until that child execs. Retry briefly.
    let run = || {
        Command::new(&binary)
            .arg("test-scaling")
            .current_dir(copy.join("api"))
            .env_clear()
            .env("PATH", "")
            .env("NO_COLOR", "1")
            .env("API_MIGRATION_LOCK", "off")
            .env("COMPOSE_PROJECT_NAME", "mine")
            .output()
    };
    let mut attempt = 0;
    let out = loop {
        match run() {
            Err(e) if e.raw_os_error() == Some(26) && attempt < 50 => {
                attempt += 1;
                std::thread::sleep(std::time::Duration::from_millis(100));
            }
            other => break other.unwrap(),
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("Scaling check of {}:", copy.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("ignored from your shell, not passed to compose: API_MIGRATION_LOCK, COMPOSE_PROJECT_NAME"),
        "{stderr}"
    );
    assert!(copy.join("target/scaling-report/latest").is_dir());
    let _ = std::fs::remove_dir_all(&copy);

    // Outside any checkout it cannot run, and says so.
    let out = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("test-scaling")
        .current_dir(std::env::temp_dir())
        .env("PATH", "")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("is not inside a checkout of this project"),
        "{stderr}"
    );
}
