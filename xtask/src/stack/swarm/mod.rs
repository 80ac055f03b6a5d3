//! Docker Swarm as the stack's second engine (`--engine swarm`): the stack file made from
//! `compose config`, the swarm's lifecycle, parsers of its output, and `Swarm`, what
//! `stack::Stack` holds to run the test stack as a Swarm stack. Its checks, on Swarm's terms,
//! are `scaling/swarm_checks.rs`; an end-to-end proof of the lifecycle alone is
//! `scaling/swarm_proof.rs`. Measured behaviour of this machine's engine is in the module docs
//! of `engine.rs`.

pub mod cluster;
pub mod engine;
pub mod parse;
pub mod relay;
pub mod stack_file;

use std::{
    cell::{Cell, OnceCell},
    collections::BTreeMap,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use self::{
    engine::SwarmStack,
    parse::{Task, TaskContainer},
};
use super::{parse::Container, API, DATA_DIR, DB};
use crate::docker::Compose;

/// A test stack deployed on Swarm: the compose project it is made from (its `config` is the
/// stack file's input) and the Swarm stack.
#[derive(Clone, Debug)]
pub struct Swarm {
    pub compose: Compose,
    pub stack: SwarmStack,
    /// `docker compose config --format json`, read once: every deploy of a run must carry the
    /// same passwords (a changed value would update, i.e. restart, the database).
    config: OnceCell<String>,
    /// This run initialised the swarm (set by `Stack::begin`).
    pub created_swarm: Cell<bool>,
    /// A client container started ahead of a round of requests (`Stack::prepare_http`): it
    /// boots while the replicas do, and the round takes it.
    client: std::sync::Arc<std::sync::Mutex<Option<relay::Relay>>>,
    /// The database task's container, once found (`Swarm::db_exec_with_env`); shared by the
    /// stack's handles on other threads.
    db_container: std::sync::Arc<std::sync::Mutex<Option<String>>>,
}

/// The tasks of a service and their containers, read together.
#[derive(Clone, Debug, Default)]
pub struct Tasks {
    pub tasks: Vec<Task>,
    pub containers: Vec<TaskContainer>,
}

impl Tasks {
    /// The current task of each slot with its container, by slot. While Swarm has not started
    /// a task's container yet (one replacing a stopped task waits out the restart delay as
    /// `Ready`, its container created but not started), the slot's latest started container
    /// stands for it, so its start time and its exit stay visible.
    pub fn current(&self) -> BTreeMap<u32, (&Task, Option<&TaskContainer>)> {
        self.tasks
            .iter()
            .filter(|t| t.is_current())
            .map(|t| {
                let own = self
                    .containers
                    .iter()
                    .filter(|c| c.task_id == t.id)
                    .max_by_key(|c| c.started_at);
                let earlier = || {
                    self.containers
                        .iter()
                        .filter(|c| c.slot == t.slot && c.started_at.is_some())
                        .max_by_key(|c| c.started_at)
                };
                let container = match own {
                    Some(c) if c.started_at.is_some() => Some(c),
                    _ => earlier().or(own),
                };
                (t.slot, (t, container))
            })
            .collect()
    }

    /// The current tasks in Compose's shape, numbered by slot, so the engine-neutral waits and
    /// checks read them as they read compose's containers. The state is the container's; one
    /// not yet created is `created`, a task Swarm failed or rejected is `exited`. `status`
    /// is Swarm's `CurrentState` (a task with a healthcheck is `Starting` until healthy).
    pub fn as_containers(&self, service: &str) -> Vec<Container> {
        self.current()
            .into_iter()
            .map(|(slot, (task, container))| {
                let (state, health, exit_code, id) = match container {
                    _ if task.is_failure() => {
                        ("exited".to_string(), String::new(), 1, String::new())
                    }
                    Some(c) => (
                        c.status.clone(),
                        c.health.clone(),
                        c.exit_code,
                        c.id.clone(),
                    ),
                    None => ("created".to_string(), String::new(), 0, String::new()),
                };
                Container {
                    id,
                    name: format!("{service}.{slot}"),
                    service: service.to_string(),
                    number: slot,
                    state,
                    health,
                    exit_code,
                    status: task.state_text.clone(),
                }
            })
            .collect()
    }

    /// Tasks Swarm started before the current one, by slot: Swarm's restarts (it replaces a
    /// task whose container exited or turned unhealthy, where Compose restarts the container).
    pub fn replaced(&self) -> BTreeMap<u32, u32> {
        let mut counts = BTreeMap::new();
        for t in &self.tasks {
            let n = counts.entry(t.slot).or_insert(0);
            if !t.is_current() {
                *n += 1;
            }
        }
        counts
    }

    /// Slot → node of the current tasks.
    pub fn nodes(&self) -> BTreeMap<u32, String> {
        self.current()
            .into_iter()
            .map(|(slot, (t, _))| (slot, t.node.clone()))
            .collect()
    }
}

impl Swarm {
    pub fn new(compose: Compose, stack: SwarmStack) -> Swarm {
        Swarm {
            compose,
            stack,
            config: OnceCell::new(),
            created_swarm: Cell::new(false),
            client: Default::default(),
            db_container: Default::default(),
        }
    }

    fn config(&self, sh: &Shell) -> Result<&str> {
        if self.config.get().is_none() {
            let text = self
                .compose
                .run(sh, &["config", "--format", "json"])
                .context("resolving the compose file for the stack file")?;
            let _ = self.config.set(text);
        }
        Ok(self.config.get().map(String::as_str).unwrap_or_default())
    }

    /// `stack deploy` with `api` api tasks (every other service one); returns at once.
    pub fn deploy(&self, sh: &Shell, api: u32) -> Result<()> {
        let file = stack_file::from_compose_config(self.config(sh)?, api)?;
        self.stack.deploy(sh, &file)
    }

    /// Starts a client container of `image` on the stack's network for the next round of
    /// requests, unless one is waiting already. It boots in the background.
    pub fn prepare_client(&self, image: &str) -> Result<()> {
        let mut client = self.client.lock().unwrap_or_else(|p| p.into_inner());
        if client.is_none() {
            *client = Some(self.stack.relay(image)?);
        }
        Ok(())
    }

    /// The client container prepared ahead, or a new one.
    pub fn client(&self, image: &str) -> Result<relay::Relay> {
        let prepared = self.client.lock().unwrap_or_else(|p| p.into_inner()).take();
        match prepared {
            Some(relay) => Ok(relay),
            None => self.stack.relay(image),
        }
    }

    /// What the compose file says that `stack deploy` ignores, for the report.
    pub fn dropped(&self, sh: &Shell) -> Result<Vec<String>> {
        Ok(stack_file::from_compose_config(self.config(sh)?, 1)?.dropped)
    }

    pub fn tasks(&self, sh: &Shell, service: &str) -> Result<Tasks> {
        Ok(Tasks {
            tasks: self.stack.tasks(sh, service)?,
            containers: self.stack.containers(sh, service)?,
        })
    }

    /// The container of the current task of `slot`.
    pub fn container_of(&self, sh: &Shell, service: &str, slot: u32) -> Result<String> {
        let tasks = self.tasks(sh, service)?;
        match tasks.current().get(&slot) {
            Some((_, Some(c))) => Ok(c.id.clone()),
            Some((t, None)) => bail!("{} has no container ({})", t.label(), t.state_text),
            None => bail!("{service}.{slot} has no current task"),
        }
    }

    /// `docker exec` with `env` in the database's container: found once and remembered, and
    /// found again if it is gone or stopped (Swarm replaced the task).
    pub fn db_exec_with_env(
        &self,
        sh: &Shell,
        env: &[(&str, &str)],
        argv: &[&str],
    ) -> Result<std::process::Output> {
        let remembered = self
            .db_container
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(id) = remembered {
            let out = self.stack.exec_with_env(sh, &id, env, argv)?;
            if !container_was_gone(&out) {
                return Ok(out);
            }
        }
        let id = self.container_of(sh, DB, 1)?;
        *self.db_container.lock().unwrap_or_else(|p| p.into_inner()) = Some(id.clone());
        self.stack.exec_with_env(sh, &id, env, argv)
    }

    /// Removes the api service and waits until its containers are gone (the database and the
    /// volumes stay). A later `deploy` creates it again with a history of its own.
    pub fn remove_service(&self, sh: &Shell, service: &str, timeout: Duration) -> Result<()> {
        self.stack.remove_service(sh, service)?;
        let start = Instant::now();
        while !self.stack.containers(sh, service)?.is_empty() {
            if start.elapsed() > timeout {
                bail!(
                    "the containers of {} were still there {} s after `service rm`",
                    self.stack.service(service),
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(300));
        }
        Ok(())
    }

    /// The stack's volume mounted at the shared data directory by the api: `<stack>_<name>`.
    pub fn data_volume(&self, sh: &Shell) -> Result<String> {
        let config: serde_json::Value = serde_json::from_str(self.config(sh)?)?;
        let source = config["services"][API]["volumes"]
            .as_array()
            .and_then(|v| {
                v.iter()
                    .find(|m| m["target"] == DATA_DIR && m["type"] == "volume")
            })
            .and_then(|m| m["source"].as_str())
            .with_context(|| format!("the api mounts no named volume at {DATA_DIR}"))?;
        Ok(format!("{}_{source}", self.stack.name))
    }

    /// Every task container's log lines (exited ones included) in compose's
    /// `logs --timestamps` shape, `api.3 | <time> <line>`, so the engine-neutral log parser
    /// reads them. Read with `docker logs` from each container of this node: `docker service
    /// logs` was seen to print nothing at all for a service whose tasks were unhealthy
    /// (`--fault data-not-writable`), and the check runs on one node anyway.
    pub fn logs_as_compose(&self, sh: &Shell, service: &str) -> Result<String> {
        self.logs_of(sh, service, &self.tasks(sh, service)?)
    }

    /// `logs_as_compose` of tasks already read; every container's log read at once.
    pub fn logs_of(&self, sh: &Shell, service: &str, tasks: &Tasks) -> Result<String> {
        let stack = &self.stack;
        let jobs = tasks.containers.iter().map(|c| (sh.clone(), c));
        let texts = crate::parallel::map(jobs, |(sh, c)| stack.container_log(&sh, &c.id));
        let mut lines = Vec::new();
        for (c, text) in tasks.containers.iter().zip(texts) {
            let node = tasks
                .tasks
                .iter()
                .find(|t| t.id == c.task_id)
                .map_or("", |t| t.node.as_str());
            lines.extend(parse::container_logs(&text?, c.slot, &c.task_id, node));
        }
        Ok(compose_shaped(&lines, service))
    }
}

/// Whether `docker exec` failed because its container is gone or stopped, not because of the
/// command it ran (the CLI's own messages, exit status 1).
fn container_was_gone(out: &std::process::Output) -> bool {
    let stderr = String::from_utf8_lossy(&out.stderr);
    !out.status.success()
        && (stderr.contains("No such container") || stderr.contains("is not running"))
}

/// Task log lines as `docker compose logs --timestamps` prints them, `api.3 | <time> <line>`,
/// in time order: `stack::parse::logs` then numbers them by slot.
pub fn compose_shaped(lines: &[parse::TaskLogLine], service: &str) -> String {
    let mut lines: Vec<&parse::TaskLogLine> = lines.iter().collect();
    lines.sort_by_key(|l| l.time);
    lines
        .iter()
        .map(|l| {
            format!(
                "{service}.{} | {} {}\n",
                l.slot,
                l.time.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
                l.message
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::parse as compose_parse;

    fn load(name: &str) -> String {
        let path = format!("{}/testdata/swarm/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn recorded(ps: &str) -> Tasks {
        Tasks {
            tasks: parse::tasks(&load(ps)).unwrap(),
            containers: parse::task_containers(&load("inspect-api.json")).unwrap(),
        }
    }

    #[test]
    fn only_the_clis_own_messages_say_the_container_is_gone() {
        use std::os::unix::process::ExitStatusExt;
        let out = |code: i32, stderr: &str| std::process::Output {
            status: std::process::ExitStatus::from_raw(code << 8),
            stdout: Vec::new(),
            stderr: stderr.as_bytes().to_vec(),
        };
        // As Docker 20.10's CLI printed them for a removed and for a stopped container.
        assert!(container_was_gone(&out(
            1,
            "Error response from daemon: No such container: 3f2a"
        )));
        assert!(container_was_gone(&out(
            1,
            "Error response from daemon: Container 6582 is not running"
        )));
        // The SQL itself failing is the caller's to report, not a reason to look again.
        assert!(!container_was_gone(&out(
            1,
            "ERROR 1064 (42000): You have an error in your SQL syntax"
        )));
        assert!(!container_was_gone(&out(0, "")));
    }

    fn current_task_id(tasks: &Tasks, slot: u32) -> String {
        let task = tasks
            .tasks
            .iter()
            .find(|t| t.is_current() && t.slot == slot);
        task.expect("a current task in the slot").id.clone()
    }

    #[test]
    fn current_tasks_read_as_replicas_numbered_by_slot() {
        let tasks = recorded("service-ps-api-converged.jsonl");
        let replicas = tasks.as_containers("api");
        assert_eq!(
            replicas.iter().map(|c| c.number).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert!(replicas.iter().all(|c| c.is_healthy()), "{replicas:?}");
        assert!(replicas.iter().all(|c| c.status.starts_with("Running")));
        assert_eq!(replicas[0].name, "api.1");
        assert_eq!(tasks.nodes().get(&2).map(String::as_str), Some("vm"));
    }

    #[test]
    fn a_three_node_cluster_lists_its_leader_and_two_workers_and_a_lost_one_as_down() {
        let nodes = parse::nodes(&load("cluster-node-ls.jsonl")).unwrap();
        let names: Vec<&str> = nodes.iter().map(|n| n.hostname.as_str()).collect();
        assert_eq!(
            names,
            ["scaling-node-1", "scaling-node-2", "scaling-node-3"]
        );
        assert_eq!(nodes[0].manager_status, "Leader");
        assert!(nodes[1..].iter().all(|n| n.manager_status.is_empty()));
        assert!(nodes.iter().all(|n| n.status == "Ready"));
        let after = parse::nodes(&load("cluster-node-ls-node3-down.jsonl")).unwrap();
        assert_eq!(after[2].status, "Down");
        assert_eq!(after[2].availability, "Active");
    }

    #[test]
    fn tasks_spread_over_the_nodes_and_a_lost_nodes_task_is_history() {
        let spread = |file: &str| Tasks {
            tasks: parse::tasks(&load(file)).unwrap(),
            containers: vec![],
        };
        let before = spread("cluster-service-ps-api.jsonl");
        assert_eq!(
            before
                .nodes()
                .values()
                .collect::<std::collections::BTreeSet<_>>()
                .len(),
            3
        );
        // node 3 killed: slot 4's task there is history (desired Shutdown, its state still
        // the last one the node reported), its replacement runs on node 2
        let after = spread("cluster-service-ps-api-node3-lost.jsonl");
        assert_eq!(
            after.nodes().get(&4).map(String::as_str),
            Some("scaling-node-2")
        );
        assert!(!after.nodes().values().any(|n| n == "scaling-node-3"));
        assert_eq!(after.replaced().get(&4), Some(&1));
        assert_eq!(after.replaced().get(&1), Some(&0));
    }

    #[test]
    fn each_slots_earlier_tasks_are_its_restarts() {
        // the recorded run's api tasks each failed once before the database was up
        let tasks = recorded("service-ps-api-converged.jsonl");
        assert_eq!(
            tasks.replaced(),
            BTreeMap::from([(1, 1), (2, 1), (3, 1), (4, 1)])
        );
        let killed = recorded("service-ps-api-killed.jsonl");
        assert_eq!(killed.replaced().get(&3), Some(&2));
    }

    #[test]
    fn a_task_not_started_yet_stands_as_its_slots_last_container() {
        // slot 3's current task lost its container; the slot's earlier one exited 1
        let mut tasks = recorded("service-ps-api-converged.jsonl");
        let id = current_task_id(&tasks, 3);
        tasks.containers.retain(|c| c.task_id != id);
        let replicas = tasks.as_containers("api");
        let slot3 = replicas.iter().find(|c| c.number == 3).unwrap();
        assert_eq!((slot3.state.as_str(), slot3.exit_code), ("exited", 1));
        assert!(slot3.is_down() && !slot3.id.is_empty());
    }

    #[test]
    fn a_task_whose_container_is_created_but_not_started_stands_as_the_earlier_one() {
        let mut tasks = recorded("service-ps-api-converged.jsonl");
        let id = current_task_id(&tasks, 3);
        for c in tasks.containers.iter_mut().filter(|c| c.task_id == id) {
            (c.status, c.health, c.started_at) = ("created".into(), String::new(), None);
        }
        let replicas = tasks.as_containers("api");
        let slot3 = replicas.iter().find(|c| c.number == 3).unwrap();
        assert_eq!((slot3.state.as_str(), slot3.exit_code), ("exited", 1));
    }

    #[test]
    fn a_rejected_task_reads_as_an_exited_replica() {
        let tasks = recorded("service-ps-api-rejected.jsonl");
        let replicas = tasks.as_containers("api");
        let slot2 = replicas.iter().find(|c| c.number == 2).unwrap();
        assert!(slot2.is_down(), "{slot2:?}");
        assert!(slot2.status.starts_with("Rejected"));
    }

    #[test]
    fn a_slot_without_any_container_yet_is_created_not_down() {
        let mut tasks = recorded("service-ps-api-converged.jsonl");
        tasks.containers.retain(|c| c.slot != 3);
        let replicas = tasks.as_containers("api");
        let slot3 = replicas.iter().find(|c| c.number == 3).unwrap();
        assert_eq!(slot3.state, "created");
        assert!(!slot3.is_down() && !slot3.is_healthy());
    }

    #[test]
    fn a_task_containers_start_and_health_is_numbered_by_its_slot() {
        // `Docker::start_and_health` of 4 task containers: no compose number, the task's name
        let times = compose_parse::parse_inspect(&load("start-and-health.txt")).unwrap();
        let mut slots: Vec<u32> = times.iter().map(|t| t.number).collect();
        slots.sort_unstable();
        assert_eq!(slots, [1, 2, 3, 4]);
        assert!(times
            .iter()
            .all(|t| t.started_at.is_some() && !t.probes.is_empty()));
    }

    #[test]
    fn service_logs_in_compose_shape_feed_the_start_up_parser_by_slot() {
        let lines = parse::service_logs(&load("service-logs.txt"));
        let text = compose_shaped(&lines, "api");
        let parsed = compose_parse::logs(&text);
        assert_eq!(parsed.len(), lines.len());
        assert!(parsed.windows(2).all(|w| w[0].time <= w[1].time));
        assert!(parsed.iter().all(|l| l.container.starts_with("api.")));
        let startups = compose_parse::startups(&parsed);
        assert_eq!(startups.keys().copied().collect::<Vec<_>>(), [1, 2, 3, 4]);
        // the slot's failed first task logged the lookup error, under the same number
        assert!(parsed
            .iter()
            .any(|l| l.number == Some(2) && l.message.contains("failed to lookup address")));
    }
}
