//! The database servers the project is tested on (`--db NAME`), and how each image is obtained.
//!
//! Each known server has an official image (used when it can be pulled) and a local one built
//! from the Debian suite that packages it; any other value of `--db` is an image reference.

use anyhow::{bail, Result};

/// A server the xtask knows how to build from Debian's packages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    /// The default stack's server: Debian 12 (bookworm) `mariadb-server`.
    Mariadb1011,
    /// Debian 13 (trixie) `mariadb-server`.
    Mariadb118,
    /// Oracle's MySQL as packaged in Debian unstable (sid) `mysql-server`.
    Mysql9,
}

impl Server {
    pub const ALL: [Server; 3] = [Server::Mariadb1011, Server::Mariadb118, Server::Mysql9];

    /// The `--db` value.
    pub fn name(self) -> &'static str {
        match self {
            Server::Mariadb1011 => "mariadb-10.11",
            Server::Mariadb118 => "mariadb-11.8",
            Server::Mysql9 => "mysql-9",
        }
    }

    pub fn official_image(self) -> &'static str {
        match self {
            Server::Mariadb1011 => "mariadb:10.11",
            Server::Mariadb118 => "mariadb:11.8",
            Server::Mysql9 => "mysql:9",
        }
    }

    pub fn local_image(self) -> &'static str {
        match self {
            Server::Mariadb1011 => "localhost/scaling-mariadb:10.11",
            Server::Mariadb118 => "localhost/scaling-mariadb:11.8",
            Server::Mysql9 => "localhost/scaling-mysql:9",
        }
    }

    /// The Debian suite whose archive carries this server, and so the base image's suite.
    pub fn suite(self) -> &'static str {
        match self {
            Server::Mariadb1011 => "bookworm",
            Server::Mariadb118 => "trixie",
            Server::Mysql9 => "sid",
        }
    }

    /// The Debian package installed into the local image.
    pub fn package(self) -> &'static str {
        match self {
            Server::Mariadb1011 | Server::Mariadb118 => "mariadb-server",
            Server::Mysql9 => "mysql-server",
        }
    }

    /// The directory under `docker/` that holds this server's Dockerfile.
    pub fn dockerfile_dir(self) -> &'static str {
        match self {
            Server::Mariadb1011 | Server::Mariadb118 => "mariadb",
            Server::Mysql9 => "mysql",
        }
    }

    /// The version prefix `SELECT VERSION()` starts with.
    pub fn version_prefix(self) -> &'static str {
        match self {
            Server::Mariadb1011 => "10.11.",
            Server::Mariadb118 => "11.8.",
            Server::Mysql9 => "9.",
        }
    }
}

/// What `--db` selects: a known server, or an image to run as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DbChoice {
    Known(Server),
    Image(String),
}

impl Default for DbChoice {
    fn default() -> DbChoice {
        DbChoice::Known(Server::Mariadb1011)
    }
}

impl DbChoice {
    pub fn parse(value: &str) -> Result<DbChoice> {
        let value = value.trim();
        if let Some(server) = Server::ALL.into_iter().find(|s| s.name() == value) {
            return Ok(DbChoice::Known(server));
        }
        // An image reference has no spaces and, to tell it from a misspelt name, a ':' or '/'.
        if value.is_empty()
            || value.contains(char::is_whitespace)
            || !(value.contains(':') || value.contains('/'))
        {
            bail!(
                "--db {value:?}: expected one of {} or an image reference such as mysql:8.4",
                Server::ALL.map(Server::name).join(", ")
            );
        }
        Ok(DbChoice::Image(value.to_string()))
    }

    pub fn name(&self) -> &str {
        match self {
            DbChoice::Known(server) => server.name(),
            DbChoice::Image(image) => image,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_server_parses_from_its_own_name() {
        for server in Server::ALL {
            assert_eq!(
                DbChoice::parse(server.name()).unwrap(),
                DbChoice::Known(server)
            );
        }
    }

    #[test]
    fn an_image_reference_is_taken_as_it_is() {
        assert_eq!(
            DbChoice::parse("mysql:8.4").unwrap(),
            DbChoice::Image("mysql:8.4".into())
        );
        assert_eq!(
            DbChoice::parse("localhost/scaling-mysql:9").unwrap(),
            DbChoice::Image("localhost/scaling-mysql:9".into())
        );
    }

    #[test]
    fn a_misspelt_server_name_is_refused_with_the_known_names() {
        let err = DbChoice::parse("mysql9").unwrap_err().to_string();
        assert!(
            err.contains("mariadb-10.11, mariadb-11.8, mysql-9"),
            "{err}"
        );
        assert!(DbChoice::parse("").is_err());
        assert!(DbChoice::parse("my sql:9").is_err());
    }

    #[test]
    fn local_images_use_the_suite_that_packages_the_server() {
        assert_eq!(Server::Mariadb1011.suite(), "bookworm");
        assert_eq!(Server::Mariadb118.suite(), "trixie");
        assert_eq!(Server::Mysql9.suite(), "sid");
        // The default stack's image keeps its name.
        assert_eq!(DbChoice::default(), DbChoice::Known(Server::Mariadb1011));
        assert_eq!(
            Server::Mariadb1011.local_image(),
            "localhost/scaling-mariadb:10.11"
        );
    }
}
