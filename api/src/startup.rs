//! Startup, in the order the design fixes: pool, schema, data directory, bind, serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Serialize;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlPoolOptions};
use sqlx::MySqlPool;
use sqlx::{ConnectOptions, Connection};
use tokio::net::TcpListener;

use crate::configuration::Settings;
use crate::log_contract;
use crate::migrate::{self, CoordinateError, StartupReport};
use crate::routes;
use crate::storage::Storage;

/// How long a request may wait for a pooled connection (also bounds the first connect).
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// After SIGTERM, in-flight requests get this long to finish; then the remaining connections
/// are closed. Below `docker stop`'s default 10 s, so the process exits by itself rather than
/// being killed (which would also leave upload temp files behind).
const SHUTDOWN_DRAIN: Duration = Duration::from_secs(8);

#[derive(Clone)]
pub struct AppState {
    pub pool: MySqlPool,
    pub storage: Storage,
    pub instance: Arc<InstanceInfo>,
    pub max_upload_bytes: u64,
    /// A client silent this long mid-request is given up on (`API_CLIENT_TIMEOUT_SECS`).
    pub client_timeout: Duration,
}

/// What `GET /instance` serves.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceInfo {
    pub hostname: String,
    pub version: &'static str,
    pub started_at: DateTime<Utc>,
    pub startup: StartupReport,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not connect to the database at {target}: {source}")]
    Database {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    // A timeout was already logged in full with the contract line; do not repeat it.
    #[error("{}", match .0 {
        CoordinateError::TimedOut { .. } => "the schema did not become current before the deadline (see the line above)".to_owned(),
        other => format!("schema migration failed: {other}"),
    })]
    Migration(#[from] CoordinateError),
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    pool: MySqlPool,
    state: AppState,
}

impl Application {
    /// Build with the migrations embedded in this binary.
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        Self::build_with(settings, migrate::embedded()).await
    }

    /// Build with a given migration set (tests pass their own).
    pub async fn build_with(settings: Settings, migrator: Migrator) -> Result<Self, StartupError> {
        let started_at = Utc::now();
        let connect = settings.database.connect_options();
        let pool = match MySqlPoolOptions::new()
            .max_connections(settings.database.pool_size)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // sqlx pings every connection when it goes back to the pool and drops a dead one;
            // another ping on every acquire made a one-query request three round trips instead of
            // two (A/B runs of `cargo xtask bench`'s load: reads +5-11 %). A connection that died
            // while idle fails its next query once and is then dropped by that release ping.
            .test_before_acquire(false)
            .connect_with(connect.clone())
            .await
        {
            Ok(pool) => pool,
            Err(source) => {
                return Err(StartupError::Database {
                    target: settings.database.display_target(),
                    source: underlying_cause(source, &connect).await,
                })
            }
        };
        tracing::info!(
            database = %settings.database.display_target(),
            size = settings.database.pool_size,
            "{}",
            log_contract::POOL_CREATED
        );

        let report = migrate::coordinate(&pool, &connect, migrator, &settings.migration).await?;

        // An unwritable data directory does not stop the replica: it serves with /readyz
        // answering 503 (so it never turns healthy and gets no traffic), the error names the
        // directory, the uids and the fix, and once an operator fixes the volume the replica
        // becomes ready without a restart.
        let storage = Storage::new(&settings.application.data_dir);
        if let Err(e) = storage.probe().await {
            tracing::error!("{e}; serving with /readyz answering 503 until it is fixed");
        }

        let addr = SocketAddr::new(settings.application.host, settings.application.port);
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| StartupError::Bind { addr, source })?;
        let local_addr = listener
            .local_addr()
            .map_err(|source| StartupError::Bind { addr, source })?;
        tracing::info!("{} {local_addr}", log_contract::LISTENING);

        let state = AppState {
            pool: pool.clone(),
            storage,
            instance: Arc::new(InstanceInfo {
                hostname: hostname(),
                version: env!("CARGO_PKG_VERSION"),
                started_at,
                startup: report,
            }),
            max_upload_bytes: settings.application.max_upload_bytes,
            client_timeout: settings.application.client_timeout,
        };
        Ok(Self {
            listener,
            local_addr,
            pool,
            state,
        })
    }

    /// The bound address (port 0 in the settings means the OS picked this one).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn startup_report(&self) -> &StartupReport {
        &self.state.instance.startup
    }

    /// Serve until `shutdown` completes: stop accepting, let in-flight requests finish (for at
    /// most `SHUTDOWN_DRAIN`), then close the pool.
    ///
    /// hyper directly rather than `axum::serve`, which has no timer: without one a client
    /// that sends half a request head and goes silent holds its connection, and the graceful
    /// shutdown that waits for it, forever.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.state.client_timeout);
        let router = routes::router(self.state);
        let graceful = GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                () = &mut shutdown => break,
            };
            let service = TowerToHyperService::new(router.clone());
            let connection = http.serve_connection(TokioIo::new(stream), service);
            let connection = graceful.watch(connection);
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        // New connections are refused from here on.
        drop(self.listener);
        let open = graceful.count();
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(SHUTDOWN_DRAIN) => tracing::warn!(
                open,
                "connections still open {}s after the shutdown signal; closing them",
                SHUTDOWN_DRAIN.as_secs()
            ),
        }
        self.pool.close().await;
        tracing::info!("Stopped");
        Ok(())
    }
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM (what `docker stop` sends).
///
/// The handlers are registered when this is called, not when first polled, so call it before
/// startup: a SIGTERM right after the `Listening on` line must not kill the process outright.
/// Must be called inside the tokio runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    use tokio::signal::unix::{signal, SignalKind};
    let interrupt = signal(SignalKind::interrupt());
    let terminate = signal(SignalKind::terminate());
    async move {
        let wait = |registered: std::io::Result<tokio::signal::unix::Signal>,
                    name: &'static str| async move {
            match registered {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for {name}");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = wait(interrupt, "SIGINT") => {},
            () = wait(terminate, "SIGTERM") => {},
        }
        tracing::info!("Shutdown signal received; finishing in-flight requests");
    }
}

/// The pool retries until its timeout and then reports only "pool timed out"; one direct
/// attempt recovers the reason an operator can act on (refused, unknown host, access denied).
async fn underlying_cause(error: sqlx::Error, connect: &MySqlConnectOptions) -> sqlx::Error {
    if !matches!(error, sqlx::Error::PoolTimedOut) {
        return error;
    }
    match tokio::time::timeout(Duration::from_secs(3), connect.connect()).await {
        Ok(Err(cause)) => cause,
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            error
        }
        Err(_) => error,
    }
}

/// The replica's name: the container's hostname.
fn hostname() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok().filter(|s| !s.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned())
}
