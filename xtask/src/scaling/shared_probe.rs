//! TEST-03's I/O: one `docker exec` per replica that writes a file into the shared directory
//! and then reads every replica's. The execs are started while the replicas start (`start`,
//! from the wait's polls) and wait on their stdin; once every replica is healthy (`run`),
//! each is told to write, and only once every replica has written (or failed to) is each told
//! which files to read. Starting an exec is most of its cost, and it moves out of the check's
//! own time; what the probe observes still happens after all are healthy.

use std::{
    io::{BufRead, BufReader, Read, Write},
    process::{Child, ChildStdout},
};

use anyhow::Result;

use super::checks::{self, Check, SharedDataResult};
use crate::{
    host::testdb::random_hex,
    stack::{parse, Stack, DATA_DIR},
};

/// What the probe prints between its write half and its read half.
const READY: &str = "ready-to-read";

/// The clean-up, for after the check's own time: a script and the container to run it in.
pub type Cleanup = (parse::Container, String);

/// The probe of one scenario: its run token and the execs started ahead.
pub struct SharedProbe {
    run: String,
    started: Vec<Started>,
}

/// One exec waiting on its stdin for `go`.
struct Started {
    container: parse::Container,
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl SharedProbe {
    pub fn new() -> Result<SharedProbe> {
        Ok(SharedProbe {
            run: random_hex(4)?,
            started: Vec::new(),
        })
    }

    /// Starts the exec in every running container of `containers` that has none yet. A
    /// container not running yet is left for a later call (or for `run`).
    pub fn start(&mut self, stack: &Stack, containers: &[parse::Container]) {
        for c in containers {
            if c.state != "running" || c.id.is_empty() || self.has(&c.id) {
                continue;
            }
            // One that cannot start now is started again by `run`, which reports its error.
            if let Ok(started) = self.spawn(stack, c) {
                self.started.push(started);
            }
        }
    }

    fn has(&self, id: &str) -> bool {
        self.started.iter().any(|s| s.container.id == id)
    }

    fn file(&self, n: u32) -> String {
        format!("{DATA_DIR}/.scaling-check-{}-{n}", self.run)
    }

    fn spawn(&self, stack: &Stack, c: &parse::Container) -> Result<Started> {
        let (run, n) = (&self.run, c.number);
        // Nothing happens unless told `go`: a probe that is never used (its container was
        // replaced) ends when its stdin closes, without writing.
        let script = format!(
            "read -r go || exit 0; [ \"$go\" = go ] || exit 0; \
             d={DATA_DIR}; f={f}; printf 'uid=%s gid=%s owner=%s mode=%s\\n' \"$(id -u)\" \"$(id -g)\" \"$(stat -c %u:%g $d)\" \"$(stat -c %a $d)\"; \
             if err=$( {{ printf '%s\\n' token-{run}-{n} > $f; }} 2>&1 ); then echo write=ok; else echo \"write=failed $err\"; fi; \
             echo {READY}; read -r numbers; \
             for m in $numbers; do if [ \"$(cat $d/.scaling-check-{run}-$m 2>/dev/null)\" = token-{run}-$m ]; then echo seen=$m; else echo missing=$m; fi; done",
            f = self.file(n)
        );
        let mut child = stack.spawn_exec_in(c, &["sh", "-c", &script])?;
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Started {
            container: c.clone(),
            child,
            stdout,
        })
    }

    /// The probe on `running`: the execs started ahead that are still alive, new ones for the
    /// rest; the check, each replica's result and the clean-up.
    pub fn run(
        mut self,
        stack: &Stack,
        running: &[parse::Container],
    ) -> Result<(Check, Vec<SharedDataResult>, Option<Cleanup>)> {
        let replicas: Vec<u32> = running.iter().map(|c| c.number).collect();
        let mut probes = Vec::new();
        for c in running {
            let ahead = self
                .started
                .iter()
                .position(|s| s.container.id == c.id)
                .map(|i| self.started.swap_remove(i));
            let probe = match ahead {
                Some(mut s) => match s.child.try_wait() {
                    Ok(None) => s,
                    // Its exec ended (the container restarted meanwhile): a new one.
                    _ => {
                        let _ = s.child.wait();
                        self.spawn(stack, c)?
                    }
                },
                None => self.spawn(stack, c)?,
            };
            probes.push(probe);
        }
        // Execs started for containers that are no longer running: closed unused.
        for mut unused in std::mem::take(&mut self.started) {
            drop(unused.child.stdin.take());
            let _ = unused.child.kill();
            let _ = unused.child.wait();
        }
        // The write half everywhere, then the barrier, then the read half everywhere.
        for p in probes.iter_mut() {
            if let Some(stdin) = p.child.stdin.as_mut() {
                let _ = stdin.write_all(b"go\n").and_then(|()| stdin.flush());
            }
        }
        let mut written = Vec::new();
        for p in probes.iter_mut() {
            let mut before = String::new();
            let mut line = String::new();
            while p.stdout.read_line(&mut line).unwrap_or(0) > 0 {
                if line.trim_end() == READY {
                    break;
                }
                before.push_str(&line);
                line.clear();
            }
            written.push(before);
        }
        let numbers = replicas
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(" ");
        let mut results = Vec::new();
        for (mut p, before) in probes.into_iter().zip(written) {
            if let Some(mut stdin) = p.child.stdin.take() {
                let _ = stdin.write_all(format!("{numbers}\n").as_bytes());
            }
            let mut after = String::new();
            let _ = p.stdout.read_to_string(&mut after);
            let mut stderr = String::new();
            if let Some(mut e) = p.child.stderr.take() {
                let _ = e.read_to_string(&mut stderr);
            }
            let status = p.child.wait()?;
            let write = parse::write_probe(&before)
                .map_err(|_| format!("exit {status}: {}", stderr.trim()));
            let (seen, missing, read_error) = if status.success() {
                let (seen, missing) = parse::read_probe(&after);
                (seen, missing, None)
            } else {
                (vec![], vec![], Some(stderr.trim().to_string()))
            };
            results.push(SharedDataResult {
                number: p.container.number,
                write,
                seen,
                missing,
                read_error,
            });
        }
        let cleanup = running.first().map(|first| {
            (
                first.clone(),
                format!("rm -f {DATA_DIR}/.scaling-check-{}-*", self.run),
            )
        });
        Ok((
            checks::shared_data(&replicas, &results, DATA_DIR),
            results,
            cleanup,
        ))
    }
}
