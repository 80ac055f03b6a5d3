//! The binary's command line: subcommands, exit codes, configuration errors.

use std::process::Command;

use crate::helpers::spawn_app;

fn api() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_api"));
    command.env_clear();
    command
}

#[test]
fn an_unknown_subcommand_prints_usage_and_exits_2() {
    let output = api().arg("serve-please").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("usage: api [healthcheck]"), "{stderr}");
}

#[test]
fn missing_configuration_is_one_line_naming_the_variable_and_exit_2() {
    let output = api().output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("DB_HOST is not set"), "{stderr}");
}

#[test]
fn invalid_configuration_never_prints_the_password() {
    let output = api()
        .env("DATABASE_URL", "mysql://app:s3cret-pw@db:3306/")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");

    let output = api()
        .envs([
            ("DB_HOST", "db"),
            ("DB_USER", "u"),
            ("DB_PASSWORD", "s3cret-pw"),
            ("DB_NAME", "d"),
        ])
        .env("API_PORT", "eighty")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("API_PORT") && stderr.contains("\"eighty\""),
        "{stderr}"
    );
    assert!(!stderr.contains("s3cret-pw"), "{stderr}");
}

#[tokio::test]
async fn healthcheck_exits_0_against_a_ready_instance_and_1_when_nothing_listens() {
    let app = spawn_app().await;
    let port = app.port.to_string();
    let status = tokio::task::spawn_blocking(move || {
        api()
            .arg("healthcheck")
            .env("API_PORT", port)
            .status()
            .unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let output = api()
        .arg("healthcheck")
        .env("API_PORT", port)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8(output.stderr)
        .unwrap()
        .starts_with("unhealthy: "));
}

#[test]
fn sigterm_while_waiting_for_the_database_stops_at_once_with_exit_0() {
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let data_dir = crate::helpers::TempDir::new();
    let child = api()
        .env(
            "DATABASE_URL",
            format!("mysql://app:pw@127.0.0.1:{port}/app"),
        )
        .env("API_DB_CONNECT_DEADLINE_SECS", "60")
        .env("API_DATA_DIR", &data_dir.0)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let started = std::time::Instant::now();
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3));
    assert!(stdout.contains("not reachable yet"), "{stdout}");
    assert!(stdout.contains("Stopped before serving"), "{stdout}");
}
