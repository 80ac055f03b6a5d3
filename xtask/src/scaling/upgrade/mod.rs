//! The upgrade scenario of `test-scaling` (issue 13): N replicas of the previous version, this
//! version rolled in beside them, the old ones stopped one at a time, then a rollback replica.
//!
//! `builds` makes the previous version (and the breaking-migration fault's next version),
//! `scenario` drives the deploy and collects the evidence, `facts` parses it and `judge` holds
//! the checks U-01..U-05, tested on real runs recorded into `xtask/testdata/upgrade/` (see its
//! `record.py`); `previous` is the pure side of choosing and checking the previous build.

pub mod builds;
pub mod facts;
pub mod judge;
pub mod previous;
pub mod scenario;

#[cfg(test)]
mod tests;
