//! HTTP load with wrk (Debian's `wrk`): one wrk process per measurement, one thread per
//! replica, each thread on its own replica's published port (see `wrk.lua`).

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
};

use anyhow::{bail, Context, Result};
use serde::Serialize;
use xshell::{cmd, Shell};

/// The Lua script that aims each wrk thread at one replica and prints the result line.
pub const SCRIPT: &str = include_str!("wrk.lua");

/// Connections over all replicas: the same offered concurrency whatever N, so the figures
/// compare how N replicas share one load (rounded up so each replica gets the same number).
pub const CONNECTIONS: u32 = 32;

pub fn connections_for(replicas: u32) -> u32 {
    CONNECTIONS.div_ceil(replicas) * replicas
}

/// What to ask of the replicas.
#[derive(Clone, Debug)]
pub struct Plan<'a> {
    pub targets: &'a [SocketAddr],
    /// Path and query of every request.
    pub path: &'a str,
    /// 0: GET; otherwise POST a body of that many bytes.
    pub upload_bytes: usize,
    pub seconds: u32,
}

/// Starts wrk in the background (the caller samples `docker stats` meanwhile).
pub fn spawn(sh: &Shell, wrk: &Path, script: &Path, plan: &Plan) -> Result<Child> {
    let Some(first) = plan.targets.first() else {
        bail!("no replica to put load on")
    };
    if let Some(remote) = plan.targets.iter().find(|a| !a.ip().is_loopback()) {
        bail!(
            "refusing to put load on {remote}: the benchmark only targets this machine's loopback"
        );
    }
    let threads = plan.targets.len().to_string();
    let connections = connections_for(plan.targets.len() as u32).to_string();
    let duration = format!("{}s", plan.seconds);
    let url = format!("http://{first}{}", plan.path);
    let targets: Vec<String> = plan.targets.iter().map(|a| a.to_string()).collect();
    let mut command: Command = cmd!(sh, "{wrk} --threads {threads} --connections {connections} --duration {duration} --timeout 10s --latency --script {script} {url}")
        .env("BENCH_TARGETS", targets.join(","))
        .env("BENCH_UPLOAD_BYTES", plan.upload_bytes.to_string())
        .into();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting {}", wrk.display()))
}

/// Waits for wrk and reads its result.
pub fn finish(child: Child) -> Result<LoadResult> {
    let out = child.wait_with_output().context("waiting for wrk")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            stdout.trim()
        );
    }
    parse(&stdout)
}

/// One measurement: what wrk counted over every replica together.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LoadResult {
    pub requests: u64,
    pub seconds: f64,
    pub requests_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Connect, read and write errors and timeouts.
    pub socket_errors: u64,
    /// Answers other than 2xx or 3xx.
    pub non_2xx: u64,
}

/// Parses the `BENCH-RESULT key=value ...` line that `wrk.lua`'s `done()` prints.
pub fn parse(stdout: &str) -> Result<LoadResult> {
    let line = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("BENCH-RESULT "))
        .with_context(|| {
            format!(
                "wrk printed no BENCH-RESULT line: {:?}",
                stdout.lines().last().unwrap_or("")
            )
        })?;
    let field = |key: &str| -> Result<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("no {key} in wrk's result {line:?}"))?
            .parse()
            .with_context(|| format!("{key} in wrk's result {line:?}"))
    };
    let requests = field("requests")?;
    let seconds = field("duration_us")? as f64 / 1e6;
    if seconds <= 0.0 {
        bail!("wrk ran for no time: {line:?}");
    }
    let ms = |key: &str| field(key).map(|us| us as f64 / 1e3);
    Ok(LoadResult {
        requests,
        seconds,
        requests_per_s: requests as f64 / seconds,
        p50_ms: ms("p50_us")?,
        p99_ms: ms("p99_us")?,
        max_ms: ms("max_us")?,
        socket_errors: field("connect_errors")?
            + field("read_errors")?
            + field("write_errors")?
            + field("timeouts")?,
        non_2xx: field("non_2xx")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn testdata(name: &str) -> String {
        std::fs::read_to_string(format!("{}/testdata/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
    }

    #[test]
    fn a_read_run_gives_throughput_and_latency_percentiles() {
        let result = parse(&testdata("bench-wrk-read.txt")).unwrap();
        assert!(result.requests > 0);
        assert!((result.requests_per_s - result.requests as f64 / result.seconds).abs() < 1e-9);
        assert!(
            result.p50_ms > 0.0 && result.p50_ms <= result.p99_ms && result.p99_ms <= result.max_ms,
            "{result:?}"
        );
        assert_eq!((result.socket_errors, result.non_2xx), (0, 0));
    }

    #[test]
    fn an_upload_run_parses_the_same_way() {
        let result = parse(&testdata("bench-wrk-upload.txt")).unwrap();
        assert!(
            result.requests > 0 && result.p99_ms >= result.p50_ms,
            "{result:?}"
        );
    }

    #[test]
    fn errors_are_counted_and_a_run_without_result_line_is_an_error() {
        let text = "Running 1s test @ http://127.0.0.1:1/\nBENCH-RESULT requests=10 duration_us=1000000 bytes=0 p50_us=1500 p99_us=9000 max_us=12000 \
                    connect_errors=1 read_errors=2 write_errors=0 timeouts=3 non_2xx=4\n";
        let result = parse(text).unwrap();
        assert_eq!((result.socket_errors, result.non_2xx), (6, 4));
        assert_eq!(
            (result.p50_ms, result.p99_ms, result.requests_per_s),
            (1.5, 9.0, 10.0)
        );
        let err = parse("unable to connect to 127.0.0.1:1 Connection refused\n").unwrap_err();
        assert!(err.to_string().contains("no BENCH-RESULT"), "{err}");
        assert!(parse("BENCH-RESULT requests=10 duration_us=0").is_err());
    }

    #[test]
    fn every_replica_gets_the_same_number_of_connections() {
        assert_eq!(connections_for(1), 32);
        assert_eq!(connections_for(4), 32);
        assert_eq!(connections_for(3), 33);
        assert_eq!(connections_for(16), 32);
        assert_eq!(connections_for(32), 32);
    }

    #[test]
    fn the_script_aims_each_thread_at_a_replica_and_prints_the_parsed_fields() {
        assert!(SCRIPT.contains("thread.addr"));
        for key in [
            "requests",
            "duration_us",
            "p50_us",
            "p99_us",
            "max_us",
            "connect_errors",
            "read_errors",
            "write_errors",
            "timeouts",
            "non_2xx",
        ] {
            assert!(SCRIPT.contains(&format!("{key}=")), "{key}");
        }
    }
}
