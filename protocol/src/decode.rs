//! Decoding of one line into a message, with the error codes of `PROTOCOL.md`.

use serde_json::{Map, Number, Value};

use crate::message::*;
use crate::{is_valid_tool_name, MAX_CALL_ID};

/// Why a line could not be decoded (the codes of `PROTOCOL.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeErrorCode {
    /// The line exceeds the limit.
    LineTooLong,
    /// The line is not UTF-8.
    InvalidUtf8,
    /// The line is not JSON.
    InvalidJson,
    /// The JSON value is not an object.
    NotObject,
    /// No string `type` member.
    MissingType,
    /// A `type` this version does not define.
    UnknownType,
    /// A required member is absent.
    MissingField,
    /// A member has the wrong type or value.
    InvalidField,
}

impl DecodeErrorCode {
    /// The code as the vectors spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeErrorCode::LineTooLong => "line_too_long",
            DecodeErrorCode::InvalidUtf8 => "invalid_utf8",
            DecodeErrorCode::InvalidJson => "invalid_json",
            DecodeErrorCode::NotObject => "not_object",
            DecodeErrorCode::MissingType => "missing_type",
            DecodeErrorCode::UnknownType => "unknown_type",
            DecodeErrorCode::MissingField => "missing_field",
            DecodeErrorCode::InvalidField => "invalid_field",
        }
    }
}

/// A line that could not be decoded: a code and a message for a person.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct DecodeError {
    /// Machine-readable reason.
    pub code: DecodeErrorCode,
    /// What is wrong, naming the member or the limit.
    pub message: String,
}

impl DecodeError {
    fn new(code: DecodeErrorCode, message: impl Into<String>) -> Self {
        DecodeError {
            code,
            message: message.into(),
        }
    }

    /// The error for a line longer than `limit` bytes.
    pub fn line_too_long(limit: usize) -> Self {
        DecodeError::new(
            DecodeErrorCode::LineTooLong,
            format!("line exceeds the {limit}-byte limit"),
        )
    }
}

/// Decodes a line a worker sent (without its `\n`).
pub fn decode_worker_line(
    line: &[u8],
    max_line_bytes: usize,
) -> Result<WorkerMessage, DecodeError> {
    let (kind, mut obj) = parse_object(line, max_line_bytes)?;
    let mut f = Fields {
        obj: &mut obj,
        kind: &kind,
    };
    Ok(match kind.as_str() {
        "hello" => WorkerMessage::Hello(f.hello()?),
        "result" => WorkerMessage::Result(CallResult {
            id: f.id()?,
            value: f.take_required("value")?,
        }),
        "error" => WorkerMessage::Error(CallError {
            id: f.id()?,
            kind: {
                let s = f.string("kind")?;
                ErrorKind::parse(&s).ok_or_else(|| f.invalid("kind", "a known error kind"))?
            },
            message: f.string("message")?,
            traceback: f.opt_string("traceback")?,
        }),
        "progress" => WorkerMessage::Progress(Progress {
            id: f.id()?,
            progress: f.number("progress")?,
            total: f.opt_number("total")?,
            message: f.opt_string("message")?,
        }),
        "log" => WorkerMessage::Log(Log {
            level: {
                let s = f.string("level")?;
                LogLevel::parse(&s)
                    .ok_or_else(|| f.invalid("level", "one of debug, info, warning, error"))?
            },
            message: f.string("message")?,
            id: f.opt_id("id")?,
        }),
        "chunk" => WorkerMessage::Chunk(Chunk {
            id: f.id()?,
            data: f.take_required("data")?,
        }),
        "heartbeat" => WorkerMessage::Heartbeat(Heartbeat {
            seq: f.uint("seq")?,
        }),
        other => return Err(unknown_type(other, "worker")),
    })
}

/// Decodes a line the supervisor sent (without its `\n`).
pub fn decode_supervisor_line(
    line: &[u8],
    max_line_bytes: usize,
) -> Result<SupervisorMessage, DecodeError> {
    let (kind, mut obj) = parse_object(line, max_line_bytes)?;
    let mut f = Fields {
        obj: &mut obj,
        kind: &kind,
    };
    Ok(match kind.as_str() {
        "welcome" => SupervisorMessage::Welcome(Welcome {
            protocol: u32::try_from(f.uint("protocol")?)
                .map_err(|_| f.invalid("protocol", "a version number"))?,
        }),
        "call" => SupervisorMessage::Call(Call {
            id: f.id()?,
            tool: f.string("tool")?,
            args: f.object("args")?,
            deadline_ms: f.opt_uint("deadline_ms")?,
        }),
        "node" => SupervisorMessage::Node(Box::new(NodeCall {
            id: f.id()?,
            node: f.string("node")?,
            phase: {
                let s = f.string("phase")?;
                NodePhase::parse(&s)
                    .ok_or_else(|| f.invalid("phase", "one of run, prep, exec, post, fallback"))?
            },
            shared: f.optional("shared", |f, v| as_object(f, "shared", v))?,
            item: f.take("item")?,
            prep: f.take("prep")?,
            results: f.optional("results", |f, v| match v {
                Value::Array(items) => Ok(items),
                _ => Err(f.invalid("results", "an array")),
            })?,
            error: f.optional("error", |f, v| node_error(f, v))?,
            params: f.optional("params", |f, v| as_object(f, "params", v))?,
            deadline_ms: f.opt_uint("deadline_ms")?,
        })),
        "cancel" => SupervisorMessage::Cancel(Cancel { id: f.id()? }),
        "heartbeat" => SupervisorMessage::Heartbeat(Heartbeat {
            seq: f.uint("seq")?,
        }),
        "shutdown" => SupervisorMessage::Shutdown(Shutdown {
            reason: f.opt_string("reason")?,
        }),
        other => return Err(unknown_type(other, "supervisor")),
    })
}

fn unknown_type(kind: &str, from: &str) -> DecodeError {
    DecodeError::new(
        DecodeErrorCode::UnknownType,
        format!("unknown message type {kind:?} from the {from}"),
    )
}

fn parse_object(line: &[u8], max: usize) -> Result<(String, Map<String, Value>), DecodeError> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.len() > max {
        return Err(DecodeError::line_too_long(max));
    }
    let text = std::str::from_utf8(line).map_err(|e| {
        DecodeError::new(
            DecodeErrorCode::InvalidUtf8,
            format!("line is not UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        DecodeError::new(
            DecodeErrorCode::InvalidJson,
            format!("line is not JSON: {e}: {}", excerpt(text)),
        )
    })?;
    let Value::Object(mut obj) = value else {
        return Err(DecodeError::new(
            DecodeErrorCode::NotObject,
            format!("line is not a JSON object: {}", excerpt(text)),
        ));
    };
    match obj.shift_remove("type") {
        Some(Value::String(kind)) => Ok((kind, obj)),
        _ => Err(DecodeError::new(
            DecodeErrorCode::MissingType,
            format!("message has no string \"type\": {}", excerpt(text)),
        )),
    }
}

/// The first 120 characters of a line, for error messages.
fn excerpt(text: &str) -> String {
    const MAX: usize = 120;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

struct Fields<'a> {
    obj: &'a mut Map<String, Value>,
    kind: &'a str,
}

impl Fields<'_> {
    fn missing(&self, name: &str) -> DecodeError {
        DecodeError::new(
            DecodeErrorCode::MissingField,
            format!("{} message is missing \"{name}\"", self.kind),
        )
    }

    fn invalid(&self, name: &str, expected: &str) -> DecodeError {
        DecodeError::new(
            DecodeErrorCode::InvalidField,
            format!(
                "{} message has an invalid \"{name}\": expected {expected}",
                self.kind
            ),
        )
    }

    /// Takes an optional member; `null` is invalid (optional members are left out).
    fn take(&mut self, name: &str) -> Result<Option<Value>, DecodeError> {
        match self.obj.shift_remove(name) {
            Some(Value::Null) => {
                Err(self.invalid(name, "a value (leave the member out instead of null)"))
            }
            v => Ok(v),
        }
    }

    fn take_required(&mut self, name: &str) -> Result<Value, DecodeError> {
        self.obj
            .shift_remove(name)
            .ok_or_else(|| self.missing(name))
    }

    fn required<T>(
        &mut self,
        name: &str,
        get: impl FnOnce(&mut Self, Value) -> Result<T, DecodeError>,
    ) -> Result<T, DecodeError> {
        let v = self.take(name)?.ok_or_else(|| self.missing(name))?;
        get(self, v)
    }

    fn optional<T>(
        &mut self,
        name: &str,
        get: impl FnOnce(&mut Self, Value) -> Result<T, DecodeError>,
    ) -> Result<Option<T>, DecodeError> {
        match self.take(name)? {
            Some(v) => get(self, v).map(Some),
            None => Ok(None),
        }
    }

    fn string(&mut self, name: &str) -> Result<String, DecodeError> {
        self.required(name, |f, v| as_string(f, name, v))
    }

    fn opt_string(&mut self, name: &str) -> Result<Option<String>, DecodeError> {
        self.optional(name, |f, v| as_string(f, name, v))
    }

    fn uint(&mut self, name: &str) -> Result<u64, DecodeError> {
        self.required(name, |f, v| as_uint(f, name, v))
    }

    fn opt_uint(&mut self, name: &str) -> Result<Option<u64>, DecodeError> {
        self.optional(name, |f, v| as_uint(f, name, v))
    }

    fn id(&mut self) -> Result<u64, DecodeError> {
        self.required("id", |f, v| as_id(f, "id", v))
    }

    fn opt_id(&mut self, name: &str) -> Result<Option<u64>, DecodeError> {
        self.optional(name, |f, v| as_id(f, name, v))
    }

    fn number(&mut self, name: &str) -> Result<Number, DecodeError> {
        self.required(name, |f, v| as_number(f, name, v))
    }

    fn opt_number(&mut self, name: &str) -> Result<Option<Number>, DecodeError> {
        self.optional(name, |f, v| as_number(f, name, v))
    }

    fn object(&mut self, name: &str) -> Result<Map<String, Value>, DecodeError> {
        self.required(name, |f, v| as_object(f, name, v))
    }

    fn hello(&mut self) -> Result<Hello, DecodeError> {
        let protocol = self.required("protocol", |f, v| {
            let Value::Array(items) = v else {
                return Err(f.invalid("protocol", "a non-empty array of version numbers"));
            };
            let versions: Option<Vec<u32>> = items
                .iter()
                .map(|i| i.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect();
            match versions {
                Some(v) if !v.is_empty() => Ok(v),
                _ => Err(f.invalid("protocol", "a non-empty array of version numbers")),
            }
        })?;
        let sdk = self.string("sdk")?;
        let sdk_version = self.string("sdk_version")?;
        let runtime = self.opt_string("runtime")?;
        let pid = self.opt_uint("pid")?;
        let tools = self.required("tools", |f, v| {
            let Value::Array(items) = v else {
                return Err(f.invalid("tools", "an array of tool objects"));
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| tool_spec(i, item))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let mut names = std::collections::HashSet::new();
        if let Some(dup) = tools.iter().find(|t| !names.insert(t.name.as_str())) {
            return Err(self.invalid(
                "tools",
                &format!("unique tool names ({:?} appears twice)", dup.name),
            ));
        }
        let nodes = self.optional("nodes", |f, v| {
            let Value::Array(items) = v else {
                return Err(f.invalid("nodes", "an array of node objects"));
            };
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| node_spec(i, item))
                .collect::<Result<Vec<_>, _>>()
        })?;
        let mut names = std::collections::HashSet::new();
        if let Some(dup) = nodes
            .iter()
            .flatten()
            .find(|n| !names.insert(n.name.as_str()))
        {
            return Err(self.invalid(
                "nodes",
                &format!("unique node names ({:?} appears twice)", dup.name),
            ));
        }
        let flows = self.optional("flows", |f, v| {
            let Value::Array(items) = v else {
                return Err(f.invalid("flows", "an array of graph objects"));
            };
            items
                .into_iter()
                .map(|item| match item {
                    Value::Object(m) => Ok(m),
                    _ => Err(f.invalid("flows", "an array of graph objects")),
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(Hello {
            protocol,
            sdk,
            sdk_version,
            runtime,
            pid,
            tools,
            nodes,
            flows,
        })
    }
}

fn tool_spec(index: usize, item: Value) -> Result<ToolSpec, DecodeError> {
    let Value::Object(mut obj) = item else {
        return Err(DecodeError::new(
            DecodeErrorCode::InvalidField,
            format!("hello message has an invalid \"tools[{index}]\": expected an object"),
        ));
    };
    let kind = format!("hello message's tools[{index}]");
    let mut f = Fields {
        obj: &mut obj,
        kind: &kind,
    };
    let name = f.string("name")?;
    if !is_valid_tool_name(&name) {
        return Err(f.invalid(
            "name",
            &format!("1-128 characters of A-Z a-z 0-9 _ - . (got {name:?})"),
        ));
    }
    Ok(ToolSpec {
        description: f.string("description")?,
        input_schema: f.object("input_schema")?,
        output_schema: f.optional("output_schema", |f, v| as_object(f, "output_schema", v))?,
        name,
    })
}

fn node_spec(index: usize, item: Value) -> Result<NodeSpec, DecodeError> {
    let Value::Object(mut obj) = item else {
        return Err(DecodeError::new(
            DecodeErrorCode::InvalidField,
            format!("hello message has an invalid \"nodes[{index}]\": expected an object"),
        ));
    };
    let kind = format!("hello message's nodes[{index}]");
    let mut f = Fields {
        obj: &mut obj,
        kind: &kind,
    };
    let name = f.string("name").map_err(nested)?;
    if !is_valid_tool_name(&name) {
        return Err(f.invalid(
            "name",
            &format!("1-128 characters of A-Z a-z 0-9 _ - . (got {name:?})"),
        ));
    }
    let node_kind = match f.string("kind").map_err(nested)?.as_str() {
        "node" => NodeKind::Node,
        "batch" => NodeKind::Batch,
        "batch_flow" => NodeKind::BatchFlow,
        _ => return Err(f.invalid("kind", "node, batch or batch_flow")),
    };
    let fallback = f
        .optional("fallback", |f, v| match v {
            Value::Bool(b) => Ok(b),
            _ => Err(f.invalid("fallback", "true or absent")),
        })?
        .unwrap_or(false);
    Ok(NodeSpec {
        description: f.string("description").map_err(nested)?,
        name,
        kind: node_kind,
        fallback,
    })
}

/// A member missing inside an array item is an invalid member of the message.
fn nested(mut e: DecodeError) -> DecodeError {
    e.code = DecodeErrorCode::InvalidField;
    e
}

fn node_error(f: &Fields, v: Value) -> Result<NodeError, DecodeError> {
    let expected = "an object with string \"kind\" and \"message\"";
    let Value::Object(mut m) = v else {
        return Err(f.invalid("error", expected));
    };
    match (m.shift_remove("kind"), m.shift_remove("message")) {
        (Some(Value::String(kind)), Some(Value::String(message))) => {
            Ok(NodeError { kind, message })
        }
        _ => Err(f.invalid("error", expected)),
    }
}

fn as_string(f: &Fields, name: &str, v: Value) -> Result<String, DecodeError> {
    match v {
        Value::String(s) => Ok(s),
        _ => Err(f.invalid(name, "a string")),
    }
}

fn as_uint(f: &Fields, name: &str, v: Value) -> Result<u64, DecodeError> {
    match v.as_u64() {
        Some(n) if n <= MAX_CALL_ID => Ok(n),
        _ => Err(f.invalid(name, "an integer from 0 to 2^53-1")),
    }
}

fn as_id(f: &Fields, name: &str, v: Value) -> Result<u64, DecodeError> {
    match v.as_u64() {
        Some(id) if (1..=MAX_CALL_ID).contains(&id) => Ok(id),
        _ => Err(f.invalid(name, "an integer from 1 to 2^53-1")),
    }
}

fn as_number(f: &Fields, name: &str, v: Value) -> Result<Number, DecodeError> {
    match v {
        Value::Number(n) => Ok(n),
        _ => Err(f.invalid(name, "a number")),
    }
}

fn as_object(f: &Fields, name: &str, v: Value) -> Result<Map<String, Value>, DecodeError> {
    match v {
        Value::Object(m) => Ok(m),
        _ => Err(f.invalid(name, "an object")),
    }
}
