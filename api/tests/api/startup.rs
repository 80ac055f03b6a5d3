//! Startup failures are clear, and shutdown is clean.

use api::startup::Application;

use tokio_util::sync::CancellationToken;

use tracing::instrument::WithSubscriber;

use crate::helpers::{
    real_migrations, shipped, spawn_app, spawn_app_with, Captured, Fault, Proxy, TempDir, TestDb,
};

#[tokio::test]
async fn an_unusable_data_directory_keeps_the_replica_unready_and_names_itself_our_uid_its_owner_and_the_fix(
) {
    let db = TestDb::create().await;
    let scratch = TempDir::new();
    // A regular file where a parent directory should be: fails even for root.
    std::fs::write(scratch.0.join("file"), b"x").unwrap();
    let data_dir = scratch.0.join("file").join("data");

    let logs = Captured::default();
    let app = Application::build(
        db.settings(&data_dir),
        real_migrations(),
        CancellationToken::new(),
    )
    .with_subscriber(logs.dispatch())
    .await
    .unwrap_or_else(|e| panic!("an unwritable data directory must not stop startup: {e}"));
    let port = app.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(
        app.run_until_stopped(async {
            let _ = rx.await;
        })
        .with_subscriber(logs.dispatch()),
    );
    let client = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{port}/readyz");

    let response = client.get(&readyz).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
    let message = body["error"]["message"].as_str().unwrap().to_owned();
    // Any client may ask: the answer is a short code, the detail goes to the log.
    assert!(message.starts_with("data_dir_unwritable"), "{message}");
    assert!(
        !message.contains(&data_dir.display().to_string()),
        "{message}"
    );
    assert!(!message.contains("uid"), "{message}");
    let log = logs.text();
    let (uid, gid) = api::storage::process_ids().unwrap();
    for part in [
        format!("data directory {} is not writable", data_dir.display()),
        format!("this process runs as uid {uid} gid {gid}"),
        format!("{} is owned by uid", scratch.0.join("file").display()),
        format!(
            "mkdir -p {dir} && chown -R {uid}:{gid} {dir}",
            dir = data_dir.display()
        ),
    ] {
        assert!(log.contains(&part), "{log:?} lacks {part:?}");
    }
    // Liveness is unaffected: the process is fine, only not ready.
    assert_eq!(
        client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    // An operator fixes the volume: the replica becomes ready without a restart.
    std::fs::remove_file(scratch.0.join("file")).unwrap();
    std::fs::create_dir_all(&data_dir).unwrap();
    assert_eq!(client.get(&readyz).send().await.unwrap().status(), 200);

    let _ = tx.send(());
    server.await.unwrap().unwrap();
}

#[tokio::test]
async fn wrong_database_credentials_fail_without_printing_the_password() {
    let db = TestDb::create().await;
    let data_dir = TempDir::new();
    let mut settings = db.settings(&data_dir.0);
    let mut url = url::Url::parse(&db.url()).unwrap();
    url.set_password(Some("wrong-secret-pw")).unwrap();
    settings.database = api::configuration::DatabaseSettings::from_url(url.as_str(), 2).unwrap();

    let error =
        match Application::build(settings, real_migrations(), CancellationToken::new()).await {
            Ok(_) => panic!("connected with a wrong password"),
            Err(e) => e,
        };
    let message = error.to_string();
    assert!(
        message.starts_with("could not connect to the database at mysql://"),
        "{message}"
    );
    assert!(message.contains(":***@"), "{message}");
    assert!(!message.contains("wrong-secret-pw"), "{message}");
}

#[tokio::test]
async fn stopping_the_app_finishes_cleanly_and_closes_the_port() {
    let app = spawn_app().await;
    assert_eq!(app.get("/healthz").await.status(), 200);
    let port = app.port;
    app.stop().await.expect("graceful shutdown");
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}

#[tokio::test]
async fn the_password_can_come_from_a_file_as_compose_secrets_provide_it() {
    let db = TestDb::create().await;
    let data_dir = TempDir::new();
    let url = url::Url::parse(&db.url()).unwrap();
    let secret = data_dir.0.join("db_password");
    std::fs::write(&secret, format!("{}\n", url.password().unwrap_or(""))).unwrap();
    let vars: std::collections::HashMap<&str, String> = [
        ("DB_HOST", url.host_str().unwrap().to_owned()),
        ("DB_PORT", url.port().unwrap_or(3306).to_string()),
        ("DB_USER", url.username().to_owned()),
        ("DB_PASSWORD_FILE", secret.display().to_string()),
        ("DB_NAME", db.name.clone()),
        ("API_HOST", "127.0.0.1".to_owned()),
        ("API_PORT", "0".to_owned()),
        (
            "API_DATA_DIR",
            data_dir.0.join("data").display().to_string(),
        ),
    ]
    .into_iter()
    .collect();
    let settings = api::configuration::Settings::from_lookup(|name| vars.get(name).cloned())
        .unwrap_or_else(|e| panic!("{e}"));
    let app = Application::build(settings, real_migrations(), CancellationToken::new())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(app.startup_report().migrations_applied, shipped());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn startup_waits_for_a_database_that_is_not_up_yet_and_says_why_each_attempt_failed() {
    let db = TestDb::create().await;
    let data_dir = TempDir::new();
    // A port with nothing behind it yet: connection refused, as while the database starts.
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let mut url = url::Url::parse(&db.url()).unwrap();
    url.set_port(Some(port)).unwrap();
    let mut settings = db.settings(&data_dir.0);
    settings.database = api::configuration::DatabaseSettings::from_url(url.as_str(), 2).unwrap();
    settings.database.connect_deadline = std::time::Duration::from_secs(20);
    let logs = Captured::default();
    let building = tokio::spawn(
        Application::build(settings, real_migrations(), CancellationToken::new())
            .with_subscriber(logs.dispatch()),
    );
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let _proxy = Proxy::start_on(listener, Fault::None);

    let app = building.await.unwrap().unwrap_or_else(|e| {
        panic!(
            "gave up on a database that was starting: {e}\n{}",
            logs.text()
        )
    });
    assert_eq!(app.startup_report().migrations_applied, shipped());
    let text = logs.text();
    let attempts: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("not reachable yet"))
        .collect();
    assert!(attempts.len() >= 2, "{text}");
    assert!(
        attempts.iter().all(|l| l.contains("refused")),
        "each attempt says why: {text}"
    );
    assert!(!text.contains(url.password().unwrap_or("\u{0}")), "{text}");
}

#[tokio::test]
async fn startup_gives_up_on_an_unreachable_database_at_its_deadline_naming_the_setting() {
    let db = TestDb::create().await;
    let data_dir = TempDir::new();
    let reserved = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = reserved.local_addr().unwrap().port();
    drop(reserved);
    let mut url = url::Url::parse(&db.url()).unwrap();
    url.set_port(Some(port)).unwrap();
    let mut settings = db.settings(&data_dir.0);
    settings.database = api::configuration::DatabaseSettings::from_url(url.as_str(), 2).unwrap();
    settings.database.connect_deadline = std::time::Duration::from_secs(2);
    let started = std::time::Instant::now();
    let error =
        match Application::build(settings, real_migrations(), CancellationToken::new()).await {
            Ok(_) => panic!("connected to nothing"),
            Err(e) => e.to_string(),
        };
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert!(error.contains("API_DB_CONNECT_DEADLINE_SECS"), "{error}");
    assert!(error.contains("refused"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_hung_at_shutdown_does_not_keep_the_replica_from_exiting() {
    let app =
        spawn_app_with(|s| s.application.shutdown_drain = std::time::Duration::from_secs(1)).await;
    let mut locker = app.db.connection().await;
    // The text protocol: MySQL refuses LOCK TABLES as a prepared statement (servers.rs).
    sqlx::raw_sql("LOCK TABLES documents WRITE")
        .execute(&mut locker)
        .await
        .unwrap();
    let client = app.client.clone();
    let url = app.url("/documents");
    let hung = tokio::spawn(async move { client.get(url).send().await });
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    // Keep the database until the table is unlocked: dropping it waits for that lock.
    let _db = app.db.clone();
    let started = std::time::Instant::now();
    let stopped = tokio::time::timeout(std::time::Duration::from_secs(10), app.stop()).await;
    let took = started.elapsed();
    let _ = sqlx::raw_sql("UNLOCK TABLES").execute(&mut locker).await;
    hung.abort();
    assert!(stopped.is_ok(), "still closing the pool after {took:?}");
    assert!(took < std::time::Duration::from_secs(4), "{took:?}");
}
