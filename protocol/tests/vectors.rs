//! Runs every shared test vector in `protocol/vectors/vectors.json`.

use flw_protocol::{decode_supervisor_line, decode_worker_line, DEFAULT_MAX_LINE_BYTES};
use serde_json::Value;

fn vectors() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/vectors/vectors.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

#[test]
fn valid_vectors_decode_and_encode_canonically() {
    let doc = vectors();
    let valid = doc["valid"].as_array().unwrap();
    assert!(valid.len() >= 20, "too few vectors");
    for v in valid {
        let name = v["name"].as_str().unwrap();
        let line = v["line"].as_str().unwrap().as_bytes();
        let canonical = v.get("canonical").unwrap_or(&v["line"]).as_str().unwrap();
        let (decoded, encoded) = match v["from"].as_str().unwrap() {
            "worker" => {
                let m = decode_worker_line(line, DEFAULT_MAX_LINE_BYTES)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                (serde_json::to_value(&m).unwrap(), m.encode())
            }
            "supervisor" => {
                let m = decode_supervisor_line(line, DEFAULT_MAX_LINE_BYTES)
                    .unwrap_or_else(|e| panic!("{name}: {e}"));
                (serde_json::to_value(&m).unwrap(), m.encode())
            }
            other => panic!("{name}: bad from {other}"),
        };
        assert_eq!(decoded, v["message"], "{name}: decoded message differs");
        assert_eq!(encoded, canonical, "{name}: encoding is not canonical");
    }
}

#[test]
fn invalid_vectors_fail_with_their_code() {
    let doc = vectors();
    let invalid = doc["invalid"].as_array().unwrap();
    assert!(invalid.len() >= 20, "too few vectors");
    for v in invalid {
        let name = v["name"].as_str().unwrap();
        let line = match v.get("line_hex") {
            Some(h) => hex(h.as_str().unwrap()),
            None => v["line"].as_str().unwrap().as_bytes().to_vec(),
        };
        let max = v
            .get("max_line_bytes")
            .and_then(Value::as_u64)
            .map_or(DEFAULT_MAX_LINE_BYTES, |n| n as usize);
        let err = match v["from"].as_str().unwrap() {
            "worker" => decode_worker_line(&line, max).map(|_| ()).unwrap_err(),
            _ => decode_supervisor_line(&line, max).map(|_| ()).unwrap_err(),
        };
        assert_eq!(
            err.code.as_str(),
            v["error"].as_str().unwrap(),
            "{name}: wrong code ({})",
            err.message
        );
        assert!(!err.message.is_empty(), "{name}: empty message");
    }
}

#[test]
fn line_too_long_names_the_limit() {
    let err = decode_worker_line(&[b'x'; 100], 64).unwrap_err();
    assert_eq!(err.message, "line exceeds the 64-byte limit");
}
