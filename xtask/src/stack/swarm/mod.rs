//! Docker Swarm as the scaling check's second orchestrator: the stack file, the swarm's
//! lifecycle and parsers of its output. Its checks, on Swarm's terms, are
//! `scaling/swarm_checks.rs`; its end-to-end proof is `scaling/swarm_proof.rs`.
//!
//! Not yet behind `Engine`: nothing here depends on the Compose path. Measured behaviour of
//! this machine's engine is in the module docs of
//! `engine.rs`.

pub mod engine;
pub mod parse;
pub mod stack_file;
