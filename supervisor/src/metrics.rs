//! What the supervisor counts for `/metrics` (Prometheus text format):
//! calls by tool and outcome, their latency, cancels, flow runs, reloads,
//! and, read from the pools when scraped, calls in flight, queue depth,
//! worker restarts and generations.
//!
//! A [`crate::router::Router`] records into a [`Metrics`] only when it was
//! given one (`flw serve`); the other commands pay nothing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use flw_protocol::ErrorKind;

use crate::call::CallOutcome;
use crate::graph::RunStatus;
use crate::pool::Pool;

/// Upper bounds of the latency buckets, in seconds: 250 µs to 15 min.
const LATENCY_BUCKETS: [f64; 18] = [
    0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    60.0, 300.0, 900.0,
];

/// The labels of one tool's calls.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    tool: String,
    /// `ok`, or the error kind (`tool_error`, `cancelled`, ...).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ToolLabel {
    tool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    flow: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    pool: String,
    outcome: &'static str,
}

/// The counters of one supervisor.
pub struct Metrics {
    registry: Registry,
    calls: Family<CallLabels, Counter>,
    latency: Family<ToolLabel, Histogram>,
    cancels: Counter,
    runs: Family<RunLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    pools: Arc<Mutex<Vec<Pool>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Empty counters; the pools' gauges appear once [`Metrics::watch`]
    /// names them.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("flw");
        let calls = Family::<CallLabels, Counter>::default();
        registry.register(
            "calls",
            "Tool calls that ended, by tool and outcome (ok or the error kind)",
            calls.clone(),
        );
        let latency = Family::<ToolLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(LATENCY_BUCKETS.iter().copied())
        });
        registry.register_with_unit(
            "call_duration",
            "Time from a tool call's arrival to its outcome, queueing included",
            prometheus_client::registry::Unit::Seconds,
            latency.clone(),
        );
        let cancels = Counter::default();
        registry.register(
            "cancels",
            "Calls and runs that ended cancelled (client cancel, disconnect, DELETE, shutdown)",
            cancels.clone(),
        );
        let runs = Family::<RunLabels, Counter>::default();
        registry.register("flow_runs", "Flow runs that ended, by status", runs.clone());
        let reloads = Family::<ReloadLabels, Counter>::default();
        registry.register(
            "reloads",
            "Hot swaps of a pool's workers, by outcome (swapped or failed)",
            reloads.clone(),
        );
        let pools = Arc::new(Mutex::new(Vec::new()));
        registry.register_collector(Box::new(PoolGauges {
            pools: pools.clone(),
        }));
        Metrics {
            registry,
            calls,
            latency,
            cancels,
            runs,
            reloads,
            pools,
        }
    }

    /// Reports the gauges of `pools` at each scrape.
    pub fn watch(&self, pools: &[Pool]) {
        *self.pools.lock().unwrap_or_else(|p| p.into_inner()) = pools.to_vec();
    }

    /// Counts one tool call's outcome, `took` after it arrived.
    pub fn call(&self, tool: &str, outcome: &CallOutcome, took: Duration) {
        let kind = match outcome {
            Ok(_) => "ok",
            Err(f) => {
                if f.kind == ErrorKind::Cancelled {
                    self.cancels.inc();
                }
                f.kind.as_str()
            }
        };
        self.calls
            .get_or_create(&CallLabels {
                tool: tool.to_string(),
                outcome: kind,
            })
            .inc();
        self.latency
            .get_or_create(&ToolLabel {
                tool: tool.to_string(),
            })
            .observe(took.as_secs_f64());
    }

    /// Counts one flow run's end (`succeeded`, `failed`, `cancelled`).
    pub fn run(&self, flow: &str, status: RunStatus) {
        if status == RunStatus::Cancelled {
            self.cancels.inc();
        }
        self.runs
            .get_or_create(&RunLabels {
                flow: flow.to_string(),
                status: status.as_str(),
            })
            .inc();
    }

    /// Counts one reload of `pool`: `swapped` or `failed`.
    pub fn reload(&self, pool: &str, outcome: &'static str) {
        self.reloads
            .get_or_create(&ReloadLabels {
                pool: pool.to_string(),
                outcome,
            })
            .inc();
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String does not fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The pools' gauges, read when scraped.
struct PoolGauges {
    pools: Arc<Mutex<Vec<Pool>>>,
}

impl std::fmt::Debug for PoolGauges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PoolGauges")
    }
}

impl prometheus_client::collector::Collector for PoolGauges {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pools = self.pools.lock().unwrap_or_else(|p| p.into_inner()).clone();
        type Read = fn(&Pool) -> u64;
        let gauges: [(&str, &str, MetricType, Read); 10] = [
            (
                "workers_live",
                "Workers of a pool's current generation that passed their handshake",
                MetricType::Gauge,
                |p| p.census().live as u64,
            ),
            (
                "workers_busy",
                "Live workers of a pool with at least one call",
                MetricType::Gauge,
                |p| p.census().busy as u64,
            ),
            (
                "workers_idle",
                "Live workers of a pool with no call",
                MetricType::Gauge,
                |p| {
                    let c = p.census();
                    (c.live - c.busy) as u64
                },
            ),
            (
                "workers_starting",
                "Workers of a pool being started",
                MetricType::Gauge,
                |p| p.census().starting as u64,
            ),
            (
                "worker_spawns",
                "Workers started as a new process (exec)",
                MetricType::Counter,
                |p| p.spawns(),
            ),
            (
                "worker_forks",
                "Workers forked by a pool's fork server",
                MetricType::Counter,
                |p| p.forks(),
            ),
            (
                "in_flight",
                "Calls running on a pool's workers",
                MetricType::Gauge,
                |p| p.in_flight() as u64,
            ),
            (
                "queue_depth",
                "Calls waiting for a free worker of a pool",
                MetricType::Gauge,
                |p| p.queued() as u64,
            ),
            (
                "worker_restarts",
                "Workers started again after one ended (crash, kill after a cancel, exit)",
                MetricType::Counter,
                |p| p.restarts(),
            ),
            (
                "generation",
                "The number of the pool's generation that takes calls (1, then one more per reload)",
                MetricType::Gauge,
                |p| p.generation(),
            ),
        ];
        for (name, help, kind, read) in gauges {
            let mut family = encoder.encode_descriptor(name, help, None, kind)?;
            for pool in &pools {
                let labels = [("pool", pool.config().name.as_str())];
                let metric = family.encode_family(&labels)?;
                let value = read(pool);
                match kind {
                    MetricType::Counter => ConstCounter::new(value).encode(metric)?,
                    _ => ConstGauge::new(value as i64).encode(metric)?,
                }
            }
        }
        Ok(())
    }
}
