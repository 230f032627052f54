//! Counts in messages: `1 step`, `2 steps`.

/// `n` and the noun in the number `n` takes: `count(1, "step", "steps")`
/// is `1 step`, `count(3, "step", "steps")` is `3 steps`.
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::count;

    #[test]
    fn one_is_singular_and_every_other_number_plural() {
        assert_eq!(count(1u64, "character", "characters"), "1 character");
        assert_eq!(count(0u64, "character", "characters"), "0 characters");
        assert_eq!(count(2u32, "step", "steps"), "2 steps");
    }
}
