//! `flw tools SCRIPT`: the tools a script provides and their parameters.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

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
        return print(&out);
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
        let required: Vec<&str> = t
            .input_schema
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(Value::Object(props)) = t.input_schema.get("properties") {
            for (name, schema) in props {
                let mut line = format!("    {name}: {}", type_of(schema));
                if required.contains(&name.as_str()) {
                    line.push_str(" (required)");
                } else if let Some(d) = schema.get("default") {
                    line.push_str(&format!(" = {d}"));
                }
                if let Some(Value::String(d)) = schema.get("description") {
                    line.push_str(&format!("  {d}"));
                }
                writeln!(out, "{line}")?;
            }
        }
    }
    print(&out)
}

/// Writes `text` to stdout; a reader that went away (`flw tools | head`)
/// is not an error.
fn print(text: &str) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
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
