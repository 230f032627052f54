//! Short quotes of what a client sent, for error messages: an error about
//! a request of megabytes must not repeat it (each refusal would cost its
//! size again, in memory and on the wire).
//!
//! Every place that puts a client's input into a message goes through
//! here; [`display`] stops formatting once it has enough, so a huge value
//! is never formatted whole.

use std::fmt::{self, Display, Write};

/// How many characters of a client's input a message quotes.
pub const CHARS: usize = 80;

/// `text` quoted like `{:?}`, cut to its first [`CHARS`] characters, with
/// an ellipsis and its length when it was longer: `"nnn…" (1048576 bytes)`.
pub fn quote(text: &str) -> String {
    let mut head = text.char_indices().map(|(i, _)| i).skip(CHARS);
    match head.next() {
        None => format!("{text:?}"),
        Some(end) => format!("{:?}… ({} bytes)", &text[..end], text.len()),
    }
}

/// What `value` displays, up to `max` characters (then an ellipsis).
pub fn display(value: &(impl Display + ?Sized), max: usize) -> String {
    let mut out = Bounded {
        text: String::new(),
        left: max,
        cut: false,
    };
    // An error here is only `Bounded` saying it is full.
    let _ = write!(out, "{value}");
    if out.cut {
        out.text.push('…');
    }
    out.text
}

/// A writer that takes `left` more characters, then fails.
struct Bounded {
    text: String,
    left: usize,
    cut: bool,
}

impl Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            if self.left == 0 {
                self.cut = true;
                return Err(fmt::Error);
            }
            self.text.push(c);
            self.left -= 1;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn short_input_is_quoted_whole() {
        assert_eq!(quote("echo"), "\"echo\"");
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
        assert_eq!(display(&json!([1, 2]), 10), "[1,2]");
    }

    #[test]
    fn long_input_is_cut_with_its_length() {
        let long = "é".repeat(1000);
        let q = quote(&long);
        assert_eq!(q, format!("{:?}… (2000 bytes)", "é".repeat(CHARS)));
        let huge = serde_json::Value::Array(vec![json!([]); 1_000_000]);
        let d = display(&huge, 9);
        assert_eq!(d, "[[],[],[]…");
    }
}
