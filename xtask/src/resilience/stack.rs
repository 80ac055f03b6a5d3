//! The scaled stack the scenarios run against: its compose project, its containers, their
//! published ports, and SQL run as root inside the database container.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    process::Output,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::Shell;

use crate::{
    docker::{Compose, Docker},
    scaling::parse::{self, Container, LogLine},
    ui,
};

pub const API: &str = "api";
pub const DB: &str = "db";
pub const API_PORT: u16 = 8080;

pub struct Stack<'a> {
    pub sh: &'a Shell,
    pub compose: Compose,
    pub docker: Docker,
    /// How many api replicas the scenarios expect.
    pub replicas: u32,
    /// The run's random passwords: they must appear in no image.
    pub secrets: Vec<String>,
    pub api_image: String,
    pub db_image: String,
}

impl Stack<'_> {
    pub fn api_containers(&self) -> Result<Vec<Container>> {
        parse::ps(&self.compose.ps(self.sh, API)?)
    }

    pub fn db_container(&self) -> Result<Container> {
        parse::ps(&self.compose.ps(self.sh, DB)?)?
            .into_iter()
            .next()
            .context("the db container does not exist")
    }

    /// `up -d` of the database; waits until it is healthy.
    pub fn start_db(&self) -> Result<()> {
        ui::step("Starting the database on a fresh volume");
        self.compose.run(self.sh, &["up", "-d", "--no-build", DB])?;
        self.wait_db_healthy(Duration::from_secs(120)).map(drop)
    }

    /// Polls until the database is healthy; returns when it saw it.
    pub fn wait_db_healthy(&self, timeout: Duration) -> Result<Instant> {
        let mut wait = ui::Waiting::new("db healthy");
        loop {
            let db = self.db_container()?;
            if db.is_healthy() {
                wait.finish("healthy");
                return Ok(Instant::now());
            }
            if db.is_down() || db.health == "unhealthy" {
                let logs = self
                    .compose
                    .run(self.sh, &["logs", "--tail", "20", "--no-color", DB])
                    .unwrap_or_default();
                bail!(
                    "the database container is {} ({}); its last log lines:\n{logs}",
                    db.state,
                    db.status
                );
            }
            wait.update(&format!("{} {}", db.state, db.health));
            if wait.elapsed() > timeout {
                bail!("the database was not healthy after {} s", timeout.as_secs());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `up -d --scale api=n api` (no recreation of running replicas).
    pub fn scale_api(&self, n: u32) -> Result<()> {
        let scale = format!("{API}={n}");
        self.compose
            .run(
                self.sh,
                &[
                    "up",
                    "-d",
                    "--no-build",
                    "--no-recreate",
                    "--scale",
                    &scale,
                    API,
                ],
            )
            .map(drop)
    }

    /// Waits until exactly `n` api replicas run and are healthy. Stops at once when one exits
    /// or restarts (an unhealthy one may recover, e.g. after a database outage).
    pub fn wait_healthy(&self, n: u32, timeout: Duration) -> Result<f64> {
        let mut wait = ui::Waiting::new(&format!("{n} healthy replicas"));
        loop {
            let containers = self.api_containers()?;
            if let Some(c) = containers.iter().find(|c| c.is_down()) {
                let logs = self
                    .compose
                    .run(self.sh, &["logs", "--tail", "15", "--no-color", API])
                    .unwrap_or_default();
                bail!(
                    "{} is {} ({}); the api's last log lines:\n{logs}",
                    c.label(),
                    c.state,
                    c.status
                );
            }
            if let Some((num, count)) = self
                .restart_counts(&containers)?
                .into_iter()
                .find(|(_, count)| *count > 0)
            {
                bail!("api-{num} restarted {count} time(s)");
            }
            let healthy = containers.iter().filter(|c| c.is_healthy()).count() as u32;
            if healthy == n && containers.len() as u32 == n {
                let seconds = wait.elapsed().as_secs_f64();
                wait.finish("all healthy");
                return Ok(seconds);
            }
            wait.update(&format!(
                "{healthy}/{n} healthy, {} containers",
                containers.len()
            ));
            if wait.elapsed() > timeout {
                bail!(
                    "{healthy} of {n} replicas healthy after {} s",
                    timeout.as_secs()
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Published address of each running replica, by container number.
    pub fn ports(&self) -> Result<BTreeMap<u32, SocketAddr>> {
        let mut ports = BTreeMap::new();
        for c in self
            .api_containers()?
            .iter()
            .filter(|c| c.state == "running")
        {
            let addr = self.compose.port(self.sh, API, c.number, API_PORT)?;
            let addr: SocketAddr = addr
                .parse()
                .with_context(|| format!("published address of {}: {addr:?}", c.label()))?;
            ports.insert(c.number, addr);
        }
        Ok(ports)
    }

    pub fn restart_counts(&self, containers: &[Container]) -> Result<BTreeMap<u32, u32>> {
        let facts = self.container_facts(containers)?;
        Ok(facts.into_iter().map(|(n, f)| (n, f.restarts)).collect())
    }

    /// Id, start time and restart count of each container, by number.
    pub fn container_facts(
        &self,
        containers: &[Container],
    ) -> Result<BTreeMap<u32, ContainerFacts>> {
        let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
        let out = self.docker.inspect(
            self.sh,
            &ids,
            "{{.Id}} {{.State.StartedAt}} {{.RestartCount}}",
        )?;
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

    /// `exec -T --index=i api argv...`.
    pub fn exec_api(&self, number: u32, argv: &[&str]) -> Result<Output> {
        self.compose.exec(self.sh, API, number, argv)
    }

    /// Runs SQL as root on the application database inside the db container (the password
    /// never leaves the container's environment); returns `-N -B` output.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let out = self.compose.exec_with_env(
            self.sh,
            DB,
            &[("RESILIENCE_SQL", sql)],
            &["sh", "-c", SQL_SCRIPT],
        )?;
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
        self.compose.spawn_exec(
            self.sh,
            DB,
            &[("RESILIENCE_SQL", sql)],
            &["sh", "-c", SQL_SCRIPT],
        )
    }

    pub fn logs(&self) -> Result<Vec<LogLine>> {
        Ok(parse::logs(&self.compose.logs(self.sh, API)?))
    }
}

const SQL_SCRIPT: &str = "MYSQL_PWD=\"$MYSQL_ROOT_PASSWORD\" exec \"$(command -v mariadb || command -v mysql)\" -uroot -N -B \"$MYSQL_DATABASE\" -e \"$RESILIENCE_SQL\"";

#[derive(Clone, Debug, PartialEq)]
pub struct ContainerFacts {
    pub id: String,
    pub started_at: String,
    pub restarts: u32,
}
