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

pub use crate::scaling::ContainerFacts;
use crate::{
    docker::{Compose, Docker},
    scaling::{
        self,
        parse::{self, Container, LogLine},
    },
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
        scaling::start_database(self.sh, &self.compose, Duration::from_secs(120))
    }

    /// Polls until the database is healthy; returns when it saw it.
    pub fn wait_db_healthy(&self, timeout: Duration) -> Result<Instant> {
        scaling::wait_database_healthy(self.sh, &self.compose, timeout)?;
        Ok(Instant::now())
    }

    /// `up -d --scale api=n api` (no recreation of running replicas).
    pub fn scale_api(&self, n: u32) -> Result<()> {
        self.compose.up_scaled(self.sh, API, n)
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
        scaling::container_facts(self.sh, &self.docker, containers)
    }

    /// `exec -T --index=i api argv...`.
    pub fn exec_api(&self, number: u32, argv: &[&str]) -> Result<Output> {
        self.compose.exec(self.sh, API, number, argv)
    }

    /// Runs SQL as root on the application database inside the db container (the password
    /// never leaves the container's environment); returns `-N -B` output.
    pub fn sql(&self, sql: &str) -> Result<String> {
        let out = self.compose.db_sql(self.sh, DB, sql)?;
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
        self.compose.spawn_db_sql(self.sh, DB, sql)
    }

    pub fn logs(&self) -> Result<Vec<LogLine>> {
        Ok(parse::logs(&self.compose.logs(self.sh, API)?))
    }
}
