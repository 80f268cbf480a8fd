//! `/proc/vmstat` and `/api/vmstat`.

use super::*;

#[test]
fn vmstat_counts_allocations_per_zone_and_frees() {
    run(DEFAULT, |t| {
        let before = t.json("/api/vmstat");
        let h = t.alloc_ok(json!({"type":"pages","order":3,"gfp":"GFP_DMA"}));
        let after = t.json("/api/vmstat");
        let delta = |name: &str| after[name].as_u64().unwrap() - before[name].as_u64().unwrap();
        assert_eq!(delta("pgalloc_dma"), 8);
        assert_eq!(delta("pgalloc_high"), 0);
        assert_eq!(
            before["nr_free_pages"].as_u64().unwrap() - after["nr_free_pages"].as_u64().unwrap(),
            8
        );
        let id = h["id"].as_u64().unwrap();
        t.request("DELETE", &format!("/api/alloc/{id}"), None);
        let freed = t.json("/api/vmstat");
        assert_eq!(
            freed["pgfree"].as_u64().unwrap() - after["pgfree"].as_u64().unwrap(),
            8
        );
        // The text view has the same names, values and order.
        let text = t.get("/proc/vmstat").text().to_string();
        let json = t.json("/api/vmstat");
        let pairs: Vec<(String, u64)> = text
            .lines()
            .map(|l| {
                let (name, value) = l.split_once(' ').unwrap();
                (name.to_string(), value.parse().unwrap())
            })
            .collect();
        assert_eq!(pairs.first().map(|p| p.0.as_str()), Some("nr_free_pages"));
        let obj = json.as_object().unwrap();
        assert_eq!(obj.len(), pairs.len());
        for (name, value) in &pairs {
            assert_eq!(obj[name.as_str()], *value, "{name}");
        }
        assert!(pairs.iter().any(|(n, _)| n == "pgfree"));
    });
}
