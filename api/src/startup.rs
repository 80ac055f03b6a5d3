//! Startup, in the order the design fixes: pool, schema, data directory, bind, serve.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sqlx::migrate::Migrator;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPoolOptions};
use sqlx::MySqlPool;
use sqlx::{ConnectOptions, Connection};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_io_timeout::TimeoutStream;
use tokio_util::sync::CancellationToken;
use tracing::instrument::WithSubscriber;

use crate::configuration::{ApplicationSettings, DatabaseSettings, Settings};
use crate::log_contract;
use crate::migrate::{self, CoordinateError, StartupReport};
use crate::routes;
use crate::state::{AppState, InstanceInfo};
use crate::storage::Storage;

/// How long a request may wait for a pooled connection; also bounds each start-up attempt.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause between two attempts to reach the database at start-up.
const CONNECT_RETRY_PAUSE: Duration = Duration::from_secs(1);
/// After the drain, closing the pool waits for connections still in use (a hung query); give
/// it this long, so the process exits by itself before `docker stop` sends SIGKILL.
const POOL_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("could not connect to the database at {target}: {source}")]
    Database {
        target: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the database at {target} was not reachable within {}s (API_DB_CONNECT_DEADLINE_SECS); last error: {last_error}",
        waited.as_secs()
    )]
    DatabaseUnreachable {
        target: String,
        waited: Duration,
        last_error: String,
    },
    // A timeout or a dirty schema was already logged in full with its contract line.
    #[error("{}", match .0 {
        CoordinateError::TimedOut { .. } => "the schema did not become current before the deadline (see the line above)".to_owned(),
        CoordinateError::Dirty { .. } => "the schema is dirty (see the line above)".to_owned(),
        other => format!("schema migration failed: {other}"),
    })]
    Migration(CoordinateError),
    /// A shutdown signal arrived before the replica served; nothing is left half done.
    #[error("stopped before startup finished")]
    Stopped,
    #[error("could not listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

impl From<CoordinateError> for StartupError {
    fn from(error: CoordinateError) -> Self {
        match error {
            CoordinateError::Stopped => StartupError::Stopped,
            other => StartupError::Migration(other),
        }
    }
}

pub struct Application {
    listener: TcpListener,
    local_addr: SocketAddr,
    pool: MySqlPool,
    state: AppState,
    limits: ApplicationSettings,
}

impl Application {
    /// Wait for the database, bring the schema up to date with `migrator` (the binary passes
    /// [`migrate::embedded`]), sweep and probe the data directory, bind.
    ///
    /// `stop` cancelled ends a wait at once with [`StartupError::Stopped`]; a migration being
    /// applied is finished first (see [`migrate::coordinate`]).
    pub async fn build(
        settings: Settings,
        migrator: Migrator,
        stop: CancellationToken,
    ) -> Result<Self, StartupError> {
        let started_at = Utc::now();
        let connect = settings.database.connect_options();
        wait_for_database(&settings.database, &connect, &stop).await?;
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

        let coordinated =
            migrate::coordinate(&pool, &connect, migrator, &settings.migration, &stop).await;
        let report = match coordinated {
            Ok(report) => report,
            Err(e) => {
                pool.close().await;
                return Err(e.into());
            }
        };
        if stop.is_cancelled() {
            // The migration this replica was applying is complete and its lock released.
            pool.close().await;
            return Err(StartupError::Stopped);
        }

        // An unwritable data directory does not stop the replica: it serves with /readyz
        // answering 503 (so it never turns healthy and gets no traffic), the error names the
        // directory, the uids and the fix, and once an operator fixes the volume the replica
        // becomes ready without a restart.
        let storage = Storage::new(&settings.application.data_dir);
        if let Err(e) = storage.probe().await {
            tracing::error!("{e}; serving with /readyz answering 503 until it is fixed");
        }
        // Uploads cut off by a SIGKILL or an OOM leave their temp file. Every replica shares
        // tmp/, so only files older than the longest an upload may take are certainly dead.
        match storage
            .sweep_tmp(settings.application.request_timeout)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "removed abandoned upload files from tmp/"),
            Err(e) => {
                tracing::warn!(error = %e, "could not sweep abandoned upload files from tmp/")
            }
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
            min_upload_rate: settings.application.min_upload_rate,
        };
        Ok(Self {
            listener,
            local_addr,
            pool,
            state,
            limits: settings.application,
        })
    }

    /// The bound port (port 0 in the settings means the OS picked this one).
    pub fn port(&self) -> u16 {
        self.local_addr.port()
    }

    pub fn startup_report(&self) -> &StartupReport {
        &self.state.instance.startup
    }

    /// Serve until `shutdown` completes: stop accepting, let in-flight requests finish (for at
    /// most `API_SHUTDOWN_DRAIN_SECS`), then close the pool (for at most `POOL_CLOSE_TIMEOUT`).
    ///
    /// hyper directly rather than `axum::serve`, which has no timer: without one a client
    /// that sends half a request head and goes silent holds its connection, and the graceful
    /// shutdown that waits for it, forever.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = self.limits;
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(limits.client_timeout);
        let router = routes::router(self.state, limits.request_timeout);
        // Histogram samples wait in the recorder until drained: without a scraper they would
        // pile up, so drain them every few seconds.
        let upkeep = tokio::spawn(async {
            let mut every = tokio::time::interval(Duration::from_secs(5));
            loop {
                every.tick().await;
                crate::metrics::handle().run_upkeep();
            }
        });
        let graceful = GracefulShutdown::new();
        let slots = Arc::new(Semaphore::new(limits.max_connections));
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
            // A response goes out as its head and then its body, two writes: with Nagle's
            // algorithm the body waits for the client's delayed ACK of the head (40 ms on Linux).
            if let Err(e) = stream.set_nodelay(limits.tcp_nodelay) {
                tracing::debug!(error = %e, "setting TCP_NODELAY failed");
            }
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tokio::spawn(refuse(stream, limits.max_connections).with_current_subscriber());
                continue;
            };
            // A response the client does not read (a slow or stalled download) must not hold a
            // connection, a file handle and a stopping replica forever.
            let mut stream = TimeoutStream::new(stream);
            stream.set_write_timeout(Some(limits.write_timeout));
            let service = TowerToHyperService::new(router.clone());
            let connection = http.serve_connection(TokioIo::new(Box::pin(stream)), service);
            let connection = graceful.watch(connection);
            tokio::spawn(
                async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                    drop(slot);
                }
                .with_current_subscriber(),
            );
        }
        // New connections are refused from here on.
        drop(self.listener);
        upkeep.abort();
        let open = graceful.count();
        tokio::select! {
            () = graceful.shutdown() => {}
            () = tokio::time::sleep(limits.shutdown_drain) => tracing::warn!(
                open,
                "connections still open {}s after the shutdown signal (API_SHUTDOWN_DRAIN_SECS); closing them",
                limits.shutdown_drain.as_secs()
            ),
        }
        if tokio::time::timeout(POOL_CLOSE_TIMEOUT, self.pool.close())
            .await
            .is_err()
        {
            tracing::warn!(
                "database connections still busy {}s after the drain (a hung query?); exiting without waiting for them",
                POOL_CLOSE_TIMEOUT.as_secs()
            );
        }
        tracing::info!("Stopped");
        Ok(())
    }
}

/// Over `API_MAX_CONNECTIONS`: a 503 the client can read, then the connection is closed.
async fn refuse(mut stream: TcpStream, limit: usize) {
    tracing::warn!(
        limit,
        "connection refused: API_MAX_CONNECTIONS connections are open"
    );
    let body = format!(
        r#"{{"error":{{"code":"too_many_connections","message":"this replica serves at most {limit} connections at once (API_MAX_CONNECTIONS); retry later"}}}}"#
    );
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        // Read what the client sent, so closing does not reset the connection before the
        // client has read the answer.
        let mut sink = [0u8; 4096];
        while stream.read(&mut sink).await? > 0 {}
        Ok::<_, std::io::Error>(())
    })
    .await;
}

/// Retry until `API_DB_CONNECT_DEADLINE_SECS`: the database may still be starting (or its name
/// not yet in DNS), and orchestrators such as Swarm ignore `depends_on`. A refused login or an
/// unknown database is a configuration error: reported at once.
async fn wait_for_database(
    database: &DatabaseSettings,
    connect: &MySqlConnectOptions,
    stop: &CancellationToken,
) -> Result<(), StartupError> {
    let target = database.display_target();
    let started = Instant::now();
    let deadline = started + database.connect_deadline;
    for attempt in 1u32.. {
        let error = match tokio::time::timeout(ACQUIRE_TIMEOUT, connect.connect()).await {
            Ok(Ok(conn)) => {
                let _ = conn.close().await;
                return Ok(());
            }
            Ok(Err(source)) if is_configuration_error(&source) => {
                return Err(StartupError::Database { target, source })
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {}s", ACQUIRE_TIMEOUT.as_secs()),
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(StartupError::DatabaseUnreachable {
                target,
                waited: started.elapsed(),
                last_error: error,
            });
        }
        tracing::warn!(
            attempt,
            error = %error,
            "database {target} not reachable yet; retrying for up to {}s more (API_DB_CONNECT_DEADLINE_SECS)",
            left.as_secs()
        );
        tokio::select! {
            () = tokio::time::sleep(CONNECT_RETRY_PAUSE.min(left)) => {}
            () = stop.cancelled() => return Err(StartupError::Stopped),
        }
    }
    unreachable!("the attempts loop returns")
}

/// Errors that waiting will not fix: wrong credentials, a locked account, an unknown database.
fn is_configuration_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(e) => e
            .try_downcast_ref::<MySqlDatabaseError>()
            .is_some_and(|e| matches!(e.number(), 1044 | 1045 | 1049 | 1698 | 4151)),
        sqlx::Error::Configuration(_) | sqlx::Error::Tls(_) => true,
        _ => false,
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
