//! Command-line flags (xflags: the grammar below is the parser, doc comments are the help).

use std::path::PathBuf;

xflags::xflags! {
    /// The project's tooling: provisioning, images, and the tests that prove the api scales.
    cmd xtask {
        /// Check that docker is on PATH, its daemon answers and Compose v2 is usable
        /// (a pinned Compose v2 is fetched into target/tools/ when only v1 is installed).
        cmd check-docker {}

        /// Build or obtain the images the stack needs: official images when they can be
        /// pulled, otherwise local ones built from Debian's packages.
        cmd images {
            /// Rebuild local images even when their inputs did not change.
            optional --force
            /// Database server: mariadb-10.11 (default), mariadb-11.8, mysql-9, or an image.
            optional --db name: String
        }

        /// The pre-deploy scaling check: start N replicas on a fresh and on an existing
        /// database and check health, parallel start, the shared data volume, migration
        /// coordination and cross-replica reads; then roll this version over N replicas of the
        /// previous one (upgrade). Exit 0 passed, 1 failed, 2 could not run.
        cmd test-scaling {
            /// Number of api replicas (default 4).
            optional --replicas n: u32
            /// Largest allowed start-up of one replica, in seconds, from its container's start (or the
            /// database's release) to listening (default 5).
            optional --max-startup seconds: f64
            /// Seconds to wait for the replicas to become healthy (default 180).
            optional --timeout seconds: u64
            /// Do not build images; use the ones already present.
            optional --no-build
            /// Leave the stack running at the end and print how to inspect and remove it.
            optional --keep
            /// Inject a real fault: replica-down, late-replica, data-not-writable, no-lock, lock-held,
            /// small-max-connections, breaking-migration.
            optional --fault name: String
            /// Scenarios to run, comma-separated: fresh, existing, upgrade (default: all three;
            /// existing needs fresh).
            optional --scenarios list: String
            /// The previous version the upgrade scenario deploys from: a git ref, or image:NAME
            /// (default: the parent of the commit that added the newest migration).
            optional --upgrade-from spec: String
            /// Run the whole check K times (for hunting flakes) and report how many passed and
            /// each figure's min/median/max (default 1).
            optional --repeat k: u32
            /// Where to write the JSON and JUnit reports and the container logs
            /// (default target/scaling-report, or target/scaling-report/fault-NAME).
            optional --report-dir dir: PathBuf
            /// Database server: mariadb-10.11 (default), mariadb-11.8, mysql-9, or an image.
            optional --db name: String
            /// What runs the stack: compose (default) or swarm (the compose file deployed as a
            /// Docker Swarm stack; a single-node swarm is created for the run if needed).
            optional --engine name: String
            /// With --engine swarm: run the stack on K Swarm nodes (2 to 6), each a container
            /// with its own Docker engine on a private network of this machine.
            optional --nodes k: u32
            /// Bind the api's data volume to DIR, a directory every node shares
            /// (docker-compose.shared-data.yml); with --nodes, one directory of this machine is
            /// mounted at DIR on every node. Default: the compose file's local volume.
            optional --shared-data dir: String
        }

        /// Run every fault of `test-scaling --fault` and assert that each one is caught.
        cmd test-faults {
            /// Only these faults (comma-separated); default: all (on swarm: replica-down and
            /// data-not-writable).
            optional --only names: String
            /// Database server: mariadb-10.11 (default), mariadb-11.8, mysql-9, or an image.
            optional --db name: String
            /// What runs the stack: compose (default) or swarm.
            optional --engine name: String
        }

        /// Resilience of the scaled stack: leader death, database restart, concurrent writers,
        /// scale-down under load, bad input, security facts, the xtask's own bad input, and a
        /// leader stopped or killed mid-migration.
        cmd test-resilience {
            /// Number of api replicas (default 4).
            optional --replicas n: u32
            /// Only these scenarios (comma-separated); default: all.
            optional --only names: String
            /// Database server: mariadb-10.11 (default), mariadb-11.8, mysql-9, or an image.
            optional --db name: String
        }

        /// Measure start-up and throughput as the replica count grows; writes a table, a JSON
        /// file and charts to the report directory.
        cmd bench {
            /// Replica counts to measure, comma-separated (default 1,2,4,8,16).
            optional --replicas list: String
            /// Where to write the results (default target/bench-report).
            optional --report-dir dir: PathBuf
            /// Database server: mariadb-10.11 (default), mariadb-11.8, mysql-9, or an image.
            optional --db name: String
            /// A setting of the compose file for this run, e.g. API_HEALTHCHECK_INTERVAL=1s or
            /// API_WORKER_THREADS=1 (repeatable; API_* and DB_POOL names only).
            repeated --set setting: String
        }

        /// Run all the tests: xtask unit tests, the api's tests and the scaling check on
        /// MariaDB 10.11 and on MySQL 9, the fault-injection runs and the resilience scenarios.
        cmd test {
            /// Only the tests that need no Docker (unit tests and the api's tests).
            optional --no-docker
            /// Run every stage on this server only: mariadb-10.11, mariadb-11.8, mysql-9, or an image.
            optional --db name: String
            /// Run every stage on each of mariadb-10.11, mysql-9 and mariadb-11.8.
            optional --matrix
        }

        /// Start a throwaway database server for the api's tests and keep it running until
        /// Ctrl-C; prints TEST_DATABASE_URL. MariaDB on the host by default; with --db other
        /// than the host's server, a container with its port on 127.0.0.1.
        cmd test-db {
            /// Database server: mariadb-10.11 (the host's), mariadb-11.8, mysql-9, or an image.
            optional --db name: String
        }
    }
}
