//! `/proc/vmstat` and `/api/vmstat` on a real guest.

use serde_json::json;
use tests::api::{alloc, get_json};
use tests::http::Client;
use tests::{BootOptions, boot_ready};

#[test]
fn vmstat_counts_highmem_allocations_exactly() {
    let (_guest, port) = boot_ready(BootOptions::default().mem("2G"));
    let mut c = Client::connect(port);
    let before = get_json(&mut c, "/api/vmstat");
    let n = 5u64;
    for _ in 0..n {
        let r = alloc(
            &mut c,
            &json!({"type":"pages","order":2,"gfp":"GFP_HIGHUSER"}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
    }
    let after = get_json(&mut c, "/api/vmstat");
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert_eq!(delta("pgalloc_high"), 4 * n);
    // Boot handed every managed page to the buddy allocator through the
    // free path, as Linux's __free_pages_core() does.
    let managed: u64 = get_json(&mut c, "/api/zones")["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| z["managed"].as_u64().unwrap())
        .sum();
    assert!(after["pgfree"].as_u64().unwrap() >= managed);
    let text = c.request("GET", "/proc/vmstat", None).text();
    assert!(text.starts_with("nr_free_pages "), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("nr_slab_unreclaimable ")),
        "{text}"
    );
    c.request("POST", "/api/reset", None);
}
