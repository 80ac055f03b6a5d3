//! The cleanup of test stacks: a guard that takes a compose project down on every exit path,
//! and the one Ctrl-C handler that takes down whichever stacks are up.

use xshell::Shell;

use crate::docker::Compose;

/// Compose stacks to take down on Ctrl-C, whatever the main thread is doing. One registry
/// and one handler for every check, so a run of several checks in one process (`cargo xtask
/// test`) cleans up whichever stack is up.
static LIVE_STACKS: std::sync::Mutex<Vec<Compose>> = std::sync::Mutex::new(Vec::new());

fn install_interrupt_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            eprintln!("\ninterrupted: removing the test stack");
            let stacks = LIVE_STACKS
                .lock()
                .map(|mut live| std::mem::take(&mut *live))
                .unwrap_or_default();
            if let Ok(sh) = Shell::new() {
                for compose in stacks {
                    let _ = compose.down(&sh);
                }
            }
            std::process::exit(130);
        });
    });
}

/// Takes a compose project down (`down -v --remove-orphans`) when dropped: on success,
/// failure, error and panic alike, and on Ctrl-C through the shared handler. With `keep`,
/// leaves it up and prints how to inspect and remove it.
pub struct StackGuard {
    compose: Compose,
    keep: bool,
}

impl StackGuard {
    pub fn new(compose: &Compose, keep: bool) -> StackGuard {
        install_interrupt_handler();
        if let Ok(mut live) = LIVE_STACKS.lock() {
            live.push(compose.clone());
        }
        StackGuard {
            compose: compose.clone(),
            keep,
        }
    }
}

impl Drop for StackGuard {
    fn drop(&mut self) {
        let still_ours = LIVE_STACKS
            .lock()
            .map(|mut live| {
                let before = live.len();
                live.retain(|c| c.project != self.compose.project);
                live.len() < before
            })
            .unwrap_or(true);
        if !still_ours {
            return;
        }
        if self.keep {
            eprintln!("\nThe stack is left running (--keep). Inspect and remove it with:");
            eprintln!("  {}", self.compose.user_command("ps"));
            eprintln!("  {}", self.compose.user_command("logs --timestamps api"));
            eprintln!(
                "  {}",
                self.compose.user_command("down -v --remove-orphans")
            );
            return;
        }
        crate::ui::step("Cleaning up: down -v --remove-orphans");
        if let Ok(sh) = Shell::new() {
            if let Err(e) = self.compose.down(&sh) {
                crate::ui::warn(&format!("cleanup failed: {e:#}"));
            }
        }
    }
}
