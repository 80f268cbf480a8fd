//! SMP bring-up on real guests: `-smp 2` and `-smp 4` start every CPU of
//! the MADT through INIT-SIPI-SIPI, each logs itself online, `/api/cpus`
//! lists them with their APIC ids (q35 numbers them 0..N-1) and their own
//! page lists, the selftest passes (with its TLB-shootdown check across two
//! CPUs), a benchmark on every CPU at once leaves selfcheck clean and reset
//! equal to boot, and kernel unmappings shoot down the other CPUs' TLBs.
//! `-smp 1` starts none.

use serde_json::{Value, json};
use tests::api::{alloc, assert_selfcheck_ok, buddyinfo, get_json, reset_to_boot, with_guest_log};
use tests::http::Client;
use tests::{BootOptions, EXIT_SUCCESS, Guest, boot_ready};

/// Every application processor's "online" line and the boot CPU's summary
/// are in the log (all before `READY`: the boot CPU waits for them).
fn assert_all_online(guest: &Guest, n: usize) {
    let log = guest.log();
    let has = |needle: &str| log.iter().any(|l| l.contains(needle));
    for cpu in 1..n {
        let line = format!("smp: CPU {cpu} (APIC id {cpu}) online");
        assert!(has(&line), "no {line:?}; log:\n{}", log.join("\n"));
    }
    let summary = format!("smp: Brought up 1 node, {n} CPUs");
    assert!(has(&summary), "no {summary:?}; log:\n{}", log.join("\n"));
    assert!(
        !log.iter()
            .any(|l| l.contains("left offline") || l.contains("EXCEPTION")),
        "log:\n{}",
        log.join("\n")
    );
}

/// `/api/cpus` lists CPUs 0..n with distinct APIC ids 0..n, each with its
/// own pagesets, all with the same `high` and `batch` (the LOW watermark
/// split n ways).
fn assert_api_cpus(c: &mut Client, n: usize) -> Value {
    let cpus = get_json(c, "/api/cpus");
    let online = cpus["online"].as_array().expect("online is a list");
    assert_eq!(online.len(), n, "{cpus}");
    let mut apic_ids: Vec<u64> = online
        .iter()
        .map(|c| c["apic_id"].as_u64().expect("apic_id"))
        .collect();
    let numbers: Vec<u64> = online.iter().map(|c| c["cpu"].as_u64().unwrap()).collect();
    assert_eq!(numbers, (0..n as u64).collect::<Vec<_>>(), "{cpus}");
    apic_ids.sort_unstable();
    assert_eq!(apic_ids, (0..n as u64).collect::<Vec<_>>(), "{cpus}");
    let sets0 = online[0]["pagesets"].as_array().unwrap();
    assert!(!sets0.is_empty(), "{cpus}");
    for cpu in &online[1..] {
        let sets = cpu["pagesets"].as_array().unwrap();
        assert_eq!(sets.len(), sets0.len(), "{cpus}");
        for (a, b) in sets.iter().zip(sets0) {
            assert_eq!(
                (&a["zone"], &a["high"], &a["batch"]),
                (&b["zone"], &b["high"], &b["batch"]),
                "{cpus}"
            );
        }
    }
    cpus
}

/// The trampoline's page below 1 MiB is a named memblock reservation.
fn assert_trampoline_reserved(c: &mut Client) {
    let memmap = get_json(c, "/api/memmap");
    let entry = memmap["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "smp trampoline")
        .unwrap_or_else(|| panic!("no smp trampoline in {memmap}"));
    assert_eq!(entry["type"], "memblock", "{entry}");
    assert_eq!(entry["size"], 4096, "{entry}");
    let start = tests::check::hex(&entry["start"]);
    assert!(start < 0xa0000 && start.is_multiple_of(4096), "{entry}");
}

#[test]
fn two_cpus_come_online_and_are_listed() {
    let (guest, port) = boot_ready(BootOptions::default().smp(2));
    with_guest_log(&guest, || {
        assert_all_online(&guest, 2);
        let mut c = Client::connect(port);
        assert_api_cpus(&mut c, 2);
        assert_trampoline_reserved(&mut c);
        // The AP's stacks are the boot CPU's vmalloc areas, one guard page
        // below each.
        let vmallocinfo = c.request("GET", "/proc/vmallocinfo", None).text();
        assert_eq!(
            vmallocinfo.matches(" smp_idle_stack ").count(),
            1,
            "{vmallocinfo}"
        );
        assert_selfcheck_ok(&mut c, "-smp 2 boot");
    });
}

/// Under TCG every CPU grows its softmmu TLB to 8192 entries: the AP
/// once online, the boot CPU once the boot is over (`arch::x86_64::tcg`).
/// Under KVM neither does.
#[test]
fn under_tcg_every_cpu_grows_its_softmmu_tlb() {
    let (mut guest, _port) = boot_ready(BootOptions::default().smp(2));
    let kvm = std::env::var("ACCEL").is_ok_and(|a| a == "kvm");
    let last = if kvm {
        "boot: boot complete after"
    } else {
        "mm: CPU 0: TCG softmmu TLB grown to 8192 entries"
    };
    // It follows the end of deferred init, which comes before READY when
    // DHCP is slow (a loaded host): then `boot_ready` has read past it.
    if !guest.log().iter().any(|l| l.contains(last)) {
        guest.wait_for(last);
    }
    let log = guest.log();
    let grown = |cpu: &str| {
        log.iter()
            .filter(|l| l.contains(&format!("{cpu}: TCG softmmu TLB grown to 8192 entries")))
            .count()
    };
    let want = usize::from(!kvm);
    assert_eq!(
        (grown("mm: CPU 0"), grown("smp: CPU 1")),
        (want, want),
        "log:\n{}",
        log.join("\n")
    );
}

#[test]
fn four_cpus_online_selfcheck_clean_and_reset_equals_boot() {
    let (guest, port) = boot_ready(BootOptions::default().smp(4));
    with_guest_log(&guest, || {
        assert_all_online(&guest, 4);
        let mut c = Client::connect(port);
        assert_api_cpus(&mut c, 4);
        assert_trampoline_reserved(&mut c);
        assert_selfcheck_ok(&mut c, "-smp 4 boot");
        // The per-CPU first chunk: one unit per CPU from memblock, 16 KiB
        // of each kept (the static area and the first dynamic part).
        let meminfo = get_json(&mut c, "/api/meminfo");
        assert_eq!(meminfo["Percpu"], 4 * 16, "{meminfo}");
        let boot = buddyinfo(&mut c);
        let pcpu = alloc(&mut c, &json!({"type":"percpu","size":8,"align":8})).json();
        let addrs: Vec<u64> = pcpu["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .map(tests::check::hex)
            .collect();
        assert_eq!(addrs.len(), 4, "{pcpu}");
        for (cpu, a) in addrs.iter().enumerate() {
            assert_eq!(*a, addrs[0] + cpu as u64 * 32768, "unit {cpu}: {pcpu}");
        }
        assert_eq!(buddyinfo(&mut c), boot, "the first chunk is memblock's");
        for body in [
            json!({"type":"pages","order":3,"gfp":"GFP_DMA32"}),
            json!({"type":"pages","order":0,"gfp":"GFP_HIGHUSER"}),
            json!({"type":"kmalloc","size":512}),
            json!({"type":"vmalloc","size":65536}),
            json!({"type":"percpu","size":64,"align":8}),
        ] {
            let r = alloc(&mut c, &body);
            assert_eq!(r.status, 201, "{body}: {}", r.text());
        }
        assert_selfcheck_ok(&mut c, "-smp 4 after allocations");
        assert_eq!(reset_to_boot(&mut c, &boot, "-smp 4"), 6);
        assert_selfcheck_ok(&mut c, "-smp 4 after reset");
        // The CPUs are still all there afterwards.
        assert_api_cpus(&mut c, 4);
    });
}

#[test]
fn selftest_passes_with_two_cpus() {
    let mut guest = Guest::boot(BootOptions::default().smp(2).append("selftest"));
    let status = guest.wait_exit();
    let log = guest.log();
    assert_eq!(
        status.code(),
        Some(EXIT_SUCCESS),
        "log:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter().any(|l| l.contains("selftest: PASS")),
        "log:\n{}",
        log.join("\n")
    );
    assert!(
        log.iter()
            .any(|l| l.contains("selftest: TLB shootdown: 200 rounds")
                && l.contains("no stale read")),
        "log:\n{}",
        log.join("\n")
    );
    assert_all_online(&guest, 2);
}

/// `POST /api/bench` on every CPU at once: each CPU runs its share on its
/// own page lists (CPUs 1-3 through their work queues), the answer has
/// their figures, and afterwards nothing is lost: selfcheck is clean and
/// reset equals boot. Then with every pair under one global lock, and the
/// bad requests.
#[test]
fn a_bench_on_all_four_cpus_leaves_the_allocator_whole() {
    let (guest, port) = boot_ready(BootOptions::default().smp(4));
    with_guest_log(&guest, || {
        let mut c = Client::connect(port);
        let boot = buddyinfo(&mut c);
        for (workload, global_lock) in [
            ("pages", false),
            ("pages", true),
            ("kmalloc", false),
            ("kmalloc", true),
        ] {
            let body =
                json!({"workload":workload,"iterations":5000,"cpus":4,"global_lock":global_lock});
            let r = c.request("POST", "/api/bench", Some(&body.to_string()));
            assert_eq!(r.status, 200, "{}", r.text());
            let v: Value = r.json();
            assert_eq!(v["ops"], 20000, "{v}");
            assert_eq!(v["cpus"], 4, "{v}");
            assert_eq!(v["global_lock"], global_lock, "{v}");
            assert_eq!(v["workload"], workload, "{v}");
            let per_cpu = v["per_cpu"].as_array().unwrap();
            let cpus: Vec<u64> = per_cpu.iter().map(|p| p["cpu"].as_u64().unwrap()).collect();
            assert_eq!(cpus, [0, 1, 2, 3], "{v}");
            assert!(
                per_cpu
                    .iter()
                    .all(|p| p["ops"] == 5000 && p["ns_per_op"].as_u64().unwrap() > 0),
                "{v}"
            );
            assert!(v["ops_per_sec"].as_u64().unwrap() > 0, "{v}");
        }
        // By time: every CPU runs until the shared deadline, looking at the
        // clock every 32 pairs, so each count is a multiple of 32.
        let body = json!({"workload":"kmalloc","duration_ms":50,"cpus":4});
        let r = c.request("POST", "/api/bench", Some(&body.to_string()));
        assert_eq!(r.status, 200, "{}", r.text());
        let v: Value = r.json();
        assert_eq!(
            (v["duration_ms"].as_u64(), v["cpus"].as_u64()),
            (Some(50), Some(4)),
            "{v}"
        );
        let ops: Vec<u64> = v["per_cpu"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["ops"].as_u64().unwrap())
            .collect();
        assert!(
            ops.len() == 4 && ops.iter().all(|&n| n > 0 && n % 32 == 0),
            "{v}"
        );
        assert_eq!(v["ops"].as_u64(), Some(ops.iter().sum()), "{v}");
        assert!(v["total_ns"].as_u64().unwrap() >= 50_000_000, "{v}");
        let cpus = assert_api_cpus(&mut c, 4);
        for cpu in &cpus["online"].as_array().unwrap()[1..] {
            assert_eq!(cpu["work_done"], 5, "one job per bench: {cpus}");
            assert!(
                cpu["pcp"]["count"].as_u64().unwrap() > 0,
                "its own lists were refilled: {cpus}"
            );
        }
        assert_selfcheck_ok(&mut c, "after a 4-CPU bench");
        assert_eq!(reset_to_boot(&mut c, &boot, "after a 4-CPU bench"), 0);
        // Reset drained every CPU's lists.
        let cpus = get_json(&mut c, "/api/cpus");
        for cpu in cpus["online"].as_array().unwrap() {
            assert_eq!(cpu["pcp"]["count"], 0, "{cpus}");
        }
        for (body, needle) in [
            (
                json!({"workload":"pages","iterations":10,"cpus":5}),
                "only 4 CPUs online",
            ),
            (
                json!({"workload":"pages","iterations":10,"cpus":0}),
                "out of range 1..=8",
            ),
            (
                json!({"workload":"vmalloc","iterations":10,"cpus":2}),
                "does not apply",
            ),
            (
                json!({"workload":"pages","iterations":10,"duration_ms":10}),
                "not both",
            ),
        ] {
            let r = c.request("POST", "/api/bench", Some(&body.to_string()));
            let want = if body["cpus"] == 5 { 404 } else { 400 };
            assert_eq!(r.status, want, "{body}: {}", r.text());
            assert!(r.text().contains(needle), "{body}: {}", r.text());
        }
    });
}

/// A vfree on CPU 0 leaves its area on the lazy purge list, with no IPI;
/// the purge (here `POST /api/reset`'s) shoots down the other CPUs' TLBs
/// once: each IPI is handled and counted.
#[test]
fn vfree_shoots_down_the_other_cpus_tlbs() {
    let (guest, port) = boot_ready(BootOptions::default().smp(2));
    with_guest_log(&guest, || {
        let mut c = Client::connect(port);
        let before = get_json(&mut c, "/api/cpus");
        let r = alloc(&mut c, &json!({"type":"vmalloc","size":16384}));
        assert_eq!(r.status, 201, "{}", r.text());
        let id = r.json()["id"].as_u64().unwrap();
        let r = c.request("DELETE", &format!("/api/alloc/{id}"), None);
        assert_eq!(r.status, 200, "{}", r.text());
        let lazy = get_json(&mut c, "/api/cpus");
        let sent = |v: &Value| v["tlb_shootdowns"].as_u64().unwrap();
        assert_eq!(sent(&lazy), sent(&before), "a lazy vfree sends no IPI");
        let info = get_json(&mut c, "/api/vmallocinfo");
        assert_eq!(info["lazy_pages"], 5, "{info}");
        let proc = c.request("GET", "/proc/vmallocinfo", None).text();
        assert!(
            proc.lines()
                .any(|l| l.ends_with(" unpurged vm_area") && l.contains("   20480 ")),
            "{proc}"
        );
        let r = c.request("POST", "/api/reset", None);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(get_json(&mut c, "/api/vmallocinfo")["lazy_pages"], 0);
        let after = get_json(&mut c, "/api/cpus");
        let got = |v: &Value| v["online"][1]["tlb_flushes"].as_u64().unwrap();
        assert!(sent(&after) > sent(&before), "{before} -> {after}");
        assert_eq!(
            got(&after) - got(&before),
            sent(&after) - sent(&before),
            "{before} -> {after}"
        );
        assert_eq!(
            after["online"][0]["tlb_flushes"], before["online"][0]["tlb_flushes"],
            "CPU 0 flushes itself without an IPI"
        );
    });
}

#[test]
fn one_cpu_starts_no_other() {
    let mut guest = Guest::boot(BootOptions::default().smp(1));
    guest.wait_for("smp: 1 CPU (the boot CPU, APIC id 0)");
    let log = guest.log();
    assert!(
        !log.iter().any(|l| l.contains("smp trampoline")),
        "no trampoline is reserved for one CPU; log:\n{}",
        log.join("\n")
    );
}
