//! `/api/dmesg` on a real guest: the boot log as the kernel printed it.

use tests::api::get_json;
use tests::http::Client;
use tests::{BootOptions, boot_ready};

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
