//! Fuzzes the input path of `flw mcp`: bytes on stdin, cut into lines and
//! decoded into client JSON-RPC messages by rmcp's stdio codec, exactly as
//! the server's transport receives them.
//!
//! [`feed`] is the one place that knows the path; when flw puts a layer of
//! its own in front of rmcp, point it there.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use rmcp::service::{RoleServer, RxJsonRpcMessage};
use rmcp::transport::async_rw::JsonRpcMessageCodec;
use tokio_util::codec::Decoder;

/// Feeds `input` to the decoder the way the transport reads stdin (as one
/// chunk, then end of input), returning the messages it yields.
fn feed(input: &[u8]) -> Vec<RxJsonRpcMessage<RoleServer>> {
    let mut codec = JsonRpcMessageCodec::<RxJsonRpcMessage<RoleServer>>::new_with_max_length(
        rmcp::transport::async_rw::DEFAULT_MAX_LINE_LENGTH,
    );
    let mut buf = BytesMut::from(input);
    let mut out = Vec::new();
    loop {
        let before = buf.len();
        // `Err` is a bad line: the server answers or ignores it and reads on;
        // `Ok(None)` a skipped line (a foreign notification) or no full line.
        if let Ok(Some(m)) = codec.decode(&mut buf) {
            out.push(m);
        }
        if buf.len() == before {
            break;
        }
    }
    if let Ok(Some(m)) = codec.decode_eof(&mut buf) {
        out.push(m);
    }
    out
}

fuzz_target!(|input: &[u8]| {
    for msg in feed(input) {
        // What the server does with a message it received: log and dispatch
        // it; both serialize parts of it.
        let _ = format!("{msg:?}");
        let _ = serde_json::to_string(&msg);
    }
});
