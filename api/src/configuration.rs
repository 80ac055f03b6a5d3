//! Typed settings, read once from the environment at startup.
//!
//! Every value is validated here so a misconfigured replica fails with one line naming the
//! variable, before it touches the database. Secrets never reach a `Debug`/`Display` output.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sqlx::mysql::MySqlConnectOptions;

/// A value that must never be printed: `Debug` and `Display` show `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The only way to see the value: grep for `expose` to audit every use.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub database: DatabaseSettings,
    pub application: ApplicationSettings,
    pub migration: MigrationSettings,
}

#[derive(Debug, Clone)]
pub struct ApplicationSettings {
    pub host: IpAddr,
    pub port: u16,
    pub data_dir: PathBuf,
    pub max_upload_bytes: u64,
    /// How long a client may stay silent while sending a request (its headers, or between
    /// chunks of an upload) before the api gives up on it.
    pub client_timeout: Duration,
    /// The whole request, upload included, must be answered within this (408 otherwise).
    pub request_timeout: Duration,
    /// After its first `client_timeout`, an upload must average at least this many bytes/s.
    pub min_upload_rate: u64,
    /// A response that makes no sending progress for this long has its connection closed.
    pub write_timeout: Duration,
    /// Open connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// After SIGTERM, in-flight requests get this long before their connections are closed.
    pub shutdown_drain: Duration,
    /// The async runtime's worker threads (`API_WORKER_THREADS`); None: one per CPU the process
    /// may use (`std::thread::available_parallelism`, which honours a cgroup CPU quota).
    pub worker_threads: Option<usize>,
    /// TCP_NODELAY on every accepted connection (`API_TCP_NODELAY`, default on).
    pub tcp_nodelay: bool,
}

impl ApplicationSettings {
    /// The defaults of every limit, listening on `host:port` with data in `data_dir`.
    pub fn new(host: IpAddr, port: u16, data_dir: PathBuf) -> Self {
        Self {
            host,
            port,
            data_dir,
            max_upload_bytes: 10 * 1024 * 1024,
            client_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(300),
            min_upload_rate: 1024,
            write_timeout: Duration::from_secs(30),
            max_connections: 512,
            shutdown_drain: Duration::from_secs(8),
            worker_threads: None,
            tcp_nodelay: true,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    source: DatabaseSource,
    /// The schema the api uses; the migration lock name is derived from it.
    pub database_name: String,
    pub pool_size: u32,
    /// How long startup keeps retrying to reach the database (`API_DB_CONNECT_DEADLINE_SECS`).
    pub connect_deadline: Duration,
}

/// Default of `API_DB_CONNECT_DEADLINE_SECS`.
pub const DEFAULT_CONNECT_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
enum DatabaseSource {
    Url(Secret<String>),
    Parts {
        host: String,
        port: u16,
        user: String,
        password: Secret<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationLock {
    /// Coordinate replicas with a MySQL named lock (`GET_LOCK`).
    On,
    /// For servers without named locks: no lock at all; every replica that finds the schema
    /// out of date runs the migrator itself.
    Off,
}

#[derive(Debug, Clone)]
pub struct MigrationSettings {
    /// How long a replica waits for another one to bring the schema up to date.
    pub deadline: Duration,
    pub lock: MigrationLock,
}

impl DatabaseSettings {
    /// Build settings from a `mysql://` URL, validating it the way sqlx will read it.
    pub fn from_url(url: &str, pool_size: u32) -> Result<Self, ConfigError> {
        let invalid = |why: String| ConfigError::invalid("DATABASE_URL", why, None);
        let parsed = url::Url::parse(url).map_err(|e| {
            invalid(format!(
                "expected mysql://user:password@host:3306/database ({e})"
            ))
        })?;
        if !matches!(parsed.scheme(), "mysql" | "mariadb") {
            return Err(invalid(format!(
                "expected the scheme mysql:// or mariadb://, got {}://",
                parsed.scheme()
            )));
        }
        let database_name = parsed.path().trim_start_matches('/').to_owned();
        if database_name.is_empty() || database_name.contains('/') {
            return Err(invalid(format!(
                "expected a database name in the path, e.g. mysql://user:password@host:3306/app (got {})",
                redact_url(url)
            )));
        }
        // Let sqlx validate the rest (query parameters such as ssl-mode); its message may
        // echo parts of the URL, so scrub the password out of it.
        MySqlConnectOptions::from_str(url).map_err(|e| {
            invalid(scrub(
                &format!("{e} (in {})", redact_url(url)),
                parsed.password(),
            ))
        })?;
        Ok(Self {
            source: DatabaseSource::Url(Secret::new(url.to_owned())),
            database_name,
            pool_size,
            connect_deadline: DEFAULT_CONNECT_DEADLINE,
        })
    }

    pub fn from_parts(
        host: String,
        port: u16,
        user: String,
        password: Secret<String>,
        database_name: String,
        pool_size: u32,
    ) -> Self {
        Self {
            source: DatabaseSource::Parts {
                host,
                port,
                user,
                password,
            },
            database_name,
            pool_size,
            connect_deadline: DEFAULT_CONNECT_DEADLINE,
        }
    }

    /// Options for connections to the api's database.
    pub fn connect_options(&self) -> MySqlConnectOptions {
        match &self.source {
            DatabaseSource::Url(url) => MySqlConnectOptions::from_str(url.expose())
                .expect("DATABASE_URL was validated when the settings were read"),
            DatabaseSource::Parts {
                host,
                port,
                user,
                password,
            } => MySqlConnectOptions::new()
                .host(host)
                .port(*port)
                .username(user)
                .password(password.expose())
                .database(&self.database_name),
        }
    }

    /// Where we connect, for log lines: never includes the password.
    pub fn display_target(&self) -> String {
        match &self.source {
            DatabaseSource::Url(url) => redact_url(url.expose()),
            DatabaseSource::Parts {
                host, port, user, ..
            } => format!("mysql://{user}:***@{host}:{port}/{}", self.database_name),
        }
    }
}

/// A URL with its password replaced by `***`; an unparsable URL is not echoed at all.
fn redact_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

/// Remove every occurrence of `password` (raw and percent-decoded) from `text`.
fn scrub(text: &str, password: Option<&str>) -> String {
    let Some(raw) = password.filter(|p| !p.is_empty()) else {
        return text.to_owned();
    };
    let mut out = text.replace(raw, "***");
    if let Ok(decoded) = percent_encoding::percent_decode_str(raw).decode_utf8() {
        if !decoded.is_empty() {
            out = out.replace(decoded.as_ref(), "***");
        }
    }
    out
}

/// A missing or invalid setting: names the variable and what is expected, never a secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn missing(variable: &'static str, expected: &str) -> Self {
        Self {
            variable,
            problem: format!("is not set; expected {expected}"),
        }
    }

    /// `shown` is the offending value, or `None` when it must not be printed.
    fn invalid(variable: &'static str, expected: String, shown: Option<&str>) -> Self {
        let problem = match shown {
            Some(value) => format!("is invalid (got {value:?}); {expected}"),
            None => format!("is invalid; {expected}"),
        };
        Self { variable, problem }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "configuration error: {} {}", self.variable, self.problem)
    }
}

impl std::error::Error for ConfigError {}

impl Settings {
    /// Read the settings from the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the settings through `lookup`, so tests need not touch the process environment.
    /// An empty value counts as unset (compose files often pass `VAR=${VAR:-}`).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| lookup(name).filter(|v| !v.is_empty());

        let pool_size = parse_or(
            &get,
            "API_DB_POOL_SIZE",
            5u32,
            "expected a whole number of connections from 1 to 1000",
            |v: &u32| (1..=1000).contains(v),
        )?;

        let mut database = match get("DATABASE_URL") {
            Some(url) => DatabaseSettings::from_url(&url, pool_size)?,
            None => {
                let parts_hint = "(or set DATABASE_URL=mysql://user:password@host:3306/database)";
                let host = get("DB_HOST").ok_or_else(|| {
                    ConfigError::missing("DB_HOST", &format!("the database host name {parts_hint}"))
                })?;
                let port = parse_or(
                    &get,
                    "DB_PORT",
                    3306u16,
                    "expected a port number from 1 to 65535",
                    |p: &u16| *p > 0,
                )?;
                let user = get("DB_USER").ok_or_else(|| {
                    ConfigError::missing("DB_USER", &format!("the database user {parts_hint}"))
                })?;
                let password = password(&lookup, &get, parts_hint)?;
                let name = get("DB_NAME").ok_or_else(|| {
                    ConfigError::missing("DB_NAME", &format!("the database name {parts_hint}"))
                })?;
                DatabaseSettings::from_parts(host, port, user, password, name, pool_size)
            }
        };

        database.connect_deadline = Duration::from_secs(parse_or(
            &get,
            "API_DB_CONNECT_DEADLINE_SECS",
            DEFAULT_CONNECT_DEADLINE.as_secs(),
            "expected a whole number of seconds from 1 to 86400",
            |v: &u64| (1..=86_400).contains(v),
        )?);

        let defaults =
            ApplicationSettings::new(IpAddr::from([0, 0, 0, 0]), 8080, "/app/data".into());
        let secs = |variable: &'static str, default: Duration, max: u64| {
            parse_or(
                &get,
                variable,
                default.as_secs(),
                &format!("expected a whole number of seconds from 1 to {max}"),
                |v: &u64| (1..=max).contains(v),
            )
            .map(Duration::from_secs)
        };
        let application = ApplicationSettings {
            host: parse_or(
                &get,
                "API_HOST",
                IpAddr::from([0, 0, 0, 0]),
                "expected an IP address to listen on, e.g. 0.0.0.0 or ::",
                |_| true,
            )?,
            port: parse_or(
                &get,
                "API_PORT",
                8080u16,
                "expected a port number from 0 to 65535",
                |_| true,
            )?,
            data_dir: get("API_DATA_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/app/data")),
            max_upload_bytes: parse_or(
                &get,
                "API_MAX_UPLOAD_BYTES",
                10 * 1024 * 1024u64,
                "expected a size in bytes of at least 1",
                |v: &u64| *v >= 1,
            )?,
            client_timeout: secs("API_CLIENT_TIMEOUT_SECS", defaults.client_timeout, 3600)?,
            request_timeout: secs("API_REQUEST_TIMEOUT_SECS", defaults.request_timeout, 86_400)?,
            min_upload_rate: parse_or(
                &get,
                "API_MIN_UPLOAD_BYTES_PER_SEC",
                defaults.min_upload_rate,
                "expected a rate in bytes per second (0 turns the check off)",
                |_| true,
            )?,
            write_timeout: secs("API_WRITE_TIMEOUT_SECS", defaults.write_timeout, 3600)?,
            max_connections: parse_or(
                &get,
                "API_MAX_CONNECTIONS",
                defaults.max_connections,
                "expected a whole number of connections from 1 to 1000000",
                |v: &usize| (1..=1_000_000).contains(v),
            )?,
            shutdown_drain: secs("API_SHUTDOWN_DRAIN_SECS", defaults.shutdown_drain, 3600)?,
            worker_threads: match parse_or(
                &get,
                "API_WORKER_THREADS",
                0usize,
                "expected a whole number of threads from 1 to 1024, or 0 for one per CPU",
                |v: &usize| *v <= 1024,
            )? {
                0 => None,
                n => Some(n),
            },
            tcp_nodelay: match get("API_TCP_NODELAY").map(|v| v.to_ascii_lowercase()) {
                None => true,
                Some(v) if v == "on" => true,
                Some(v) if v == "off" => false,
                Some(v) => {
                    return Err(ConfigError::invalid(
                        "API_TCP_NODELAY",
                        "expected `on` (default) or `off`".into(),
                        Some(&v),
                    ))
                }
            },
        };

        let migration = MigrationSettings {
            deadline: Duration::from_secs(parse_or(
                &get,
                "API_MIGRATION_DEADLINE_SECS",
                60u64,
                "expected a whole number of seconds from 1 to 86400",
                |v: &u64| (1..=86_400).contains(v),
            )?),
            lock: match get("API_MIGRATION_LOCK").map(|v| v.to_ascii_lowercase()) {
                None => MigrationLock::On,
                Some(v) if v == "on" => MigrationLock::On,
                Some(v) if v == "off" => MigrationLock::Off,
                Some(v) => {
                    return Err(ConfigError::invalid(
                        "API_MIGRATION_LOCK",
                        "expected `on` (default) or `off`".into(),
                        Some(&v),
                    ))
                }
            },
        };

        Ok(Self {
            database,
            application,
            migration,
        })
    }
}

/// `DB_PASSWORD`, or the contents of the file `DB_PASSWORD_FILE` names (a Compose or Swarm
/// secret, so the password is in neither `docker inspect` nor `/proc/1/environ`). One trailing
/// newline is dropped, as `echo pw > file` adds one.
fn password(
    lookup: &impl Fn(&str) -> Option<String>,
    get: &impl Fn(&str) -> Option<String>,
    parts_hint: &str,
) -> Result<Secret<String>, ConfigError> {
    // An empty password is a legitimate (if unwise) setting, so only unset is missing.
    match (lookup("DB_PASSWORD"), get("DB_PASSWORD_FILE")) {
        (Some(_), Some(_)) => Err(ConfigError::invalid(
            "DB_PASSWORD_FILE",
            "set either DB_PASSWORD or DB_PASSWORD_FILE, not both".into(),
            None,
        )),
        (Some(password), None) => Ok(Secret::new(password)),
        (None, Some(path)) => match std::fs::read_to_string(&path) {
            Ok(mut password) => {
                if password.ends_with('\n') {
                    password.pop();
                    if password.ends_with('\r') {
                        password.pop();
                    }
                }
                Ok(Secret::new(password))
            }
            Err(e) => Err(ConfigError::invalid(
                "DB_PASSWORD_FILE",
                format!("expected a readable file holding the database password ({e})"),
                Some(&path),
            )),
        },
        (None, None) => Err(ConfigError::missing(
            "DB_PASSWORD",
            &format!("the database password, or DB_PASSWORD_FILE naming a file that holds it {parts_hint}"),
        )),
    }
}

fn parse_or<T: FromStr>(
    get: &impl Fn(&str) -> Option<String>,
    variable: &'static str,
    default: T,
    expected: &str,
    valid: impl Fn(&T) -> bool,
) -> Result<T, ConfigError> {
    match get(variable) {
        None => Ok(default),
        Some(raw) => match raw.trim().parse::<T>() {
            Ok(value) if valid(&value) => Ok(value),
            _ => Err(ConfigError::invalid(
                variable,
                expected.to_owned(),
                Some(&raw),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    const PARTS: &[(&str, &str)] = &[
        ("DB_HOST", "db"),
        ("DB_USER", "app"),
        ("DB_PASSWORD", "hunter2-secret"),
        ("DB_NAME", "documents"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut vars = PARTS.to_vec();
        vars.extend_from_slice(extra);
        vars
    }

    #[test]
    fn defaults_apply_when_only_the_database_parts_are_set() {
        let s = settings(PARTS).unwrap();
        assert_eq!(s.application.host.to_string(), "0.0.0.0");
        assert_eq!(s.application.port, 8080);
        assert_eq!(s.application.data_dir, PathBuf::from("/app/data"));
        assert_eq!(s.application.max_upload_bytes, 10_485_760);
        assert_eq!(s.application.client_timeout, Duration::from_secs(10));
        assert_eq!(s.application.request_timeout, Duration::from_secs(300));
        assert_eq!(s.application.min_upload_rate, 1024);
        assert_eq!(s.application.write_timeout, Duration::from_secs(30));
        assert_eq!(s.application.max_connections, 512);
        assert_eq!(s.application.shutdown_drain, Duration::from_secs(8));
        assert_eq!(s.application.worker_threads, None);
        assert!(s.application.tcp_nodelay);
        assert_eq!(s.database.connect_deadline, Duration::from_secs(60));
        assert_eq!(s.database.pool_size, 5);
        assert_eq!(s.database.database_name, "documents");
        assert_eq!(s.migration.deadline, Duration::from_secs(60));
        assert_eq!(s.migration.lock, MigrationLock::On);
        let opts = s.database.connect_options();
        assert_eq!(opts.get_host(), "db");
        assert_eq!(opts.get_port(), 3306);
        assert_eq!(opts.get_database(), Some("documents"));
    }

    #[test]
    fn database_url_wins_and_names_the_database() {
        let s = settings(&[("DATABASE_URL", "mysql://app:pw@db:3307/shop")]).unwrap();
        assert_eq!(s.database.database_name, "shop");
        assert_eq!(s.database.connect_options().get_port(), 3307);
        assert_eq!(s.database.display_target(), "mysql://app:***@db:3307/shop");
    }

    #[test]
    fn a_missing_database_setting_names_the_variable() {
        let err = settings(&[("DB_HOST", "db")]).unwrap_err();
        assert_eq!(err.variable, "DB_USER");
        assert!(err.to_string().contains("DB_USER is not set"), "{err}");
        assert!(err.to_string().contains("DATABASE_URL"), "{err}");
        let err = settings(&[]).unwrap_err();
        assert_eq!(err.variable, "DB_HOST");
    }

    #[test]
    fn invalid_numbers_name_the_variable_and_the_expectation() {
        for (var, value) in [
            ("API_PORT", "80a"),
            ("API_PORT", "70000"),
            ("DB_PORT", "0"),
            ("API_DB_POOL_SIZE", "0"),
            ("API_MIGRATION_DEADLINE_SECS", "-1"),
            ("API_MAX_UPLOAD_BYTES", "lots"),
            ("API_CLIENT_TIMEOUT_SECS", "0"),
            ("API_REQUEST_TIMEOUT_SECS", "0"),
            ("API_MIN_UPLOAD_BYTES_PER_SEC", "-5"),
            ("API_WRITE_TIMEOUT_SECS", "x"),
            ("API_MAX_CONNECTIONS", "0"),
            ("API_SHUTDOWN_DRAIN_SECS", "0"),
            ("API_WORKER_THREADS", "2000"),
            ("API_TCP_NODELAY", "maybe"),
            ("API_DB_CONNECT_DEADLINE_SECS", "0"),
            ("API_HOST", "example.com"),
            ("API_MIGRATION_LOCK", "maybe"),
        ] {
            let err = settings(&with(&[(var, value)])).unwrap_err();
            assert_eq!(err.variable, var);
            let line = err.to_string();
            assert!(line.contains(var) && line.contains("expected"), "{line}");
            assert!(!line.contains('\n'), "one line: {line}");
        }
    }

    #[test]
    fn worker_threads_zero_means_one_per_cpu() {
        let threads = |v: &'static str| {
            settings(&with(&[("API_WORKER_THREADS", v)]))
                .unwrap()
                .application
                .worker_threads
        };
        assert_eq!(threads("0"), None);
        assert_eq!(threads("1"), Some(1));
        assert_eq!(threads("4"), Some(4));
    }

    #[test]
    fn the_password_can_come_from_a_file_but_not_from_both_places() {
        let file = std::env::temp_dir().join(format!("pw-{}", std::process::id()));
        std::fs::write(&file, "from-file-pw\n").unwrap();
        let path = file.to_str().unwrap().to_owned();
        let map = |pw: Option<&str>, file: Option<&str>| {
            let mut vars: HashMap<String, String> =
                [("DB_HOST", "db"), ("DB_USER", "u"), ("DB_NAME", "d")]
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
            if let Some(pw) = pw {
                vars.insert("DB_PASSWORD".into(), pw.into());
            }
            if let Some(file) = file {
                vars.insert("DB_PASSWORD_FILE".into(), file.into());
            }
            Settings::from_lookup(|name| vars.get(name).cloned())
        };
        let s = map(None, Some(&path)).unwrap();
        assert_eq!(s.database.connect_options().get_username(), "u");
        match &s.database.source {
            DatabaseSource::Parts { password, .. } => assert_eq!(password.expose(), "from-file-pw"),
            other => panic!("{other:?}"),
        }
        let err = map(Some("x"), Some(&path)).unwrap_err();
        assert_eq!(err.variable, "DB_PASSWORD_FILE");
        assert!(err.to_string().contains("not both"), "{err}");
        let err = map(None, Some("/nonexistent/pw")).unwrap_err();
        assert_eq!(err.variable, "DB_PASSWORD_FILE");
        assert!(err.to_string().contains("/nonexistent/pw"), "{err}");
        let err = map(None, None).unwrap_err();
        assert!(err.to_string().contains("DB_PASSWORD_FILE"), "{err}");
        std::fs::remove_file(file).unwrap();
    }

    #[test]
    fn migration_lock_accepts_on_and_off() {
        let off = settings(&with(&[("API_MIGRATION_LOCK", "OFF")])).unwrap();
        assert_eq!(off.migration.lock, MigrationLock::Off);
        let on = settings(&with(&[("API_MIGRATION_LOCK", "on")])).unwrap();
        assert_eq!(on.migration.lock, MigrationLock::On);
    }

    #[test]
    fn empty_values_count_as_unset() {
        let s = settings(&with(&[("API_PORT", ""), ("DATABASE_URL", "")])).unwrap();
        assert_eq!(s.application.port, 8080);
        assert_eq!(s.database.database_name, "documents");
    }

    #[test]
    fn the_password_is_never_printed() {
        let s = settings(PARTS).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!s.database.display_target().contains("hunter2"));

        let url_settings =
            settings(&[("DATABASE_URL", "mysql://app:hunter2-secret@db/shop")]).unwrap();
        assert!(!format!("{url_settings:?}").contains("hunter2"));
        assert!(!url_settings.database.display_target().contains("hunter2"));

        for bad in [
            "mysql://app:hunter2-secret@db:3306/",
            "mysql://app:hunter2-secret@db:3306/shop?ssl-mode=sometimes",
            "postgres://app:hunter2-secret@db/shop",
            "mysql://app:hunter2-secret@db:notaport/shop",
            "hunter2-secret",
        ] {
            let err = settings(&[("DATABASE_URL", bad)]).unwrap_err();
            assert_eq!(err.variable, "DATABASE_URL");
            let line = err.to_string();
            assert!(!line.contains("hunter2"), "password leaked: {line}");
            assert!(line.contains("expected") || line.contains("ssl"), "{line}");
        }

        let secret = Secret::new("hunter2".to_string());
        assert_eq!(format!("{secret}"), "***");
        assert_eq!(format!("{secret:?}"), "Secret(***)");
    }

    #[test]
    fn redact_url_hides_the_password_and_never_echoes_garbage() {
        assert_eq!(redact_url("mysql://u:p%40ss@h/db"), "mysql://u:***@h/db");
        assert_eq!(redact_url("mysql://u@h/db"), "mysql://u@h/db");
        assert_eq!(redact_url("not a url p@ss"), "<unparsable URL>");
    }
}
