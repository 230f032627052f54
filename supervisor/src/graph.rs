//! Agent graphs (flows): PocketFlow's model run by the supervisor.
//!
//! A flow is data ([`Document`], typed in `flw-protocol`, `protocol/GRAPHS.md`); [`Catalog::plan`]
//! checks it against the nodes the pools implement and gives a [`Plan`];
//! [`run::run`] walks the plan, calling each node's phases on the pools'
//! workers, keeping the shared store, and reporting [`RunEvent`]s.
//! [`mermaid`] draws a plan.

mod events;
pub mod mermaid;
mod plan;
pub mod run;
#[cfg(test)]
mod vectors;

pub use events::{RunError, RunErrorKind, RunEvent, RunStatus, Stamped};
pub use flw_protocol::graph::{
    Batch, Document, DocumentError, Edge, Entry, Options, Target, DEFAULT_BACKOFF_MS,
    DEFAULT_MAX_STEPS,
};
pub use plan::{
    check_worker_flows, BatchPlan, Catalog, Plan, PlanNode, Step, WorkerNode, MAX_FLOW_DEPTH,
};
