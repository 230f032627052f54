//! Fuzzes the input path of `flw mcp`: bytes on stdin, cut into lines and
//! decoded into client JSON-RPC messages by rmcp's stdio codec, exactly as
//! the server's transport receives them.
//!
//! flw reads stdin itself and classifies each line first
//! ([`classify_lines`], `flw::mcp::incoming::classify`); [`feed`] is rmcp's
//! own decoding of what it is passed.
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

/// The layer `flw mcp` puts in front of rmcp: each line is either passed
/// on or answered with a JSON-RPC error, which must serialize.
fn classify_lines(input: &[u8]) {
    use flw::mcp::incoming::{classify, Incoming};
    for line in input.split(|b| *b == b'\n') {
        match classify(line) {
            Incoming::Message(m) => {
                let _ = serde_json::to_string(&m);
            }
            Incoming::Reply(r) => {
                serde_json::to_string(&r).expect("an error reply serializes");
            }
            Incoming::Skip => {}
        }
    }
}

fuzz_target!(|input: &[u8]| {
    classify_lines(input);
    for msg in feed(input) {
        // What the server does with a message it received: log and dispatch
        // it; both serialize parts of it.
        let _ = format!("{msg:?}");
        let _ = serde_json::to_string(&msg);
    }
});
