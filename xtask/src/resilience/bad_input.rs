//! Scenario 5, bad input: malformed requests (bad ids, path-traversal names, wrong methods,
//! oversized and empty bodies, bad pagination, invalid UTF-8, slow clients), spread over
//! every replica, each answered with the right 4xx and a JSON error, never a 5xx; every
//! replica still healthy after. Raw bytes and stalls go through `TcpStream` directly.

use std::{
    collections::BTreeMap,
    io::Write,
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use anyhow::Result;

use super::{slow_clients, wait_all_healthy, Verdict};
use crate::{
    stack::{
        http::{self, Outcome},
        Stack,
    },
    ui,
};

const TIMEOUT: Duration = Duration::from_secs(10);
const UNKNOWN_ID: &str = "6f1c1f55-6f0a-4d8b-9a51-1c2a3b4c5d6e";
/// The test stack's API_MAX_UPLOAD_BYTES.
const MAX_UPLOAD: usize = slow_clients::MAX_UPLOAD;
/// The api's default API_CLIENT_TIMEOUT_SECS: a client silent this long is cut off.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// A request to a replica a slow client is working on must still be answered this fast.
const BUSY_LATENCY: Duration = Duration::from_secs(1);

/// One malformed request and the answer it must get.
pub struct Case {
    pub label: &'static str,
    pub request: Vec<u8>,
    pub status: u16,
    pub code: &'static str,
}

fn case(
    label: &'static str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        label,
        request: http::request(method, path, headers, body),
        status,
        code,
    }
}

fn raw(label: &'static str, request: &[u8], status: u16, code: &'static str) -> Case {
    Case {
        label,
        request: request.to_vec(),
        status,
        code,
    }
}

pub fn cases() -> Vec<Case> {
    let unknown = format!("/documents/{UNKNOWN_ID}");
    let unknown_content = format!("{unknown}/content");
    let oversized_length = (MAX_UPLOAD + 1).to_string();
    let mut oversized_chunked = b"POST /documents?name=big.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    let chunk = vec![b'a'; 256 * 1024];
    for _ in 0..=(MAX_UPLOAD / chunk.len()) {
        oversized_chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        oversized_chunked.extend_from_slice(&chunk);
        oversized_chunked.extend_from_slice(b"\r\n");
    }
    oversized_chunked.extend_from_slice(b"0\r\n\r\n");
    vec![
        // Bad ids.
        case("id that is not a UUID", "GET", "/documents/not-a-uuid", &[], b"", 400, "invalid_id"),
        case("numeric id, content", "GET", "/documents/123/content", &[], b"", 400, "invalid_id"),
        case("delete a non-UUID id", "DELETE", "/documents/nope", &[], b"", 400, "invalid_id"),
        case("unknown id", "GET", &unknown, &[], b"", 404, "not_found"),
        case("unknown id, content", "GET", &unknown_content, &[], b"", 404, "not_found"),
        case("delete an unknown id", "DELETE", &unknown, &[], b"", 404, "not_found"),
        case("id with a SQL quote", "GET", "/documents/1'%20OR%20'1'='1", &[], b"", 400, "invalid_id"),
        // Path traversal.
        case("name ../../etc/passwd", "POST", "/documents?name=../../etc/passwd", &[], b"x", 400, "invalid_name"),
        case("name ..%2F..%2Fetc%2Fpasswd", "POST", "/documents?name=..%2F..%2Fetc%2Fpasswd", &[], b"x", 400, "invalid_name"),
        case("name a\\b", "POST", "/documents?name=a%5Cb", &[], b"x", 400, "invalid_name"),
        case("name ..", "POST", "/documents?name=..", &[], b"x", 400, "invalid_name"),
        case("name with a NUL byte", "POST", "/documents?name=a%00b", &[], b"x", 400, "invalid_name"),
        case("no name", "POST", "/documents", &[], b"x", 400, "invalid_name"),
        case("id ../../etc/passwd", "GET", "/documents/..%2F..%2Fetc%2Fpasswd/content", &[], b"", 400, "invalid_id"),
        case("route ../../etc/passwd", "GET", "/documents/../../etc/passwd", &[], b"", 404, "not_found"),
        // Wrong methods.
        case("PUT /documents", "PUT", "/documents", &[], b"x", 405, "method_not_allowed"),
        case("PATCH a document", "PATCH", &unknown, &[], b"x", 405, "method_not_allowed"),
        case("DELETE /healthz", "DELETE", "/healthz", &[], b"", 405, "method_not_allowed"),
        case("POST to content", "POST", &unknown_content, &[], b"x", 405, "method_not_allowed"),
        // Oversized and empty bodies.
        case("declared API_MAX_UPLOAD_BYTES + 1", "POST", "/documents?name=big.bin", &[("Content-Length", &oversized_length)], b"", 413, "payload_too_large"),
        raw("streamed API_MAX_UPLOAD_BYTES + 256 KiB", &oversized_chunked, 413, "payload_too_large"),
        case("empty body", "POST", "/documents?name=empty.bin", &[("Content-Length", "0")], b"", 400, "empty_body"),
        raw(
            "empty chunked body",
            b"POST /documents?name=empty.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            400,
            "empty_body",
        ),
        // Bad pagination.
        case("limit=0", "GET", "/documents?limit=0", &[], b"", 400, "invalid_pagination"),
        case("limit=101", "GET", "/documents?limit=101", &[], b"", 400, "invalid_pagination"),
        case("limit=abc", "GET", "/documents?limit=abc", &[], b"", 400, "invalid_pagination"),
        case("offset=-1", "GET", "/documents?offset=-1", &[], b"", 400, "invalid_pagination"),
        case("limit twice", "GET", "/documents?limit=1&limit=2", &[], b"", 400, "invalid_query"),
        // Invalid UTF-8.
        case("id %FF%FE", "GET", "/documents/%FF%FE", &[], b"", 400, "invalid_path"),
        case("name %FF%FE", "POST", "/documents?name=%FF%FE", &[], b"x", 400, "invalid_query"),
        raw(
            "Content-Type with byte 0xFF",
            b"POST /documents?name=a.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: text/\xff\xfe\r\nContent-Length: 1\r\n\r\nx",
            400,
            "invalid_content_type",
        ),
    ]
}

pub fn run(stack: &Stack) -> Result<Verdict> {
    let ports = stack.ports()?;
    let addrs: Vec<(u32, SocketAddr)> = ports.iter().map(|(n, a)| (*n, *a)).collect();
    let cases = cases();
    ui::note(&format!(
        "{} malformed requests and 2 slow clients over {} replicas",
        cases.len(),
        addrs.len()
    ));
    // The slow clients run alongside the malformed requests, as they would in the wild.
    let (first_n, first) = addrs[0];
    let (second_n, second) = addrs[addrs.len() - 1];
    let slow_headers = std::thread::spawn(move || slow_headers(first));
    let stalled_body = std::thread::spawn(move || stalled_body(second));
    let mut answers = Vec::new();
    for (i, case) in cases.iter().enumerate() {
        let (number, addr) = addrs[i % addrs.len()];
        answers.push((number, http::send(addr, &case.request, TIMEOUT)));
    }
    let slow_headers = slow_headers
        .join()
        .map_err(|_| anyhow::anyhow!("the slow-headers client panicked"))?;
    let stalled_body = stalled_body
        .join()
        .map_err(|_| anyhow::anyhow!("the stalled-body client panicked"))?;
    let temp_files = stack.exec_api(
        second_n,
        &[
            "sh",
            "-c",
            "ls -A /app/data/tmp | grep -v '^\\.probe-' || true",
        ],
    )?;
    let temp_files = String::from_utf8_lossy(&temp_files.stdout)
        .trim()
        .to_string();

    let mut v = judge(&cases, &answers);
    judge_slow_headers(&mut v, first_n, &slow_headers);
    judge_stalled_body(&mut v, second_n, &stalled_body, &temp_files);

    // The slow clients the limits are for (resilience/slow_clients.rs), one replica each.
    ui::note("a slow-drip upload, a download nobody reads and a connection flood");
    let large = super::pseudo_random_bytes(5, slow_clients::LARGE_DOCUMENT);
    let large_id = http::store(first, "large.bin", &large, TIMEOUT)?;
    let drip = std::thread::spawn(move || slow_clients::slow_drip(second));
    let read = slow_clients::slow_read(first, &large_id, large.len());
    let flooded = addrs[addrs.len() / 2];
    let flood = slow_clients::flood(flooded.1, first);
    let drip = drip
        .join()
        .map_err(|_| anyhow::anyhow!("the slow-drip client panicked"))?;
    slow_clients::judge_drip(&mut v, second_n, &drip);
    slow_clients::judge_slow_read(&mut v, first_n, &read);
    slow_clients::judge_flood(&mut v, flooded.0, &flood);
    let mut unhealthy = Vec::new();
    for (number, addr) in &ports {
        let ready = http::get(*addr, "/readyz", TIMEOUT);
        if ready.status() != Some(200) {
            unhealthy.push(format!("api-{number} /readyz: {}", ready.describe()));
        }
    }
    match wait_all_healthy(stack, stack.replicas, Duration::from_secs(30)) {
        Ok(_) if unhealthy.is_empty() => v.figure(format!(
            "all {} replicas ready and healthy afterwards, none restarted",
            ports.len()
        )),
        Ok(_) => v.problem(unhealthy.join("; ")),
        Err(e) => v.problem(format!("replicas not healthy afterwards: {e:#}")),
    }
    Ok(v)
}

/// What a slow client saw, and how a normal request to the same replica fared meanwhile.
#[derive(Debug)]
pub struct SlowClient {
    /// How long the server let the client stay silent before closing (None: still open).
    pub cut_after: Option<Duration>,
    pub outcome: Outcome,
    /// The latency of a normal request sent while the slow client was connected.
    pub neighbour: Result<Duration, String>,
}

/// Sends half a request head, a byte at a time, then goes silent: the server must cut it
/// off, and serve others meanwhile.
fn slow_headers(addr: SocketAddr) -> SlowClient {
    let started = Instant::now();
    let outcome = match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Err(e) => Outcome::Refused(e.to_string()),
        Ok(mut stream) => {
            for byte in b"GET /documents HTTP/1.1\r\nHost: 127" {
                let _ = stream.write_all(&[*byte]);
                std::thread::sleep(Duration::from_millis(40));
            }
            let neighbour = timed_get(addr);
            let outcome = http::read_response(&mut stream, started + CLIENT_TIMEOUT * 2, None);
            return finish(started, outcome, neighbour);
        }
    };
    SlowClient {
        cut_after: None,
        outcome,
        neighbour: Err("not sent".into()),
    }
}

/// Declares a 1000-byte upload, sends 10 bytes and goes silent.
fn stalled_body(addr: SocketAddr) -> SlowClient {
    let started = Instant::now();
    match TcpStream::connect_timeout(&addr, TIMEOUT) {
        Err(e) => SlowClient {
            cut_after: None,
            outcome: Outcome::Refused(e.to_string()),
            neighbour: Err("not sent".into()),
        },
        Ok(mut stream) => {
            let head = b"POST /documents?name=stalled.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 1000\r\n\r\n0123456789";
            let _ = stream.write_all(head);
            let neighbour = timed_get(addr);
            let outcome = http::read_response(&mut stream, started + CLIENT_TIMEOUT * 2, None);
            finish(started, outcome, neighbour)
        }
    }
}

fn finish(started: Instant, outcome: Outcome, neighbour: Result<Duration, String>) -> SlowClient {
    let cut_after = (!matches!(outcome, Outcome::TimedOut { .. })).then(|| started.elapsed());
    SlowClient {
        cut_after,
        outcome,
        neighbour,
    }
}

pub fn timed_get(addr: SocketAddr) -> Result<Duration, String> {
    let t = Instant::now();
    match http::get(addr, "/documents?limit=1", TIMEOUT) {
        Outcome::Reply(r) if r.status == 200 => Ok(t.elapsed()),
        other => Err(other.describe()),
    }
}

pub fn judge(cases: &[Case], answers: &[(u32, Outcome)]) -> Verdict {
    let mut v = Verdict::default();
    let mut right = 0;
    let mut server_errors = 0;
    for (case, (number, outcome)) in cases.iter().zip(answers) {
        match outcome {
            Outcome::Reply(r) if r.status >= 500 => {
                server_errors += 1;
                v.problem(format!(
                    "{} (api-{number}): {} — a 5xx for bad input",
                    case.label,
                    outcome.describe()
                ));
            }
            Outcome::Reply(r)
                if r.status == case.status
                    && r.error_code().as_deref() == Some(case.code)
                    && is_json(r) =>
            {
                right += 1
            }
            other => v.problem(format!(
                "{} (api-{number}): expected {} {}, got {}",
                case.label,
                case.status,
                case.code,
                other.describe()
            )),
        }
    }
    let replicas: std::collections::BTreeSet<u32> = answers.iter().map(|(n, _)| *n).collect();
    v.figure(format!(
        "{right}/{} malformed requests answered with the right 4xx and JSON error code over {} replicas; {server_errors} × 5xx",
        cases.len(),
        replicas.len()
    ));
    let by_status: BTreeMap<u16, usize> = cases.iter().fold(BTreeMap::new(), |mut m, c| {
        *m.entry(c.status).or_default() += 1;
        m
    });
    v.figure(format!(
        "expected statuses: {}",
        by_status
            .iter()
            .map(|(s, c)| format!("{c} × {s}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    v
}

fn is_json(reply: &http::Reply) -> bool {
    reply
        .header("content-type")
        .is_some_and(|t| t.starts_with("application/json"))
}

fn judge_neighbour(v: &mut Verdict, what: &str, number: u32, slow: &SlowClient) {
    match &slow.neighbour {
        Ok(latency) if *latency <= BUSY_LATENCY => {}
        Ok(latency) => v.problem(format!(
            "api-{number} took {:.2} s to answer a normal request while {what}",
            latency.as_secs_f64()
        )),
        Err(e) => v.problem(format!(
            "api-{number} failed a normal request while {what}: {e}"
        )),
    }
}

pub fn judge_slow_headers(v: &mut Verdict, number: u32, slow: &SlowClient) {
    judge_neighbour(v, "a client dribbled its headers", number, slow);
    let limit = CLIENT_TIMEOUT + Duration::from_secs(3);
    match slow.cut_after {
        Some(after) if after <= limit => v.figure(format!(
            "slow client (headers a byte at a time, then silence): api-{number} closed it after {:.1} s ({}); a normal request meanwhile took {}",
            after.as_secs_f64(),
            slow.outcome.describe(),
            latency(slow)
        )),
        Some(after) => v.problem(format!("a client stalled in its headers was cut off only after {:.1} s", after.as_secs_f64())),
        None => v.problem(format!(
            "a client stalled in its headers still held a connection to api-{number} after {} s: a slow client can hold a replica (and its graceful shutdown)",
            (CLIENT_TIMEOUT * 2).as_secs()
        )),
    }
}

pub fn judge_stalled_body(v: &mut Verdict, number: u32, slow: &SlowClient, temp_files: &str) {
    judge_neighbour(v, "an upload stalled", number, slow);
    let limit = CLIENT_TIMEOUT + Duration::from_secs(3);
    match (&slow.outcome, slow.cut_after) {
        (Outcome::Reply(r), Some(after)) if r.status == 408 && r.error_code().as_deref() == Some("request_timeout") && after <= limit => {
            v.figure(format!(
                "stalled upload (10 of 1000 bytes, then silence): api-{number} answered 408 request_timeout after {:.1} s; a normal request meanwhile took {}",
                after.as_secs_f64(),
                latency(slow)
            ))
        }
        (Outcome::TimedOut { .. }, _) => v.problem(format!(
            "a stalled upload still held a connection to api-{number} after {} s without an answer (expected 408 request_timeout)",
            (CLIENT_TIMEOUT * 2).as_secs()
        )),
        (other, after) => v.problem(format!(
            "a stalled upload got {} after {:.1} s, expected 408 request_timeout within {} s",
            other.describe(),
            after.unwrap_or_default().as_secs_f64(),
            limit.as_secs()
        )),
    }
    if !temp_files.is_empty() {
        v.problem(format!(
            "the stalled upload left temporary files on api-{number}: {temp_files}"
        ));
    }
}

fn latency(slow: &SlowClient) -> String {
    slow.neighbour
        .as_ref()
        .map(|d| format!("{:.0} ms", d.as_secs_f64() * 1000.0))
        .unwrap_or_else(|e| e.clone())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::http::Reply;

    fn json_reply(status: u16, code: &str) -> Outcome {
        let body = format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#).into_bytes();
        Outcome::Reply(Reply {
            status,
            headers: vec![("content-type".into(), "application/json".into())],
            body,
        })
    }

    #[test]
    fn there_are_at_least_25_cases_covering_every_kind() {
        let cases = cases();
        assert!(cases.len() >= 25, "{}", cases.len());
        for code in [
            "invalid_id",
            "invalid_name",
            "method_not_allowed",
            "payload_too_large",
            "empty_body",
            "invalid_pagination",
            "invalid_path",
        ] {
            assert!(cases.iter().any(|c| c.code == code), "{code}");
        }
        assert!(cases.iter().all(|c| (400..500).contains(&c.status)));
    }

    #[test]
    fn the_right_json_4xx_passes_and_anything_else_fails() {
        let cases = vec![
            raw("a", b"", 400, "invalid_id"),
            raw("b", b"", 404, "not_found"),
            raw("c", b"", 400, "empty_body"),
            raw("d", b"", 405, "method_not_allowed"),
        ];
        let answers = vec![
            (1, json_reply(400, "invalid_id")),
            (2, json_reply(500, "internal")),
            (
                1,
                Outcome::Reply(Reply {
                    status: 400,
                    headers: vec![],
                    body: b"plain text".to_vec(),
                }),
            ),
            (2, json_reply(404, "not_found")),
        ];
        let v = judge(&cases, &answers);
        assert!(
            v.figures[0].starts_with("1/4 malformed requests"),
            "{:?}",
            v.figures
        );
        let text = v.problems.join("\n");
        assert!(
            text.contains("b (api-2): 500") && text.contains("a 5xx for bad input"),
            "{text}"
        );
        assert!(
            text.contains("c (api-1): expected 400 empty_body, got 400 plain text"),
            "{text}"
        );
        assert!(
            text.contains("d (api-2): expected 405 method_not_allowed, got 404"),
            "{text}"
        );
    }

    #[test]
    fn a_slow_client_that_is_never_cut_off_fails_and_a_timely_408_passes() {
        let held = SlowClient {
            cut_after: None,
            outcome: Outcome::TimedOut { got: 0 },
            neighbour: Ok(Duration::from_millis(5)),
        };
        let mut v = Verdict::default();
        judge_slow_headers(&mut v, 1, &held);
        assert!(
            v.problems[0].contains("still held a connection"),
            "{:?}",
            v.problems
        );
        let mut v = Verdict::default();
        judge_stalled_body(&mut v, 1, &held, "");
        assert!(
            v.problems[0].contains("without an answer"),
            "{:?}",
            v.problems
        );

        let answered = SlowClient {
            cut_after: Some(Duration::from_secs(10)),
            outcome: json_reply(408, "request_timeout"),
            neighbour: Ok(Duration::from_millis(5)),
        };
        let mut v = Verdict::default();
        judge_stalled_body(&mut v, 1, &answered, "");
        assert!(v.passed(), "{:?}", v.problems);
        let mut v = Verdict::default();
        judge_stalled_body(&mut v, 1, &answered, "abc.part");
        assert!(v.problems[0].contains("abc.part"), "{:?}", v.problems);
    }

    #[test]
    fn a_replica_that_stalls_its_other_clients_fails() {
        let slow = SlowClient {
            cut_after: Some(Duration::from_secs(10)),
            outcome: Outcome::ClosedBeforeResponse("eof".into()),
            neighbour: Ok(Duration::from_secs(4)),
        };
        let mut v = Verdict::default();
        judge_slow_headers(&mut v, 3, &slow);
        assert!(
            v.problems[0].contains("api-3 took 4.00 s"),
            "{:?}",
            v.problems
        );
    }
}
