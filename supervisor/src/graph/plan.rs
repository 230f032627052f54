//! Checking a graph document against what the pools implement, and the
//! checked form a run follows: a [`Plan`].
//!
//! Everything `protocol/GRAPHS.md` lists under "What is refused before a run
//! starts" that needs more than the document itself is checked here:
//! dangling edges, an unknown start, duplicate actions, nodes no pool has,
//! unknown or cyclic flows, bad parallel branches, unreachable nodes.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use flw_protocol::{NodeKind, NodeSpec};

use super::{Document, Options, Target, DEFAULT_MAX_STEPS};

/// How deep flows may nest in one another: the top flow and up to 63
/// levels of nested flows under it.
pub const MAX_FLOW_DEPTH: usize = 64;

/// A checked flow.
#[derive(Debug)]
pub struct Plan {
    /// The flow's name.
    pub name: String,
    /// For people and models.
    pub description: Option<String>,
    /// The entries, in document order.
    pub nodes: Vec<PlanNode>,
    /// Index of the first node.
    pub start: usize,
    /// Most node visits of a run of this flow (when it is the top flow).
    pub max_steps: u64,
    /// Time limit of a run of this flow (when it is the top flow).
    pub deadline: Option<Duration>,
    /// Set for a batch flow: the graph runs once per parameter set.
    pub batch: Option<BatchPlan>,
}

/// A checked batch flow's own node and how its runs go.
#[derive(Debug)]
pub struct BatchPlan {
    /// The `batch_flow` node whose `prep` gives the parameter sets and whose
    /// `post` gives the flow's action.
    pub node: WorkerNode,
    /// Whether the runs overlap on the one store.
    pub concurrent: bool,
    /// Concurrent runs in flight at once.
    pub limit: Option<usize>,
}

/// One checked entry.
#[derive(Debug)]
pub struct PlanNode {
    /// The entry's id in its flow.
    pub id: String,
    /// What runs.
    pub step: Step,
    /// Retries, backoff, timeout, limit.
    pub options: Options,
    /// Outgoing edges: action → index, in document order.
    pub next: Vec<(String, usize)>,
}

/// What a checked entry runs.
#[derive(Debug)]
pub enum Step {
    /// A worker node.
    Worker(WorkerNode),
    /// A nested flow.
    Flow(Arc<Plan>),
    /// Entries of the same flow that run at the same time.
    Parallel(Vec<usize>),
}

/// A node some pool implements.
#[derive(Debug, Clone)]
pub struct WorkerNode {
    /// Index of the pool in the router.
    pub pool: usize,
    /// The pool's name.
    pub pool_name: String,
    /// The node's name in the worker's manifest.
    pub name: String,
    /// `node` or `batch`.
    pub kind: NodeKind,
    /// Whether it has a `fallback` phase.
    pub fallback: bool,
}

impl Plan {
    /// The entry `from` leads to for `action`, if an edge says so.
    pub fn next(&self, from: usize, action: &str) -> Option<usize> {
        self.nodes[from]
            .next
            .iter()
            .find(|(a, _)| a == action)
            .map(|(_, to)| *to)
    }
}

/// What a document may refer to: the pools' nodes and the known flows.
#[derive(Debug, Default)]
pub struct Catalog {
    /// Per pool in router order: its name and nodes.
    pub pools: Vec<(String, Vec<NodeSpec>)>,
    /// Known flows by name, with the pool that declared each (`None` for
    /// flows from graph files).
    pub flows: HashMap<String, (Document, Option<usize>)>,
}

impl Catalog {
    /// Checks the flow called `name` and everything it nests.
    pub fn plan(&self, name: &str) -> Result<Arc<Plan>, String> {
        let Some((doc, home)) = self.flows.get(name) else {
            let mut names: Vec<&str> = self.flows.keys().map(String::as_str).collect();
            names.sort_unstable();
            return Err(format!(
                "no flow named {name:?}; the flows are: {}",
                if names.is_empty() {
                    "(none)".to_string()
                } else {
                    names.join(", ")
                }
            ));
        };
        self.build(doc, *home, &mut Building::default())
            .map(|(plan, _)| plan)
    }

    /// Checks a document that may not be in the catalog (an inline flow).
    pub fn plan_document(&self, doc: &Document, home: Option<usize>) -> Result<Arc<Plan>, String> {
        self.build(doc, home, &mut Building::default())
            .map(|(plan, _)| plan)
    }

    fn build(
        &self,
        doc: &Document,
        home: Option<usize>,
        building: &mut Building,
    ) -> Result<(Arc<Plan>, usize), String> {
        let at = format!("flow {:?}", doc.name);
        if building.stack.len() == MAX_FLOW_DEPTH {
            return Err(too_deep(&at, &building.stack));
        }
        if building.stack.contains(&doc.name) {
            building.stack.push(doc.name.clone());
            return Err(format!(
                "{at} contains itself: {}; flows may not nest in a cycle",
                building.stack.join(" -> ")
            ));
        }
        building.stack.push(doc.name.clone());
        let index: HashMap<&str, usize> = doc
            .nodes
            .iter()
            .enumerate()
            .map(|(i, (id, _))| (id.as_str(), i))
            .collect();
        let Some(&start) = index.get(doc.start.as_str()) else {
            return Err(format!(
                "{at}: the start node {:?} is not one of its nodes ({})",
                doc.start,
                ids(doc)
            ));
        };
        let mut nodes = Vec::with_capacity(doc.nodes.len());
        // Levels of flows from this one down (1: no nested flow).
        let mut height = 1;
        for (id, entry) in &doc.nodes {
            let here = format!("{at}, node {id:?}");
            let step = match &entry.target {
                Target::Node { name, pool } => {
                    let node = self.find_node(name, pool.as_deref(), home, &here)?;
                    if node.kind == NodeKind::BatchFlow {
                        return Err(format!(
                            "{here}: node {name:?} is a batch flow's own node (kind batch_flow); name it in a flow's \"batch\", not as an entry"
                        ));
                    }
                    Step::Worker(node)
                }
                Target::FlowRef(name) => {
                    let Some((sub, sub_home)) = self.flows.get(name) else {
                        return Err(format!(
                            "{here}: no flow named {name:?} (known: {})",
                            self.flow_names()
                        ));
                    };
                    let (plan, levels) = match building.done.get(name) {
                        Some(built) => built.clone(),
                        None => {
                            let built = self.build(sub, *sub_home, building)?;
                            building.done.insert(name.clone(), built.clone());
                            built
                        }
                    };
                    if building.stack.len() + levels > MAX_FLOW_DEPTH {
                        return Err(too_deep(&here, &building.stack));
                    }
                    height = height.max(levels + 1);
                    Step::Flow(plan)
                }
                Target::FlowInline(sub) => {
                    let (plan, levels) = self.build(sub, home, building)?;
                    height = height.max(levels + 1);
                    Step::Flow(plan)
                }
                Target::Parallel(branches) => Step::Parallel(
                    branches
                        .iter()
                        .map(|b| {
                            if b == id {
                                return Err(format!("{here}: a parallel entry cannot list itself"));
                            }
                            index.get(b.as_str()).copied().ok_or_else(|| {
                                format!(
                                    "{here}: parallel branch {b:?} is not one of the flow's nodes ({})",
                                    ids(doc)
                                )
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
            };
            nodes.push(PlanNode {
                id: id.clone(),
                step,
                options: entry.options,
                next: Vec::new(),
            });
        }
        for (i, e) in doc.edges.iter().enumerate() {
            let here = format!("{at}, edges[{i}] ({} -{}-> {})", e.from, e.action, e.to);
            let from = *index.get(e.from.as_str()).ok_or_else(|| {
                format!(
                    "{here}: \"from\" {:?} is not one of the flow's nodes ({})",
                    e.from,
                    ids(doc)
                )
            })?;
            let to = *index.get(e.to.as_str()).ok_or_else(|| {
                format!(
                    "{here}: \"to\" {:?} is not one of the flow's nodes ({})",
                    e.to,
                    ids(doc)
                )
            })?;
            if nodes[from].next.iter().any(|(a, _)| a == &e.action) {
                return Err(format!(
                    "{here}: node {:?} already has an edge for action {:?}",
                    e.from, e.action
                ));
            }
            nodes[from].next.push((e.action.clone(), to));
        }
        check_parallel_cycles(&nodes, &at)?;
        let reached = reachable(&nodes, start);
        let unreached: Vec<&str> = nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !reached.contains(i))
            .map(|(_, n)| n.id.as_str())
            .collect();
        if !unreached.is_empty() {
            return Err(format!(
                "{at}: node{} {} cannot be reached from the start node {:?}; add an edge to {} or remove {}",
                if unreached.len() > 1 { "s" } else { "" },
                unreached.join(", "),
                doc.start,
                if unreached.len() > 1 { "them" } else { "it" },
                if unreached.len() > 1 { "them" } else { "it" },
            ));
        }
        let batch = match &doc.batch {
            None => None,
            Some(b) => {
                let here = format!("{at}, \"batch\"");
                let node = self.find_node(&b.node, b.pool.as_deref(), home, &here)?;
                if node.kind != NodeKind::BatchFlow {
                    return Err(format!(
                        "{here}: node {:?} is of kind {}, not batch_flow; a batch flow's node gives the parameter sets (BatchFlow's prep and post)",
                        b.node,
                        node.kind.as_str()
                    ));
                }
                Some(BatchPlan {
                    node,
                    concurrent: b.concurrent,
                    limit: b.limit,
                })
            }
        };
        building.stack.pop();
        let plan = Arc::new(Plan {
            batch,
            name: doc.name.clone(),
            description: doc.description.clone(),
            nodes,
            start,
            max_steps: doc.max_steps.unwrap_or(DEFAULT_MAX_STEPS),
            deadline: doc.deadline_ms.map(Duration::from_millis),
        });
        Ok((plan, height))
    }

    fn find_node(
        &self,
        name: &str,
        pool: Option<&str>,
        home: Option<usize>,
        here: &str,
    ) -> Result<WorkerNode, String> {
        let candidates: Vec<usize> = match (pool, home) {
            (Some(p), _) => {
                let Some(i) = self.pools.iter().position(|(n, _)| n == p) else {
                    return Err(format!(
                        "{here}: no pool named {p:?} (the pools are: {})",
                        self.pools
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                };
                if home.is_some_and(|h| h != i) {
                    return Err(format!(
                        "{here}: a flow a worker declares can only use that worker's nodes, not pool {p:?}'s; put cross-pool flows in a graph file"
                    ));
                }
                vec![i]
            }
            (None, Some(h)) => vec![h],
            (None, None) => (0..self.pools.len()).collect(),
        };
        let found: Vec<usize> = candidates
            .into_iter()
            .filter(|&i| self.pools[i].1.iter().any(|n| n.name == name))
            .collect();
        match found.as_slice() {
            [i] => {
                let (pool_name, specs) = &self.pools[*i];
                let spec = specs
                    .iter()
                    .find(|n| n.name == name)
                    .expect("filtered above");
                Ok(WorkerNode {
                    pool: *i,
                    pool_name: pool_name.clone(),
                    name: name.to_string(),
                    kind: spec.kind,
                    fallback: spec.fallback,
                })
            }
            [] => {
                let known: Vec<String> = self
                    .pools
                    .iter()
                    .flat_map(|(p, specs)| specs.iter().map(move |n| format!("{p}:{}", n.name)))
                    .collect();
                Err(format!(
                    "{here}: no pool implements a node named {name:?}{} (nodes: {})",
                    pool.map(|p| format!(" in pool {p:?}")).unwrap_or_default(),
                    if known.is_empty() {
                        "(none)".to_string()
                    } else {
                        known.join(", ")
                    }
                ))
            }
            several => Err(format!(
                "{here}: pools {} all implement a node named {name:?}; say which with \"pool\"",
                several
                    .iter()
                    .map(|&i| self.pools[i].0.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        }
    }

    fn flow_names(&self) -> String {
        let mut names: Vec<&str> = self.flows.keys().map(String::as_str).collect();
        names.sort_unstable();
        if names.is_empty() {
            "(none)".into()
        } else {
            names.join(", ")
        }
    }
}

/// The state of one [`Catalog::plan`] (or [`check_worker_flows`]): the flows being built, innermost
/// last (a flow met again there nests in a cycle), and the catalog's flows
/// already built with their height in levels, which every later reference
/// shares (a flow that many entries reach is checked once, not once per
/// path).
#[derive(Default)]
struct Building {
    stack: Vec<String>,
    done: HashMap<String, (Arc<Plan>, usize)>,
}

/// The error for flows nested deeper than [`MAX_FLOW_DEPTH`] under `stack`.
fn too_deep(at: &str, stack: &[String]) -> String {
    format!(
        "{at}: flows nest more than {MAX_FLOW_DEPTH} deep (from {:?} down); run the inner ones one after another instead",
        stack.first().map_or("", String::as_str)
    )
}

/// Checks the flows a worker declared against its own nodes; the error
/// names the flow and the problem.
pub fn check_worker_flows(
    pool: &str,
    nodes: &[NodeSpec],
    flows: &[Document],
) -> Result<(), String> {
    let catalog = Catalog {
        pools: vec![(pool.to_string(), nodes.to_vec())],
        flows: flows
            .iter()
            .map(|d| (d.name.clone(), (d.clone(), Some(0))))
            .collect(),
    };
    if catalog.flows.len() != flows.len() {
        return Err("two flows have the same name".into());
    }
    // One shared state: a flow that many others run is planned once.
    let mut building = Building::default();
    for d in flows {
        if !building.done.contains_key(&d.name) {
            let built = catalog.build(d, Some(0), &mut building)?;
            building.done.insert(d.name.clone(), built);
        }
    }
    Ok(())
}

fn ids(doc: &Document) -> String {
    doc.nodes
        .iter()
        .map(|(id, _)| id.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Entries reachable from `start` through edges and parallel branches.
fn reachable(nodes: &[PlanNode], start: usize) -> HashSet<usize> {
    let mut seen = HashSet::from([start]);
    let mut todo = VecDeque::from([start]);
    while let Some(i) = todo.pop_front() {
        let branches = match &nodes[i].step {
            Step::Parallel(b) => b.as_slice(),
            _ => &[],
        };
        for &j in nodes[i].next.iter().map(|(_, j)| j).chain(branches) {
            if seen.insert(j) {
                todo.push_back(j);
            }
        }
    }
    seen
}

/// A parallel entry whose branches lead back to it (through other parallel
/// entries) would run itself inside itself. A depth-first walk without
/// recursion, each entry walked once however many entries list it.
fn check_parallel_cycles(nodes: &[PlanNode], at: &str) -> Result<(), String> {
    #[derive(Clone, Copy, PartialEq)]
    enum Seen {
        No,
        OnPath,
        Done,
    }
    let branches = |i: usize| match &nodes[i].step {
        Step::Parallel(b) => b.as_slice(),
        _ => &[],
    };
    let mut seen = vec![Seen::No; nodes.len()];
    for root in 0..nodes.len() {
        if seen[root] == Seen::Done {
            continue;
        }
        // Entries on the path from `root`, each with its next branch.
        let mut path = vec![(root, 0)];
        seen[root] = Seen::OnPath;
        while let Some((i, next)) = path.last_mut() {
            let Some(&b) = branches(*i).get(*next) else {
                seen[*i] = Seen::Done;
                path.pop();
                continue;
            };
            *next += 1;
            match seen[b] {
                Seen::Done => {}
                Seen::No => {
                    seen[b] = Seen::OnPath;
                    path.push((b, 0));
                }
                Seen::OnPath => {
                    let from = path.iter().position(|&(k, _)| k == b).unwrap_or(0);
                    let names: Vec<&str> = path[from..]
                        .iter()
                        .map(|&(k, _)| nodes[k].id.as_str())
                        .chain(std::iter::once(nodes[b].id.as_str()))
                        .collect();
                    return Err(format!(
                        "{at}: parallel entries contain each other: {}",
                        names.join(" -> ")
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(name: &str, kind: NodeKind) -> NodeSpec {
        NodeSpec {
            name: name.into(),
            kind,
            description: String::new(),
            fallback: false,
        }
    }

    fn catalog(docs: &[serde_json::Value]) -> Catalog {
        let mut c = Catalog {
            pools: vec![
                (
                    "py".into(),
                    vec![
                        spec("decide", NodeKind::Node),
                        spec("map", NodeKind::Batch),
                        spec("both", NodeKind::Node),
                    ],
                ),
                (
                    "ts".into(),
                    vec![spec("answer", NodeKind::Node), spec("both", NodeKind::Node)],
                ),
            ],
            flows: HashMap::new(),
        };
        for d in docs {
            let doc = Document::parse(d, "test").unwrap();
            c.flows.insert(doc.name.clone(), (doc, None));
        }
        c
    }

    fn err(doc: serde_json::Value) -> String {
        let name = doc["name"].as_str().unwrap().to_string();
        catalog(&[doc]).plan(&name).unwrap_err()
    }

    #[test]
    fn resolves_nodes_across_pools_and_nested_flows() {
        let c = catalog(&[
            json!({"name": "outer", "start": "d", "nodes": {
                "d": {"node": "decide"}, "a": {"node": "answer"}, "i": {"flow": "inner"},
                "p": {"parallel": ["a", "i"]}},
                "edges": [{"from": "d", "to": "p"}]}),
            json!({"name": "inner", "start": "m", "nodes": {"m": {"node": "map"}}}),
        ]);
        let plan = c.plan("outer").unwrap();
        let Step::Worker(w) = &plan.nodes[1].step else {
            panic!()
        };
        assert_eq!((w.pool, w.pool_name.as_str()), (1, "ts"));
        let Step::Flow(inner) = &plan.nodes[2].step else {
            panic!()
        };
        assert!(matches!(&inner.nodes[0].step, Step::Worker(w) if w.kind == NodeKind::Batch));
        assert_eq!(plan.next(0, "default"), Some(3));
        assert_eq!(plan.max_steps, DEFAULT_MAX_STEPS);
    }

    #[test]
    fn refuses_invalid_graphs_with_the_reason() {
        let base = |nodes: serde_json::Value, edges: serde_json::Value| json!({"name": "f", "start": "d", "nodes": nodes, "edges": edges});
        let cases = [
            (
                base(json!({"d": {"node": "nope"}}), json!([])),
                "no pool implements a node named \"nope\"",
            ),
            (
                base(
                    json!({"d": {"node": "decide"}}),
                    json!([{"from": "d", "to": "x"}]),
                ),
                "\"to\" \"x\" is not one of the flow's nodes",
            ),
            (
                json!({"name": "f", "start": "x", "nodes": {"d": {"node": "decide"}}}),
                "the start node \"x\" is not one of its nodes",
            ),
            (
                base(
                    json!({"d": {"node": "decide"}, "a": {"node": "answer"}}),
                    json!([]),
                ),
                "node a cannot be reached from the start node \"d\"",
            ),
            (
                base(json!({"d": {"node": "both"}}), json!([])),
                "pools py and ts all implement a node named \"both\"",
            ),
            (
                base(json!({"d": {"node": "decide", "pool": "go"}}), json!([])),
                "no pool named \"go\"",
            ),
            (
                base(json!({"d": {"flow": "f"}}), json!([])),
                "contains itself: f -> f",
            ),
            (
                base(json!({"d": {"flow": "g"}}), json!([])),
                "no flow named \"g\"",
            ),
            (
                base(json!({"d": {"parallel": ["d"]}}), json!([])),
                "cannot list itself",
            ),
            (
                base(
                    json!({"d": {"parallel": ["e"]}, "e": {"parallel": ["d"]}}),
                    json!([]),
                ),
                "parallel entries contain each other",
            ),
            (
                base(
                    json!({"d": {"node": "decide"}, "a": {"node": "answer"}}),
                    json!([{"from": "d", "to": "a"}, {"from": "d", "to": "d"}]),
                ),
                "already has an edge for action \"default\"",
            ),
        ];
        for (doc, expected) in cases {
            let e = err(doc);
            assert!(e.starts_with("flow \"f\""), "{e}");
            assert!(e.contains(expected), "{e:?} should contain {expected:?}");
        }
    }

    #[test]
    fn worker_flows_use_only_their_own_pool() {
        let nodes = vec![spec("decide", NodeKind::Node)];
        let ok = Document::parse(
            &json!({"name": "f", "start": "d", "nodes": {"d": {"node": "decide"}}}),
            "w",
        )
        .unwrap();
        assert!(check_worker_flows("py", &nodes, &[ok]).is_ok());
        let bad = Document::parse(
            &json!({"name": "f", "start": "d", "nodes": {"d": {"node": "answer"}}}),
            "w",
        )
        .unwrap();
        let e = check_worker_flows("py", &nodes, &[bad]).unwrap_err();
        assert!(
            e.contains("no pool implements a node named \"answer\""),
            "{e}"
        );
    }

    /// Runs `check` on another thread; a check that has not finished in a
    /// minute (it takes milliseconds) is taken for a hang.
    fn finishes<T: Send + 'static>(check: impl FnOnce() -> T + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || tx.send(check()));
        rx.recv_timeout(Duration::from_secs(60))
            .expect("the check did not finish in a minute (it takes milliseconds)")
    }

    #[test]
    fn parallel_entries_that_share_branches_are_checked_once_each() {
        // p0 and q0 both list p1 and q1, which both list p2 and q2, ...:
        // 2^40 paths through 82 entries.
        let depth = 40;
        let mut nodes = serde_json::Map::new();
        for i in 0..depth {
            let next = if i + 1 == depth {
                json!(["d"])
            } else {
                json!([format!("p{}", i + 1), format!("q{}", i + 1)])
            };
            nodes.insert(format!("p{i}"), json!({"parallel": next.clone()}));
            nodes.insert(format!("q{i}"), json!({"parallel": next}));
        }
        nodes.insert("d".into(), json!({"node": "decide"}));
        nodes.insert("s".into(), json!({"parallel": ["p0", "q0"]}));
        let c = catalog(&[json!({"name": "wide", "start": "s", "nodes": nodes})]);
        let plan = finishes(move || c.plan("wide").map(|p| p.nodes.len()));
        assert_eq!(plan, Ok(2 * depth + 2));
    }

    #[test]
    fn a_flow_nested_by_many_paths_is_planned_once() {
        // f0 runs f1 twice, f1 runs f2 twice, ...: 2^40 nested plans.
        let depth = 40;
        let mut docs: Vec<serde_json::Value> = (0..depth)
            .map(|i| {
                let sub = format!("f{}", i + 1);
                json!({"name": format!("f{i}"), "start": "a",
                    "nodes": {"a": {"flow": sub}, "b": {"flow": sub}},
                    "edges": [{"from": "a", "to": "b"}]})
            })
            .collect();
        docs.push(
            json!({"name": format!("f{depth}"), "start": "d", "nodes": {"d": {"node": "decide"}}}),
        );
        let c = catalog(&docs);
        let plan = finishes(move || c.plan("f0"));
        let plan = plan.unwrap();
        let (Step::Flow(a), Step::Flow(b)) = (&plan.nodes[0].step, &plan.nodes[1].step) else {
            panic!("{plan:?}")
        };
        assert!(Arc::ptr_eq(a, b), "the same flow is planned once");
    }

    #[test]
    fn flows_nested_deeper_than_the_limit_are_refused_without_overflowing_the_stack() {
        // A worker's hello may declare a chain of thousands of flows, each
        // running the next; planning it on a 2 MiB stack (a runtime
        // thread's) overflowed the stack and aborted flw.
        let chain = |depth: usize| -> Vec<serde_json::Value> {
            let mut docs: Vec<serde_json::Value> = (0..depth)
                .map(|i| {
                    json!({"name": format!("f{i}"), "start": "a",
                        "nodes": {"a": {"flow": format!("f{}", i + 1)}}})
                })
                .collect();
            docs.push(json!({"name": format!("f{depth}"), "start": "d", "nodes": {"d": {"node": "decide"}}}));
            docs
        };
        let plan = |depth: usize| {
            let c = catalog(&chain(depth));
            std::thread::Builder::new()
                .stack_size(2 << 20)
                .spawn(move || c.plan("f0").map(|_| ()))
                .unwrap()
                .join()
                .unwrap()
        };
        assert_eq!(plan(MAX_FLOW_DEPTH - 1), Ok(()));
        let e = plan(20_000).unwrap_err();
        assert!(
            e.contains(&format!("flows nest more than {MAX_FLOW_DEPTH} deep")),
            "{e}"
        );
    }

    #[test]
    fn a_worker_flow_that_many_flows_run_is_checked_once() {
        // 20,000 flows each run "big", a flow of 20,000 nodes: checking
        // each flow on its own rebuilt "big" every time (4 * 10^8 entries).
        let n = 20_000;
        let mut big = serde_json::Map::new();
        for i in 0..n {
            big.insert(format!("n{i}"), json!({"node": "decide"}));
        }
        let edges: Vec<_> = (1..n)
            .map(|i| json!({"from": format!("n{}", i - 1), "to": format!("n{i}")}))
            .collect();
        let mut docs = vec![Document::parse(
            &json!({"name": "big", "start": "n0", "nodes": big, "edges": edges}),
            "w",
        )
        .unwrap()];
        for i in 0..n {
            docs.push(
                Document::parse(
                    &json!({"name": format!("f{i}"), "start": "a", "nodes": {"a": {"flow": "big"}}}),
                    "w",
                )
                .unwrap(),
            );
        }
        let nodes = vec![spec("decide", NodeKind::Node)];
        assert_eq!(
            finishes(move || check_worker_flows("py", &nodes, &docs)),
            Ok(())
        );
    }
}
