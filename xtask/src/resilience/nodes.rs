//! Scenarios 11 and 12, a node drained and a node lost, on a Swarm of several nodes on this
//! machine (`stack::swarm::cluster`) with the shared data directory: N replicas spread over the
//! nodes while a client stores and reads documents through every replica. Drain: `docker node
//! update --availability drain` of a worker, then Swarm moves its tasks. Loss: a worker's
//! container killed outright, its engine and tasks gone without a word to the manager, then
//! Swarm marks it down and reschedules. Both pass when all N are healthy again on the other
//! nodes, every request a replica accepted succeeded (on loss: except those in flight on the
//! lost node, which no server can answer, counted apart), and every stored document reads
//! back, byte for byte, afterwards.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{
    pseudo_random_bytes,
    scale_down::{classify, Class, Kind, Sent},
    sha256_hex, writers, Verdict,
};
use crate::{
    stack::{http, swarm::cluster::Cluster, Stack},
    ui,
};

/// The nodes the scenarios run on: a manager and two workers, so a worker can go and the
/// replicas still have two nodes.
pub const NODES: u32 = 3;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const PAUSE: Duration = Duration::from_millis(40);
const LOAD_BEFORE: Duration = Duration::from_secs(2);
/// After the recovery the client goes on until this many more requests went out: a request
/// to a task that is gone can hang until its timeout, so a fixed time could see none.
const REQUESTS_AFTER: usize = 20;
const AFTER_TIMEOUT: Duration = Duration::from_secs(60);
/// Swarm marks a silent node down after missing heartbeats (5 s each by default), then
/// starts its tasks elsewhere.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// What is done to the node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    Drain,
    Loss,
}

impl Event {
    fn prefix(self) -> &'static str {
        match self {
            Event::Drain => "node-drain",
            Event::Loss => "node-loss",
        }
    }
}

/// Scenario 11: a worker drained under load; made active again afterwards (its tasks stay
/// where Swarm moved them).
pub fn drain(stack: &Stack, cluster: &Cluster) -> Result<Verdict> {
    let verdict = under_load(stack, cluster, Event::Drain);
    for node in &cluster.nodes[1..] {
        let _ = cluster.set_availability(&node.name, "active");
    }
    verdict
}

/// Scenario 12: a worker's container killed under load.
pub fn loss(stack: &Stack, cluster: &Cluster) -> Result<Verdict> {
    under_load(stack, cluster, Event::Loss)
}

/// The worker running the most api tasks (a drain or loss there moves the most).
/// `tasks`: slot → node of the current tasks.
fn busiest_worker(tasks: &BTreeMap<u32, String>, cluster: &Cluster) -> Option<String> {
    let mut per_node: BTreeMap<String, usize> = cluster.nodes[1..]
        .iter()
        .map(|n| (n.name.clone(), 0))
        .collect();
    for node in tasks.values() {
        if let Some(k) = per_node.get_mut(node) {
            *k += 1;
        }
    }
    per_node
        .into_iter()
        .filter(|(_, k)| *k > 0)
        .max_by_key(|(_, k)| *k)
        .map(|(n, _)| n)
}

fn under_load(stack: &Stack, cluster: &Cluster, event: Event) -> Result<Verdict> {
    let n = stack.replicas;
    let before = stack.swarm_tasks()?.context("not on Swarm")?.nodes();
    let Some(victim) = busiest_worker(&before, cluster) else {
        bail!("not exercised: no worker node runs an api task");
    };

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicUsize::new(0));
    let detached = stack.detach();
    let load = {
        let (stop, done, prefix) = (stop.clone(), done.clone(), event.prefix());
        std::thread::spawn(move || -> Result<Load> {
            let sh = detached.shell()?;
            let stack = detached.attach(&sh);
            client(&stack, prefix, &stop, &done)
        })
    };
    std::thread::sleep(LOAD_BEFORE);
    let t_event = Instant::now();
    match event {
        Event::Drain => {
            ui::note(&format!("draining {victim}"));
            cluster.set_availability(&victim, "drain")?;
        }
        Event::Loss => {
            ui::note(&format!(
                "killing node {victim} (its container: engine and tasks)"
            ));
            cluster.kill_node(&victim)?;
        }
    }
    let recovered = wait_tasks_healthy(stack, n, Some(&victim), RECOVERY_TIMEOUT);
    let recovery_s = t_event.elapsed().as_secs_f64();
    let base = done.load(Ordering::Relaxed);
    let after = Instant::now();
    while done.load(Ordering::Relaxed) < base + REQUESTS_AFTER + 1
        && after.elapsed() < AFTER_TIMEOUT
        && !load.is_finished()
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let (sent, stored, sent_at) = load
        .join()
        .map_err(|_| anyhow::anyhow!("the load thread panicked"))??;

    let down = (event == Event::Loss).then(|| {
        cluster
            .wait_node_status(&victim, "Down", Duration::from_secs(1))
            .map(drop)
            .map_err(|e| format!("{e:#}"))
    });
    let names = stack.sql(&format!(
        "SELECT name FROM documents WHERE name LIKE '{}-%'",
        event.prefix()
    ))?;
    let missing = read_back(stack, &stored)?;
    let observed = Observed {
        event,
        replicas: n,
        victim,
        before,
        recovered: recovered.map_err(|e| format!("{e:#}")),
        recovery_s,
        down,
        requests: sent
            .into_iter()
            .zip(sent_at)
            .map(|(s, at)| {
                let after = if at >= t_event {
                    at.duration_since(t_event).as_secs_f64()
                } else {
                    -t_event.duration_since(at).as_secs_f64()
                };
                (s, after)
            })
            .collect(),
        in_db: names.lines().map(String::from).collect(),
        stored: stored.len(),
        missing,
    };
    let mut v = judge(&observed);
    writers::verify_holdings(&mut v, stack, "afterwards")?;
    Ok(v)
}

/// Every document the client stored, read back through the replicas in turn: what is missing
/// or changed, one line each.
fn read_back(stack: &Stack, stored: &[(String, String)]) -> Result<Vec<String>> {
    let running: Vec<_> = stack
        .api_containers()?
        .into_iter()
        .filter(|c| c.state == "running")
        .collect();
    let routes = stack.http_routes(&running)?;
    let numbers: Vec<u32> = routes.by_number.keys().copied().collect();
    if numbers.is_empty() {
        bail!("no replica to read the stored documents back through");
    }
    let mut missing = Vec::new();
    for (i, (id, sha)) in stored.iter().enumerate() {
        let through = numbers[i % numbers.len()];
        let request = http::request("GET", &format!("/documents/{id}/content"), &[], b"");
        match routes.reply(through, &request, REQUEST_TIMEOUT) {
            Ok(r) if r.status == 200 && sha256_hex(&r.body) == *sha => {}
            Ok(r) => missing.push(format!(
                "{id} through api.{through}: {} ({} bytes)",
                r.status,
                r.body.len()
            )),
            Err(e) => missing.push(format!("{id} through api.{through}: {e}")),
        }
    }
    Ok(missing)
}

/// What a node scenario saw.
#[derive(Clone, Debug)]
pub struct Observed {
    pub event: Event,
    pub replicas: u32,
    pub victim: String,
    /// Slot → node before the event.
    pub before: BTreeMap<u32, String>,
    /// Slot → node once all were healthy again off the victim, or why not.
    pub recovered: Result<BTreeMap<u32, String>, String>,
    /// Seconds from the event to the recovery (or to giving up).
    pub recovery_s: f64,
    /// On loss: whether the manager lists the victim as Down.
    pub down: Option<Result<(), String>>,
    /// Each request and when it went out, in seconds after the event (negative: before).
    pub requests: Vec<(Sent, f64)>,
    /// Names of the client's documents in the database (an upload without an answer that
    /// was stored anyway was accepted).
    pub in_db: BTreeSet<String>,
    /// Documents a replica said it stored, and those of them not read back identical.
    pub stored: usize,
    pub missing: Vec<String>,
}

/// The verdict: all healthy again off the victim; every request a replica accepted succeeded
/// (on loss, those to the lost node's tasks between the kill and the recovery are counted
/// apart: nothing was left to answer them); nothing stored was lost; and it was exercised
/// (requests succeeded, some after the recovery, documents were stored).
pub fn judge(o: &Observed) -> Verdict {
    let mut v = Verdict::default();
    let verb = match o.event {
        Event::Drain => "drain",
        Event::Loss => "kill",
    };
    v.figure(format!("tasks before: {}", spread(&o.before)));
    match &o.recovered {
        Ok(after) => v.figure(format!(
            "{} healthy again {:.1} s after the {verb}, none on {}: {}",
            o.replicas,
            o.recovery_s,
            o.victim,
            spread(after)
        )),
        Err(e) => v.problem(format!("not recovered: {e}")),
    }
    match &o.down {
        Some(Ok(())) => v.figure(format!("the manager lists {} as Down", o.victim)),
        Some(Err(e)) => v.problem(e.clone()),
        None => {}
    }
    let on_victim: BTreeSet<u32> = o
        .before
        .iter()
        .filter(|(_, node)| **node == o.victim)
        .map(|(slot, _)| *slot)
        .collect();
    let in_loss = |after: f64| o.event == Event::Loss && (0.0..=o.recovery_s).contains(&after);
    let (mut ok, mut refused, mut in_flight) = (0, 0, 0);
    let mut failures = Vec::new();
    for (s, after) in &o.requests {
        match classify(s, &o.in_db) {
            Class::Ok => ok += 1,
            Class::Refused | Class::ClosedUnaccepted => refused += 1,
            Class::AcceptedFailed(_) if in_loss(*after) && on_victim.contains(&s.replica) => {
                in_flight += 1
            }
            Class::AcceptedFailed(why) => {
                failures.push(format!("api.{} ({after:+.1} s): {why}", s.replica))
            }
        }
    }
    v.figure(format!(
        "{} requests: {ok} ok, {refused} refused (nothing accepted), {} accepted-but-failed{}",
        o.requests.len(),
        failures.len(),
        if o.event == Event::Loss {
            format!(", {in_flight} in flight on the lost node (allowed: no server left to answer)")
        } else {
            String::new()
        }
    ));
    for f in failures.iter().take(10) {
        v.problem(f.clone());
    }
    v.require(ok > 0, || "not exercised: no request succeeded".into());
    v.require(
        o.requests.iter().any(|(_, after)| *after > o.recovery_s),
        || "not exercised: no request after the recovery".into(),
    );
    v.require(o.stored > 0, || {
        "not exercised: no document was stored".into()
    });
    if o.missing.is_empty() {
        v.figure(format!(
            "all {} stored documents read back identical afterwards",
            o.stored
        ));
    } else {
        v.problem(format!(
            "{} of {} stored documents lost or changed: {}",
            o.missing.len(),
            o.stored,
            o.missing[..o.missing.len().min(5)].join("; ")
        ));
    }
    v
}

/// Waits until `n` current tasks are running with their own container healthy, and none is on
/// `avoid`; the slot → node map then. (A slot whose new task has not started yet still shows
/// its old container: that one does not count.)
pub fn wait_tasks_healthy(
    stack: &Stack,
    n: u32,
    avoid: Option<&str>,
    timeout: Duration,
) -> Result<BTreeMap<u32, String>> {
    let started = Instant::now();
    loop {
        let tasks = stack.swarm_tasks()?.context("not on Swarm")?;
        let current = tasks.current();
        let healthy: BTreeMap<u32, String> = current
            .iter()
            .filter(|(_, (t, c))| {
                t.is_running()
                    && !t.node.is_empty()
                    && Some(t.node.as_str()) != avoid
                    && c.is_some_and(|c| c.task_id == t.id && c.is_healthy())
            })
            .map(|(slot, (t, _))| (*slot, t.node.clone()))
            .collect();
        if healthy.len() == n as usize && current.len() == n as usize {
            return Ok(healthy);
        }
        if started.elapsed() > timeout {
            bail!(
                "{} of {n} tasks healthy{} {} s after, tasks on {}",
                healthy.len(),
                avoid.map(|a| format!(" off {a}")).unwrap_or_default(),
                timeout.as_secs(),
                spread(&tasks.nodes())
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// `node-1 2, node-2 1`: tasks per node.
fn spread(nodes: &BTreeMap<u32, String>) -> String {
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for node in nodes.values() {
        *per.entry(node).or_default() += 1;
    }
    per.iter()
        .map(|(n, k)| format!("{n} {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What the client sent, the documents it stored (id, sha256), and when each request went out.
type Load = (Vec<Sent>, Vec<(String, String)>, Vec<Instant>);

/// The client: through every current replica in turn, stores a small document, then reads
/// back one stored earlier through the next replica; the replicas' addresses are resolved
/// again every second (tasks move). `done` counts the requests answered or given up. Returns what it sent, the documents stored (id, sha256)
/// and when each request went out.
fn client(stack: &Stack, prefix: &str, stop: &AtomicBool, done: &AtomicUsize) -> Result<Load> {
    let running = |stack: &Stack| -> Result<Vec<crate::stack::parse::Container>> {
        Ok(stack
            .api_containers()?
            .into_iter()
            .filter(|c| c.state == "running")
            .collect())
    };
    let mut routes = stack.http_routes(&running(stack)?)?;
    let mut refreshed = Instant::now();
    let (mut sent, mut stored, mut at) = (Vec::new(), Vec::new(), Vec::new());
    let mut seq: u64 = 0;
    while !stop.load(Ordering::Relaxed) {
        if refreshed.elapsed() > Duration::from_secs(1) {
            if let Ok(c) = running(stack) {
                let _ = stack.reroute(&mut routes, &c);
            }
            refreshed = Instant::now();
        }
        let numbers: Vec<u32> = routes.by_number.keys().copied().collect();
        if numbers.is_empty() {
            std::thread::sleep(PAUSE);
            continue;
        }
        seq += 1;
        let replica = numbers[seq as usize % numbers.len()];
        let went_out = Instant::now();
        let (kind, outcome) = match (stored.last(), seq % 2) {
            (Some((id, sha)), 0) => {
                let sha: &String = sha;
                let request = http::request("GET", &format!("/documents/{id}/content"), &[], b"");
                let mut outcome = routes.send(replica, &request, REQUEST_TIMEOUT);
                if let http::Outcome::Reply(r) = &outcome {
                    if r.status == 200 && sha256_hex(&r.body) != *sha {
                        outcome = http::Outcome::Broken {
                            got: r.body.len(),
                            error: "other bytes than stored".into(),
                        };
                    }
                }
                (
                    Kind::Read {
                        sha256: sha.clone(),
                    },
                    outcome,
                )
            }
            _ => {
                let name = format!("{prefix}-{seq}.bin");
                let body = pseudo_random_bytes(seq, 2048);
                let request = http::request("POST", &format!("/documents?name={name}"), &[], &body);
                let outcome = routes.send(replica, &request, REQUEST_TIMEOUT);
                if let http::Outcome::Reply(r) = &outcome {
                    if r.status == 201 {
                        if let Some(id) = r.json().and_then(|j| j["id"].as_str().map(String::from))
                        {
                            stored.push((id, sha256_hex(&body)));
                        }
                    }
                }
                (Kind::Upload { name }, outcome)
            }
        };
        at.push(went_out);
        done.fetch_add(1, Ordering::Relaxed);
        sent.push(Sent {
            replica,
            kind,
            outcome,
        });
        std::thread::sleep(PAUSE);
    }
    Ok((sent, stored, at))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nodes(pairs: &[(u32, &str)]) -> BTreeMap<u32, String> {
        pairs.iter().map(|(s, n)| (*s, n.to_string())).collect()
    }

    fn reply(status: u16) -> http::Outcome {
        http::Outcome::Reply(http::Reply {
            status,
            headers: vec![],
            body: vec![],
        })
    }

    fn read(replica: u32, outcome: http::Outcome, after: f64) -> (Sent, f64) {
        let kind = Kind::Read { sha256: "x".into() };
        (
            Sent {
                replica,
                kind,
                outcome,
            },
            after,
        )
    }

    /// 4 tasks, api.2 and api.4 on worker n3, a steady client before, during and after.
    fn observed(event: Event) -> Observed {
        Observed {
            event,
            replicas: 4,
            victim: "n3".into(),
            before: nodes(&[(1, "n1"), (2, "n3"), (3, "n2"), (4, "n3")]),
            recovered: Ok(nodes(&[(1, "n1"), (2, "n2"), (3, "n2"), (4, "n1")])),
            recovery_s: 20.0,
            down: (event == Event::Loss).then_some(Ok(())),
            requests: vec![
                read(1, reply(200), -1.0),
                read(2, reply(200), -0.5),
                read(3, reply(200), 5.0),
                read(2, http::Outcome::Refused("No route to host".into()), 6.0),
                read(4, reply(200), 25.0),
            ],
            in_db: BTreeSet::new(),
            stored: 12,
            missing: vec![],
        }
    }

    #[test]
    fn a_clean_drain_and_a_clean_loss_pass() {
        for event in [Event::Drain, Event::Loss] {
            let v = judge(&observed(event));
            assert!(v.passed(), "{event:?}: {v:?}");
            assert!(v.figures.iter().any(|f| f.contains("1 refused")), "{v:?}");
        }
    }

    #[test]
    fn an_accepted_request_that_failed_fails_a_drain() {
        let mut o = observed(Event::Drain);
        o.requests.push(read(2, reply(502), 3.0));
        let v = judge(&o);
        assert!(!v.passed());
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("api.2 (+3.0 s): answered 502")),
            "{v:?}"
        );
    }

    #[test]
    fn on_loss_only_the_lost_nodes_requests_until_the_recovery_are_excused() {
        let cut = || http::Outcome::TimedOut { got: 0 };
        let mut o = observed(Event::Loss);
        o.requests.push(read(4, cut(), 1.0));
        let v = judge(&o);
        assert!(v.passed(), "{v:?}");
        assert!(v
            .figures
            .iter()
            .any(|f| f.contains("1 in flight on the lost node")));
        // the same failure on a surviving node's task, or after the recovery, is not excused
        for (replica, after) in [(3, 1.0), (4, 21.0)] {
            let mut o = observed(Event::Loss);
            o.requests.push(read(replica, cut(), after));
            assert!(!judge(&o).passed(), "api.{replica} at {after}");
        }
    }

    #[test]
    fn no_recovery_a_node_not_down_or_a_lost_document_fail() {
        let mut o = observed(Event::Loss);
        o.recovered = Err("3 of 4 tasks healthy off n3 120 s after".into());
        assert!(judge(&o)
            .problems
            .iter()
            .any(|p| p.starts_with("not recovered")));
        let mut o = observed(Event::Loss);
        o.down = Some(Err("node n3 was not Down within 1 s".into()));
        assert!(!judge(&o).passed());
        let mut o = observed(Event::Drain);
        o.missing = vec!["abc through api.1: 404 (0 bytes)".into()];
        let v = judge(&o);
        assert!(
            v.problems
                .iter()
                .any(|p| p.starts_with("1 of 12 stored documents lost")),
            "{v:?}"
        );
    }

    #[test]
    fn a_run_without_traffic_after_the_recovery_is_not_exercised() {
        let mut o = observed(Event::Drain);
        o.requests.retain(|(_, after)| *after < 20.0);
        let v = judge(&o);
        assert!(
            v.problems
                .iter()
                .any(|p| p == "not exercised: no request after the recovery"),
            "{v:?}"
        );
        let mut o = observed(Event::Drain);
        o.stored = 0;
        assert!(!judge(&o).passed());
    }
}
