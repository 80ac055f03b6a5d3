//! The real calls of a Swarm run: join or create a single-node swarm, deploy a stack, poll it
//! until its tasks converge, list tasks and task containers, exec into them, read logs, and
//! remove everything again, leaving the engine's swarm membership as it was found.
//!
//! Facts of this machine's engine (Docker 20.10) that shape it:
//! - convergence is polled here. This CLI (Debian's 20.10.24) does accept `stack deploy
//!   --detach=false` (upstream's 20.10 does not), but it waits service after service, each with
//!   a 5 s stability wait, and knows nothing of the check's conditions (recorded in
//!   `xtask/testdata/swarm/deploy-detach-false.txt`: 18.8 s for db + 4 api tasks);
//! - the kernel has no IPVS, which the virtual-IP mode and the ingress routing mesh need, so the
//!   stack uses `endpoint_mode: dnsrr` and publishes nothing; the check reaches the replicas by
//!   `docker exec` into their task containers (see `SwarmStack::exec`);
//! - `stack rm` returns before the tasks, containers and networks are gone, and the volumes
//!   stay in use until the containers are: `SwarmStack::remove` waits for both;
//! - `swarm init` creates the `docker_gwbridge` network, which `swarm leave` keeps;
//! - `stack deploy` ignores `depends_on`: today's api exits 1 when it starts before the database
//!   has a DNS name, and Swarm replaces the task after its default 5 s delay. Deploying the
//!   database alone first (api at 0 replicas, same stack file otherwise) avoids it.
//!
//! Seen on 2 cores with `scaling/swarm_proof.rs` (database deployed first): 4 api tasks healthy 3.5 s
//! after deploy, their containers started within 0.55 s; 16 tasks in 8.4 s, within 3.7 s.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    process::Output,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::{
    parse::{self, SwarmState, Task, TaskContainer},
    stack_file::StackFile,
};

const GWBRIDGE: &str = "docker_gwbridge";
const POLL: Duration = Duration::from_millis(500);

/// The engine's swarm membership for one run, and what to undo at the end.
#[derive(Debug)]
pub struct Membership {
    pub docker: PathBuf,
    /// This run initialised the swarm: `leave` leaves it.
    pub created: bool,
    gwbridge_existed: bool,
}

impl Membership {
    /// Inactive: initialise a single-node swarm on loopback. Manager: use it as it is. Worker or
    /// anything else: an error saying why (the caller exits 2).
    pub fn join(sh: &Shell, docker: &Path) -> Result<Membership> {
        let state = state(sh, docker)?;
        let gwbridge_existed = network_exists(sh, docker, GWBRIDGE)?;
        let created = match state {
            SwarmState::Manager => false,
            SwarmState::Inactive => {
                cmd!(sh, "{docker} swarm init --advertise-addr 127.0.0.1")
                    .quiet()
                    .ignore_stdout()
                    .run()
                    .context("initialising a single-node swarm")?;
                true
            }
            SwarmState::Worker => bail!(
                "this Docker engine is a swarm worker: stacks can only be deployed from a manager; run the check on a manager node, or `docker swarm leave` first"
            ),
            SwarmState::Other(s) => bail!(
                "this Docker engine's swarm state is `{s}`: neither a manager nor out of a swarm; fix the swarm (`docker info`) or leave it"
            ),
        };
        Ok(Membership {
            docker: docker.to_path_buf(),
            created,
            gwbridge_existed,
        })
    }

    /// Leaves the swarm if this run created it, and removes the bridge network that `swarm init`
    /// created.
    pub fn leave(&self, sh: &Shell) -> Result<()> {
        if !self.created {
            return Ok(());
        }
        let docker = &self.docker;
        cmd!(sh, "{docker} swarm leave --force")
            .quiet()
            .ignore_stdout()
            .run()
            .context("leaving the swarm this run created")?;
        if !self.gwbridge_existed && network_exists(sh, docker, GWBRIDGE)? {
            cmd!(sh, "{docker} network rm {GWBRIDGE}")
                .quiet()
                .ignore_stdout()
                .run()
                .context("removing docker_gwbridge")?;
        }
        Ok(())
    }
}

/// The engine's swarm state.
pub fn state(sh: &Shell, docker: &Path) -> Result<SwarmState> {
    let format = "{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}";
    let out = cmd!(sh, "{docker} info --format {format}")
        .quiet()
        .read()
        .context("asking docker for its swarm state")?;
    Ok(parse::swarm_state(&out))
}

pub fn network_exists(sh: &Shell, docker: &Path, name: &str) -> Result<bool> {
    let filter = format!("name=^{name}$");
    let out = cmd!(sh, "{docker} network ls -q --filter {filter}")
        .quiet()
        .read()?;
    Ok(!out.trim().is_empty())
}

/// How waiting for the tasks ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Converged {
    /// All N current tasks running with healthy containers, after this many seconds.
    Healthy { seconds: f64 },
    /// The timeout passed with this many healthy.
    TimedOut { seconds: f64, healthy: usize },
    /// A task failed or was rejected, and the caller asked to stop at the first one (as the
    /// Compose path stops when a replica exits): `api.2 (node vm): Failed … (error)`.
    TaskFailed { seconds: f64, task: String },
}

/// One stack on the swarm.
#[derive(Debug, Clone)]
pub struct SwarmStack {
    pub docker: PathBuf,
    pub name: String,
    /// Where the task containers are: the caller's engine, or each node's of a cluster.
    pub nodes: NodeEngines,
}

/// The engines a stack's task containers run on. None listed: the caller's own (one node).
/// With a cluster (`--nodes`), each node's, and the node each container was found on: a
/// container is only known to, and reached through, its own node's engine.
#[derive(Clone, Debug, Default)]
pub struct NodeEngines {
    /// `(node, endpoint)`: the endpoint as `DOCKER_HOST` names it.
    pub engines: Vec<(String, String)>,
    /// Container id → its node's endpoint, learnt by `SwarmStack::containers`.
    located: Arc<Mutex<BTreeMap<String, String>>>,
}

impl NodeEngines {
    pub fn new(engines: Vec<(String, String)>) -> NodeEngines {
        NodeEngines {
            engines,
            located: Arc::default(),
        }
    }

    /// The endpoint of the node a container was found on (by its id or a prefix of it).
    fn endpoint_of(&self, id: &str) -> Option<String> {
        let located = self.located.lock().ok()?;
        located
            .iter()
            .find(|(known, _)| !id.is_empty() && (known.starts_with(id) || id.starts_with(*known)))
            .map(|(_, endpoint)| endpoint.clone())
    }

    fn record(&self, id: &str, endpoint: &str) {
        if let Ok(mut located) = self.located.lock() {
            located.insert(id.to_string(), endpoint.to_string());
        }
    }
}

/// A shell whose docker calls go to `endpoint` (as `DOCKER_HOST` names it).
pub fn shell_for(endpoint: &str) -> Result<Shell> {
    let sh = Shell::new()?;
    sh.set_var("DOCKER_HOST", endpoint);
    Ok(sh)
}

/// `shell_for(endpoint)` in `sh`'s directory.
fn shell_on(sh: &Shell, endpoint: &str) -> Result<Shell> {
    let node = shell_for(endpoint)?;
    node.change_dir(sh.current_dir());
    Ok(node)
}

/// `f` on each job at once, each on its own thread with a shell that reaches the job's engine
/// (`None`: `sh`'s own); the results in the order of `jobs`.
fn on_each<J: Send, T: Send>(
    sh: &Shell,
    jobs: Vec<(Option<String>, J)>,
    f: impl Fn(&Shell, J) -> Result<T> + Sync,
) -> Vec<Result<T>> {
    // A `Shell` stays on the thread it is given to: each job gets its own.
    let jobs: Vec<(Result<Shell>, J)> = jobs
        .into_iter()
        .map(|(endpoint, job)| {
            let shell = match &endpoint {
                Some(endpoint) => shell_on(sh, endpoint),
                None => Ok(sh.clone()),
            };
            (shell, job)
        })
        .collect();
    crate::parallel::map(jobs, |(shell, job)| f(&shell?, job))
}

impl SwarmStack {
    /// `<stack>_<service>`, Swarm's name of a stack's service.
    pub fn service(&self, short: &str) -> String {
        format!("{}_{short}", self.name)
    }

    /// `docker stack deploy -c -` with the file on stdin; returns at once (no convergence).
    pub fn deploy(&self, sh: &Shell, file: &StackFile) -> Result<()> {
        let (docker, name) = (&self.docker, &self.name);
        let out = cmd!(
            sh,
            "{docker} stack deploy --resolve-image never -c - {name}"
        )
        .quiet()
        .stdin(&file.text)
        .ignore_status()
        .output()
        .context("running `docker stack deploy`")?;
        if !out.status.success() {
            bail!(
                "`docker stack deploy` failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(())
    }

    /// Every task of a service, history included (`service ps --no-trunc`).
    pub fn tasks(&self, sh: &Shell, short: &str) -> Result<Vec<Task>> {
        let (docker, service) = (&self.docker, self.service(short));
        let format = "{{json .}}";
        let out = cmd!(
            sh,
            "{docker} service ps --no-trunc --format {format} {service}"
        )
        .quiet()
        .read()
        .with_context(|| format!("listing the tasks of {service}"))?;
        parse::tasks(&out)
    }

    /// The containers of a service's tasks, exited ones included: on this engine, or on every
    /// node of a cluster (a node whose engine does not answer, one that was lost, has none).
    pub fn containers(&self, sh: &Shell, short: &str) -> Result<Vec<TaskContainer>> {
        if self.nodes.engines.is_empty() {
            return self.containers_on(sh, short);
        }
        let mut all = Vec::new();
        let mut unreachable = Vec::new();
        // Every node asked at once: the read costs the slowest node, not the sum.
        let jobs = self
            .nodes
            .engines
            .iter()
            .map(|(_, endpoint)| (Some(endpoint.clone()), ()))
            .collect();
        let answers = on_each(sh, jobs, |sh, ()| self.containers_on(sh, short));
        for ((node, endpoint), answer) in self.nodes.engines.iter().zip(answers) {
            match answer {
                Ok(found) => {
                    for c in &found {
                        self.nodes.record(&c.id, endpoint);
                    }
                    all.extend(found);
                }
                Err(e) => unreachable.push(format!("{node}: {e:#}")),
            }
        }
        if unreachable.len() == self.nodes.engines.len() {
            bail!("no node's engine answered: {}", unreachable.join("; "));
        }
        Ok(all)
    }

    fn containers_on(&self, sh: &Shell, short: &str) -> Result<Vec<TaskContainer>> {
        let (docker, service) = (&self.docker, self.service(short));
        let filter = format!("label=com.docker.swarm.service.name={service}");
        let ids = cmd!(sh, "{docker} ps -aq --no-trunc --filter {filter}")
            .quiet()
            .read()?;
        let ids: Vec<&str> = ids.split_whitespace().collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let out = cmd!(sh, "{docker} inspect {ids...}")
            .quiet()
            .ignore_status()
            .output()?;
        // A container may go between `ps` and `inspect`; inspect still prints the others.
        let text = String::from_utf8_lossy(&out.stdout);
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        parse::task_containers(&text)
    }

    /// `f` on a shell that reaches the engine `container` is on (learnt by `containers`):
    /// `sh` itself on one engine.
    pub fn on<T>(
        &self,
        sh: &Shell,
        container: &str,
        f: impl FnOnce(&Shell) -> Result<T>,
    ) -> Result<T> {
        match self.nodes.endpoint_of(container) {
            Some(endpoint) => f(&shell_on(sh, &endpoint)?),
            None => f(sh),
        }
    }

    /// `f` on each group of `ids` that one engine holds, with a shell reaching it; the outputs
    /// joined, one engine's after another's.
    pub fn grouped(
        &self,
        sh: &Shell,
        ids: &[String],
        f: impl Fn(&Shell, &[String]) -> Result<String> + Sync,
    ) -> Result<String> {
        if self.nodes.engines.is_empty() {
            return f(sh, ids);
        }
        let mut groups: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
        for id in ids {
            groups
                .entry(self.nodes.endpoint_of(id))
                .or_default()
                .push(id.clone());
        }
        // Every engine asked at once, each for its own group.
        let texts = on_each(sh, groups.into_iter().collect(), |sh, ids| f(sh, &ids));
        let mut out = String::new();
        for text in texts {
            let text = text?;
            out.push_str(&text);
            if !text.is_empty() && !text.ends_with('\n') {
                out.push('\n');
            }
        }
        Ok(out)
    }

    /// Polls until `n` current tasks of the service run with healthy containers; with
    /// `stop_on_failure`, returns at the first failed or rejected task instead.
    pub fn wait_healthy(
        &self,
        sh: &Shell,
        short: &str,
        n: u32,
        timeout: Duration,
        stop_on_failure: bool,
    ) -> Result<Converged> {
        let start = Instant::now();
        loop {
            let tasks = self.tasks(sh, short)?;
            let containers = self.containers(sh, short)?;
            let healthy = tasks
                .iter()
                .filter(|t| t.is_current() && t.is_running())
                .filter(|t| {
                    containers
                        .iter()
                        .any(|c| c.task_id == t.id && c.is_healthy())
                })
                .count();
            let seconds = start.elapsed().as_secs_f64();
            if let Some(t) = tasks
                .iter()
                .find(|t| t.is_failure())
                .filter(|_| stop_on_failure)
            {
                let error = t.error.trim_matches('"');
                return Ok(Converged::TaskFailed {
                    seconds,
                    task: format!(
                        "{} (node {}): {} ({error})",
                        t.label(),
                        t.node,
                        t.state_text
                    ),
                });
            }
            if healthy == n as usize
                && tasks.iter().filter(|t| t.is_current()).count() == n as usize
            {
                return Ok(Converged::Healthy { seconds });
            }
            if start.elapsed() >= timeout {
                return Ok(Converged::TimedOut { seconds, healthy });
            }
            thread::sleep(POLL);
        }
    }

    /// `docker exec` in a task container (no TTY, stdin closed), on the engine that holds it:
    /// `Docker::exec`; the output whatever the exit.
    pub fn exec(&self, sh: &Shell, container: &str, argv: &[&str]) -> Result<Output> {
        self.on(sh, container, |sh| self.cli().exec(sh, container, argv))
    }

    /// The `docker` CLI this stack calls, for the calls it shares with any container.
    fn cli(&self) -> crate::docker::Docker {
        crate::docker::Docker {
            program: self.docker.clone(),
        }
    }

    /// `docker service logs --timestamps --no-trunc`: every task's lines, failed ones included,
    /// each prefixed with `<service>.<slot>.<task id>@<node>`, stdout's then stderr's.
    pub fn logs(&self, sh: &Shell, short: &str) -> Result<String> {
        let (docker, service) = (&self.docker, self.service(short));
        let out = cmd!(
            sh,
            "{docker} service logs --timestamps --no-trunc {service}"
        )
        .quiet()
        .ignore_status()
        .output()?;
        // The CLI prints what a task wrote to stderr on its own stderr (MariaDB logs there).
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// `docker service rm <stack>_<service>`; returns before its containers are gone.
    pub fn remove_service(&self, sh: &Shell, short: &str) -> Result<()> {
        let (docker, service) = (&self.docker, self.service(short));
        cmd!(sh, "{docker} service rm {service}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("removing service {service}"))
    }

    /// `docker exec -e KEY…` in a task container, the values travelling in the environment of
    /// the docker process (never in argv), on the engine that holds it: `Docker::exec_with_env`.
    pub fn exec_with_env(
        &self,
        sh: &Shell,
        container: &str,
        env: &[(&str, &str)],
        argv: &[&str],
    ) -> Result<Output> {
        self.on(sh, container, |sh| {
            self.cli().exec_with_env(sh, container, env, argv)
        })
    }

    /// `exec_with_env` in the background (an outside client that must stay connected).
    pub fn spawn_exec_with_env(
        &self,
        container: &str,
        env: &[(&str, &str)],
        argv: &[&str],
    ) -> Result<std::process::Child> {
        let mut command = std::process::Command::new(&self.docker);
        if let Some(endpoint) = self.nodes.endpoint_of(container) {
            command.env("DOCKER_HOST", endpoint);
        }
        command.arg("exec");
        for (k, v) in env {
            command.args(["-e", k]).env(k, v);
        }
        command
            .arg(container)
            .args(argv)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .with_context(|| format!("docker exec in {container}"))
    }

    /// The stack's default network: an attachable overlay, so a client container can join it.
    pub fn network(&self) -> String {
        format!("{}_default", self.name)
    }

    /// Each container's address on the stack's network, `<container id> <ip>` a line.
    pub fn addresses(&self, sh: &Shell, containers: &[String]) -> Result<String> {
        if containers.is_empty() {
            return Ok(String::new());
        }
        let docker = &self.docker;
        let format = format!(
            "{{{{.Id}}}} {{{{with index .NetworkSettings.Networks \"{}\"}}}}{{{{.IPAddress}}}}{{{{end}}}}",
            self.network()
        );
        self.grouped(sh, containers, |sh, ids| {
            cmd!(sh, "{docker} inspect --format {format} {ids...}")
                .quiet()
                .read()
                .context("reading the task containers' addresses")
        })
    }

    /// A client container on the stack's overlay network (`relay.rs`), of `image`: it reaches
    /// a task by its own address, wherever Swarm placed it.
    pub fn relay(&self, image: &str) -> Result<super::relay::Relay> {
        let suffix = crate::host::testdb::random_hex(4)?;
        super::relay::Relay::start(
            &self.docker,
            &self.network(),
            image,
            &format!("{}-client-{suffix}", self.name),
        )
    }

    /// Runs `script` as root in a throwaway container of `image` with the stack's volume
    /// `volume` at `target`, creating the volume with the stack's label first (so `remove`
    /// finds it), and the capabilities to change ownership.
    pub fn run_as_root_on_volume(
        &self,
        sh: &Shell,
        image: &str,
        volume: &str,
        target: &str,
        script: &str,
    ) -> Result<()> {
        let (docker, name) = (&self.docker, &self.name);
        let label = format!("com.docker.stack.namespace={name}");
        crate::docker::create_volume(sh, docker, volume, &label)?;
        let mount = format!("{volume}:{target}");
        cmd!(sh, "{docker} run --rm --user 0 --cap-add CHOWN --cap-add FOWNER -v {mount} --entrypoint sh {image} -c {script}")
            .quiet()
            .ignore_stdout()
            .run()
            .context("running a script as root on the stack's volume")
    }

    /// What of the stack is still on the engine: containers, networks and volumes with its
    /// label, as `kind name` entries.
    pub fn leftovers(&self, sh: &Shell) -> Result<Vec<String>> {
        let (docker, name) = (&self.docker, &self.name);
        let mut left =
            crate::docker::labelled(sh, docker, &format!("com.docker.stack.namespace={name}"))?;
        let names = "{{.Name}}";
        let services = cmd!(sh, "{docker} stack ls --format {names}")
            .quiet()
            .ignore_stderr()
            .ignore_status()
            .read()
            .unwrap_or_default();
        if services.lines().any(|l| l.trim() == name) {
            left.push(format!("stack {name}"));
        }
        Ok(left)
    }

    /// `docker logs --timestamps` of one container, stdout's lines then stderr's.
    pub fn container_log(&self, sh: &Shell, container: &str) -> Result<String> {
        let docker = &self.docker;
        let out = self.on(sh, container, |sh| {
            cmd!(sh, "{docker} logs --timestamps {container}")
                .quiet()
                .ignore_status()
                .output()
                .with_context(|| format!("docker logs of {container}"))
        })?;
        Ok(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// `stack rm`, then waits until its containers and networks are gone and removes its
    /// volumes. Returns the seconds it took.
    pub fn remove(&self, sh: &Shell, timeout: Duration) -> Result<f64> {
        let (docker, name) = (&self.docker, &self.name);
        let start = Instant::now();
        // "Nothing found in stack" when there is none: not an error here.
        cmd!(sh, "{docker} stack rm {name}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .ignore_status()
            .run()?;
        // A client container left on the stack's network (a run that was killed) keeps the
        // network in use: it goes first.
        crate::docker::remove_matching(
            sh,
            docker,
            "container",
            &[
                format!("label={}", super::relay::LABEL),
                format!("network={}", self.network()),
            ],
        )?;
        let label = format!("label=com.docker.stack.namespace={name}");
        loop {
            let containers = cmd!(sh, "{docker} ps -aq --filter {label}")
                .quiet()
                .read()?;
            let networks = cmd!(sh, "{docker} network ls -q --filter {label}")
                .quiet()
                .read()?;
            if containers.trim().is_empty() && networks.trim().is_empty() {
                break;
            }
            if start.elapsed() >= timeout {
                bail!(
                    "stack {name} still has containers [{}] or networks [{}] {} s after `stack rm`",
                    containers.split_whitespace().collect::<Vec<_>>().join(" "),
                    networks.split_whitespace().collect::<Vec<_>>().join(" "),
                    timeout.as_secs()
                );
            }
            thread::sleep(POLL);
        }
        crate::docker::remove_matching(sh, docker, "volume", &[label])
            .with_context(|| format!("removing the volumes of stack {name}"))?;
        Ok(start.elapsed().as_secs_f64())
    }
}
