//! Demand paging on a real guest (issue 10): a lazy vmalloc area larger
//! than RAM is only address space; reads map the zero page, writes fault
//! frames in through the CPU's #PF handler, and `pgfault` and
//! `resident_pages` count exactly that. Writing more than memory allows
//! reclaims page cache first, then the OOM killer kills the area's task.

use serde_json::{Value, json};
use tests::api::{
    alloc, assert_selfcheck_ok, buddyinfo, get_json, post, reset_to_boot, with_guest_log,
};
use tests::http::Client;
use tests::{BootOptions, boot_ready};

const PAGE: u64 = 4096;
const MIB: u64 = 1 << 20;

fn vmstat(c: &mut Client, name: &str) -> u64 {
    get_json(c, "/api/vmstat")[name].as_u64().unwrap()
}

fn handle(c: &mut Client, id: u64) -> Value {
    get_json(c, &format!("/api/alloc/{id}"))
}

fn hex(v: &Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// The walk of `addr`: `(mapped, leaf writable, phys)`.
fn leaf(c: &mut Client, addr: u64) -> (bool, bool, u64) {
    let w = get_json(c, &format!("/api/pagetable?addr={addr:#x}"));
    let pte = w["levels"].as_array().unwrap().last().unwrap().clone();
    let writable = pte["flags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|f| f == "WRITABLE");
    let mapped = w["mapped"].as_bool().unwrap();
    (mapped, writable, if mapped { hex(&w["phys"]) } else { 0 })
}

#[test]
fn lazy_area_of_768m_on_256m_faults_in_exactly_the_pages_written() {
    // pcp=off: a vfree's frames show in buddyinfo at once.
    let (guest, port) = boot_ready(BootOptions::default().mem("256M").append("pcp=off"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let r = alloc(
            &mut c,
            &json!({"type":"vmalloc","size":768 * MIB,"lazy":true}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let h = r.json();
        let (id, start) = (h["id"].as_u64().unwrap(), hex(&h["virt"]));
        assert_eq!(
            (h["nr_pages"].as_u64(), h["resident_pages"].as_u64()),
            (Some(196_608), Some(0))
        );
        assert_eq!(
            buddyinfo(&mut c),
            boot,
            "reserving address space takes no frame"
        );

        // Reading 16 pages maps the shared zero page: 16 faults, no frame.
        let faults = vmstat(&mut c, "pgfault");
        let r = c.request(
            "GET",
            &format!("/api/alloc/{id}/checksum?offset=0&length={}", 16 * PAGE),
            None,
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let zero_crc = crc32fast::hash(&vec![0u8; 16 * PAGE as usize]);
        assert_eq!(hex(&r.json()["crc32"]), u64::from(zero_crc));
        assert_eq!(vmstat(&mut c, "pgfault") - faults, 16);
        assert_eq!(handle(&mut c, id)["resident_pages"], 0);
        let (present, writable, zero_phys) = leaf(&mut c, start);
        assert!(present && !writable, "the zero page is mapped read-only");

        // Writing 100 pages from page 8: 8 of them replace the zero page,
        // 92 are first touches. Exactly 100 frames, 100 more faults.
        let r = post(
            &mut c,
            &format!("/api/alloc/{id}/fill"),
            &json!({"byte":0x5a,"offset":8 * PAGE,"length":100 * PAGE}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(handle(&mut c, id)["resident_pages"], 100);
        assert_eq!(vmstat(&mut c, "pgfault") - faults, 16 + 100);
        let (present, writable, phys) = leaf(&mut c, start + 8 * PAGE);
        assert!(present && writable && phys != zero_phys);
        assert_eq!(
            leaf(&mut c, start + 7 * PAGE).2,
            zero_phys,
            "page 7 still the zero page"
        );
        let (present, ..) = leaf(&mut c, start + 200 * PAGE);
        assert!(!present, "an untouched page is not mapped");

        // The bytes read back, and reading never adds a frame.
        let r = c.request(
            "GET",
            &format!(
                "/api/alloc/{id}/checksum?offset={}&length={}",
                8 * PAGE,
                100 * PAGE
            ),
            None,
        );
        let want = crc32fast::hash(&vec![0x5au8; 100 * PAGE as usize]);
        assert_eq!(hex(&r.json()["crc32"]), u64::from(want));
        assert_eq!(handle(&mut c, id)["resident_pages"], 100);
        let vmallocinfo = c.request("GET", "/proc/vmallocinfo", None).text();
        assert!(
            vmallocinfo.contains(" api_alloc pages=100 vmalloc"),
            "{vmallocinfo}"
        );
        assert_selfcheck_ok(&mut c, "with a lazy area");

        let r = c.request("DELETE", &format!("/api/alloc/{id}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(
            buddyinfo(&mut c),
            boot,
            "vfree gave back every faulted frame"
        );
    });
}

#[test]
fn writing_more_than_memory_reclaims_then_kills_the_areas_task() {
    let (guest, port) = boot_ready(BootOptions::default().mem("256M").append("api_quota=100"));
    let mut c = Client::connect(port);
    let boot = buddyinfo(&mut c);
    with_guest_log(&guest, || {
        let task = |c: &mut Client, name: &str, adj: i64| {
            let r = post(c, "/api/tasks", &json!({"name":name,"oom_score_adj":adj}));
            assert_eq!(r.status, 201, "{}", r.text());
            r.json()["pid"].as_u64().unwrap()
        };
        let keeper = task(&mut c, "keeper", -1000);
        let toucher = task(&mut c, "toucher", 0);
        let r = alloc(&mut c, &json!({"type":"pages","order":8,"task":keeper}));
        assert_eq!(r.status, 201, "{}", r.text());
        let r = alloc(&mut c, &json!({"type":"pagecache","size":16 * MIB}));
        assert_eq!(r.status, 201, "{}", r.text());
        let cache = r.json()["id"].as_u64().unwrap();
        let r = alloc(
            &mut c,
            &json!({"type":"vmalloc","size":768 * MIB,"lazy":true,"task":toucher}),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["id"].as_u64().unwrap();

        let r = post(&mut c, &format!("/api/alloc/{id}/fill"), &json!({"byte":1}));
        assert_eq!(r.status, 507, "{}", r.text());
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.contains(&format!(
                "the OOM killer killed task {toucher}, which owned this area"
            )),
            "{message}"
        );
        // Page cache went first: it was evicted before anyone died.
        let cached = handle(&mut c, cache);
        assert!(
            cached["resident_pages"].as_u64().unwrap() < 4096,
            "{cached}"
        );
        assert!(vmstat(&mut c, "pgsteal_direct") > 0);
        let oom = get_json(&mut c, "/api/oom");
        assert_eq!(oom["kills"], 1, "{oom}");
        let victim = &oom["reports"][0]["victim"];
        assert_eq!(victim["pid"].as_u64(), Some(toucher), "{oom}");
        assert!(victim["rss_pages"].as_u64().unwrap() > 30_000, "{oom}");
        assert_eq!(vmstat(&mut c, "oom_kill"), 1);
        let dmesg = c.request("GET", "/api/dmesg", None).text();
        assert!(
            dmesg.contains(&format!(
                "Out of memory: Killed process {toucher} (toucher)"
            )),
            "{dmesg}"
        );
        // total-vm counts the whole 768 MiB area, written or not; the
        // anon-rss only what was written.
        let kill = dmesg
            .lines()
            .find(|l| l.contains("Killed process"))
            .unwrap();
        let kb = |key: &str| -> u64 {
            let at = kill.find(key).unwrap() + key.len();
            kill[at..].split("kB").next().unwrap().parse().unwrap()
        };
        assert!(kb("total-vm:") >= 768 * 1024, "{kill}");
        let anon = kb("anon-rss:");
        assert!(anon > 100 * 1024 && anon < 256 * 1024, "{kill}");
        // The area went with its task; the keeper and its pages stayed.
        assert_eq!(
            c.request("GET", &format!("/api/alloc/{id}"), None).status,
            404
        );
        let tasks = get_json(&mut c, "/api/tasks");
        assert_eq!(tasks["tasks"].as_array().unwrap().len(), 1, "{tasks}");
        assert_eq!(tasks["tasks"][0]["pid"].as_u64(), Some(keeper));
        assert_selfcheck_ok(&mut c, "after the kill");
        reset_to_boot(&mut c, &boot, "after the OOM kill");
    });
}
