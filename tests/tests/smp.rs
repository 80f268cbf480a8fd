//! SMP bring-up on real guests: `-smp 2` and `-smp 4` start every CPU of
//! the MADT through INIT-SIPI-SIPI, each logs itself online, `/api/cpus`
//! lists them with their APIC ids (q35 numbers them 0..N-1), and the memory
//! manager — still on CPU 0 only — passes its selftest, selfcheck and
//! reset-to-boot with the other CPUs idling beside it. `-smp 1` starts none.

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

/// `/api/cpus` lists CPUs 0..n with distinct APIC ids 0..n; only CPU 0 has
/// page lists (`mm::types::NR_CPUS` is 1 until the allocator is SMP-safe).
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
    assert!(
        !online[0]["pagesets"].as_array().unwrap().is_empty(),
        "{cpus}"
    );
    for cpu in &online[1..] {
        assert_eq!(cpu["pagesets"], json!([]), "{cpus}");
        assert_eq!(cpu["pcp"]["count"], 0, "{cpus}");
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

#[test]
fn four_cpus_online_selfcheck_clean_and_reset_equals_boot() {
    let (guest, port) = boot_ready(BootOptions::default().smp(4));
    with_guest_log(&guest, || {
        assert_all_online(&guest, 4);
        let mut c = Client::connect(port);
        assert_api_cpus(&mut c, 4);
        assert_trampoline_reserved(&mut c);
        assert_selfcheck_ok(&mut c, "-smp 4 boot");
        let boot = buddyinfo(&mut c);
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
        assert_eq!(reset_to_boot(&mut c, &boot, "-smp 4"), 5);
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
    assert_all_online(&guest, 2);
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
