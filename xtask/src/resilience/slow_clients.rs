//! Part of scenario 5, bad input: the clients that are slow on purpose and the limits that cut
//! them off — a slow-drip upload (API_MIN_UPLOAD_BYTES_PER_SEC: 408), a download nobody reads
//! (API_WRITE_TIMEOUT_SECS: connection closed), and a flood of connections over
//! API_MAX_CONNECTIONS (503 `too_many_connections`, or closed) — each while normal requests
//! are still answered in under a second.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

use super::{
    bad_input::{timed_get, CLIENT_TIMEOUT},
    Verdict,
};
use crate::stack::http::{self, Outcome};

/// The test stack's API_WRITE_TIMEOUT_SECS (default 30): small, so the scenario stays short.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// The test stack's API_MAX_CONNECTIONS (default 512): small, so a flood is a few sockets.
pub const MAX_CONNECTIONS: usize = 32;
/// The slow-drip upload sends one byte this often: never silent for API_CLIENT_TIMEOUT_SECS,
/// far below API_MIN_UPLOAD_BYTES_PER_SEC.
const DRIP_EVERY: Duration = Duration::from_secs(3);
/// Connections beyond the cap in the flood.
const FLOOD_EXTRA: usize = 8;
/// A normal request must be answered this fast meanwhile.
const NORMAL_LATENCY: Duration = Duration::from_secs(1);
/// The download nobody reads: far larger than the buffers on its way (the kernel's, and Docker's
/// port proxy: about 8.7 MiB were in flight when the server gave up in a real run with a 9 MiB
/// document, too thin a margin), so the test stack raises API_MAX_UPLOAD_BYTES to store it.
pub const LARGE_DOCUMENT: usize = 32 * 1024 * 1024;
/// The test stack's API_MAX_UPLOAD_BYTES (default 10 MiB): room for [`LARGE_DOCUMENT`].
pub const MAX_UPLOAD: usize = 40 * 1024 * 1024;

/// The limits the test stack runs with (compose variables of the api).
pub fn stack_limits() -> Vec<(String, String)> {
    vec![
        (
            "API_WRITE_TIMEOUT_SECS".into(),
            WRITE_TIMEOUT.as_secs().to_string(),
        ),
        ("API_MAX_CONNECTIONS".into(), MAX_CONNECTIONS.to_string()),
        ("API_MAX_UPLOAD_BYTES".into(), MAX_UPLOAD.to_string()),
    ]
}

/// What the slow-drip client saw.
#[derive(Debug)]
pub struct Drip {
    pub outcome: Outcome,
    pub after: Duration,
    pub bytes_sent: usize,
    pub neighbour: Result<Duration, String>,
}

/// Declares a 100,000-byte upload and sends one byte every [`DRIP_EVERY`].
pub fn slow_drip(addr: SocketAddr) -> Drip {
    let started = Instant::now();
    let mut neighbour = Err("not sent".to_string());
    let mut sent = 0;
    let outcome = match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
        Err(e) => Outcome::Refused(e.to_string()),
        Ok(mut stream) => {
            let head = b"POST /documents?name=drip.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 100000\r\n\r\n";
            let _ = stream.write_all(head);
            let mut first = [0u8; 1];
            loop {
                if stream.write_all(b"x").is_ok() {
                    sent += 1;
                }
                if sent == 2 {
                    neighbour = timed_get(addr);
                }
                // Waiting for an answer is the pause between two bytes.
                let _ = stream.set_read_timeout(Some(DRIP_EVERY));
                match stream.peek(&mut first) {
                    Ok(0) => break Outcome::ClosedBeforeResponse("end of stream".into()),
                    Ok(_) => {
                        break http::read_response(
                            &mut stream,
                            Instant::now() + Duration::from_secs(5),
                            None,
                        )
                    }
                    Err(e)
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                        ) => {}
                    Err(e) => break Outcome::ClosedBeforeResponse(e.kind().to_string()),
                }
                if started.elapsed() > CLIENT_TIMEOUT * 4 {
                    break Outcome::TimedOut { got: 0 };
                }
            }
        }
    };
    Drip {
        outcome,
        after: started.elapsed(),
        bytes_sent: sent,
        neighbour,
    }
}

pub fn judge_drip(v: &mut Verdict, number: u32, d: &Drip) {
    let limit = CLIENT_TIMEOUT + DRIP_EVERY * 2;
    match &d.outcome {
        Outcome::Reply(r)
            if r.status == 408
                && r.error_code().as_deref() == Some("request_timeout")
                && d.after <= limit =>
        {
            v.figure(format!(
                "slow-drip upload (1 byte every {} s): api-{number} answered 408 request_timeout after {:.1} s and {} bytes (limit {} s)",
                DRIP_EVERY.as_secs(),
                d.after.as_secs_f64(),
                d.bytes_sent,
                limit.as_secs()
            ))
        }
        other => v.problem(format!(
            "a slow-drip upload to api-{number} got {} after {:.1} s and {} bytes, expected 408 request_timeout within {} s",
            other.describe(),
            d.after.as_secs_f64(),
            d.bytes_sent,
            limit.as_secs()
        )),
    }
    judge_normal(v, "a slow-drip upload ran", number, &d.neighbour);
}

/// What the client that never reads saw when it finally read.
#[derive(Debug)]
pub struct SlowRead {
    /// Bytes that arrived (all of them buffered before the server gave up).
    pub got: usize,
    /// Bytes of the whole response: head plus the document.
    pub full: usize,
    /// The connection ended (EOF or reset) before the whole response.
    pub closed: bool,
    pub neighbour: Result<Duration, String>,
}

/// Asks for a large document and reads nothing for API_WRITE_TIMEOUT_SECS + 3 s, then reads
/// what is there.
pub fn slow_read(addr: SocketAddr, id: &str, size: usize) -> SlowRead {
    let full_min = size;
    let mut neighbour = Err("not sent".to_string());
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(5)) else {
        return SlowRead {
            got: 0,
            full: full_min,
            closed: true,
            neighbour,
        };
    };
    let request = format!(
        "GET /documents/{id}/content HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.write_all(request.as_bytes());
    std::thread::sleep(Duration::from_secs(1));
    neighbour = timed_get(addr);
    std::thread::sleep(WRITE_TIMEOUT + Duration::from_secs(2));
    let mut got = 0;
    let mut chunk = vec![0u8; 256 * 1024];
    let deadline = Instant::now() + Duration::from_secs(10);
    let closed = loop {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        match stream.read(&mut chunk) {
            Ok(0) => break got < full_min,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // Silence with the connection open: the server still holds it.
                break false;
            }
            Err(_) => break true,
        }
        if Instant::now() > deadline {
            break false;
        }
    };
    SlowRead {
        got,
        full: full_min,
        closed,
        neighbour,
    }
}

pub fn judge_slow_read(v: &mut Verdict, number: u32, r: &SlowRead) {
    let within = WRITE_TIMEOUT + Duration::from_secs(3);
    if r.closed && r.got < r.full {
        v.figure(format!(
            "slow-read download ({} MiB, never read): api-{number} closed the connection within {} s (API_WRITE_TIMEOUT_SECS={}) after {:.1} MiB had left",
            r.full / (1024 * 1024),
            within.as_secs(),
            WRITE_TIMEOUT.as_secs(),
            r.got as f64 / (1024.0 * 1024.0)
        ));
    } else {
        v.problem(format!(
            "a download nobody read still held its connection to api-{number} {} s later ({} of {} bytes arrived, then {}): API_WRITE_TIMEOUT_SECS did not cut it",
            within.as_secs(),
            r.got,
            r.full,
            if r.closed { "the end" } else { "silence" }
        ));
    }
    judge_normal(v, "a download was not read", number, &r.neighbour);
}

/// What the flood's connections got.
#[derive(Debug)]
pub struct Flood {
    pub opened: usize,
    /// Connections answered 503 `too_many_connections`, or closed (when each was read: the
    /// answer was there by then).
    pub refused: Vec<Duration>,
    /// Connections that got anything else (a different answer).
    pub other: Vec<String>,
    /// A normal request to another replica during the flood.
    pub neighbour: Result<Duration, String>,
    /// The flooded replica's first normal answer once the flood went away.
    pub after: Result<Duration, String>,
}

/// Opens API_MAX_CONNECTIONS + 8 connections to one replica, each sending one byte and
/// then nothing; reads what each gets within 2 s; then closes them all.
pub fn flood(addr: SocketAddr, other: SocketAddr) -> Flood {
    let n = MAX_CONNECTIONS + FLOOD_EXTRA;
    let mut streams = Vec::new();
    for _ in 0..n {
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) {
            let _ = s.write_all(b"G");
            streams.push((Instant::now(), s));
        }
    }
    let neighbour = timed_get(other);
    // A refusal is written at once; after a second every answer the flood will get is there.
    std::thread::sleep(Duration::from_secs(1));
    let mut refused = Vec::new();
    let mut others = Vec::new();
    for (opened, s) in &mut streams {
        let deadline = Instant::now() + Duration::from_millis(100);
        match http::read_response(s, deadline, None) {
            Outcome::TimedOut { got: 0 } => {}
            Outcome::Reply(r)
                if r.status == 503 && r.error_code().as_deref() == Some("too_many_connections") =>
            {
                refused.push(opened.elapsed())
            }
            Outcome::ClosedBeforeResponse(_) => refused.push(opened.elapsed()),
            other => others.push(other.describe()),
        }
    }
    let opened = streams.len();
    drop(streams);
    let t = Instant::now();
    let after = loop {
        match timed_get(addr) {
            Ok(_) => break Ok(t.elapsed()),
            Err(e) if t.elapsed() > Duration::from_secs(5) => break Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    Flood {
        opened,
        refused,
        other: others,
        neighbour,
        after,
    }
}

pub fn judge_flood(v: &mut Verdict, number: u32, f: &Flood) {
    let slowest = f.refused.iter().max().copied().unwrap_or_default();
    if f.refused.len() >= FLOOD_EXTRA && f.other.is_empty() {
        v.figure(format!(
            "connection flood ({} connections, API_MAX_CONNECTIONS={MAX_CONNECTIONS}): api-{number} refused {} (503 too_many_connections or closed), all answered within {:.1} s of connecting",
            f.opened,
            f.refused.len(),
            slowest.as_secs_f64()
        ));
    } else {
        v.problem(format!(
            "a flood of {} connections to api-{number} (API_MAX_CONNECTIONS={MAX_CONNECTIONS}): {} refused, expected at least {FLOOD_EXTRA}; other answers: {:?}",
            f.opened,
            f.refused.len(),
            f.other
        ));
    }
    judge_normal(v, "another replica was flooded", number, &f.neighbour);
    match &f.after {
        Ok(d) if *d < NORMAL_LATENCY => v.figure(format!(
            "api-{number} answered normally {:.0} ms after the flood closed",
            d.as_secs_f64() * 1000.0
        )),
        Ok(d) => v.problem(format!(
            "api-{number} took {:.1} s to answer after the flood closed",
            d.as_secs_f64()
        )),
        Err(e) => v.problem(format!("api-{number} did not answer after the flood: {e}")),
    }
}

fn judge_normal(
    v: &mut Verdict,
    while_what: &str,
    number: u32,
    latency: &Result<Duration, String>,
) {
    match latency {
        Ok(d) if *d < NORMAL_LATENCY => {}
        Ok(d) => v.problem(format!(
            "while {while_what} (api-{number}), a normal request took {:.1} s",
            d.as_secs_f64()
        )),
        Err(e) => v.problem(format!(
            "while {while_what} (api-{number}), a normal request failed: {e}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, code: &str) -> Outcome {
        let body = format!(r#"{{"error":{{"code":"{code}","message":"m"}}}}"#);
        let raw = format!(
            "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        Outcome::Reply(http::parse(raw.as_bytes()).unwrap())
    }

    #[test]
    fn a_drip_cut_with_408_in_time_passes_and_a_late_or_other_answer_fails() {
        let fast = Ok(Duration::from_millis(20));
        let mut v = Verdict::default();
        let good = Drip {
            outcome: reply(408, "request_timeout"),
            after: Duration::from_secs(13),
            bytes_sent: 5,
            neighbour: fast.clone(),
        };
        judge_drip(&mut v, 1, &good);
        assert!(v.passed(), "{:?}", v.problems);
        for bad in [
            Drip {
                outcome: reply(408, "request_timeout"),
                after: Duration::from_secs(40),
                bytes_sent: 13,
                neighbour: fast.clone(),
            },
            Drip {
                outcome: reply(201, "x"),
                after: Duration::from_secs(12),
                bytes_sent: 4,
                neighbour: fast.clone(),
            },
            Drip {
                outcome: Outcome::TimedOut { got: 0 },
                after: Duration::from_secs(40),
                bytes_sent: 13,
                neighbour: fast.clone(),
            },
            Drip {
                outcome: reply(408, "request_timeout"),
                after: Duration::from_secs(13),
                bytes_sent: 5,
                neighbour: Ok(Duration::from_secs(3)),
            },
        ] {
            let mut v = Verdict::default();
            judge_drip(&mut v, 1, &bad);
            assert!(!v.passed(), "{bad:?}");
        }
    }

    #[test]
    fn a_slow_read_passes_only_when_the_server_closed_before_the_end() {
        let fast = Ok(Duration::from_millis(20));
        let mut v = Verdict::default();
        judge_slow_read(
            &mut v,
            2,
            &SlowRead {
                got: 4_000_000,
                full: LARGE_DOCUMENT,
                closed: true,
                neighbour: fast.clone(),
            },
        );
        assert!(v.passed(), "{:?}", v.problems);
        let mut v = Verdict::default();
        judge_slow_read(
            &mut v,
            2,
            &SlowRead {
                got: 4_000_000,
                full: LARGE_DOCUMENT,
                closed: false,
                neighbour: fast,
            },
        );
        assert!(v.problems[0].contains("still held"), "{:?}", v.problems);
    }

    #[test]
    fn a_flood_passes_when_the_extra_connections_are_refused_and_fails_otherwise() {
        let fast = Ok(Duration::from_millis(20));
        let mut v = Verdict::default();
        let good = Flood {
            opened: 40,
            refused: vec![Duration::from_millis(5); 8],
            other: vec![],
            neighbour: fast.clone(),
            after: fast.clone(),
        };
        judge_flood(&mut v, 3, &good);
        assert!(v.passed(), "{:?}", v.problems);
        let mut v = Verdict::default();
        let held = Flood {
            opened: 40,
            refused: vec![],
            other: vec!["HTTP 500".into()],
            neighbour: fast.clone(),
            after: Err("refused".into()),
        };
        judge_flood(&mut v, 3, &held);
        assert_eq!(v.problems.len(), 2, "{:?}", v.problems);
    }
}
