//! Shared steps for tests that drive the API hard: every view, selfcheck,
//! reset-to-boot, and pipelined allocation loops. One helper, called from
//! every test that needs it (exhaustion, fault injection, soak).

use serde_json::{Value, json};

use crate::http::{Client, Response};

/// Every read-only view the crash recipes GET after running out of
/// memory; each must answer 200 however full memory is.
pub const VIEWS: [&str; 20] = [
    "/api/zones",
    "/api/buddyinfo",
    "/api/meminfo",
    "/api/slabinfo",
    "/api/vmallocinfo",
    "/api/kmap",
    "/api/dma",
    "/api/mempools",
    "/api/allocations",
    "/api/net",
    "/metrics",
    "/proc/buddyinfo",
    "/proc/zoneinfo",
    "/proc/slabinfo",
    "/proc/vmallocinfo",
    "/proc/meminfo",
    "/proc/iomem",
    "/proc/pagetypeinfo",
    "/openapi.json",
    "/",
];

/// GET `path`, asserting 200, as JSON.
pub fn get_json(c: &mut Client, path: &str) -> Value {
    let r = c.request("GET", path, None);
    assert_eq!(r.status, 200, "GET {path}: {}", body_excerpt(&r));
    r.json()
}

/// POST a JSON body.
pub fn post(c: &mut Client, path: &str, body: &Value) -> Response {
    c.request("POST", path, Some(&body.to_string()))
}

/// `POST /api/alloc`.
pub fn alloc(c: &mut Client, body: &Value) -> Response {
    post(c, "/api/alloc", body)
}

/// The first 300 bytes of a body, for assertion messages.
pub fn body_excerpt(r: &Response) -> String {
    let s = String::from_utf8_lossy(&r.body);
    s.chars().take(300).collect()
}

/// An error answer's `error.code`, checking the message is there too.
pub fn error_code(r: &Response) -> String {
    let j = r.json();
    assert!(
        j["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{j}"
    );
    j["error"]["code"].as_str().unwrap_or_default().to_string()
}

/// `/api/buddyinfo`'s zones, compared whole against the boot value.
pub fn buddyinfo(c: &mut Client) -> Value {
    get_json(c, "/api/buddyinfo")["zones"].clone()
}

/// A `/api/meminfo` key in kB.
pub fn meminfo_kb(c: &mut Client, key: &str) -> u64 {
    let m = get_json(c, "/api/meminfo");
    m[key]
        .as_u64()
        .unwrap_or_else(|| panic!("meminfo has no numeric {key}: {m}"))
}

/// GETs every view in [`VIEWS`]: each 200, the JSON ones parse.
pub fn assert_views_ok(c: &mut Client, when: &str) {
    for path in VIEWS {
        let r = c.request("GET", path, None);
        assert_eq!(r.status, 200, "{when}: GET {path}: {}", body_excerpt(&r));
        if path.starts_with("/api/") || path.ends_with(".json") {
            let _: Value = serde_json::from_slice(&r.body)
                .unwrap_or_else(|e| panic!("{when}: GET {path} is not JSON: {e}"));
        }
        assert!(!r.body.is_empty(), "{when}: GET {path} is empty");
    }
}

/// `GET /api/selfcheck`: `ok` is true and `problems` is empty.
pub fn assert_selfcheck_ok(c: &mut Client, when: &str) -> Value {
    let s = get_json(c, "/api/selfcheck");
    assert_eq!(s["ok"], true, "{when}: selfcheck {s}");
    assert_eq!(
        s["problems"].as_array().map(Vec::len),
        Some(0),
        "{when}: selfcheck {s}"
    );
    s
}

/// `POST /api/reset`, then `/api/buddyinfo` must equal `boot`; returns `freed`.
pub fn reset_to_boot(c: &mut Client, boot: &Value, when: &str) -> u64 {
    let r = post(c, "/api/reset", &json!({}));
    assert_eq!(r.status, 200, "{when}: reset: {}", body_excerpt(&r));
    let freed = r.json()["freed"]
        .as_u64()
        .unwrap_or_else(|| panic!("{when}: reset answer {}", body_excerpt(&r)));
    let after = buddyinfo(c);
    assert!(
        &after == boot,
        "{when}: buddyinfo after reset differs from boot ({})\n after: {}\n boot:  {}",
        free_pages_diff(boot, &after),
        after,
        boot
    );
    freed
}

/// Per zone, free pages at boot vs now: tells a leak (fewer pages) from
/// the same pages in other blocks (different layout).
pub fn free_pages_diff(boot: &Value, now: &Value) -> String {
    let pages = |zones: &Value| -> Vec<(String, u64)> {
        zones
            .as_array()
            .map(|zs| {
                zs.iter()
                    .map(|z| {
                        let fa = z["free_area"].as_array().cloned().unwrap_or_default();
                        let n = fa
                            .iter()
                            .enumerate()
                            .map(|(o, n)| n.as_u64().unwrap_or(0) << o)
                            .sum();
                        (z["name"].as_str().unwrap_or("?").to_string(), n)
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    pages(boot)
        .iter()
        .zip(pages(now))
        .filter(|(b, n)| b.1 > 0 || n.1 > 0)
        .map(|(b, n)| format!("{}: {} free pages at boot, {} now", b.0, b.1, n.1))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Sends `body` to `POST /api/alloc` up to `max` times, `window` requests
/// in flight at once on this keep-alive connection (HTTP/1.1 pipelining),
/// stopping sending at the first answer that is not 201. Returns how many
/// answers were 201 (those still in flight when the first failure came
/// included: each is a live handle) and the first failure (`None` when
/// `max` ran out first).
pub fn alloc_until_fail(
    c: &mut Client,
    body: &Value,
    max: usize,
    window: usize,
) -> (usize, Option<Response>) {
    let body = body.to_string();
    let req = format!(
        "POST /api/alloc HTTP/1.1\r\nHost: pagezone\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (mut sent, mut ok, mut in_flight) = (0usize, 0usize, 0usize);
    let mut failed: Option<Response> = None;
    loop {
        while failed.is_none() && in_flight < window && sent < max {
            c.send_raw(req.as_bytes());
            sent += 1;
            in_flight += 1;
        }
        if in_flight == 0 {
            return (ok, failed);
        }
        let r = c.read_response(false);
        in_flight -= 1;
        if r.status == 201 {
            ok += 1;
        } else if failed.is_none() {
            failed = Some(r);
        }
    }
}

/// Every live handle, paged through `/api/allocations?offset=&limit=1000`;
/// checks `total` on every page and that no id repeats.
pub fn all_allocations(c: &mut Client) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    let mut total = None;
    loop {
        let page = get_json(
            c,
            &format!("/api/allocations?offset={}&limit=1000", all.len()),
        );
        let t = page["total"].as_u64().expect("total");
        assert_eq!(*total.get_or_insert(t), t, "total changed while paging");
        assert_eq!(page["offset"], all.len() as u64, "{}", page["offset"]);
        let items = page["allocations"].as_array().expect("allocations");
        assert!(items.len() <= 1000);
        if items.is_empty() {
            break;
        }
        all.extend(items.iter().cloned());
        if all.len() as u64 >= t {
            break;
        }
    }
    assert_eq!(Some(all.len() as u64), total, "paged through every handle");
    let mut ids: Vec<u64> = all.iter().map(|h| h["id"].as_u64().expect("id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), all.len(), "an id listed twice");
    all
}

/// Runs `f`; if it panics, prints the guest's serial log tail (and every
/// PANIC line) first, so a dead kernel is reported as such and not only
/// as a broken connection.
pub fn with_guest_log<T>(guest: &crate::Guest, f: impl FnOnce() -> T) -> T {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(v) => v,
        Err(e) => {
            let log = guest.log();
            let panics: Vec<&String> = log.iter().filter(|l| l.contains("PANIC")).collect();
            eprintln!("guest PANIC lines: {panics:#?}");
            let tail = &log[log.len().saturating_sub(25)..];
            eprintln!("guest serial tail:\n{}", tail.join("\n"));
            std::panic::resume_unwind(e)
        }
    }
}

/// Lines of the guest's serial log that report a kernel panic.
pub fn panic_lines(guest: &crate::Guest) -> Vec<String> {
    guest
        .log()
        .into_iter()
        .filter(|l| l.contains("PANIC"))
        .collect()
}

/// Sends raw requests `reqs` pipelined on one keep-alive connection,
/// `window` in flight at once, and returns every answer in order.
pub fn pipelined(c: &mut Client, reqs: &[String], window: usize) -> Vec<Response> {
    let mut out = Vec::with_capacity(reqs.len());
    let (mut sent, mut in_flight) = (0, 0);
    while out.len() < reqs.len() {
        while in_flight < window && sent < reqs.len() {
            c.send_raw(reqs[sent].as_bytes());
            sent += 1;
            in_flight += 1;
        }
        out.push(c.read_response(false));
        in_flight -= 1;
    }
    out
}

/// A raw `POST` with a JSON body, for [`pipelined`].
pub fn post_req(path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: pagezone\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A raw `DELETE`, for [`pipelined`].
pub fn delete_req(path: &str) -> String {
    format!("DELETE {path} HTTP/1.1\r\nHost: pagezone\r\n\r\n")
}
