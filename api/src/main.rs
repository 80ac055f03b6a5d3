//! `api` serves; `api healthcheck` probes a running instance (the container HEALTHCHECK).

use std::process::ExitCode;

use api::configuration::Settings;
use api::startup::{shutdown_signal, Application, StartupError};
use api::{healthcheck, migrate, telemetry};
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: api [healthcheck]  (no argument: serve; healthcheck: exit 0 if GET /readyz on 127.0.0.1:$API_PORT answers 200)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        [] => serve(),
        ["healthcheck"] => check_health(),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("unknown arguments {args:?}; {USAGE}");
            ExitCode::from(2)
        }
    }
}

fn serve() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init();
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = settings.application.worker_threads {
        builder.worker_threads(threads);
    }
    let runtime = match builder.enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        // Listen from the start: a stop while waiting for the database or for another replica's
        // migration ends startup at once; a stop while this replica applies a migration lets it
        // finish and release the lock first (a cut migration leaves the schema dirty).
        let signal = shutdown_signal();
        let stop = CancellationToken::new();
        tokio::spawn({
            let stop = stop.clone();
            async move {
                signal.await;
                stop.cancel();
            }
        });
        let app = match Application::build(settings, migrate::embedded(), stop.clone()).await {
            Ok(app) => app,
            Err(StartupError::Stopped) => {
                tracing::info!("Stopped before serving; nothing was left half done");
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                tracing::error!("startup failed: {e}");
                return ExitCode::FAILURE;
            }
        };
        match app.run_until_stopped(stop.cancelled_owned()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                tracing::error!("server failed: {e}");
                ExitCode::FAILURE
            }
        }
    })
}

/// Docker reads exit 0 as healthy and 1 as unhealthy (2 is reserved), so only those two.
fn check_health() -> ExitCode {
    let port = match std::env::var("API_PORT").ok().filter(|v| !v.is_empty()) {
        None => 8080,
        Some(raw) => match raw.parse::<u16>() {
            Ok(port) => port,
            Err(_) => {
                eprintln!("unhealthy: API_PORT={raw:?} is not a port number");
                return ExitCode::FAILURE;
            }
        },
    };
    match healthcheck::check(port, healthcheck::TIMEOUT) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("unhealthy: {e}");
            ExitCode::FAILURE
        }
    }
}
