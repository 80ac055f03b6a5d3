//! HTTP to task addresses on a Swarm stack's overlay network, through one long-lived client
//! container on that network: each request goes in on its stdin, each reply comes back on its
//! stdout, so a round of requests costs one `docker run`, not one per request (Swarm publishes
//! nothing here: the kernel has no IPVS for the routing mesh).
//!
//! The container runs the api image's bash; each request is one TCP connection
//! (`/dev/tcp`, the request's own `Connection: close`) under `timeout`, and a batch of requests
//! (`Relay::send_all`) runs at once. The script says for each
//! whether the connection was made, so a client can tell a refusal (nothing was accepted) from
//! a request cut after it went out.

use std::{
    io::{BufRead, BufReader, Read, Write},
    path::Path,
    process::{Child, ChildStdin, ChildStdout, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context, Result};

use crate::stack::http;

/// The client's loop. In: `k seconds\n`, then for each of the k requests `ip port length\n`
/// and its bytes. The k exchanges run at once; out, in the order they came in: for each,
/// `status connected reply-length error-length\n` then the reply's and stderr's bytes; status
/// is `timeout`'s (124: timed out), 97 when the connection could not be made.
const SCRIPT: &str = r#"
while read -r k secs; do
  for ((i = 1; i <= k; i++)); do
    read -r ip port len
    head -c "$len" > /tmp/relay-req-$i
    : > /tmp/relay-conn-$i
    timeout "$secs" bash -c 'exec 3<>"/dev/tcp/$0/$1" || exit 97; echo 1 > "$2"; cat "$3" >&3; exec cat <&3' "$ip" "$port" /tmp/relay-conn-$i /tmp/relay-req-$i > /tmp/relay-resp-$i 2> /tmp/relay-err-$i &
    pids[$i]=$!
  done
  for ((i = 1; i <= k; i++)); do
    wait "${pids[$i]}"
    st=$?
    if [ -s /tmp/relay-conn-$i ]; then c=1; else c=0; fi
    printf '%s %s %s %s\n' "$st" "$c" $(stat -c %s /tmp/relay-resp-$i /tmp/relay-err-$i)
    cat /tmp/relay-resp-$i /tmp/relay-err-$i
  done
done
"#;

/// The label of relay containers: `SwarmStack::remove` removes any left over.
pub const LABEL: &str = "org.scaling-check.relay";

/// One client container and its pipes.
pub struct Relay {
    docker: std::path::PathBuf,
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl std::fmt::Debug for Relay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay").field("name", &self.name).finish()
    }
}

impl Relay {
    /// Starts the client container `name` on `network` from `image` (which must have bash,
    /// coreutils' `timeout`, `head` and `wc`), on the engine this process talks to.
    pub fn start(docker: &Path, network: &str, image: &str, name: &str) -> Result<Relay> {
        let mut child = Command::new(docker)
            .args(["run", "-i", "--rm", "--name", name, "--label", LABEL])
            .args([
                "--network",
                network,
                "--entrypoint",
                "bash",
                image,
                "-c",
                SCRIPT,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the HTTP client container on the stack's network")?;
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().context("piped stdout")?);
        Ok(Relay {
            docker: docker.to_path_buf(),
            name: name.to_string(),
            child,
            stdin,
            stdout,
        })
    }

    /// One exchange with `ip:port`, within `timeout` (rounded up to whole seconds).
    pub fn send(
        &mut self,
        ip: &str,
        port: u16,
        request: &[u8],
        timeout: Duration,
    ) -> Result<http::Outcome> {
        let mut outcomes = self.send_all(&[(ip, port, request)], timeout)?;
        outcomes
            .pop()
            .context("the HTTP client container replied to nothing")
    }

    /// Several exchanges at once (`ip`, `port`, request), each within `timeout`; the outcomes
    /// in the order of `requests`. The round costs about one exchange, not one per request.
    pub fn send_all(
        &mut self,
        requests: &[(&str, u16, &[u8])],
        timeout: Duration,
    ) -> Result<Vec<http::Outcome>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let secs = timeout.as_secs().max(1) + u64::from(timeout.subsec_nanos() > 0);
        let stdin = self.stdin.as_mut().context("the client is closed")?;
        let started = Instant::now();
        stdin
            .write_all(&batch(requests, secs))
            .and_then(|()| stdin.flush())
            .context("the HTTP client container is gone")?;
        let mut outcomes = Vec::with_capacity(requests.len());
        for _ in requests {
            let mut line = String::new();
            if self.stdout.read_line(&mut line)? == 0 {
                bail!("the HTTP client container ended");
            }
            let head = parse_head(&line)?;
            let mut reply = vec![0; head.reply_len];
            self.stdout.read_exact(&mut reply)?;
            let mut error = vec![0; head.error_len];
            self.stdout.read_exact(&mut error)?;
            let error = String::from_utf8_lossy(&error).trim().to_string();
            outcomes.push(outcome(&head, reply, error, started.elapsed()));
        }
        Ok(outcomes)
    }
}

impl Drop for Relay {
    /// Ends the loop (stdin closed: the container exits and `--rm` removes it); a container
    /// still there after 5 s is removed by force.
    fn drop(&mut self) {
        drop(self.stdin.take());
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new(&self.docker)
            .args(["rm", "-f", &self.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// What the client's loop reads for one batch (`SCRIPT`).
fn batch(requests: &[(&str, u16, &[u8])], secs: u64) -> Vec<u8> {
    let mut input = format!("{} {secs}\n", requests.len()).into_bytes();
    for (ip, port, request) in requests {
        input.extend_from_slice(format!("{ip} {port} {}\n", request.len()).as_bytes());
        input.extend_from_slice(request);
    }
    input
}

/// The status line of one exchange.
#[derive(Debug, PartialEq)]
struct Head {
    status: i32,
    connected: bool,
    reply_len: usize,
    error_len: usize,
}

fn parse_head(line: &str) -> Result<Head> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let [status, connected, reply, error] = words[..] else {
        bail!("the HTTP client container printed {line:?}");
    };
    Ok(Head {
        status: status.parse()?,
        connected: connected == "1",
        reply_len: reply.parse()?,
        error_len: error.parse()?,
    })
}

/// What the exchange was, in the terms of the xtask's own HTTP client (`http::Outcome`).
fn outcome(head: &Head, reply: Vec<u8>, error: String, took: Duration) -> http::Outcome {
    if !head.connected {
        return http::Outcome::Refused(if head.status == 124 {
            format!("no connection within {:.0} s", took.as_secs_f64())
        } else {
            error
        });
    }
    if head.status == 124 {
        return http::Outcome::TimedOut { got: reply.len() };
    }
    if reply.is_empty() {
        return http::Outcome::ClosedBeforeResponse(if error.is_empty() {
            "connection closed".into()
        } else {
            error
        });
    }
    match http::parse(&reply) {
        Ok(r) => http::Outcome::Reply(r),
        Err(e) => http::Outcome::Broken {
            got: reply.len(),
            error: e,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(status: i32, connected: bool, reply_len: usize) -> Head {
        Head {
            status,
            connected,
            reply_len,
            error_len: 0,
        }
    }

    #[test]
    fn a_batch_is_its_count_then_each_request_after_its_address_and_length() {
        let input = batch(
            &[("10.0.1.5", 8080, b"GET /a"), ("10.0.1.6", 8080, b"")],
            10,
        );
        assert_eq!(
            input,
            b"2 10\n10.0.1.5 8080 6\nGET /a10.0.1.6 8080 0\n".to_vec()
        );
    }

    #[test]
    fn the_status_line_is_read_word_by_word() {
        assert_eq!(parse_head("0 1 120 0\n").unwrap(), head(0, true, 120));
        assert!(parse_head("0 1 120\n").is_err());
    }

    #[test]
    fn no_connection_is_a_refusal_whatever_ended_it() {
        let refused = outcome(
            &head(97, false, 0),
            vec![],
            "bash: connect: Connection refused".into(),
            Duration::ZERO,
        );
        assert_eq!(
            refused,
            http::Outcome::Refused("bash: connect: Connection refused".into())
        );
        let silent = outcome(
            &head(124, false, 0),
            vec![],
            String::new(),
            Duration::from_secs(3),
        );
        assert_eq!(
            silent,
            http::Outcome::Refused("no connection within 3 s".into())
        );
    }

    #[test]
    fn a_connected_exchange_is_a_reply_a_cut_or_a_timeout() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi".to_vec();
        assert!(
            matches!(outcome(&head(0, true, ok.len()), ok, String::new(), Duration::ZERO), http::Outcome::Reply(r) if r.body == b"hi")
        );
        let cut = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nhi".to_vec();
        assert!(matches!(
            outcome(
                &head(0, true, cut.len()),
                cut,
                String::new(),
                Duration::ZERO
            ),
            http::Outcome::Broken { .. }
        ));
        assert_eq!(
            outcome(&head(0, true, 0), vec![], String::new(), Duration::ZERO),
            http::Outcome::ClosedBeforeResponse("connection closed".into())
        );
        assert_eq!(
            outcome(
                &head(124, true, 5),
                b"HTTP/".to_vec(),
                String::new(),
                Duration::ZERO
            ),
            http::Outcome::TimedOut { got: 5 }
        );
    }
}
