//! The whole-system figures of `make bench` (issue 12): the real image
//! booted in QEMU (q35, TCG unless `ACCEL=kvm`) through the `tests` crate's
//! harness — a free 127.0.0.1 port forwarded to the guest, the serial
//! console read line by line, QEMU killed when its `Guest` drops and by a
//! watchdog at its deadline. Nothing waits on a fixed sleep: every boot
//! waits for the `READY http://` line. Only the sampling windows (idle CPU,
//! wrk's duration) are fixed lengths of time.
//!
//! * launch → READY and launch → first HTTP 200, median of `BOOTS` boots at
//!   `-m 2G`, on q35 (qboot, as `make run` boots it), on microvm
//!   (virtio-mmio, `acpi=off`, as Firecracker boots), on q35 under
//!   SeaBIOS, and on q35 booted `quiet` (the console prints errors only),
//!   their boots alternating in the same run so all see the same host
//!   load: the clock starts before QEMU is spawned; READY is the serial
//!   line; the 200 is a `GET /api/health` sent on a new connection as soon
//!   as READY is seen (QEMU's user network holds a connection attempted
//!   before the guest listens for about 2 s, so nobody connects earlier).
//!   The guest's own clock at READY (its last console timestamp before the
//!   line; for `quiet`, the kernel log's, from `/api/dmesg`) is shown too.
//! * `wrk -c4` and `-c32` (2 threads, `WRK_SECONDS` each) against
//!   `GET /api/buddyinfo` through the port forward.
//! * the size of `target/pagezone.elf`, and of a copy stripped with
//!   `objcopy --strip-all` (what is loaded).
//! * the smallest `-m` (whole MiB, bisected over `MIN_MEM_MIB`) that boots
//!   to READY and answers `GET /api/health` with 200.
//! * idle CPU: host CPU time of the QEMU process (all its threads, from
//!   `/proc/<pid>/stat`) over `IDLE_SECONDS`, starting one second after the
//!   first 200, as a percentage of one core (the resolution is one clock
//!   tick, 1/100 s, over the window).
//!
//! * scaling (issue 13): `POST /api/bench` with `"cpus":1` and `"cpus":2`
//!   on a `-smp 2` guest, order-0 page pairs and kmalloc-64 pairs, each
//!   on the per-CPU fast paths and with every pair under one global lock;
//!   pairs per second summed over the CPUs (each run `"duration_ms"`
//!   `SCALING_MS`, so every CPU is measured over the same window), and
//!   the 2-CPU / 1-CPU ratio from `SCALING_ROUNDS` rounds, with the vCPU
//!   threads pinned one per host core and the 1-CPU rate taken on each
//!   core in turn (see `Scaling::measure` for why). Under TCG each vCPU is a host thread
//!   (multi-threaded TCG), so this needs two idle host cores to mean
//!   anything; the last two rows measure what the host gives two vCPUs
//!   that share nothing at all — the same one-CPU bench in two `-smp 1`
//!   guests at once, summed, against one guest alone — the ceiling for
//!   the rows above. `SYSTEM_BENCH=scaling` prints this table alone.
//!
//! `SYSTEM_BENCH=boot` prints the boot rows alone (all three machines, the
//! boots alternating), for measuring boot changes quickly.
//!
//! Needs the kernel (`make kernel`; `PAGEZONE_ELF` names it, as for the
//! QEMU tests), `qemu-system-x86_64` and `wrk` (`.ci/deps.sh qemu bench`).

use std::panic::{self, AssertUnwindSafe};
use std::process::Command;
use std::time::{Duration, Instant};

use benches::{median_duration, print_table};
use tests::http::request;
use tests::{BootOptions, Guest, Machine, kernel_image};

const BOOTS: usize = 5;
const WRK_SECONDS: u32 = 5;
const IDLE_SECONDS: u64 = 10;
const MIN_MEM_MIB: (u32, u32) = (2, 256);
const READY: &str = "READY http://";
const SCALING_ROUNDS: usize = 7;
/// Milliseconds of each scaling run: every CPU runs pairs for this long,
/// all over the same window (`"duration_ms"`).
const SCALING_MS: u64 = 200;

/// What one boot measured.
struct Boot {
    guest: Guest,
    port: u16,
    ready: Duration,
    first_200: Duration,
    /// The guest's clock at READY: the last console timestamp before it,
    /// or, when the console printed none (`quiet`), the kernel log's
    /// record before `boot: READY after` (`/api/dmesg`).
    guest_clock: Option<Duration>,
}

/// Boots a networked guest, waits for READY, sends the first request.
/// Panics (the harness's way) when the guest exits, idles without a
/// network, or misses `deadline`.
fn boot_and_serve(machine: Machine, mem: &str, append: &str, deadline: Duration) -> Boot {
    let opts = BootOptions {
        deadline,
        ..BootOptions::default()
    }
    .machine(machine)
    .mem(mem)
    .append(append)
    .network();
    let t0 = Instant::now();
    let mut guest = Guest::boot(opts);
    // The kernel says so when it cannot set up the NIC (too little RAM
    // for its buffers) and then idles: no need to wait for the deadline.
    let (which, _) = guest.wait_for_any(&[READY, "no network; idling"]);
    assert_eq!(which, 0, "the guest has no network");
    let ready = t0.elapsed();
    let port = guest.host_port.expect("networked guest");
    let r = request(port, "GET", "/api/health", None);
    let first_200 = t0.elapsed();
    assert_eq!(r.status, 200, "GET /api/health after READY");
    let log = guest.log();
    let guest_clock = log
        .iter()
        .rposition(|l| l.contains(READY))
        .and_then(|i| log[..i].iter().rev().find_map(|l| guest_stamp(l)))
        .or_else(|| {
            let dmesg = request(port, "GET", "/api/dmesg", None).text();
            let lines: Vec<&str> = dmesg.lines().collect();
            let at = lines.iter().position(|l| l.contains("boot: READY after"))?;
            lines[..at].iter().rev().find_map(|l| guest_stamp(l))
        });
    Boot {
        guest,
        port,
        ready,
        first_200,
        guest_clock,
    }
}

/// `[    0.265] [ INFO] …` → 0.265 s.
fn guest_stamp(line: &str) -> Option<Duration> {
    let inner = line.trim_start().strip_prefix('[')?.split(']').next()?;
    inner
        .trim()
        .parse::<f64>()
        .ok()
        .map(Duration::from_secs_f64)
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

/// The boots whose times are compared: q35 as `make run` boots it
/// (qboot), microvm, q35 under SeaBIOS (QEMU's default firmware), and q35
/// with `quiet` (the console prints errors only; under TCG each console
/// byte costs about a microsecond, and the boot log is ~7.5 KB by READY).
const MACHINES: [(Machine, &str, &str); 4] = [
    (Machine::Q35, "", "q35"),
    (Machine::Microvm, "", "microvm"),
    (Machine::Q35Seabios, "", "q35 under SeaBIOS"),
    (Machine::Q35, "quiet", "q35, quiet"),
];

fn boot_times() -> Vec<Vec<String>> {
    let mut ready = [const { Vec::new() }; MACHINES.len()];
    let mut first = [const { Vec::new() }; MACHINES.len()];
    let mut stamp = [const { Vec::new() }; MACHINES.len()];
    for _ in 0..BOOTS {
        for (i, &(machine, append, _)) in MACHINES.iter().enumerate() {
            let b = boot_and_serve(machine, "2G", append, Duration::from_secs(60));
            ready[i].push(b.ready);
            first[i].push(b.first_200);
            stamp[i].extend(b.guest_clock);
        }
    }
    let all = |v: &[Duration]| {
        v.iter()
            .map(|d| format!("{:.0}", d.as_secs_f64() * 1e3))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let row = |name: &str, v: Vec<Duration>| {
        vec![
            name.to_string(),
            median_duration(v.clone()).map_or("?".into(), ms),
            format!("runs (ms): {}", all(&v)),
        ]
    };
    let mut rows = Vec::new();
    for (i, (_, _, name)) in MACHINES.iter().enumerate() {
        let on = if i == 0 {
            String::new()
        } else {
            format!(", {name}")
        };
        rows.push(row(
            &format!("launch → READY{on} (median of {BOOTS})"),
            ready[i].clone(),
        ));
        rows.push(row(
            &format!("launch → first HTTP 200{on} (median of {BOOTS})"),
            first[i].clone(),
        ));
        rows.push(row(
            &format!("guest clock at READY{on} (median of {BOOTS})"),
            stamp[i].clone(),
        ));
    }
    rows
}

/// The figures a wrk run prints, in one cell.
fn wrk(port: u16, connections: u32) -> String {
    let url = format!("http://127.0.0.1:{port}/api/buddyinfo");
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{WRK_SECONDS}s"),
            "--timeout",
            "10s",
            "--latency",
            &url,
        ])
        .output();
    let out = match out {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
        Ok(o) => return format!("wrk failed: {}", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => return format!("n/a: wrk not found ({e}); `.ci/deps.sh bench`"),
    };
    let field = |prefix: &str| {
        out.lines()
            .map(str::trim)
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_string())
    };
    let rps = field("Requests/sec:").unwrap_or_else(|| "?".into());
    let p50 = field("50%").unwrap_or_else(|| "?".into());
    let p99 = field("99%").unwrap_or_else(|| "?".into());
    let total = out
        .lines()
        .map(str::trim)
        .find(|l| l.contains(" requests in "))
        .and_then(|l| l.split(" requests in ").next())
        .unwrap_or("?")
        .to_string();
    let mut s = format!("{rps} req/s; latency p50 {p50}, p99 {p99}; {total} requests");
    if let Some(e) = field("Socket errors:") {
        s.push_str(&format!("; socket errors: {e}"));
    }
    if let Some(n) = field("Non-2xx or 3xx responses:") {
        s.push_str(&format!("; non-2xx: {n}"));
    }
    s
}

/// The QEMU we spawned: our child named `qemu-system-x86`.
fn qemu_pid() -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let (comm, rest) = stat.split_once(") ")?;
        let ppid: u32 = rest.split_whitespace().nth(1)?.parse().ok()?;
        (ppid == me && comm.contains("qemu-system")).then_some(pid)
    })
}

/// utime + stime of `pid` in clock ticks (fields 14 and 15 of
/// `/proc/<pid>/stat`, counted after the parenthesised command name).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn clk_tck() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100)
}

fn idle_cpu() -> String {
    let Some(pid) = qemu_pid() else {
        return "? (QEMU's pid not found)".into();
    };
    std::thread::sleep(Duration::from_secs(1));
    let (Some(a), t0) = (cpu_ticks(pid), Instant::now()) else {
        return "? (no /proc stat)".into();
    };
    std::thread::sleep(Duration::from_secs(IDLE_SECONDS));
    let Some(b) = cpu_ticks(pid) else {
        return "? (no /proc stat)".into();
    };
    let secs = t0.elapsed().as_secs_f64();
    let hz = clk_tck();
    let pct = (b - a) as f64 / hz as f64 / secs * 100.0;
    if b == a {
        // One tick over the window is the resolution.
        let floor = 100.0 / hz as f64 / secs;
        format!("< {floor:.2} % of one core (0 ticks of 1/{hz} s in {secs:.1} s)")
    } else {
        format!(
            "{pct:.2} % of one core ({} ticks of 1/{hz} s in {secs:.1} s)",
            b - a
        )
    }
}

/// Whether a guest of `mib` MiB boots to READY and answers a 200; panics
/// of the harness (guest exited, deadline) count as "no", quietly.
fn serves_with(mib: u32) -> bool {
    let hook = panic::take_hook();
    panic::set_hook(Box::new(|_| {}));
    let ok = panic::catch_unwind(AssertUnwindSafe(|| {
        boot_and_serve(
            Machine::Q35,
            &format!("{mib}M"),
            "",
            Duration::from_secs(15),
        );
    }))
    .is_ok();
    panic::set_hook(hook);
    eprintln!(
        "system: -m {mib}M {}",
        if ok { "serves" } else { "does not" }
    );
    ok
}

fn smallest_mem() -> String {
    let (lo, hi) = MIN_MEM_MIB;
    if !serves_with(hi) {
        return format!("? (-m {hi}M does not serve)");
    }
    if serves_with(lo) {
        return format!("≤ {lo}M (the lower end of the search)");
    }
    // lo fails, hi serves.
    let (mut bad, mut good) = (lo, hi);
    while good - bad > 1 {
        let mid = (bad + good) / 2;
        if serves_with(mid) {
            good = mid;
        } else {
            bad = mid;
        }
    }
    format!("{good}M ({bad}M does not reach READY + 200)")
}

fn image_size() -> String {
    let path = kernel_image();
    let Ok(meta) = std::fs::metadata(path) else {
        return format!("? ({} missing)", path.display());
    };
    let mut s = format!(
        "{} bytes ({:.2} MiB)",
        meta.len(),
        meta.len() as f64 / (1 << 20) as f64
    );
    let stripped = std::env::temp_dir().join(format!("pagezone-bench-{}.elf", std::process::id()));
    let ok = Command::new("objcopy")
        .arg("--strip-all")
        .arg(path)
        .arg(&stripped)
        .status()
        .is_ok_and(|s| s.success());
    if ok && let Ok(m) = std::fs::metadata(&stripped) {
        s.push_str(&format!(
            "; {} bytes ({:.2} MiB) after objcopy --strip-all",
            m.len(),
            m.len() as f64 / (1 << 20) as f64
        ));
    }
    let _ = std::fs::remove_file(&stripped);
    s
}

/// Pairs per second of one `POST /api/bench` run of `SCALING_MS` on `cpus`
/// CPUs (the sum of the CPUs' own rates, all measured over the same window).
fn bench_ops_per_sec(port: u16, workload: &str, cpus: u32, global_lock: bool) -> u64 {
    let body = format!(
        r#"{{"workload":"{workload}","duration_ms":{SCALING_MS},"cpus":{cpus},"global_lock":{global_lock}}}"#
    );
    let r = request(port, "POST", "/api/bench", Some(&body));
    assert_eq!(r.status, 200, "{body}: {}", r.text());
    r.json()["ops_per_sec"].as_u64().expect("ops_per_sec")
}

/// Pins host thread `tid` to host CPU `core` (`taskset -p`).
fn pin(tid: u32, core: usize) {
    let pinned = Command::new("taskset")
        .args(["-p", "-c", &core.to_string(), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(pinned, "taskset could not pin thread {tid} to core {core}");
}

/// `run()` with host thread `tid` moved to `core` for it, then back to
/// core 0 (where [`Scaling::measure`]'s 2-CPU runs expect it).
fn on_core(tid: u32, core: usize, run: impl FnOnce() -> u64) -> u64 {
    pin(tid, core);
    let r = run();
    pin(tid, 0);
    r
}

/// The scaling figures of one configuration, from paired rounds.
struct Scaling {
    /// Median 1-CPU rates with the one vCPU on host core 0 and on host
    /// core 1, and the median 2-CPU rate (pairs per second).
    one: [u64; 2],
    two: u64,
    /// Each round's 2-CPU rate over the mean of its two 1-CPU rates,
    /// sorted.
    ratios: Vec<f64>,
}

impl Scaling {
    /// `SCALING_ROUNDS` rounds after a warm-up, each a 1-CPU run with that
    /// vCPU on host core 0, one with it on host core 1, and a 2-CPU run
    /// with one vCPU on each (`one(core)`, `two()`). Two things on this
    /// host make a plain "2 CPUs / CPU 0 alone" meaningless:
    /// * its speed drifts by 20–70 % within seconds, so the ratio is taken
    ///   round by round, from runs a second apart, and the table shows the
    ///   median round;
    /// * its two cores are not equally fast (on the machine of
    ///   docs/benchmarks.md, a memory-bound loop runs 30–50 % slower on
    ///   the second), so whichever core the one vCPU happened to run on
    ///   would swing the ratio between about 1.5 and 2.7: the vCPU threads
    ///   are pinned, and the 1-CPU rate is the mean over both cores.
    fn measure(one: impl Fn(usize) -> u64, two: impl Fn() -> u64) -> Scaling {
        one(0);
        two();
        let (mut ones, mut twos, mut ratios) = ([Vec::new(), Vec::new()], Vec::new(), Vec::new());
        for _ in 0..SCALING_ROUNDS {
            let a = [one(0), one(1)];
            let b = two();
            ratios.push(b as f64 / ((a[0] + a[1]) as f64 / 2.0).max(1.0));
            ones[0].push(a[0]);
            ones[1].push(a[1]);
            twos.push(b);
        }
        let median = |v: &mut Vec<u64>| {
            v.sort_unstable();
            v[v.len() / 2]
        };
        ratios.sort_by(f64::total_cmp);
        Scaling {
            one: [median(&mut ones[0]), median(&mut ones[1])],
            two: median(&mut twos),
            ratios,
        }
    }

    fn row(&self, label: &str, locking: &str) -> Vec<String> {
        let (lo, hi) = (self.ratios[0], self.ratios[self.ratios.len() - 1]);
        let m = |v: u64| format!("{:.2} M/s", v as f64 / 1e6);
        vec![
            label.into(),
            locking.into(),
            m(self.one[0]),
            m(self.one[1]),
            m(self.two),
            format!("{:.2}x", self.ratios[self.ratios.len() / 2]),
            format!("{lo:.2}–{hi:.2}"),
        ]
    }
}

/// `None` when the host cannot give two vCPUs a core each.
fn scaling() -> Option<Vec<Vec<String>>> {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) < 2 {
        return None;
    }
    let opts = BootOptions {
        deadline: Duration::from_secs(300),
        ..BootOptions::default()
    }
    .smp(2)
    .mem("512M")
    .network();
    let mut guest = Guest::boot(opts);
    guest.wait_for(READY);
    let port = guest.host_port.expect("networked guest");
    let vcpus = guest.vcpu_threads();
    assert_eq!(vcpus.len(), 2, "two vCPU threads");
    pin(vcpus[0], 0);
    pin(vcpus[1], 1);
    let mut rows = Vec::new();
    for (workload, label) in [
        ("pages", "order-0 page pair"),
        ("kmalloc", "kmalloc-64 pair"),
    ] {
        for global_lock in [false, true] {
            let s = Scaling::measure(
                |core| {
                    on_core(vcpus[0], core, || {
                        bench_ops_per_sec(port, workload, 1, global_lock)
                    })
                },
                || bench_ops_per_sec(port, workload, 2, global_lock),
            );
            let locking = if global_lock {
                "one global lock"
            } else {
                "per-CPU fast paths"
            };
            rows.push(s.row(label, locking));
        }
    }
    drop(guest);
    // The ceiling this host and QEMU allow any guest-side scaling: the
    // one-CPU bench in two `-smp 1` guests at once (two QEMU processes,
    // nothing shared in the guest, one on each host core), summed,
    // against one guest alone on either core.
    let guests: Vec<Guest> = (0..2)
        .map(|_| {
            let mut g = Guest::boot(
                BootOptions {
                    deadline: Duration::from_secs(300),
                    ..BootOptions::default()
                }
                .smp(1)
                .mem("512M")
                .network(),
            );
            g.wait_for(READY);
            g
        })
        .collect();
    let ports: Vec<u16> = guests
        .iter()
        .map(|g| g.host_port.expect("networked guest"))
        .collect();
    let threads: Vec<u32> = guests.iter().map(|g| g.vcpu_threads()[0]).collect();
    for (core, &tid) in threads.iter().enumerate() {
        pin(tid, core);
    }
    for (workload, label) in [
        ("pages", "order-0 page pair"),
        ("kmalloc", "kmalloc-64 pair"),
    ] {
        let both = || {
            let start = std::sync::Barrier::new(2);
            std::thread::scope(|s| {
                let runs: Vec<_> = ports
                    .iter()
                    .map(|&port| {
                        let start = &start;
                        s.spawn(move || {
                            start.wait();
                            bench_ops_per_sec(port, workload, 1, false)
                        })
                    })
                    .collect();
                runs.into_iter()
                    .map(|r| r.join().expect("bench thread"))
                    .sum()
            })
        };
        let s = Scaling::measure(
            |core| {
                on_core(threads[0], core, || {
                    bench_ops_per_sec(ports[0], workload, 1, false)
                })
            },
            both,
        );
        rows.push(s.row(label, "two -smp 1 guests at once (the host's ceiling)"));
    }
    drop(guests);
    Some(rows)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` / `cargo test --benches`
    }
    let accel = std::env::var("ACCEL").unwrap_or_else(|_| "tcg".into());
    let image = kernel_image().display().to_string();
    let only = std::env::var("SYSTEM_BENCH").ok();
    let title = format!(
        "Whole system: QEMU q35 under qboot (microvm or SeaBIOS where said), {accel}, -m 2G unless said otherwise ({image})"
    );
    if only.as_deref() == Some("boot") {
        // `SYSTEM_BENCH=boot`: the boot rows alone
        print_table(
            &title,
            &["figure", "value / window", "detail"],
            &boot_times(),
        );
        return;
    }
    match scaling() {
        Some(rows) => print_table(
            &format!(
                "Scaling: POST /api/bench on a -smp 2 q35 guest, {accel}, {SCALING_MS} ms runs, pairs/s summed over the CPUs (medians); vCPU n pinned to host core n, the 1-CPU run on each core in turn; 2 CPUs over the mean of the two 1-CPU rates, per round (median and range of {SCALING_ROUNDS} rounds)"
            ),
            &[
                "pairs",
                "locking",
                "1 CPU, host core 0",
                "1 CPU, host core 1",
                "2 CPUs",
                "2 CPUs / 1 CPU",
                "rounds",
            ],
            &rows,
        ),
        None => println!("Scaling: skipped, the host has fewer than two cores\n"),
    }
    eprintln!("system: scaling done");
    if only.as_deref() == Some("scaling") {
        return; // `SYSTEM_BENCH=scaling`: this table alone
    }
    let mut rows = boot_times();
    eprintln!("system: boot times done");

    let b = boot_and_serve(Machine::Q35, "2G", "", Duration::from_secs(120));
    let idle = idle_cpu();
    let c4 = wrk(b.port, 4);
    let c32 = wrk(b.port, 32);
    drop(b.guest);
    eprintln!("system: idle CPU and wrk done");

    rows.push(vec![
        "wrk -t2 -c4 GET /api/buddyinfo".into(),
        format!("{WRK_SECONDS} s"),
        c4,
    ]);
    rows.push(vec![
        "wrk -t2 -c32 GET /api/buddyinfo".into(),
        format!("{WRK_SECONDS} s"),
        c32,
    ]);
    rows.push(vec![
        "idle CPU of the QEMU process".into(),
        format!("{IDLE_SECONDS} s"),
        idle,
    ]);
    rows.push(vec![
        "image size".into(),
        "target/pagezone.elf".into(),
        image_size(),
    ]);
    rows.push(vec![
        "smallest -m that boots to READY and serves a 200".into(),
        format!("{}M..{}M", MIN_MEM_MIB.0, MIN_MEM_MIB.1),
        smallest_mem(),
    ]);
    print_table(&title, &["figure", "value / window", "detail"], &rows);
}
