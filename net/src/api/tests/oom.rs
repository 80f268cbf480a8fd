//! Tasks and the OOM killer (API.md v2).

use super::*;

const FULL: Opts = Opts {
    quota_pct: 100,
    ..DEFAULT
};

fn task(t: &mut T<'_>, name: &str, adj: i64) -> u64 {
    let r = t.request(
        "POST",
        "/api/tasks",
        Some(&json!({"name":name,"oom_score_adj":adj}).to_string()),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(
        (v["name"].as_str(), v["oom_score_adj"].as_i64()),
        (Some(name), Some(adj))
    );
    assert_eq!(v["rss_pages"], 0);
    v["pid"].as_u64().unwrap()
}

/// Allocate `body` until the first refusal (never more than `max`).
fn fill(t: &mut T<'_>, body: Value, max: usize) -> usize {
    for n in 0..max {
        let r = t.alloc(body.clone());
        if r.status != 201 {
            assert_eq!(error(&r), (507, "ENOMEM".into()), "{body}: {}", r.text());
            return n;
        }
    }
    max
}

#[test]
fn tasks_crud_and_proc_files() {
    run(DEFAULT, |t| {
        let a = task(t, "alpha", 0);
        let b = task(t, "beta", -1000);
        assert!(b > a);
        for bad in [
            json!({"name":"x".repeat(16)}),
            json!({"name":""}),
            json!({"name":"ok","oom_score_adj":1001}),
            json!({"oom_score_adj":0}),
        ] {
            let r = t.request("POST", "/api/tasks", Some(&bad.to_string()));
            assert_eq!(error(&r).0, 400, "{bad}");
        }
        let h = t.alloc_ok(json!({"type":"pages","order":4,"task":a}));
        assert_eq!(t.json(&format!("/api/tasks/{a}"))["rss_pages"], 16);
        t.alloc_ok(json!({"type":"kmalloc","size":5000,"task":a})); // one 8 KiB object: 2 pages
        assert_eq!(t.json(&format!("/api/tasks/{a}"))["rss_pages"], 18);
        assert_eq!(t.get(&format!("/proc/{b}/oom_score")).text(), "0\n");
        assert_eq!(t.get(&format!("/proc/{b}/oom_score_adj")).text(), "-1000\n");
        let score: u64 = t
            .get(&format!("/proc/{a}/oom_score"))
            .text()
            .trim()
            .parse()
            .unwrap();
        assert!(score >= 666, "{score}");
        let r = t.request(
            "PUT",
            &format!("/api/tasks/{a}/oom_score_adj"),
            Some(r#"{"value":500}"#),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(t.get(&format!("/proc/{a}/oom_score_adj")).text(), "500\n");
        let missing = t.alloc(json!({"type":"pages","order":0,"task":999}));
        assert_eq!(error(&missing).0, 404);
        // The task exits: its handles go with it.
        let r = t.request("DELETE", &format!("/api/tasks/{a}"), None);
        assert_eq!(r.status, 200);
        assert_eq!(
            serde_json::from_slice::<Value>(&r.body).unwrap()["freed"],
            2
        );
        let gone = t.get(&format!("/api/alloc/{}", h["id"]));
        assert_eq!(error(&gone).0, 404);
        assert_eq!(error(&t.get(&format!("/api/tasks/{a}"))).0, 404);
        assert_eq!(t.json("/api/tasks")["tasks"].as_array().unwrap().len(), 1);
        t.request("POST", "/api/reset", None);
        assert_eq!(t.json("/api/tasks")["tasks"], json!([]));
        assert_eq!(t.buddyinfo(), t.boot_buddyinfo());
    });
}

#[test]
fn the_oom_killer_picks_by_badness_and_spares_minus_1000() {
    run(FULL, |t| {
        let boot = t.boot_buddyinfo();
        let keeper = task(t, "keeper", -1000);
        let plain = task(t, "plain", 0);
        let hog = task(t, "hog", 500);
        let big = |pid: u64| json!({"type":"pages","order":10,"gfp":"GFP_HIGHUSER","task":pid,"oom":false});
        assert_eq!(fill(t, big(keeper), 3), 3);
        assert_eq!(fill(t, big(plain), 2), 2);
        assert_eq!(fill(t, big(hog), 1), 1);
        // The rest of memory, owned by no task, without the OOM killer.
        for order in (0..=10).rev() {
            fill(
                t,
                json!({"type":"pages","order":order,"gfp":"GFP_HIGHUSER","oom":false}),
                100_000,
            );
        }
        // A request that may not reclaim never calls the OOM killer.
        let r = t.alloc(json!({"type":"pages","order":0,"gfp":"GFP_NOWAIT|__GFP_HIGHMEM"}));
        assert_eq!(error(&r), (507, "ENOMEM".into()));
        assert_eq!(t.json("/api/oom")["kills"], 0);
        // Nor may __GFP_NORETRY or __GFP_RETRY_MAYFAIL requests.
        for gfp in [
            "GFP_HIGHUSER|__GFP_NORETRY",
            "GFP_HIGHUSER|__GFP_RETRY_MAYFAIL",
        ] {
            let r = t.alloc(json!({"type":"pages","order":0,"gfp":gfp}));
            assert_eq!(error(&r), (507, "ENOMEM".into()), "{gfp}");
        }
        assert_eq!(t.json("/api/oom")["kills"], 0);
        // GFP_KERNEL does: the hog (adj 500) goes first, though smaller.
        let r = t.alloc(json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}));
        assert_eq!(r.status, 201, "{}", r.text());
        let oom = t.json("/api/oom");
        assert_eq!(oom["kills"], 1);
        let report = &oom["reports"][0];
        assert_eq!(report["victim"]["pid"], hog);
        assert_eq!(report["victim"]["name"], "hog");
        assert_eq!(report["victim"]["rss_pages"], 1024);
        assert_eq!(report["order"], 0);
        let text = report["text"].as_str().unwrap();
        assert!(
            text.starts_with("api invoked oom-killer: gfp_mask=0x"),
            "{text}"
        );
        assert!(
            text.contains(&format!("Out of memory: Killed process {hog} (hog)")),
            "{text}"
        );
        assert!(
            t.get("/api/dmesg")
                .text()
                .contains(&format!("Killed process {hog} (hog)"))
        );
        assert_eq!(t.json("/api/vmstat")["oom_kill"], 1);
        assert_eq!(error(&t.get(&format!("/api/tasks/{hog}"))).0, 404);
        // Next: "plain"; the -1000 task is never chosen.
        for _ in 0..10_000 {
            let r = t.alloc(json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}));
            if r.status != 201 {
                assert_eq!(error(&r).0, 507);
                assert!(r.text().contains("no killable task"), "{}", r.text());
                break;
            }
        }
        let oom = t.json("/api/oom");
        assert_eq!(oom["kills"], 2);
        assert_eq!(oom["reports"][1]["victim"]["pid"], plain);
        assert!(oom["reports"][2]["victim"].is_null(), "{oom}");
        assert!(t.json(&format!("/api/tasks/{keeper}"))["rss_pages"].as_u64() > Some(0));
        assert_eq!(t.json("/api/selfcheck")["ok"], true);
        t.request("POST", "/api/reset", None);
        assert_eq!(t.buddyinfo(), boot);
    });
}
