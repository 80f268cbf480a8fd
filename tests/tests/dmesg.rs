//! `/api/dmesg` on a real guest: the boot log as the kernel printed it.

use tests::api::get_json;
use tests::http::Client;
use tests::{BootOptions, Guest, boot_ready};

#[test]
fn dmesg_holds_the_boot_log_and_follows_since() {
    let (guest, port) = boot_ready(BootOptions::default().mem("256M"));
    let mut c = Client::connect(port);
    let r = c.request("GET", "/api/dmesg", None);
    assert_eq!(r.status, 200);
    let text = r.text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with("] Pagezone 0.1.0 booting (PVH)"),
        "{}",
        lines[0]
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("kernel reserve: 512 pages (2048 KiB) in DMA32")),
        "{text}"
    );
    // Every line the console printed after the clock started is in the ring.
    let serial = guest.log();
    let reserve_line = serial
        .iter()
        .find(|l| l.contains("kernel reserve:"))
        .expect("serial has the reserve line");
    let msg = reserve_line.split("] ").last().unwrap();
    assert!(lines.iter().any(|l| l.ends_with(msg)), "{msg}");
    // Records are numbered from 0 without gaps; since= resumes.
    let all = get_json(&mut c, "/api/dmesg.json");
    let records = all["records"].as_array().unwrap();
    assert_eq!(records.len(), lines.len());
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r["seq"], i as u64);
    }
    let tail = get_json(
        &mut c,
        &format!("/api/dmesg.json?since={}", records.len() - 2),
    );
    assert_eq!(tail["records"].as_array().unwrap().len(), 2);
    assert_eq!(tail["records"][1]["seq"], records.len() as u64 - 1);
}

/// `quiet` (cf. Linux's `quiet_kernel()`): the console prints errors only,
/// the kernel log still holds every INFO line — the same records, in the
/// same order, as a default boot's console shows.
#[test]
fn quiet_keeps_the_console_to_errors_and_the_log_whole() {
    // (Not `boot_ready`: it waits for deferred init's console line.)
    let mut guest = Guest::boot(BootOptions::default().mem("256M").append("quiet").network());
    guest.wait_for("READY http://");
    let port = guest.host_port.expect("networked guest");
    // Before READY the console printed nothing but READY itself.
    let serial = guest.log();
    let ready = serial
        .iter()
        .position(|l| l.contains("READY http://"))
        .expect("READY on the console");
    assert!(
        serial[..ready].iter().all(|l| l.trim().is_empty()),
        "printed before READY under quiet: {:?}",
        &serial[..ready]
    );
    let text = Client::connect(port)
        .request("GET", "/api/dmesg", None)
        .text();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].ends_with("] Pagezone 0.1.0 booting (PVH)"),
        "{}",
        lines[0]
    );
    for want in [
        "BIOS-e820: [mem 0x0000000000100000-",
        "console log level error",
        "Command line: quiet",
        "kernel reserve: 512 pages (2048 KiB) in DMA32",
        "boot: READY after ",
    ] {
        assert!(lines.iter().any(|l| l.contains(want)), "{want}:\n{text}");
    }
    drop(guest);

    // A default boot's console, from its first timestamped line up to
    // READY, is what the quiet boot's log holds up to `boot: READY after`,
    // message for message (the timestamps differ; the command line and
    // the quiet boot's own level line are the differences).
    let (loud, _port) = boot_ready(BootOptions::default().mem("256M"));
    let msg = |l: &str| l.split_once("] ").map(|(_, m)| m.to_string());
    let printed: Vec<String> = loud
        .log()
        .iter()
        .take_while(|l| !l.contains("READY http://"))
        .filter_map(|l| msg(l))
        .collect();
    let logged: Vec<String> = lines
        .iter()
        .take_while(|l| !l.contains("boot: READY after "))
        .filter_map(|l| msg(l))
        .filter(|m| m != "console log level error")
        .collect();
    let strip = |v: &[String]| -> Vec<String> {
        // Lines with times or run-dependent figures in them; and deferred
        // init's end with the summary it prints then (`boot:   …`
        // continuation lines), which falls before or after READY as the
        // DHCP exchange and the main loop's chunks interleave.
        v.iter()
            .filter(|m| {
                ![
                    "ms",
                    " us ",
                    "MHz",
                    "TLB grown",
                    "Command line:",
                    "deferred mem_map",
                ]
                .iter()
                .any(|w| m.contains(w))
                    && !m.starts_with("boot:   ")
            })
            .cloned()
            .collect()
    };
    assert_eq!(strip(&logged), strip(&printed));
}
