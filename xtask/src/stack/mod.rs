//! A test stack: the api's replicas and their database, as one compose project or one Swarm
//! stack, set up with this run's passwords, taken down on every exit path, and the operations
//! every command runs on it (containers, waits, logs, SQL, HTTP to a replica). Commands use a
//! `Stack`; only this layer knows which engine runs it (`Engine`).

pub mod db;
pub mod guard;
pub mod http;
pub mod parse;
// The lifecycle wait, node listing and probe-file parser serve `scaling/swarm_proof.rs` (a test).
#[allow(dead_code)]
pub mod swarm;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Output,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, Utc};
use serde::Serialize;
use xshell::Shell;

pub use self::guard::StackGuard;
use self::{
    guard::Teardown,
    parse::{Container, LogLine},
    swarm::{
        engine::{Membership, NodeEngines, SwarmStack},
        Swarm, Tasks,
    },
};
use crate::{
    docker::{self, Compose, ComposeProgram, Docker, TestStack},
    host::{images, testdb::random_hex},
    ui, Project,
};

/// The api's service name in the compose file.
pub const API: &str = "api";
/// The database's service name in the compose file.
pub const DB: &str = "db";
/// The port the api listens on inside its container.
pub const API_PORT: u16 = 8080;
/// The shared data directory every replica mounts.
pub const DATA_DIR: &str = "/app/data";
/// The application database's name.
pub const DB_NAME: &str = "app";
/// Laid over the compose file on engines that accept a healthcheck's `start_interval`.
pub const START_INTERVAL_FILE: &str = "docker-compose.start-interval.yml";
/// The override that binds the api's data volume to a directory every node shares.
pub const SHARED_DATA_FILE: &str = "docker-compose.shared-data.yml";
/// Replicas a check starts unless told otherwise.
pub const DEFAULT_REPLICAS: u32 = 4;
/// Largest allowed start-up of one replica, seconds (container started or database released → listening), unless told otherwise.
pub const DEFAULT_MAX_STARTUP_SECS: f64 = 5.0;
/// How long to wait for the replicas to be healthy, seconds, unless told otherwise.
pub const DEFAULT_TIMEOUT_SECS: u64 = 180;

/// What runs the stack: Docker Compose, or the same compose file deployed as a Docker Swarm
/// stack. Commands do not see it: `Stack`'s methods have an arm for each.
#[derive(Clone, Debug)]
pub enum Engine {
    Compose(Compose),
    Swarm(Swarm),
}

/// Which engine a command asked for (`--engine`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EngineKind {
    #[default]
    Compose,
    Swarm,
}

impl EngineKind {
    pub const ALL: [EngineKind; 2] = [EngineKind::Compose, EngineKind::Swarm];

    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Compose => "compose",
            EngineKind::Swarm => "swarm",
        }
    }

    /// `--engine NAME`; anything else is a clear error (exit 2 by the caller).
    pub fn parse(name: &str) -> Result<EngineKind, String> {
        EngineKind::ALL
            .into_iter()
            .find(|e| e.name() == name)
            .ok_or_else(|| format!("--engine {name:?}: choose compose or swarm"))
    }
}

/// Which database the replicas start on: a scenario of `test-scaling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DbState {
    FreshDatabase,
    ExistingDatabase,
    /// A database the previous version migrated and serves, this version rolled in beside it.
    Upgrade,
}

impl DbState {
    pub fn name(self) -> &'static str {
        match self {
            DbState::FreshDatabase => "fresh database",
            DbState::ExistingDatabase => "existing database",
            DbState::Upgrade => "upgrade",
        }
    }

    pub fn slug(self) -> &'static str {
        match self {
            DbState::FreshDatabase => "fresh",
            DbState::ExistingDatabase => "existing",
            DbState::Upgrade => "upgrade",
        }
    }
}

/// How waiting for the replicas ended.
#[derive(Clone, Debug, PartialEq)]
pub enum WaitOutcome {
    AllHealthy {
        seconds: f64,
    },
    /// A replica exited, restarted or (unless tolerated) turned unhealthy: we stopped waiting
    /// at once.
    Broken {
        seconds: f64,
        reason: String,
    },
    TimedOut {
        seconds: f64,
    },
}

/// What `wait_healthy` makes of a replica that is running but not healthy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unhealthy {
    /// Stop waiting: an `unhealthy` status, or an ERROR logged while not healthy, will not
    /// mend by itself (a read-only volume, a bad password). For a stack that just started.
    Stops,
    /// Keep waiting: it may recover (e.g. after a database outage). Only an exit or a restart
    /// stops the wait.
    MayRecover,
}

/// What `docker inspect` says of a container that `ps` does not.
#[derive(Clone, Debug, PartialEq)]
pub struct ContainerFacts {
    pub id: String,
    pub started_at: String,
    pub restarts: u32,
}

/// How the replicas were let in at once on a paused database (`Stack::start_api_contended`).
#[derive(Clone, Debug, PartialEq)]
pub struct Contention {
    /// When the database was unpaused: no replica could reach it before.
    pub released: DateTime<Utc>,
    /// How long `up` took to start every replica (the database was paused meanwhile).
    pub compose_up_s: f64,
    /// How long the database stayed paused.
    pub paused_s: f64,
}

/// How a command wants its stack.
pub struct Setup<'a> {
    /// The compose project: the command's own, never the developer's default one.
    pub name: &'static str,
    /// How many api replicas the command expects.
    pub replicas: u32,
    /// Extra variables for the api (a fault's settings).
    pub extra: Vec<(String, String)>,
    /// The env file the compose file reads instead of the project's `.env`.
    pub env_file: PathBuf,
    /// Write every variable into `env_file` (so the commands printed for `--keep` work).
    pub write_vars: bool,
    pub images: &'a images::ImageSet,
    /// Docker Compose, or a Swarm stack made from the same compose file.
    pub engine: EngineKind,
    /// Probe every second from the start, so the checks see "healthy" (and a broken replica)
    /// within a second, not one production interval later. On Docker >= 25 the compose file's
    /// `start_interval` override does this for every stack; on older engines the checks set
    /// `API_HEALTHCHECK_INTERVAL` instead, and `bench`, which measures the defaults' idle cost,
    /// turns it off.
    pub fast_first_probe: bool,
    /// Swarm on a cluster (`--nodes`): `(node, endpoint)` of each node's engine, where the
    /// task containers are reached; empty on one engine.
    pub nodes: Vec<(String, String)>,
    /// `--shared-data DIR`: the api's data volume is a bind of DIR, a directory every node
    /// shares (`SHARED_DATA_FILE`); `None` keeps the compose file's local volume.
    pub shared_data: Option<String>,
}

/// The checks' probe interval on engines without `start_interval` (see `Setup::fast_first_probe`).
pub const CHECK_PROBE_INTERVAL: &str = "1s";

impl<'a> Setup<'a> {
    /// A stack with no extra variables whose env file stays empty (the variables travel only
    /// in compose's environment).
    pub fn new(
        name: &'static str,
        replicas: u32,
        images: &'a images::ImageSet,
        env_file: PathBuf,
    ) -> Setup<'a> {
        Setup {
            name,
            replicas,
            extra: vec![],
            env_file,
            write_vars: false,
            images,
            engine: EngineKind::Compose,
            fast_first_probe: true,
            nodes: vec![],
            shared_data: None,
        }
    }
}

pub struct Stack<'a> {
    pub sh: &'a Shell,
    engine: Engine,
    pub docker: Docker,
    pub project: Project,
    /// The compose project's name.
    pub name: &'static str,
    /// How many api replicas the command expects.
    pub replicas: u32,
    /// The run's random passwords (the application's, then root's): they must appear in no
    /// image, and are never stored or printed.
    pub secrets: Vec<String>,
    pub api_image: String,
    pub db_image: String,
}

/// Creates `dir` (and its parents) as a directory only its owner can enter, mode 0700, also
/// when it exists already.
pub fn private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    // An existing directory keeps its mode through create(): set it.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("making {} private (0700)", dir.display()))
}

/// Writes `value` to `dir/name` for a file-sourced Compose secret, and returns its path.
///
/// Without Swarm, Compose bind-mounts the file itself into the container, keeping its host
/// owner and mode, and the api runs as uid 10001, not as us: so the file is 0644 (set
/// explicitly, whatever the umask) and the directory 0700, which no other host user can enter.
/// The container needs no access to the directory: the daemon resolves the mount's source.
pub fn write_secret_file(dir: &Path, name: &str, value: &str) -> Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    private_dir(dir)?;
    let file = dir.join(name);
    std::fs::write(&file, value).with_context(|| format!("writing {}", file.display()))?;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644))
        .with_context(|| format!("making {} readable by the api's uid", file.display()))?;
    Ok(file)
}

/// A [`Stack`] on its way to another thread; [`Detached::attach`] gives it a shell there.
/// How to reach one replica over HTTP (`Stack::http_routes`).
#[derive(Clone, Debug, PartialEq)]
pub enum Route {
    /// Compose: the replica's published address on the host.
    Published(SocketAddr),
    /// Swarm: the task's address on the stack's overlay, reached from a client container.
    Overlay(String),
}

/// Every replica's route for a round of requests (`Stack::http_routes`), and on Swarm the
/// client container on the overlay that carries them.
#[derive(Default)]
pub struct Routes {
    pub by_number: BTreeMap<u32, Route>,
    relay: Option<std::sync::Mutex<swarm::relay::Relay>>,
}

impl Routes {
    /// One exchange with replica `n`, in the terms of the xtask's HTTP client.
    pub fn send(&self, n: u32, request: &[u8], timeout: Duration) -> http::Outcome {
        match self.by_number.get(&n) {
            None => http::Outcome::Refused(format!("api.{n} has no address to reach it by")),
            Some(Route::Published(addr)) => http::send(*addr, request, timeout),
            Some(Route::Overlay(ip)) => {
                let Some(relay) = &self.relay else {
                    return http::Outcome::Refused(format!(
                        "{ip} is an overlay address: only Swarm has one"
                    ));
                };
                let mut relay = match relay.lock() {
                    Ok(r) => r,
                    Err(p) => p.into_inner(),
                };
                relay
                    .send(ip, API_PORT, request, timeout)
                    .unwrap_or_else(|e| http::Outcome::Refused(format!("{e:#}")))
            }
        }
    }

    /// `send`, for a caller that only wants a complete reply.
    pub fn reply(&self, n: u32, request: &[u8], timeout: Duration) -> Result<http::Reply, String> {
        complete(self.send(n, request, timeout))
    }

    /// `reply` for several exchanges at once, `(replica, request)`; the replies in that order.
    /// Published addresses are asked each on its own thread, overlay ones in one batch through
    /// the client container (`Relay::send_all`): the round costs about one exchange.
    pub fn replies(
        &self,
        requests: &[(u32, &[u8])],
        timeout: Duration,
    ) -> Vec<Result<http::Reply, String>> {
        let overlay: Vec<(usize, &str, &[u8])> = requests
            .iter()
            .enumerate()
            .filter_map(|(i, (n, request))| match self.by_number.get(n) {
                Some(Route::Overlay(ip)) if self.relay.is_some() => {
                    Some((i, ip.as_str(), *request))
                }
                _ => None,
            })
            .collect();
        let mut out: Vec<Option<Result<http::Reply, String>>> =
            crate::parallel::map(requests.iter().enumerate(), |(i, (n, request))| {
                let batched = overlay.iter().any(|(j, _, _)| *j == i);
                (!batched).then(|| self.reply(*n, request, timeout))
            });
        if let (Some(relay), false) = (&self.relay, overlay.is_empty()) {
            let batch: Vec<(&str, u16, &[u8])> = overlay
                .iter()
                .map(|(_, ip, request)| (*ip, API_PORT, *request))
                .collect();
            let mut relay = match relay.lock() {
                Ok(r) => r,
                Err(p) => p.into_inner(),
            };
            match relay.send_all(&batch, timeout) {
                Ok(outcomes) => {
                    for ((i, _, _), outcome) in overlay.iter().zip(outcomes) {
                        out[*i] = Some(complete(outcome));
                    }
                }
                Err(e) => {
                    for (i, _, _) in &overlay {
                        out[*i] = Some(Err(format!("{e:#}")));
                    }
                }
            }
        }
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err("no reply was asked for".into())))
            .collect()
    }
}

/// A complete reply, or what the exchange was instead.
fn complete(outcome: http::Outcome) -> Result<http::Reply, String> {
    match outcome {
        http::Outcome::Reply(reply) => Ok(reply),
        other => Err(other.describe()),
    }
}

pub struct Detached {
    engine: Engine,
    docker: Docker,
    project: Project,
    name: &'static str,
    replicas: u32,
    secrets: Vec<String>,
    api_image: String,
    db_image: String,
    dir: PathBuf,
}

impl Detached {
    /// A shell in the original's directory, for [`Detached::attach`].
    pub fn shell(&self) -> Result<Shell> {
        let sh = Shell::new().context("making a shell")?;
        sh.change_dir(&self.dir);
        Ok(sh)
    }

    pub fn attach(self, sh: &Shell) -> Stack<'_> {
        Stack {
            sh,
            engine: self.engine,
            docker: self.docker,
            project: self.project,
            name: self.name,
            replicas: self.replicas,
            secrets: self.secrets,
            api_image: self.api_image,
            db_image: self.db_image,
        }
    }
}

impl<'a> Stack<'a> {
    /// A test stack on the workspace's compose file, with fresh random passwords. Every
    /// variable comes from the check itself, never from a developer's `.env`.
    pub fn new(
        sh: &'a Shell,
        project: &Project,
        docker: &Docker,
        program: ComposeProgram,
        setup: Setup<'_>,
    ) -> Result<Stack<'a>> {
        let secrets = vec![random_hex(16)?, random_hex(16)?];
        let password_file = write_secret_file(
            &project.target_dir.join("secrets").join(setup.name),
            "db-password",
            &secrets[0],
        )?;
        // A fast first probe where the engine allows it (see docker-compose.start-interval.yml).
        let mut extra = setup.extra;
        let mut overrides = if docker::supports_start_interval(&docker.server_version(sh)?) {
            vec![project.root.join(START_INTERVAL_FILE)]
        } else {
            if setup.fast_first_probe {
                // First, so a setting of the command's own (`extra`) still wins.
                extra.insert(
                    0,
                    (
                        "API_HEALTHCHECK_INTERVAL".to_string(),
                        CHECK_PROBE_INTERVAL.to_string(),
                    ),
                );
            }
            vec![]
        };
        if let Some(dir) = &setup.shared_data {
            overrides.push(project.root.join(SHARED_DATA_FILE));
            extra.push(("SHARED_DATA_DIR".to_string(), dir.clone()));
        }
        let compose = Compose::test_stack(
            program,
            project.compose_file(),
            TestStack {
                project: setup.name,
                image_env: &setup.images.env,
                db_name: DB_NAME,
                password: &secrets[0],
                password_file: &password_file,
                root_password: &secrets[1],
                extra,
                overrides,
                env_file: setup.env_file,
                write_vars: setup.write_vars,
            },
        )?;
        let engine = match setup.engine {
            EngineKind::Compose => Engine::Compose(compose),
            EngineKind::Swarm => Engine::Swarm(Swarm::new(
                compose,
                SwarmStack {
                    docker: docker.program.clone(),
                    name: setup.name.to_string(),
                    nodes: NodeEngines::new(setup.nodes),
                },
            )),
        };
        Ok(Stack {
            sh,
            engine,
            docker: docker.clone(),
            project: project.clone(),
            name: setup.name,
            replicas: setup.replicas,
            secrets,
            api_image: setup
                .images
                .get("API_IMAGE")
                .unwrap_or(images::API_IMAGE)
                .to_string(),
            db_image: setup
                .images
                .get("DB_IMAGE")
                .unwrap_or(images::OFFICIAL_DB_IMAGE)
                .to_string(),
        })
    }

    /// The version the next `up` creates api replicas from: its image and the compose file it
    /// shipped with (a version's settings travel with its code: the previous version may read
    /// variables this one no longer sets). Running replicas keep theirs (every `up` here is
    /// `--no-recreate`). How a rolling deploy brings in a new version.
    pub fn set_api_version(&mut self, image: &str, compose_file: &Path) -> Result<()> {
        let Engine::Compose(compose) = &mut self.engine else {
            bail!("a rolling deploy of a new image is not implemented on Swarm (--engine swarm)");
        };
        compose.file = compose_file.to_path_buf();
        compose.env.retain(|(k, _)| k != "API_IMAGE");
        compose.env.push(("API_IMAGE".into(), image.into()));
        self.api_image = image.to_string();
        Ok(())
    }

    /// An empty application database again (the api's grants stay): for a scenario that
    /// needs a fresh schema after another one migrated it. The api replicas must be gone.
    pub fn empty_database(&self) -> Result<()> {
        self.sql(&format!(
            "DROP DATABASE {DB_NAME}; CREATE DATABASE {DB_NAME}"
        ))
        .map(drop)
    }

    /// The compose project: every engine has one (Swarm's stack file is made from its
    /// `config`); the Compose-only operations use it directly.
    /// The stack without its shell, to hand to another thread (`xshell::Shell` is not `Sync`):
    /// the thread attaches it to a shell of its own.
    pub fn detach(&self) -> Detached {
        Detached {
            engine: self.engine.clone(),
            docker: self.docker.clone(),
            project: self.project.clone(),
            name: self.name,
            replicas: self.replicas,
            secrets: self.secrets.clone(),
            api_image: self.api_image.clone(),
            db_image: self.db_image.clone(),
            dir: self.sh.current_dir(),
        }
    }

    fn compose(&self) -> &Compose {
        match &self.engine {
            Engine::Compose(compose) => compose,
            Engine::Swarm(swarm) => &swarm.compose,
        }
    }

    fn swarm(&self) -> Option<&Swarm> {
        match &self.engine {
            Engine::Compose(_) => None,
            Engine::Swarm(swarm) => Some(swarm),
        }
    }

    /// Fails for an operation the engine has no counterpart for.
    fn compose_only(&self, what: &str) -> Result<&Compose> {
        match &self.engine {
            Engine::Compose(compose) => Ok(compose),
            Engine::Swarm(_) => bail!("{what} is not implemented on Swarm (--engine swarm)"),
        }
    }

    pub fn engine(&self) -> EngineKind {
        match &self.engine {
            Engine::Compose(_) => EngineKind::Compose,
            Engine::Swarm(_) => EngineKind::Swarm,
        }
    }

    /// Removes any previous state of the project, then returns the guard that takes it down
    /// on every exit path (Ctrl-C included); with `keep`, the guard leaves it up instead. On
    /// Swarm it first joins a swarm: the engine's own if it is a manager, otherwise a
    /// single-node one it creates (and the guard leaves); a worker cannot run it.
    pub fn begin(&self, keep: bool) -> Result<StackGuard> {
        ui::step(&format!(
            "Removing any previous state of project {}",
            self.name
        ));
        match &self.engine {
            Engine::Compose(compose) => {
                compose.down(self.sh)?;
                Ok(StackGuard::new(compose, keep))
            }
            Engine::Swarm(swarm) => {
                let membership = Membership::join(self.sh, &self.docker.program)
                    .map_err(|e| crate::outcome::CannotRun(format!("{e:#}")))?;
                swarm.created_swarm.set(membership.created);
                ui::note(if membership.created {
                    "swarm: this engine was in no swarm; initialised a single-node one for this run"
                } else {
                    "swarm: this engine is a swarm manager; using its swarm, left as it is"
                });
                let guard = StackGuard::of(
                    Teardown::Swarm {
                        stack: swarm.stack.clone(),
                        membership,
                    },
                    keep,
                );
                swarm.stack.remove(self.sh, Duration::from_secs(120))?;
                for key in swarm.dropped(self.sh)? {
                    ui::note(&format!("swarm ignores {key}"));
                }
                Ok(guard)
            }
        }
    }

    /// Containers, networks or volumes of the project still present (after the guard ran); on
    /// Swarm also the stack, and the swarm membership and `docker_gwbridge` network if this
    /// run created the swarm.
    pub fn leftovers(&self) -> Result<Vec<String>> {
        match &self.engine {
            Engine::Compose(_) => self.docker.project_leftovers(self.sh, self.name),
            Engine::Swarm(swarm) => {
                let mut left = swarm.stack.leftovers(self.sh)?;
                if swarm.created_swarm.get() {
                    let state = swarm::engine::state(self.sh, &self.docker.program)?;
                    if state != swarm::parse::SwarmState::Inactive {
                        left.push(format!("swarm membership ({state:?})"));
                    }
                    if swarm::engine::network_exists(
                        self.sh,
                        &self.docker.program,
                        "docker_gwbridge",
                    )? {
                        left.push("network docker_gwbridge".into());
                    }
                }
                Ok(left)
            }
        }
    }

    /// The Swarm nodes whose engines the stack reaches (`Setup::nodes`): 0 on one engine.
    pub fn node_count(&self) -> usize {
        self.swarm().map_or(0, |s| s.stack.nodes.engines.len())
    }

    /// On Swarm: the api service's tasks (history included) and their containers.
    pub fn swarm_tasks(&self) -> Result<Option<Tasks>> {
        self.swarm().map(|s| s.tasks(self.sh, API)).transpose()
    }

    /// `api_containers`, and on Swarm the tasks they were made from: one read for a caller
    /// that needs both.
    pub fn api_replicas(&self) -> Result<(Vec<Container>, Option<Tasks>)> {
        match self.swarm_tasks()? {
            Some(tasks) => Ok((tasks.as_containers(API), Some(tasks))),
            None => Ok((self.api_containers()?, None)),
        }
    }

    /// The api replicas: compose's containers, or Swarm's current tasks numbered by slot.
    pub fn api_containers(&self) -> Result<Vec<Container>> {
        match &self.engine {
            Engine::Compose(compose) => parse::ps(&compose.ps(self.sh, API)?),
            Engine::Swarm(swarm) => Ok(swarm.tasks(self.sh, API)?.as_containers(API)),
        }
    }

    pub fn db_container(&self) -> Result<Container> {
        self.db_containers()?
            .into_iter()
            .next()
            .context("the db container does not exist")
    }

    fn db_containers(&self) -> Result<Vec<Container>> {
        match &self.engine {
            Engine::Compose(compose) => parse::ps(&compose.ps(self.sh, DB)?),
            Engine::Swarm(swarm) => Ok(swarm.tasks(self.sh, DB)?.as_containers(DB)),
        }
    }

    /// `up -d` of the database on a fresh volume (on Swarm: the stack with no api task);
    /// waits until it is healthy.
    pub fn start_db(&self, timeout: Duration) -> Result<()> {
        ui::step("Starting the database on a fresh volume");
        match &self.engine {
            Engine::Compose(compose) => {
                compose.run(self.sh, &["up", "-d", "--no-build", DB])?;
            }
            // Swarm ignores depends_on: the database goes first, alone, as compose does it.
            Engine::Swarm(swarm) => swarm.deploy(self.sh, 0)?,
        }
        self.wait_db_healthy(timeout)?;
        Ok(())
    }

    /// Stops the database container (the replicas keep running).
    pub fn stop_db(&self) -> Result<()> {
        self.compose_only("stopping the database")?
            .run(self.sh, &["stop", DB])
            .map(drop)
    }

    /// Starts the stopped database container again.
    pub fn restart_db(&self) -> Result<()> {
        self.compose_only("restarting the database")?
            .run(self.sh, &["start", DB])
            .map(drop)
    }

    /// Polls until the database is healthy; fails at once if it exits or turns unhealthy.
    /// Returns when it saw it healthy.
    pub fn wait_db_healthy(&self, timeout: Duration) -> Result<Instant> {
        let mut wait = ui::Waiting::new("db healthy");
        loop {
            let containers = self.db_containers()?;
            match containers.first() {
                Some(c) if c.is_healthy() => break,
                Some(c) if c.is_down() || c.health == "unhealthy" => {
                    let logs = self.log_tail(DB, 20);
                    bail!(
                        "the database container is {} ({}); its last log lines:\n{logs}",
                        c.state,
                        c.status
                    );
                }
                Some(c) => wait.update(&format!("{} {}", c.state, c.health)),
                None => wait.update("no container yet"),
            }
            if wait.elapsed() > timeout {
                bail!("the database was not healthy after {} s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        wait.finish("healthy");
        Ok(Instant::now())
    }

    /// `up -d --scale api=n api` (no recreation of running replicas); on Swarm the stack
    /// deployed with `n` api tasks.
    pub fn scale_api(&self, n: u32) -> Result<()> {
        match &self.engine {
            Engine::Compose(compose) => compose.up_scaled(self.sh, API, n),
            Engine::Swarm(swarm) => swarm.deploy(self.sh, n),
        }
    }

    /// Starts `n` replicas that all reach the database at the same moment, without changing
    /// the api: the database container is paused (`docker pause`), the replicas are started
    /// with `--no-deps` (compose would otherwise try to start the paused database), and once
    /// all `n` run the database is unpaused. Their connections, queued by the kernel
    /// meanwhile, are then served together, so on a fresh schema they all meet the migration.
    pub fn start_api_contended(&self, n: u32, timeout: Duration) -> Result<Contention> {
        let db = self.db_container()?;
        self.docker.pause(self.sh, &db.id)?;
        let paused = Instant::now();
        let started = (|| -> Result<f64> {
            match &self.engine {
                Engine::Compose(compose) => compose.up_scaled_no_deps(self.sh, API, n)?,
                // Swarm only creates the tasks; their containers start while the db is paused.
                Engine::Swarm(swarm) => swarm.deploy(self.sh, n)?,
            }
            let compose_up_s = paused.elapsed().as_secs_f64();
            let mut wait = ui::Waiting::new(&format!("{n} api containers running"));
            loop {
                let containers = self.api_containers()?;
                let running = containers.iter().filter(|c| c.state == "running").count();
                if running as u32 >= n {
                    wait.finish("all running");
                    return Ok(compose_up_s);
                }
                if let Some(c) = containers.iter().find(|c| c.is_down()) {
                    bail!(
                        "{} is {} ({}) before the database was let in",
                        c.label(),
                        c.state,
                        c.status
                    );
                }
                if paused.elapsed() > timeout {
                    bail!(
                        "only {running} of {n} api containers were running after {} s",
                        timeout.as_secs()
                    );
                }
                wait.update(&format!("{running}/{n} running"));
                std::thread::sleep(Duration::from_millis(100));
            }
        })();
        // Unpause on every path: a paused database cannot be stopped cleanly. The release is
        // the moment just before: the database may answer before `unpause` returns.
        let released = Utc::now();
        let unpaused = self.docker.unpause(self.sh, &db.id);
        let compose_up_s = started?;
        unpaused?;
        Ok(Contention {
            released,
            compose_up_s,
            paused_s: paused.elapsed().as_secs_f64(),
        })
    }

    /// Stops and removes every api replica; the database keeps its schema. On Swarm the api
    /// service goes (its next deploy starts a new history), once its containers are gone.
    pub fn remove_api(&self) -> Result<()> {
        match &self.engine {
            Engine::Compose(compose) => compose
                .run(self.sh, &["rm", "--stop", "--force", API])
                .map(drop),
            Engine::Swarm(swarm) => swarm.remove_service(self.sh, API, Duration::from_secs(120)),
        }
    }

    /// Runs a shell script once as root in a new api container with the shared volume
    /// mounted (`run --rm --no-deps --user 0`), with the capabilities to change ownership.
    pub fn run_api_as_root(&self, script: &str) -> Result<()> {
        if let Some(swarm) = self.swarm() {
            let volume = swarm.data_volume(self.sh)?;
            return swarm.stack.run_as_root_on_volume(
                self.sh,
                &self.api_image,
                &volume,
                DATA_DIR,
                script,
            );
        }
        self.compose()
            .run(
                self.sh,
                &[
                    "run",
                    "--rm",
                    "--no-deps",
                    "--user",
                    "0",
                    "--cap-add",
                    "CHOWN",
                    "--cap-add",
                    "FOWNER",
                    "--entrypoint",
                    "sh",
                    API,
                    "-c",
                    script,
                ],
            )
            .map(drop)
    }

    /// Polls until exactly `n` api replicas run and are healthy. Stops at once when one exits
    /// or restarts; what a running but unhealthy one does is the `unhealthy` policy's call.
    pub fn wait_healthy(
        &self,
        n: u32,
        timeout: Duration,
        since: Instant,
        unhealthy: Unhealthy,
    ) -> Result<WaitOutcome> {
        self.wait_healthy_seeing(n, timeout, since, unhealthy, |_| {})
    }

    /// `wait_healthy`, showing `seen` the replicas each poll read: a caller starts work on
    /// them while the rest start.
    pub fn wait_healthy_seeing(
        &self,
        n: u32,
        timeout: Duration,
        since: Instant,
        unhealthy: Unhealthy,
        mut seen: impl FnMut(&[Container]),
    ) -> Result<WaitOutcome> {
        let mut wait = ui::Waiting::new(&format!("{n} healthy replicas"));
        let mut polls = 0u32;
        loop {
            polls += 1;
            let seconds = since.elapsed().as_secs_f64();
            let containers = self.api_containers()?;
            seen(&containers);
            let restarts = self.restart_counts(&containers)?;
            let stops = |c: &Container| {
                c.is_down() || (unhealthy == Unhealthy::Stops && c.health == "unhealthy")
            };
            if let Some(c) = containers.iter().find(|c| stops(c)) {
                let reason = format!(
                    "{} is {} ({})",
                    c.label(),
                    if c.health == "unhealthy" {
                        "unhealthy"
                    } else {
                        &c.state
                    },
                    c.status
                );
                let reason = self.with_first_error(reason, c.number);
                wait.finish(&format!("stopped: {reason}"));
                return Ok(WaitOutcome::Broken { seconds, reason });
            }
            if let Some((num, count)) = restarts.iter().find(|(_, count)| **count > 0) {
                let reason =
                    self.with_first_error(format!("api-{num} restarted {count} time(s)"), *num);
                wait.finish(&format!("stopped: {reason}"));
                return Ok(WaitOutcome::Broken { seconds, reason });
            }
            let healthy = containers.iter().filter(|c| c.is_healthy()).count() as u32;
            if healthy == n && containers.len() as u32 == n {
                wait.finish("all healthy");
                return Ok(WaitOutcome::AllHealthy { seconds });
            }
            // Every few polls, read the logs: a replica that logged an error and is still not
            // healthy will not become healthy by itself (a read-only volume, a bad password).
            if unhealthy == Unhealthy::Stops && polls.is_multiple_of(4) {
                let lines = self.logs()?;
                if let Some(reason) = errored_replica(&lines, &containers) {
                    wait.finish(&format!("stopped: {reason}"));
                    return Ok(WaitOutcome::Broken { seconds, reason });
                }
                // Docker's health log: probes that fail while the app listens will not mend.
                let waiting: Vec<String> = containers
                    .iter()
                    .filter(|c| c.state == "running" && !c.is_healthy())
                    .map(|c| c.id.clone())
                    .collect();
                if !waiting.is_empty() {
                    let times = parse::parse_inspect(&self.start_and_health(&waiting)?)?;
                    if let Some(reason) = failing_probes(&times, &parse::startups(&lines)) {
                        wait.finish(&format!("stopped: {reason}"));
                        return Ok(WaitOutcome::Broken { seconds, reason });
                    }
                }
            }
            wait.update(&format!(
                "{healthy}/{n} healthy, {} containers",
                containers.len()
            ));
            if since.elapsed() > timeout {
                wait.finish("timed out");
                return Ok(WaitOutcome::TimedOut { seconds });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// `reason`, followed by why (`explain_down`): a replica's exit or restart is explained by
    /// a log line (e.g. the dirty-schema line), not by `ps`.
    fn with_first_error(&self, reason: String, number: u32) -> String {
        let lines = parse::logs(&self.logs_text().unwrap_or_default());
        format!("{reason}{}", explain_down(&lines, number))
    }

    /// The api's last log lines, for an error message.
    pub fn api_log_tail(&self, lines: u32) -> String {
        self.log_tail(API, lines)
    }

    fn log_tail(&self, service: &str, lines: u32) -> String {
        match &self.engine {
            Engine::Compose(compose) => compose
                .run(
                    self.sh,
                    &["logs", "--tail", &lines.to_string(), "--no-color", service],
                )
                .unwrap_or_default(),
            Engine::Swarm(swarm) => {
                let text = swarm.logs_as_compose(self.sh, service).unwrap_or_default();
                let all: Vec<&str> = text.lines().collect();
                all[all.len().saturating_sub(lines as usize)..].join("\n")
            }
        }
    }

    /// `ps --all --format json` of every service (on Swarm, `stack ps` of every task), as the
    /// tool printed it.
    pub fn all_containers_text(&self) -> Result<String> {
        match &self.engine {
            Engine::Compose(compose) => compose.run(self.sh, &["ps", "--all", "--format", "json"]),
            Engine::Swarm(swarm) => {
                let tasks = swarm.tasks(self.sh, API)?.tasks;
                let db = swarm.tasks(self.sh, DB)?.tasks;
                Ok(format!("{tasks:#?}\n{db:#?}\n"))
            }
        }
    }

    /// Published address of one replica's api port, as `compose port` prints it. Swarm
    /// publishes nothing (its ingress needs IPVS and ignores host IPs): use `http`.
    pub fn port(&self, number: u32) -> Result<String> {
        self.compose_only("a published port")?
            .port(self.sh, API, number, API_PORT)
    }

    /// How to reach each of `containers` over HTTP, resolved once for a round of requests:
    /// its published address on Compose, its task's address on the overlay on Swarm (one
    /// `docker inspect` for all, where `port` asks compose per request). On Swarm the round
    /// goes through one client container on the overlay, started here and removed when the
    /// routes are dropped: drop them before the stack is taken down.
    pub fn http_routes(&self, containers: &[Container]) -> Result<Routes> {
        let mut routes = Routes {
            by_number: self.route_map(containers)?,
            relay: None,
        };
        if let Engine::Swarm(swarm) = &self.engine {
            routes.relay = Some(std::sync::Mutex::new(swarm.client(&self.api_image)?));
        }
        Ok(routes)
    }

    /// On Swarm, starts the client container of the next `http_routes` now, so that it boots
    /// while the replicas do rather than on the check's own time; nothing on Compose.
    pub fn prepare_http(&self) -> Result<()> {
        match &self.engine {
            Engine::Swarm(swarm) => swarm.prepare_client(&self.api_image),
            Engine::Compose(_) => Ok(()),
        }
    }

    /// Resolves `routes` again for `containers` (replicas that moved or were replaced),
    /// keeping its client container.
    pub fn reroute(&self, routes: &mut Routes, containers: &[Container]) -> Result<()> {
        routes.by_number = self.route_map(containers)?;
        Ok(())
    }

    fn route_map(&self, containers: &[Container]) -> Result<BTreeMap<u32, Route>> {
        let ids: Vec<String> = containers
            .iter()
            .filter(|c| !c.id.is_empty())
            .map(|c| c.id.clone())
            .collect();
        let number_of = |id: &str| {
            containers
                .iter()
                .find(|c| !c.id.is_empty() && (id.starts_with(&c.id) || c.id.starts_with(id)))
                .map(|c| c.number)
        };
        let mut routes = BTreeMap::new();
        match &self.engine {
            Engine::Compose(_) => {
                let format = format!(
                    "{{{{.Id}}}} {{{{range (index .NetworkSettings.Ports \"{API_PORT}/tcp\")}}}}{{{{.HostIp}}}}:{{{{.HostPort}}}} {{{{end}}}}"
                );
                let out = self.docker.inspect(self.sh, &ids, &format)?;
                for (id, addr) in parse::published_addresses(&out) {
                    if let Some(n) = number_of(&id) {
                        routes.insert(n, Route::Published(addr));
                    }
                }
            }
            Engine::Swarm(swarm) => {
                for line in swarm.stack.addresses(self.sh, &ids)?.lines() {
                    let mut words = line.split_whitespace();
                    if let (Some(id), Some(ip)) = (words.next(), words.next()) {
                        if let Some(n) = number_of(id) {
                            routes.insert(n, Route::Overlay(ip.to_string()));
                        }
                    }
                }
            }
        }
        Ok(routes)
    }

    /// Published address of each running replica, by container number.
    pub fn ports(&self) -> Result<BTreeMap<u32, SocketAddr>> {
        let mut ports = BTreeMap::new();
        for c in self
            .api_containers()?
            .iter()
            .filter(|c| c.state == "running")
        {
            let addr = self.port(c.number)?;
            let addr: SocketAddr = addr
                .parse()
                .with_context(|| format!("published address of {}: {addr:?}", c.label()))?;
            ports.insert(c.number, addr);
        }
        Ok(ports)
    }

    /// Restarts of each replica: Docker's restart count on Compose; on Swarm, the tasks each
    /// slot had before its current one (Swarm replaces a task instead of restarting it).
    pub fn restart_counts(&self, containers: &[Container]) -> Result<BTreeMap<u32, u32>> {
        if let Some(swarm) = self.swarm() {
            let replaced = swarm.tasks(self.sh, API)?.replaced();
            return Ok(containers
                .iter()
                .map(|c| (c.number, replaced.get(&c.number).copied().unwrap_or(0)))
                .collect());
        }
        let facts = self.container_facts(containers)?;
        Ok(facts.into_iter().map(|(n, f)| (n, f.restarts)).collect())
    }

    /// Id, start time and restart count of each container, by container number.
    pub fn container_facts(
        &self,
        containers: &[Container],
    ) -> Result<BTreeMap<u32, ContainerFacts>> {
        let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
        let docker = &self.docker;
        let out = self.on_engines(&ids, |sh, ids| {
            docker.inspect(sh, ids, "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}")
        })?;
        let mut facts = BTreeMap::new();
        for line in out.lines() {
            let mut parts = line.split_whitespace();
            let (Some(id), Some(started), Some(count)) = (parts.next(), parts.next(), parts.next())
            else {
                continue;
            };
            if let Some(c) = containers
                .iter()
                .find(|c| id.starts_with(&c.id) || c.id.starts_with(id))
            {
                facts.insert(
                    c.number,
                    ContainerFacts {
                        id: id.to_string(),
                        started_at: started.to_string(),
                        restarts: count.parse().unwrap_or(0),
                    },
                );
            }
        }
        Ok(facts)
    }

    /// A container's environment, `KEY=value` one a line (`.Config.Env`).
    pub fn container_env(&self, id: &str) -> Result<String> {
        let docker = &self.docker;
        self.on_engines(&[id.to_string()], |sh, ids| {
            docker.inspect(sh, ids, "{{range .Config.Env}}{{println .}}{{end}}")
        })
    }

    /// `exec -T --index=i api argv...`; on Swarm `docker exec` in the current task of slot
    /// `number` (a task on another node cannot be reached this way).
    pub fn exec_api(&self, number: u32, argv: &[&str]) -> Result<Output> {
        match &self.engine {
            Engine::Compose(compose) => compose.exec(self.sh, API, number, argv),
            Engine::Swarm(swarm) => {
                let id = swarm.container_of(self.sh, API, number)?;
                swarm.stack.exec(self.sh, &id, argv)
            }
        }
    }

    /// `docker exec` in one api container by its id, on either engine: unlike `exec_api` on
    /// Compose, no compose project is parsed per call, so a round of execs costs far less.
    pub fn exec_in(&self, container: &Container, argv: &[&str]) -> Result<Output> {
        if container.id.is_empty() {
            bail!("{} has no container to exec in", container.label());
        }
        match self.swarm() {
            Some(swarm) => swarm.stack.exec(self.sh, &container.id, argv),
            None => self.docker.exec(self.sh, &container.id, argv),
        }
    }

    /// `exec_in` in the background, with stdin, stdout and stderr piped: a probe that talks
    /// with the caller, or housekeeping off the critical path.
    pub fn spawn_exec_in(
        &self,
        container: &Container,
        argv: &[&str],
    ) -> Result<std::process::Child> {
        if container.id.is_empty() {
            bail!("{} has no container to exec in", container.label());
        }
        match self.swarm() {
            Some(swarm) => swarm.stack.on(self.sh, &container.id, |sh| {
                self.docker.spawn_exec(sh, &container.id, argv)
            }),
            None => self.docker.spawn_exec(self.sh, &container.id, argv),
        }
    }

    /// One JSON object per container: its number, start time and health log
    /// (`Docker::start_and_health`), from whichever engine holds it.
    pub fn start_and_health(&self, ids: &[String]) -> Result<String> {
        let docker = &self.docker;
        self.on_engines(ids, |sh, ids| docker.start_and_health(sh, ids))
    }

    /// `f` with each group of `ids` that one engine holds and a shell that reaches it: the
    /// stack's own engine, or on a cluster each node's; the outputs joined.
    fn on_engines(
        &self,
        ids: &[String],
        f: impl Fn(&Shell, &[String]) -> Result<String> + Sync,
    ) -> Result<String> {
        match self.swarm() {
            Some(swarm) => swarm.stack.grouped(self.sh, ids, f),
            None => f(self.sh, ids),
        }
    }

    /// Runs SQL as root on the application database inside the db container (the password
    /// never leaves the container's environment); the raw output, for callers that read
    /// its status and stderr.
    pub fn sql_output(&self, sql: &str) -> Result<Output> {
        match &self.engine {
            // By container id: `compose exec` parses the project on every call.
            Engine::Compose(compose) => {
                let id = self
                    .docker
                    .compose_container(self.sh, &compose.project, DB)?;
                self.docker.exec_with_env(
                    self.sh,
                    &id,
                    &[("XTASK_SQL", sql)],
                    &["sh", "-c", crate::docker::DB_SQL_SCRIPT],
                )
            }
            Engine::Swarm(swarm) => swarm.db_exec_with_env(
                self.sh,
                &[("XTASK_SQL", sql)],
                &["sh", "-c", crate::docker::DB_SQL_SCRIPT],
            ),
        }
    }

    /// Runs SQL as root on the application database; returns `-N -B` output.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let out = self.sql_output(sql)?;
        if !out.status.success() {
            bail!(
                "SQL failed ({sql}): {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Starts SQL in the background (an outside client that must stay connected).
    pub fn spawn_sql(&self, sql: &str) -> Result<std::process::Child> {
        match &self.engine {
            Engine::Compose(compose) => compose.spawn_db_sql(self.sh, DB, sql),
            Engine::Swarm(swarm) => {
                let id = swarm.container_of(self.sh, DB, 1)?;
                swarm.stack.spawn_exec_with_env(
                    &id,
                    &[("XTASK_SQL", sql)],
                    &["sh", "-c", crate::docker::DB_SQL_SCRIPT],
                )
            }
        }
    }

    /// The api replicas' logs, with timestamps, as the tool printed them (on Swarm, every
    /// task's lines in compose's shape, named `api.<slot>`).
    pub fn logs_text(&self) -> Result<String> {
        self.logs_text_of(None)
    }

    /// `logs_text`; on Swarm from `tasks` when the caller has just read them.
    pub fn logs_text_of(&self, tasks: Option<&Tasks>) -> Result<String> {
        match (&self.engine, tasks) {
            (Engine::Compose(compose), _) => compose.logs(self.sh, API),
            (Engine::Swarm(swarm), Some(tasks)) => swarm.logs_of(self.sh, API, tasks),
            (Engine::Swarm(swarm), None) => swarm.logs_as_compose(self.sh, API),
        }
    }

    pub fn logs(&self) -> Result<Vec<LogLine>> {
        Ok(parse::logs(&self.logs_text()?))
    }

    /// Every container's log, with timestamps, as the tool printed them.
    pub fn all_logs_text(&self) -> Result<String> {
        match &self.engine {
            Engine::Compose(compose) => {
                compose.run(self.sh, &["logs", "--timestamps", "--no-color"])
            }
            Engine::Swarm(swarm) => Ok(format!(
                "{}{}",
                swarm.logs_as_compose(self.sh, DB)?,
                swarm.logs_as_compose(self.sh, API)?
            )),
        }
    }

    /// Every container's full log into `dir/logs/<container>.log`, before the stack goes away.
    pub fn save_logs_by_container(&self, dir: &Path) {
        let logs_dir = dir.join("logs");
        let _ = std::fs::create_dir_all(&logs_dir);
        if let Ok(text) = self.all_logs_text() {
            let mut by_container: BTreeMap<String, String> = BTreeMap::new();
            for line in text.lines() {
                let name = line
                    .split_once(" | ")
                    .or_else(|| line.split_once(" |"))
                    .map(|(p, _)| p.trim())
                    .unwrap_or("compose");
                let entry = by_container.entry(name.to_string()).or_default();
                entry.push_str(line);
                entry.push('\n');
            }
            for (name, text) in by_container {
                let _ = std::fs::write(logs_dir.join(format!("{name}.log")), text);
            }
        }
    }
}

/// Failed probes in a row, all started after the replica logged `Listening on`, that stop the
/// wait: the app is up, its health probe says otherwise, and that will not mend by itself.
pub const FAILING_PROBES_STOP: usize = 2;

/// A replica whose last `FAILING_PROBES_STOP` health probes (Docker's health log) all failed
/// although they started after the app logged `Listening on`; the reason quotes the last
/// probe's exit code and output. Docker reports these only when the healthcheck's start period
/// (90 s) runs out; this sees them within a few seconds.
pub fn failing_probes(
    times: &[parse::ContainerTimes],
    startups: &BTreeMap<u32, parse::Startup>,
) -> Option<String> {
    times.iter().find_map(|c| {
        let listening = *startups.get(&c.number)?.listening.first()?;
        let after: Vec<&parse::Probe> = c.probes.iter().filter(|p| p.start > listening).collect();
        let last = after.len().checked_sub(FAILING_PROBES_STOP).map(|i| &after[i..])?;
        if !last.iter().all(|p| p.exit_code != 0) {
            return None;
        }
        let probe = last.last()?;
        Some(format!(
            "api-{} has been listening since {} but its last {} health probes failed (Docker's health log): exit {}: {}",
            c.number,
            listening.format("%H:%M:%S%.3f"),
            last.len(),
            probe.exit_code,
            probe.output.trim()
        ))
    })
}

/// The first ERROR line replica `number` logged, trimmed.
pub fn first_error(lines: &[LogLine], number: u32) -> Option<String> {
    lines
        .iter()
        .filter(|l| l.number == Some(number) && l.message.contains(" ERROR "))
        .min_by_key(|l| l.time)
        .map(|l| l.message.trim().to_string())
}

/// What to add to "replica `number` is down": its own first ERROR line; or, when it logged
/// none (a SIGKILLed leader logs nothing), the first ERROR line any other replica logged,
/// named (after a leader is killed mid-migration, the others' dirty-schema line is the cause
/// and the repair); or nothing.
pub fn explain_down(lines: &[LogLine], number: u32) -> String {
    if let Some(error) = first_error(lines, number) {
        return format!(" and logged: {error}");
    }
    lines
        .iter()
        .filter(|l| l.number.is_some() && l.message.contains(" ERROR "))
        .min_by_key(|l| l.time)
        .map(|l| {
            format!(
                "; api-{} logged: {}",
                l.number.unwrap_or_default(),
                l.message.trim()
            )
        })
        .unwrap_or_default()
}

/// A replica that is not healthy and whose first ERROR line is older than 5 s (the first
/// one: it names the cause; later ones are often its echoes, like failed probes).
pub fn errored_replica(lines: &[LogLine], containers: &[Container]) -> Option<String> {
    let latest = lines.iter().map(|l| l.time).max()?;
    containers.iter().filter(|c| !c.is_healthy()).find_map(|c| {
        let error = lines
            .iter()
            .filter(|l| l.number == Some(c.number) && l.message.contains(" ERROR "))
            .min_by_key(|l| l.time)?;
        (latest.signed_duration_since(error.time).num_milliseconds() >= 5000 || c.is_down()).then(
            || {
                format!(
                    "{} is not healthy and logged: {}",
                    c.label(),
                    error.message.trim()
                )
            },
        )
    })
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_secret_file_is_readable_by_the_api_uid_inside_a_private_directory() {
        let root = std::env::temp_dir().join(format!("xtask-secret-{}", std::process::id()));
        let dir = root.join("project");
        // An existing, too open directory and file are tightened and overwritten.
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(dir.join("db-password"), "old-and-longer").unwrap();
        std::fs::set_permissions(
            dir.join("db-password"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();

        let file = write_secret_file(&dir, "db-password", "s3cr3t").unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "s3cr3t");
        assert_eq!(mode(&file), 0o644);
        assert_eq!(mode(&dir), 0o700);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
