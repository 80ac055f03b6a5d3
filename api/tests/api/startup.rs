//! Startup failures are clear, and shutdown is clean.

use api::startup::Application;

use crate::helpers::{spawn_app, TempDir, TestDb};

#[tokio::test]
async fn an_unusable_data_directory_keeps_the_replica_unready_and_names_itself_our_uid_its_owner_and_the_fix(
) {
    let db = TestDb::create().await;
    let scratch = TempDir::new();
    // A regular file where a parent directory should be: fails even for root.
    std::fs::write(scratch.0.join("file"), b"x").unwrap();
    let data_dir = scratch.0.join("file").join("data");

    let app = Application::build(db.settings(&data_dir))
        .await
        .unwrap_or_else(|e| panic!("an unwritable data directory must not stop startup: {e}"));
    let port = app.port();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until_stopped(async {
        let _ = rx.await;
    }));
    let client = reqwest::Client::new();
    let readyz = format!("http://127.0.0.1:{port}/readyz");

    let response = client.get(&readyz).send().await.unwrap();
    assert_eq!(response.status(), 503);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_ready");
    let message = body["error"]["message"].as_str().unwrap().to_owned();
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
        assert!(message.contains(&part), "{message:?} lacks {part:?}");
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

    let error = match Application::build(settings).await {
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
