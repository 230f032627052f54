//! A pool's tools as its workers announced them, with compiled validators
//! for their input schemas.

use std::collections::HashMap;

use flw_protocol::{ErrorKind, Hello, NodeSpec, ToolSpec};
use serde_json::{Map, Value};

use crate::call::{CallFailure, Job};
use crate::excerpt;
use crate::graph::Document;

/// Problems with a call's arguments listed in its error at most.
const MAX_PROBLEMS: usize = 10;

/// The tools of one pool and their argument validators, its graph nodes
/// and the flows its script defines.
pub struct Manifest {
    tools: Vec<ToolSpec>,
    validators: HashMap<String, jsonschema::Validator>,
    nodes: Vec<NodeSpec>,
    flows: Vec<Document>,
    /// The tools, then the flows as tools: what clients see.
    listed: Vec<ToolSpec>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("tools", &self.tools)
            .field("nodes", &self.nodes)
            .field("flows", &self.flows)
            .finish()
    }
}

/// Why a worker's announced tools, nodes and flows cannot be served.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ManifestError {
    /// A tool's input schema does not compile.
    #[error("the input schema of tool {tool:?} is not valid JSON Schema: {error}")]
    BadSchema {
        /// The tool.
        tool: String,
        /// The schema compiler's words.
        error: String,
    },
    /// A flow document in `hello.flows` does not parse.
    #[error(transparent)]
    BadFlow(#[from] flw_protocol::graph::DocumentError),
    /// Two flows have one name.
    #[error("the worker's hello: two flows are named {0:?}")]
    DuplicateFlow(String),
    /// A flow has a tool's name.
    #[error("the worker's hello: flow {0:?} has the name of a tool; flows and tools share one namespace")]
    FlowNamedLikeTool(String),
    /// A flow refers to nodes the worker does not have, or does not check
    /// (`protocol/GRAPHS.md`).
    #[error("{0}")]
    FlowCheck(String),
}

impl Manifest {
    /// Compiles every input schema; a schema that is not valid JSON Schema
    /// is an error naming the tool.
    pub fn new(tools: Vec<ToolSpec>) -> Result<Manifest, ManifestError> {
        let mut validators = HashMap::new();
        for t in &tools {
            let schema = Value::Object(t.input_schema.clone());
            let v = jsonschema::validator_for(&schema).map_err(|e| ManifestError::BadSchema {
                tool: t.name.clone(),
                error: e.to_string(),
            })?;
            validators.insert(t.name.clone(), v);
        }
        Ok(Manifest {
            listed: tools.clone(),
            tools,
            validators,
            nodes: Vec::new(),
            flows: Vec::new(),
        })
    }

    /// The manifest a worker announced in `hello` for pool `pool`: its
    /// tools, nodes and flows; a schema that does not compile or a flow
    /// that does not check (see `protocol/GRAPHS.md`) is an error naming it.
    pub fn from_hello(pool: &str, hello: &Hello) -> Result<Manifest, ManifestError> {
        let mut m = Manifest::new(hello.tools.clone())?;
        m.nodes = hello.nodes.clone().unwrap_or_default();
        for doc in hello.documents()? {
            if m.flows.iter().any(|d| d.name == doc.name) {
                return Err(ManifestError::DuplicateFlow(doc.name));
            }
            if m.tools.iter().any(|t| t.name == doc.name) {
                return Err(ManifestError::FlowNamedLikeTool(doc.name));
            }
            m.flows.push(doc);
        }
        crate::graph::check_worker_flows(pool, &m.nodes, &m.flows)
            .map_err(ManifestError::FlowCheck)?;
        m.listed.extend(m.flows.iter().map(Document::tool_spec));
        Ok(m)
    }

    /// Whether the worker announced the same tools, nodes and flows.
    pub fn same_as(&self, hello: &Hello) -> bool {
        self.tools == hello.tools
            && self.nodes.as_slice() == hello.nodes.as_deref().unwrap_or_default()
            && hello.documents().is_ok_and(|docs| docs == self.flows)
    }

    /// Whether `other` lists the same tools, nodes and flows.
    pub fn same_interface(&self, other: &Manifest) -> bool {
        self.tools == other.tools && self.nodes == other.nodes && self.flows == other.flows
    }

    /// The tools, then the flows as tools (see [`Document::tool_spec`]):
    /// what clients list.
    pub fn listed(&self) -> &[ToolSpec] {
        &self.listed
    }

    /// The graph nodes in the order the worker announced them.
    pub fn nodes(&self) -> &[NodeSpec] {
        &self.nodes
    }

    /// The flows the worker's script defines.
    pub fn flows(&self) -> &[Document] {
        &self.flows
    }

    /// Checks a job against this manifest: a tool's arguments against its
    /// schema, a node's name against the nodes.
    pub fn check<'a>(&self, job: Job<'a>) -> Result<Job<'a>, CallFailure> {
        match job {
            Job::Tool { tool, args } => Ok(Job::Tool {
                tool,
                args: self.validate(tool, args)?,
            }),
            Job::Node(n) => {
                if self.nodes.iter().any(|s| s.name == n.node) {
                    Ok(Job::Node(n))
                } else {
                    Err(CallFailure::new(
                        ErrorKind::UnknownTool,
                        format!("no graph node named {:?}", n.node),
                    ))
                }
            }
        }
    }

    /// The tools in the order the worker announced them.
    pub fn tools(&self) -> &[ToolSpec] {
        &self.tools
    }

    /// The tool called `name`.
    pub fn get(&self, name: &str) -> Option<&ToolSpec> {
        self.tools.iter().find(|t| t.name == name)
    }

    /// Checks `args` against the tool's input schema and hands them back;
    /// the error lists every problem with its place in the arguments.
    pub fn validate(
        &self,
        tool: &str,
        args: Map<String, Value>,
    ) -> Result<Map<String, Value>, CallFailure> {
        let Some(v) = self.validators.get(tool) else {
            return Err(CallFailure::new(
                ErrorKind::UnknownTool,
                format!("no tool named {}", excerpt::quote(tool)),
            ));
        };
        // Moved in and out of a `Value`, not cloned: this runs for every call.
        let instance = Value::Object(args);
        if v.is_valid(&instance) {
            let Value::Object(args) = instance else {
                unreachable!("built as an object above")
            };
            return Ok(args);
        }
        // The arguments are the client's: each problem quotes only an
        // excerpt of them, and only the first few problems are listed.
        let mut errors = v.iter_errors(&instance);
        let mut problems: Vec<String> = errors
            .by_ref()
            .take(MAX_PROBLEMS)
            .map(|e| {
                let value = excerpt::display(e.instance().as_ref(), excerpt::CHARS);
                let what = excerpt::display(&e.masked_with(value), 4 * excerpt::CHARS);
                let at = excerpt::display(e.instance_path(), excerpt::CHARS);
                if at.is_empty() {
                    what
                } else {
                    format!("{at}: {what}")
                }
            })
            .collect();
        if errors.next().is_some() {
            problems.push("and more".to_string());
        }
        Err(CallFailure::new(
            ErrorKind::InvalidArguments,
            format!("invalid arguments for tool {tool}: {}", problems.join("; ")),
        ))
    }
}
