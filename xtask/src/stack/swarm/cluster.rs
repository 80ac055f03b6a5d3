//! Several Swarm nodes on this machine (`--nodes K`): each node a container of the node image
//! (`docker/node/`) running its own Docker engine, all on one private network, joined into one
//! swarm with the first node as its manager; the images loaded into them; a node stopped (node
//! loss); and every piece removed again.
//!
//! How it reaches the engines: the host's engine (which runs the node containers) with the
//! endpoint the xtask found when it started, and each node's engine by its socket in
//! `target/cluster/<node>/docker.sock`, a host directory mounted into the node. Nothing
//! listens on any network address of the host, and the nodes' network is `--internal`.
//!
//! Facts it rests on (docs/docker-on-ci.md, "Docker-in-Docker"): `--privileged` is refused on
//! these machines, so a node gets every capability but `SYS_RESOURCE`, no seccomp or AppArmor
//! profile and the host's cgroup hierarchy; its `/var/lib/docker` is a volume of the host
//! (overlay2 works there, not on the container's own overlay root).

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::parse;

/// Where every node mounts the one directory they share unless told (`--shared-data`): an NFS
/// or other network filesystem mounted at the same path on every host of a real cluster (this
/// kernel has no NFS).
pub const SHARED_MOUNT: &str = "/srv/scaling-shared";
/// The label on every host object of the cluster: its containers, network and volumes.
pub const LABEL: &str = "org.scaling-check.cluster";
/// Node `i` is the container and host `scaling-node-i`; Swarm names it so too.
const NODE_PREFIX: &str = "scaling-node-";
const NETWORK: &str = "scaling-nodes";
const SHARED_VOLUME: &str = "scaling-nodes-shared";
/// The node label the stack file's placement preference spreads the api over.
pub const SPREAD_LABEL: &str = "scaling.node";
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// One node: its container (whose name is also its host and Swarm node name), its address on
/// the nodes' network and its engine's socket.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub ip: String,
    pub socket: PathBuf,
}

impl Node {
    /// The node's engine, as `DOCKER_HOST` names it.
    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.socket.display())
    }
}

/// The cluster this run made.
#[derive(Clone, Debug)]
pub struct Cluster {
    pub docker: PathBuf,
    /// The host's engine, as `DOCKER_HOST` names it: every call on the node containers goes
    /// there, whatever the process's `DOCKER_HOST` says later (the manager's, see
    /// `Cluster::manager`).
    pub host: String,
    pub nodes: Vec<Node>,
    /// `target/cluster`: the nodes' socket directories.
    pub dir: PathBuf,
    /// Where every node mounts the one directory they share (`--shared-data`).
    pub shared_mount: String,
    /// This process's `DOCKER_HOST` before the cluster: what `point_process_back` restores.
    original_env: Option<std::ffi::OsString>,
}

/// How long each part of making the cluster took, for the report.
#[derive(Clone, Debug, Default)]
pub struct Made {
    pub engines_s: f64,
    pub swarm_s: f64,
    pub images_s: f64,
}

impl Cluster {
    /// The cluster's handle before anything exists: `create` makes it, `remove` takes it down.
    pub fn plan(docker: &Path, host: &str, dir: &Path, k: u32, shared_mount: &str) -> Cluster {
        Cluster {
            shared_mount: shared_mount.to_string(),
            original_env: std::env::var_os("DOCKER_HOST"),
            docker: docker.to_path_buf(),
            host: host.to_string(),
            nodes: (1..=k)
                .map(|i| {
                    let name = format!("{NODE_PREFIX}{i}");
                    Node {
                        socket: dir.join(&name).join("docker.sock"),
                        ip: String::new(),
                        name,
                    }
                })
                .collect(),
            dir: dir.to_path_buf(),
        }
    }

    /// From here on, every docker call of this process (and of the processes it starts) goes
    /// to the manager's engine: the checks then run as they do against a real swarm's manager
    /// named by `DOCKER_HOST`. Set before any thread of the check starts; the cluster's own
    /// calls name the host's engine explicitly.
    pub fn point_process_at_manager(&self) {
        std::env::set_var("DOCKER_HOST", self.manager().endpoint());
    }

    /// Points this process's docker calls back where they went before the cluster.
    pub fn point_process_back(&self) {
        match &self.original_env {
            Some(v) => std::env::set_var("DOCKER_HOST", v),
            None => std::env::remove_var("DOCKER_HOST"),
        }
    }

    /// The manager: the first node.
    pub fn manager(&self) -> &Node {
        &self.nodes[0]
    }

    /// A shell whose docker calls go to the host's engine.
    pub fn host_shell(&self) -> Result<Shell> {
        super::engine::shell_for(&self.host)
    }

    /// A shell whose docker calls go to `node`'s engine.
    pub fn node_shell(&self, node: &Node) -> Result<Shell> {
        super::engine::shell_for(&node.endpoint())
    }

    /// Starts the nodes, joins them into one swarm and loads `images` into them (each image
    /// with whether every node needs it, or the manager alone). An earlier cluster must be
    /// gone (`remove`); on error the caller's guard removes what was made.
    pub fn create(&mut self, node_image: &str, images: &[(&str, bool)]) -> Result<Made> {
        let mut made = Made::default();
        let started = Instant::now();
        let sh = self.host_shell()?;
        let docker = &self.docker;
        // A unix socket's path has a limit of 108 bytes.
        if let Some(long) = self.nodes.iter().find(|n| n.socket.as_os_str().len() > 100) {
            bail!(
                "the node socket path {} is over 100 bytes, too long for a unix socket: run the check from a checkout with a shorter path",
                long.socket.display()
            );
        }
        let label = format!("{LABEL}=1");
        cmd!(
            sh,
            "{docker} network create --internal --label {label} {NETWORK}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .context("creating the nodes' network")?;
        crate::docker::create_volume(&sh, docker, SHARED_VOLUME, &label)
            .context("creating the nodes' shared directory")?;
        for node in &self.nodes {
            let dir = node.socket.parent().expect("a socket has a directory");
            // The nodes' sockets are their engines: only the owner may enter.
            crate::stack::private_dir(dir)?;
            let name = &node.name;
            let volume = format!("{name}-docker");
            crate::docker::create_volume(&sh, docker, &volume, &label)?;
            let mounts = [
                format!("{volume}:/var/lib/docker"),
                "/sys/fs/cgroup:/sys/fs/cgroup:rw".to_string(),
                format!("{}:/node", dir.display()),
                format!("{SHARED_VOLUME}:{}", self.shared_mount),
            ];
            let mount_flags: Vec<String> = mounts
                .iter()
                .flat_map(|m| ["-v".to_string(), m.clone()])
                .collect();
            // The socket's group is the caller's (the directory's, made just now): so the
            // xtask reaches the node without root.
            let group = {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(dir)?.gid().to_string()
            };
            cmd!(
                sh,
                "{docker} run -d --name {name} --hostname {name} --label {label}
                    --network {NETWORK}
                    --cap-add ALL --cap-drop SYS_RESOURCE
                    --security-opt seccomp=unconfined --security-opt apparmor=unconfined
                    --tmpfs /run {mount_flags...} {node_image} --group {group}"
            )
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("starting node {name}"))?;
        }
        for node in &self.nodes {
            self.wait_engine(node)?;
        }
        let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        let format = format!(
            "{{{{.Name}}}} {{{{(index .NetworkSettings.Networks \"{NETWORK}\").IPAddress}}}}"
        );
        let ips = cmd!(sh, "{docker} inspect --format {format} {names...}")
            .quiet()
            .read()
            .context("reading the nodes' addresses")?;
        for line in ips.lines() {
            let mut words = line.split_whitespace();
            if let (Some(name), Some(ip)) = (words.next(), words.next()) {
                let name = name.trim_start_matches('/');
                if let Some(n) = self.nodes.iter_mut().find(|n| n.name == name) {
                    n.ip = ip.to_string();
                }
            }
        }
        made.engines_s = started.elapsed().as_secs_f64();

        let t = Instant::now();
        let manager = self.node_shell(self.manager())?;
        let ip = &self.manager().ip;
        let listen = format!("{ip}:2377");
        cmd!(
            manager,
            "{docker} swarm init --advertise-addr {ip} --listen-addr {listen}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .context("initialising the swarm on the manager node")?;
        let token = cmd!(manager, "{docker} swarm join-token -q worker")
            .quiet()
            .read()?;
        for node in &self.nodes[1..] {
            let nsh = self.node_shell(node)?;
            cmd!(nsh, "{docker} swarm join --token {token} {listen}")
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| format!("joining {} to the swarm", node.name))?;
        }
        for node in &self.nodes {
            let name = &node.name;
            let label = format!("{SPREAD_LABEL}={name}");
            cmd!(manager, "{docker} node update --label-add {label} {name}")
                .quiet()
                .ignore_stdout()
                .run()
                .with_context(|| format!("labelling node {name}"))?;
        }
        made.swarm_s = t.elapsed().as_secs_f64();

        let t = Instant::now();
        self.load_images(images)?;
        made.images_s = t.elapsed().as_secs_f64();
        Ok(made)
    }

    /// Polls a node's engine until it answers.
    fn wait_engine(&self, node: &Node) -> Result<()> {
        let sh = self.node_shell(node)?;
        let docker = &self.docker;
        let started = Instant::now();
        let format = "{{.Server.Version}}";
        loop {
            let out = cmd!(sh, "{docker} version --format {format}")
                .quiet()
                .ignore_status()
                .output()?;
            if out.status.success() {
                return Ok(());
            }
            if started.elapsed() > READY_TIMEOUT {
                let host = self.host_shell()?;
                let name = &node.name;
                let log = cmd!(host, "{docker} logs --tail 15 {name}")
                    .quiet()
                    .ignore_status()
                    .output()
                    .map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                    .unwrap_or_default();
                bail!(
                    "the engine of node {name} did not answer within {} s; its last lines:\n{log}",
                    READY_TIMEOUT.as_secs()
                );
            }
            thread::sleep(Duration::from_millis(250));
        }
    }

    /// `docker save` of each image once, into a file under `target/cluster`, then `docker
    /// load` of it into the nodes that need it, every node at once.
    fn load_images(&self, images: &[(&str, bool)]) -> Result<()> {
        let sh = self.host_shell()?;
        let docker = &self.docker;
        let archive = self.dir.join("images.tar");
        for (image, everywhere) in images {
            cmd!(sh, "{docker} save -o {archive} {image}")
                .quiet()
                .run()
                .with_context(|| format!("docker save {image}"))?;
            let targets: Vec<&Node> = if *everywhere {
                self.nodes.iter().collect()
            } else {
                vec![self.manager()]
            };
            let results = crate::parallel::map(targets, |node| -> Result<()> {
                let out = Command::new(docker)
                    .env("DOCKER_HOST", node.endpoint())
                    .args(["load", "-q", "-i"])
                    .arg(&archive)
                    .stdout(Stdio::null())
                    .output()
                    .with_context(|| format!("docker load on {}", node.name))?;
                if !out.status.success() {
                    bail!(
                        "loading {image} into node {} failed: {}",
                        node.name,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                Ok(())
            });
            results.into_iter().collect::<Result<()>>()?;
        }
        let _ = std::fs::remove_file(&archive);
        Ok(())
    }

    /// Makes the shared directory the api's: owned by `owner` (`uid:gid`), as an operator
    /// prepares an NFS export.
    pub fn own_shared_dir(&self, owner: &str) -> Result<()> {
        let sh = self.host_shell()?;
        let (docker, name) = (&self.docker, &self.manager().name);
        let dir = &self.shared_mount;
        cmd!(sh, "{docker} exec {name} chown {owner} {dir}")
            .quiet()
            .run()
            .context("handing the shared directory to the api's user")
    }

    /// The swarm's nodes as the manager sees them (`docker node ls`).
    pub fn node_list(&self) -> Result<Vec<parse::Node>> {
        let sh = self.node_shell(self.manager())?;
        let docker = &self.docker;
        let format = "{{json .}}";
        let out = cmd!(sh, "{docker} node ls --format {format}")
            .quiet()
            .read()
            .context("listing the swarm's nodes")?;
        parse::nodes(&out)
    }

    /// Polls the manager until `node` has `status` (`Ready`, `Down`), up to `timeout`; the
    /// seconds it took.
    pub fn wait_node_status(&self, node: &str, status: &str, timeout: Duration) -> Result<f64> {
        let started = Instant::now();
        loop {
            let nodes = self.node_list()?;
            if nodes
                .iter()
                .any(|n| n.hostname == node && n.status.eq_ignore_ascii_case(status))
            {
                return Ok(started.elapsed().as_secs_f64());
            }
            if started.elapsed() > timeout {
                bail!(
                    "node {node} was not {status} within {} s: {}",
                    timeout.as_secs(),
                    nodes
                        .iter()
                        .map(|n| format!("{} {} {}", n.hostname, n.status, n.availability))
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            thread::sleep(Duration::from_millis(500));
        }
    }

    /// `docker node update --availability A NODE` on the manager.
    pub fn set_availability(&self, node: &str, availability: &str) -> Result<()> {
        let sh = self.node_shell(self.manager())?;
        let docker = &self.docker;
        cmd!(
            sh,
            "{docker} node update --availability {availability} {node}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("setting node {node} to {availability}"))
    }

    /// Node loss: the node's container stopped outright (its engine and every task on it
    /// go at once, without a word to the manager).
    pub fn kill_node(&self, node: &str) -> Result<()> {
        let sh = self.host_shell()?;
        let docker = &self.docker;
        cmd!(sh, "{docker} kill {node}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("stopping node {node}"))
    }

    /// Removes every node, the network, the volumes, the socket directories and the nodes'
    /// cgroups, whatever state they are in (of this run or an earlier one).
    pub fn remove(&self) -> Result<()> {
        let sh = self.host_shell()?;
        let docker = &self.docker;
        let filter = [format!("label={LABEL}")];
        for kind in ["container", "network", "volume"] {
            crate::docker::remove_matching(&sh, docker, kind, &filter)
                .context("removing the Swarm nodes")?;
        }
        if !cgroup_dirs().is_empty() {
            self.remove_cgroups(&sh)?;
        }
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("removing {}", self.dir.display()))?;
        }
        Ok(())
    }

    /// Removes the nodes' cgroups, deepest first (a cgroup goes by `rmdir` once it has no
    /// process; its files are the kernel's), from a throwaway container of the node image: the
    /// directories are root's, the caller need not be.
    fn remove_cgroups(&self, sh: &Shell) -> Result<()> {
        let docker = &self.docker;
        let image = crate::host::images::NODE_IMAGE;
        let script = format!(
            "for d in /sys/fs/cgroup/{NODE_PREFIX}* /sys/fs/cgroup/*/{NODE_PREFIX}*; do \
               [ -d \"$d\" ] && find \"$d\" -depth -type d -exec rmdir {{}} + ; \
             done; true"
        );
        cmd!(
            sh,
            "{docker} run --rm --label {LABEL}=1 -v /sys/fs/cgroup:/sys/fs/cgroup:rw --entrypoint sh {image} -c {script}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .context("removing the nodes' cgroups")
    }

    /// What of any cluster is still on the host (`leftovers`).
    pub fn leftovers(&self) -> Result<Vec<String>> {
        leftovers(&self.host_shell()?, &self.docker)
    }

    /// How to reach the cluster by hand and remove it, for `--keep`.
    pub fn keep_commands(&self) -> Vec<String> {
        let names: Vec<&str> = self.nodes.iter().map(|n| n.name.as_str()).collect();
        vec![
            format!(
                "export DOCKER_HOST={}   # the manager; then docker node ls, docker stack ps …",
                self.manager().endpoint()
            ),
            format!(
                "docker rm -f -v {}; docker network rm {NETWORK}; docker volume rm $(docker volume ls -q --filter label={LABEL})   # with the host's DOCKER_HOST; the next --nodes run also removes it",
                names.join(" ")
            ),
        ]
    }
}

/// What of any cluster is still on the engine `sh` reaches: containers, networks and volumes
/// with its label, and the nodes' cgroups on this machine.
pub fn leftovers(sh: &Shell, docker: &Path) -> Result<Vec<String>> {
    let mut left = crate::docker::labelled(sh, docker, LABEL)?;
    left.extend(
        cgroup_dirs()
            .into_iter()
            .map(|d| format!("cgroup {}", d.display())),
    );
    Ok(left)
}

/// The endpoint of the engine this process talks to now: `DOCKER_HOST`, else the current
/// context's (`docker context inspect`).
pub fn current_endpoint(sh: &Shell, docker: &Path) -> Result<String> {
    if let Some(host) = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()) {
        return Ok(host);
    }
    let format = "{{.Endpoints.docker.Host}}";
    let out = cmd!(sh, "{docker} context inspect --format {format}")
        .quiet()
        .read()
        .context("asking docker which engine it talks to (`docker context inspect`)")?;
    let host = out.trim();
    if host.is_empty() {
        bail!("`docker context inspect` names no engine");
    }
    Ok(host.to_string())
}

/// The nodes' cgroup directories (`/scaling-node-<name>` in each hierarchy of cgroup v1, or at
/// the root of v2), which outlive a node whose engine was killed.
fn cgroup_dirs() -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut found = Vec::new();
    let mut look = |dir: &Path| {
        if let Ok(entries) = std::fs::read_dir(dir) {
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with(NODE_PREFIX) {
                    found.push(e.path());
                }
            }
        }
    };
    look(root);
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            if e.path().is_dir() && !e.file_name().to_string_lossy().starts_with(NODE_PREFIX) {
                look(&e.path());
            }
        }
    }
    found
}

/// What a command asks of its cluster.
pub struct Wanted<'a> {
    pub nodes: u32,
    /// Where every node mounts the shared directory.
    pub shared_mount: &'a str,
    /// Every node runs it.
    pub api_image: &'a str,
    /// The manager alone runs it (the compose file pins the database there).
    pub db_image: &'a str,
    pub keep: bool,
    /// `--no-build`: the node image must be present.
    pub no_build: bool,
}

/// A cluster for one command: the node image, the nodes, the images loaded, the shared
/// directory owned by the api's user, and this process's docker calls pointed at the manager
/// (`Cluster::point_process_at_manager`). The guard removes it all on every exit path and
/// points the calls back (with `keep`, leaves it up and prints how to reach it).
pub fn bring_up(
    sh: &Shell,
    project: &crate::Project,
    docker: &crate::docker::Docker,
    wanted: &Wanted<'_>,
) -> Result<(crate::stack::StackGuard, Cluster)> {
    use crate::{host::images, stack::guard::Teardown, ui};
    let node_image = if wanted.no_build {
        if !docker.image_exists(sh, images::NODE_IMAGE) {
            bail!(
                "--no-build: the node image {} is not present; run without --no-build once",
                images::NODE_IMAGE
            );
        }
        images::NODE_IMAGE.to_string()
    } else {
        images::ensure_node(sh, project, docker, false)?
    };
    let host = current_endpoint(sh, &docker.program)?;
    let mut cluster = Cluster::plan(
        &docker.program,
        &host,
        &project.target_dir.join("cluster"),
        wanted.nodes,
        wanted.shared_mount,
    );
    ui::step(&format!(
        "Cluster: {} Swarm nodes as containers, each with its own Docker engine",
        wanted.nodes
    ));
    cluster.remove().context("removing an earlier cluster")?;
    let guard = crate::stack::StackGuard::of(Teardown::Cluster(cluster.clone()), wanted.keep);
    let started = Instant::now();
    let made = cluster.create(
        &node_image,
        &[(wanted.api_image, true), (wanted.db_image, false)],
    )?;
    let user = docker
        .image_inspect(sh, wanted.api_image, "{{.Config.User}}")?
        .trim()
        .to_string();
    if user.is_empty() || user.starts_with('0') || user == "root" {
        bail!(
            "the api image {} runs as {:?}: expected its non-root user",
            wanted.api_image,
            user
        );
    }
    cluster.own_shared_dir(&user)?;
    ui::note(&format!(
        "cluster up in {:.1} s: engines {:.1} s, swarm {:.1} s, images {:.1} s ({} on every node, {} on the manager); nodes {}",
        started.elapsed().as_secs_f64(),
        made.engines_s,
        made.swarm_s,
        made.images_s,
        wanted.api_image,
        wanted.db_image,
        cluster
            .nodes
            .iter()
            .map(|n| format!("{} {}", n.name, n.ip))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    cluster.point_process_at_manager();
    Ok((guard, cluster))
}
