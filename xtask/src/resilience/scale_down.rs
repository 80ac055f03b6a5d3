//! Scenario 4, scale-down under load: from N to N/2 replicas (`up -d --scale api=N/2
//! --no-recreate`) while a client sends requests to every replica. Requests a stopping
//! replica had accepted must complete (graceful SIGTERM), new ones must be refused cleanly.
//!
//! "Refused" is what a client can safely retry: the connection was refused, or it was closed
//! before a single byte of a response *and* the request left no trace (an upload whose name
//! is not in the database). Everything else that is not a 2xx is accepted-but-failed.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Result;
use chrono::Utc;

use super::{pseudo_random_bytes, sha256_hex, wait_all_healthy, writers, Verdict, PROJECT_NAME};
use crate::{
    stack::{
        http::{self, Outcome},
        Stack, API,
    },
    ui,
};

/// Longer than the compose file's stop_grace_period (10 s): a request held until the
/// replica is killed shows as cut, not as a client timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const PAUSE: Duration = Duration::from_millis(25);
const LOAD_BEFORE: Duration = Duration::from_millis(1500);
const LOAD_AFTER: Duration = Duration::from_secs(2);

#[derive(Clone, Debug)]
pub struct Sent {
    pub replica: u32,
    pub kind: Kind,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    Upload {
        name: String,
    },
    /// A read of a document this client stored, with its sha256.
    Read {
        sha256: String,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum Class {
    Ok,
    /// Connection refused.
    Refused,
    /// Closed before any byte of a response, with no side effect.
    ClosedUnaccepted,
    AcceptedFailed(String),
}

pub fn run(stack: &Stack) -> Result<Verdict> {
    let n = stack.replicas;
    let target = (n / 2).max(1);
    let before: BTreeSet<u32> = stack.api_containers()?.iter().map(|c| c.number).collect();
    let ports = stack.ports()?;
    let since = (Utc::now() - chrono::Duration::seconds(2))
        .timestamp()
        .to_string();

    ui::note(&format!(
        "load on {} replicas, then scaling to {target}",
        ports.len()
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let threads: Vec<_> = ports
        .iter()
        .map(|(number, addr)| {
            let (number, addr, stop) = (*number, *addr, stop.clone());
            std::thread::spawn(move || load(number, addr, &stop))
        })
        .collect();
    std::thread::sleep(LOAD_BEFORE);
    let started = Instant::now();
    let scaled = stack.scale_api(target);
    let scale_seconds = started.elapsed().as_secs_f64();
    std::thread::sleep(LOAD_AFTER);
    stop.store(true, Ordering::Relaxed);
    let sent: Vec<Sent> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap_or_default())
        .collect();
    scaled?;

    let until = (Utc::now() + chrono::Duration::seconds(1))
        .timestamp()
        .to_string();
    let format = "{{.TimeNano}}\t{{.Action}}\t{{.Actor.Attributes.name}}\t{{.Actor.Attributes.exitCode}}\t{{.Actor.Attributes.signal}}";
    let events = stack
        .docker
        .project_events(stack.sh, PROJECT_NAME, &since, &until, format)?;
    let after: BTreeSet<u32> = stack.api_containers()?.iter().map(|c| c.number).collect();
    let stored: BTreeSet<String> = stack
        .sql("SELECT name FROM documents WHERE name LIKE 'scale-%'")?
        .lines()
        .map(String::from)
        .collect();
    let mut verdict = judge(
        &before,
        &after,
        target,
        &sent,
        &stored,
        &parse_events(&events),
        scale_seconds,
    );
    if let Err(e) = wait_all_healthy(stack, target, Duration::from_secs(30)) {
        verdict.problem(format!("the remaining replicas are not healthy: {e:#}"));
    }
    // Nothing half-written by the replicas that stopped.
    writers::verify_holdings(&mut verdict, stack, "after the scale-down")?;
    Ok(verdict)
}

/// One client per replica: alternately stores a small document and reads back the last one.
fn load(replica: u32, addr: SocketAddr, stop: &AtomicBool) -> Vec<Sent> {
    let mut sent = Vec::new();
    let mut last: Option<(String, String)> = None;
    let mut seq = 0u64;
    while !stop.load(Ordering::Relaxed) {
        seq += 1;
        let (kind, outcome) = match (&last, seq % 2) {
            (Some((id, sha)), 0) => {
                let outcome = http::get(addr, &format!("/documents/{id}/content"), REQUEST_TIMEOUT);
                let sha256 = sha.clone();
                if let Outcome::Reply(r) = &outcome {
                    if r.status == 200 && sha256_hex(&r.body) != sha256 {
                        let outcome = Outcome::Broken {
                            got: r.body.len(),
                            error: "other bytes than stored".into(),
                        };
                        sent.push(Sent {
                            replica,
                            kind: Kind::Read { sha256 },
                            outcome,
                        });
                        continue;
                    }
                }
                (Kind::Read { sha256 }, outcome)
            }
            _ => {
                let name = format!("scale-{replica}-{seq}.bin");
                let body = pseudo_random_bytes(u64::from(replica) << 40 | seq, 2048);
                let request = http::request("POST", &format!("/documents?name={name}"), &[], &body);
                let outcome = http::send(addr, &request, REQUEST_TIMEOUT);
                if let Some(id) = created_id(&outcome) {
                    last = Some((id, sha256_hex(&body)));
                }
                (Kind::Upload { name }, outcome)
            }
        };
        let refused = matches!(outcome, Outcome::Refused(_));
        sent.push(Sent {
            replica,
            kind,
            outcome,
        });
        std::thread::sleep(if refused { PAUSE * 4 } else { PAUSE });
    }
    sent
}

fn created_id(outcome: &Outcome) -> Option<String> {
    match outcome {
        Outcome::Reply(r) if r.status == 201 => r.json()?["id"].as_str().map(String::from),
        _ => None,
    }
}

pub fn classify(sent: &Sent, stored: &BTreeSet<String>) -> Class {
    match (&sent.outcome, &sent.kind) {
        (Outcome::Reply(r), _) if (200..300).contains(&r.status) => Class::Ok,
        (Outcome::Reply(r), _) => {
            Class::AcceptedFailed(format!("answered {} {}", r.status, r.text()))
        }
        (Outcome::Refused(_), _) => Class::Refused,
        (Outcome::ClosedBeforeResponse(why), Kind::Upload { name }) if stored.contains(name) => {
            Class::AcceptedFailed(format!(
                "{name} was stored but the client got no answer ({why})"
            ))
        }
        (Outcome::ClosedBeforeResponse(_), _) => Class::ClosedUnaccepted,
        (other, _) => Class::AcceptedFailed(other.describe()),
    }
}

/// One container event: (nanoseconds, action, container name, exit code, signal).
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub nanos: i64,
    pub action: String,
    pub name: String,
    pub exit_code: String,
    pub signal: String,
}

pub fn parse_events(text: &str) -> Vec<Event> {
    text.lines()
        .filter_map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            let clean = |i: usize| {
                cols.get(i)
                    .map(|s| s.trim())
                    .filter(|s| *s != "<no value>")
                    .unwrap_or("")
                    .to_string()
            };
            Some(Event {
                nanos: cols.first()?.trim().parse().ok()?,
                action: clean(1),
                name: clean(2),
                exit_code: clean(3),
                signal: clean(4),
            })
        })
        .collect()
}

/// How a removed replica stopped: SIGTERM, then its exit code, and whether it had to be killed.
fn shutdown(events: &[Event], number: u32) -> Result<(f64, String), String> {
    let suffix = format!("-{API}-{number}");
    let mine: Vec<&Event> = events
        .iter()
        .filter(|e| e.name.ends_with(&suffix))
        .collect();
    let term = mine
        .iter()
        .find(|e| e.action == "kill" && e.signal == "15")
        .ok_or("no SIGTERM event")?;
    if mine.iter().any(|e| e.action == "kill" && e.signal == "9") {
        return Err("it had to be killed (SIGKILL after the grace period)".into());
    }
    let die = mine
        .iter()
        .find(|e| e.action == "die")
        .ok_or("no die event")?;
    Ok(((die.nanos - term.nanos) as f64 / 1e9, die.exit_code.clone()))
}

pub fn judge(
    before: &BTreeSet<u32>,
    after: &BTreeSet<u32>,
    target: u32,
    sent: &[Sent],
    stored: &BTreeSet<String>,
    events: &[Event],
    scale_seconds: f64,
) -> Verdict {
    let mut v = Verdict::default();
    let removed: Vec<u32> = before.difference(after).copied().collect();
    v.require(after.len() as u32 == target, || {
        format!(
            "{} replicas after scaling to {target}: {after:?}",
            after.len()
        )
    });
    v.figure(format!(
        "scaled {} → {} in {scale_seconds:.1} s; removed {}",
        before.len(),
        after.len(),
        removed
            .iter()
            .map(|n| format!("api-{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    for number in &removed {
        match shutdown(events, *number) {
            Ok((seconds, code)) if code == "0" => v.figure(format!(
                "api-{number}: SIGTERM → exit 0 in {seconds:.2} s (graceful, no SIGKILL)"
            )),
            Ok((seconds, code)) => v.problem(format!(
                "api-{number} exited with code {code} {seconds:.2} s after SIGTERM"
            )),
            Err(why) => v.problem(format!("api-{number} did not stop gracefully: {why}")),
        }
    }

    let mut counts: BTreeMap<u32, [usize; 4]> = BTreeMap::new();
    let mut failures = Vec::new();
    for s in sent {
        let class = classify(s, stored);
        let slot = match &class {
            Class::Ok => 0,
            Class::Refused => 1,
            Class::ClosedUnaccepted => 2,
            Class::AcceptedFailed(why) => {
                failures.push(format!("api-{}: {why}", s.replica));
                3
            }
        };
        counts.entry(s.replica).or_default()[slot] += 1;
    }
    let total = |i: usize| counts.values().map(|c| c[i]).sum::<usize>();
    v.figure(format!(
        "{} requests: {} ok, {} refused ({} connection refused, {} closed before any response with no side effect), {} accepted-but-failed",
        sent.len(),
        total(0),
        total(1) + total(2),
        total(1),
        total(2),
        total(3)
    ));
    for (number, c) in &counts {
        v.figure(format!(
            "  api-{number}{}: {} ok, {} refused, {} closed unaccepted, {} accepted-but-failed",
            if removed.contains(number) {
                " (removed)"
            } else {
                ""
            },
            c[0],
            c[1],
            c[2],
            c[3]
        ));
    }
    if !failures.is_empty() {
        v.problem(format!(
            "{} accepted requests failed; first: {}",
            failures.len(),
            failures[..failures.len().min(3)].join("; ")
        ));
    }
    for number in after {
        let c = counts.get(number).copied().unwrap_or_default();
        v.require(c[0] > 0 && c[1] + c[2] == 0, || {
            format!(
                "api-{number} stays, yet {} of its requests were refused",
                c[1] + c[2]
            )
        });
    }
    for number in &removed {
        let c = counts.get(number).copied().unwrap_or_default();
        v.require(c[0] > 0, || {
            format!("api-{number} served nothing before it was removed: the load did not reach it")
        });
        let last = sent
            .iter()
            .rev()
            .find(|s| s.replica == *number)
            .map(|s| classify(s, stored));
        v.require(last == Some(Class::Refused), || {
            format!("api-{number}'s last request after removal was {last:?}, not refused")
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::http::Reply;

    fn ok(replica: u32) -> Sent {
        Sent {
            replica,
            kind: Kind::Read { sha256: "x".into() },
            outcome: Outcome::Reply(Reply {
                status: 200,
                headers: vec![],
                body: vec![],
            }),
        }
    }

    fn refused(replica: u32) -> Sent {
        Sent {
            replica,
            kind: Kind::Read { sha256: "x".into() },
            outcome: Outcome::Refused("connection refused".into()),
        }
    }

    fn closed_upload(replica: u32, name: &str) -> Sent {
        Sent {
            replica,
            kind: Kind::Upload { name: name.into() },
            outcome: Outcome::ClosedBeforeResponse("end of stream".into()),
        }
    }

    fn events() -> Vec<Event> {
        parse_events(
            "1000000000\tkill\tscaling-resilience-api-2\t<no value>\t15\n\
             1050000000\tdie\tscaling-resilience-api-2\t0\t<no value>\n\
             1060000000\tdestroy\tscaling-resilience-api-2\t<no value>\t<no value>\n",
        )
    }

    fn clean() -> Vec<Sent> {
        vec![
            ok(1),
            ok(2),
            ok(1),
            closed_upload(2, "scale-2-9.bin"),
            refused(2),
            ok(1),
        ]
    }

    #[test]
    fn a_graceful_scale_down_with_refused_requests_passes() {
        let v = judge(
            &[1, 2].into(),
            &[1].into(),
            1,
            &clean(),
            &BTreeSet::new(),
            &events(),
            1.2,
        );
        assert!(v.passed(), "{:?}", v.problems);
        let text = v.figures.join("\n");
        assert!(text.contains("api-2: SIGTERM → exit 0 in 0.05 s"), "{text}");
        assert!(text.contains("6 requests: 4 ok, 2 refused (1 connection refused, 1 closed before any response with no side effect), 0 accepted-but-failed"), "{text}");
    }

    #[test]
    fn an_upload_stored_without_an_answer_is_accepted_but_failed() {
        let stored: BTreeSet<String> = ["scale-2-9.bin".to_string()].into();
        let v = judge(
            &[1, 2].into(),
            &[1].into(),
            1,
            &clean(),
            &stored,
            &events(),
            1.2,
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("1 accepted requests failed")
                    && p.contains("was stored but the client got no answer")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn cut_responses_and_5xx_are_accepted_but_failed() {
        let mut sent = clean();
        sent.insert(
            1,
            Sent {
                replica: 2,
                kind: Kind::Read { sha256: "x".into() },
                outcome: Outcome::Broken {
                    got: 10,
                    error: "reset".into(),
                },
            },
        );
        sent.insert(
            1,
            Sent {
                replica: 2,
                kind: Kind::Read { sha256: "x".into() },
                outcome: Outcome::Reply(Reply {
                    status: 502,
                    headers: vec![],
                    body: vec![],
                }),
            },
        );
        let v = judge(
            &[1, 2].into(),
            &[1].into(),
            1,
            &sent,
            &BTreeSet::new(),
            &events(),
            1.2,
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("2 accepted requests failed")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn a_killed_replica_or_a_refused_survivor_fails() {
        let mut events = events();
        events.push(Event {
            nanos: 11_000_000_000,
            action: "kill".into(),
            name: "scaling-resilience-api-2".into(),
            exit_code: String::new(),
            signal: "9".into(),
        });
        let mut sent = clean();
        sent.push(refused(1));
        let v = judge(
            &[1, 2].into(),
            &[1].into(),
            1,
            &sent,
            &BTreeSet::new(),
            &events,
            11.0,
        );
        let text = v.problems.join("\n");
        assert!(
            text.contains("api-2 did not stop gracefully: it had to be killed"),
            "{text}"
        );
        assert!(
            text.contains("api-1 stays, yet 1 of its requests were refused"),
            "{text}"
        );
    }

    #[test]
    fn a_removed_replica_still_answering_at_the_end_fails() {
        let mut sent = clean();
        sent.push(ok(2));
        let v = judge(
            &[1, 2].into(),
            &[1].into(),
            1,
            &sent,
            &BTreeSet::new(),
            &events(),
            1.2,
        );
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("api-2's last request after removal")),
            "{:?}",
            v.problems
        );
    }
}
