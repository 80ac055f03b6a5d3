//! A throwaway MariaDB server on the host for the api's tests: a real server, never a mock.
//! Installed from Debian's packages when missing (as root on Debian), started on a free
//! loopback port with its own data directory under `target/`, removed when dropped.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};
use xshell::{cmd, Shell};

use super::provision;
use crate::{ui, Project};

pub struct TestDb {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
    /// Server-level admin URL without a database: `mysql://root:...@127.0.0.1:PORT`.
    pub url: String,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(&self.socket);
    }
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
        child,
        dir,
        socket: socket.clone(),
        url: String::new(),
    };

    let sock = socket.display().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = db.child.try_wait()? {
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

/// `cargo xtask test-db`: keep a server up for running `cargo test -p api` by hand.
pub fn serve(sh: &Shell, project: &Project) -> Result<()> {
    let db = start(sh, project)?;
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
