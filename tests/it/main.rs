//! Integration tests of the `mailvault` binary. One test binary, one module
//! per capability (ripgrep / uv `tests/it` shape).

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on what they set up themselves

mod backup;
mod cli;
mod crafted;
mod crash;
mod crypt;
mod export;
mod hostile;
mod merge;
mod migrate;
mod panel;
mod recover;
mod regressions;
mod reindex;
mod rotation;
mod salvage;
mod schedule;
mod search;
mod targets;
mod util;
mod verify;
mod volumes;
mod zip64;
