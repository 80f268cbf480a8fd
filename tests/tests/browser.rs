//! The dashboard in real headless Chromium, driven over WebDriver.
//!
//! Boots the real image, starts Debian's `chromedriver` on a free
//! 127.0.0.1 port and drives `/usr/bin/chromium` through a tiny WebDriver
//! client (HTTP/1.1 over `TcpStream` + serde_json). It checks that the zone
//! bars show exactly `/api/buddyinfo`, that an order-5 DMA32 allocation made
//! from the control panel splits the DMA32 free_area as the buddy allocator
//! must and adds a row to the allocations list, that the row's Free button
//! restores the bars, that an invalid request (order 11) shows the API's own
//! error text, that the migrate-type view and the Fragmentation panel agree
//! with `/api/zones`, that Compact shows the kernel's before/after free_area
//! and migrated count, that the extfrag table is the kernel's text, and
//! that the page raised no JavaScript error. Screenshots go
//! to `target/dashboard.png` (1280 wide, full page),
//! `target/dashboard-narrow.png` and `target/dashboard-migratetype.png`
//! (the memory map coloured by migrate type).
//!
//! Chromium and chromedriver run in a process group of their own, killed
//! when the test ends whatever happens (`Drop`). Without `chromium` and
//! `chromedriver` installed (`.ci/deps.sh browser`) the test fails with
//! that hint rather than passing silently.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::check::{predict_alloc, zone_counts};
use tests::http::Client;
use tests::{BootOptions, boot_ready, free_port};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "chromedriver";
/// How long the page may take to show a change (refresh is ~1 s; TCG is slow).
const SETTLE: Duration = Duration::from_secs(30);
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

// ----------------------------------------------------------------------
// Processes
// ----------------------------------------------------------------------

/// A child started as the leader of its own process group; dropping it
/// kills the whole group (chromedriver and every Chromium process it
/// spawned), then reaps the leader.
struct Group(Child);

impl Group {
    fn spawn(cmd: &mut Command) -> std::io::Result<Group> {
        cmd.process_group(0).spawn().map(Group)
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        let pgid = self.0.id();
        // Only the group this test created: `kill -KILL -- -PGID`.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

// ----------------------------------------------------------------------
// A minimal WebDriver client
// ----------------------------------------------------------------------

/// One HTTP exchange with chromedriver (`Connection: close`).
fn wd_http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> std::io::Result<(u16, Value)> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(120)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    // chromedriver may keep the connection open: frame by Content-Length.
    let bad = || std::io::Error::from(std::io::ErrorKind::InvalidData);
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    let split = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        match s.read(&mut buf)? {
            0 => return Err(bad()),
            n => raw.extend_from_slice(&buf[..n]),
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let length: usize = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse().ok())
        .ok_or_else(bad)?;
    let mut body = raw.split_off(split + 4);
    while body.len() < length {
        match s.read(&mut buf)? {
            0 => return Err(bad()),
            n => body.extend_from_slice(&buf[..n]),
        }
    }
    let json = serde_json::from_slice(&body[..length]).unwrap_or(Value::Null);
    Ok((status, json))
}

/// A WebDriver session on its own chromedriver; dropping it ends the
/// session and kills chromedriver's process group.
struct Browser {
    port: u16,
    session: String,
    // Dropped after the session is deleted (field order is drop order):
    // the processes first, then their profile directory.
    _driver: Group,
    _profile: TempDir,
}

/// Chromium's fresh `--user-data-dir`, removed at the end.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Browser {
    fn start() -> Browser {
        for (bin, what) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            let found = Command::new("sh")
                .args(["-c", &format!("command -v {bin}")])
                .stdout(Stdio::null())
                .status();
            assert!(
                found.is_ok_and(|s| s.success()),
                "{bin} not found: install Debian's {what} (`.ci/deps.sh browser`, run by `make test`)"
            );
        }
        let port = free_port();
        let driver = Group::spawn(
            Command::new(CHROMEDRIVER)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null()),
        )
        .expect("start chromedriver");
        // Wait for chromedriver to answer /status (bounded; not a fixed sleep).
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok((200, v)) = wd_http(port, "GET", "/status", None)
                && v["value"]["ready"] == true
            {
                break;
            }
            assert!(
                Instant::now() < end,
                "chromedriver did not become ready on 127.0.0.1:{port}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let profile =
            std::env::temp_dir().join(format!("pagezone-chromium-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&profile);
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                    "--disable-component-update", "--no-first-run", "--disable-sync",
                    "--disable-dev-shm-usage", "--hide-scrollbars",
                    format!("--user-data-dir={}", profile.display()),
                    "--window-size=1280,800",
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let profile = TempDir(profile);
        let (status, v) =
            wd_http(port, "POST", "/session", Some(&caps)).expect("create a WebDriver session");
        assert_eq!(status, 200, "new session: {v}");
        let session = v["value"]["sessionId"]
            .as_str()
            .expect("sessionId")
            .to_string();
        Browser {
            port,
            session,
            _driver: driver,
            _profile: profile,
        }
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        let (status, v) = wd_http(self.port, method, &path, body.as_ref())
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert_eq!(status, 200, "WebDriver {method} {path}: {v}");
        v["value"].clone()
    }

    fn cdp(&self, cmd: &str, params: Value) -> Value {
        self.cmd(
            "POST",
            "/goog/cdp/execute",
            Some(json!({"cmd": cmd, "params": params})),
        )
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    /// Run `script` (a function body; `arguments` available) in the page.
    fn js(&self, script: &str, args: Value) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": args})),
        )
    }

    fn find(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v[ELEMENT_KEY]
            .as_str()
            .unwrap_or_else(|| panic!("element {css}: {v}"))
            .to_string()
    }

    fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Clear a text/number field and type `text` into it (real key events).
    fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    fn text(&self, css: &str) -> String {
        let e = self.find(css);
        self.cmd("GET", &format!("/element/{e}/text"), None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn set_window(&self, width: u32, height: u32) {
        self.cmd(
            "POST",
            "/window/rect",
            Some(json!({"width": width, "height": height})),
        );
    }

    /// The browser log since the last call (chromedriver's legacy endpoint).
    fn browser_log(&self) -> Vec<Value> {
        self.cmd("POST", "/se/log", Some(json!({"type": "browser"})))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// A PNG of the whole page, not just the viewport.
    fn full_page_png(&self) -> Vec<u8> {
        let m = self.cdp("Page.getLayoutMetrics", json!({}));
        let size = &m["cssContentSize"];
        let (w, h) = (
            size["width"].as_f64().unwrap_or(1280.0),
            size["height"].as_f64().unwrap_or(800.0),
        );
        let shot = self.cdp(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true,
                   "clip": {"x": 0, "y": 0, "width": w.ceil(), "height": h.ceil(), "scale": 1}}),
        );
        base64_decode(shot["data"].as_str().expect("screenshot data"))
    }

    /// Polls `f` until it returns `Some`, or panics with `what` and the last
    /// value seen.
    fn wait_until<T>(&self, what: &str, mut f: impl FnMut(&Browser) -> Result<T, String>) -> T {
        let end = Instant::now() + SETTLE;
        loop {
            match f(self) {
                Ok(v) => return v,
                Err(last) if Instant::now() >= end => {
                    panic!("timed out waiting for {what}; last: {last}")
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // Let chromedriver close Chromium cleanly; the group kill follows.
        let _ = wd_http(
            self.port,
            "DELETE",
            &format!("/session/{}", self.session),
            None,
        );
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        _ => None,
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = acc << 6 | u32::from(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

// ----------------------------------------------------------------------
// What the page and the API say
// ----------------------------------------------------------------------

type Counts = Vec<(String, Vec<u64>)>;

fn api_buddyinfo(c: &mut Client) -> Counts {
    let r = c.request("GET", "/api/buddyinfo", None);
    assert_eq!(r.status, 200);
    r.json()["zones"]
        .as_array()
        .unwrap()
        .iter()
        .map(|z| {
            let counts = z["free_area"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap())
                .collect();
            (z["name"].as_str().unwrap().to_string(), counts)
        })
        .collect()
}

/// Pageblocks per migrate type over all zones of `/api/zones`, as
/// `{"Unmovable":n,…}`.
fn api_pageblock_totals(c: &mut Client) -> Value {
    let zones = c.request("GET", "/api/zones", None).json();
    let mut totals = serde_json::Map::new();
    for z in zones["zones"].as_array().unwrap() {
        for (mt, n) in z["pageblocks"].as_object().expect("pageblocks") {
            let sum = totals.get(mt).and_then(Value::as_u64).unwrap_or(0) + n.as_u64().unwrap();
            totals.insert(mt.clone(), json!(sum));
        }
    }
    Value::Object(totals)
}

/// The numbers printed under the zone bars, zone by zone, order 0..=10, as
/// the user reads them (the count labels' text).
fn page_bars(b: &Browser) -> Result<Counts, String> {
    let v = b.js(
        "return [...document.querySelectorAll('#zones .zone')].map(z => [z.dataset.zone,
            [...z.querySelectorAll('.order .count')].map(c => c.textContent.trim())]);",
        json!([]),
    );
    let mut out = Vec::new();
    for z in v.as_array().ok_or("no zones")? {
        let name = z[0].as_str().ok_or("zone name")?.to_string();
        let texts = z[1].as_array().ok_or("counts")?;
        if texts.len() != 11 {
            return Err(format!("{name}: {} bars", texts.len()));
        }
        let counts = texts
            .iter()
            .map(|t| {
                t.as_str()
                    .and_then(|s| s.parse::<u64>().ok())
                    .ok_or_else(|| format!("{name}: bar label {t}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        out.push((name, counts));
    }
    if out.is_empty() {
        return Err("no zone cards yet".into());
    }
    Ok(out)
}

/// `(id, zone, order)` of every row of the allocations list.
fn page_allocations(b: &Browser) -> Vec<(u64, String, String)> {
    let v = b.js(
        "return [...document.querySelectorAll('#allocations tbody tr[data-id]')]
            .map(r => [Number(r.dataset.id), r.dataset.zone, r.dataset.order]);",
        json!([]),
    );
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r[0].as_u64().unwrap(),
                r[1].as_str().unwrap().into(),
                r[2].as_str().unwrap().into(),
            )
        })
        .collect()
}

/// Waits until the page's bars equal `want` and returns them.
fn wait_bars(b: &Browser, what: &str, want: &Counts) -> Counts {
    b.wait_until(what, |b| {
        let bars = page_bars(b)?;
        if &bars == want {
            Ok(bars)
        } else {
            Err(format!("page {bars:?} want {want:?}"))
        }
    })
}

fn workspace_target() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let dir = root.join("target");
    std::fs::create_dir_all(&dir).expect("create target/");
    dir
}

/// The status code of `GET path`, read from the head alone: the connection
/// is dropped after it, so a stream (`/api/events`) does not hold the test.
fn head_status(port: u16, path: &str) -> u16 {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the guest");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&head)
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line from GET {path}"))
}

/// WCAG contrast of the text of every visible element matching a selector
/// (`contrast.js`: computed colours composited over computed backgrounds).
const CONTRAST_JS: &str = include_str!("contrast.js");

/// Runs `contrast.js` on `selector`: `(elements checked, those below 4.5:1)`.
fn contrast_failures(b: &Browser, selector: &str) -> (u64, Vec<Value>) {
    let v = b.js(CONTRAST_JS, json!([selector, 4.5]));
    (
        v["checked"].as_u64().expect("checked"),
        v["failures"].as_array().cloned().unwrap_or_default(),
    )
}

/// Axis labels of the strips: each `[axis id, [[left, right], …]]` with
/// the label boxes relative to the axis, and the axis width.
const AXIS_BOXES: &str = "return ['map-overview-axis', 'map-zoom-axis', 'vmalloc-axis'].map(id => {
    const a = document.getElementById(id); const r = a.getBoundingClientRect();
    return [id, r.width, [...a.children].map(s => { const q = s.getBoundingClientRect(); return [q.left - r.left, q.right - r.left, s.textContent]; })];
});";

/// Asserts that no two labels of an axis overlap and none leaves its axis.
fn assert_axis_labels_apart(b: &Browser, when: &str) {
    let axes = b.js(AXIS_BOXES, json!([]));
    for axis in axes.as_array().unwrap() {
        let (id, width) = (axis[0].as_str().unwrap(), axis[1].as_f64().unwrap());
        let boxes: Vec<(f64, f64, String)> = axis[2]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l[0].as_f64().unwrap(),
                    l[1].as_f64().unwrap(),
                    l[2].as_str().unwrap().to_string(),
                )
            })
            .collect();
        if width == 0.0 {
            continue; // a hidden panel (endpoint not built)
        }
        assert!(boxes.len() >= 2, "{when}: #{id} shows {boxes:?}");
        for (i, a) in boxes.iter().enumerate() {
            assert!(
                a.0 >= -0.5 && a.1 <= width + 0.5,
                "{when}: #{id} label {a:?} leaves the axis (width {width})"
            );
            for c in &boxes[i + 1..] {
                assert!(
                    a.1 <= c.0 || c.1 <= a.0,
                    "{when}: #{id} labels overlap: {a:?} and {c:?}"
                );
            }
        }
    }
}

/// Installed before the page's own scripts: every uncaught error, rejected
/// promise and `console.error` lands in `window.__pagezoneErrors`.
const ERROR_COLLECTOR: &str = r#"
window.__pagezoneErrors = [];
window.addEventListener('error', e => window.__pagezoneErrors.push('error: ' + (e.message || e.type) + ' at ' + (e.filename || '') + ':' + (e.lineno || 0)));
window.addEventListener('unhandledrejection', e => window.__pagezoneErrors.push('unhandled rejection: ' + (e.reason && e.reason.stack || e.reason)));
(() => { const orig = console.error; console.error = function (...a) { window.__pagezoneErrors.push('console.error: ' + a.join(' ')); return orig.apply(this, a); }; })();
"#;

#[test]
fn dashboard_in_headless_chromium() {
    let opts = BootOptions {
        deadline: Duration::from_secs(400),
        ..BootOptions::default()
    };
    // The API may hold all of HighMem (step 4e takes its every order-10
    // block): 90 % of managed memory instead of the default 50 %.
    let (_guest, port) = boot_ready(opts.mem("2G").append("api_quota=90"));
    let mut api = Client::connect(port);
    let b = Browser::start();
    b.cdp("Page.enable", json!({}));
    b.cdp(
        "Page.addScriptToEvaluateOnNewDocument",
        json!({ "source": ERROR_COLLECTOR }),
    );
    b.set_window(1280, 800);
    b.goto(&format!("http://127.0.0.1:{port}/"));
    assert_eq!(
        b.js("return document.title", json!([])),
        "Pagezone — physical memory, live"
    );
    // The page came gzip-compressed (Chromium sends Accept-Encoding: gzip)
    // and inflated to exactly web-ui/index.html; a client without
    // Accept-Encoding gets the HTML itself, byte for byte.
    let html: &[u8] = include_bytes!("../../web-ui/index.html");
    let gz = api.request_with("GET", "/", None, &[("Accept-Encoding", "gzip")]);
    assert_eq!(gz.status, 200);
    assert_eq!(gz.header("content-encoding"), Some("gzip"));
    assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
    assert!(gz.body.starts_with(&[0x1f, 0x8b, 8]) && gz.body.len() < html.len() / 3);
    let plain = api.request("GET", "/", None);
    assert_eq!(plain.header("content-encoding"), None);
    assert_eq!(plain.header("vary"), Some("Accept-Encoding"));
    assert!(
        plain.body == html,
        "GET / without Accept-Encoding is not index.html"
    );
    let sizes = b.js(
        "const n = performance.getEntriesByType('navigation')[0];
         return [n.encodedBodySize, n.decodedBodySize];",
        json!([]),
    );
    assert_eq!(
        sizes,
        json!([gz.body.len(), html.len()]),
        "Chromium's transfer (encoded, decoded) sizes of the dashboard"
    );

    // 1. The zone bars show exactly /api/buddyinfo.
    let before = api_buddyinfo(&mut api);
    let bars = wait_bars(&b, "zone bars equal to /api/buddyinfo", &before);
    assert_eq!(
        bars.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["DMA", "DMA32", "Normal", "HighMem"]
    );
    assert_eq!(
        api_buddyinfo(&mut api),
        before,
        "the kernel changed under the test"
    );

    // 2. Allocate order-5 pages in DMA32 from the control panel.
    assert!(page_allocations(&b).is_empty());
    let mut expected = before.clone();
    let dma32 = expected.iter_mut().find(|(n, _)| n == "DMA32").unwrap();
    let zones = api.request("GET", "/api/zones", None).json();
    dma32.1 = predict_alloc(&zones, "DMA32", "Unmovable", 5);
    b.click("#alloc-type option[value=pages]");
    b.type_into("#alloc-order", "5");
    b.click("input[name=gfp][value=GFP_DMA32]");
    b.click("#alloc-submit");
    let after = wait_bars(&b, "DMA32 bars to show the order-5 split", &expected);
    assert_ne!(zone_counts(&after, "DMA32"), zone_counts(&before, "DMA32"));
    assert_eq!(
        api_buddyinfo(&mut api),
        after,
        "page and /api/buddyinfo agree after the allocation"
    );
    let rows = b.wait_until("a row in the allocations list", |b| {
        let rows = page_allocations(b);
        if rows.len() == 1 {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    });
    let (id, row_zone, row_order) = rows[0].clone();
    assert_eq!((row_zone.as_str(), row_order.as_str()), ("DMA32", "5"));
    let handles = api.request("GET", "/api/allocations", None).json();
    let handle = &handles["allocations"][0];
    assert_eq!(handle["id"], id);
    assert_eq!(
        (handle["zone"].as_str(), handle["order"].as_u64()),
        (Some("DMA32"), Some(5))
    );
    assert_eq!(
        b.js(
            "return document.querySelector('#result').dataset.state",
            json!([])
        ),
        "ok"
    );
    assert!(
        b.text("#result-body").contains("\"zone\": \"DMA32\""),
        "{}",
        b.text("#result-body")
    );

    // 3. Free it from the list: the bars come back, the row goes.
    b.click(&format!(
        "#allocations tr[data-id=\"{id}\"] button[data-action=free]"
    ));
    wait_bars(
        &b,
        "the bars to return to their value before the allocation",
        &before,
    );
    b.wait_until("the row to leave the list", |b| {
        let rows = page_allocations(b);
        if rows.is_empty() {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });
    assert_eq!(api_buddyinfo(&mut api), before);
    assert_eq!(
        api.request("GET", "/api/allocations", None).json()["allocations"],
        json!([])
    );

    // 4. An invalid request shows the API's own error text.
    let direct = api.request(
        "POST",
        "/api/alloc",
        Some(r#"{"type":"pages","order":11,"gfp":"GFP_DMA32"}"#),
    );
    assert_eq!(direct.status, 400);
    let message = direct.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    b.type_into("#alloc-order", "11");
    b.click("#alloc-submit");
    b.wait_until("the API's error text on the page", |b| {
        let state = b.js(
            "return document.querySelector('#result').dataset.state",
            json!([]),
        );
        let shown = b.text("#result-message");
        if state == "error" && shown == message {
            Ok(())
        } else {
            Err(format!("state {state}, shown {shown:?}, want {message:?}"))
        }
    });
    let head = b.text("#result-head");
    assert!(head.contains("400") && head.contains("EINVAL"), "{head}");
    assert_eq!(
        api_buddyinfo(&mut api),
        before,
        "a refused request changed nothing"
    );

    // Every control of the control panel has an accessible name, and the
    // panels of endpoints not in this build say so instead of erroring.
    let unlabelled = b.js(
        "return [...document.querySelectorAll('#control-panel input, #control-panel select, #control-panel button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML);",
        json!([]),
    );
    assert_eq!(unlabelled, json!([]), "controls without a label");
    let notes = b.js(
        "return [...document.querySelectorAll('[data-error]')].map(n => n.textContent).filter(t => t);",
        json!([]),
    );
    assert_eq!(notes, json!([]), "panels showing API errors");
    let mut not_built = Vec::new();
    for path in [
        "/api/slabinfo",
        "/api/vmallocinfo",
        "/api/kmap",
        "/api/mempools",
        "/api/pagemap",
    ] {
        let r = api.request("GET", path, None);
        if r.status == 404 {
            not_built.push(path);
            let note = b.js(
                "return [...document.querySelectorAll('[data-unavailable]')].map(n => n.textContent).join('\\n');",
                json!([]),
            );
            assert!(
                note.as_str()
                    .unwrap()
                    .contains(&format!("{path} is not available in this build")),
                "{path}: {note}"
            );
        } else {
            assert_eq!(r.status, 200, "{path}");
        }
    }

    // 4b. The Pressure panel: a task made from its form shows in the
    // table with its oom_score, and its controls are labelled.
    b.type_into("#task-name", "webtask");
    b.type_into("#task-adj", "300");
    b.click("#task-form button[type=submit]");
    let row = b.wait_until("the new task in the Pressure panel", |b| {
        let t = b.text("#tasks tbody");
        if t.contains("webtask") { Ok(t) } else { Err(t) }
    });
    assert!(row.contains("300"), "{row}");
    let tasks = api.request("GET", "/api/tasks", None).json();
    assert_eq!(tasks["tasks"][0]["name"], "webtask", "{tasks}");
    let unlabelled = b.js(
        "return [...document.querySelectorAll('#pressure-panel input, #pressure-panel button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML);",
        json!([]),
    );
    assert_eq!(unlabelled, json!([]), "pressure controls without a label");
    let pid = tasks["tasks"][0]["pid"].as_u64().unwrap();
    assert_eq!(
        api.request("DELETE", &format!("/api/tasks/{pid}"), None)
            .status,
        200
    );

    // 4c. A lazy area shows reserved vs resident pages: 16 MiB reserved,
    // 3 pages written.
    let r = api.request(
        "POST",
        "/api/alloc",
        Some(r#"{"type":"vmalloc","size":16777216,"lazy":true}"#),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let lazy = r.json()["id"].as_u64().unwrap();
    let r = api.request(
        "POST",
        &format!("/api/alloc/{lazy}/fill"),
        Some(r#"{"byte":7,"length":12288}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let row = b.wait_until("the lazy area in the Pressure panel", |b| {
        let t = b.text("#lazy-areas tbody");
        if t.contains("4096") { Ok(t) } else { Err(t) }
    });
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..3],
        [lazy.to_string().as_str(), "4096", "3"],
        "{row}"
    );
    assert_eq!(
        api.request("DELETE", &format!("/api/alloc/{lazy}"), None)
            .status,
        200
    );

    // 4d. The memory map coloured by pageblock migrate type: its legend
    // counts the pageblocks of all RAM from /api/pagemap's letters, and
    // must say what /api/zones' "pageblocks" say; so must the
    // Fragmentation panel's table, zone by zone.
    b.click("#map-colour option[value=migratetype]");
    b.wait_until("map legend counts equal to /api/zones pageblocks", |b| {
        let shown = b.js(
            "return Object.fromEntries([...document.querySelectorAll('#map-legend [data-mt]')]
                .map(s => [s.dataset.mt, Number(s.dataset.count)]));",
            json!([]),
        );
        let texts = b.text("#map-legend");
        let want = api_pageblock_totals(&mut api);
        if shown == want && texts.contains("pageblock") {
            Ok(())
        } else {
            Err(format!("page {shown} ({texts}) want {want}"))
        }
    });
    b.wait_until("the pageblock table equal to /api/zones", |b| {
        let shown = b.js(
            "return Object.fromEntries([...document.querySelectorAll('#pageblock-counts tbody tr')].map(r =>
                [r.dataset.zone, Object.fromEntries([...r.querySelectorAll('td[data-mt]')]
                    .map(c => [c.dataset.mt, Number(c.textContent.replace(/,/g, ''))]))]));",
            json!([]),
        );
        let zones = api.request("GET", "/api/zones", None).json();
        let want: serde_json::Map<String, Value> = zones["zones"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|z| z["spanned"].as_u64() > Some(0))
            .map(|z| (z["name"].as_str().unwrap().to_string(), z["pageblocks"].clone()))
            .collect();
        let want = Value::Object(want);
        if shown == want { Ok(()) } else { Err(format!("page {shown} want {want}")) }
    });
    b.js(
        "document.querySelector('#memmap-panel').scrollIntoView()",
        json!([]),
    );
    let shot = b.cdp("Page.captureScreenshot", json!({"format": "png"}));
    std::fs::write(
        workspace_target().join("dashboard-migratetype.png"),
        base64_decode(shot["data"].as_str().expect("screenshot data")),
    )
    .expect("write the screenshot");
    b.click("#map-colour option[value=owner]");

    // 4e. Compact HighMem from the Fragmentation panel: movable HighMem
    // pages with holes between them, low in the zone where the migration
    // scanner starts (the allocator hands out the top of HighMem first,
    // where the free scanner starts and nothing would move). So: take
    // every free order-10 block of HighMem, give the lowest back, allocate
    // order-0 pages until 64 of them lie in it, then free everything else
    // and every other one of the 64. The page must show the free_area
    // before and after (equal to /api/buddyinfo either side) and
    // "migrated" equal to what the kernel did (pgmigrate_success, and the
    // handles whose pfn changed).
    let alloc_movable = |api: &mut Client, order: u32| -> Option<(u64, u64)> {
        let r = api.request(
            "POST",
            "/api/alloc",
            Some(&format!(
                r#"{{"type":"pages","order":{order},"gfp":"GFP_HIGHUSER_MOVABLE","oom":false}}"#
            )),
        );
        assert_eq!(r.status, 201, "{}", r.text());
        let h = r.json();
        let id = h["id"].as_u64().unwrap();
        if h["zone"] == "HighMem" {
            Some((id, h["pfn"].as_u64().unwrap()))
        } else {
            assert_eq!(
                api.request("DELETE", &format!("/api/alloc/{id}"), None)
                    .status,
                200
            );
            None
        }
    };
    let free = |api: &mut Client, id: u64| {
        assert_eq!(
            api.request("DELETE", &format!("/api/alloc/{id}"), None)
                .status,
            200
        );
    };
    let mut blocks = Vec::new();
    while let Some(b) = alloc_movable(&mut api, 10) {
        blocks.push(b);
        assert!(
            blocks.len() < 4096,
            "HighMem never ran out of order-10 blocks"
        );
    }
    blocks.sort_by_key(|&(_, pfn)| pfn);
    assert!(blocks.len() >= 2, "{blocks:?}");
    let (low_id, low) = blocks.remove(0);
    free(&mut api, low_id);
    let (mut movable, mut filler) = (Vec::new(), Vec::new());
    while movable.len() < 64 {
        let page = alloc_movable(&mut api, 0).expect("a HighMem page");
        if (low..low + 1024).contains(&page.1) {
            movable.push(page);
        } else {
            filler.push(page);
            assert!(filler.len() < 4096, "no page from the freed block at {low}");
        }
    }
    for &(id, _) in blocks.iter().chain(&filler) {
        free(&mut api, id);
    }
    movable.sort_by_key(|&(_, pfn)| pfn);
    let mut kept = Vec::new();
    for (i, &(id, pfn)) in movable.iter().enumerate() {
        if i % 2 == 1 {
            free(&mut api, id);
        } else {
            kept.push((id, pfn));
        }
    }
    let migrated_before = api.request("GET", "/api/vmstat", None).json()["pgmigrate_success"]
        .as_u64()
        .expect("pgmigrate_success");
    let highmem_before = zone_counts(&api_buddyinfo(&mut api), "HighMem").to_vec();
    b.click("#compact-zone option[value=HighMem]");
    b.click("#compact-submit");
    let shown_migrated: u64 = b.wait_until("the compaction result on the page", |b| {
        let v = b.js(
            "const m = document.querySelector('#compact-migrated'); return m ? m.textContent : null;",
            json!([]),
        );
        v.as_str()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("{v}; error: {}", b.text("#compact-result")))
    });
    let highmem_after = zone_counts(&api_buddyinfo(&mut api), "HighMem").to_vec();
    let migrated_after = api.request("GET", "/api/vmstat", None).json()["pgmigrate_success"]
        .as_u64()
        .unwrap();
    assert_eq!(shown_migrated, migrated_after - migrated_before);
    let moved = kept
        .iter()
        .filter(|&&(id, pfn)| {
            api.request("GET", &format!("/api/alloc/{id}"), None).json()["pfn"].as_u64()
                != Some(pfn)
        })
        .count() as u64;
    assert_eq!(shown_migrated, moved, "handles moved vs migrated shown");
    assert!(shown_migrated > 0, "nothing to migrate: {kept:?}");
    assert_eq!(b.text("#compact-failed"), "0");
    let histogram = b.js(
        "return [...document.querySelectorAll('#compact-histogram tbody tr')].map(r =>
            [r.dataset.zone, r.dataset.when, [...r.querySelectorAll('td.num')]
                .map(c => Number(c.dataset.count ?? c.textContent))]);",
        json!([]),
    );
    assert_eq!(
        histogram,
        json!([
            ["HighMem", "before", highmem_before],
            ["HighMem", "after", highmem_after]
        ]),
        "the before/after free_area shown"
    );
    let zone_rows = b.text("#compact-zones tbody");
    assert!(zone_rows.starts_with("HighMem"), "{zone_rows}");
    for (id, _) in kept {
        free(&mut api, id);
    }

    // 4f. The extfrag table: one row per populated zone, its 11 values
    // exactly the kernel's text.
    b.wait_until("the extfrag table equal to the kernel's text", |b| {
        let text = api
            .request("GET", "/sys/kernel/debug/extfrag/extfrag_index", None)
            .text();
        let want: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("Node 0, zone"))
            .map(|rest| {
                let mut f = rest.split_whitespace();
                let zone = f.next().unwrap_or_default();
                json!([zone, f.collect::<Vec<_>>()])
            })
            .collect();
        let shown = b.js(
            "return [...document.querySelectorAll('#extfrag tbody tr')].map(r =>
                [r.dataset.zone, [...r.querySelectorAll('td')].map(c => c.textContent)]);",
            json!([]),
        );
        if shown == Value::Array(want.clone()) {
            Ok(want)
        } else {
            Err(format!("page {shown} want {want:?}"))
        }
    });
    let zones = api.request("GET", "/api/zones", None).json();
    let populated: Vec<Value> = zones["zones"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|z| z["present"].as_u64() > Some(0))
        .map(|z| z["name"].clone())
        .collect();
    let rows = b.js(
        "return [...document.querySelectorAll('#extfrag tbody tr')].map(r => [r.dataset.zone, r.querySelectorAll('td').length]);",
        json!([]),
    );
    assert_eq!(
        rows,
        Value::Array(populated.iter().map(|z| json!([z, 11])).collect()),
        "one row of 11 per populated zone"
    );
    let unlabelled = b.js(
        "return [...document.querySelectorAll('#frag-panel input, #frag-panel select, #frag-panel button, #memmap-panel input, #memmap-panel select, #memmap-panel button')]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label') && !e.textContent.trim())
            .map(e => e.outerHTML);",
        json!([]),
    );
    assert_eq!(
        unlabelled,
        json!([]),
        "fragmentation controls without a label"
    );

    // 4g. The live event feed (GET /api/events). Where the kernel serves
    // it: record mm_page_alloc from the panel's own checkbox, filter on
    // mm_page_alloc at order 5, and an order-5 allocation made now must
    // show as a line with its pfn; paused, the next one must not show
    // until Resume. Where it answers 404, the panel must say so plainly.
    let events_status = head_status(port, "/api/events");
    if events_status == 404 {
        not_built.push("/api/events");
        let note = b.wait_until("the feed's 'not available' note", |b| {
            let t = b.text("#events-unavailable");
            if t.contains("GET /api/events is not available in this build (404") {
                Ok(t)
            } else {
                Err(t)
            }
        });
        assert!(
            note.contains("no such path") || note.contains("not available"),
            "{note}"
        );
        assert_eq!(
            b.js(
                "return document.querySelector('#events-state').textContent",
                json!([])
            ),
            "not available"
        );
        eprintln!(
            "SKIPPED (not a failure): the live-feed assertions need GET /api/events, which answers 404 in this build; the panel's 404 message was checked instead"
        );
    } else {
        assert_eq!(events_status, 200, "GET /api/events");
        b.wait_until("the feed to connect", |b| {
            let state = b.js(
                "return document.querySelector('#events-state').dataset.state",
                json!([]),
            );
            if state == "live" {
                Ok(())
            } else {
                Err(format!("{state}"))
            }
        });
        b.click("#events-record input[data-trace=\"kmem/mm_page_alloc\"]");
        let enable = "/sys/kernel/tracing/events/kmem/mm_page_alloc/enable";
        b.wait_until("mm_page_alloc enabled from the page", |_| {
            let t = api.request("GET", enable, None).text();
            if t.trim() == "1" { Ok(()) } else { Err(t) }
        });
        b.click("#events-filter-event option[value=mm_page_alloc]");
        b.type_into("#events-filter-order", "5");
        let alloc_order5 = |api: &mut Client| -> (u64, u64) {
            let r = api.request(
                "POST",
                "/api/alloc",
                Some(r#"{"type":"pages","order":5,"gfp":"GFP_DMA32"}"#),
            );
            assert_eq!(r.status, 201, "{}", r.text());
            let h = r.json();
            (h["id"].as_u64().unwrap(), h["pfn"].as_u64().unwrap())
        };
        let line_for = |b: &Browser, pfn: u64| -> Value {
            b.js(
                "const l = [...document.querySelectorAll('#event-log li[data-event=mm_page_alloc]')]
                    .find(l => l.dataset.pfn === String(arguments[0]));
                 return l ? [l.dataset.order, l.dataset.zone, l.textContent] : null;",
                json!([pfn]),
            )
        };
        let (id, pfn) = alloc_order5(&mut api);
        let line = b.wait_until("the order-5 allocation in the live feed", |b| {
            let v = line_for(b, pfn);
            if v.is_null() {
                Err(b.text("#event-log"))
            } else {
                Ok(v)
            }
        });
        assert_eq!(line[0], "5", "{line}");
        assert_eq!(line[1], "DMA32", "{line}");
        assert!(
            line[2]
                .as_str()
                .unwrap()
                .contains(&format!("pfn=0x{pfn:x}")),
            "{line}"
        );
        // Only matching lines are shown.
        let others = b.js(
            "return [...document.querySelectorAll('#event-log li[data-event]')]
                .filter(l => l.dataset.event !== 'mm_page_alloc' || l.dataset.order !== '5').length",
            json!([]),
        );
        assert_eq!(others, 0, "the filter lets other lines through");
        b.click("#events-pause");
        let (id2, pfn2) = alloc_order5(&mut api);
        std::thread::sleep(Duration::from_secs(3));
        assert!(line_for(&b, pfn2).is_null(), "a line appeared while paused");
        let held = b.text("#events-state");
        assert!(held.starts_with("paused"), "{held}");
        b.click("#events-pause");
        b.wait_until("the paused event after Resume", |b| {
            if line_for(b, pfn2).is_null() {
                Err(b.text("#events-state"))
            } else {
                Ok(())
            }
        });
        let lines = b.js(
            "return document.querySelectorAll('#event-log li').length",
            json!([]),
        );
        assert!(lines.as_u64().unwrap() <= 200, "{lines} lines kept");
        for id in [id, id2] {
            assert_eq!(
                api.request("DELETE", &format!("/api/alloc/{id}"), None)
                    .status,
                200
            );
        }
        b.click("#events-record input[data-trace=\"kmem/mm_page_alloc\"]");
        b.wait_until("mm_page_alloc disabled again", |_| {
            let t = api.request("GET", enable, None).text();
            if t.trim() == "0" { Ok(()) } else { Err(t) }
        });
        b.click("#events-filter-event option[value='']");
        b.type_into("#events-filter-order", "");
    }
    // The per-order rates: one row of 11 per source, the buddyinfo row
    // always filled (signed numbers), its label saying what it counts.
    b.wait_until("the per-order rates", |b| {
        let rows = b.js(
            "return [...document.querySelectorAll('#order-rates tbody tr')].map(r => [r.dataset.row, r.querySelectorAll('td').length,
                r.querySelector('th').textContent, [...r.querySelectorAll('td')].map(c => c.textContent)]);",
            json!([]),
        );
        let buddy = rows.as_array().and_then(|r| r.iter().find(|r| r[0] == "buddyinfo")).cloned();
        match buddy {
            Some(r) if r[1] == 11 && r[3].as_array().unwrap().iter().all(|c| {
                let c = c.as_str().unwrap();
                c == "0" || c.starts_with('+') || c.starts_with('−')
            }) => {
                assert!(r[2].as_str().unwrap().contains("net change of free blocks"), "{r}");
                Ok(())
            }
            _ => Err(format!("{rows}")),
        }
    });

    // The page allocator's per-order counters, where /metrics has them:
    // four order-5 allocations must show as an order-5 rate above zero.
    let metrics = api.request("GET", "/metrics", None).text();
    let counter_cell = |b: &Browser| -> String {
        b.js(
            "const c = document.querySelector('#order-rates tr[data-row=metrics-alloc] td[data-order=\"5\"]'); return c ? c.textContent : '';",
            json!([]),
        )
        .as_str()
        .unwrap_or_default()
        .to_string()
    };
    if metrics.contains("pagezone_page_alloc_total{") {
        let ids: Vec<u64> = (0..4)
            .map(|_| {
                let r = api.request(
                    "POST",
                    "/api/alloc",
                    Some(r#"{"type":"pages","order":5,"gfp":"GFP_DMA32"}"#),
                );
                assert_eq!(r.status, 201, "{}", r.text());
                r.json()["id"].as_u64().unwrap()
            })
            .collect();
        b.wait_until("an order-5 allocation rate from /metrics", |b| {
            let t = counter_cell(b);
            match t.parse::<f64>() {
                Ok(v) if v > 0.0 => Ok(()),
                _ => Err(t),
            }
        });
        for id in ids {
            assert_eq!(
                api.request("DELETE", &format!("/api/alloc/{id}"), None)
                    .status,
                200
            );
        }
    } else {
        let row = b.wait_until("the counter rows' note", |b| {
            let t = b.text("#order-rates tr[data-row=metrics-alloc] th");
            if t.contains("not in this build") {
                Ok(t)
            } else {
                Err(t)
            }
        });
        eprintln!(
            "SKIPPED (not a failure): /metrics has no pagezone_page_alloc_total in this build; the rates table says so: {row:?}"
        );
    }

    // 4h. At 1280 wide: every text on the page has WCAG AA contrast
    // (≥ 4.5:1, from computed styles), the watermark labels included; the
    // slab table is not clipped; axis labels keep apart; every legend
    // entry carries a code drawn on the strip besides its colour; meminfo
    // says its real units; the token is a password field with a toggle.
    let (checked, failures) = contrast_failures(&b, ".gauge-labels .wm, .gauge-caption");
    assert!(checked >= 9, "{checked} watermark labels checked");
    assert_eq!(failures, Vec::<Value>::new(), "watermark label contrast");
    let wm = b.js(
        "return [...document.querySelectorAll('#zones .zone:not(.empty) .gauge-labels .wm')].map(s => s.textContent)",
        json!([]),
    );
    for name in ["min", "low", "high"] {
        assert!(
            wm.as_array()
                .unwrap()
                .iter()
                .any(|t| t.as_str().unwrap().starts_with(name)),
            "no {name} label: {wm}"
        );
    }
    let (checked, failures) = contrast_failures(&b, "body *");
    assert!(checked > 200, "{checked} texts checked");
    assert_eq!(
        failures,
        Vec::<Value>::new(),
        "texts below 4.5:1 at 1280 px"
    );
    let slab = b.js(
        "const w = document.querySelector('#slab').parentElement; return [w.scrollWidth, w.clientWidth]",
        json!([]),
    );
    assert!(
        slab[0].as_u64() <= slab[1].as_u64(),
        "slab table clipped at 1280 px: {slab}"
    );
    assert_axis_labels_apart(&b, "1280 px");
    let legend = b.js(
        "return [...document.querySelectorAll('#map-legend > *')].map(e => [e.dataset.code || '', (e.querySelector('.code') || {}).textContent || ''])",
        json!([]),
    );
    let codes: Vec<&str> = legend
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e[0].as_str().unwrap())
        .collect();
    assert!(codes.len() >= 8, "{legend}");
    for e in legend.as_array().unwrap() {
        assert!(
            !e[0].as_str().unwrap().is_empty() && e[0] == e[1],
            "legend entry without its code: {legend}"
        );
    }
    let mut unique = codes.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), codes.len(), "legend codes repeat: {codes:?}");
    let mem_total = api.request("GET", "/api/meminfo", None).json()["MemTotal"]
        .as_u64()
        .unwrap();
    let row = b.js(
        "const r = document.querySelector('#meminfo-all tr[data-field=MemTotal]'); return r ? [...r.cells].map(c => c.textContent) : null",
        json!([]),
    );
    assert_eq!(
        row[1].as_str().unwrap().replace(',', ""),
        mem_total.to_string(),
        "{row}"
    );
    assert_eq!(row[2], "kB", "{row}");
    assert!(
        !b.text("#meminfo-sub").starts_with("kB"),
        "meminfo still claims kB"
    );
    assert_eq!(
        b.js("return document.querySelector('#token').type", json!([])),
        "password"
    );
    b.click("#token-show");
    assert_eq!(
        b.js("return document.querySelector('#token').type", json!([])),
        "text"
    );
    b.click("#token-show");
    assert_eq!(
        b.js("return document.querySelector('#token').type", json!([])),
        "password"
    );

    // 5. Screenshots: full page at 1280 wide, then a narrow window that
    // must not scroll sideways.
    b.wait_until("the map strip to be drawn", |b| {
        let sub = b.text("#memmap-sub");
        if sub.contains("frames") {
            Ok(())
        } else {
            Err(sub)
        }
    });
    b.js("window.scrollTo(0, 0)", json!([]));
    let png = b.full_page_png();
    assert!(png.starts_with(b"\x89PNG"), "not a PNG");
    let shot = workspace_target().join("dashboard.png");
    std::fs::write(&shot, &png).expect("write the screenshot");
    eprintln!("screenshot: {}", shot.display());

    // A phone-sized viewport, exactly 420 CSS px (a headless window cannot
    // be narrower than 500): no sideways scrolling, the Answer within one
    // screen of the Allocate form, axis labels apart, contrast still AA.
    b.cdp(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 420, "height": 800, "deviceScaleFactor": 1, "mobile": false}),
    );
    b.wait_until("the narrow layout without sideways scrolling", |b| {
        let v = b.js(
            "return [document.documentElement.scrollWidth, window.innerWidth]",
            json!([]),
        );
        let (sw, iw) = (v[0].as_u64().unwrap_or(0), v[1].as_u64().unwrap_or(0));
        if iw > 0 && sw <= iw {
            Ok(())
        } else {
            Err(format!("scrollWidth {sw} > innerWidth {iw}"))
        }
    });
    assert_eq!(b.js("return window.innerWidth", json!([])), 420);
    let gap = b.js(
        "const a = document.querySelector('#form-alloc').getBoundingClientRect(), r = document.querySelector('#result').getBoundingClientRect();
         return [a.top, a.bottom, r.top, r.bottom, window.innerHeight]",
        json!([]),
    );
    let f = |i: usize| gap[i].as_f64().unwrap();
    assert!(
        f(2) >= f(1) - 1.0 && f(3) - f(0) <= f(4),
        "at 420 px the Answer box is not within one screen of the Allocate form: [form top, form bottom, answer top, answer bottom, viewport] = {gap}"
    );
    // Re-rendered for the new width (resize is debounced by 100 ms).
    b.wait_until("the axes re-laid out for 420 px", |b| {
        let w = b.js(
            "return document.getElementById('map-zoom-axis').getBoundingClientRect().width",
            json!([]),
        );
        if w.as_f64().unwrap_or(999.0) < 420.0 {
            Ok(())
        } else {
            Err(format!("{w}"))
        }
    });
    std::thread::sleep(Duration::from_millis(1500));
    assert_axis_labels_apart(&b, "420 px");
    let (_, failures) = contrast_failures(&b, "body *");
    assert_eq!(failures, Vec::<Value>::new(), "texts below 4.5:1 at 420 px");
    b.js("window.scrollTo(0, 0)", json!([]));
    std::fs::write(
        workspace_target().join("dashboard-narrow.png"),
        b.full_page_png(),
    )
    .expect("write the screenshot");

    // 6. No JavaScript error, from the page's collector or the browser log.
    // The only tolerated log lines are the network's own reports of the
    // 404s of endpoints not in this build and of the deliberate 400.
    let collected = b.js("return window.__pagezoneErrors", json!([]));
    assert_eq!(collected, json!([]), "JavaScript errors on the page");
    let bad: Vec<Value> = b
        .browser_log()
        .into_iter()
        .filter(|e| e["level"] == "SEVERE")
        .filter(|e| {
            let msg = e["message"].as_str().unwrap_or_default();
            let expected_network = e["source"] == "network"
                && ((msg.contains("status of 404")
                    && not_built
                        .iter()
                        .any(|p| msg.contains(&format!("{port}{p} "))))
                    || (msg.contains("status of 400")
                        && msg.contains(&format!("{port}/api/alloc "))));
            !expected_network
        })
        .collect();
    assert!(bad.is_empty(), "browser console errors: {bad:#?}");
}
