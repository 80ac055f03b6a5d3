//! Scenario 6, security facts checked, not assumed: each replica runs as the non-root UID,
//! its root filesystem is read-only, no credential is in an image's history or environment,
//! nor in a running replica's `docker inspect` or `/proc/1/environ` (the password reaches it as
//! a Compose secret file), and every published port is bound to 127.0.0.1 only.

use std::collections::BTreeMap;

use anyhow::Result;
use serde::Deserialize;

use super::Verdict;
use crate::stack::{Stack, API_PORT};

/// The compose file's default `API_UID` (the Dockerfile's `ARG UID`).
pub const API_UID: &str = "10001";
/// Names of variables that carry credentials; none may be baked into an image.
const CREDENTIAL_WORDS: [&str; 5] = ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "DATABASE_URL"];

pub fn run(stack: &Stack) -> Result<Verdict> {
    let containers = stack.api_containers()?;
    let mut uids = BTreeMap::new();
    let mut touch = BTreeMap::new();
    for c in &containers {
        let out = stack.exec_api(c.number, &["id", "-u"])?;
        uids.insert(
            c.number,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        );
        let out = stack.exec_api(
            c.number,
            &["sh", "-c", "touch /resilience-probe 2>&1; echo \"exit=$?\""],
        )?;
        touch.insert(
            c.number,
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
        );
    }
    let ids: Vec<String> = containers.iter().map(|c| c.id.clone()).collect();
    let inspect = stack.docker.inspect(stack.sh, &ids, "{{.Name}} readonly={{.HostConfig.ReadonlyRootfs}} capdrop={{json .HostConfig.CapDrop}} secopt={{json .HostConfig.SecurityOpt}}")?;

    let mut images = Vec::new();
    for image in [&stack.api_image, &stack.db_image] {
        let history = stack.docker.history(stack.sh, image)?;
        let env = stack
            .docker
            .image_inspect(stack.sh, image, "{{json .Config.Env}}")?;
        images.push(ImageFacts {
            image: image.clone(),
            history,
            env,
        });
    }

    let mut runtime = Vec::new();
    for c in &containers {
        let inspect = stack
            .docker
            .inspect(stack.sh, std::slice::from_ref(&c.id), "{{json .}}")?;
        let out = stack.exec_api(c.number, &["cat", "/proc/1/environ"])?;
        if !out.status.success() {
            anyhow::bail!(
                "api-{}: `cat /proc/1/environ` failed: {}",
                c.number,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        runtime.push(RuntimeFacts {
            replica: c.number,
            inspect,
            environ: String::from_utf8_lossy(&out.stdout).into_owned(),
        });
    }

    let ps = stack.all_containers_text()?;
    let mut ports = Vec::new();
    for c in &containers {
        let addr = stack.port(c.number)?;
        ports.push((c.number, addr));
    }

    let mut v = Verdict::default();
    judge_users(&mut v, &uids);
    judge_root_fs(&mut v, &touch, &inspect);
    judge_images(&mut v, &images, &stack.secrets);
    judge_runtime(&mut v, &runtime, &stack.secrets);
    judge_ports(&mut v, &ps, &ports);
    Ok(v)
}

pub fn judge_users(v: &mut Verdict, uids: &BTreeMap<u32, String>) {
    let wrong: Vec<String> = uids
        .iter()
        .filter(|(_, u)| u.as_str() != API_UID)
        .map(|(n, u)| format!("api-{n} runs as uid {u:?}"))
        .collect();
    if wrong.is_empty() && !uids.is_empty() {
        v.figure(format!(
            "all {} replicas run as uid {API_UID} (`id -u`), not root",
            uids.len()
        ));
    } else {
        v.problem(format!(
            "expected uid {API_UID} everywhere: {}",
            wrong.join(", ")
        ));
    }
}

pub fn judge_root_fs(v: &mut Verdict, touch: &BTreeMap<u32, String>, inspect: &str) {
    let mut problems = Vec::new();
    for (n, out) in touch {
        if out.ends_with("exit=0") || !out.contains("Read-only file system") {
            problems.push(format!(
                "api-{n}: `touch /resilience-probe` did not fail as read-only ({out:?})"
            ));
        }
    }
    let lines: Vec<&str> = inspect.lines().filter(|l| !l.trim().is_empty()).collect();
    for line in &lines {
        if !line.contains("readonly=true") {
            problems.push(format!("not a read-only root filesystem: {line}"));
        }
        if !line.contains("capdrop=[\"ALL\"]") {
            problems.push(format!("capabilities not all dropped: {line}"));
        }
        if !line.contains("no-new-privileges") {
            problems.push(format!("no-new-privileges is not set: {line}"));
        }
    }
    if lines.len() != touch.len() {
        problems.push(format!(
            "inspected {} containers, probed {}",
            lines.len(),
            touch.len()
        ));
    }
    if problems.is_empty() {
        v.figure(format!("root filesystem read-only on all {} replicas (`touch /x` fails: Read-only file system; ReadonlyRootfs=true), cap_drop ALL, no-new-privileges", touch.len()));
    }
    for p in problems {
        v.problem(p);
    }
}

pub struct ImageFacts {
    pub image: String,
    /// `docker history --no-trunc` CreatedBy lines.
    pub history: String,
    /// `.Config.Env` as JSON.
    pub env: String,
}

pub fn judge_images(v: &mut Verdict, images: &[ImageFacts], secrets: &[String]) {
    let before = v.problems.len();
    for facts in images {
        for (what, text) in [("history", &facts.history), ("environment", &facts.env)] {
            if secrets
                .iter()
                .any(|s| !s.is_empty() && text.contains(s.as_str()))
            {
                v.problem(format!(
                    "{}: this run's database password appears in the image's {what}",
                    facts.image
                ));
            }
        }
        let env: Vec<String> = serde_json::from_str(facts.env.trim()).unwrap_or_default();
        for var in env
            .iter()
            .filter(|kv| credential_name(kv.split('=').next().unwrap_or("")))
        {
            let name = var.split('=').next().unwrap_or("");
            v.problem(format!(
                "{}: the image's environment defines {name}",
                facts.image
            ));
        }
        for line in facts.history.lines() {
            if let Some(word) = credential_assignment(line) {
                v.problem(format!(
                    "{}: a layer sets {word}: {}",
                    facts.image,
                    line.chars().take(160).collect::<String>()
                ));
            }
        }
    }
    if v.problems.len() == before {
        v.figure(format!(
            "no credential in `docker history --no-trunc` or .Config.Env of {} (this run's passwords absent, no PASSWORD/SECRET/TOKEN/DATABASE_URL variable)",
            images.iter().map(|i| i.image.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
}

/// What a running replica shows of its environment.
pub struct RuntimeFacts {
    pub replica: u32,
    /// `docker inspect --format '{{json .}}'` of its container.
    pub inspect: String,
    /// `/proc/1/environ` inside it: the api's own environment, NUL-separated.
    pub environ: String,
}

/// Where the api reads its password from instead (`docker-compose.yml`'s secret).
const PASSWORD_FILE_VAR: &str = "DB_PASSWORD_FILE=/run/secrets/db-password";

/// No replica's `docker inspect` or `/proc/1/environ` holds this run's passwords or sets a
/// credential variable (a `*_FILE` variable names a file, it is no credential); and the api
/// got `DB_PASSWORD_FILE`, so it did read its password from the secret.
pub fn judge_runtime(v: &mut Verdict, replicas: &[RuntimeFacts], secrets: &[String]) {
    let before = v.problems.len();
    for facts in replicas {
        let n = facts.replica;
        for (what, text) in [
            ("`docker inspect`", &facts.inspect),
            ("/proc/1/environ", &facts.environ),
        ] {
            if secrets
                .iter()
                .any(|s| !s.is_empty() && text.contains(s.as_str()))
            {
                v.problem(format!(
                    "api-{n}: this run's database password appears in its {what}"
                ));
            }
        }
        let inspect: serde_json::Value = match serde_json::from_str(facts.inspect.trim()) {
            Ok(serde_json::Value::Array(mut all)) if all.len() == 1 => all.remove(0),
            Ok(one @ serde_json::Value::Object(_)) => one,
            _ => {
                v.problem(format!(
                    "api-{n}: `docker inspect` is not one container's JSON: {}",
                    facts.inspect.chars().take(120).collect::<String>()
                ));
                continue;
            }
        };
        let config_env: Vec<String> = inspect["Config"]["Env"]
            .as_array()
            .map(|vars| {
                vars.iter()
                    .filter_map(|kv| kv.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        let environ: Vec<String> = facts
            .environ
            .split('\0')
            .filter(|kv| !kv.is_empty())
            .map(str::to_owned)
            .collect();
        for (what, vars) in [
            ("`docker inspect` .Config.Env", &config_env),
            ("/proc/1/environ", &environ),
        ] {
            for name in vars
                .iter()
                .filter_map(|kv| kv.split_once('='))
                .filter(|(name, value)| {
                    credential_name(name) && !name.ends_with("_FILE") && !value.is_empty()
                })
                .map(|(name, _)| name)
            {
                v.problem(format!("api-{n}: {what} sets {name}"));
            }
            if !vars.iter().any(|kv| kv == PASSWORD_FILE_VAR) {
                v.problem(format!(
                    "api-{n}: {what} lacks {PASSWORD_FILE_VAR} (the password is not read from the secret)"
                ));
            }
        }
    }
    if replicas.is_empty() {
        v.problem("no api replica to inspect for credentials".to_string());
    }
    if v.problems.len() == before {
        v.figure(format!(
            "no password in `docker inspect` nor /proc/1/environ of all {} replicas (this run's passwords absent, no PASSWORD/SECRET/TOKEN/DATABASE_URL variable); each reads it from {PASSWORD_FILE_VAR}",
            replicas.len()
        ));
    }
}

fn credential_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    CREDENTIAL_WORDS.iter().any(|w| upper.contains(w))
}

/// `ENV DB_PASSWORD=...`, `ARG API_TOKEN=...` or `MYSQL_ROOT_PASSWORD=... cmd` in a layer's command.
fn credential_assignment(line: &str) -> Option<String> {
    line.split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '"' || c == '\'')
        .filter_map(|word| word.split_once('='))
        .find(|(name, value)| credential_name(name) && !value.is_empty() && !value.starts_with('$'))
        .map(|(name, _)| name.to_string())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PsEntry {
    #[serde(default)]
    name: String,
    #[serde(default)]
    publishers: Option<Vec<Publisher>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Publisher {
    #[serde(default, rename = "URL")]
    url: String,
    #[serde(default)]
    published_port: u16,
    #[serde(default)]
    target_port: u16,
}

/// `ps --format json` (JSON Lines or an array) for every published port's address, plus
/// `port --index=i api 8080` per replica.
pub fn judge_ports(v: &mut Verdict, ps: &str, ports: &[(u32, String)]) {
    let trimmed = ps.trim();
    let entries: Vec<PsEntry> = if trimmed.starts_with('[') {
        serde_json::from_str(trimmed).unwrap_or_default()
    } else {
        trimmed
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    };
    let mut published = 0;
    let before = v.problems.len();
    for entry in &entries {
        for p in entry
            .publishers
            .iter()
            .flatten()
            .filter(|p| p.published_port != 0)
        {
            published += 1;
            if p.url != "127.0.0.1" {
                v.problem(format!(
                    "{} publishes {} on {:?}, not 127.0.0.1",
                    entry.name, p.target_port, p.url
                ));
            }
        }
    }
    for (n, addr) in ports {
        if !addr.starts_with("127.0.0.1:") {
            v.problem(format!(
                "`port --index={n} api {API_PORT}` gives {addr}, not 127.0.0.1"
            ));
        }
    }
    if published < ports.len() {
        v.problem(format!(
            "ps lists {published} published ports for {} replicas",
            ports.len()
        ));
    }
    if v.problems.len() == before {
        v.figure(format!("{published} published ports across {} containers, all on 127.0.0.1 (ps Publishers and `compose port`); the database publishes none", entries.len()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_10001_everywhere_passes_and_root_fails() {
        let mut v = Verdict::default();
        judge_users(
            &mut v,
            &[(1, "10001".to_string()), (2, "10001".into())].into(),
        );
        assert!(v.passed());
        let mut v = Verdict::default();
        judge_users(&mut v, &[(1, "10001".to_string()), (2, "0".into())].into());
        assert!(
            v.problems[0].contains("api-2 runs as uid \"0\""),
            "{:?}",
            v.problems
        );
    }

    const INSPECT_OK: &str =
        "/p-api-1 readonly=true capdrop=[\"ALL\"] secopt=[\"no-new-privileges:true\"]\n";

    #[test]
    fn a_read_only_root_passes_and_a_writable_one_fails() {
        let touch_fails = [(
            1,
            "touch: cannot touch '/resilience-probe': Read-only file system\nexit=1".to_string(),
        )]
        .into();
        let mut v = Verdict::default();
        judge_root_fs(&mut v, &touch_fails, INSPECT_OK);
        assert!(v.passed(), "{:?}", v.problems);

        let mut v = Verdict::default();
        judge_root_fs(
            &mut v,
            &[(1, "exit=0".to_string())].into(),
            "/p-api-1 readonly=false capdrop=null secopt=null\n",
        );
        let text = v.problems.join("\n");
        assert!(text.contains("did not fail as read-only"), "{text}");
        assert!(text.contains("not a read-only root filesystem"), "{text}");
        assert!(text.contains("capabilities not all dropped"), "{text}");
    }

    fn image(history: &str, env: &str) -> ImageFacts {
        ImageFacts {
            image: "localhost/scaling-api:latest".into(),
            history: history.into(),
            env: env.into(),
        }
    }

    #[test]
    fn clean_images_pass() {
        let mut v = Verdict::default();
        let history = "COPY target/docker/api /usr/local/bin/api # buildkit\nENV API_DATA_DIR=/app/data API_PORT=8080\nRUN |2 UID=10001 GID=10001 /bin/sh -c set -eu; useradd api\n";
        judge_images(
            &mut v,
            &[image(history, r#"["PATH=/usr/bin","API_PORT=8080"]"#)],
            &["s3cr3tvalue".into()],
        );
        assert!(v.passed(), "{:?}", v.problems);
    }

    #[test]
    fn a_baked_password_fails_by_value_by_env_name_and_by_assignment() {
        let mut v = Verdict::default();
        judge_images(
            &mut v,
            &[image("RUN echo s3cr3tvalue", "[]")],
            &["s3cr3tvalue".into()],
        );
        assert!(
            v.problems[0].contains("password appears in the image's history"),
            "{:?}",
            v.problems
        );

        let mut v = Verdict::default();
        judge_images(&mut v, &[image("", r#"["DB_PASSWORD=hunter2"]"#)], &[]);
        assert!(
            v.problems[0].contains("environment defines DB_PASSWORD"),
            "{:?}",
            v.problems
        );

        let mut v = Verdict::default();
        judge_images(
            &mut v,
            &[image(
                "/bin/sh -c #(nop) ENV MYSQL_ROOT_PASSWORD=root",
                "[]",
            )],
            &[],
        );
        assert!(
            v.problems[0].contains("a layer sets MYSQL_ROOT_PASSWORD"),
            "{:?}",
            v.problems
        );

        // Reading a variable is not setting it.
        let mut v = Verdict::default();
        judge_images(
            &mut v,
            &[image("RUN MYSQL_PWD=$MYSQL_PASSWORD mariadb", "[]")],
            &[],
        );
        assert!(v.passed(), "{:?}", v.problems);
    }

    /// A replica of the scaling-resilience stack recorded before the secret, when the compose
    /// file gave the api DB_PASSWORD: `docker inspect --format '{{json .}}'` and
    /// `cat /proc/1/environ` (NUL-separated); that run's random password replaced by
    /// RUN_PASSWORD, its checkout's path by /checkout.
    const INSPECT_API_BEFORE: &str =
        include_str!("../../testdata/security-inspect-api-before.json");
    const ENVIRON_API_BEFORE: &str = include_str!("../../testdata/security-environ-api-before.txt");
    const RUN_PASSWORD: &str = "9f2c4e1a7b3d5c6e8f0a1b2c3d4e5f60";

    /// The same, recorded with the secret: the api has DB_PASSWORD_FILE and the file is
    /// bind-mounted read-only at /run/secrets/db-password (checkout path replaced by /checkout).
    const INSPECT_API: &str = include_str!("../../testdata/security-inspect-api.json");
    const ENVIRON_API: &str = include_str!("../../testdata/security-environ-api.txt");

    fn replica(inspect: &str, environ: &str) -> Vec<RuntimeFacts> {
        vec![RuntimeFacts {
            replica: 1,
            inspect: inspect.to_string(),
            environ: environ.to_string(),
        }]
    }

    #[test]
    fn a_replica_with_its_password_in_a_secret_file_passes() {
        let mut v = Verdict::default();
        judge_runtime(
            &mut v,
            &replica(INSPECT_API, ENVIRON_API),
            &[RUN_PASSWORD.into()],
        );
        assert!(v.passed(), "{:?}", v.problems);
        assert!(
            v.figures[0].contains("no password in `docker inspect`"),
            "{:?}",
            v.figures
        );
    }

    #[test]
    fn a_password_in_the_containers_environment_fails() {
        let mut v = Verdict::default();
        judge_runtime(
            &mut v,
            &replica(INSPECT_API_BEFORE, ENVIRON_API_BEFORE),
            &[RUN_PASSWORD.into()],
        );
        let text = v.problems.join("\n");
        assert!(
            text.contains("api-1: this run's database password appears in its `docker inspect`"),
            "{text}"
        );
        assert!(
            text.contains("api-1: this run's database password appears in its /proc/1/environ"),
            "{text}"
        );
        assert!(
            text.contains("`docker inspect` .Config.Env sets DB_PASSWORD"),
            "{text}"
        );
        assert!(text.contains("/proc/1/environ sets DB_PASSWORD"), "{text}");
        assert!(text.contains("lacks DB_PASSWORD_FILE"), "{text}");
        assert!(v.figures.is_empty(), "{:?}", v.figures);

        // The value alone, anywhere (say a command line), is caught too.
        let clean = INSPECT_API;
        let inspect = clean.replacen("\"Cmd\":", &format!("\"X\":\"{RUN_PASSWORD}\",\"Cmd\":"), 1);
        assert_ne!(inspect, clean);
        let mut v = Verdict::default();
        judge_runtime(
            &mut v,
            &replica(&inspect, ENVIRON_API),
            &[RUN_PASSWORD.into()],
        );
        assert_eq!(v.problems.len(), 1, "{:?}", v.problems);
    }

    #[test]
    fn unreadable_inspect_output_or_no_replica_fails() {
        let mut v = Verdict::default();
        judge_runtime(&mut v, &replica("[]", ENVIRON_API), &[]);
        assert!(
            v.problems[0].contains("not one container's JSON"),
            "{:?}",
            v.problems
        );
        let mut v = Verdict::default();
        judge_runtime(&mut v, &[], &[]);
        assert!(!v.passed());
    }

    #[test]
    fn ports_on_loopback_pass_and_on_all_interfaces_fail() {
        let ps = r#"{"Name":"p-api-1","Publishers":[{"URL":"127.0.0.1","TargetPort":8080,"PublishedPort":49153,"Protocol":"tcp"}]}
{"Name":"p-db-1","Publishers":[{"URL":"","TargetPort":3306,"PublishedPort":0,"Protocol":"tcp"}]}"#;
        let mut v = Verdict::default();
        judge_ports(&mut v, ps, &[(1, "127.0.0.1:49153".into())]);
        assert!(v.passed(), "{:?}", v.problems);

        let ps = r#"[{"Name":"p-api-1","Publishers":[{"URL":"0.0.0.0","TargetPort":8080,"PublishedPort":49153}]}]"#;
        let mut v = Verdict::default();
        judge_ports(&mut v, ps, &[(1, "0.0.0.0:49153".into())]);
        let text = v.problems.join("\n");
        assert!(text.contains("publishes 8080 on \"0.0.0.0\""), "{text}");
        assert!(text.contains("gives 0.0.0.0:49153"), "{text}");
    }
}
