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
        "--max-spread",
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
    assert_cannot_run(&["test-scaling", "--replicas", "0"], "between 1 and 32");
    assert_cannot_run(&["test-scaling", "--replicas", "33"], "between 1 and 32");
    assert_cannot_run(&["test-scaling", "--max-spread", "0"], "--max-spread 0");
    assert_cannot_run(&["test-scaling", "--timeout", "0"], "--timeout 0");
    assert_cannot_run(
        &["test-scaling", "--fault", "nope"],
        "unknown fault \"nope\"",
    );
    assert_cannot_run(
        &["test-scaling", "--fault", "no-lock", "--replicas", "1"],
        "--fault needs at least 2 replicas",
    );
    assert_cannot_run(&["test-faults", "--only", "nope"], "unknown fault \"nope\"");
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
