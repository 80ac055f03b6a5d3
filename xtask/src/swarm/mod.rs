//! Docker Swarm as the scaling check's second orchestrator: the stack file, the swarm's
//! lifecycle, parsers of its output and the checks on Swarm's terms (issue 16).
//!
//! Self-contained so that the stack layer's engine seam can call it: nothing here depends on
//! the Compose path. Measured behaviour of this machine's engine is in the module docs of
//! `engine.rs`.

pub mod engine;
pub mod judge;
pub mod parse;
#[cfg(test)]
mod proof;
pub mod stack_file;
