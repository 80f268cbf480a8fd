//! Boots the real image and checks what the console says about memory.

use tests::{BootOptions, EXIT_FAILURE, EXIT_SUCCESS, Guest, Machine};

/// One `zone NAME start_pfn=… …` line, parsed.
#[derive(Debug)]
struct ZoneLine {
    name: String,
    start_pfn: u64,
    end_pfn: u64,
    present: u64,
    managed: u64,
    deferred: u64,
    free: u64,
}

fn field(line: &str, key: &str) -> u64 {
    let at = line
        .find(&format!(" {key}="))
        .unwrap_or_else(|| panic!("no {key}= in {line}"));
    let rest = &line[at + key.len() + 2..];
    rest.split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn zones(guest: &mut Guest) -> Vec<ZoneLine> {
    let mut out = Vec::new();
    for _ in 0..4 {
        let line = guest.wait_for("] zone ");
        let after = &line[line.find("] zone ").unwrap() + 7..];
        out.push(ZoneLine {
            name: after.split_whitespace().next().unwrap().to_string(),
            start_pfn: field(&line, "start_pfn"),
            end_pfn: field(&line, "end_pfn"),
            present: field(&line, "present"),
            managed: field(&line, "managed"),
            deferred: field(&line, "deferred"),
            free: field(&line, "free"),
        });
    }
    out
}

/// `Node 0, zone NAME c0 … c10` lines after `buddyinfo:`.
fn buddyinfo(guest: &mut Guest, populated: usize) -> Vec<(String, Vec<u64>)> {
    guest.wait_for("buddyinfo:");
    (0..populated)
        .map(|_| {
            let line = guest.wait_for("Node 0, zone ");
            assert!(
                line.ends_with(' '),
                "buddyinfo lines end with a space: {line:?}"
            );
            let rest = &line[line.find("Node 0, zone ").unwrap() + 13..];
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap().to_string();
            (name, words.map(|w| w.parse().unwrap()).collect())
        })
        .collect()
}

#[test]
fn two_gib_guest_has_every_zone_kind_and_the_right_boundaries() {
    let mut guest = Guest::boot(BootOptions::default().mem("2G"));
    guest.wait_for("BIOS-e820:");
    let zones = zones(&mut guest);
    let names: Vec<_> = zones.iter().map(|z| z.name.as_str()).collect();
    assert_eq!(names, ["DMA", "DMA32", "Normal", "HighMem"]);

    // DMA is [0, 16 MiB); DMA32 runs to lowmem (896 MiB); Normal is empty
    // below 4 GiB; HighMem starts at lowmem and ends at the end of RAM.
    let lowmem_pfn = (896u64 << 20) >> 12;
    assert_eq!((zones[0].start_pfn, zones[0].end_pfn), (0, 4096));
    assert_eq!((zones[1].start_pfn, zones[1].end_pfn), (4096, lowmem_pfn));
    assert_eq!(
        (zones[2].start_pfn, zones[2].end_pfn, zones[2].present),
        (lowmem_pfn, lowmem_pfn, 0)
    );
    assert_eq!(zones[3].start_pfn, lowmem_pfn);
    // q35 with 2 GiB: RAM to 0x7ffdf000 (the firmware keeps the last
    // pages); microvm gives all of it.
    let end_pfn = Machine::from_env().ram_end_pfn(2048);
    assert_eq!(zones[3].end_pfn, end_pfn);
    assert_eq!(zones[3].present, end_pfn - lowmem_pfn);
    // DMA: RAM is [0, 0x9fc00) + [1M, 16M) = 159 + 3840 frames.
    assert_eq!(zones[0].present, 159 + 3840);
    // The kernel heap's reserve (lowmem/128 pages, clamped to 1024) is
    // carved out of the highest lowmem zone before the table is printed;
    // nothing else is allocated yet.
    assert!(
        guest
            .log()
            .iter()
            .any(|l| l.contains("kernel reserve: 1024 pages (4096 KiB) in DMA32")),
        "the reserve's boot line"
    );
    for z in &zones {
        assert!(z.managed <= z.present, "{z:?}");
        let reserve = if z.name == "DMA32" { 1024 } else { 0 };
        assert_eq!(
            z.free + reserve,
            z.managed,
            "nothing but the kernel reserve allocated before the buddy table is printed: {z:?}"
        );
    }
    // Nothing but kernel reservations lies in HighMem: what is not managed
    // yet is deferred (struct pages initialised after boot).
    assert_eq!(zones[3].managed + zones[3].deferred, zones[3].present);
    assert!(
        zones[3].deferred > 0,
        "HighMem is initialised from the main loop"
    );

    // buddyinfo agrees with the free counts: sum(count << order) == free.
    let info = buddyinfo(&mut guest, 3);
    let populated: Vec<_> = zones.iter().filter(|z| z.present > 0).collect();
    for ((name, counts), zone) in info.iter().zip(populated) {
        assert_eq!(name, &zone.name);
        assert_eq!(counts.len(), 11);
        let pages: u64 = counts.iter().enumerate().map(|(o, c)| c << o).sum();
        assert_eq!(pages, zone.free, "zone {name}");
    }
}

/// `[    1.234567] …` → seconds.
fn stamp(line: &str) -> Option<f64> {
    let inner = line.strip_prefix('[')?.split(']').next()?;
    inner.trim().parse().ok()
}

#[test]
fn boot_phases_are_timestamped_and_deferred_init_completes() {
    let (mut guest, port) = tests::boot_ready(BootOptions::default().mem("2G"));
    // The summaries follow READY and the end of deferred init, which may
    // have come before READY (then it is in the log already) or after; on
    // microvm deferred init often ends first, and `boot_ready` returns on
    // the READY line, before the "READY after" summary that follows it.
    for summary in ["boot: READY after ", "boot: boot complete after "] {
        if !guest.log().iter().any(|l| l.contains(summary)) {
            guest.wait_for(summary);
        }
    }
    let log = guest.log();
    // Every console line of the boot carries a printk-style timestamp
    // (microseconds), the lines logged before the TSC was calibrated
    // included, and time never runs backwards.
    let stamped: Vec<(f64, &String)> = log
        .iter()
        .filter(|l| l.starts_with('['))
        .map(|l| (stamp(l).unwrap_or_else(|| panic!("no timestamp: {l}")), l))
        .collect();
    assert!(log[0].starts_with("[    0.0"), "first line: {}", log[0]);
    assert!(
        stamped.iter().all(|(_, l)| l.as_bytes()[13] == b']'),
        "seconds.microseconds"
    );
    for w in stamped.windows(2) {
        assert!(
            w[0].0 <= w[1].0,
            "time ran backwards:\n{}\n{}",
            w[0].1,
            w[1].1
        );
    }
    // The phases, in boot order, each ended by a `boot: NAME done` line.
    let phases: Vec<&str> = log
        .iter()
        .filter_map(|l| l.split("] boot: ").nth(1)?.strip_suffix(" done"))
        .collect();
    let mut expected = vec![
        "cpu",
        "firmware",
        "memblock",
        "page tables",
        "mem_map",
        "buddy, vmalloc",
        "slab",
        "interrupts",
        "pci", // q35 only: removed below on microvm
        "virtio-net",
        "network stack",
        "network up",
    ];
    if Machine::from_env().is_microvm() {
        expected.retain(|&p| p != "pci");
    }
    // Deferred init ends whenever its last chunk is done: after READY, or
    // before it when DHCP took longer than the kernel's grace (500 ms of
    // boot, a loaded host).
    let at = phases
        .iter()
        .position(|&p| p == "deferred mem_map")
        .unwrap_or_else(|| panic!("no deferred mem_map phase in {phases:?}"));
    expected.insert(at.min(expected.len()), "deferred mem_map");
    assert_eq!(phases, expected);
    for summary in ["boot: READY after ", "boot: boot complete after "] {
        assert!(log.iter().any(|l| l.contains(summary)), "{summary}");
    }
    // Deferred init handed over what boot deferred: every zone's managed
    // pages are now its present ones but for the reservations.
    let deferred_at_boot: u64 = log
        .iter()
        .filter(|l| l.contains("] zone "))
        .map(|l| {
            let v = l.split(" deferred=").nth(1).unwrap();
            v.split(' ').next().unwrap().parse::<u64>().unwrap()
        })
        .sum();
    let done = log
        .iter()
        .find(|l| l.contains(tests::DEFERRED_INIT_DONE))
        .unwrap();
    let pages: u64 = done
        .split(" ms (")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pages, deferred_at_boot, "{done}");
    let zones = tests::http::request(port, "GET", "/api/zones", None).json();
    let highmem = zones["zones"]
        .as_array()
        .unwrap()
        .iter()
        .find(|z| z["name"] == "HighMem")
        .unwrap();
    assert_eq!(highmem["managed"], highmem["present"], "{highmem}");
}

/// Deferred struct-page init waits for READY, but not for ever: with a
/// NIC on a network where no DHCP server answers, READY waits for the
/// DHCP timeout (3 s, then the static fallback), and deferred init starts
/// once its grace (500 ms of boot) is over, before READY, and hands over
/// every page boot deferred.
#[test]
fn deferred_init_completes_without_dhcp_after_its_grace() {
    let opts = BootOptions {
        silent_nic: true,
        ..BootOptions::default().mem("2G")
    };
    let mut guest = Guest::boot(opts);
    guest.wait_for("boot: network stack done");
    let (first, done) = guest.wait_for_any(&[tests::DEFERRED_INIT_DONE, "READY http://"]);
    assert_eq!(first, 0, "READY before deferred init: {done}");
    let at = stamp(&done).unwrap_or_else(|| panic!("no timestamp: {done}"));
    assert!(at >= 0.5, "deferred init ended before its grace: {done}");
    let log = guest.log();
    let deferred_at_boot: u64 = log
        .iter()
        .filter(|l| l.contains("] zone "))
        .map(|l| field(l, "deferred"))
        .sum();
    assert!(
        deferred_at_boot > 400_000,
        "{deferred_at_boot} pages deferred at 2G"
    );
    assert!(
        done.contains(&format!("({deferred_at_boot} pages: ")),
        "{done}: {deferred_at_boot} pages deferred at boot"
    );
}

#[test]
fn small_guest_has_no_highmem() {
    let mut guest = Guest::boot(BootOptions::default().mem("128M"));
    let zones = zones(&mut guest);
    assert_eq!((zones[0].start_pfn, zones[0].end_pfn), (0, 4096));
    // 128 MiB on q35: RAM ends at 0x7fdf000; on microvm at 128 MiB.
    let end_pfn = Machine::from_env().ram_end_pfn(128);
    assert_eq!((zones[1].start_pfn, zones[1].end_pfn), (4096, end_pfn));
    assert_eq!(zones[2].present, 0);
    assert_eq!(zones[3].present, 0);
    assert_eq!(zones[3].start_pfn, zones[3].end_pfn);
    let info = buddyinfo(&mut guest, 2);
    assert_eq!(
        info.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["DMA", "DMA32"]
    );
}

#[test]
fn lowmem_and_mem_on_the_command_line_move_the_boundaries() {
    let mut guest = Guest::boot(
        BootOptions::default()
            .mem("2G")
            .append("lowmem=512M mem=1G"),
    );
    guest.wait_for("mem=0x40000000");
    let zones = zones(&mut guest);
    let lowmem_pfn = (512u64 << 20) >> 12;
    assert_eq!(zones[1].end_pfn, lowmem_pfn);
    assert_eq!(zones[3].start_pfn, lowmem_pfn);
    assert_eq!(
        zones[3].end_pfn,
        (1u64 << 30) >> 12,
        "mem=1G caps the end of RAM"
    );
}

#[test]
fn malformed_command_line_options_are_reported_and_ignored() {
    let mut guest = Guest::boot(
        BootOptions::default()
            .mem("256M")
            .append("mem=12Q lowmem=banana frobnicate"),
    );
    guest.wait_for("mem=12Q");
    guest.wait_for("lowmem=banana");
    guest.wait_for("frobnicate");
    let zones = zones(&mut guest);
    // Defaults kept: no mem= cap, lowmem 896M is above RAM so no HighMem.
    assert_eq!(zones[1].end_pfn, Machine::from_env().ram_end_pfn(256));
    assert_eq!(zones[3].present, 0);
}

#[test]
fn selftest_boot_passes_and_exits_33() {
    let mut guest = Guest::boot(BootOptions::default().mem("2G").append("selftest"));
    let status = guest.wait_exit();
    assert_eq!(
        status.code(),
        Some(EXIT_SUCCESS),
        "log:\n{}",
        guest.log().join("\n")
    );
    assert!(
        guest.log().iter().any(|l| l.contains("selftest: PASS")),
        "log:\n{}",
        guest.log().join("\n")
    );
}

#[test]
fn selftest_passes_without_highmem_too() {
    let mut guest = Guest::boot(BootOptions::default().mem("128M").append("selftest"));
    let status = guest.wait_exit();
    assert_eq!(
        status.code(),
        Some(EXIT_SUCCESS),
        "log:\n{}",
        guest.log().join("\n")
    );
}

#[test]
fn a_page_fault_prints_the_walk_and_exits_35() {
    let mut guest = Guest::boot(BootOptions::default().mem("256M").append("crash=pagefault"));
    guest.wait_for("#PF");
    guest.wait_for("CR2 0x00000001deadb000");
    guest.wait_for("page walk of 0x1deadb000");
    guest.wait_for("PGD[0]");
    guest.wait_for("=> not mapped");
    assert_eq!(guest.wait_exit().code(), Some(EXIT_FAILURE));
}

#[test]
fn a_panic_is_reported_and_exits_35() {
    let mut guest = Guest::boot(BootOptions::default().mem("2G").append("crash=panic"));
    guest.wait_for("PANIC");
    assert_eq!(guest.wait_exit().code(), Some(EXIT_FAILURE));
}

#[test]
fn lowmem_above_4g_populates_zone_normal_and_selftest_covers_all_four_zones() {
    // q35 with 8 GiB: 2 GiB below the PCI hole, 6 GiB from 4 GiB up
    // (microvm: 3 GiB below, 5 GiB above; the zones come out the same).
    let mut guest = Guest::boot(
        BootOptions::default()
            .mem("8G")
            .append("lowmem=6G selftest"),
    );
    let zones = zones(&mut guest);
    let (g4, g6) = ((4u64 << 30) >> 12, (6u64 << 30) >> 12);
    assert_eq!((zones[1].start_pfn, zones[1].end_pfn), (4096, g4));
    assert_eq!(
        (zones[2].start_pfn, zones[2].end_pfn, zones[2].present),
        (g4, g6, g6 - g4)
    );
    assert_eq!(zones[3].start_pfn, g6);
    assert!(zones.iter().all(|z| z.present > 0), "{zones:?}");
    guest.wait_for("selftest: zone Normal orders 0-10 ok");
    assert_eq!(
        guest.wait_exit().code(),
        Some(EXIT_SUCCESS),
        "log:\n{}",
        guest.log().join("\n")
    );
}

#[test]
fn a_vmalloc_overrun_faults_in_the_guard_page_and_the_report_names_the_area() {
    let mut guest = Guest::boot(
        BootOptions::default()
            .mem("256M")
            .append("crash=vmalloc-overrun"),
    );
    guest.wait_for("#PF");
    guest.wait_for("=> not mapped");
    let line = guest.wait_for("is in the guard page after Vmalloc area");
    assert!(
        line.contains("1 pages, caller crash=vmalloc-overrun"),
        "{line}"
    );
    assert_eq!(guest.wait_exit().code(), Some(EXIT_FAILURE));
}
