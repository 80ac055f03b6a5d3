//! The stack file for `docker stack deploy`, made from `docker compose config --format json`.
//!
//! Compose resolves the variables (`.env`, defaults, the `:?` checks of the passwords) and
//! merges any override, so `docker-compose.yml` stays the one description of the service. This
//! module turns its resolved form into what Swarm's stack deploy (engine 20.10, file format 3.8)
//! accepts: the keys Swarm ignores or rejects go (and are listed, so the report can say what the
//! Swarm run does not enforce), `deploy` gets the replica count and `endpoint_mode: dnsrr` (this
//! kernel has no IPVS for the virtual-IP mode), and the default network becomes an attachable
//! overlay. The result is JSON, which is YAML, and goes to `docker stack deploy -c -` on stdin,
//! so the resolved passwords never touch the disk.

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

/// The service whose replica count the check sets; every other service gets one replica.
pub const API: &str = "api";

/// Keys of a service that `docker stack deploy` ignores or refuses, with why.
const DROPPED: &[(&str, &str)] = &[
    ("build", "stack deploy never builds"),
    ("pull_policy", "not in the stack file format"),
    ("depends_on", "Swarm starts every service at once"),
    (
        "security_opt",
        "Swarm ignores it (no-new-privileges is not applied)",
    ),
    ("ports", "Swarm's ingress ignores host IPs and needs IPVS"),
    (
        "restart",
        "Swarm uses deploy.restart_policy (default: restart on any exit)",
    ),
    ("container_name", "Swarm names task containers itself"),
    (
        "networks",
        "every service joins the stack's default overlay network",
    ),
];

/// A stack file and what was left out of the compose file to make it.
#[derive(Debug, Clone, PartialEq)]
pub struct StackFile {
    /// JSON text for `docker stack deploy -c -`.
    pub text: String,
    /// `service.key: why`, for each key present in the compose file and dropped.
    pub dropped: Vec<String>,
}

/// Turns `docker compose config --format json` output into a stack file with `replicas` api
/// tasks.
pub fn from_compose_config(config_json: &str, replicas: u32) -> Result<StackFile> {
    let config: Value =
        serde_json::from_str(config_json).context("parsing `docker compose config` JSON")?;
    let services = config
        .get("services")
        .and_then(Value::as_object)
        .context("`docker compose config` printed no services")?;
    if !services.contains_key(API) {
        bail!("the compose file has no `{API}` service");
    }
    let mut dropped = Vec::new();
    let mut out_services = Map::new();
    for (name, service) in services {
        let service = service
            .as_object()
            .with_context(|| format!("service {name} is not an object"))?;
        let mut kept = Map::new();
        for (key, value) in service {
            if let Some((_, why)) = DROPPED.iter().find(|(k, _)| k == key) {
                if !value.is_null() && key != "networks" {
                    dropped.push(format!("{name}.{key}: {why}"));
                }
                continue;
            }
            if value.is_null() {
                continue;
            }
            kept.insert(key.clone(), value.clone());
        }
        let n = if name == API { replicas } else { 1 };
        // The compose file's own `deploy` (placement: where a service may run and how it
        // spreads) stays; the replica count and endpoint mode are the check's.
        let mut deploy = kept
            .remove("deploy")
            .and_then(|d| d.as_object().cloned())
            .unwrap_or_default();
        deploy.insert("replicas".into(), json!(n));
        deploy.insert("endpoint_mode".into(), json!("dnsrr"));
        kept.insert("deploy".into(), Value::Object(deploy));
        out_services.insert(name.clone(), Value::Object(kept));
    }
    // Named volumes lose their compose `name` so that the stack prefixes them
    // (`<stack>_app-data`); a driver and its options stay (a bind of a directory every node
    // shares: docker-compose.shared-data.yml).
    let volumes: Map<String, Value> = config
        .get("volumes")
        .and_then(Value::as_object)
        .map(|v| {
            v.iter()
                .map(|(k, def)| {
                    let kept: Map<String, Value> = ["driver", "driver_opts"]
                        .iter()
                        .filter_map(|key| Some((key.to_string(), def.get(*key)?.clone())))
                        .collect();
                    (k.clone(), Value::Object(kept))
                })
                .collect()
        })
        .unwrap_or_default();
    // File secrets (the api's `db-password`) keep their file, already an absolute path, and
    // lose their compose `name` too: the stack prefixes them, so each run's stack has its own.
    let secrets: Map<String, Value> = config
        .get("secrets")
        .and_then(Value::as_object)
        .map(|all| {
            all.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        json!({ "file": v.get("file").cloned().unwrap_or(Value::Null) }),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let stack = json!({
        "version": "3.8",
        "services": out_services,
        "volumes": volumes,
        "secrets": secrets,
        "networks": { "default": { "driver": "overlay", "attachable": true } },
    });
    Ok(StackFile {
        text: serde_json::to_string_pretty(&stack)?,
        dropped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = include_str!("../../../testdata/swarm/compose-config.json");

    fn stack(replicas: u32) -> (Value, Vec<String>) {
        let file = from_compose_config(CONFIG, replicas).unwrap();
        (serde_json::from_str(&file.text).unwrap(), file.dropped)
    }

    #[test]
    fn the_api_gets_the_replica_count_and_every_service_dns_round_robin() {
        let (s, _) = stack(16);
        assert_eq!(s["version"], "3.8");
        assert_eq!(s["services"]["api"]["deploy"]["replicas"], 16);
        assert_eq!(s["services"]["db"]["deploy"]["replicas"], 1);
        for svc in ["api", "db"] {
            assert_eq!(s["services"][svc]["deploy"]["endpoint_mode"], "dnsrr");
        }
        assert_eq!(s["networks"]["default"]["attachable"], true);
        assert_eq!(s["networks"]["default"]["driver"], "overlay");
    }

    #[test]
    fn a_file_secret_is_kept_with_its_file_and_without_its_compose_name() {
        let mut config: Value = serde_json::from_str(CONFIG).unwrap();
        config["secrets"] = json!({ "db-password": { "name": "p_db-password", "file": "/x/target/secrets/p/db-password" } });
        config["services"]["api"]["secrets"] =
            json!([{ "source": "db-password", "target": "/run/secrets/db-password" }]);
        let file = from_compose_config(&config.to_string(), 2).unwrap();
        let s: Value = serde_json::from_str(&file.text).unwrap();
        assert_eq!(
            s["secrets"],
            json!({ "db-password": { "file": "/x/target/secrets/p/db-password" } })
        );
        assert_eq!(s["services"]["api"]["secrets"][0]["source"], "db-password");
    }

    #[test]
    fn keys_swarm_ignores_are_dropped_and_named() {
        let (s, dropped) = stack(4);
        let api = s["services"]["api"].as_object().unwrap();
        for key in [
            "build",
            "pull_policy",
            "depends_on",
            "security_opt",
            "ports",
            "restart",
        ] {
            assert!(!api.contains_key(key), "{key} kept");
        }
        assert!(dropped.iter().any(|d| d.starts_with("api.security_opt:")));
        assert!(dropped.iter().any(|d| d.starts_with("api.depends_on:")));
        // null values (`command: null`) are not valid in the 3.8 format
        assert!(!api.contains_key("command"));
    }

    #[test]
    fn what_the_service_needs_is_kept_resolved() {
        let (s, _) = stack(4);
        let api = &s["services"]["api"];
        assert_eq!(api["image"], "localhost/scaling-api:latest");
        assert_eq!(api["environment"]["DB_HOST"], "db");
        assert_eq!(api["read_only"], true);
        assert_eq!(api["cap_drop"][0], "ALL");
        assert_eq!(api["volumes"][0]["source"], "app-data");
        assert_eq!(api["healthcheck"]["test"][1], "/usr/local/bin/api");
        // `$$` stays escaped: stack deploy interpolates like compose
        let db_test = s["services"]["db"]["healthcheck"]["test"][1]
            .as_str()
            .unwrap();
        assert!(db_test.contains("$$MYSQL_PASSWORD"));
    }

    #[test]
    fn volumes_are_left_for_the_stack_to_name_and_extensions_go() {
        let (s, _) = stack(4);
        assert_eq!(s["volumes"]["app-data"], json!({}));
        assert!(s.get("name").is_none());
        assert!(s.get("x-db-password").is_none());
    }

    #[test]
    fn a_volume_keeps_its_driver_and_options() {
        let mut config: Value = serde_json::from_str(CONFIG).unwrap();
        config["volumes"]["app-data"] = json!({
            "name": "p_app-data", "driver": "local",
            "driver_opts": { "type": "none", "o": "bind", "device": "/srv/scaling-shared" }
        });
        let file = from_compose_config(&config.to_string(), 2).unwrap();
        let s: Value = serde_json::from_str(&file.text).unwrap();
        assert_eq!(
            s["volumes"]["app-data"],
            json!({ "driver": "local", "driver_opts": { "type": "none", "o": "bind", "device": "/srv/scaling-shared" } })
        );
    }

    #[test]
    fn the_compose_files_placement_is_kept_beside_the_checks_replicas() {
        let mut config: Value = serde_json::from_str(CONFIG).unwrap();
        config["services"]["db"]["deploy"] =
            json!({ "placement": { "constraints": ["node.role == manager"] } });
        let file = from_compose_config(&config.to_string(), 3).unwrap();
        let s: Value = serde_json::from_str(&file.text).unwrap();
        assert_eq!(
            s["services"]["db"]["deploy"],
            json!({ "placement": { "constraints": ["node.role == manager"] }, "replicas": 1, "endpoint_mode": "dnsrr" })
        );
        assert_eq!(s["services"]["api"]["deploy"]["replicas"], 3);
    }

    #[test]
    fn a_config_without_an_api_service_is_refused() {
        let err = from_compose_config(r#"{"services":{"db":{}}}"#, 4).unwrap_err();
        assert!(err.to_string().contains("no `api` service"));
    }
}
