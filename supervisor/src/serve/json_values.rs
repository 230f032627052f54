//! The number of values in a JSON body, counted without parsing it, so
//! that a body whose parse would cost far more memory than its size is
//! refused first: 4 MB of `[],` is 1.3 million values, about 70 MB once
//! parsed, and a body passes the size cap alone.
//!
//! A body may hold one value per [`BYTES_PER_VALUE`] bytes of the body cap
//! (65,536 at the default 4 MiB; at least [`MIN_VALUES`]), which bounds what parsing a body costs
//! to a few times the cap (rmcp's parse of a JSON-RPC message takes about
//! 160 bytes per value). Arguments of text, keys and numbers of ordinary
//! size stay far below that.

use axum::http::StatusCode;

use super::api::ApiError;

/// Bytes of `max_body_bytes` per JSON value allowed in a body.
pub const BYTES_PER_VALUE: usize = 64;

/// Values a body may always hold, however small the cap (they cost little).
pub const MIN_VALUES: usize = 4096;

/// Refuses (413) a body with more JSON values than a body cap of
/// `max_body` allows.
pub fn check(body: &[u8], max_body: usize) -> Result<(), ApiError> {
    let allowed = (max_body / BYTES_PER_VALUE).max(MIN_VALUES);
    match count_up_to(body, allowed) {
        Some(_) => Ok(()),
        None => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!(
                "the request body holds more than {allowed} JSON values (arrays, objects, keys, strings, numbers and literals count), which would take far more memory than its size once parsed; the limit is one per {BYTES_PER_VALUE} bytes of max_body_bytes in the [serve] table of flw.toml (and at least {MIN_VALUES})"
            ),
        )),
    }
}

/// The values (and object keys) in `text`, or `None` once past `limit`.
/// Text that is not JSON is counted as well as it goes; the parser that
/// follows refuses it.
pub fn count_up_to(text: &[u8], limit: usize) -> Option<usize> {
    let mut count = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    let mut in_scalar = false;
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        let starts = match b {
            b'"' => {
                in_string = true;
                in_scalar = false;
                true
            }
            b'[' | b'{' => {
                in_scalar = false;
                true
            }
            b']' | b'}' | b',' | b':' | b' ' | b'\t' | b'\n' | b'\r' => {
                in_scalar = false;
                false
            }
            _ => !std::mem::replace(&mut in_scalar, true),
        };
        if starts {
            count += 1;
            if count > limit {
                return None;
            }
        }
    }
    Some(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(text: &str) -> usize {
        count_up_to(text.as_bytes(), usize::MAX).unwrap()
    }

    #[test]
    fn each_value_and_key_counts_once() {
        assert_eq!(count(""), 0);
        assert_eq!(count("1"), 1);
        assert_eq!(count("[[],[],[]]"), 4);
        assert_eq!(count(r#"{"a": 1, "b": [true, null, -2.5e3]}"#), 8);
        assert_eq!(count(r#""a [string], with {brackets}: \"and\" \\""#), 1);
        assert_eq!(count(r#"{"k\"ey": "v"}"#), 3);
    }

    #[test]
    fn counting_stops_past_the_limit() {
        let many = format!("[{}[]]", "[],".repeat(9000));
        assert_eq!(count_up_to(many.as_bytes(), 9001), None);
        assert_eq!(count_up_to(many.as_bytes(), 9002), Some(9002));
        assert!(check(many.as_bytes(), BYTES_PER_VALUE * 9002).is_ok());
        let e = check(many.as_bytes(), BYTES_PER_VALUE * 9001).unwrap_err();
        assert_eq!(e.status, StatusCode::PAYLOAD_TOO_LARGE);
        // A small cap still lets an ordinary request through.
        assert!(check(&many.as_bytes()[..2000], 1024).is_ok());
    }
}
