//! flw: a supervisor for AI-agent tools and flows that run in Python,
//! TypeScript or JavaScript worker processes.
//!
//! The library holds the daemon work; `main.rs` is only the command line.
//! See `ARCHITECTURE.md` at the repository root for the map.

pub mod call;
pub mod cli;
pub mod config;
pub mod excerpt;
pub mod fault;
pub mod graph;
pub mod instances;
pub mod keeper;
pub mod logging;
pub mod mcp;
pub mod metrics;
pub mod nofile;
pub mod plural;
pub mod pool;
pub mod private_fs;
pub mod router;
pub mod sdk;
pub mod serve;
pub mod watch;
pub mod worker;
