//! Agent graphs (flows): PocketFlow's model run by the supervisor.
//!
//! A flow is data ([`Document`], `protocol/GRAPHS.md`); [`Catalog::plan`]
//! checks it against the nodes the pools implement and gives a [`Plan`];
//! [`run::run`] walks the plan, calling each node's phases on the pools'
//! workers, keeping the shared store, and reporting [`RunEvent`]s.
//! [`mermaid`] draws a plan.

mod document;
mod events;
pub mod mermaid;
pub mod outcome;
mod plan;
pub mod run;

pub use document::{Document, Edge, Entry, Options, Target, DEFAULT_MAX_STEPS};
pub use events::{RunError, RunEvent, RunStatus, Stamped};
pub use plan::{check_worker_flows, Catalog, Plan, PlanNode, Step, WorkerNode, MAX_FLOW_DEPTH};
