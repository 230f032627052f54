//! The set of pools a supervisor runs, and routing of a tool name to the
//! pool whose workers announced it.

use std::sync::Arc;
use std::time::Duration;

use flw_protocol::{ErrorKind, ToolSpec};
use futures::future::BoxFuture;
use serde_json::{Map, Value};
use tokio::sync::{broadcast, Semaphore};
use tokio_util::sync::CancellationToken;

use crate::call::{CallFailure, CallOutcome, EventSink, NodeJob};
use crate::config::{Config, PoolConfig};
use crate::graph::run::NodeCaller;
use crate::graph::{Catalog, Document, Plan};
use crate::metrics::Metrics;
use crate::pool::{CallOptions, Pool, PoolEvent, ToolsUnavailable};

/// Why the flows of every pool and graph file cannot be put together.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CatalogError {
    /// A pool's workers could not start, so its flows are unknown.
    #[error(transparent)]
    Pool(#[from] ToolsUnavailable),
    /// Two parts define one flow.
    #[error("flow {flow:?} is defined by both {first} and pool {second}; rename one of them")]
    FlowTwice {
        /// The flow.
        flow: String,
        /// The first part (`a graph file` or a pool's name).
        first: String,
        /// The pool that defines it again.
        second: String,
    },
    /// A graph file defines a flow that another part defines.
    #[error("flow {flow:?} of a graph file is also defined by {other}; rename one of them")]
    FileFlowTwice {
        /// The flow.
        flow: String,
        /// The other part.
        other: String,
    },
    /// Two parts define one tool (flows count as tools).
    #[error("tool {tool:?} is defined by both {first} and {second}; rename one of them (flows count as tools)")]
    ToolTwice {
        /// The tool.
        tool: String,
        /// The first part (`pool NAME`, `a graph file`).
        first: String,
        /// The second part.
        second: String,
    },
    /// A flow has a tool's name.
    #[error("{0:?} is the name of both a flow and a tool; flows and tools share one namespace (MCP tools), so rename one")]
    FlowIsTool(String),
    /// The flow is unknown or does not check (`protocol/GRAPHS.md`).
    #[error("{0}")]
    Plan(String),
}

/// All pools of one `flw` process.
#[derive(Clone)]
pub struct Router {
    pools: Arc<Vec<Pool>>,
    limit: Option<Arc<Semaphore>>,
    events: broadcast::Sender<PoolEvent>,
    /// Flows from graph files named in the config.
    flows: Arc<Vec<Document>>,
    /// Where calls are counted, when someone reads the counts.
    metrics: Option<Arc<Metrics>>,
}

impl Router {
    /// Starts a pool for each entry; workers come up in the background.
    pub fn start(config: Config) -> Router {
        let events = broadcast::channel(64).0;
        Router {
            pools: Arc::new(
                config
                    .pools
                    .into_iter()
                    .map(|cfg| Pool::start(cfg, events.clone()))
                    .collect(),
            ),
            limit: config.max_in_flight.map(|n| Arc::new(Semaphore::new(n))),
            events,
            flows: Arc::new(config.flows),
            metrics: None,
        }
    }

    /// Counts every call from now on in `metrics` (which also reads the
    /// pools' gauges).
    pub fn with_metrics(mut self, metrics: Arc<Metrics>) -> Router {
        metrics.watch(&self.pools);
        self.metrics = Some(metrics);
        self
    }

    /// The counters given to [`Router::with_metrics`].
    pub fn metrics(&self) -> Option<&Arc<Metrics>> {
        self.metrics.as_ref()
    }

    /// Starts one pool per script with the command-line defaults.
    pub fn for_pools(pools: Vec<PoolConfig>) -> Router {
        Router::start(Config {
            pools,
            max_in_flight: None,
            flows: Vec::new(),
            serve: Default::default(),
        })
    }

    /// The pools.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }

    /// Reloads and their failures, in every pool, from now on.
    pub fn events(&self) -> broadcast::Receiver<PoolEvent> {
        self.events.subscribe()
    }

    /// Asks every pool to reload (see [`Pool::request_reload`]).
    pub fn request_reload(&self, reason: &str) {
        for pool in self.pools.iter() {
            pool.request_reload(reason);
        }
    }

    /// Every tool of every pool, then its flows, then the graph files'
    /// flows (flows are listed as tools; see
    /// [`crate::graph::Document::tool_spec`]), once each pool's first worker
    /// is up; the error names the pool that could not start, or a name two
    /// pools share.
    pub async fn tools(&self) -> Result<Vec<ToolSpec>, CatalogError> {
        let manifests = futures::future::join_all(self.pools.iter().map(|p| p.manifest())).await;
        let mut parts = Vec::with_capacity(manifests.len());
        for (pool, m) in self.pools.iter().zip(manifests) {
            parts.push((format!("pool {}", pool.config().name), m?.listed().to_vec()));
        }
        parts.push(("a graph file".to_string(), self.file_flows()));
        merge(parts)
    }

    /// Waits until every pool has read its manifest cache (a few ms after
    /// the start; the read runs off the runtime), for [`Router::tools_now`].
    pub async fn cache_read(&self) {
        futures::future::join_all(self.pools.iter().map(|p| p.cache_read())).await;
    }

    /// Every tool without waiting for workers: `(tools, live)`, where
    /// `live` is false when some of them come from the manifest cache of a
    /// pool still starting (see [`crate::pool::manifest_cache`]). `None`
    /// when a pool has neither, or the tools clash: then wait for
    /// [`Router::tools`].
    pub fn tools_now(&self) -> Option<(Vec<ToolSpec>, bool)> {
        let mut parts = Vec::with_capacity(self.pools.len());
        let mut live = true;
        for pool in self.pools.iter() {
            let (tools, is_live) = pool.tools_now()?;
            live &= is_live;
            parts.push((format!("pool {}", pool.config().name), tools));
        }
        parts.push(("a graph file".to_string(), self.file_flows()));
        merge(parts).ok().map(|tools| (tools, live))
    }

    /// The flows of the config's graph files, as tools.
    fn file_flows(&self) -> Vec<ToolSpec> {
        self.flows.iter().map(Document::tool_spec).collect()
    }

    /// Every flow the pools' scripts and the config's graph files define,
    /// with what their nodes refer to, once each pool's first worker is up.
    /// The error names a pool that could not start, or a flow name used
    /// twice or by a tool.
    pub async fn catalog(&self) -> Result<Catalog, CatalogError> {
        let manifests = futures::future::join_all(self.pools.iter().map(|p| p.manifest())).await;
        let mut catalog = Catalog::default();
        let mut tools = std::collections::HashSet::new();
        for (i, (pool, m)) in self.pools.iter().zip(manifests).enumerate() {
            let m = m?;
            let name = pool.config().name.clone();
            tools.extend(m.tools().iter().map(|t| t.name.clone()));
            for d in m.flows() {
                if let Some((_, other)) = catalog.flows.get(&d.name) {
                    let other = other.map_or("a graph file", |o| catalog.pools[o].0.as_str());
                    return Err(CatalogError::FlowTwice {
                        flow: d.name.clone(),
                        first: other.to_string(),
                        second: name,
                    });
                }
                catalog.flows.insert(d.name.clone(), (d.clone(), Some(i)));
            }
            catalog.pools.push((name, m.nodes().to_vec()));
        }
        for d in self.flows.iter() {
            if let Some((_, other)) = catalog.flows.get(&d.name) {
                let other = other.map_or("another graph file".to_string(), |o| {
                    format!("pool {}", catalog.pools[o].0)
                });
                return Err(CatalogError::FileFlowTwice {
                    flow: d.name.clone(),
                    other,
                });
            }
            catalog.flows.insert(d.name.clone(), (d.clone(), None));
        }
        if let Some(clash) = catalog.flows.keys().find(|f| tools.contains(*f)) {
            return Err(CatalogError::FlowIsTool(clash.clone()));
        }
        Ok(catalog)
    }

    /// The checked plan of flow `name` (see [`Catalog::plan`]).
    pub async fn plan(&self, name: &str) -> Result<Arc<Plan>, CatalogError> {
        self.catalog().await?.plan(name).map_err(CatalogError::Plan)
    }

    /// Runs one phase of a graph node in pool `pool` (an index of
    /// [`Router::pools`]), under the global limit like any call.
    pub async fn call_node(&self, pool: usize, job: NodeJob, opts: CallOptions) -> CallOutcome {
        let Some(p) = self.pools.get(pool) else {
            return Err(CallFailure::new(
                ErrorKind::Internal,
                format!("no pool number {pool}"),
            ));
        };
        let _permit = match &self.limit {
            Some(s) => Some(tokio::select! {
                p = s.clone().acquire_owned() => p.map_err(|_| CallFailure::new(ErrorKind::ShuttingDown, "flw is shutting down"))?,
                _ = opts.cancel.cancelled() => return Err(CallFailure::new(ErrorKind::Cancelled, format!("node {} was cancelled while it waited for a slot", job.node))),
            }),
            None => None,
        };
        p.call_node(job, opts).await
    }

    /// Whether a started pool has announced a tool called `name` (without
    /// waiting; `false` while pools start).
    pub fn has_tool_now(&self, name: &str) -> bool {
        self.pools.iter().any(|p| p.has_tool_now(name))
    }

    /// The pool whose workers announced `tool` (once each pool's first
    /// worker is up); else `unknown_tool` with the list of tools, or
    /// `unavailable` when a pool that might have it cannot start.
    pub async fn pool_of(&self, tool: &str) -> Result<&Pool, CallFailure> {
        let mut names = Vec::new();
        let mut target = None;
        let mut failed = None;
        for pool in self.pools.iter() {
            let m = match pool.manifest().await {
                Ok(m) => m,
                Err(e) => {
                    failed.get_or_insert(e); // another pool may still have the tool
                    continue;
                }
            };
            if m.get(tool).is_some() {
                target = Some(pool);
                break;
            }
            names.extend(m.tools().iter().map(|t| t.name.clone()));
        }
        let Some(pool) = target else {
            if let Some(e) = failed {
                return Err(CallFailure::new(ErrorKind::Unavailable, e.to_string()));
            }
            return Err(CallFailure::new(
                ErrorKind::UnknownTool,
                format!(
                    "no tool named {}; the tools are: {}",
                    crate::excerpt::quote(tool),
                    if names.is_empty() {
                        "(none)".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        };
        Ok(pool)
    }

    /// Runs `tool` in the pool that has it (which checks `args`); counted
    /// in the metrics, if any, once the tool is known to exist (so a
    /// client's made-up names add no series).
    pub async fn call(
        &self,
        tool: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> CallOutcome {
        let started = self.metrics.is_some().then(std::time::Instant::now);
        let pool = self.pool_of(tool).await?;
        let _permit = match &self.limit {
            Some(s) => Some(tokio::select! {
                p = s.clone().acquire_owned() => p.map_err(|_| CallFailure::new(ErrorKind::ShuttingDown, "flw is shutting down"))?,
                _ = opts.cancel.cancelled() => return Err(CallFailure::new(ErrorKind::Cancelled, format!("call to {tool} was cancelled while it waited for a slot"))),
            }),
            None => None,
        };
        let outcome = pool.call(tool, args, opts).await;
        if let (Some(m), Some(t)) = (&self.metrics, started) {
            m.call(tool, &outcome, t.elapsed());
        }
        outcome
    }

    /// Starts no more reloads in any pool (see [`Pool::stop_reloads`]).
    pub fn stop_reloads(&self) {
        for pool in self.pools.iter() {
            pool.stop_reloads();
        }
    }

    /// Drains every pool (calls in flight get `drain` to finish), then stops
    /// all workers.
    pub async fn shutdown(&self, drain: Duration) {
        futures::future::join_all(self.pools.iter().map(|p| p.shutdown(drain))).await;
    }
}

/// Flows call node phases through the router: the global limit, then the
/// pool's lease, deadline and kill path.
impl NodeCaller for Router {
    fn call_node(
        &self,
        pool: usize,
        job: NodeJob,
        timeout: Option<Duration>,
        cancel: CancellationToken,
        events: EventSink,
    ) -> BoxFuture<'_, CallOutcome> {
        let opts = CallOptions {
            timeout,
            cancel,
            events,
        };
        Box::pin(Router::call_node(self, pool, job, opts))
    }
}

/// The tools of each part (`pool NAME`, `a graph file`) in order; a name
/// two parts share is an error.
fn merge(parts: Vec<(String, Vec<ToolSpec>)>) -> Result<Vec<ToolSpec>, CatalogError> {
    let mut all: Vec<ToolSpec> = Vec::new();
    let mut owner: std::collections::HashMap<String, usize> = Default::default();
    for (i, (pool, tools)) in parts.iter().enumerate() {
        for t in tools {
            if let Some(o) = owner.insert(t.name.clone(), i) {
                let other = &parts[o].0;
                return Err(CatalogError::ToolTwice {
                    tool: t.name.clone(),
                    first: other.clone(),
                    second: pool.clone(),
                });
            }
            all.push(t.clone());
        }
    }
    Ok(all)
}
