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

/// Linux's fallback order for each migrate type (`fallbacks[]`).
fn fallbacks(mt: &str) -> &'static [&'static str] {
    match mt {
        "Unmovable" => &["Reclaimable", "Movable"],
        "Movable" => &["Reclaimable", "Unmovable"],
        "Reclaimable" => &["Unmovable", "Movable"],
        _ => &[],
    }
}

/// The order of the free block an allocation of `order` and migrate type
/// `mt` splits, from one zone of `/api/zones` (its `free_lists` by type):
/// the smallest block on the type's own lists (`__rmqueue_smallest()`);
/// else a stolen one (`__rmqueue_fallback()`): the largest block of the
/// first fallback type that has one — or, for a movable request that may
/// not claim the pageblock (below order 4), the smallest.
///
/// Exact when the own lists have a block, or when the stolen block is of
/// pageblock order (9) or more: then it moves alone and is the one split.
/// A smaller steal moves the rest of its pageblock along, and which block
/// the retry takes depends on that pageblock's layout; this panics rather
/// than guess.
pub fn block_split_by(zone: &Value, mt: &str, order: usize) -> usize {
    let list = |t: &str, o: usize| zone["free_lists"][t][o].as_u64().unwrap();
    if let Some(o) = (order..=10).find(|&o| list(mt, o) > 0) {
        return o;
    }
    let has_fallback = |o: usize| fallbacks(mt).iter().any(|t| list(t, o) > 0);
    let largest = (order..=10)
        .rev()
        .find(|&o| has_fallback(o))
        .expect("a block of another type to steal");
    let can_steal = largest >= 4 || mt != "Movable";
    let from = if !can_steal && largest > order {
        (order..=10).find(|&o| has_fallback(o)).unwrap()
    } else {
        largest
    };
    assert!(
        from >= 9 || !can_steal,
        "a steal of an order-{from} block moves its pageblock's other free blocks too: not predicted"
    );
    from
}

/// What `expand()` does to a zone's free_area when an order-`order` block
/// is cut from a free block of order `from`.
pub fn split_from(before: &[u64], from: usize, order: usize) -> Vec<u64> {
    let mut after = before.to_vec();
    after[from] -= 1;
    for counts in &mut after[order..from] {
        *counts += 1;
    }
    after
}

/// What allocating `order` with migrate type `mt` in `zone` does to that
/// zone's free_area, from an `/api/zones` answer taken just before.
pub fn predict_alloc(zones: &Value, zone: &str, mt: &str, order: usize) -> Vec<u64> {
    let z = zones["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["name"] == zone)
        .unwrap_or_else(|| panic!("zone {zone} in {zones}"));
    let before: Vec<u64> = z["free_area"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_u64().unwrap())
        .collect();
    split_from(&before, block_split_by(z, mt, order), order)
}
