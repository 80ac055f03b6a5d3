//! `api healthcheck`: the container's HEALTHCHECK. The runtime image has no curl, so this is a
//! plain HTTP/1.0 request over a std `TcpStream`, bounded by one overall timeout.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Docker's healthcheck has its own timeout; answer well inside it.
pub const TIMEOUT: Duration = Duration::from_millis(2500);

/// `Ok(())` when `GET /readyz` on 127.0.0.1:`port` answers 200 within `timeout`.
pub fn check(port: u16, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let left = || {
        deadline
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
            .ok_or_else(|| format!("no answer within {:.1}s", timeout.as_secs_f64()))
    };
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut stream =
        TcpStream::connect_timeout(&addr, left()?).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_write_timeout(Some(left()?))
        .and_then(|()| stream.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n"))
        .map_err(|e| format!("send to {addr}: {e}"))?;

    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        stream
            .set_read_timeout(Some(left()?))
            .map_err(|e| format!("read from {addr}: {e}"))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(e) => return Err(format!("read from {addr}: {e}")),
        }
        if response.len() > 64 * 1024 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status_line = text.lines().next().unwrap_or("");
    let status = status_line.split_whitespace().nth(1);
    if status == Some("200") {
        Ok(())
    } else {
        let body = text.split("\r\n\r\n").nth(1).unwrap_or("").trim();
        Err(format!("/readyz answered {status_line:?}: {body}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static str) -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(response.as_bytes());
        });
        port
    }

    #[test]
    fn a_200_is_healthy_and_anything_else_is_not() {
        let ok = serve_once("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}");
        assert_eq!(check(ok, TIMEOUT), Ok(()));
        let busy = serve_once("HTTP/1.1 503 Service Unavailable\r\n\r\n{\"error\":{}}");
        let err = check(busy, TIMEOUT).unwrap_err();
        assert!(err.contains("503"), "{err}");
    }

    #[test]
    fn a_closed_port_or_a_silent_server_fails_within_the_timeout() {
        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = closed.local_addr().unwrap().port();
        drop(closed);
        assert!(check(port, TIMEOUT).is_err());

        let silent = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = silent.local_addr().unwrap().port();
        let start = Instant::now();
        let err = check(port, Duration::from_millis(300)).unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(2), "{err}");
        drop(silent);
    }
}
