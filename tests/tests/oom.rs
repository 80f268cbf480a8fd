//! The OOM killer on a real guest (issue 10): three tasks fill a 128 MiB
//! guest; the next reclaim-capable allocation kills the one with the
//! highest badness (adj 500), never the -1000 one; dmesg has Linux's
//! report; `oom_kill` counts it; reset gives back the boot buddyinfo.

use serde_json::{Value, json};
use tests::api::{
    alloc, alloc_until_fail, assert_selfcheck_ok, buddyinfo, get_json, post, reset_to_boot,
    with_guest_log,
};
use tests::http::Client;
use tests::{BootOptions, boot_ready};

fn task(c: &mut Client, name: &str, adj: i64) -> u64 {
    let r = post(c, "/api/tasks", &json!({"name":name,"oom_score_adj":adj}));
    assert_eq!(r.status, 201, "{}", r.text());
    r.json()["pid"].as_u64().unwrap()
}

#[test]
fn oom_killer_kills_the_adj_500_task_and_never_the_minus_1000_one() {
    let (guest, port) = boot_ready(BootOptions::default().mem("128M").append("api_quota=100"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let keeper = task(&mut c, "keeper", -1000);
        let plain = task(&mut c, "plain", 0);
        let hog = task(&mut c, "hog", 500);
        for (pid, blocks) in [(keeper, 40), (plain, 60), (hog, 20)] {
            let body = json!({"type":"pages","order":6,"task":pid,"oom":false});
            let (n, failed) = alloc_until_fail(&mut c, &body, blocks, 8);
            assert_eq!((n, failed.map(|r| r.status)), (blocks, None), "task {pid}");
        }
        // The rest of memory, owned by no task, without the OOM killer.
        for order in (0..=10u32).rev() {
            let body = json!({"type":"pages","order":order,"oom":false});
            let (_, failed) = alloc_until_fail(&mut c, &body, 100_000, 16);
            assert_eq!(failed.map(|r| r.status), Some(507), "order {order}");
        }
        assert_eq!(get_json(&mut c, "/api/oom")["kills"], 0);
        // GFP_KERNEL may reclaim: the OOM killer runs and the retry works.
        let r = alloc(&mut c, &json!({"type":"pages","order":0}));
        assert_eq!(r.status, 201, "{}", r.text());
        let oom = get_json(&mut c, "/api/oom");
        assert_eq!(oom["kills"], 1, "{oom}");
        let victim = &oom["reports"][0]["victim"];
        assert_eq!(
            (victim["pid"].as_u64(), victim["name"].as_str()),
            (Some(hog), Some("hog"))
        );
        assert_eq!(victim["rss_pages"], 20 * 64);
        let tasks: Vec<u64> = get_json(&mut c, "/api/tasks")["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["pid"].as_u64().unwrap())
            .collect();
        assert_eq!(tasks, [keeper, plain]);
        let dmesg = c.request("GET", "/api/dmesg", None).text();
        assert!(
            dmesg.contains(
                "api invoked oom-killer: gfp_mask=0xcc0(GFP_KERNEL), order=0, oom_score_adj=0"
            ),
            "{dmesg}"
        );
        assert!(
            dmesg.contains(&format!("Out of memory: Killed process {hog} (hog)")),
            "{dmesg}"
        );
        assert!(dmesg.contains("Mem-Info:"), "{dmesg}");
        let vmstat: Value = get_json(&mut c, "/api/vmstat");
        assert_eq!(vmstat["oom_kill"], 1);
        assert_selfcheck_ok(&mut c, "after the kill");
        reset_to_boot(&mut c, &boot, "after the OOM kill");
    });
}

/// Page cache goes before anyone is killed; after eviction a read brings
/// the same bytes back as major faults.
#[test]
fn pagecache_is_reclaimed_before_the_oom_killer_and_reads_back_unchanged() {
    let (guest, port) = boot_ready(BootOptions::default().mem("128M").append("api_quota=100"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let victim = task(&mut c, "victim", 500);
        let r = post(
            &mut c,
            "/api/alloc",
            &json!({"type":"pagecache","size":8 << 20}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let file = r.json()["id"].as_u64().unwrap();
        let crc = get_json(&mut c, &format!("/api/alloc/{file}/checksum"))["crc32"].clone();
        let majfault = get_json(&mut c, "/api/vmstat")["pgmajfault"]
            .as_u64()
            .unwrap();
        // The task fills memory (the OOM killer allowed): the 2048 file
        // pages are reclaimed first, so nobody is killed for them.
        let body = json!({"type":"pages","order":0,"task":victim});
        let (n, failed) = alloc_until_fail(&mut c, &body, 2048, 16);
        assert_eq!((n, failed.map(|r| r.status)), (2048, None));
        assert_eq!(get_json(&mut c, "/api/oom")["kills"], 0);
        // Keep going: once the file is gone, the task itself is the victim.
        let (_, failed) = alloc_until_fail(&mut c, &body, 100_000, 1);
        let failed = failed.expect("memory runs out");
        assert_eq!(failed.status, 507, "{}", failed.text());
        let resident = get_json(&mut c, &format!("/api/alloc/{file}"))["resident_pages"].clone();
        assert_eq!(resident, 0, "the whole file was reclaimed first");
        let vmstat = get_json(&mut c, "/api/vmstat");
        let stolen =
            vmstat["pgsteal_kswapd"].as_u64().unwrap() + vmstat["pgsteal_direct"].as_u64().unwrap();
        assert!(stolen >= 2048, "{vmstat}");
        assert_eq!(
            get_json(&mut c, "/api/oom")["kills"],
            1,
            "{}",
            failed.text()
        );
        assert!(
            get_json(&mut c, "/api/tasks")["tasks"]
                .as_array()
                .unwrap()
                .is_empty()
        );
        // Memory is back; the file reads back the same.
        let again = get_json(&mut c, &format!("/api/alloc/{file}/checksum"));
        assert_eq!(again["crc32"], crc);
        let faults = get_json(&mut c, "/api/vmstat")["pgmajfault"]
            .as_u64()
            .unwrap();
        assert_eq!(faults - majfault, 2048);
        assert_selfcheck_ok(&mut c, "after reclaim and the kill");
        reset_to_boot(&mut c, &boot, "after reclaim and the kill");
    });
}
