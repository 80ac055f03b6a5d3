//! Scenario 3, concurrent writers: at least 1,000 uploads and 200 deletes spread over every
//! replica at once, then an audit of the database against the shared volume: every row has
//! its bytes with the right sha256, no bytes without a row, no temp file left, zero 5xx.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use super::{pseudo_random_bytes, sha256_hex, Verdict};
use crate::{
    stack::{
        http::{self, Outcome},
        Stack,
    },
    ui,
};

const UPLOADS: usize = 1000;
const DELETES: usize = 200;
/// Two writers per replica of the default four: enough to overlap, modest on two cores.
const THREADS: usize = 8;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole burst must finish in this time, or the writers stop and the run fails.
const BURST_LIMIT: Duration = Duration::from_secs(150);
const READ_BACK_SAMPLE: usize = 50;

/// Uploads a document and returns its id (for setting up other scenarios).
pub fn store(addr: SocketAddr, name: &str, body: &[u8]) -> Result<String> {
    http::store(addr, name, body, REQUEST_TIMEOUT)
}

/// One request of the burst, as the client saw it.
#[derive(Clone, Debug)]
pub struct Request {
    pub replica: u32,
    pub kind: Kind,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Kind {
    /// Upload of a document with this local sha256; the server's answer must carry it.
    Upload {
        sha256: String,
    },
    Delete {
        id: String,
    },
}

/// What the database and the shared volume hold after the burst.
#[derive(Clone, Debug, Default)]
pub struct Holdings {
    /// id → sha256 of each `documents` row.
    pub rows: BTreeMap<String, String>,
    /// id → sha256 of each file in `/app/data/documents`.
    pub files: BTreeMap<String, String>,
    /// Files in `/app/data/tmp` on two listings a second apart.
    pub temp_files: Vec<String>,
}

pub fn run(stack: &Stack) -> Result<Verdict> {
    let ports = stack.ports()?;
    let before = holdings(stack)?;
    ui::note(&format!(
        "{UPLOADS} uploads and {DELETES} deletes by {THREADS} writers over {} replicas",
        ports.len()
    ));
    let started = Instant::now();
    let requests = burst(&ports);
    let seconds = started.elapsed().as_secs_f64();
    ui::note(&format!("burst done in {seconds:.1} s; auditing"));
    let after = holdings(stack)?;
    let unreadable = read_back(&ports, &requests);
    let mut verdict = judge(&requests, &before, &after, ports.len(), seconds);
    for problem in unreadable {
        verdict.problem(problem);
    }
    if verdict.passed() {
        verdict.figure(format!("{READ_BACK_SAMPLE} surviving documents read back through another replica, sha256 intact"));
    }
    Ok(verdict)
}

/// Runs the writers: writer `w` uploads through replica `w % n` and, after every fifth
/// upload, deletes one of its earlier documents through the next replica.
fn burst(ports: &BTreeMap<u32, SocketAddr>) -> Vec<Request> {
    let replicas: Vec<(u32, SocketAddr)> = ports.iter().map(|(n, a)| (*n, *a)).collect();
    let deadline = Instant::now() + BURST_LIMIT;
    let handles: Vec<_> = (0..THREADS)
        .map(|w| {
            let upload_to = replicas[w % replicas.len()];
            let delete_via = replicas[(w + 1) % replicas.len()];
            let (uploads, deletes) = (share(UPLOADS, w), share(DELETES, w));
            std::thread::spawn(move || writer(w, upload_to, delete_via, uploads, deletes, deadline))
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().unwrap_or_default())
        .collect()
}

/// Writer `w`'s part of `total`, so the parts add up to it exactly.
fn share(total: usize, w: usize) -> usize {
    total / THREADS + usize::from(w < total % THREADS)
}

fn writer(
    w: usize,
    (up_n, up): (u32, SocketAddr),
    (del_n, del): (u32, SocketAddr),
    uploads: usize,
    deletes: usize,
    deadline: Instant,
) -> Vec<Request> {
    let mut done = Vec::new();
    let mut mine: Vec<String> = Vec::new();
    let mut deleted = 0;
    for i in 0..uploads {
        if Instant::now() > deadline {
            break;
        }
        let seed = (w as u64) << 32 | i as u64;
        let body = pseudo_random_bytes(
            seed,
            256 + (seed.wrapping_mul(2654435761) % 16_000) as usize,
        );
        let request = http::request(
            "POST",
            &format!("/documents?name=writer-{w}-{i}.bin"),
            &[("Content-Type", "application/octet-stream")],
            &body,
        );
        let outcome = http::send(up, &request, REQUEST_TIMEOUT);
        if let Outcome::Reply(r) = &outcome {
            if let Some(id) = r.json().and_then(|j| j["id"].as_str().map(String::from)) {
                mine.push(id);
            }
        }
        done.push(Request {
            replica: up_n,
            kind: Kind::Upload {
                sha256: sha256_hex(&body),
            },
            outcome,
        });
        // Delete the oldest surviving document of this writer, from another replica.
        if i % 5 == 4 && deleted < deletes && !mine.is_empty() {
            let id = mine.remove(0);
            let outcome = http::send(
                del,
                &http::request("DELETE", &format!("/documents/{id}"), &[], b""),
                REQUEST_TIMEOUT,
            );
            done.push(Request {
                replica: del_n,
                kind: Kind::Delete { id },
                outcome,
            });
            deleted += 1;
        }
    }
    done
}

/// Rows from the database, files and temp files from the shared volume (through the first
/// running replica).
pub fn holdings(stack: &Stack) -> Result<Holdings> {
    let rows = parse_pairs(&stack.sql("SELECT id, sha256 FROM documents")?, '\t');
    // Any running replica: on Swarm its container may be on any node (`exec_in` finds it).
    let replica = stack
        .api_containers()?
        .into_iter()
        .find(|c| c.state == "running" && !c.id.is_empty())
        .context("no running replica")?;
    // The documents by the shell's glob, not `find`: every replica's readiness probe makes and
    // removes a `.probe-*` directory here each second, and `find` fails when an entry it listed
    // is gone before it looks at it (seen in a CI run). `*` never names a dot entry.
    let out = stack.exec_in(
        &replica,
        &[
            "sh",
            "-c",
            "cd /app/data/documents && set -- ./*; [ -e \"$1\" ] || exit 0; exec sha256sum -- \"$@\"",
        ],
    )?;
    if !out.status.success() {
        bail!(
            "hashing /app/data/documents failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let files = parse_sha256sum(&String::from_utf8_lossy(&out.stdout));
    // The readiness probe writes and removes a file in tmp/ every second: only what is still
    // there a second later is left behind.
    let list = || -> Result<BTreeSet<String>> {
        let out = stack.exec_in(&replica, &["ls", "-A", "/app/data/tmp"])?;
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(String::from)
            .collect())
    };
    let first = list()?;
    let temp_files = if first.is_empty() {
        Vec::new()
    } else {
        std::thread::sleep(Duration::from_secs(1));
        list()?.intersection(&first).cloned().collect()
    };
    Ok(Holdings {
        rows,
        files,
        temp_files,
    })
}

fn parse_pairs(text: &str, sep: char) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once(sep))
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .collect()
}

/// `sha256sum` lines, `HASH  ./ID` → ID → HASH.
pub fn parse_sha256sum(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once("  "))
        .map(|(hash, path)| {
            (
                path.trim().trim_start_matches("./").to_string(),
                hash.trim().to_string(),
            )
        })
        .collect()
}

/// A sample of the surviving uploads, each read through a replica other than the writer's.
fn read_back(ports: &BTreeMap<u32, SocketAddr>, requests: &[Request]) -> Vec<String> {
    let deleted: BTreeSet<&str> = requests
        .iter()
        .filter_map(|r| match (&r.kind, r.outcome.status()) {
            (Kind::Delete { id }, Some(204)) => Some(id.as_str()),
            _ => None,
        })
        .collect();
    let numbers: Vec<u32> = ports.keys().copied().collect();
    let survivors: Vec<(u32, String, &str)> = requests
        .iter()
        .filter_map(|r| match (&r.kind, &r.outcome) {
            (Kind::Upload { sha256 }, Outcome::Reply(reply)) if reply.status == 201 => {
                let id = reply.json()?["id"].as_str()?.to_string();
                (!deleted.contains(id.as_str())).then_some((r.replica, id, sha256.as_str()))
            }
            _ => None,
        })
        .collect();
    let step = (survivors.len() / READ_BACK_SAMPLE).max(1);
    let mut problems = Vec::new();
    for (writer, id, sha) in survivors.iter().step_by(step).take(READ_BACK_SAMPLE) {
        let index = numbers.iter().position(|n| n == writer).unwrap_or(0);
        let reader = numbers[(index + 1) % numbers.len()];
        match http::get(
            ports[&reader],
            &format!("/documents/{id}/content"),
            REQUEST_TIMEOUT,
        ) {
            Outcome::Reply(r) if r.status == 200 && sha256_hex(&r.body) == *sha => {}
            other => problems.push(format!(
                "reading {id} through api-{reader}: {}",
                short(&other)
            )),
        }
    }
    problems
}

fn short(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Reply(r) if r.status == 200 => {
            format!("200 with other bytes (sha256 {})", sha256_hex(&r.body))
        }
        other => other.describe(),
    }
}

/// The burst's answers and the audit of what it left.
pub fn judge(
    requests: &[Request],
    before: &Holdings,
    after: &Holdings,
    replicas: usize,
    seconds: f64,
) -> Verdict {
    let mut v = Verdict::default();
    let uploads: Vec<&Request> = requests
        .iter()
        .filter(|r| matches!(r.kind, Kind::Upload { .. }))
        .collect();
    let deletes: Vec<&Request> = requests
        .iter()
        .filter(|r| matches!(r.kind, Kind::Delete { .. }))
        .collect();
    let server_errors = requests
        .iter()
        .filter(|r| r.outcome.status().is_some_and(|s| s >= 500))
        .count();
    let created = uploads
        .iter()
        .filter(|r| r.outcome.status() == Some(201))
        .count();
    let removed = deletes
        .iter()
        .filter(|r| r.outcome.status() == Some(204))
        .count();
    let by_replica: BTreeMap<u32, usize> = requests.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.replica).or_default() += 1;
        m
    });
    v.figure(format!(
        "{} uploads ({created} × 201) and {} deletes ({removed} × 204) over {replicas} replicas in {seconds:.1} s ({:.0} requests/s); {server_errors} × 5xx",
        uploads.len(),
        deletes.len(),
        requests.len() as f64 / seconds.max(0.001)
    ));
    v.figure(format!(
        "requests per replica: {}",
        by_replica
            .iter()
            .map(|(n, c)| format!("api-{n} {c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    v.require(uploads.len() >= UPLOADS && deletes.len() >= DELETES, || {
        format!(
            "only {} uploads and {} deletes were sent (the burst hit its {} s limit)",
            uploads.len(),
            deletes.len(),
            BURST_LIMIT.as_secs()
        )
    });
    v.require(by_replica.len() == replicas, || {
        format!(
            "only {} of {replicas} replicas got requests",
            by_replica.len()
        )
    });
    v.require(server_errors == 0, || {
        format!("{server_errors} requests got a 5xx")
    });
    let mut failures: Vec<String> = Vec::new();
    let mut expected_alive: BTreeMap<String, String> = BTreeMap::new();
    for r in &uploads {
        let Kind::Upload { sha256 } = &r.kind else {
            continue;
        };
        match &r.outcome {
            Outcome::Reply(reply) if reply.status == 201 => {
                let json = reply.json().unwrap_or_default();
                let (id, server_sha) = (
                    json["id"].as_str().unwrap_or(""),
                    json["sha256"].as_str().unwrap_or(""),
                );
                if server_sha != sha256 {
                    failures.push(format!("upload to api-{} answered sha256 {server_sha:?}, the bytes sent have {sha256}", r.replica));
                }
                expected_alive.insert(id.to_string(), sha256.clone());
            }
            other => failures.push(format!("upload to api-{}: {}", r.replica, other.describe())),
        }
    }
    let mut expected_gone = Vec::new();
    for r in &deletes {
        let Kind::Delete { id } = &r.kind else {
            continue;
        };
        match r.outcome.status() {
            Some(204) => {
                expected_alive.remove(id);
                expected_gone.push(id.clone());
            }
            _ => failures.push(format!(
                "delete of {id} through api-{}: {}",
                r.replica,
                r.outcome.describe()
            )),
        }
    }
    if !failures.is_empty() {
        v.problem(format!(
            "{} requests did not succeed; first: {}",
            failures.len(),
            failures[..failures.len().min(3)].join("; ")
        ));
    }

    // The audit: the database against the volume, and both against what the clients were told.
    let mut audit = consistency(after);
    for (id, sha) in &expected_alive {
        match after.rows.get(id) {
            None => audit.push(format!(
                "document {id} was created (201) and not deleted, but has no row"
            )),
            Some(row_sha) if row_sha != sha => audit.push(format!(
                "document {id}: row sha256 {row_sha}, uploaded bytes {sha}"
            )),
            Some(_) => {}
        }
    }
    for id in &expected_gone {
        if after.rows.contains_key(id) || after.files.contains_key(id) {
            audit.push(format!(
                "document {id} was deleted (204) but its row or bytes remain"
            ));
        }
    }
    let vanished: Vec<&String> = before
        .rows
        .keys()
        .filter(|id| !after.rows.contains_key(*id))
        .collect();
    if !vanished.is_empty() {
        audit.push(format!(
            "{} documents stored before the burst vanished",
            vanished.len()
        ));
    }
    if audit.is_empty() {
        v.figure(format!(
            "audit: {} rows, {} files, every row's bytes match its sha256, 0 orphaned files, 0 temp files, {} deleted documents fully gone",
            after.rows.len(),
            after.files.len(),
            expected_gone.len()
        ));
    } else {
        v.problem(format!(
            "audit found {} problems; first: {}",
            audit.len(),
            audit[..audit.len().min(5)].join("; ")
        ));
    }
    v
}

/// The stack's documents checked once more after a scenario (`holdings`, `consistency`): a
/// figure when every row has its bytes and no orphaned or temp file is left, else a problem
/// saying `after` what.
pub fn verify_holdings(v: &mut Verdict, stack: &Stack, after: &str) -> Result<()> {
    let holdings = holdings(stack)?;
    match consistency(&holdings).as_slice() {
        [] => v.figure(format!(
            "{after}: {} rows, each with its bytes and sha256, no orphaned file, no temp file",
            holdings.rows.len()
        )),
        problems => v.problem(format!(
            "{after}: {}",
            problems[..problems.len().min(5)].join("; ")
        )),
    }
    Ok(())
}

/// The database against the volume: every row has its bytes with its sha256, no bytes
/// without a row, no temp file left.
pub fn consistency(after: &Holdings) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, sha) in &after.rows {
        match after.files.get(id) {
            None => problems.push(format!("row {id} has no bytes in /app/data/documents")),
            Some(file_sha) if file_sha != sha => problems.push(format!(
                "row {id} says sha256 {sha}, its file has {file_sha}"
            )),
            Some(_) => {}
        }
    }
    for id in after
        .files
        .keys()
        .filter(|id| !after.rows.contains_key(*id))
    {
        problems.push(format!("file {id} has no row (orphaned bytes)"));
    }
    if !after.temp_files.is_empty() {
        problems.push(format!(
            "temporary files left in /app/data/tmp: {}",
            after.temp_files.join(", ")
        ));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::http::Reply;

    fn created(id: &str, sha: &str) -> Request {
        let body = format!(r#"{{"id":"{id}","sha256":"{sha}"}}"#).into_bytes();
        Request {
            replica: 1,
            kind: Kind::Upload { sha256: sha.into() },
            outcome: Outcome::Reply(Reply {
                status: 201,
                headers: vec![],
                body,
            }),
        }
    }

    fn deleted(id: &str, status: u16) -> Request {
        Request {
            replica: 2,
            kind: Kind::Delete { id: id.into() },
            outcome: Outcome::Reply(Reply {
                status,
                headers: vec![],
                body: vec![],
            }),
        }
    }

    /// A full burst: UPLOADS uploads, the first DELETES of them deleted, and holdings to match.
    fn clean() -> (Vec<Request>, Holdings) {
        let mut requests: Vec<Request> = (0..UPLOADS)
            .map(|i| created(&format!("id{i}"), &format!("sha{i}")))
            .collect();
        requests.extend((0..DELETES).map(|i| deleted(&format!("id{i}"), 204)));
        let alive: BTreeMap<String, String> = (DELETES..UPLOADS)
            .map(|i| (format!("id{i}"), format!("sha{i}")))
            .collect();
        (
            requests,
            Holdings {
                rows: alive.clone(),
                files: alive,
                temp_files: vec![],
            },
        )
    }

    #[test]
    fn a_clean_burst_and_a_consistent_volume_pass() {
        let (requests, after) = clean();
        let v = judge(&requests, &Holdings::default(), &after, 2, 10.0);
        assert!(v.passed(), "{:?}", v.problems);
        assert!(
            v.figures[0].starts_with("1000 uploads (1000 × 201) and 200 deletes (200 × 204)"),
            "{:?}",
            v.figures
        );
    }

    #[test]
    fn a_5xx_fails() {
        let (mut requests, after) = clean();
        requests[0].outcome = Outcome::Reply(Reply {
            status: 503,
            headers: vec![],
            body: vec![],
        });
        let v = judge(&requests, &Holdings::default(), &after, 2, 10.0);
        assert!(
            v.problems
                .iter()
                .any(|p| p.contains("1 requests got a 5xx")),
            "{:?}",
            v.problems
        );
    }

    #[test]
    fn a_row_without_bytes_bytes_without_a_row_and_a_bad_hash_fail() {
        let (requests, mut after) = clean();
        after.files.remove("id500");
        after.files.insert("orphan".into(), "x".into());
        after.files.insert("id600".into(), "corrupt".into());
        let v = judge(&requests, &Holdings::default(), &after, 2, 10.0);
        let text = v.problems.join("\n");
        assert!(text.contains("row id500 has no bytes"), "{text}");
        assert!(text.contains("file orphan has no row"), "{text}");
        assert!(
            text.contains("row id600 says sha256 sha600, its file has corrupt"),
            "{text}"
        );
    }

    #[test]
    fn temp_files_lost_documents_and_undeleted_ones_fail() {
        let (requests, mut after) = clean();
        after.temp_files = vec!["abc.part".into()];
        after.rows.remove("id700");
        after.files.remove("id700");
        after.rows.insert("id3".into(), "sha3".into());
        after.files.insert("id3".into(), "sha3".into());
        let v = judge(&requests, &Holdings::default(), &after, 2, 10.0);
        let text = v.problems.join("\n");
        assert!(text.contains("abc.part"), "{text}");
        assert!(
            text.contains("document id700 was created (201) and not deleted, but has no row"),
            "{text}"
        );
        assert!(
            text.contains("document id3 was deleted (204) but its row or bytes remain"),
            "{text}"
        );
    }

    #[test]
    fn a_wrong_hash_in_the_answer_or_a_failed_delete_fails() {
        let (mut requests, after) = clean();
        let body = br#"{"id":"id900","sha256":"other"}"#.to_vec();
        requests[900].outcome = Outcome::Reply(Reply {
            status: 201,
            headers: vec![],
            body,
        });
        let last = requests.len() - 1;
        requests[last] = deleted("id199", 404);
        let v = judge(&requests, &Holdings::default(), &after, 2, 10.0);
        let text = v.problems.join("\n");
        assert!(text.contains("2 requests did not succeed"), "{text}");
    }

    #[test]
    fn the_writers_shares_add_up() {
        assert_eq!(
            (0..THREADS).map(|w| share(UPLOADS, w)).sum::<usize>(),
            UPLOADS
        );
        assert_eq!((0..THREADS).map(|w| share(1003, w)).sum::<usize>(), 1003);
    }

    #[test]
    fn sha256sum_output_parses() {
        let files = parse_sha256sum("e3b0c442  ./7f1c-aa\nabcd  ./b2\n");
        assert_eq!(files.get("7f1c-aa").map(String::as_str), Some("e3b0c442"));
        assert_eq!(files.len(), 2);
    }
}
