//! A throwaway database server for the api's tests: a real server, never a mock.
//! By default MariaDB on the host, installed from Debian's packages when missing (as root on
//! Debian), started on a free loopback port with its own data directory under `target/`; with
//! `--db` naming another server, that server's image as a container publishing its port on
//! 127.0.0.1 only. Either is removed when dropped.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::{
    dbserver::{DbChoice, Server},
    provision,
};
use crate::{ui, Project};

pub struct TestDb {
    server: Running,
    /// Server-level admin URL without a database: `mysql://root:...@127.0.0.1:PORT`.
    pub url: String,
}

enum Running {
    Host {
        child: Child,
        dir: PathBuf,
        socket: PathBuf,
    },
    Container {
        docker: PathBuf,
        id: String,
    },
}

impl Drop for TestDb {
    fn drop(&mut self) {
        match &mut self.server {
            Running::Host { child, dir, socket } => {
                let _ = child.kill();
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(dir);
                let _ = std::fs::remove_file(socket);
            }
            Running::Container { docker, id } => {
                // -v: the data directory is an anonymous volume of this container.
                let _ = Command::new(docker)
                    .args(["rm", "--force", "--volumes", id.as_str()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }
}

/// The server for `--db`: the host's MariaDB when it is the one asked for (or none is),
/// otherwise a container of the chosen server's image.
pub fn start_for(sh: &Shell, project: &Project, db: Option<&DbChoice>) -> Result<TestDb> {
    match db {
        None => start(sh, project),
        Some(DbChoice::Known(server))
            if *server == Server::Mariadb1011 && host_server_is(server) =>
        {
            start(sh, project)
        }
        Some(choice) => start_container(sh, project, choice),
    }
}

/// Whether the host's `mariadbd` is this server's version, or would be once `start` installs it.
fn host_server_is(server: &Server) -> bool {
    let Some(mariadbd) = provision::find_program("mariadbd") else {
        // start() installs it when root on Debian; Debian 12's (bookworm) is 10.11.
        let debian_12 = std::fs::read_to_string("/etc/debian_version")
            .is_ok_and(|v| v.starts_with("12.") || v.trim() == "bookworm/sid");
        return *server == Server::Mariadb1011 && provision::is_root() && debian_12;
    };
    Command::new(mariadbd)
        .arg("--version")
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .contains(&format!("Ver {}", server.version_prefix()))
        })
        .unwrap_or(false)
}

/// Runs the server's image (built or obtained by `images::ensure_db`) with a random root
/// password and an ephemeral port of 127.0.0.1, and waits until it is healthy.
pub fn start_container(sh: &Shell, project: &Project, choice: &DbChoice) -> Result<TestDb> {
    let docker = super::preflight::docker(sh)?;
    let (image, origin) = super::images::ensure_db(sh, project, &docker, choice, false)?;
    ui::step(&format!(
        "Starting {} in a container for the api's tests",
        choice.name()
    ));
    ui::note(&format!("image {origin}"));
    let password = random_hex(12)?;
    let name = format!("scaling-testdb-{}", std::process::id());
    let program = &docker.program;
    // The same settings as the host server's (see start below): many test pools, no binary log.
    // The password goes through the environment, not the command line `ps` shows.
    let id = cmd!(
        sh,
        "{program} run --detach --name {name} --publish 127.0.0.1::3306 --env MYSQL_ROOT_PASSWORD {image} --max-connections=1000 --innodb-flush-log-at-trx-commit=2 --skip-log-bin"
    )
    .env("MYSQL_ROOT_PASSWORD", &password)
    .quiet()
    .read()
    .with_context(|| format!("starting a container of {image}"))?;
    let mut db = TestDb {
        server: Running::Container {
            docker: program.clone(),
            id: id.trim().to_string(),
        },
        url: String::new(),
    };
    let started = Instant::now();
    wait_for_container(sh, program, &name, Duration::from_secs(240))?;
    let published = cmd!(sh, "{program} port {name} 3306/tcp")
        .quiet()
        .read()
        .context("reading the published port of the test database")?;
    let address = published_loopback(&published)
        .with_context(|| format!("no 127.0.0.1 port in `docker port`: {published:?}"))?;
    ui::note(&format!(
        "{} listening on {address} after {:.0} s",
        choice.name(),
        started.elapsed().as_secs_f64()
    ));
    db.url = format!("mysql://root:{password}@{address}");
    Ok(db)
}

/// Healthy by the image's own healthcheck; an image without one (the official `mysql`) is
/// ready once its real server, not the init server (port 0), says it listens on 3306.
fn wait_for_container(sh: &Shell, docker: &PathBuf, name: &str, limit: Duration) -> Result<()> {
    let deadline = Instant::now() + limit;
    let format =
        "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}";
    loop {
        let state = cmd!(sh, "{docker} inspect --format {format} {name}")
            .quiet()
            .read()
            .context("inspecting the test database's container")?;
        let (status, health) = state.trim().split_once(' ').unwrap_or((state.trim(), ""));
        if status != "running" {
            let log = container_log(sh, docker, name);
            bail!(
                "the test database's container is {status}; its log ends:\n{}",
                tail(&log, 20)
            );
        }
        let ready = match health {
            "healthy" => true,
            "none" => container_log(sh, docker, name)
                .lines()
                .any(|l| l.contains("ready for connections") && l.contains("port: 3306")),
            _ => false,
        };
        if ready {
            return Ok(());
        }
        if Instant::now() > deadline {
            let log = container_log(sh, docker, name);
            bail!(
                "the test database's container was not ready within {} s; its log ends:\n{}",
                limit.as_secs(),
                tail(&log, 20)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn container_log(sh: &Shell, docker: &PathBuf, name: &str) -> String {
    cmd!(sh, "{docker} logs {name}")
        .quiet()
        .ignore_status()
        .output()
        .map(|o| {
            format!(
                "{}{}",
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            )
        })
        .unwrap_or_default()
}

/// The IPv4 loopback line of `docker port`'s output (`127.0.0.1:49154`).
pub fn published_loopback(output: &str) -> Option<String> {
    output
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("127.0.0.1:"))
        .map(String::from)
}

pub fn start(sh: &Shell, project: &Project) -> Result<TestDb> {
    let mariadbd = provision::debian_package(
        sh,
        "mariadbd",
        "mariadb-server",
        "for the api's tests (a real MariaDB)",
    )?;
    let install_db = provision::find_program("mariadb-install-db")
        .context("mariadb-install-db not found (package mariadb-server)")?;
    let client = provision::find_program("mariadb")
        .context("the `mariadb` client is not found (package mariadb-client)")?;

    let pid = std::process::id();
    let dir = project.target_dir.join("test-db").join(pid.to_string());
    let _ = std::fs::remove_dir_all(&dir);
    let data = dir.join("data");
    sh.create_dir(&data)?;
    // A unix socket path must stay short (108 bytes): keep it out of a deep checkout.
    let socket = std::env::temp_dir().join(format!("xtask-testdb-{pid}.sock"));
    let user: Vec<&str> = if provision::is_root() {
        vec!["--user=root"]
    } else {
        vec![]
    };

    ui::step("Starting a throwaway MariaDB for the api's tests");
    let datadir = format!("--datadir={}", data.display());
    let user_flag = user.clone();
    cmd!(sh, "{install_db} --no-defaults {user_flag...} {datadir} --auth-root-authentication-method=normal --skip-test-db")
        .quiet()
        .ignore_stdout()
        .run()
        .context("initializing the test database directory (mariadb-install-db)")?;

    let port = free_port()?;
    let error_log = dir.join("error.log");
    let mut server = Command::new(&mariadbd);
    server
        .arg("--no-defaults")
        .args(&user)
        .arg(&datadir)
        .arg(format!("--socket={}", socket.display()))
        .arg(format!("--port={port}"))
        .arg(format!("--log-error={}", error_log.display()))
        .args([
            "--bind-address=127.0.0.1",
            "--skip-name-resolve",
            "--max-connections=1000",
            "--innodb-flush-log-at-trx-commit=2",
            "--skip-log-bin",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = server
        .spawn()
        .with_context(|| format!("starting {}", mariadbd.display()))?;
    let password = random_hex(12)?;
    let mut db = TestDb {
        server: Running::Host {
            child,
            dir,
            socket: socket.clone(),
        },
        url: String::new(),
    };

    let sock = socket.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let Running::Host { child, .. } = &mut db.server else {
            unreachable!("started on the host above")
        };
        if let Some(status) = child.try_wait()? {
            let log = std::fs::read_to_string(&error_log).unwrap_or_default();
            bail!(
                "mariadbd exited ({status}) while starting; its log:\n{}",
                tail(&log, 15)
            );
        }
        let probe = "SELECT 1";
        let ok = cmd!(
            sh,
            "{client} --no-defaults --socket={sock} -uroot -e {probe}"
        )
        .quiet()
        .ignore_stdout()
        .ignore_stderr()
        .run()
        .is_ok();
        if ok {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "the test MariaDB did not answer within 60 s; see {}",
                error_log.display()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let sql = format!(
        // mariadb-install-db also makes password-less root@127.0.0.1 and root@::1, which would
        // win over root@'%' for TCP clients: drop them.
        "DROP USER IF EXISTS 'root'@'127.0.0.1', 'root'@'::1'; \
         CREATE USER 'root'@'%' IDENTIFIED BY '{password}'; GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION; FLUSH PRIVILEGES;"
    );
    cmd!(sh, "{client} --no-defaults --socket={sock} -uroot -e {sql}")
        .quiet()
        .secret()
        .run()
        .context("creating the test database's admin user")?;
    db.url = format!("mysql://root:{password}@127.0.0.1:{port}");
    ui::note(&format!("MariaDB listening on 127.0.0.1:{port}"));
    Ok(db)
}

/// `cargo xtask test-db [--db NAME]`: keep a server up for running `cargo test -p api` by hand.
pub fn serve(sh: &Shell, project: &Project, db: Option<&str>) -> Result<()> {
    let choice = db.map(DbChoice::parse).transpose()?;
    let db = start_for(sh, project, choice.as_ref())?;
    println!("export TEST_DATABASE_URL='{}'", db.url);
    eprintln!("Running until Ctrl-C; then the server and its data are removed.");
    let (tx, rx) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = tx.send(());
    })?;
    let _ = rx.recv();
    drop(db);
    Ok(())
}

fn free_port() -> Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?.port())
}

pub fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loopback_port_is_read_from_docker_port() {
        let out = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/testdata/docker-port-db.txt"
        ))
        .unwrap();
        assert_eq!(published_loopback(&out).as_deref(), Some("127.0.0.1:32804"));
    }

    #[test]
    fn a_port_published_on_every_interface_is_not_taken() {
        assert_eq!(published_loopback("0.0.0.0:49167\n[::]:49167\n"), None);
    }
}
