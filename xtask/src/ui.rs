//! Progress on stderr: steps, notes, and a waiting line with elapsed time.
//! Colour only on a terminal and never with `NO_COLOR`.

use std::{
    io::{IsTerminal, Write},
    sync::OnceLock,
    time::{Duration, Instant},
};

fn start() -> Instant {
    static START: OnceLock<Instant> = OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// Whether stderr gets colour.
pub fn color() -> bool {
    static COLOR: OnceLock<bool> = OnceLock::new();
    *COLOR.get_or_init(|| std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal())
}

pub fn paint(text: &str, code: &str) -> String {
    if color() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

pub fn paint_stdout(text: &str, code: &str) -> String {
    if std::env::var_os("NO_COLOR").is_none() && std::io::stdout().is_terminal() {
        format!("\x1b[{code}m{text}\x1b[0m")
    } else {
        text.to_string()
    }
}

fn stamp() -> String {
    format!("[{:>6.1}s]", start().elapsed().as_secs_f64())
}

/// A step of the sequence.
pub fn step(msg: &str) {
    eprintln!("{} {} {msg}", stamp(), paint("==>", "1;36"));
}

/// A detail under a step.
pub fn note(msg: &str) {
    eprintln!("{}     {msg}", stamp());
}

pub fn warn(msg: &str) {
    eprintln!("{} {} {msg}", stamp(), paint("warning:", "1;33"));
}

/// A line that is rewritten in place on a terminal, and printed at most every few
/// seconds (or when it changes) otherwise, so CI logs stay readable.
pub struct Waiting {
    what: String,
    since: Instant,
    last_text: String,
    last_print: Option<Instant>,
    tty: bool,
}

impl Waiting {
    pub fn new(what: &str) -> Waiting {
        Waiting {
            what: what.to_string(),
            since: Instant::now(),
            last_text: String::new(),
            last_print: None,
            tty: std::io::stderr().is_terminal(),
        }
    }

    pub fn elapsed(&self) -> Duration {
        self.since.elapsed()
    }

    pub fn update(&mut self, status: &str) {
        let line = format!(
            "{}     waiting for {}: {status} ({:.1} s)",
            stamp(),
            self.what,
            self.since.elapsed().as_secs_f64()
        );
        if self.tty {
            eprint!("\r\x1b[2K{line}");
            let _ = std::io::stderr().flush();
        } else {
            let due = self
                .last_print
                .is_none_or(|t| t.elapsed() >= Duration::from_secs(5));
            if status != self.last_text || due {
                eprintln!("{line}");
                self.last_print = Some(Instant::now());
            }
        }
        self.last_text = status.to_string();
    }

    pub fn finish(self, outcome: &str) {
        let line = format!(
            "{}     {}: {outcome} after {:.1} s",
            stamp(),
            self.what,
            self.since.elapsed().as_secs_f64()
        );
        if self.tty {
            eprintln!("\r\x1b[2K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}
