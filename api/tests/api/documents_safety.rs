//! Bytes and rows stay together through lost replies, clients that hang up mid-commit and
//! replicas killed mid-upload.

use std::time::{Duration, SystemTime};

use tokio::io::AsyncWriteExt;

use crate::helpers::{spawn_app_on, Fault, Proxy, TempDir, TestDb};

async fn rows(db: &TestDb) -> Vec<String> {
    let mut conn = db.connection().await;
    sqlx::query_scalar("SELECT id FROM documents ORDER BY id")
        .fetch_all(&mut conn)
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_insert_whose_reply_is_lost_after_the_commit_keeps_the_documents_bytes() {
    let db = TestDb::create().await;
    let proxy = Proxy::start(Fault::LoseReply("INSERT INTO documents")).await;
    let url = proxy.url(&db.url());
    let app = crate::helpers::spawn_app_with_settings_on(db.clone(), TempDir::new(), move |s| {
        s.database = api::configuration::DatabaseSettings::from_url(&url, 2).unwrap();
    })
    .await;

    let response = app
        .upload("lost-reply.txt", b"bytes that must survive".to_vec(), None)
        .await;
    assert!(proxy.fired(), "the proxy never saw the INSERT");
    let status = response.status();
    let body = response.text().await.unwrap();
    let listed = rows(&db).await;
    assert_eq!(listed.len(), 1, "the server committed the row");
    let content = app.get(&format!("/documents/{}/content", listed[0])).await;
    assert_eq!(content.status(), 200, "a listed document lost its bytes");
    assert_eq!(
        content.bytes().await.unwrap().as_ref(),
        b"bytes that must survive"
    );
    assert_eq!(status, 201, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_while_its_upload_commits_leaves_bytes_and_row_together() {
    let db = TestDb::create().await;
    let proxy = Proxy::start(Fault::DelayPrepare(
        "INSERT INTO documents",
        Duration::from_millis(1500),
    ))
    .await;
    let url = proxy.url(&db.url());
    let app = crate::helpers::spawn_app_with_settings_on(db.clone(), TempDir::new(), move |s| {
        s.database = api::configuration::DatabaseSettings::from_url(&url, 2).unwrap();
    })
    .await;

    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", app.port))
        .await
        .unwrap();
    stream
        .write_all(
            b"POST /documents?name=gone.txt HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        )
        .await
        .unwrap();
    // The bytes are in; the INSERT is held up. The client gives up and goes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(2500)).await;

    assert!(proxy.fired());
    let files = app.files_in("documents");
    let listed = rows(&db).await;
    assert_eq!(files, listed, "files and rows differ");
    assert_eq!(
        listed.len(),
        1,
        "the upload was finished for the departed client"
    );
}

#[tokio::test]
async fn start_up_sweeps_upload_files_abandoned_longer_than_the_request_deadline_and_only_those() {
    let db = TestDb::create().await;
    let data_dir = TempDir::new();
    let tmp = data_dir.0.join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let old = tmp.join("killed-mid-upload.part");
    let live = tmp.join("another-replica-uploading.part");
    std::fs::write(&old, b"half").unwrap();
    std::fs::write(&live, b"in progress").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&old)
        .unwrap()
        .set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();

    let app = spawn_app_on(db, data_dir).await;
    assert!(!old.exists(), "an abandoned upload file was left");
    assert!(live.exists(), "a live upload's file was removed");
    assert!(
        app.logs.text().contains("removed abandoned upload files"),
        "{}",
        app.logs.text()
    );
}
