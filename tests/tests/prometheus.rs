//! `/metrics` on a live guest, read by the real tools (Debian's
//! `prometheus`, `promtool` and `prometheus-node-exporter`, installed by
//! `.ci/deps.sh prometheus`):
//!
//! - `promtool check metrics` finds nothing but the camelCase lint of
//!   node_exporter's own `node_memory_*` names (which it reports on
//!   node_exporter's output just the same);
//! - node_exporter, pointed at the guest's `/proc` texts
//!   (`--path.procfs`), exports exactly the node_* families, series, help
//!   texts and types that `/metrics` has, with the same values;
//! - a Prometheus server scraping the guest every second answers the
//!   usual dashboard queries with `/proc`'s numbers, and `rate()` of the
//!   allocation counters is positive while allocations run.
//!
//! Every server started here listens on a free 127.0.0.1 port and is
//! killed when the test ends, whatever happens.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tests::api::{get_json, post};
use tests::http::Client;
use tests::{BootOptions, boot_ready, free_port};

/// A child process killed (and reaped) on drop.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "pagezone-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `promtool check metrics` over `text` on its stdin.
fn promtool_check(promtool: &str, text: &str) -> std::process::Output {
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn tool(name: &str) -> &str {
    assert!(
        Command::new("sh")
            .args(["-c", &format!("command -v {name}")])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success()),
        "{name} is missing: run .ci/deps.sh prometheus (make test does)"
    );
    name
}

/// `GET path` over HTTP/1.0 (no chunking: the body runs to EOF), or
/// `None` if nothing listens yet.
fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(20))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, body.to_string()))
}

fn wait_http(port: u16, path: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some((200, _)) = http_get(port, path) {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("{what} never answered 200 on {path}");
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// An instant query through Prometheus's HTTP API: `(labels, value)` of
/// each series of the vector.
fn query(port: u16, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let (status, body) = http_get(port, &format!("/api/v1/query?query={}", urlencode(promql)))
        .unwrap_or_else(|| panic!("prometheus gone during {promql}"));
    assert_eq!(status, 200, "{promql}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success", "{promql}: {body}");
    v["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
                .collect();
            let value = r["value"][1].as_str().unwrap().parse().unwrap();
            (labels, value)
        })
        .collect()
}

/// The single value of a query answering one series.
fn scalar(port: u16, promql: &str) -> Option<f64> {
    let r = query(port, promql);
    assert!(r.len() <= 1, "{promql}: {r:?}");
    r.first().map(|(_, v)| *v)
}

fn text(c: &mut Client, path: &str) -> String {
    let r = c.request("GET", path, None);
    assert_eq!(r.status, 200, "{path}");
    r.text()
}

fn meminfo_kb(text: &str, key: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.split(':').next() == Some(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/meminfo"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// A parsed exposition: HELP and TYPE per family, value per series
/// (labels put in name order, as client libraries print them).
#[derive(Default)]
struct Exposition {
    help: BTreeMap<String, String>,
    kind: BTreeMap<String, String>,
    samples: BTreeMap<String, f64>,
}

fn parse_exposition(text: &str, keep: impl Fn(&str) -> bool) -> Exposition {
    let mut e = Exposition::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            if keep(name) {
                e.help.insert(name.into(), help.into());
            }
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            if keep(name) {
                e.kind.insert(name.into(), kind.into());
            }
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            if keep(name) {
                let series = match series.split_once('{') {
                    Some((name, labels)) => {
                        let mut labels: Vec<&str> =
                            labels.trim_end_matches('}').split(',').collect();
                        labels.sort_unstable();
                        format!("{name}{{{}}}", labels.join(","))
                    }
                    None => series.to_string(),
                };
                e.samples.insert(series, value.parse().unwrap());
            }
        }
    }
    e
}

fn node_family(name: &str) -> bool {
    ["buddyinfo", "zoneinfo", "memory", "slabinfo", "vmstat"]
        .iter()
        .any(|c| name.starts_with(&format!("node_{c}_")))
}

#[test]
fn prometheus_promtool_and_node_exporter_read_the_guest() {
    let promtool = tool("promtool");
    let prometheus = tool("prometheus");
    let node_exporter = tool("prometheus-node-exporter");
    let (_guest, port) = boot_ready(BootOptions::default().mem("2G"));
    let mut c = Client::connect(port);

    // --- promtool ---------------------------------------------------------
    let metrics = text(&mut c, "/metrics");
    let out = promtool_check(promtool, &metrics);
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let problems: Vec<&str> = report
        .lines()
        .filter(|l| {
            !(l.starts_with("node_memory_")
                && l.ends_with("metric names should be written in 'snake_case' not 'camelCase'"))
        })
        .filter(|l| !l.trim().is_empty())
        .collect();
    assert!(problems.is_empty(), "promtool check metrics:\n{report}");
    assert!(
        report
            .contains("node_memory_MemTotal_bytes metric names should be written in 'snake_case'"),
        "the only lint is node_exporter's own names: {report}"
    );
    let pagezone_only: String = metrics
        .lines()
        .filter(|l| !l.contains("node_"))
        .map(|l| format!("{l}\n"))
        .collect();
    let out = promtool_check(promtool, &pagezone_only);
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "pagezone_* families: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // --- node_exporter over the guest's /proc ------------------------------
    let procfs = TempDir::new("procfs");
    let ours = {
        // The texts first, /metrics right after: nothing runs between.
        for f in ["buddyinfo", "zoneinfo", "meminfo", "slabinfo", "vmstat"] {
            std::fs::write(procfs.0.join(f), text(&mut c, &format!("/proc/{f}"))).unwrap();
        }
        parse_exposition(&text(&mut c, "/metrics"), node_family)
    };
    let ne_port = free_port();
    let _ne = Killed(
        Command::new(node_exporter)
            .arg(format!("--path.procfs={}", procfs.0.display()))
            .args([
                "--collector.disable-defaults",
                "--collector.buddyinfo",
                "--collector.zoneinfo",
                "--collector.meminfo",
                "--collector.slabinfo",
                "--collector.vmstat",
            ])
            .arg(format!("--web.listen-address=127.0.0.1:{ne_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node_exporter"),
    );
    wait_http(ne_port, "/metrics", "node_exporter");
    let (_, ne_text) = http_get(ne_port, "/metrics").unwrap();
    let theirs = parse_exposition(&ne_text, node_family);
    assert!(theirs.samples.len() > 300, "{ne_text}");
    assert_eq!(ours.help, theirs.help, "HELP texts");
    assert_eq!(ours.kind, theirs.kind, "TYPEs");
    assert_eq!(
        ours.samples.keys().collect::<BTreeSet<_>>(),
        theirs.samples.keys().collect::<BTreeSet<_>>(),
        "series"
    );
    // The values: the same texts. (The /metrics request itself allocates
    // a little after the texts were read: slab and free-page figures may
    // move by that much, the layout and the watermarks not at all.)
    let mut compared = 0;
    for (series, v) in &theirs.samples {
        let steady = series.contains("protection_")
            || [
                "spanned",
                "present",
                "managed",
                "min_pages",
                "low_pages",
                "high_pages",
            ]
            .iter()
            .any(|f| series.starts_with(&format!("node_zoneinfo_{f}")))
            || series.starts_with("node_memory_MemTotal_bytes")
            || series.starts_with("node_memory_HighTotal_bytes")
            || series.starts_with("node_slabinfo_object_size_bytes");
        if steady {
            assert_eq!(ours.samples[series], *v, "{series}");
            compared += 1;
        }
    }
    assert!(compared > 30, "{compared}");

    // --- a Prometheus server scraping the guest ----------------------------
    let dir = TempDir::new("prometheus");
    let prom_port = free_port();
    std::fs::write(
        dir.0.join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: pagezone\n    scrape_interval: 1s\n    scrape_timeout: 900ms\n\
             \x20   static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let _prom = Killed(
        Command::new(prometheus)
            .arg(format!(
                "--config.file={}",
                dir.0.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start prometheus"),
    );
    wait_http(prom_port, "/-/ready", "prometheus");
    let wait_for = |promql: &str, ok: &dyn Fn(f64) -> bool| -> f64 {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(v) = scalar(prom_port, promql)
                && ok(v)
            {
                return v;
            }
            assert!(Instant::now() < deadline, "{promql} never held");
            std::thread::sleep(Duration::from_millis(250));
        }
    };
    wait_for(r#"up{job="pagezone"}"#, &|v| v == 1.0);

    // rate() of the allocation counters while allocations run: order-3
    // blocks from DMA32, allocated and freed over several scrapes.
    let series = r#"pagezone_page_alloc_total{zone="DMA32",order="3"}"#;
    let rate = format!("rate({series}[5s])");
    let deadline = Instant::now() + Duration::from_secs(60);
    let r = loop {
        for _ in 0..5 {
            let h = post(
                &mut c,
                "/api/alloc",
                &json!({"type":"pages","order":3,"gfp":"GFP_DMA32"}),
            );
            assert_eq!(h.status, 201, "{}", h.text());
            let id = &h.json()["id"];
            assert_eq!(
                c.request("DELETE", &format!("/api/alloc/{id}"), None)
                    .status,
                200
            );
        }
        if let Some(r) = scalar(prom_port, &rate)
            && r > 0.0
        {
            break r;
        }
        assert!(Instant::now() < deadline, "{rate} stayed 0");
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("{rate} = {r}");
    let freed = r#"rate(pagezone_page_free_total{zone="DMA32",order="3"}[5s])"#.to_string();
    assert!(wait_for(&freed, &|v| v > 0.0) > 0.0);

    // Dashboard queries against /proc: read /proc, wait for a scrape that
    // began after it, read /proc again; if nothing moved in between, the
    // scrape saw exactly those numbers.
    let used = "node_memory_MemTotal_bytes - node_memory_MemAvailable_bytes";
    let mut checked = false;
    for _ in 0..10 {
        let before_mi = text(&mut c, "/proc/meminfo");
        let before_bi = text(&mut c, "/proc/buddyinfo");
        let t0 = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        wait_for("timestamp(node_memory_MemTotal_bytes)", &|ts| ts > t0 + 0.1);
        let got_used = scalar(prom_port, used).unwrap();
        let got_blocks = query(prom_port, "node_buddyinfo_blocks");
        let after_mi = text(&mut c, "/proc/meminfo");
        let after_bi = text(&mut c, "/proc/buddyinfo");
        // Our own reads allocate too: compare only the values that stayed.
        let expect_used =
            (meminfo_kb(&before_mi, "MemTotal") - meminfo_kb(&before_mi, "MemAvailable")) * 1024.0;
        let stable_used =
            meminfo_kb(&before_mi, "MemAvailable") == meminfo_kb(&after_mi, "MemAvailable");
        if !(stable_used && before_bi == after_bi) {
            continue;
        }
        assert_eq!(got_used, expect_used, "{used}");
        let mut n = 0;
        for line in before_bi.lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            for (order, count) in f[4..].iter().enumerate() {
                let found = got_blocks
                    .iter()
                    .find(|(l, _)| {
                        l["zone"] == f[3] && l["size"] == order.to_string() && l["node"] == "0"
                    })
                    .unwrap_or_else(|| panic!("no node_buddyinfo_blocks for {} {order}", f[3]));
                assert_eq!(
                    found.1,
                    count.parse::<f64>().unwrap(),
                    "{} order {order}",
                    f[3]
                );
                n += 1;
            }
        }
        assert_eq!(got_blocks.len(), n);
        checked = true;
        break;
    }
    assert!(checked, "/proc never held still across a scrape");

    // The partitions add up; the boot time is a timestamp.
    let net = get_json(&mut c, "/api/net");
    wait_for("sum(pagezone_tcp_sockets)", &|v| {
        v == net["tcp_sockets"]["total"].as_f64().unwrap()
    });
    let kmap = get_json(&mut c, "/api/kmap");
    wait_for("sum(pagezone_pkmap_slots)", &|v| {
        v == kmap["pkmap"]["slots"].as_f64().unwrap()
    });
    let uptime_s = get_json(&mut c, "/api/health")["uptime_ms"]
        .as_f64()
        .unwrap()
        / 1000.0;
    let via_prom = scalar(prom_port, "time() - pagezone_boot_time_seconds").unwrap();
    assert!(
        (via_prom - uptime_s).abs() < 5.0,
        "time() - boot time = {via_prom}, uptime {uptime_s}"
    );
}
