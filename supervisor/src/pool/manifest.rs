//! A pool's tools as its workers announced them, with compiled validators
//! for their input schemas.

use std::collections::HashMap;

use flw_protocol::{ErrorKind, ToolSpec};
use serde_json::{Map, Value};

use crate::call::CallFailure;

/// The tools of one pool and their argument validators.
pub struct Manifest {
    tools: Vec<ToolSpec>,
    validators: HashMap<String, jsonschema::Validator>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("tools", &self.tools)
            .finish()
    }
}

impl Manifest {
    /// Compiles every input schema; a schema that is not valid JSON Schema
    /// is an error naming the tool.
    pub fn new(tools: Vec<ToolSpec>) -> Result<Manifest, String> {
        let mut validators = HashMap::new();
        for t in &tools {
            let schema = Value::Object(t.input_schema.clone());
            let v = jsonschema::validator_for(&schema).map_err(|e| {
                format!(
                    "the input schema of tool {:?} is not valid JSON Schema: {e}",
                    t.name
                )
            })?;
            validators.insert(t.name.clone(), v);
        }
        Ok(Manifest { tools, validators })
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
                format!("no tool named {tool:?}"),
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
        let problems: Vec<String> = v
            .iter_errors(&instance)
            .map(|e| {
                let at = e.instance_path().to_string();
                if at.is_empty() {
                    e.to_string()
                } else {
                    format!("{at}: {e}")
                }
            })
            .collect();
        Err(CallFailure::new(
            ErrorKind::InvalidArguments,
            format!("invalid arguments for tool {tool}: {}", problems.join("; ")),
        ))
    }
}
