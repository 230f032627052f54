//! The set of pools a supervisor runs, and routing of a tool name to the
//! pool whose workers announced it.

use std::sync::Arc;
use std::time::Duration;

use flw_protocol::{ErrorKind, ToolSpec};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, Semaphore};

use crate::call::{CallFailure, CallOutcome};
use crate::config::{Config, PoolConfig};
use crate::pool::{CallOptions, Pool, PoolEvent};

/// All pools of one `flw` process.
#[derive(Clone)]
pub struct Router {
    pools: Arc<Vec<Pool>>,
    limit: Option<Arc<Semaphore>>,
    events: broadcast::Sender<PoolEvent>,
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
        }
    }

    /// Starts one pool per script with the command-line defaults.
    pub fn for_pools(pools: Vec<PoolConfig>) -> Router {
        Router::start(Config {
            pools,
            max_in_flight: None,
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

    /// Every tool of every pool, once each pool's first worker is up; the
    /// error names the pool that could not start, or a name two pools share.
    pub async fn tools(&self) -> Result<Vec<ToolSpec>, String> {
        let manifests = futures::future::join_all(self.pools.iter().map(|p| p.manifest())).await;
        let mut parts = Vec::with_capacity(manifests.len());
        for (pool, m) in self.pools.iter().zip(manifests) {
            parts.push((pool.config().name.as_str(), m?.tools().to_vec()));
        }
        merge(parts)
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
            parts.push((pool.config().name.as_str(), tools));
        }
        merge(parts).ok().map(|tools| (tools, live))
    }

    /// Runs `tool` in the pool that has it (which checks `args`).
    pub async fn call(
        &self,
        tool: &str,
        args: Map<String, Value>,
        opts: CallOptions,
    ) -> CallOutcome {
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
                return Err(CallFailure::new(ErrorKind::Unavailable, e));
            }
            return Err(CallFailure::new(
                ErrorKind::UnknownTool,
                format!(
                    "no tool named {tool:?}; the tools are: {}",
                    if names.is_empty() {
                        "(none)".to_string()
                    } else {
                        names.join(", ")
                    }
                ),
            ));
        };
        let _permit = match &self.limit {
            Some(s) => Some(tokio::select! {
                p = s.clone().acquire_owned() => p.map_err(|_| CallFailure::new(ErrorKind::ShuttingDown, "flw is shutting down"))?,
                _ = opts.cancel.cancelled() => return Err(CallFailure::new(ErrorKind::Cancelled, format!("call to {tool} was cancelled while it waited for a slot"))),
            }),
            None => None,
        };
        pool.call(tool, args, opts).await
    }

    /// Drains every pool (calls in flight get `drain` to finish), then stops
    /// all workers.
    pub async fn shutdown(&self, drain: Duration) {
        futures::future::join_all(self.pools.iter().map(|p| p.shutdown(drain))).await;
    }
}

/// The pools' tools in pool order; a name two pools share is an error.
fn merge(parts: Vec<(&str, Vec<ToolSpec>)>) -> Result<Vec<ToolSpec>, String> {
    let mut all: Vec<ToolSpec> = Vec::new();
    let mut owner: std::collections::HashMap<String, &str> = Default::default();
    for (pool, tools) in parts {
        for t in tools {
            if let Some(other) = owner.insert(t.name.clone(), pool) {
                return Err(format!(
                    "tool {:?} is defined by both pool {other} and pool {pool}; rename one of them",
                    t.name
                ));
            }
            all.push(t);
        }
    }
    Ok(all)
}
