//! What flw does with each line an MCP client sends on stdio: a message
//! rmcp can take goes on to it; any other line gets its JSON-RPC error here,
//! so that no request is left without an answer.
//!
//! - not JSON, not UTF-8, a lone surrogate, a number out of range such as
//!   `1e400`: `-32700 Parse error`, with the request's id when a lenient
//!   scan of the line finds one ([`super::id_scan`]), else `null`;
//! - JSON that is not a valid request: `-32600 Invalid Request`, with its
//!   id when it has a valid one;
//! - a standard method whose `params` do not fit (rmcp would take it for a
//!   custom method and answer `-32601`): `-32602 Invalid params`.
//!
//! Replies to responses are never sent: a response flw cannot read is
//! dropped (answering it could start an error storm with a peer that
//! answers errors too).

#[allow(deprecated)] // logging/setLevel: see client_log
use rmcp::model::SetLevelRequestMethod;
use rmcp::model::{
    CallToolRequestMethod, CallToolRequestParams, CancelTaskMethod, ClientJsonRpcMessage,
    ClientRequest, CompleteRequestMethod, ConstString, DiscoverRequestMethod, ErrorCode,
    GetPromptRequestMethod, GetSkillRequestMethod, GetTaskMethod, InitializeResultMethod,
    JsonRpcMessage, JsonRpcRequest, ListPromptsRequestMethod, ListResourceTemplatesRequestMethod,
    ListResourcesRequestMethod, ListSkillsRequestMethod, ListToolsRequestMethod, PingRequestMethod,
    ReadResourceDirectoryRequestMethod, ReadResourceRequestMethod, RequestId,
    SubscribeRequestMethod, SubscriptionsListenRequestMethod, UnsubscribeRequestMethod,
    UpdateTaskMethod,
};
use serde::ser::{Serialize, SerializeStruct, Serializer};
use serde_json::Value;

use super::id_scan::scan_id;

/// What to do with one line from the client.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // matched at once; a box would cost an allocation per message
pub enum Incoming {
    /// A message for rmcp.
    Message(ClientJsonRpcMessage),
    /// Not for rmcp: answer with this error.
    Reply(ErrorReply),
    /// Nothing to do (an empty line, a response flw cannot read).
    Skip,
}

/// A JSON-RPC error answer that flw writes itself. Unlike rmcp's, its `id`
/// is `null` when the request's id is not known, as JSON-RPC 2.0 asks.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorReply {
    /// The request's id, when known.
    pub id: Option<RequestId>,
    /// `-32700`, `-32600` or `-32602`.
    pub code: ErrorCode,
    /// What was wrong, and what to send instead.
    pub message: String,
}

impl Serialize for ErrorReply {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(serde::Serialize)]
        struct Error<'a> {
            code: i32,
            message: &'a str,
        }
        let mut m = s.serialize_struct("ErrorReply", 3)?;
        m.serialize_field("jsonrpc", "2.0")?;
        m.serialize_field("id", &self.id)?;
        m.serialize_field(
            "error",
            &Error {
                code: self.code.0,
                message: &self.message,
            },
        )?;
        m.end()
    }
}

impl ErrorReply {
    fn parse_error(id: Option<RequestId>, what: impl std::fmt::Display) -> ErrorReply {
        ErrorReply {
            id,
            code: ErrorCode::PARSE_ERROR,
            message: format!(
                "Parse error: {what}; send one JSON-RPC message per line, as UTF-8 JSON"
            ),
        }
    }

    fn invalid_request(id: Option<RequestId>, what: impl std::fmt::Display) -> ErrorReply {
        ErrorReply {
            id,
            code: ErrorCode::INVALID_REQUEST,
            message: format!("Invalid Request: {what}"),
        }
    }

    /// The answer to a line longer than `limit` bytes.
    pub fn too_long(id: Option<RequestId>, limit: usize) -> ErrorReply {
        ErrorReply::parse_error(
            id,
            format!(
                "the message is longer than the limit of {limit} bytes per line and was dropped unread; send smaller arguments"
            ),
        )
    }

    /// The answer to a request whose id is the id of one still in flight.
    pub fn duplicate(id: RequestId) -> ErrorReply {
        ErrorReply::invalid_request(
            Some(id.clone()),
            format!(
                "request id {} is already in flight; the first request with it goes on, this one was not run. Use a new id for each request",
                json_id(&id)
            ),
        )
    }
}

/// An id as it appears in JSON, for messages.
fn json_id(id: &RequestId) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

/// Decides what to do with one line (without its `\n`).
pub fn classify(line: &[u8]) -> Incoming {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Incoming::Skip;
    }
    match serde_json::from_slice::<ClientJsonRpcMessage>(line) {
        Ok(JsonRpcMessage::Request(JsonRpcRequest {
            id,
            request: ClientRequest::CustomRequest(custom),
            ..
        })) if has_typed_params(&custom.method) => {
            Incoming::Reply(invalid_params(id, &custom.method, line))
        }
        Ok(message) => Incoming::Message(message),
        Err(e) => match e.classify() {
            serde_json::error::Category::Data => invalid_request(line, &e),
            _ => Incoming::Reply(not_json(line, &e)),
        },
    }
}

/// The `-32700` answer to a line that is not JSON.
fn not_json(line: &[u8], e: &serde_json::Error) -> ErrorReply {
    let id = scan_id(line);
    match std::str::from_utf8(line) {
        Err(bad) => ErrorReply::parse_error(
            id,
            format!(
                "the message is not valid UTF-8 (byte {} of the line)",
                bad.valid_up_to() + 1
            ),
        ),
        Ok(_) => ErrorReply::parse_error(id, format!("the message is not valid JSON: {e}")),
    }
}

/// The answer to JSON that is not a message rmcp can take.
fn invalid_request(line: &[u8], e: &serde_json::Error) -> Incoming {
    let Ok(value) = serde_json::from_slice::<Value>(line) else {
        return Incoming::Reply(not_json(line, e));
    };
    let Value::Object(obj) = value else {
        return Incoming::Reply(ErrorReply::invalid_request(
            None,
            "a message must be a JSON object (batches are not supported)",
        ));
    };
    let method = obj.get("method");
    if method.is_none() && (obj.contains_key("result") || obj.contains_key("error")) {
        tracing::debug!("dropping a response from the client that is not valid: {e}");
        return Incoming::Skip;
    }
    let id = obj
        .get("id")
        .and_then(|v| serde_json::from_value::<RequestId>(v.clone()).ok());
    let what = if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        r#""jsonrpc" must be "2.0""#.to_string()
    } else if method.is_none() {
        r#"the message has no "method""#.to_string()
    } else if !method.is_some_and(Value::is_string) {
        r#""method" must be a string"#.to_string()
    } else if obj.contains_key("id") && id.is_none() {
        r#""id" must be a string or an integer"#.to_string()
    } else if obj.contains_key("result") || obj.contains_key("error") {
        r#"a request cannot have "result" or "error""#.to_string()
    } else if let (Some(id), Some(method)) = (id.clone(), method.and_then(Value::as_str)) {
        // A request whose params rmcp cannot read even as a custom one's.
        return Incoming::Reply(if has_typed_params(method) {
            invalid_params(id, method, line)
        } else {
            ErrorReply {
                id: Some(id),
                code: ErrorCode::METHOD_NOT_FOUND,
                message: format!("Method not found: {method}"),
            }
        });
    } else {
        format!("not a JSON-RPC 2.0 message: {e}")
    };
    Incoming::Reply(ErrorReply::invalid_request(id, what))
}

/// Whether rmcp reads `method`'s params into a type of its own: a request
/// of such a method that it reads as a custom one had params that do not fit.
fn has_typed_params(method: &str) -> bool {
    #[allow(deprecated)] // logging/setLevel: see client_log
    let set_level = SetLevelRequestMethod::VALUE;
    [
        CallToolRequestMethod::VALUE,
        ListToolsRequestMethod::VALUE,
        InitializeResultMethod::VALUE,
        DiscoverRequestMethod::VALUE,
        PingRequestMethod::VALUE,
        CompleteRequestMethod::VALUE,
        set_level,
        GetPromptRequestMethod::VALUE,
        ListPromptsRequestMethod::VALUE,
        ListResourcesRequestMethod::VALUE,
        ListResourceTemplatesRequestMethod::VALUE,
        ReadResourceRequestMethod::VALUE,
        ReadResourceDirectoryRequestMethod::VALUE,
        SubscriptionsListenRequestMethod::VALUE,
        SubscribeRequestMethod::VALUE,
        UnsubscribeRequestMethod::VALUE,
        GetTaskMethod::VALUE,
        UpdateTaskMethod::VALUE,
        CancelTaskMethod::VALUE,
        ListSkillsRequestMethod::VALUE,
        GetSkillRequestMethod::VALUE,
    ]
    .contains(&method)
}

/// The `-32602` answer to a standard method whose params do not fit;
/// `line` is the request.
fn invalid_params(id: RequestId, method: &str, line: &[u8]) -> ErrorReply {
    /// The params of `tools/call`, read from the line again for serde's
    /// account of what is wrong with them.
    #[derive(serde::Deserialize)]
    struct ToolsCall {
        #[allow(dead_code)] // read for its errors only
        params: CallToolRequestParams,
    }
    let message = if method == CallToolRequestMethod::VALUE {
        let why = match serde_json::from_slice::<ToolsCall>(line) {
            Err(e) => e.to_string(),
            Ok(_) => "they do not fit".to_string(),
        };
        format!(
            r#"Invalid params for tools/call: {why}; send {{"name": "TOOL", "arguments": {{...}}}}"#
        )
    } else {
        format!("Invalid params for {method}: they do not match the MCP specification")
    };
    ErrorReply {
        id: Some(id),
        code: ErrorCode::INVALID_PARAMS,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(line: &[u8]) -> ErrorReply {
        match classify(line) {
            Incoming::Reply(r) => r,
            other => panic!("{} gave {other:?}", String::from_utf8_lossy(line)),
        }
    }

    fn num(n: i64) -> Option<RequestId> {
        Some(RequestId::Number(n))
    }

    #[test]
    fn requests_rmcp_reads_go_on_to_it() {
        for line in [
            &br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#[..],
            br#"{"jsonrpc":"2.0","id":"a","method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}"#,
            br#"{"jsonrpc":"2.0","id":2,"method":"no/such/method"}"#,
            br#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#,
            b"\xEF\xBB\xBF{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"ping\"}\r",
        ] {
            assert!(matches!(classify(line), Incoming::Message(_)), "{}", String::from_utf8_lossy(line));
        }
        assert!(matches!(classify(b"  \r"), Incoming::Skip));
    }

    #[test]
    fn lines_that_are_not_json_are_parse_errors_with_the_id_when_it_can_be_found() {
        let cases: [(&[u8], Option<RequestId>, &str); 5] = [
            (br#"{"jsonrpc":"2.0","id":1,"method":"tools/list""#, num(1), "not valid JSON"),
            (b"\xff\xfe", None, "not valid UTF-8 (byte 1 of the line)"),
            (
                b"{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":{\"text\":\"\xff\"}}}",
                num(2),
                "not valid UTF-8",
            ),
            (
                br#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"text":"\ud800"}},"id":3}"#,
                num(3),
                "hex escape",
            ),
            (
                br#"{"jsonrpc":"2.0","id":"four","method":"tools/call","params":{"name":"echo","arguments":{"text":1e400}}}"#,
                Some(RequestId::String("four".into())),
                "number out of range",
            ),
        ];
        for (line, id, text) in cases {
            let r = reply(line);
            assert_eq!(r.code, ErrorCode::PARSE_ERROR);
            assert_eq!(r.id, id);
            assert!(r.message.contains(text), "{}", r.message);
        }
    }

    #[test]
    fn json_that_is_not_a_request_is_an_invalid_request_with_its_id() {
        let cases: [(&[u8], Option<RequestId>, &str); 8] = [
            (b"[1,2]", None, "batches"),
            (b"42", None, "must be a JSON object"),
            (
                br#"{"id":10,"method":"tools/list"}"#,
                num(10),
                r#""jsonrpc" must be "2.0""#,
            ),
            (
                br#"{"jsonrpc":"1.0","id":11,"method":"tools/list"}"#,
                num(11),
                "jsonrpc",
            ),
            (br#"{"jsonrpc":"2.0","id":12}"#, num(12), r#"no "method""#),
            (
                br#"{"jsonrpc":"2.0","id":13,"method":5}"#,
                num(13),
                "must be a string",
            ),
            (
                br#"{"jsonrpc":"2.0","id":1.5,"method":"tools/list"}"#,
                None,
                r#""id" must be"#,
            ),
            (
                br#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/list"}"#,
                None,
                r#""id" must be"#,
            ),
        ];
        for (line, id, text) in cases {
            let r = reply(line);
            assert_eq!(r.code, ErrorCode::INVALID_REQUEST, "{}", r.message);
            assert_eq!(r.id, id);
            assert!(r.message.contains(text), "{}", r.message);
        }
        // A response flw cannot read gets no answer.
        assert!(matches!(
            classify(br#"{"jsonrpc":"2.0","id":1,"error":"x"}"#),
            Incoming::Skip
        ));
    }

    #[test]
    fn wrong_params_of_a_standard_method_are_invalid_params() {
        for (line, text) in [
            (&br#"{"jsonrpc":"2.0","id":5,"method":"tools/call"}"#[..], "missing field `params`"),
            (br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"a","name":"b"}}"#, "duplicate field `name`"),
            (br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"arguments":{}}}"#, "missing field `name`"),
            (br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":5}}"#, "invalid type"),
            (br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"e","arguments":[1]}}"#, "invalid type"),
            (br#"{"jsonrpc":"2.0","id":5,"method":"tools/call","params":[1]}"#, "invalid type"),
            (br#"{"jsonrpc":"2.0","id":5,"method":"prompts/get","params":{}}"#, "prompts/get"),
        ] {
            let r = reply(line);
            assert_eq!((r.code, r.id.clone()), (ErrorCode::INVALID_PARAMS, num(5)), "{}", r.message);
            assert!(r.message.contains(text), "{}", r.message);
        }
    }

    #[test]
    fn replies_always_carry_an_id_even_a_null_one() {
        let r = ErrorReply::too_long(None, 16);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["id"], Value::Null);
        assert_eq!(json["jsonrpc"], "2.0");
        assert_eq!(json["error"]["code"], -32700);
        let dup =
            serde_json::to_value(ErrorReply::duplicate(RequestId::String("x".into()))).unwrap();
        assert_eq!(dup["id"], "x");
        assert!(dup["error"]["message"]
            .as_str()
            .unwrap()
            .contains(r#"request id "x" is already in flight"#));
    }
}
