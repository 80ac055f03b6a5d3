//! The one place that builds the `tracing` subscriber.
//!
//! Logs go to stdout as plain text lines (no ANSI colour unless stdout is a terminal), so the
//! contract lines in [`crate::log_contract`] appear verbatim in `docker compose logs`.

use std::io::IsTerminal;

use tracing::Subscriber;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// Used when `RUST_LOG` is unset: our lines at info, sqlx's per-query logging kept quiet.
pub const DEFAULT_FILTER: &str = "info,sqlx=warn";

/// `RUST_LOG`, or [`DEFAULT_FILTER`] when it is unset or unparsable.
pub fn env_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER))
}

/// A subscriber writing formatted lines to `writer`. Tests use it with their own writer to
/// capture exactly what production would print.
pub fn subscriber<W>(filter: EnvFilter, writer: W, ansi: bool) -> impl Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(writer)
        .finish()
}

/// Install the process-wide subscriber: stdout, colour only on a terminal.
pub fn init() {
    let ansi = std::io::stdout().is_terminal();
    // Ignore "already set": tests and embedders may have installed their own.
    let _ =
        tracing::subscriber::set_global_default(subscriber(env_filter(), std::io::stdout, ansi));
}
