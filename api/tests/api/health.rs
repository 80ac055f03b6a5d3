use sqlx::Connection;

use crate::helpers::{assert_json_error, spawn_app};

#[tokio::test]
async fn healthz_answers_200() {
    let app = spawn_app().await;
    let response = app.get("/healthz").await;
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn readyz_answers_ready_when_the_database_and_data_directory_work() {
    let app = spawn_app().await;
    let response = app.get("/readyz").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "ready" }));
    assert!(app.files_in("tmp").is_empty(), "the probe file is removed");
}

#[tokio::test]
async fn readyz_answers_503_naming_the_data_directory_when_it_cannot_be_written() {
    let app = spawn_app().await;
    // Root ignores permissions, so break the directory itself: tmp/ becomes a file.
    let tmp = app.data_dir.0.join("tmp");
    std::fs::remove_dir_all(&tmp).unwrap();
    std::fs::write(&tmp, b"not a directory").unwrap();
    let message = assert_json_error(app.get("/readyz").await, 503, "not_ready").await;
    assert!(message.starts_with("data_dir_unwritable"), "{message}");
    // The path is for the operator's log, not for any client.
    let path = app.data_dir.0.display().to_string();
    assert!(!message.contains(&path), "{message}");
    let log = app.logs.text();
    assert!(
        log.contains("data directory") && log.contains(&path),
        "{log}"
    );
    // Liveness does not depend on it.
    assert_eq!(app.get("/healthz").await.status(), 200);
}

#[tokio::test]
async fn readyz_answers_503_when_documents_cannot_be_written_though_tmp_can() {
    let app = spawn_app().await;
    assert_eq!(app.get("/readyz").await.status(), 200);
    // documents/ becomes a directory nobody can write to, root included (procfs).
    let documents = app.data_dir.0.join("documents");
    std::fs::remove_dir_all(&documents).unwrap();
    std::os::unix::fs::symlink("/proc/1", &documents).unwrap();
    let message = assert_json_error(app.get("/readyz").await, 503, "not_ready").await;
    assert!(message.starts_with("data_dir_unwritable"), "{message}");
    assert!(app.logs.text().contains("documents"), "{}", app.logs.text());
}

#[tokio::test]
async fn readyz_answers_503_when_the_database_refuses_the_api() {
    // The app connects as a user of its own, which we then lock out and disconnect.
    // Both hosts: on a server with anonymous users, ''@'localhost' would beat 'u'@'%'.
    let db = crate::helpers::TestDb::create().await;
    let user = format!("u{}", &db.name[db.name.len() - 12..]);
    let accounts = [format!("'{user}'@'%'"), format!("'{user}'@'localhost'")];
    let mut admin = db.connection().await;
    for account in &accounts {
        for statement in [
            format!("CREATE USER {account} IDENTIFIED BY 'pw'"),
            format!("GRANT ALL ON `{}`.* TO {account}", db.name),
        ] {
            sqlx::query(&statement).execute(&mut admin).await.unwrap();
        }
    }
    let data_dir = crate::helpers::TempDir::new();
    let mut settings = db.settings(&data_dir.0);
    let mut url = url::Url::parse(&db.url()).unwrap();
    url.set_username(&user).unwrap();
    url.set_password(Some("pw")).unwrap();
    settings.database = api::configuration::DatabaseSettings::from_url(url.as_str(), 2).unwrap();
    let app = api::startup::Application::build(
        settings,
        crate::helpers::real_migrations(),
        tokio_util::sync::CancellationToken::new(),
    )
    .await
    .unwrap();
    let address = format!("http://127.0.0.1:{}", app.port());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    assert_eq!(
        reqwest::get(format!("{address}/readyz"))
            .await
            .unwrap()
            .status(),
        200
    );

    for account in &accounts {
        sqlx::query(&format!("ALTER USER {account} ACCOUNT LOCK"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let sessions: Vec<i64> = sqlx::query_scalar(
        "SELECT CAST(ID AS SIGNED) FROM information_schema.PROCESSLIST WHERE USER = ?",
    )
    .bind(&user)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    for id in sessions {
        let _ = sqlx::query(&format!("KILL CONNECTION {id}"))
            .execute(&mut admin)
            .await;
    }

    let response = reqwest::get(format!("{address}/readyz")).await.unwrap();
    let message = assert_json_error(response, 503, "not_ready").await;
    assert!(message.starts_with("database_unavailable"), "{message}");
    assert!(!message.contains("pw@"), "{message}");
    // The server's own words name the user and host: they stay in the log.
    assert!(!message.contains(&user), "{message}");
    assert!(!message.to_lowercase().contains("denied"), "{message}");

    for account in &accounts {
        sqlx::query(&format!("DROP USER {account}"))
            .execute(&mut admin)
            .await
            .unwrap();
    }
    let _ = admin.close().await;
}

#[tokio::test]
async fn instance_reports_hostname_version_start_time_and_how_startup_went() {
    let app = spawn_app().await;
    let response = app.get("/instance").await;
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert!(!body["hostname"].as_str().unwrap().is_empty());
    assert_eq!(body["version"], env!("CARGO_PKG_VERSION"));
    let started = body["started_at"].as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(started).is_ok(),
        "{started}"
    );
    // A fresh database: this instance migrated it.
    assert_eq!(body["startup"]["role"], "leader");
    assert_eq!(body["startup"]["migrations_applied"], 2);
    assert_eq!(body["startup"]["lock_name"], app.db.lock_name());
    assert!(body["startup"]["waited_ms"].is_u64());
}
