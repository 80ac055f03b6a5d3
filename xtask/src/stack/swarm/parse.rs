//! Parsers of what the docker CLI prints about a swarm: tasks (`service ps` / `stack ps
//! --format '{{json .}}'`), nodes (`node ls --format '{{json .}}'`), task containers
//! (`docker inspect`) and service logs (`service logs --timestamps --no-trunc`). Pure functions
//! over the recorded text in `xtask/testdata/swarm/`.

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use serde::Deserialize;

/// One task of a service, current or in its history.
#[derive(Clone, Debug, PartialEq)]
pub struct Task {
    pub id: String,
    /// `<stack>_<service>`.
    pub service: String,
    pub slot: u32,
    pub node: String,
    pub image: String,
    pub desired: String,
    /// First word of `CurrentState`: `Running`, `Failed`, `Rejected`, `Shutdown`, `Starting`, …
    pub state: String,
    /// `CurrentState` as printed, e.g. `Failed 12 seconds ago`.
    pub state_text: String,
    pub error: String,
}

impl Task {
    /// `api.3`: the service without its stack prefix, and the slot.
    pub fn label(&self) -> String {
        let short = self
            .service
            .split_once('_')
            .map_or(self.service.as_str(), |(_, s)| s);
        format!("{short}.{}", self.slot)
    }

    /// The task Swarm still wants (desired `Running`, or `Ready` for one it keeps retrying),
    /// as opposed to the history of its slot (desired `Shutdown`).
    pub fn is_current(&self) -> bool {
        !matches!(self.desired.as_str(), "Shutdown" | "Remove")
    }

    pub fn is_running(&self) -> bool {
        self.state == "Running"
    }

    /// The task ended on its own or was never started: not a planned shutdown.
    pub fn is_failure(&self) -> bool {
        matches!(self.state.as_str(), "Failed" | "Rejected" | "Orphaned")
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawTask {
    #[serde(rename = "ID")]
    id: String,
    name: String,
    image: String,
    node: String,
    desired_state: String,
    current_state: String,
    error: String,
}

/// Parses `docker service ps --no-trunc --format '{{json .}}'` (or `stack ps`), one object per
/// line. History rows name their task `\_ <stack>_<service>.<slot>`; the prefix is dropped.
pub fn tasks(text: &str) -> Result<Vec<Task>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let raw: RawTask = serde_json::from_str(line)
                .with_context(|| format!("parsing a task line: {line}"))?;
            let name = raw.name.trim_start_matches("\\_").trim();
            let (service, slot) = name
                .rsplit_once('.')
                .with_context(|| format!("task name without a slot: {name}"))?;
            let slot = slot
                .parse()
                .with_context(|| format!("task name with a bad slot: {name}"))?;
            Ok(Task {
                id: raw.id,
                service: service.to_string(),
                slot,
                node: raw.node,
                image: raw.image,
                desired: raw.desired_state,
                state: raw
                    .current_state
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                state_text: raw.current_state,
                error: raw.error,
            })
        })
        .collect()
}

/// One node of the swarm.
#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Node {
    #[serde(rename = "ID")]
    pub id: String,
    pub hostname: String,
    /// `Ready`, `Down`, `Unknown`.
    pub status: String,
    /// `Active`, `Pause`, `Drain`.
    pub availability: String,
    /// `Leader`, `Reachable`, `Unreachable`, or empty for a worker.
    pub manager_status: String,
    #[serde(rename = "Self")]
    pub is_self: bool,
    pub engine_version: String,
}

/// Parses `docker node ls --format '{{json .}}'`.
pub fn nodes(text: &str) -> Result<Vec<Node>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|line| serde_json::from_str(line).with_context(|| format!("parsing a node: {line}")))
        .collect()
}

/// A task's container, from `docker inspect`.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskContainer {
    pub id: String,
    pub task_id: String,
    pub service: String,
    pub slot: u32,
    pub node_id: String,
    /// `running`, `exited`, …
    pub status: String,
    /// `healthy`, `starting`, `unhealthy`, or empty without a healthcheck.
    pub health: String,
    pub exit_code: i64,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

impl TaskContainer {
    pub fn is_healthy(&self) -> bool {
        self.status == "running" && self.health == "healthy"
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawContainer {
    id: String,
    state: RawState,
    config: RawConfig,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawState {
    status: String,
    exit_code: i64,
    started_at: String,
    finished_at: String,
    health: Option<RawHealth>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawHealth {
    status: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawConfig {
    labels: std::collections::BTreeMap<String, String>,
}

/// Docker's zero time (`0001-01-01T00:00:00Z`) means "never".
fn docker_time(text: &str) -> Option<DateTime<Utc>> {
    let t = DateTime::parse_from_rfc3339(text).ok()?.with_timezone(&Utc);
    (t.timestamp() > 0).then_some(t)
}

/// Parses `docker inspect` of task containers (a JSON array). The slot is read from the
/// `com.docker.swarm.task.name` label (`<stack>_<service>.<slot>.<task id>`).
pub fn task_containers(inspect_json: &str) -> Result<Vec<TaskContainer>> {
    let raw: Vec<RawContainer> = serde_json::from_str(inspect_json)
        .context("parsing `docker inspect` of task containers")?;
    raw.into_iter()
        .map(|c| {
            let label = |k: &str| c.config.labels.get(k).cloned().unwrap_or_default();
            let task_name = label("com.docker.swarm.task.name");
            let slot = task_name
                .split('.')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .with_context(|| format!("container {} has no task slot in {task_name:?}", c.id))?;
            Ok(TaskContainer {
                task_id: label("com.docker.swarm.task.id"),
                service: label("com.docker.swarm.service.name"),
                node_id: label("com.docker.swarm.node.id"),
                slot,
                status: c.state.status,
                health: c.state.health.map(|h| h.status).unwrap_or_default(),
                exit_code: c.state.exit_code,
                started_at: docker_time(&c.state.started_at),
                finished_at: docker_time(&c.state.finished_at),
                id: c.id,
            })
        })
        .collect()
}

/// One line of `docker service logs --timestamps --no-trunc`.
#[derive(Clone, Debug, PartialEq)]
pub struct TaskLogLine {
    pub slot: u32,
    pub task_id: String,
    pub node: String,
    pub time: DateTime<Utc>,
    pub message: String,
}

/// Parses `docker service logs --timestamps --no-trunc SERVICE`: lines like
/// `2026-11-29T00:00:27.284276333Z stack_api.3.<task id>@<node>    | message`, the engine's
/// timestamp first, then the task and node, then what the task printed. Lines of every task of
/// the service, exited ones included, in no guaranteed order. Lines without that shape (the
/// CLI's own warnings) are skipped.
pub fn service_logs(text: &str) -> Vec<TaskLogLine> {
    text.lines()
        .filter_map(|line| {
            let (stamp, rest) = line.split_once(' ')?;
            let time = DateTime::parse_from_rfc3339(stamp)
                .ok()?
                .with_timezone(&Utc);
            let (prefix, message) = rest.split_once(" | ").or_else(|| rest.split_once('|'))?;
            let (task, node) = prefix.trim().split_once('@')?;
            let mut parts = task.rsplitn(3, '.');
            let task_id = parts.next()?;
            let slot = parts.next()?.parse().ok()?;
            Some(TaskLogLine {
                slot,
                task_id: task_id.to_string(),
                node: node.to_string(),
                time,
                message: message.to_string(),
            })
        })
        .collect()
}

/// Parses `docker logs --timestamps` of one task container (`<engine time> <line>`) into
/// task lines of that slot and task; lines without a timestamp (the CLI's own) are skipped.
pub fn container_logs(text: &str, slot: u32, task_id: &str, node: &str) -> Vec<TaskLogLine> {
    text.lines()
        .filter_map(|line| {
            let (stamp, message) = line.split_once(' ').unwrap_or((line, ""));
            let time = DateTime::parse_from_rfc3339(stamp)
                .ok()?
                .with_timezone(&Utc);
            Some(TaskLogLine {
                slot,
                task_id: task_id.to_string(),
                node: node.to_string(),
                time,
                message: message.to_string(),
            })
        })
        .collect()
}

/// The lines of the given tasks (the current ones, say) in the Compose parser's shape, named
/// `api.<slot>` and numbered by slot, so that the start-up and migration checks
/// (`scaling::parse::startups`) run on Swarm's logs unchanged.
pub fn as_replica_lines(
    lines: &[TaskLogLine],
    task_ids: &[&str],
) -> Vec<crate::stack::parse::LogLine> {
    lines
        .iter()
        .filter(|l| task_ids.contains(&l.task_id.as_str()))
        .map(|l| crate::stack::parse::LogLine {
            container: format!("api.{}", l.slot),
            number: Some(l.slot),
            time: l.time,
            message: l.message.clone(),
        })
        .collect()
}

/// The slots whose probe files `<prefix><slot>` an `ls -a` of the shared directory lists.
pub fn probe_slots(ls_output: &str, prefix: &str) -> Vec<u32> {
    let mut slots: Vec<u32> = ls_output
        .lines()
        .filter_map(|l| l.trim().strip_prefix(prefix)?.parse().ok())
        .collect();
    slots.sort_unstable();
    slots.dedup();
    slots
}

/// `docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}'`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwarmState {
    /// Not in a swarm: the run initialises one and leaves it afterwards.
    Inactive,
    /// A manager: the run uses it and leaves it as it was.
    Manager,
    /// A worker cannot deploy stacks.
    Worker,
    /// `pending`, `error`, `locked`: nothing the run can use.
    Other(String),
}

pub fn swarm_state(info: &str) -> SwarmState {
    match info.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["inactive", ..] => SwarmState::Inactive,
        ["active", "true"] => SwarmState::Manager,
        ["active", "false"] => SwarmState::Worker,
        _ => SwarmState::Other(info.trim().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(name: &str) -> String {
        let path = format!("{}/testdata/swarm/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    #[test]
    fn service_ps_gives_each_task_its_slot_state_and_error() {
        let tasks = tasks(&load("service-ps-api-converged.jsonl")).unwrap();
        assert_eq!(tasks.len(), 8);
        let first = &tasks[0];
        assert_eq!(first.label(), "api.1");
        assert_eq!(first.service, "swarmrec_api");
        assert_eq!(first.node, "vm");
        assert!(first.is_current() && first.is_running());
        let failed = &tasks[1];
        assert_eq!((failed.slot, failed.state.as_str()), (1, "Failed"));
        assert_eq!(failed.error, "\"task: non-zero exit (1)\"");
        assert!(!failed.is_current() && failed.is_failure());
    }

    #[test]
    fn a_rejected_task_that_swarm_keeps_retrying_is_current() {
        let tasks = tasks(&load("service-ps-api-rejected.jsonl")).unwrap();
        let slot2: Vec<_> = tasks.iter().filter(|t| t.slot == 2).collect();
        assert_eq!(slot2[0].desired, "Ready");
        assert_eq!(slot2[0].state, "Rejected");
        assert!(slot2[0].is_current() && slot2[0].is_failure());
        assert!(slot2[0]
            .error
            .contains("No such image: localhost/scaling-api:no-such-tag"));
        assert_eq!(tasks.iter().filter(|t| t.is_current()).count(), 4);
    }

    #[test]
    fn stack_ps_has_the_same_shape_across_services() {
        let tasks = tasks(&load("stack-ps.jsonl")).unwrap();
        assert!(tasks.iter().any(|t| t.label() == "db.1"));
        assert!(tasks.iter().any(|t| t.label() == "api.4"));
    }

    #[test]
    fn history_rows_of_the_table_format_lose_their_marker() {
        let line = r#"{"CurrentState":"Failed 1 second ago","DesiredState":"Shutdown","Error":"","ID":"x","Image":"i","Name":"\\_ s_api.3","Node":"vm","Ports":""}"#;
        assert_eq!(tasks(line).unwrap()[0].label(), "api.3");
    }

    #[test]
    fn a_task_line_that_is_not_json_is_an_error() {
        assert!(tasks("ID NAME IMAGE").is_err());
    }

    #[test]
    fn node_ls_gives_the_manager() {
        let nodes = nodes(&load("node-ls.jsonl")).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].hostname, "vm");
        assert_eq!(nodes[0].manager_status, "Leader");
        assert!(nodes[0].is_self);
        assert_eq!(
            (nodes[0].status.as_str(), nodes[0].availability.as_str()),
            ("Ready", "Active")
        );
    }

    #[test]
    fn task_containers_map_to_tasks_slots_and_nodes() {
        let containers = task_containers(&load("inspect-api.json")).unwrap();
        assert_eq!(containers.len(), 8);
        let tasks = tasks(&load("service-ps-api-converged.jsonl")).unwrap();
        for t in &tasks {
            let c = containers.iter().find(|c| c.task_id == t.id).unwrap();
            assert_eq!(c.slot, t.slot);
            assert_eq!(c.is_healthy(), t.is_current(), "{}", t.label());
        }
        let exited = containers.iter().find(|c| c.status == "exited").unwrap();
        assert_eq!(exited.exit_code, 1);
        assert!(exited.finished_at.is_some());
        let running = containers.iter().find(|c| c.status == "running").unwrap();
        assert!(running.finished_at.is_none(), "zero time means never");
        assert_eq!(running.node_id, "9ormzzfdjr0eysi3x73lzbqii");
    }

    #[test]
    fn service_logs_name_task_slot_and_node_with_the_engine_timestamp() {
        let lines = service_logs(&load("service-logs.txt"));
        assert_eq!(lines.len(), 18);
        let first = &lines[0];
        assert_eq!((first.slot, first.node.as_str()), (2, "vm"));
        assert_eq!(first.task_id, "lpnp3ewgknliagv5rl0d9iac3");
        assert_eq!(
            first.time.to_rfc3339(),
            "2026-11-29T00:00:20.149180941+00:00"
        );
        assert!(first
            .message
            .contains("failed to lookup address information"));
        assert!(lines
            .iter()
            .any(|l| l.slot == 3 && l.message.contains("Listening on 0.0.0.0:8080")));
    }

    #[test]
    fn the_current_tasks_lines_feed_the_compose_start_up_parser() {
        let lines = service_logs(&load("service-logs.txt"));
        let tasks = tasks(&load("service-ps-api-converged.jsonl")).unwrap();
        let current: Vec<&str> = tasks
            .iter()
            .filter(|t| t.is_current())
            .map(|t| t.id.as_str())
            .collect();
        let replica_lines = as_replica_lines(&lines, &current);
        assert!(replica_lines.iter().all(|l| !l.message.contains("lookup")));
        let startups = crate::stack::parse::startups(&replica_lines);
        assert_eq!(
            startups.keys().copied().collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        for (slot, s) in &startups {
            assert_eq!(
                (s.pool_created.len(), s.listening.len()),
                (1, 1),
                "api.{slot}"
            );
        }
    }

    #[test]
    fn a_task_containers_own_log_gives_its_lines_with_the_engine_time() {
        let text = "2026-11-29T03:20:04.543047717Z 2026-11-29T03:20:04.539267Z  INFO api::startup: Database pool created\nError: No such container: x\n";
        let lines = container_logs(text, 3, "taskid", "vm");
        assert_eq!(lines.len(), 1);
        assert_eq!((lines[0].slot, lines[0].task_id.as_str()), (3, "taskid"));
        assert!(lines[0].message.ends_with("Database pool created"));
        assert_eq!(
            lines[0].time.to_rfc3339(),
            "2026-11-29T03:20:04.543047717+00:00"
        );
    }

    #[test]
    fn raw_service_logs_cannot_be_attributed_to_a_task() {
        assert!(service_logs(&load("service-logs-raw.txt")).is_empty());
    }

    #[test]
    fn probe_files_are_read_back_as_slots() {
        let ls = ".\n..\n.swarm-probe-1a2b-3\n.swarm-probe-1a2b-1\n.swarm-probe-ffff-2\ndocuments\ntmp\n";
        assert_eq!(probe_slots(ls, ".swarm-probe-1a2b-"), vec![1, 3]);
    }

    #[test]
    fn swarm_state_reads_docker_info() {
        assert_eq!(swarm_state("inactive false\n"), SwarmState::Inactive);
        assert_eq!(swarm_state("active true"), SwarmState::Manager);
        assert_eq!(swarm_state("active false"), SwarmState::Worker);
        assert_eq!(
            swarm_state("locked false"),
            SwarmState::Other("locked false".into())
        );
    }
}
