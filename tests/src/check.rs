//! Small shared helpers for reading the API's answers in tests.

use serde_json::Value;

/// An API.md address: a `"0x…"` string of lower-case hex digits.
pub fn hex(v: &Value) -> u64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("expected a hex string, got {v}"));
    assert!(
        s.starts_with("0x")
            && s[2..]
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)),
        "{s}"
    );
    u64::from_str_radix(&s[2..], 16).unwrap()
}

/// The free_area counts of `zone` in a `(name, counts)` list.
pub fn zone_counts<'a>(info: &'a [(String, Vec<u64>)], zone: &str) -> &'a [u64] {
    &info
        .iter()
        .find(|(n, _)| n == zone)
        .unwrap_or_else(|| panic!("zone {zone} in {info:?}"))
        .1
}

/// What `expand()` does to free_area when an order-`order` block is taken
/// from the smallest non-empty order ≥ `order`.
pub fn predict_split(before: &[u64], order: usize) -> Vec<u64> {
    let mut after = before.to_vec();
    let from = (order..after.len())
        .find(|&o| after[o] > 0)
        .expect("a block to split");
    after[from] -= 1;
    for counts in &mut after[order..from] {
        *counts += 1;
    }
    after
}
