//! Scenario 2, database restart while the replicas serve: readiness must go 503 during the
//! outage, every replica must be ready again within 10 s of the database being healthy,
//! without a container restart, and every document stored before must be intact.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};

use super::{
    pseudo_random_bytes, sha256_hex, wait_all_healthy, writers::store, Verdict, HEALTHY_TIMEOUT,
};
use crate::{
    stack::{
        http::{self, Outcome},
        ContainerFacts, Stack,
    },
    timeline, ui,
};

const DOCUMENTS: u32 = 24;
pub const MAX_RECOVERY_SECS: f64 = 10.0;
/// How long readiness may take to notice the outage (a probe gives up after 2 s).
const OUTAGE_PROBE_TIMEOUT: Duration = Duration::from_secs(20);
/// The database stays down at least this long: readiness must say 503 throughout.
const OUTAGE: Duration = Duration::from_secs(3);
const PROBE_EVERY: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(stack: &Stack) -> Result<Verdict> {
    let ports = stack.ports()?;
    let numbers: Vec<u32> = ports.keys().copied().collect();
    ui::note(&format!(
        "storing {DOCUMENTS} documents across {} replicas",
        ports.len()
    ));
    let mut stored = Vec::new();
    for i in 0..DOCUMENTS {
        let number = numbers[i as usize % numbers.len()];
        let body = pseudo_random_bytes(0xdb00 + u64::from(i), 1024 + 997 * i as usize);
        let id = store(ports[&number], &format!("db-restart-{i}.bin"), &body)?;
        stored.push((id, number, sha256_hex(&body)));
    }
    let containers = stack.api_containers()?;
    let before = stack.container_facts(&containers)?;

    ui::step("Stopping the database while the replicas serve");
    let stopping = Instant::now();
    stack.stop_db()?;
    let outage = probe_outage(&ports)?;
    let down_for = stopping.elapsed().as_secs_f64();

    ui::step("Starting the database again");
    let started_at = Utc::now();
    let ready = ReadinessWatch::start(&ports);
    stack.restart_db()?;
    stack.wait_db_healthy(Duration::from_secs(120))?;
    let healthy_at = db_healthy_time(stack, started_at).unwrap_or_else(|e| {
        ui::warn(&format!(
            "using the poll time for the database's health: {e:#}"
        ));
        Utc::now()
    });
    let ready_at = ready.join(Duration::from_secs(60));

    let after = stack.container_facts(&stack.api_containers()?)?;
    let intact = check_documents(&ports, &stored);
    wait_all_healthy(stack, stack.replicas, HEALTHY_TIMEOUT)
        .context("the replicas did not turn healthy again")?;
    let mut verdict = judge(
        &outage,
        (started_at, healthy_at),
        &ready_at,
        &before,
        &after,
        &intact,
    );
    verdict.figures.insert(0, format!("{DOCUMENTS} documents stored, then the database stopped (`compose stop db`) for {down_for:.1} s before `start db`"));
    Ok(verdict)
}

/// During the outage (at least `OUTAGE`), /readyz of every replica, until each has answered
/// 503 at least once.
fn probe_outage(ports: &BTreeMap<u32, SocketAddr>) -> Result<BTreeMap<u32, Vec<String>>> {
    let mut seen: BTreeMap<u32, Vec<String>> = ports.keys().map(|n| (*n, Vec::new())).collect();
    let started = Instant::now();
    loop {
        for (number, addr) in ports {
            let outcome = http::get(*addr, "/readyz", TIMEOUT);
            seen.get_mut(number).expect("listed").push(match &outcome {
                Outcome::Reply(r) => format!("{} {}", r.status, r.error_code().unwrap_or_default()),
                other => other.describe(),
            });
        }
        let all_said_503 = seen
            .values()
            .all(|a| a.iter().any(|a| a.starts_with("503")));
        if (all_said_503 && started.elapsed() >= OUTAGE) || started.elapsed() > OUTAGE_PROBE_TIMEOUT
        {
            return Ok(seen);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One thread per replica polls /readyz and notes when it first answers 200.
struct ReadinessWatch {
    stop: Arc<AtomicBool>,
    threads: Vec<(u32, std::thread::JoinHandle<Option<DateTime<Utc>>>)>,
}

impl ReadinessWatch {
    fn start(ports: &BTreeMap<u32, SocketAddr>) -> ReadinessWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = ports
            .iter()
            .map(|(number, addr)| {
                let (addr, stop) = (*addr, stop.clone());
                let handle = std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if http::get(addr, "/readyz", TIMEOUT).status() == Some(200) {
                            return Some(Utc::now());
                        }
                        std::thread::sleep(PROBE_EVERY);
                    }
                    None
                });
                (*number, handle)
            })
            .collect();
        ReadinessWatch { stop, threads }
    }

    /// Waits up to `limit` for every replica to be ready; `None` for those that were not.
    fn join(self, limit: Duration) -> BTreeMap<u32, Option<DateTime<Utc>>> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && !self.threads.iter().all(|(_, h)| h.is_finished()) {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.threads
            .into_iter()
            .map(|(n, h)| (n, h.join().ok().flatten()))
            .collect()
    }
}

/// When the database's first passing healthcheck after `since` ended (Docker's own record).
fn db_healthy_time(stack: &Stack, since: DateTime<Utc>) -> Result<DateTime<Utc>> {
    let db = stack.db_container()?;
    let json = stack
        .docker
        .inspect(stack.sh, &[db.id], "{{json .State.Health.Log}}")?;
    first_pass_after(&json, since)
}

pub fn first_pass_after(json: &str, since: DateTime<Utc>) -> Result<DateTime<Utc>> {
    match timeline::parse_health_log(json)?
        .iter()
        .filter(|p| p.exit_code == 0 && p.start >= since)
        .map(|p| p.end)
        .min()
    {
        Some(t) => Ok(t),
        None => bail!("no passing healthcheck after {since} in the database's health log"),
    }
}

/// Each document read back through another replica than the one that stored it.
fn check_documents(
    ports: &BTreeMap<u32, SocketAddr>,
    stored: &[(String, u32, String)],
) -> Vec<String> {
    let numbers: Vec<u32> = ports.keys().copied().collect();
    let mut problems = Vec::new();
    for (id, by, sha) in stored {
        let index = numbers.iter().position(|n| n == by).unwrap_or(0);
        let reader = numbers[(index + 1) % numbers.len()];
        match http::get(ports[&reader], &format!("/documents/{id}/content"), TIMEOUT) {
            Outcome::Reply(r) if r.status == 200 && sha256_hex(&r.body) == *sha => {}
            Outcome::Reply(r) if r.status == 200 => problems.push(format!(
                "document {id} read through api-{reader} has other bytes (sha256 {})",
                sha256_hex(&r.body)
            )),
            other => problems.push(format!(
                "document {id} through api-{reader}: {}",
                other.describe()
            )),
        }
    }
    problems
}

pub fn judge(
    outage: &BTreeMap<u32, Vec<String>>,
    (db_started_at, db_healthy_at): (DateTime<Utc>, DateTime<Utc>),
    ready_at: &BTreeMap<u32, Option<DateTime<Utc>>>,
    before: &BTreeMap<u32, ContainerFacts>,
    after: &BTreeMap<u32, ContainerFacts>,
    unreadable: &[String],
) -> Verdict {
    let mut v = Verdict::default();
    for (number, answers) in outage {
        v.require(
            answers.iter().any(|a| a.starts_with("503 not_ready")),
            || {
                format!(
                    "api-{number} never answered 503 not_ready on /readyz during the outage: {}",
                    answers.join(" | ")
                )
            },
        );
        v.require(!answers.iter().any(|a| a.starts_with("200")), || {
            format!("api-{number} said ready (200) while the database was down")
        });
    }
    if v.passed() {
        let probes: usize = outage.values().map(Vec::len).sum();
        v.figure(format!("during the outage /readyz answered 503 not_ready on all {} replicas ({probes} probes, none 200)", outage.len()));
    }
    let seconds =
        |from: DateTime<Utc>, to: DateTime<Utc>| (to - from).num_milliseconds() as f64 / 1000.0;
    let mut after_healthy = Vec::new();
    for (number, at) in ready_at {
        match at {
            None => v.problem(format!(
                "api-{number} was not ready again within 60 s of the database restarting"
            )),
            Some(at) => {
                let late = seconds(db_healthy_at, *at);
                after_healthy.push(late);
                v.require(late <= MAX_RECOVERY_SECS, || format!("api-{number} was ready {late:.1} s after the database was healthy (limit {MAX_RECOVERY_SECS} s)"));
            }
        }
    }
    if let (Some(first), Some(last)) = (
        after_healthy.iter().copied().reduce(f64::min),
        after_healthy.iter().copied().reduce(f64::max),
    ) {
        // Negative: a replica reconnected before the database's own healthcheck next passed.
        let spread = if last - first < 0.005 {
            format!("all at {first:+.2} s")
        } else {
            format!("from {first:+.2} to {last:+.2} s")
        };
        v.figure(format!(
            "recovery: database healthy {:.2} s after `start`; replicas ready {spread} relative to that (limit +{MAX_RECOVERY_SECS} s; negative: before the database's own healthcheck passed)",
            seconds(db_started_at, db_healthy_at)
        ));
    }
    for (number, b) in before {
        match after.get(number) {
            None => v.problem(format!("api-{number} is gone after the outage")),
            Some(a) if a.id != b.id => v.problem(format!(
                "api-{number} is another container after the outage"
            )),
            Some(a) if a.started_at != b.started_at || a.restarts != b.restarts => {
                v.problem(format!(
                    "api-{number} restarted (started {} → {}, restarts {} → {})",
                    b.started_at, a.started_at, b.restarts, a.restarts
                ))
            }
            Some(_) => {}
        }
    }
    if before.len() == after.len() && v.problems.iter().all(|p| !p.contains("restarted")) {
        v.figure(format!(
            "no container restarted ({} replicas, same containers, restart count 0)",
            before.len()
        ));
    }
    for problem in unreadable {
        v.problem(problem.clone());
    }
    if unreadable.is_empty() {
        v.figure(format!("all {DOCUMENTS} documents stored before the outage read back intact (sha256) through another replica"));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(&format!("2026-01-01T00:00:{s}Z"))
            .unwrap()
            .with_timezone(&Utc)
    }

    fn facts(started: &str, restarts: u32) -> BTreeMap<u32, ContainerFacts> {
        (1..=2)
            .map(|n| {
                (
                    n,
                    ContainerFacts {
                        id: format!("id{n}"),
                        started_at: started.into(),
                        restarts,
                    },
                )
            })
            .collect()
    }

    fn outage() -> BTreeMap<u32, Vec<String>> {
        [
            (1, vec!["503 not_ready".to_string()]),
            (2, vec!["connection refused".into(), "503 not_ready".into()]),
        ]
        .into()
    }

    #[test]
    fn a_quick_recovery_without_restarts_passes() {
        let ready = [(1, Some(t("11.500"))), (2, Some(t("10.100")))].into();
        let v = judge(
            &outage(),
            (t("08.000"), t("10.000")),
            &ready,
            &facts("s", 0),
            &facts("s", 0),
            &[],
        );
        assert!(v.passed(), "{:?}", v.problems);
        assert!(
            v.figures.iter().any(|f| f
                .contains("healthy 2.00 s after `start`; replicas ready from +0.10 to +1.50 s")),
            "{:?}",
            v.figures
        );
    }

    #[test]
    fn readiness_that_never_said_503_fails() {
        let outage = [(1, vec!["200 ".to_string(), "200 ".into()])].into();
        let ready = [(1, Some(t("10.100")))].into();
        let v = judge(
            &outage,
            (t("08.000"), t("10.000")),
            &ready,
            &facts("s", 0),
            &facts("s", 0),
            &[],
        );
        assert!(
            v.problems.iter().any(|p| p.contains("never answered 503")),
            "{:?}",
            v.problems
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("said ready (200) while the database was down")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn slow_or_missing_recovery_fails() {
        let ready = [(1, Some(t("21.000"))), (2, None)].into();
        let v = judge(
            &outage(),
            (t("08.000"), t("10.000")),
            &ready,
            &facts("s", 0),
            &facts("s", 0),
            &[],
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("api-1 was ready 11.0 s after")),
            "{:?}",
            v.problems
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("api-2 was not ready again")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn a_restarted_container_or_a_lost_document_fails() {
        let ready = [(1, Some(t("10.100"))), (2, Some(t("10.100")))].into();
        let v = judge(
            &outage(),
            (t("08.000"), t("10.000")),
            &ready,
            &facts("s", 0),
            &facts("t", 1),
            &["document x: 404".into()],
        );
        assert!(
            v.problems.iter().any(|p| p.contains("api-1 restarted")),
            "{:?}",
            v.problems
        );
        assert!(
            v.problems.iter().any(|p| p.contains("document x")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn the_first_passing_healthcheck_after_the_start_is_found() {
        let json = r#"[{"Start":"2026-01-01T00:00:08.0Z","End":"2026-01-01T00:00:08.1Z","ExitCode":0,"Output":""},
            {"Start":"2026-01-01T00:00:10.5Z","End":"2026-01-01T00:00:10.6Z","ExitCode":1,"Output":"refused"},
            {"Start":"2026-01-01T00:00:11.5Z","End":"2026-01-01T00:00:11.7Z","ExitCode":0,"Output":""}]"#;
        assert_eq!(first_pass_after(json, t("10.000")).unwrap(), t("11.700"));
        assert!(first_pass_after(json, t("12.000")).is_err());
    }
}
