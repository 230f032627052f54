//! Fuzzes the worker protocol's line decoder in both directions, and checks
//! that whatever decodes survives an encode -> decode round trip unchanged.
#![no_main]

use flw_protocol::{
    decode_supervisor_line, decode_worker_line, WorkerMessage, DEFAULT_MAX_LINE_BYTES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    // What a worker sends: the supervisor's reader path.
    if let Ok(msg) = decode_worker_line(line, DEFAULT_MAX_LINE_BYTES) {
        let encoded = msg.encode();
        let again = decode_worker_line(encoded.as_bytes(), DEFAULT_MAX_LINE_BYTES)
            .unwrap_or_else(|e| panic!("the canonical line {encoded} does not decode: {e}"));
        assert_eq!(again, msg, "round trip changed the message");
        // A node call's `result` value is read as an outcome by the graph runner.
        if let WorkerMessage::Result(r) = msg {
            let _ = flw_protocol::outcome::NodeOutcome::decode(r.value);
        }
    }
    // What the supervisor sends (the codec is shared with the conformance tests).
    if let Ok(msg) = decode_supervisor_line(line, DEFAULT_MAX_LINE_BYTES) {
        let mut encoded = Vec::new();
        msg.encode_into(&mut encoded);
        assert_eq!(encoded.pop(), Some(b'\n'));
        let again = decode_supervisor_line(&encoded, DEFAULT_MAX_LINE_BYTES).unwrap_or_else(|e| {
            panic!(
                "the canonical line {} does not decode: {e}",
                String::from_utf8_lossy(&encoded)
            )
        });
        assert_eq!(again, msg, "round trip changed the message");
    }
});
