//! A lenient scan for the top-level `"id"` of a JSON-RPC message that does
//! not parse (bad UTF-8, a lone surrogate, `1e400`, a cut line) or is too
//! long to keep, so that its error reply can name the request.
//!
//! It reads bytes as they come and keeps only the id's text (at most
//! [`MAX_ID_BYTES`]), so a 20 MB line costs it nothing but the pass.

use rmcp::model::RequestId;

/// The longest id text kept; a longer one is not recovered.
pub const MAX_ID_BYTES: usize = 256;

/// Where the scan is within the top-level object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before a key (after `{` or `,`).
    Key,
    /// Inside a key's string.
    InKey,
    /// After a key, before its `:`.
    Colon,
    /// Inside a value (at any depth below it).
    Value,
}

/// The scanner: feed it the message's bytes in order, then ask for the id.
#[derive(Debug)]
pub struct IdScan {
    depth: u32,
    in_string: bool,
    escaped: bool,
    phase: Phase,
    /// The current top-level key, cut after 3 bytes (enough to tell `id`).
    key: Vec<u8>,
    /// The value being read belongs to the key `id`.
    value_is_id: bool,
    value: Vec<u8>,
    too_long: bool,
    found: Option<Vec<u8>>,
    /// The top-level value ended, or is not an object.
    done: bool,
}

impl Default for IdScan {
    fn default() -> Self {
        IdScan {
            depth: 0,
            in_string: false,
            escaped: false,
            phase: Phase::Key,
            key: Vec::new(),
            value_is_id: false,
            value: Vec::new(),
            too_long: false,
            found: None,
            done: false,
        }
    }
}

impl IdScan {
    /// Scans the next bytes of the message.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.done {
                return;
            }
            self.step(b);
        }
    }

    /// The id, if the message had a top-level `"id"` whose value is an
    /// integer or a string (the first one, if it had several).
    pub fn id(&self) -> Option<RequestId> {
        if let Some(raw) = &self.found {
            return serde_json::from_slice(raw).ok();
        }
        // A line cut inside the object: the id read last may be whole.
        if self.phase == Phase::Value && self.value_is_id && !self.too_long && !self.in_string {
            return serde_json::from_slice(&self.value).ok();
        }
        None
    }

    fn step(&mut self, b: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.depth == 1 && self.phase == Phase::InKey {
                    self.phase = Phase::Colon;
                    return;
                }
            }
            self.take(b);
            return;
        }
        match b {
            b' ' | b'\t' | b'\n' | b'\r' => {}
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && self.phase == Phase::Key {
                    self.phase = Phase::InKey;
                    self.key.clear();
                } else {
                    self.take(b);
                }
            }
            b'{' | b'[' if self.depth == 0 => {
                if b == b'{' {
                    self.depth = 1;
                    self.phase = Phase::Key;
                } else {
                    self.done = true; // a batch or a bare array: no id to find
                }
            }
            b'{' | b'[' => {
                self.take(b);
                self.depth += 1;
            }
            b'}' | b']' if self.depth <= 1 => {
                self.end_value();
                self.done = true;
            }
            b'}' | b']' => {
                self.take(b);
                self.depth -= 1;
            }
            b':' if self.depth == 1 && self.phase == Phase::Colon => {
                self.phase = Phase::Value;
                self.value_is_id = self.key == b"id";
                self.value.clear();
                self.too_long = false;
            }
            b',' if self.depth == 1 => {
                self.end_value();
                self.phase = Phase::Key;
            }
            _ if self.depth == 0 => self.done = true, // not an object
            _ => self.take(b),
        }
    }

    /// Keeps a byte of the current key or of the id's value.
    fn take(&mut self, b: u8) {
        match self.phase {
            Phase::InKey if self.key.len() < 3 => self.key.push(b),
            Phase::Value if self.value_is_id => {
                if self.value.len() < MAX_ID_BYTES {
                    self.value.push(b);
                } else {
                    self.too_long = true;
                }
            }
            _ => {}
        }
    }

    fn end_value(&mut self) {
        if self.phase == Phase::Value && self.value_is_id && !self.too_long && self.found.is_none()
        {
            self.found = Some(std::mem::take(&mut self.value));
        }
        self.value_is_id = false;
    }
}

/// The id of a whole message, scanned leniently.
pub fn scan_id(line: &[u8]) -> Option<RequestId> {
    let mut scan = IdScan::default();
    scan.feed(line);
    scan.id()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn num(n: i64) -> Option<RequestId> {
        Some(RequestId::Number(n))
    }

    #[test]
    fn finds_the_id_before_or_after_what_breaks_the_line() {
        assert_eq!(
            scan_id(br#"{"jsonrpc":"2.0","id":7,"params":{"x":1e400}}"#),
            num(7)
        );
        assert_eq!(
            scan_id(br#"{"method":"m","params":{"x":"\ud800"},"id":8}"#),
            num(8)
        );
        assert_eq!(
            scan_id(b"{\"params\":{\"x\":\"\xff\xfe\"},\"id\":\"a b\"}"),
            Some(RequestId::String("a b".into()))
        );
        assert_eq!(scan_id(br#"{"id" : 9 , "method": "#), num(9));
        // Cut inside the object, with the id read last.
        assert_eq!(scan_id(br#"{"method":"m","id":10"#), num(10));
    }

    #[test]
    fn ignores_nested_ids_and_ids_inside_strings() {
        assert_eq!(
            scan_id(br#"{"params":{"id":1},"x":"\"id\":2","id":3}"#),
            num(3)
        );
        assert_eq!(scan_id(br#"{"params":{"id":1}}"#), None);
        assert_eq!(scan_id(br#"{"idx":1,"xid":2}"#), None);
        assert_eq!(
            scan_id(br#"{"a":[{"id":5}],"id":"\"q\\"}"#),
            Some(RequestId::String("\"q\\".into()))
        );
    }

    #[test]
    fn an_id_that_is_not_an_integer_or_a_string_is_not_recovered() {
        for line in [
            &br#"{"id":null}"#[..],
            br#"{"id":1.5}"#,
            br#"{"id":{"a":1}}"#,
            br#"{"id":[1]}"#,
            br#"{"id":1e400}"#,
            br#"{"id":"\ud800"}"#,
            b"{\"id\":\"\xff\"}",
            b"[{\"id\":1}]",
            b"42",
            b"",
        ] {
            assert_eq!(scan_id(line), None, "{}", String::from_utf8_lossy(line));
        }
        let long = format!(r#"{{"id":"{}"}}"#, "x".repeat(MAX_ID_BYTES));
        assert_eq!(scan_id(long.as_bytes()), None);
    }

    #[test]
    fn the_first_id_wins_and_bytes_may_come_in_pieces() {
        assert_eq!(scan_id(br#"{"id":1,"id":2}"#), num(1));
        let line = br#"{"method":"tools/call","params":{"text":"aaaa"},"id":42}"#;
        let mut scan = IdScan::default();
        for b in line.chunks(3) {
            scan.feed(b);
        }
        assert_eq!(scan.id(), num(42));
    }
}
