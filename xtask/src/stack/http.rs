//! The xtask's one HTTP client: HTTP/1.1 over `std::net::TcpStream`, one request per connection.
//!
//! The resilience scenarios need what a general client hides: whether the connection was
//! refused, closed before any byte of a response, cut part-way, or timed out; and the freedom
//! to send bytes no well-behaved client would (invalid UTF-8, lying lengths, stalls). The
//! scaling check and the benchmark use it for their ordinary requests too.

use anyhow::{bail, Context, Result};
use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpStream},
    time::{Duration, Instant},
};

/// A complete response.
#[derive(Clone, Debug, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The `code` of our JSON error body, `{"error": {"code": ..., "message": ...}}`.
    pub fn error_code(&self) -> Option<String> {
        let json = self.json()?;
        json["error"]["message"]
            .as_str()
            .filter(|m| !m.is_empty())?;
        json["error"]["code"].as_str().map(String::from)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body)
            .chars()
            .take(200)
            .collect()
    }
}

/// What happened to one request, from the client's side.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Reply(Reply),
    /// The TCP connection was not established.
    Refused(String),
    /// Connected, but closed or reset before a single byte of a response.
    ClosedBeforeResponse(String),
    /// Some bytes of a response arrived, then the connection ended or broke.
    Broken {
        got: usize,
        error: String,
    },
    /// No complete response within the timeout (`got` bytes so far).
    TimedOut {
        got: usize,
    },
}

impl Outcome {
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Reply(r) => Some(r.status),
            _ => None,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Outcome::Reply(r) => format!("{} {}", r.status, r.text()),
            Outcome::Refused(e) => format!("connection refused ({e})"),
            Outcome::ClosedBeforeResponse(e) => format!("closed before any response ({e})"),
            Outcome::Broken { got, error } => format!("response cut after {got} bytes ({error})"),
            Outcome::TimedOut { got } => format!("no complete response in time ({got} bytes)"),
        }
    }
}

/// A request with `Host` and `Connection: close`; `extra` lines are `Name: value`.
pub fn request(method: &str, path: &str, extra: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    let mut has_length = false;
    for (k, v) in extra {
        has_length |=
            k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding");
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !has_length && (!body.is_empty() || matches!(method, "POST" | "PUT" | "PATCH")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// Uploads a document (`POST /documents?name=`) and returns its id.
pub fn store(addr: SocketAddr, name: &str, body: &[u8], timeout: Duration) -> Result<String> {
    let outcome = send(
        addr,
        &request(
            "POST",
            &format!("/documents?name={name}"),
            &[("Content-Type", "application/octet-stream")],
            body,
        ),
        timeout,
    );
    match &outcome {
        Outcome::Reply(r) if r.status == 201 => r
            .json()
            .and_then(|j| j["id"].as_str().map(String::from))
            .context("a 201 without an id"),
        other => bail!("storing {name} through {addr} failed: {}", other.describe()),
    }
}

pub fn get(addr: SocketAddr, path: &str, timeout: Duration) -> Outcome {
    send(addr, &request("GET", path, &[], b""), timeout)
}

/// Connects, writes the whole request, reads the response until the server closes.
pub fn send(addr: SocketAddr, request: &[u8], timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let mut stream = match TcpStream::connect_timeout(&addr, timeout) {
        Ok(s) => s,
        Err(e) => return Outcome::Refused(e.kind().to_string()),
    };
    // A server may answer (and close) before reading the whole body, e.g. a 413: keep going
    // to read its answer.
    let _ = stream.set_write_timeout(Some(timeout));
    let write_error = stream.write_all(request).err();
    read_response(&mut stream, deadline, write_error)
}

/// Reads until EOF or the deadline and classifies what arrived.
pub fn read_response(
    stream: &mut TcpStream,
    deadline: Instant,
    write_error: Option<std::io::Error>,
) -> Outcome {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 64 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Outcome::TimedOut { got: buf.len() };
        }
        let _ = stream.set_read_timeout(Some(left));
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Outcome::TimedOut { got: buf.len() }
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => {
                // A reset after a complete response (the server closed with unread request
                // bytes) still delivered the response.
                if let Ok(reply) = parse(&buf) {
                    return Outcome::Reply(reply);
                }
                if buf.is_empty() {
                    return Outcome::ClosedBeforeResponse(e.kind().to_string());
                }
                return Outcome::Broken {
                    got: buf.len(),
                    error: e.kind().to_string(),
                };
            }
        }
    }
    if buf.is_empty() {
        let why = write_error
            .map(|e| e.kind().to_string())
            .unwrap_or_else(|| "end of stream".into());
        return Outcome::ClosedBeforeResponse(why);
    }
    match parse(&buf) {
        Ok(reply) => Outcome::Reply(reply),
        Err(error) => Outcome::Broken {
            got: buf.len(),
            error,
        },
    }
}

/// Parses a whole response read until EOF; an incomplete one is an error.
pub fn parse(bytes: &[u8]) -> Result<Reply, String> {
    let end = find(bytes, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = std::str::from_utf8(&bytes[..end]).map_err(|_| "headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let reply = Reply {
        status,
        headers,
        body: Vec::new(),
    };
    let rest = &bytes[end + 4..];
    let body = if reply
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        dechunk(rest)?
    } else if let Some(length) = reply.header("content-length") {
        let length: usize = length
            .parse()
            .map_err(|_| format!("bad content-length {length:?}"))?;
        if rest.len() < length {
            return Err(format!("body cut at {} of {length} bytes", rest.len()));
        }
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Reply { body, ..reply })
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n").ok_or("chunked body cut in a size line")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).map_err(|_| "bad chunk size")?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err("chunked body cut in a chunk".into());
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    /// A one-shot server on loopback that reads the request head, then runs `answer`.
    fn serve(answer: impl FnOnce(&mut TcpStream) + Send + 'static) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            answer(&mut stream);
        });
        addr
    }

    #[test]
    fn a_complete_response_is_a_reply_with_its_json_error_code() {
        let addr = serve(|s| {
            let body = r#"{"error":{"code":"invalid_id","message":"bad"}}"#;
            let _ = write!(s, "HTTP/1.1 400 Bad Request\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\r\n{body}", body.len());
        });
        let outcome = get(addr, "/documents/x", Duration::from_secs(5));
        let Outcome::Reply(reply) = outcome else {
            panic!("{outcome:?}")
        };
        assert_eq!(reply.status, 400);
        assert_eq!(reply.error_code().as_deref(), Some("invalid_id"));
        assert_eq!(reply.header("Content-Type"), Some("application/json"));
    }

    #[test]
    fn a_connection_closed_without_a_byte_is_closed_before_response() {
        let addr = serve(|s| {
            let _ = s.shutdown(std::net::Shutdown::Both);
        });
        assert!(matches!(
            get(addr, "/", Duration::from_secs(5)),
            Outcome::ClosedBeforeResponse(_)
        ));
    }

    #[test]
    fn a_body_shorter_than_its_length_is_broken() {
        let addr = serve(|s| {
            let _ = write!(s, "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc");
        });
        assert!(
            matches!(get(addr, "/", Duration::from_secs(5)), Outcome::Broken { got, .. } if got > 0)
        );
    }

    #[test]
    fn a_silent_server_is_a_timeout_and_a_closed_port_is_refused() {
        let addr = serve(|_| std::thread::sleep(Duration::from_secs(2)));
        assert_eq!(
            get(addr, "/", Duration::from_millis(300)),
            Outcome::TimedOut { got: 0 }
        );
        let closed = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        assert!(matches!(
            get(closed, "/", Duration::from_secs(2)),
            Outcome::Refused(_)
        ));
    }

    #[test]
    fn chunked_bodies_are_decoded() {
        let reply = parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(reply.body, b"abcde");
        assert!(parse(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab").is_err());
    }

    #[test]
    fn requests_carry_a_length_for_bodies_and_posts() {
        let r = String::from_utf8(request("POST", "/documents?name=a", &[], b"xyz")).unwrap();
        assert!(r.starts_with("POST /documents?name=a HTTP/1.1\r\n"), "{r}");
        assert!(
            r.contains("Content-Length: 3\r\n") && r.ends_with("\r\n\r\nxyz"),
            "{r}"
        );
        let r = String::from_utf8(request(
            "POST",
            "/d",
            &[("Transfer-Encoding", "chunked")],
            b"0\r\n\r\n",
        ))
        .unwrap();
        assert!(!r.contains("Content-Length"), "{r}");
    }
}
