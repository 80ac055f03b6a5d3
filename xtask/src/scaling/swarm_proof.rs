//! The Swarm lifecycle run for real, end to end, as an ignored test (it needs Docker, the
//! images of `cargo xtask images` and Compose v2):
//!
//! ```sh
//! cargo test -p xtask swarm::proof -- --ignored --nocapture
//! ```
//!
//! Run it when nothing else uses the engine: while it runs, the engine is in swarm mode.
//!
//! It deploys the stack with `SWARM_REPLICAS` api tasks (default 4), waits until all are
//! healthy, has every task write and read the shared directory, judges TEST-01 and TEST-03 on
//! Swarm's terms, prints the figures (time to healthy, spread of the containers' start), asks
//! every task for `/instance` from a client container on the stack's overlay network, and
//! always removes the stack, its networks and volumes, and leaves the swarm if it created it.
//! With `SWARM_DB_FIRST=1` the database is deployed alone and healthy before the api tasks.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use xshell::{cmd, Shell};

use super::swarm_checks::{self as judge, SharedDataProbe};
use crate::stack::swarm::{
    engine::{self, Converged, Membership, SwarmStack},
    parse::{self, SwarmState},
    stack_file,
};

const STACK: &str = "scaling-swarm-proof";
const DATA_DIR: &str = "/app/data";

fn compose_program() -> PathBuf {
    if let Some(p) = std::env::var_os("SWARM_COMPOSE") {
        return p.into();
    }
    let project = crate::Project::locate().expect("run inside a checkout of this project");
    project
        .target_dir
        .join("tools/compose-2.40.3/docker-compose")
}

fn env_or(key: &str, default: &str) -> String {
    std::env::var(key).unwrap_or_else(|_| default.to_string())
}

/// `password` must be the same for every deploy of a run: a changed value updates (restarts)
/// the db service, whose data directory keeps the first one.
fn stack_file(sh: &Shell, replicas: u32, pw: &str) -> Result<stack_file::StackFile> {
    let compose = compose_program();
    let project = crate::Project::locate().expect("run inside a checkout of this project");
    let file = project.compose_file();
    // The api's password as the compose file's `db-password` secret file.
    let secret = crate::stack::write_secret_file(
        &project.target_dir.join("secrets").join(STACK),
        "db-password",
        pw,
    )?;
    let config = cmd!(
        sh,
        "{compose} -f {file} -p {STACK} --env-file /dev/null config --format json"
    )
    .env("DB_PASSWORD", pw)
    .env("DB_PASSWORD_SECRET_FILE", &secret)
    .env("DB_ROOT_PASSWORD", format!("r{pw}"))
    .env(
        "API_IMAGE",
        env_or("API_IMAGE", "localhost/scaling-api:latest"),
    )
    .env(
        "DB_IMAGE",
        env_or("DB_IMAGE", "localhost/scaling-mariadb:10.11"),
    )
    .quiet()
    .read()
    .context("`docker compose config`")?;
    stack_file::from_compose_config(&config, replicas)
}

fn rand_seed() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn run(sh: &Shell, stack: &SwarmStack, replicas: u32) -> Result<()> {
    // Throwaway passwords for this run only; never printed.
    let pw = format!("p{:x}", rand_seed());
    let file = stack_file(sh, replicas, &pw)?;
    eprintln!(
        "swarm ignores, dropped from the stack file: {:?}",
        file.dropped
    );
    if std::env::var_os("SWARM_DB_FIRST").is_some() {
        // What Compose's depends_on does: the database alone (api at 0 replicas) until healthy,
        // then the same stack with N api tasks.
        let t = Instant::now();
        stack.deploy(sh, &stack_file(sh, 0, &pw)?)?;
        let db = stack.wait_healthy(sh, "db", 1, Duration::from_secs(180), false)?;
        eprintln!(
            "db first: {db:?} ({:.2} s from deploy)",
            t.elapsed().as_secs_f64()
        );
    }
    let t0 = Instant::now();
    stack.deploy(sh, &file)?;
    let deployed = t0.elapsed().as_secs_f64();
    let converged = stack.wait_healthy(sh, "api", replicas, Duration::from_secs(240), false)?;
    eprintln!("deploy returned after {deployed:.2} s; {converged:?} (from deploy's return)");
    let tasks = stack.tasks(sh, "api")?;
    let containers = stack.containers(sh, "api")?;
    let test01 = judge::tasks_healthy(replicas, &tasks, &containers);
    eprintln!(
        "TEST-01 {} {}",
        if test01.passed { "PASS" } else { "FAIL" },
        test01.summary
    );
    for e in &test01.evidence {
        eprintln!("    {e}");
    }

    // Start spread of the current tasks' containers, and of all containers ever started.
    let current: Vec<_> = tasks.iter().filter(|t| t.is_current()).collect();
    let starts: Vec<_> = containers
        .iter()
        .filter(|c| current.iter().any(|t| t.id == c.task_id))
        .filter_map(|c| c.started_at)
        .collect();
    if let (Some(first), Some(last)) = (starts.iter().min(), starts.iter().max()) {
        eprintln!(
            "current containers' StartedAt spread: {:.2} s over {} containers ({} containers in all, exited ones included)",
            (*last - *first).num_milliseconds() as f64 / 1000.0,
            starts.len(),
            containers.len()
        );
    }
    let logs = parse::service_logs(&stack.logs(sh, "api")?);
    let lookup_failures = logs
        .iter()
        .filter(|l| l.message.contains("failed to lookup address"))
        .count();
    eprintln!(
        "service logs: {} lines, {lookup_failures} 'failed to lookup address' (api started before the db)",
        logs.len()
    );

    // TEST-03: each current task writes its probe, then each lists the directory.
    let mut probes = Vec::new();
    let tag = format!("{:x}", rand_seed());
    let mut by_slot: Vec<(&parse::Task, &parse::TaskContainer)> = current
        .iter()
        .filter_map(|t| {
            containers
                .iter()
                .find(|c| c.task_id == t.id)
                .map(|c| (*t, c))
        })
        .collect();
    by_slot.sort_by_key(|(t, _)| t.slot);
    for (task, container) in &by_slot {
        let path = format!("{DATA_DIR}/.swarm-probe-{tag}-{}", task.slot);
        let out = stack.exec(
            sh,
            &container.id,
            &["sh", "-c", &format!("echo {} > {path}", task.slot)],
        )?;
        probes.push(SharedDataProbe {
            slot: task.slot,
            node: task.node.clone(),
            write_error: (!out.status.success())
                .then(|| String::from_utf8_lossy(&out.stderr).trim().to_string()),
            seen: Vec::new(),
        });
    }
    for (probe, (_, container)) in probes.iter_mut().zip(&by_slot) {
        let out = stack.exec(sh, &container.id, &["ls", "-a", DATA_DIR])?;
        let prefix = format!(".swarm-probe-{tag}-");
        probe.seen = parse::probe_slots(&String::from_utf8_lossy(&out.stdout), &prefix);
    }
    let test03 = judge::shared_data(&probes, DATA_DIR);
    eprintln!(
        "TEST-03 {} {}",
        if test03.passed { "PASS" } else { "FAIL" },
        test03.summary
    );
    // The other way in: a client container on the stack's attachable overlay network reaches
    // every task by its own address (dnsrr: the service name resolves to all task IPs).
    let network = format!("{STACK}_default");
    let client = env_or("SWARM_CLIENT_IMAGE", "localhost/scaling-debian:bookworm");
    let script = "for ip in $(getent ahostsv4 api | cut -d' ' -f1 | sort -u); do \
        exec 3<>/dev/tcp/$ip/8080 || continue; \
        printf 'GET /instance HTTP/1.0\\r\\nHost: api\\r\\n\\r\\n' >&3; \
        echo \"$ip $(tail -n1 <&3)\"; exec 3>&-; done";
    let docker = &stack.docker;
    let t = Instant::now();
    let answers = cmd!(
        sh,
        "{docker} run --rm --network {network} {client} bash -c {script}"
    )
    .quiet()
    .read()
    .context("client container on the overlay")?;
    let hosts: std::collections::BTreeSet<&str> = answers
        .lines()
        .filter_map(|l| l.split("\"hostname\":\"").nth(1)?.split('"').next())
        .collect();
    eprintln!(
        "client container on {network}: {} task addresses answered /instance from {} distinct hostnames in {:.2} s",
        answers.lines().count(),
        hosts.len(),
        t.elapsed().as_secs_f64()
    );
    anyhow::ensure!(hosts.len() == replicas as usize, "client saw {answers}");
    match converged {
        Converged::Healthy { .. } => Ok(()),
        Converged::TimedOut { healthy, .. } => anyhow::bail!("only {healthy} healthy tasks"),
        Converged::TaskFailed { task, .. } => anyhow::bail!("{task}"),
    }
    .and_then(|()| {
        anyhow::ensure!(test03.passed, "TEST-03 failed");
        Ok(())
    })
}

#[test]
#[ignore = "needs Docker, local images and Compose v2, and the engine to itself"]
fn a_stack_deploys_converges_shares_its_data_and_is_removed_without_a_trace() {
    let replicas: u32 = env_or("SWARM_REPLICAS", "4").parse().unwrap();
    let sh = Shell::new().unwrap();
    let docker = which::which("docker").unwrap();
    let before = engine::state(&sh, &docker).unwrap();
    let membership = Membership::join(&sh, &docker).unwrap();
    eprintln!(
        "swarm state before: {before:?}; created by this run: {}",
        membership.created
    );
    let stack = SwarmStack {
        docker: docker.clone(),
        name: STACK.to_string(),
        nodes: Default::default(),
    };
    let result = run(&sh, &stack, replicas);
    let removed = stack.remove(&sh, Duration::from_secs(120));
    eprintln!("stack rm until containers and networks gone, volumes removed: {removed:?}");
    membership.leave(&sh).unwrap();
    let after = engine::state(&sh, &docker).unwrap();
    eprintln!("swarm state after: {after:?}");
    result.unwrap();
    removed.unwrap();
    assert_eq!(after, before);
    if before == SwarmState::Inactive {
        let gw = cmd!(sh, "docker network ls -q --filter name=^docker_gwbridge$")
            .read()
            .unwrap();
        assert!(gw.is_empty(), "docker_gwbridge left behind");
    }
}
