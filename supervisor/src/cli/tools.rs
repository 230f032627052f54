//! `flw tools SCRIPT`: the tools a script provides and their parameters.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::router::Router;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: super::Target,
    /// Print the tool manifest as JSON (name, description, input_schema, output_schema).
    #[arg(long)]
    json: bool,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    crate::logging::init("warn,flw::pool=off");
    let router = Router::start(args.target.load_one_each()?);
    let tools = router.tools().await;
    router.shutdown(Duration::ZERO).await;
    let tools = match tools {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let mut out = String::new();
    if args.json {
        out = serde_json::to_string_pretty(&tools)?;
        out.push('\n');
        return super::print_stdout(&out);
    }
    if tools.is_empty() {
        writeln!(
            out,
            "{} defines no tools (decorate functions with @tool)",
            args.target.target.display()
        )?;
    }
    for t in &tools {
        let first = t.description.lines().next().unwrap_or("");
        writeln!(
            out,
            "{}{}",
            t.name,
            if first.is_empty() {
                String::new()
            } else {
                format!("  {first}")
            }
        )?;
        parameters(&mut out, &t.input_schema, 1);
    }
    super::print_stdout(&out)
}

/// Deepest nesting of object fields shown; deeper ones are elided.
const MAX_DEPTH: usize = 8;

/// One line per property of the object `schema` (name, type, required or
/// default, description), indented by `depth`; the fields of a property
/// that is an object (a dataclass, a TypedDict; or a list or union of
/// them) follow on lines of their own, indented one step more.
fn parameters(out: &mut String, schema: &Map<String, Value>, depth: usize) {
    let Some(Value::Object(props)) = schema.get("properties") else {
        return;
    };
    let indent = "  ".repeat(depth + 1);
    if depth > MAX_DEPTH {
        out.push_str(&format!("{indent}...\n"));
        return;
    }
    let required: Vec<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    for (name, prop) in props {
        let mut line = format!("{indent}{name}: {}", type_of(prop));
        if required.contains(&name.as_str()) {
            line.push_str(" (required)");
        } else if let Some(d) = prop.get("default") {
            line.push_str(&format!(" = {d}"));
        }
        if let Some(Value::String(d)) = prop.get("description") {
            line.push_str(&format!("  {d}"));
        }
        out.push_str(&line);
        out.push('\n');
        if let Some(object) = object_in(prop) {
            parameters(out, object, depth + 1);
        }
    }
}

/// The object schema with fields that `schema` is, holds a list of, or
/// offers as an option.
fn object_in(schema: &Value) -> Option<&Map<String, Value>> {
    if schema.get("properties").is_some() {
        return schema.as_object();
    }
    if let Some(items) = schema.get("items") {
        return object_in(items);
    }
    schema
        .get("anyOf")
        .and_then(Value::as_array)
        .and_then(|options| options.iter().find_map(object_in))
}

/// A short type name for a property schema: `string`, `integer | null`, ….
fn type_of(schema: &Value) -> String {
    if let Some(t) = schema.get("type") {
        return match t {
            Value::String(s) if s == "array" => match schema.get("items") {
                Some(items) => format!("array of {}", type_of(items)),
                None => "array".into(),
            },
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
    }
    if let Some(Value::Array(options)) = schema.get("anyOf") {
        return options.iter().map(type_of).collect::<Vec<_>>().join(" | ");
    }
    if let Some(Value::Array(values)) = schema.get("enum") {
        return values
            .iter()
            .map(Value::to_string)
            .collect::<Vec<_>>()
            .join(" | ");
    }
    "any".into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_parameters_show_their_fields() {
        let point = serde_json::json!({
            "type": "object",
            "properties": {"x": {"type": "integer"}, "y": {"type": "number", "default": 0.0}},
            "required": ["x"],
        });
        let schema = serde_json::json!({
            "type": "object",
            "properties": {
                "p": point,
                "path": {"type": "array", "items": point, "description": "Points to visit."},
                "maybe": {"anyOf": [point, {"type": "null"}], "default": null},
            },
            "required": ["p"],
        });
        let mut out = String::new();
        parameters(&mut out, schema.as_object().unwrap(), 1);
        assert_eq!(
            out,
            "    p: object (required)\n      x: integer (required)\n      y: number = 0.0\n\
             \x20   path: array of object  Points to visit.\n      x: integer (required)\n      y: number = 0.0\n\
             \x20   maybe: object | null = null\n      x: integer (required)\n      y: number = 0.0\n"
        );
    }
}
