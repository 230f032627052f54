//! Replays `vectors/fork_server.json`, which the Python SDK's tests replay
//! too: every valid datagram decodes to its message and encodes back to the
//! same bytes, and every invalid one is refused.

use flw_protocol::fork_server::{FromForkServer, ToForkServer};
use serde_json::Value;

fn vectors() -> Value {
    let text = include_str!("../vectors/fork_server.json");
    serde_json::from_str(text).expect("the vector file is JSON")
}

#[test]
fn valid_datagrams_decode_and_encode_back_byte_for_byte() {
    let v = vectors();
    let valid = v["valid"].as_array().expect("valid is a list");
    assert!(!valid.is_empty());
    for case in valid {
        let text = case["text"].as_str().expect("text");
        let direction = case["direction"].as_str().expect("direction");
        let (encoded, as_value) = match direction {
            "supervisor" => {
                let m =
                    ToForkServer::decode(text.as_bytes()).unwrap_or_else(|e| panic!("{text}: {e}"));
                (m.encode(), serde_json::to_value(&m).unwrap())
            }
            "fork_server" => {
                let m = FromForkServer::decode(text.as_bytes())
                    .unwrap_or_else(|e| panic!("{text}: {e}"));
                (m.encode(), serde_json::to_value(&m).unwrap())
            }
            other => panic!("unknown direction {other}"),
        };
        assert_eq!(String::from_utf8(encoded).unwrap(), text, "canonical text");
        assert_eq!(as_value, case["message"], "{text}");
    }
}

#[test]
fn invalid_datagrams_are_refused() {
    let v = vectors();
    for case in v["invalid"].as_array().expect("invalid is a list") {
        let text = case["text"].as_str().expect("text");
        let why = case["why"].as_str().unwrap_or_default();
        let refused = match case["direction"].as_str() {
            Some("supervisor") => ToForkServer::decode(text.as_bytes()).is_err(),
            _ => FromForkServer::decode(text.as_bytes()).is_err(),
        };
        assert!(refused, "{text} was accepted ({why})");
    }
}
