//! Every `docker` and `docker compose` invocation of the xtask goes through this module.
//!
//! `Compose` always passes the compose file and a project name, and `-T` to `exec`, so no
//! caller can forget them. Methods return the raw text the tool printed; parsing lives in
//! pure functions elsewhere (`stack::parse`) so it can be tested on recorded output.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

/// The docker CLI.
#[derive(Clone, Debug)]
pub struct Docker {
    pub program: PathBuf,
}

impl Docker {
    /// Finds `docker` on PATH.
    pub fn locate() -> Result<Docker> {
        let program = which::which("docker").map_err(|_| {
            anyhow::anyhow!(
                "docker is not on PATH: install Docker Engine (Debian: `apt-get install docker.io`) and retry"
            )
        })?;
        Ok(Docker { program })
    }

    /// Asks the daemon for its version; an error means the daemon is unreachable.
    pub fn server_version(&self, sh: &Shell) -> Result<String> {
        let docker = &self.program;
        let format = "{{.Server.Version}}";
        let out = cmd!(sh, "{docker} version --format {format}")
            .quiet()
            .ignore_status()
            .output()
            .context("running `docker version`")?;
        if !out.status.success() {
            bail!(
                "the Docker daemon is not reachable ({}): start it (`systemctl start docker`) or check DOCKER_HOST and your permissions on the socket",
                first_line(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// `docker compose version --short`, if the compose plugin is installed.
    pub fn compose_plugin_version(&self, sh: &Shell) -> Option<String> {
        let docker = &self.program;
        let out = cmd!(sh, "{docker} compose version --short")
            .quiet()
            .ignore_status()
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// Whether an image with this reference exists locally.
    pub fn image_exists(&self, sh: &Shell, image: &str) -> bool {
        let docker = &self.program;
        let format = "{{.Id}}";
        cmd!(sh, "{docker} image inspect --format {format} {image}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    }

    /// A label of a local image, or `None` when the image or the label is absent.
    pub fn image_label(&self, sh: &Shell, image: &str, label: &str) -> Option<String> {
        let docker = &self.program;
        let format = format!("{{{{ index .Config.Labels \"{label}\" }}}}");
        let out = cmd!(sh, "{docker} image inspect --format {format} {image}")
            .quiet()
            .ignore_status()
            .output()
            .ok()?;
        let value = String::from_utf8_lossy(&out.stdout).trim().to_string();
        (out.status.success() && !value.is_empty() && value != "<no value>").then_some(value)
    }

    /// The image size in bytes.
    pub fn image_size(&self, sh: &Shell, image: &str) -> Result<u64> {
        let docker = &self.program;
        let format = "{{.Size}}";
        let out = cmd!(sh, "{docker} image inspect --format {format} {image}")
            .quiet()
            .read()
            .with_context(|| format!("inspecting image {image}"))?;
        out.trim()
            .parse()
            .with_context(|| format!("image size of {image}: {out:?}"))
    }

    /// Tries to pull an image; `Ok(false)` when the registry cannot be reached.
    pub fn try_pull(&self, sh: &Shell, image: &str) -> bool {
        let docker = &self.program;
        cmd!(sh, "{docker} pull --quiet {image}")
            .quiet()
            .ignore_stdout()
            .ignore_stderr()
            .run()
            .is_ok()
    }

    /// `tar -C rootfs -c . | docker import` with the given `--change` instructions.
    pub fn import_rootfs(&self, rootfs: &Path, image: &str, changes: &[String]) -> Result<()> {
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(rootfs)
            // apt's package lists are 50 MB that a later `apt-get update` fetches anyway.
            .args([
                "--numeric-owner",
                "--exclude=./var/lib/apt/lists/*",
                "--exclude=./var/cache/apt/*.bin",
                "-c",
                ".",
            ])
            .stdout(Stdio::piped())
            .spawn()
            .context("starting tar over the root filesystem")?;
        let mut import = Command::new(&self.program);
        import.arg("import");
        for change in changes {
            import.arg("--change").arg(change);
        }
        let status = import
            .args(["-", image])
            .stdin(tar.stdout.take().expect("piped"))
            .stdout(Stdio::null())
            .status()
            .context("running `docker import`")?;
        let tar_status = tar.wait().context("waiting for tar")?;
        if !tar_status.success() || !status.success() {
            bail!(
                "importing {} as {image} failed (tar: {tar_status}, docker import: {status})",
                rootfs.display()
            );
        }
        Ok(())
    }

    /// `docker build` of a single-stage context (the legacy builder is fine for those).
    pub fn build(
        &self,
        sh: &Shell,
        context: &Path,
        tag: &str,
        build_args: &[(String, String)],
        labels: &[(String, String)],
    ) -> Result<()> {
        let docker = &self.program;
        let args = build_flags(build_args, labels);
        cmd!(sh, "{docker} build --quiet -t {tag} {args...} {context}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("building image {tag} from {}", context.display()))
    }

    /// `docker build --target` of one stage of a multi-stage Dockerfile (`-f`) on `context`.
    #[allow(clippy::too_many_arguments)]
    pub fn build_target(
        &self,
        sh: &Shell,
        context: &Path,
        dockerfile: &Path,
        target: &str,
        tag: &str,
        build_args: &[(String, String)],
        labels: &[(String, String)],
    ) -> Result<()> {
        let docker = &self.program;
        let args = build_flags(build_args, labels);
        cmd!(
            sh,
            "{docker} build --quiet -f {dockerfile} --target {target} -t {tag} {args...} {context}"
        )
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| {
            format!(
                "building image {tag} (target {target}) from {}",
                context.display()
            )
        })
    }

    /// Starts one stopped container again (by id).
    pub fn start(&self, sh: &Shell, id: &str) -> Result<()> {
        let docker = &self.program;
        cmd!(sh, "{docker} start {id}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("starting container {id}"))
    }

    /// Sends SIGKILL to one container, as the kernel's OOM killer or a lost node would.
    pub fn kill(&self, sh: &Shell, id: &str) -> Result<()> {
        let docker = &self.program;
        cmd!(sh, "{docker} kill {id}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("killing container {id}"))
    }

    /// `docker stop --time grace`: SIGTERM, then SIGKILL after `grace` seconds.
    pub fn stop_with_grace(&self, sh: &Shell, id: &str, grace: u64) -> Result<()> {
        let docker = &self.program;
        let grace = grace.to_string();
        cmd!(sh, "{docker} stop --time {grace} {id}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("stopping container {id}"))
    }

    /// `docker inspect` of containers with a Go template, one line per container.
    pub fn inspect(&self, sh: &Shell, ids: &[String], format: &str) -> Result<String> {
        if ids.is_empty() {
            return Ok(String::new());
        }
        let docker = &self.program;
        cmd!(sh, "{docker} inspect --format {format} {ids...}")
            .quiet()
            .read()
            .context("running `docker inspect`")
    }

    /// `docker exec <id> argv...` (no TTY, stdin closed); the output whatever the exit.
    pub fn exec(&self, sh: &Shell, id: &str, argv: &[&str]) -> Result<Output> {
        let docker = &self.program;
        cmd!(sh, "{docker} exec {id} {argv...}")
            .quiet()
            .ignore_status()
            .output()
            .with_context(|| format!("docker exec in {id}"))
    }

    /// `docker exec -e KEY... <id> argv...`, the values travelling in the environment of the
    /// docker process (never in argv); the output whatever the exit.
    pub fn exec_with_env(
        &self,
        sh: &Shell,
        id: &str,
        env: &[(&str, &str)],
        argv: &[&str],
    ) -> Result<Output> {
        let docker = &self.program;
        let flags: Vec<String> = env
            .iter()
            .flat_map(|(k, _)| ["-e".to_string(), k.to_string()])
            .collect();
        let mut command = cmd!(sh, "{docker} exec {flags...} {id} {argv...}").quiet();
        for (k, v) in env {
            command = command.env(k, v);
        }
        command
            .ignore_status()
            .output()
            .with_context(|| format!("docker exec in {id}"))
    }

    /// The id of a compose service's (first) running container, found by compose's labels
    /// with `docker ps` (no compose project to parse).
    pub fn compose_container(&self, sh: &Shell, project: &str, service: &str) -> Result<String> {
        let docker = &self.program;
        let project_label = format!("label=com.docker.compose.project={project}");
        let service_label = format!("label=com.docker.compose.service={service}");
        let out = cmd!(
            sh,
            "{docker} ps -q --filter {project_label} --filter {service_label} --filter label=com.docker.compose.oneoff=False"
        )
        .quiet()
        .read()
        .context("running `docker ps`")?;
        out.split_whitespace()
            .next()
            .map(String::from)
            .with_context(|| format!("{project} has no running {service} container"))
    }

    /// `docker exec -i <id> argv...` in the background, stdin, stdout and stderr piped (the
    /// caller talks to it, or just waits for it). The process gets the shell's `DOCKER_HOST`:
    /// on a cluster, the engine of the node that holds the container.
    pub fn spawn_exec(&self, sh: &Shell, id: &str, argv: &[&str]) -> Result<Child> {
        let mut command = Command::new(&self.program);
        if let Some(host) = sh.var_os("DOCKER_HOST") {
            command.env("DOCKER_HOST", host);
        }
        command
            .args(["exec", "-i"])
            .arg(id)
            .args(argv)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("docker exec in {id}"))
    }

    /// `docker pause`: freezes every process of a container (the kernel still accepts its TCP
    /// connections; nothing answers them until `unpause`).
    pub fn pause(&self, sh: &Shell, id: &str) -> Result<()> {
        let docker = &self.program;
        cmd!(sh, "{docker} pause {id}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("pausing container {id}"))
    }

    /// `docker unpause`.
    pub fn unpause(&self, sh: &Shell, id: &str) -> Result<()> {
        let docker = &self.program;
        cmd!(sh, "{docker} unpause {id}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("unpausing container {id}"))
    }

    /// Stops one container (by id), as an operator or a crash would.
    pub fn stop(&self, sh: &Shell, id: &str) -> Result<()> {
        let docker = &self.program;
        cmd!(sh, "{docker} stop --time 10 {id}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("stopping container {id}"))
    }

    /// `docker rm` of a stopped container.
    pub fn remove(&self, sh: &Shell, id: &str) -> Result<()> {
        let docker = &self.program;
        cmd!(sh, "{docker} rm {id}")
            .quiet()
            .ignore_stdout()
            .run()
            .with_context(|| format!("removing container {id}"))
    }

    /// Containers, networks and volumes that still carry a compose project's label.
    pub fn project_leftovers(&self, sh: &Shell, project: &str) -> Result<Vec<String>> {
        labelled(
            sh,
            &self.program,
            &format!("com.docker.compose.project={project}"),
        )
        .with_context(|| format!("listing what is left of project {project}"))
    }

    /// One JSON object per container: its compose number, when it started and its health log
    /// (`.State.Health`: status and Docker's last five probe results). Parsed by
    /// `timeline::parse_inspect`.
    pub fn start_and_health(&self, sh: &Shell, ids: &[String]) -> Result<String> {
        let format = concat!(
            r#"{"number":{{json (index .Config.Labels "com.docker.compose.container-number")}},"#,
            r#""task":{{json (index .Config.Labels "com.docker.swarm.task.name")}},"#,
            r#""started_at":{{json .State.StartedAt}},"health":{{json .State.Health}}}"#
        );
        self.inspect(sh, ids, format)
    }

    /// A JSON array of what the upgrade scenario reads of each container: id, restart count,
    /// image, compose labels and `.State` (never `.Config.Env`, which holds the run's
    /// passwords). Parsed by `scaling::upgrade::facts::replicas`.
    pub fn replica_facts(&self, sh: &Shell, ids: &[String]) -> Result<String> {
        let format = concat!(
            r#"{"Id":{{json .Id}},"RestartCount":{{json .RestartCount}},"#,
            r#""Config":{"Image":{{json .Config.Image}},"Labels":{{json .Config.Labels}}},"#,
            r#""State":{{json .State}}}"#
        );
        let lines = self.inspect(sh, ids, format)?;
        let objects: Vec<&str> = lines.lines().filter(|l| !l.trim().is_empty()).collect();
        Ok(format!("[{}]", objects.join(",\n")))
    }

    /// `docker stats --no-stream`, one JSON object per container (`{{json .}}`, which every
    /// CLI version understands). Parsed by `bench::figures::parse_stats`.
    pub fn stats(&self, sh: &Shell, ids: &[String]) -> Result<String> {
        if ids.is_empty() {
            return Ok(String::new());
        }
        let docker = &self.program;
        let format = "{{json .}}";
        cmd!(sh, "{docker} stats --no-stream --format {format} {ids...}")
            .quiet()
            .read()
            .context("running `docker stats --no-stream`")
    }

    /// `docker history --no-trunc`: the command that made each layer, one per line.
    pub fn history(&self, sh: &Shell, image: &str) -> Result<String> {
        let docker = &self.program;
        let format = "{{.CreatedBy}}";
        cmd!(sh, "{docker} history --no-trunc --format {format} {image}")
            .quiet()
            .read()
            .with_context(|| format!("running `docker history {image}`"))
    }

    /// `docker image inspect` of one image with a Go template.
    pub fn image_inspect(&self, sh: &Shell, image: &str, format: &str) -> Result<String> {
        let docker = &self.program;
        cmd!(sh, "{docker} image inspect --format {format} {image}")
            .quiet()
            .read()
            .with_context(|| format!("inspecting image {image}"))
    }

    /// Container events of a compose project between two instants (already past, so this
    /// returns at once), one line per event in the given Go template.
    pub fn project_events(
        &self,
        sh: &Shell,
        project: &str,
        since: &str,
        until: &str,
        format: &str,
    ) -> Result<String> {
        let docker = &self.program;
        let label = format!("label=com.docker.compose.project={project}");
        cmd!(sh, "{docker} events --since {since} --until {until} --filter type=container --filter {label} --format {format}")
            .quiet()
            .read()
            .context("running `docker events`")
    }
}

/// `exec -T [-e KEY]... service argv...`: the values of `env` travel in the environment of the
/// compose process, so they never appear in a process list.
fn exec_args<'a>(service: &'a str, env: &[(&'a str, &'a str)], argv: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec!["exec", "-T"];
    for (k, _) in env {
        args.extend(["-e", *k]);
    }
    args.push(service);
    args.extend_from_slice(argv);
    args
}

/// Runs `$XTASK_SQL` as root on the application database inside the db container, with
/// `-N -B` output. The root password never leaves the container's environment, and the SQL
/// travels in an environment variable, so it needs no shell quoting.
pub const DB_SQL_SCRIPT: &str = "MYSQL_PWD=\"$MYSQL_ROOT_PASSWORD\" exec \"$(command -v mariadb || command -v mysql)\" -uroot -N -B \"$MYSQL_DATABASE\" -e \"$XTASK_SQL\"";

/// Removes every `kind` (`container`, `network` or `volume`) that matches all of `filters`
/// (`label=…`, `network=…`) on the engine `sh` reaches: containers by force, with their
/// anonymous volumes. Returns how many there were.
pub fn remove_matching(sh: &Shell, docker: &Path, kind: &str, filters: &[String]) -> Result<usize> {
    let (list, remove): (&[&str], &[&str]) = match kind {
        "container" => (&["ps", "-aq"], &["rm", "-f", "-v"]),
        "network" => (&["network", "ls", "-q"], &["network", "rm"]),
        "volume" => (&["volume", "ls", "-q"], &["volume", "rm"]),
        other => bail!("cannot remove a {other}"),
    };
    let filter_flags: Vec<String> = filters
        .iter()
        .flat_map(|f| ["--filter".to_string(), f.clone()])
        .collect();
    let ids = cmd!(sh, "{docker} {list...} {filter_flags...}")
        .quiet()
        .read()
        .with_context(|| format!("listing the {kind}s matching {}", filters.join(" ")))?;
    let ids: Vec<&str> = ids.split_whitespace().collect();
    let count = ids.len();
    if count > 0 {
        let out = cmd!(sh, "{docker} {remove...} {ids...}")
            .quiet()
            .ignore_status()
            .output()?;
        // A container that went by itself in between (`--rm`) is not an error.
        let stderr = String::from_utf8_lossy(&out.stderr);
        let real: Vec<&str> = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.contains("No such container"))
            .collect();
        if !out.status.success() && !real.is_empty() {
            bail!(
                "removing the {kind}s matching {}: {}",
                filters.join(" "),
                real.join("; ")
            );
        }
    }
    Ok(count)
}

/// Creates the volume `name` carrying `label` (`key=value`) on the engine `sh` reaches, so that
/// `remove_matching` and `labelled` find it; an existing one is kept as it is.
pub fn create_volume(sh: &Shell, docker: &Path, name: &str, label: &str) -> Result<()> {
    cmd!(sh, "{docker} volume create --label {label} {name}")
        .quiet()
        .ignore_stdout()
        .run()
        .with_context(|| format!("creating volume {name}"))
}

/// The containers, networks and volumes carrying `label` (`key=value`) on the engine `sh`
/// reaches, as `container NAME`, `network NAME`, `volume NAME`: what a clean-up left behind.
pub fn labelled(sh: &Shell, docker: &Path, label: &str) -> Result<Vec<String>> {
    let filter = format!("label={label}");
    let mut left = Vec::new();
    for (kind, args) in [
        ("container", vec!["ps", "-a", "--format", "{{.Names}}"]),
        ("network", vec!["network", "ls", "--format", "{{.Name}}"]),
        ("volume", vec!["volume", "ls", "--format", "{{.Name}}"]),
    ] {
        let out = cmd!(sh, "{docker} {args...} --filter {filter}")
            .quiet()
            .read()
            .with_context(|| format!("listing {kind}s labelled {label}"))?;
        left.extend(
            out.lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| format!("{kind} {l}")),
        );
    }
    Ok(left)
}

/// Whether an engine of this `docker version` server version accepts a healthcheck's
/// `start_interval` (Docker Engine 25 and later; 20.10 refuses to create the container).
pub fn supports_start_interval(server_version: &str) -> bool {
    server_version
        .trim()
        .split(['.', '+', '-'])
        .next()
        .and_then(|major| major.parse::<u32>().ok())
        .is_some_and(|major| major >= 25)
}

/// How to run Compose v2: the docker CLI plugin, or a standalone binary.
#[derive(Clone, Debug)]
pub enum ComposeProgram {
    Plugin(PathBuf),
    Standalone(PathBuf),
}

impl ComposeProgram {
    fn argv(&self) -> (PathBuf, Vec<&'static str>) {
        match self {
            ComposeProgram::Plugin(docker) => (docker.clone(), vec!["compose"]),
            ComposeProgram::Standalone(bin) => (bin.clone(), vec![]),
        }
    }

    /// The command a user can type to get the same Compose.
    pub fn display(&self) -> String {
        match self {
            ComposeProgram::Plugin(_) => "docker compose".to_string(),
            ComposeProgram::Standalone(bin) => bin.display().to_string(),
        }
    }
}

/// One compose project on one compose file, with the variables its file needs.
#[derive(Clone, Debug)]
pub struct Compose {
    pub program: ComposeProgram,
    pub file: PathBuf,
    /// Files laid over `file`, in order (`-f` each after it).
    pub overrides: Vec<PathBuf>,
    pub project: String,
    /// Variables for the compose file (images, credentials); passed as environment,
    /// never as arguments, so they never show in a process list or an echoed command.
    pub env: Vec<(String, String)>,
    /// Replaces the project directory's `.env` (the check must not depend on a developer's).
    pub env_file: Option<PathBuf>,
}

/// What a test stack is made of, besides its images: the database's names, this run's
/// passwords and any extra variables (a fault's settings).
pub struct TestStack<'a> {
    pub project: &'a str,
    pub image_env: &'a [(String, String)],
    pub db_name: &'a str,
    pub password: &'a str,
    /// The file holding `password` that the compose file's `db-password` secret reads (the
    /// api's copy of the password; the database still gets it as a variable).
    pub password_file: &'a Path,
    pub root_password: &'a str,
    pub extra: Vec<(String, String)>,
    /// Compose files laid over the main one.
    pub overrides: Vec<PathBuf>,
    /// The env file the compose file reads instead of the project's `.env`.
    pub env_file: PathBuf,
    /// Write every variable into `env_file` (so the commands printed for `--keep` work);
    /// otherwise it stays empty and the variables travel only in the environment.
    pub write_vars: bool,
}

impl Compose {
    /// A test stack's compose project: every variable comes from the check itself, never from
    /// a developer's `.env`, so what is tested cannot depend on the machine it runs on.
    pub fn test_stack(
        program: ComposeProgram,
        file: PathBuf,
        stack: TestStack<'_>,
    ) -> Result<Compose> {
        let mut env = stack.image_env.to_vec();
        env.extend(
            [
                ("DB_NAME", stack.db_name),
                ("DB_USER", "app"),
                ("DB_PASSWORD", stack.password),
                ("DB_ROOT_PASSWORD", stack.root_password),
                ("RUST_LOG", "info"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        env.push((
            "DB_PASSWORD_SECRET_FILE".to_string(),
            stack.password_file.display().to_string(),
        ));
        env.extend(stack.extra);
        let contents: String = if stack.write_vars {
            env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
        } else {
            String::new()
        };
        std::fs::write(&stack.env_file, contents)
            .with_context(|| format!("writing {}", stack.env_file.display()))?;
        Ok(Compose {
            program,
            file,
            overrides: stack.overrides,
            project: stack.project.to_string(),
            env,
            env_file: Some(stack.env_file),
        })
    }

    fn cmd<'a>(&self, sh: &'a Shell, args: &[&str]) -> xshell::Cmd<'a> {
        let (program, pre) = self.program.argv();
        let mut ignored = ignored_user_env();
        let file = &self.file;
        let overrides: Vec<String> = self
            .overrides
            .iter()
            .flat_map(|f| ["-f".to_string(), f.display().to_string()])
            .collect();
        let project = &self.project;
        let env_file: Vec<String> = match &self.env_file {
            Some(f) => vec!["--env-file".into(), f.display().to_string()],
            None => vec![],
        };
        let mut command = cmd!(
            sh,
            "{program} {pre...} -f {file} {overrides...} -p {project} {env_file...} {args...}"
        );
        // What is tested must not depend on the developer's shell: none of its API_*, DB_* or
        // COMPOSE_* variables reach compose (and through it the containers).
        for name in ignored.drain(..) {
            command = command.env_remove(name);
        }
        command.envs(self.env.iter().map(|(k, v)| (k, v))).quiet()
    }

    /// A command line a user can paste to inspect this project.
    pub fn user_command(&self, args: &str) -> String {
        let env_file = self
            .env_file
            .as_ref()
            .map(|f| format!(" --env-file {}", f.display()))
            .unwrap_or_default();
        let overrides: String = self
            .overrides
            .iter()
            .map(|f| format!(" -f {}", f.display()))
            .collect();
        format!(
            "{} -f {}{overrides} -p {}{env_file} {args}",
            self.program.display(),
            self.file.display(),
            self.project
        )
    }

    /// Runs a compose subcommand; on failure the error carries its stderr.
    pub fn run(&self, sh: &Shell, args: &[&str]) -> Result<String> {
        let out = self
            .cmd(sh, args)
            .ignore_status()
            .output()
            .with_context(|| format!("running `{}`", self.user_command(&args.join(" "))))?;
        if !out.status.success() {
            bail!(
                "`{}` failed: {}",
                self.user_command(&args.join(" ")),
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ps --all --format json` (JSON Lines or, before v2.21, an array).
    pub fn ps(&self, sh: &Shell, service: &str) -> Result<String> {
        self.run(
            sh,
            &["ps", "--all", "--no-trunc", "--format", "json", service],
        )
    }

    /// `logs --timestamps --no-color` of a service, every container.
    pub fn logs(&self, sh: &Shell, service: &str) -> Result<String> {
        self.run(sh, &["logs", "--timestamps", "--no-color", service])
    }

    /// `exec -T --index=i service argv...`, with the raw output whatever the exit status.
    pub fn exec(&self, sh: &Shell, service: &str, index: u32, argv: &[&str]) -> Result<Output> {
        let index = format!("--index={index}");
        let mut args = vec!["exec", "-T", index.as_str(), service];
        args.extend_from_slice(argv);
        self.cmd(sh, &args)
            .ignore_status()
            .output()
            .context("running `docker compose exec`")
    }

    /// Starts `exec -T` in the background (for an outside client that must stay connected).
    pub fn spawn_exec(
        &self,
        sh: &Shell,
        service: &str,
        env: &[(&str, &str)],
        argv: &[&str],
    ) -> Result<Child> {
        let args = exec_args(service, env, argv);
        let mut command: Command = self.cmd(sh, &args).envs(env.iter().copied()).into();
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("starting `docker compose exec` in the background")
    }

    /// SQL as root in the `db` service's container (see `DB_SQL_SCRIPT`), in the background,
    /// for an outside client that must stay connected.
    pub fn spawn_db_sql(&self, sh: &Shell, db: &str, sql: &str) -> Result<Child> {
        self.spawn_exec(sh, db, &[("XTASK_SQL", sql)], &["sh", "-c", DB_SQL_SCRIPT])
    }

    /// `up -d --no-build --no-recreate --scale service=n service`: starts or stops replicas
    /// up to `n`, leaving the running ones alone.
    pub fn up_scaled(&self, sh: &Shell, service: &str, n: u32) -> Result<()> {
        let scale = format!("{service}={n}");
        self.run(
            sh,
            &[
                "up",
                "-d",
                "--no-build",
                "--no-recreate",
                "--scale",
                &scale,
                service,
            ],
        )
        .map(drop)
    }

    /// `up -d --no-build --no-deps --no-recreate --scale service=n service`: starts replicas
    /// without touching the services they depend on (the database may be paused).
    pub fn up_scaled_no_deps(&self, sh: &Shell, service: &str, n: u32) -> Result<()> {
        let scale = format!("{service}={n}");
        self.run(
            sh,
            &[
                "up",
                "-d",
                "--no-build",
                "--no-deps",
                "--no-recreate",
                "--scale",
                &scale,
                service,
            ],
        )
        .map(drop)
    }

    /// `port --index=i service port` → "127.0.0.1:49153".
    pub fn port(&self, sh: &Shell, service: &str, index: u32, port: u16) -> Result<String> {
        let index = format!("--index={index}");
        let port = port.to_string();
        Ok(self
            .run(sh, &["port", index.as_str(), service, port.as_str()])?
            .trim()
            .to_string())
    }

    /// `down -v --remove-orphans`: removes the project's containers, networks and volumes.
    pub fn down(&self, sh: &Shell) -> Result<()> {
        self.run(sh, &["down", "-v", "--remove-orphans", "--timeout", "10"])
            .map(drop)
    }
}

/// Prefixes of the variables a developer's shell may hold that would change what a test stack
/// runs; compose calls never inherit them.
pub const IGNORED_ENV_PREFIXES: [&str; 3] = ["API_", "DB_", "COMPOSE_"];

/// Names of this process's variables that compose calls do not inherit, sorted.
pub fn ignored_user_env() -> Vec<String> {
    let mut names: Vec<String> = std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| IGNORED_ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect();
    names.sort();
    names
}

fn first_line(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_string()
}

/// `--build-arg K=V` and `--label K=V` flags for `docker build`.
fn build_flags(build_args: &[(String, String)], labels: &[(String, String)]) -> Vec<String> {
    let flag = |name: &str, (k, v): &(String, String)| [name.to_string(), format!("{k}={v}")];
    build_args
        .iter()
        .flat_map(|kv| flag("--build-arg", kv))
        .chain(labels.iter().flat_map(|kv| flag("--label", kv)))
        .collect()
}
#[cfg(test)]
mod tests {
    use super::supports_start_interval;

    #[test]
    fn build_flags_are_build_args_then_labels() {
        let kv = |k: &str, v: &str| (k.to_string(), v.to_string());
        assert_eq!(
            super::build_flags(&[kv("UID", "10001")], &[kv("inputs", "ab12"), kv("x", "y")]),
            [
                "--build-arg",
                "UID=10001",
                "--label",
                "inputs=ab12",
                "--label",
                "x=y"
            ]
        );
        assert!(super::build_flags(&[], &[]).is_empty());
    }

    #[test]
    fn start_interval_needs_docker_engine_25_or_later() {
        // As `docker version --format {{.Server.Version}}` prints them.
        assert!(!supports_start_interval("20.10.24+dfsg1"));
        assert!(!supports_start_interval("24.0.7"));
        assert!(supports_start_interval("25.0.0"));
        assert!(supports_start_interval("28.3.2"));
        assert!(!supports_start_interval(""));
        assert!(!supports_start_interval("dev"));
    }
}
