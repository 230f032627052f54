//! Graph documents (`GRAPHS.md`, "The document"): the typed form of a flow
//! a worker's `hello.flows` or a graph file holds, parsed from JSON with
//! errors that name the flow, the member and the problem.
//!
//! Parsing checks shapes and values only; what the names refer to (nodes of
//! pools, other flows, reachability) is the supervisor's to check.

use serde_json::{Map, Value};

/// A document that does not parse: the message names where it came from,
/// the flow, the member and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DocumentError(pub String);

/// Default `max_steps` of a run.
pub const DEFAULT_MAX_STEPS: u64 = 10_000;
/// Default `backoff_ms`.
pub const DEFAULT_BACKOFF_MS: u64 = 100;

/// One flow as a document describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// The flow's name (also its MCP tool name).
    pub name: String,
    /// For people and models.
    pub description: Option<String>,
    /// The id of the first node.
    pub start: String,
    /// Node entries in document order.
    pub nodes: Vec<(String, Entry)>,
    /// Edges in document order.
    pub edges: Vec<Edge>,
    /// Most node visits a run may make (from the top flow's document).
    pub max_steps: Option<u64>,
    /// The whole run's time limit in milliseconds.
    pub deadline_ms: Option<u64>,
    /// Set for a batch flow: the graph runs once per parameter set.
    pub batch: Option<Batch>,
}

/// What makes a flow a batch flow (PocketFlow's `BatchFlow`): a node of
/// kind `batch_flow` whose `prep` gives the parameter sets and whose `post`
/// gives the flow's action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// The `batch_flow` node's name.
    pub node: String,
    /// The pool, when given.
    pub pool: Option<String>,
    /// Whether the runs overlap (`AsyncParallelBatchFlow`) or go one after
    /// another (`BatchFlow`, `AsyncBatchFlow`).
    pub concurrent: bool,
    /// Concurrent runs in flight at once (default: all).
    pub limit: Option<usize>,
}

/// A node entry: what runs, and the options that apply to it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// What the entry runs.
    pub target: Target,
    /// Retries, backoff, timeout, limit.
    pub options: Options,
}

/// What a node entry runs.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A node a worker implements, with the pool when the entry names one.
    Node {
        /// The node's name in its worker's manifest.
        name: String,
        /// The pool, when given.
        pool: Option<String>,
    },
    /// Another flow by name.
    FlowRef(String),
    /// A flow written inline.
    FlowInline(Box<Document>),
    /// Ids of this graph that run at the same time.
    Parallel(Vec<String>),
}

/// Per-entry options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Options {
    /// Attempts after a failed one.
    pub retries: u32,
    /// Wait before the first retry; doubles each time (capped at 30 s).
    pub backoff_ms: Option<u64>,
    /// Time one attempt may take.
    pub timeout_ms: Option<u64>,
    /// Batch items or parallel branches in flight at once.
    pub limit: Option<usize>,
}

/// An edge: `from` returned `action`, so `to` runs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    /// The node the edge leaves.
    pub from: String,
    /// The action that selects it.
    pub action: String,
    /// The node it leads to.
    pub to: String,
}

impl Document {
    /// Parses a document; `origin` says where it came from (a file, a
    /// worker) for error messages.
    pub fn parse(value: &Value, origin: &str) -> Result<Document, DocumentError> {
        let Value::Object(obj) = value else {
            return Err(DocumentError(format!(
                "{origin}: a flow must be a JSON object"
            )));
        };
        Document::parse_object(obj, origin)
    }

    /// [`Document::parse`] of an object (an item of `hello.flows`).
    pub fn parse_object(obj: &Map<String, Value>, origin: &str) -> Result<Document, DocumentError> {
        parse_doc(obj, origin).map_err(DocumentError)
    }

    /// How the flow is listed beside tools (MCP `tools/list`, `flw tools`):
    /// its arguments are the initial shared store, its result the final one.
    pub fn tool_spec(&self) -> crate::ToolSpec {
        let description = self.description.clone().unwrap_or_else(|| {
            format!(
                "Runs the flow {} (nodes: {}). The arguments are its initial shared store; the result is the final store.",
                self.name,
                self.nodes.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>().join(", ")
            )
        });
        let object = |description: &str| {
            let mut m = Map::new();
            m.insert("type".into(), "object".into());
            m.insert("description".into(), description.into());
            m
        };
        let mut input = object("The initial shared store of the run.");
        input.insert("additionalProperties".into(), true.into());
        crate::ToolSpec {
            name: self.name.clone(),
            description,
            input_schema: input,
            output_schema: Some(object("The final shared store.")),
        }
    }

    /// The entry with id `id`.
    pub fn entry(&self, id: &str) -> Option<&Entry> {
        self.nodes.iter().find(|(k, _)| k == id).map(|(_, e)| e)
    }
}

fn parse_doc(obj: &Map<String, Value>, origin: &str) -> Result<Document, String> {
    let name = match obj.get("name") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(format!("{origin}: \"name\" must be a string")),
        None => return Err(format!("{origin}: the flow has no \"name\"")),
    };
    let at = format!("{origin}: flow {name:?}");
    check_name(&name, &format!("{at}: the flow name"))?;
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "name"
                | "description"
                | "start"
                | "nodes"
                | "edges"
                | "max_steps"
                | "deadline_ms"
                | "batch"
        ) {
            return Err(format!(
                "{at}: unknown member {key:?} (a flow has name, description, start, nodes, edges, max_steps, deadline_ms, batch)"
            ));
        }
    }
    let description = match obj.get("description") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(format!("{at}: \"description\" must be a string")),
    };
    let start = match obj.get("start") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(format!("{at}: \"start\" must be a node id (a string)")),
        None => return Err(format!("{at}: no \"start\" node")),
    };
    let nodes = match obj.get("nodes") {
        Some(Value::Object(m)) if !m.is_empty() => m
            .iter()
            .map(|(id, v)| {
                check_name(id, &format!("{at}: node id"))?;
                Ok((id.clone(), parse_entry(v, &format!("{at}, node {id:?}"))?))
            })
            .collect::<Result<Vec<_>, String>>()?,
        Some(Value::Object(_)) | None => {
            return Err(format!("{at}: \"nodes\" is empty or missing"))
        }
        Some(_) => {
            return Err(format!(
                "{at}: \"nodes\" must be an object of node id -> entry"
            ))
        }
    };
    let edges = match obj.get("edges") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, e)| parse_edge(e, &format!("{at}, edges[{i}]")))
            .collect::<Result<Vec<_>, String>>()?,
        Some(_) => return Err(format!("{at}: \"edges\" must be an array")),
    };
    Ok(Document {
        max_steps: positive(obj.get("max_steps"), &format!("{at}: \"max_steps\""))?,
        deadline_ms: positive(obj.get("deadline_ms"), &format!("{at}: \"deadline_ms\""))?,
        batch: match obj.get("batch") {
            None => None,
            Some(v) => Some(parse_batch(v, &format!("{at}, \"batch\""))?),
        },
        name,
        description,
        start,
        nodes,
        edges,
    })
}

fn parse_entry(v: &Value, at: &str) -> Result<Entry, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "{at}: an entry must be an object with \"node\", \"flow\" or \"parallel\""
        ));
    };
    let kinds: Vec<&str> = ["node", "flow", "parallel"]
        .into_iter()
        .filter(|k| obj.contains_key(*k))
        .collect();
    if kinds.len() != 1 {
        return Err(format!(
            "{at}: an entry needs exactly one of \"node\", \"flow\", \"parallel\" (it has {})",
            if kinds.is_empty() {
                "none".to_string()
            } else {
                kinds.join(", ")
            }
        ));
    }
    for key in obj.keys() {
        if !matches!(
            key.as_str(),
            "node"
                | "pool"
                | "flow"
                | "parallel"
                | "retries"
                | "backoff_ms"
                | "timeout_ms"
                | "limit"
        ) {
            return Err(format!(
                "{at}: unknown member {key:?} (an entry has node, pool, flow or parallel, and retries, backoff_ms, timeout_ms, limit)"
            ));
        }
    }
    if obj.contains_key("pool") && kinds[0] != "node" {
        return Err(format!("{at}: \"pool\" only goes with \"node\""));
    }
    let target = match kinds[0] {
        "node" => Target::Node {
            name: match &obj["node"] {
                Value::String(s) => s.clone(),
                _ => return Err(format!("{at}: \"node\" must be a node name (a string)")),
            },
            pool: match obj.get("pool") {
                None => None,
                Some(Value::String(s)) => Some(s.clone()),
                Some(_) => return Err(format!("{at}: \"pool\" must be a pool name (a string)")),
            },
        },
        "flow" => match &obj["flow"] {
            Value::String(s) => Target::FlowRef(s.clone()),
            Value::Object(m) => Target::FlowInline(Box::new(parse_doc(m, at)?)),
            _ => {
                return Err(format!(
                    "{at}: \"flow\" must be a flow name or an inline flow object"
                ))
            }
        },
        _ => match &obj["parallel"] {
            Value::Array(items) if !items.is_empty() => Target::Parallel(
                items
                    .iter()
                    .map(|i| match i {
                        Value::String(s) => Ok(s.clone()),
                        _ => Err(format!("{at}: \"parallel\" must list node ids (strings)")),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Value::Array(_) => return Err(format!("{at}: \"parallel\" has no branches")),
            _ => return Err(format!("{at}: \"parallel\" must be an array of node ids")),
        },
    };
    let retries = match obj.get("retries") {
        None => 0,
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| format!("{at}: \"retries\" must be a whole number, 0 or more"))?,
    };
    let backoff_ms = match obj.get("backoff_ms") {
        None => None,
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| format!("{at}: \"backoff_ms\" must be a whole number, 0 or more"))?,
        ),
    };
    Ok(Entry {
        target,
        options: Options {
            retries,
            backoff_ms,
            timeout_ms: positive(obj.get("timeout_ms"), &format!("{at}: \"timeout_ms\""))?,
            limit: positive(obj.get("limit"), &format!("{at}: \"limit\""))?
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
        },
    })
}

fn parse_batch(v: &Value, at: &str) -> Result<Batch, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "{at}: must be an object {{\"node\": ..., \"concurrent\": ..., \"limit\": ...}}"
        ));
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "node" | "pool" | "concurrent" | "limit") {
            return Err(format!(
                "{at}: unknown member {key:?} (a batch has node, pool, concurrent, limit)"
            ));
        }
    }
    let string = |k: &str| match obj.get(k) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("{at}: \"{k}\" must be a string")),
    };
    Ok(Batch {
        node: string("node")?.ok_or_else(|| {
            format!("{at}: no \"node\" (the batch_flow node that gives the parameter sets)")
        })?,
        pool: string("pool")?,
        concurrent: match obj.get("concurrent") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(format!("{at}: \"concurrent\" must be true or false")),
        },
        limit: positive(obj.get("limit"), &format!("{at}: \"limit\""))?
            .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
    })
}

fn parse_edge(v: &Value, at: &str) -> Result<Edge, String> {
    let Value::Object(obj) = v else {
        return Err(format!(
            "{at}: an edge must be an object {{\"from\": ..., \"to\": ..., \"action\": ...}}"
        ));
    };
    let field = |k: &str| match obj.get(k) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None => Ok(None),
        Some(_) => Err(format!("{at}: \"{k}\" must be a string")),
    };
    for key in obj.keys() {
        if !matches!(key.as_str(), "from" | "to" | "action") {
            return Err(format!(
                "{at}: unknown member {key:?} (an edge has from, to, action)"
            ));
        }
    }
    Ok(Edge {
        from: field("from")?.ok_or_else(|| format!("{at}: the edge has no \"from\""))?,
        to: field("to")?.ok_or_else(|| format!("{at}: the edge has no \"to\""))?,
        action: field("action")?.unwrap_or_else(|| "default".into()),
    })
}

fn positive(v: Option<&Value>, what: &str) -> Result<Option<u64>, String> {
    match v {
        None => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if n >= 1 => Ok(Some(n)),
            _ => Err(format!("{what} must be a whole number, 1 or more")),
        },
    }
}

fn check_name(name: &str, what: &str) -> Result<(), String> {
    if crate::is_valid_tool_name(name) {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?} must be 1-128 characters of A-Z a-z 0-9 _ - ."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_every_kind_of_entry_and_defaults_the_action() {
        let d = Document::parse(
            &json!({
                "name": "agent", "start": "a",
                "nodes": {
                    "a": {"node": "decide", "retries": 2, "backoff_ms": 5, "timeout_ms": 100},
                    "b": {"flow": "inner"},
                    "c": {"flow": {"name": "x", "start": "y", "nodes": {"y": {"node": "y"}}}},
                    "d": {"parallel": ["a", "b"], "limit": 2}
                },
                "edges": [{"from": "a", "to": "b"}, {"from": "b", "to": "c", "action": "go"}],
                "max_steps": 5
            }),
            "test",
        )
        .unwrap();
        assert_eq!(d.nodes.len(), 4);
        assert_eq!(d.edges[0].action, "default");
        assert_eq!(d.entry("a").unwrap().options.retries, 2);
        assert_eq!(d.entry("d").unwrap().options.limit, Some(2));
        assert!(matches!(
            d.entry("c").unwrap().target,
            Target::FlowInline(_)
        ));
        assert_eq!(d.max_steps, Some(5));
        assert_eq!(d.batch, None);
    }

    #[test]
    fn parses_a_batch_flow() {
        let d = Document::parse(
            &json!({
                "name": "each", "start": "a", "nodes": {"a": {"node": "a"}},
                "batch": {"node": "Each", "concurrent": true, "limit": 3}
            }),
            "test",
        )
        .unwrap();
        assert_eq!(
            d.batch,
            Some(Batch {
                node: "Each".into(),
                pool: None,
                concurrent: true,
                limit: Some(3)
            })
        );
        let err = Document::parse(
            &json!({"name": "each", "start": "a", "nodes": {"a": {"node": "a"}}, "batch": {"node": "Each", "concurrent": 1}}),
            "test",
        )
        .unwrap_err();
        assert!(
            err.0.contains("\"concurrent\" must be true or false"),
            "{err}"
        );
    }

    #[test]
    fn errors_name_the_flow_the_place_and_the_problem() {
        let cases = [
            (
                json!({"start": "a", "nodes": {"a": {"node": "a"}}}),
                "no \"name\"",
            ),
            (
                json!({"name": "f", "start": "a", "nodes": {}}),
                "\"nodes\" is empty",
            ),
            (
                json!({"name": "f", "start": "a", "nodes": {"a": {"node": "a", "flow": "g"}}}),
                "flow \"f\", node \"a\": an entry needs exactly one",
            ),
            (
                json!({"name": "f", "start": "a", "nodes": {"a": {"node": "a", "retries": -1}}}),
                "\"retries\" must be a whole number",
            ),
            (
                json!({"name": "f", "start": "a", "nodes": {"a": {"node": "a"}}, "edges": [{"to": "a"}]}),
                "edges[0]: the edge has no \"from\"",
            ),
            (
                json!({"name": "f", "start": "a", "nodes": {"a": {"parallel": []}}}),
                "\"parallel\" has no branches",
            ),
            (
                json!({"name": "f g", "start": "a", "nodes": {"a": {"node": "a"}}}),
                "must be 1-128 characters",
            ),
            (
                json!({"name": "f", "start": "a", "nodes": {"a": {"node": "a", "tries": 1}}}),
                "unknown member \"tries\"",
            ),
        ];
        for (doc, expected) in cases {
            let err = Document::parse(&doc, "graph.json").unwrap_err().0;
            assert!(err.starts_with("graph.json"), "{err}");
            assert!(
                err.contains(expected),
                "{err:?} should contain {expected:?}"
            );
        }
    }
}
