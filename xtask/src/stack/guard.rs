//! The cleanup of test stacks: a guard that takes a stack down on every exit path (a compose
//! project, or a Swarm stack and the swarm the run created), and the one Ctrl-C handler that
//! takes down whichever stacks are up.

use std::time::Duration;

use xshell::Shell;

use super::swarm::{
    cluster::Cluster,
    engine::{Membership, SwarmStack},
};
use crate::docker::Compose;

/// How long `stack rm` may take until its containers and networks are gone.
const SWARM_REMOVAL: Duration = Duration::from_secs(120);

/// What to take down: a compose project, or a Swarm stack and, if this run created it, the
/// swarm itself.
#[derive(Debug)]
pub enum Teardown {
    Compose(Compose),
    Swarm {
        stack: SwarmStack,
        membership: Membership,
    },
    /// Swarm nodes as containers on this machine (`--nodes`): removed, and this process's
    /// docker calls pointed back at the host's engine.
    Cluster(Cluster),
}

impl Teardown {
    fn name(&self) -> &str {
        match self {
            Teardown::Compose(c) => &c.project,
            Teardown::Swarm { stack, .. } => &stack.name,
            Teardown::Cluster(_) => "cluster",
        }
    }

    fn run(&self, sh: &Shell) -> anyhow::Result<()> {
        match self {
            Teardown::Compose(compose) => compose.down(sh),
            Teardown::Swarm { stack, membership } => {
                // Leave the swarm we created even if the removal failed: a half-removed stack
                // goes with the swarm.
                let removed = stack.remove(sh, SWARM_REMOVAL).map(drop);
                let left = membership.leave(sh);
                removed.and(left)
            }
            Teardown::Cluster(cluster) => {
                cluster.point_process_back();
                cluster.remove()
            }
        }
    }

    fn describe(&self) -> &'static str {
        match self {
            Teardown::Compose(_) => "down -v --remove-orphans",
            Teardown::Swarm { membership, .. } if membership.created => {
                "stack rm, its networks and volumes, and leaving the swarm this run created"
            }
            Teardown::Swarm { .. } => "stack rm, its networks and volumes",
            Teardown::Cluster(_) => {
                "the Swarm nodes: their containers, network, volumes and cgroups"
            }
        }
    }

    fn print_keep(&self) {
        if !matches!(self, Teardown::Cluster(_)) {
            eprintln!("\nThe stack is left running (--keep). Inspect and remove it with:");
        }
        match self {
            Teardown::Compose(compose) => {
                eprintln!("  {}", compose.user_command("ps"));
                eprintln!("  {}", compose.user_command("logs --timestamps api"));
                eprintln!("  {}", compose.user_command("down -v --remove-orphans"));
            }
            Teardown::Swarm { stack, membership } => {
                eprintln!("  docker stack ps {}", stack.name);
                eprintln!(
                    "  docker service logs --timestamps {}",
                    stack.service("api")
                );
                eprintln!(
                    "  docker stack rm {0}; then, once its containers are gone: docker volume rm $(docker volume ls -q --filter label=com.docker.stack.namespace={0})",
                    stack.name
                );
                if membership.created {
                    eprintln!("  docker swarm leave --force   # this run created the swarm");
                }
            }
            Teardown::Cluster(cluster) => {
                cluster.point_process_back();
                eprintln!(
                    "\nThe Swarm nodes are left running (--keep). Reach and remove them with:"
                );
                for line in cluster.keep_commands() {
                    eprintln!("  {line}");
                }
            }
        }
    }
}

/// Stacks to take down on Ctrl-C, whatever the main thread is doing. One registry and one
/// handler for every check, so a run of several checks in one process (`cargo xtask test`)
/// cleans up whichever stack is up.
static LIVE_STACKS: std::sync::Mutex<Vec<Teardown>> = std::sync::Mutex::new(Vec::new());

fn install_interrupt_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            eprintln!("\ninterrupted: removing the test stack");
            let stacks = LIVE_STACKS
                .lock()
                .map(|mut live| std::mem::take(&mut *live))
                .unwrap_or_default();
            // The latest first: a stack before the cluster it runs on.
            if let Ok(sh) = Shell::new() {
                for stack in stacks.into_iter().rev() {
                    let _ = stack.run(&sh);
                }
            }
            std::process::exit(130);
        });
    });
}

/// Takes a stack down when dropped: on success, failure, error and panic alike, and on
/// Ctrl-C through the shared handler. With `keep`, leaves it up and prints how to inspect and
/// remove it.
pub struct StackGuard {
    name: String,
    keep: bool,
}

impl StackGuard {
    pub fn new(compose: &Compose, keep: bool) -> StackGuard {
        StackGuard::of(Teardown::Compose(compose.clone()), keep)
    }

    pub fn of(teardown: Teardown, keep: bool) -> StackGuard {
        install_interrupt_handler();
        let name = teardown.name().to_string();
        if let Ok(mut live) = LIVE_STACKS.lock() {
            live.push(teardown);
        }
        StackGuard { name, keep }
    }
}

impl Drop for StackGuard {
    fn drop(&mut self) {
        let mine = LIVE_STACKS
            .lock()
            .map(|mut live| {
                let at = live.iter().position(|t| t.name() == self.name)?;
                Some(live.remove(at))
            })
            .ok()
            .flatten();
        let Some(teardown) = mine else {
            return;
        };
        if self.keep {
            teardown.print_keep();
            return;
        }
        crate::ui::step(&format!("Cleaning up: {}", teardown.describe()));
        if let Ok(sh) = Shell::new() {
            if let Err(e) = teardown.run(&sh) {
                crate::ui::warn(&format!("cleanup failed: {e:#}"));
            }
        }
    }
}
