//! Test fixtures: a fresh database per test on a real MySQL-compatible server, the real app on
//! a random port, and log capture for the coordinator's contract lines.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use api::configuration::{
    ApplicationSettings, DatabaseSettings, MigrationLock, MigrationSettings, Settings,
};
use api::migrate::{self, CoordinateError, StartupReport};
use api::startup::Application;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::{ConnectOptions, Connection, MySqlConnection, MySqlPool};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;
use tracing::Dispatch;
use uuid::Uuid;

/// The server-level admin URL (no database), e.g. `mysql://root:root@127.0.0.1:3307`.
/// Unset means the tests cannot run: fail loudly instead of passing without a database.
pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "TEST_DATABASE_URL is not set: the api's integration tests need a real MySQL or \
             MariaDB server. Set it to an admin URL without a database, e.g. \
             TEST_DATABASE_URL=mysql://root:root@127.0.0.1:3307"
        )
    })
}

/// `RUST_LOG`-filtered logs on stdout when `TEST_LOG` is set; otherwise logs go nowhere.
fn init_test_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing::subscriber::set_global_default(api::telemetry::subscriber(
                api::telemetry::env_filter(),
                std::io::stdout,
                false,
            ));
        }
    });
}

/// A database of its own for one test, dropped when this value is dropped.
pub struct TestDb {
    pub name: String,
    admin: url::Url,
}

impl TestDb {
    pub async fn create() -> Arc<Self> {
        init_test_logging();
        let admin = url::Url::parse(&admin_url()).expect("TEST_DATABASE_URL is a URL");
        let name = format!("api_test_{}", Uuid::new_v4().simple());
        let mut conn = admin_connection(&admin).await;
        sqlx::query(&format!("CREATE DATABASE `{name}`"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        let _ = conn.close().await;
        Arc::new(Self { name, admin })
    }

    pub fn url(&self) -> String {
        let mut url = self.admin.clone();
        url.set_path(&self.name);
        url.to_string()
    }

    pub fn connect_options(&self) -> MySqlConnectOptions {
        self.url().parse().expect("test database URL")
    }

    pub async fn pool(&self) -> MySqlPool {
        MySqlPoolOptions::new()
            .max_connections(3)
            .connect_with(self.connect_options())
            .await
            .expect("connect to the test database")
    }

    /// A connection of the test's own, e.g. to hold a lock or KILL a session.
    pub async fn connection(&self) -> MySqlConnection {
        self.connect_options()
            .connect()
            .await
            .expect("connect to the test database")
    }

    pub fn lock_name(&self) -> String {
        migrate::lock_name(&self.name)
    }

    pub fn settings(&self, data_dir: &Path) -> Settings {
        Settings {
            database: DatabaseSettings::from_url(&self.url(), 5).expect("valid test URL"),
            application: ApplicationSettings {
                max_upload_bytes: MAX_UPLOAD_BYTES,
                ..ApplicationSettings::new([127, 0, 0, 1].into(), 0, data_dir.to_owned())
            },
            migration: migration_settings(Duration::from_secs(20), MigrationLock::On),
        }
    }

    /// `(version, success)` rows of `_sqlx_migrations`, in order.
    pub async fn applied(&self) -> Vec<(i64, bool)> {
        let mut conn = self.connection().await;
        let rows = sqlx::query_as("SELECT version, success FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut conn)
            .await
            .expect("read _sqlx_migrations");
        let _ = conn.close().await;
        rows
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside any async context we could block on: use a thread of its own.
        let admin = self.admin.clone();
        let name = self.name.clone();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                if let Ok(mut conn) = admin
                    .as_str()
                    .parse::<MySqlConnectOptions>()
                    .unwrap()
                    .connect()
                    .await
                {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS `{name}`"))
                        .execute(&mut conn)
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

async fn admin_connection(admin: &url::Url) -> MySqlConnection {
    admin
        .as_str()
        .parse::<MySqlConnectOptions>()
        .expect("TEST_DATABASE_URL is a mysql:// URL")
        .connect()
        .await
        .unwrap_or_else(|e| panic!("cannot connect to TEST_DATABASE_URL: {e}"))
}

pub fn migration_settings(deadline: Duration, lock: MigrationLock) -> MigrationSettings {
    MigrationSettings { deadline, lock }
}

/// The migrations the api ships.
pub fn real_migrations() -> Migrator {
    migrate::embedded()
}

/// Version 1 creates a table (DDL: MySQL commits sqlx's `success = 0` row with it) and then
/// sleeps 3 s, so a test can stop its runner part-way through a migration that cannot roll back.
pub fn slow_ddl_migrations() -> Migrator {
    sqlx::migrate!("./tests/slow_ddl_migrations")
}

/// Version 1 sleeps 3 s, so a test can kill its runner part-way.
pub fn slow_migrations() -> Migrator {
    sqlx::migrate!("./tests/slow_migrations")
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Arc<Self> {
        let path = std::env::temp_dir().join(format!("api-test-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&path).expect("create a temporary directory");
        Arc::new(Self(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Formatted log output captured with the production subscriber.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub fn dispatch(&self) -> Dispatch {
        let writer = self.clone();
        Dispatch::new(api::telemetry::subscriber(
            tracing_subscriber::EnvFilter::new(api::telemetry::DEFAULT_FILTER),
            move || writer.clone(),
            false,
        ))
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("utf-8 logs")
    }

    /// How many lines contain `needle`.
    pub fn count(&self, needle: &str) -> usize {
        self.text().lines().filter(|l| l.contains(needle)).count()
    }

    /// The contract lines in order, as the constants they contain.
    pub fn contract_lines(&self) -> Vec<String> {
        self.text()
            .lines()
            .filter_map(|line| {
                if line.contains(api::log_contract::APPLIED_PREFIX)
                    && line.contains(api::log_contract::APPLIED_SUFFIX)
                {
                    let start = line.find(api::log_contract::APPLIED_PREFIX)?;
                    return Some(line[start..].to_owned());
                }
                api::log_contract::ALL
                    .iter()
                    .find(|c| line.contains(**c))
                    .map(|c| c.to_string())
            })
            .collect()
    }
}

/// One replica's coordination: its own pool and dedicated connections, its own log.
pub struct Coordinated {
    pub result: Result<StartupReport, CoordinateError>,
    pub logs: Captured,
    pub elapsed: Duration,
}

/// Prepare `n` replicas (pools connected), then start them all at once.
pub async fn race(
    db: &TestDb,
    n: usize,
    migrations: fn() -> Migrator,
    settings: MigrationSettings,
) -> Vec<Coordinated> {
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::new();
    for _ in 0..n {
        let pool = db.pool().await;
        let connect = db.connect_options();
        let barrier = barrier.clone();
        let settings = settings.clone();
        let logs = Captured::default();
        let dispatch = logs.dispatch();
        tasks.push(tokio::spawn(
            async move {
                barrier.wait().await;
                let start = std::time::Instant::now();
                let result = migrate::coordinate(
                    &pool,
                    &connect,
                    migrations(),
                    &settings,
                    &CancellationToken::new(),
                )
                .await;
                let elapsed = start.elapsed();
                pool.close().await;
                Coordinated {
                    result,
                    logs,
                    elapsed,
                }
            }
            .with_subscriber(dispatch),
        ));
    }
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.expect("coordinator task"));
    }
    outcomes
}

/// Run one coordinator to completion (used to bring a database up to date).
pub async fn coordinate_once(db: &TestDb, migrations: Migrator) -> Coordinated {
    let pool = db.pool().await;
    let logs = Captured::default();
    let start = std::time::Instant::now();
    let result = migrate::coordinate(
        &pool,
        &db.connect_options(),
        migrations,
        &migration_settings(Duration::from_secs(20), MigrationLock::On),
        &CancellationToken::new(),
    )
    .with_subscriber(logs.dispatch())
    .await;
    pool.close().await;
    Coordinated {
        result,
        logs,
        elapsed: start.elapsed(),
    }
}

pub const MAX_UPLOAD_BYTES: u64 = 64 * 1024;

/// The real application on 127.0.0.1 with an OS-chosen port.
pub struct TestApp {
    pub address: String,
    pub port: u16,
    pub client: reqwest::Client,
    pub db: Arc<TestDb>,
    pub data_dir: Arc<TempDir>,
    pub report: StartupReport,
    /// Everything the app logged, start-up and requests, as production formats it.
    pub logs: Captured,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

/// A fresh database and a fresh data directory.
pub async fn spawn_app() -> TestApp {
    spawn_app_on(TestDb::create().await, TempDir::new()).await
}

/// An app on an existing database and data directory (a second replica).
pub async fn spawn_app_on(db: Arc<TestDb>, data_dir: Arc<TempDir>) -> TestApp {
    spawn_app_with_settings_on(db, data_dir, |_| {}).await
}

/// An app on a fresh database whose settings `adjust` changes first.
pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    spawn_app_with_settings_on(TestDb::create().await, TempDir::new(), adjust).await
}

/// An app on the given database and data directory whose settings `adjust` changes first.
pub async fn spawn_app_with_settings_on(
    db: Arc<TestDb>,
    data_dir: Arc<TempDir>,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = db.settings(&data_dir.0);
    adjust(&mut settings);
    let logs = Captured::default();
    let app = Application::build(settings, real_migrations(), CancellationToken::new())
        .with_subscriber(logs.dispatch())
        .await
        .unwrap_or_else(|e| panic!("the app failed to start: {e}"));
    let port = app.port();
    let report = app.startup_report().clone();
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .with_subscriber(logs.dispatch()),
    );
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        db,
        data_dir,
        report,
        logs,
        shutdown: Some(tx),
        server: Some(server),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    pub async fn delete(&self, path: &str) -> reqwest::Response {
        self.client
            .delete(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// `POST /documents?name=...` with the given bytes and optional content type.
    pub async fn upload(
        &self,
        name: &str,
        bytes: Vec<u8>,
        content_type: Option<&str>,
    ) -> reqwest::Response {
        let mut request = self
            .client
            .post(self.url("/documents"))
            .query(&[("name", name)])
            .body(bytes);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        request.send().await.expect("request")
    }

    /// Upload and return the 201 body.
    pub async fn store(&self, name: &str, bytes: Vec<u8>) -> serde_json::Value {
        let response = self.upload(name, bytes, Some("text/plain")).await;
        assert_eq!(response.status(), 201, "upload failed");
        response.json().await.unwrap()
    }

    /// Files left in `<data>/<sub>`.
    pub fn files_in(&self, sub: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.data_dir.0.join(sub))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Signal shutdown and wait for the server to finish.
    pub async fn stop(mut self) -> std::io::Result<()> {
        let _ = self.shutdown.take().unwrap().send(());
        self.server.take().unwrap().await.expect("server task")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Assert the response is our JSON error with `status` and `code`; returns the message.
pub async fn assert_json_error(response: reqwest::Response, status: u16, code: &str) -> String {
    let actual = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    assert_eq!(actual, status, "status for body {text}");
    assert!(
        content_type.starts_with("application/json"),
        "content type {content_type:?} for body {text}"
    );
    let body: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(body["error"]["code"], code, "body {body}");
    let message = body["error"]["message"]
        .as_str()
        .expect("a message")
        .to_owned();
    assert!(!message.is_empty());
    message
}

/// Send raw bytes over HTTP/1.1 and return the status code and body (for requests reqwest
/// will not make, such as an unannounced chunked upload).
pub async fn raw_request(port: u16, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    // The server may answer (and close) before reading everything: ignore write errors.
    let _ = stream.write_all(request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response)).await;
    let text = String::from_utf8_lossy(&response).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

/// A TCP proxy in front of the test server, to put real network faults between the api and
/// its database: the server does the work, the api sees the fault.
pub struct Proxy {
    pub port: u16,
    fault: Arc<Mutex<Fault>>,
    task: tokio::task::JoinHandle<()>,
}

/// What the proxy does, once, to the statement whose SQL contains the needle. sqlx prepares a
/// statement once per connection (its text is in the `COM_STMT_PREPARE` packet), then
/// executes it by id (`COM_STMT_EXECUTE`).
#[derive(Clone, Debug)]
pub enum Fault {
    None,
    /// Forward the execution, let the server run (and commit) it, then cut both connections
    /// instead of passing its reply back: the reply is lost.
    LoseReply(&'static str),
    /// Hold the statement's preparation this long before forwarding it, so the client waits
    /// before it has sent the statement itself.
    DelayPrepare(&'static str, Duration),
}

const COM_STMT_PREPARE: u8 = 0x16;
const COM_STMT_EXECUTE: u8 = 0x17;

impl Proxy {
    /// A proxy to the test server on a port of its own.
    pub async fn start(fault: Fault) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, fault)
    }

    pub fn start_on(listener: tokio::net::TcpListener, fault: Fault) -> Self {
        let admin = url::Url::parse(&admin_url()).unwrap();
        let upstream = format!(
            "{}:{}",
            admin.host_str().unwrap(),
            admin.port().unwrap_or(3306)
        );
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(fault));
        let shared = fault.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let upstream = upstream.clone();
                let fault = shared.clone();
                tokio::spawn(async move {
                    if let Ok(server) = tokio::net::TcpStream::connect(&upstream).await {
                        pipe(client, server, fault).await;
                    }
                });
            }
        });
        Self { port, fault, task }
    }

    /// `url` with its host and port replaced by the proxy's.
    pub fn url(&self, url: &str) -> String {
        let mut url = url::Url::parse(url).unwrap();
        url.set_host(Some("127.0.0.1")).unwrap();
        url.set_port(Some(self.port)).unwrap();
        url.to_string()
    }

    /// Whether the fault has been applied (it applies once).
    pub fn fired(&self) -> bool {
        matches!(*self.fault.lock().unwrap(), Fault::None)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn pipe(
    mut client: tokio::net::TcpStream,
    mut server: tokio::net::TcpStream,
    fault: Arc<Mutex<Fault>>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut cbuf, mut sbuf) = (vec![0u8; 65536], vec![0u8; 65536]);
    let mut prepared_target = false;
    let mut cut_on_reply = false;
    loop {
        tokio::select! {
            n = client.read(&mut cbuf) => {
                let Ok(n @ 1..) = n else { return };
                let chunk = &cbuf[..n];
                let command = chunk.get(4).copied();
                let current = fault.lock().unwrap().clone();
                let names = |needle: &str| {
                    command == Some(COM_STMT_PREPARE)
                        && chunk.windows(needle.len()).any(|w| w == needle.as_bytes())
                };
                match current {
                    Fault::LoseReply(needle) if names(needle) => prepared_target = true,
                    Fault::LoseReply(_) if prepared_target && command == Some(COM_STMT_EXECUTE) => {
                        *fault.lock().unwrap() = Fault::None;
                        cut_on_reply = true;
                    }
                    Fault::DelayPrepare(needle, pause) if names(needle) => {
                        *fault.lock().unwrap() = Fault::None;
                        tokio::time::sleep(pause).await;
                    }
                    _ => {}
                }
                if server.write_all(chunk).await.is_err() { return }
            }
            n = server.read(&mut sbuf) => {
                let Ok(n @ 1..) = n else { return };
                if cut_on_reply { return }
                if client.write_all(&sbuf[..n]).await.is_err() { return }
            }
        }
    }
}

/// `IS_USED_LOCK`: the connection id holding the named lock, if any.
pub async fn lock_holder(conn: &mut MySqlConnection, lock: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT CAST(IS_USED_LOCK(?) AS SIGNED)")
        .bind(lock)
        .fetch_one(conn)
        .await
        .unwrap()
}

/// A database user of the test's own (on both hosts: with anonymous users on the server,
/// ''@'localhost' would beat 'u'@'%'), so a test can lock it out and let it back in.
pub struct TestUser {
    pub name: String,
    accounts: [String; 2],
}

impl TestUser {
    pub async fn create(db: &TestDb) -> Self {
        let name = format!("u{}", &Uuid::new_v4().simple().to_string()[..12]);
        let accounts = [format!("'{name}'@'%'"), format!("'{name}'@'localhost'")];
        let mut admin = db.connection().await;
        for account in &accounts {
            for statement in [
                format!("CREATE USER {account} IDENTIFIED BY 'pw'"),
                format!("GRANT ALL ON `{}`.* TO {account}", db.name),
            ] {
                sqlx::query(&statement).execute(&mut admin).await.unwrap();
            }
        }
        let _ = admin.close().await;
        Self { name, accounts }
    }

    /// The test database's URL, logging in as this user.
    pub fn url(&self, db: &TestDb) -> String {
        let mut url = url::Url::parse(&db.url()).unwrap();
        url.set_username(&self.name).unwrap();
        url.set_password(Some("pw")).unwrap();
        url.to_string()
    }

    /// `ACCOUNT LOCK` or `ACCOUNT UNLOCK`: new logins are refused while locked.
    pub async fn set_locked(&self, db: &TestDb, locked: bool) {
        let mut admin = db.connection().await;
        let what = if locked { "LOCK" } else { "UNLOCK" };
        for account in &self.accounts {
            sqlx::query(&format!("ALTER USER {account} ACCOUNT {what}"))
                .execute(&mut admin)
                .await
                .unwrap();
        }
        let _ = admin.close().await;
    }
}
