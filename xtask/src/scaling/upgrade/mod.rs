//! The upgrade scenario of `test-scaling` (issue 13): N replicas of the previous version, this
//! version rolled in beside them, the old ones stopped one at a time, then a rollback replica.
//!
//! So far the evidence parsers (`facts`), the judges U-01..U-05 (`judge`), tested on real runs
//! recorded into `xtask/testdata/upgrade/` (see its `record.py`), and the pure side of choosing
//! and checking the previous build (`previous`); the scenario's driver is the next step.

pub mod facts;
pub mod judge;
pub mod previous;

#[cfg(test)]
mod tests;
