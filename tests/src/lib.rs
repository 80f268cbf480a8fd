//! The harness that boots the real Pagezone image in QEMU for integration
//! tests: it finds (or builds) `target/pagezone.elf`, starts QEMU under a
//! deadline with the serial console on a pipe, waits for serial lines — never
//! a fixed sleep — and kills QEMU when the [`Guest`] is dropped.
//!
//! TCG is the default accelerator (the KVM here is a slow nested one);
//! `ACCEL=kvm` selects KVM. The machine is q35 unless `MACHINE` says
//! `microvm` or `microvm-acpi` ([`Machine`]): the same suites run on each.

pub mod api;
pub mod check;
pub mod http;
pub mod walk;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// QEMU exit status when the guest writes 0x10 to isa-debug-exit: success.
pub const EXIT_SUCCESS: i32 = 33;
/// QEMU exit status when the guest writes 0x11: a failed check, exception or panic.
pub const EXIT_FAILURE: i32 = 35;

/// The QEMU machine a guest boots on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Machine {
    /// `-M q35 -nodefaults -bios qboot.rom`: PCI (ECAM from the MCFG),
    /// `virtio-net-pci` without its iPXE ROM. qboot assigns no BARs: the
    /// kernel places the NIC's (`drivers/pci.rs`).
    Q35,
    /// `-M q35` as QEMU sets it up by default: SeaBIOS (which assigns the
    /// BARs), a VGA card, the NIC's option ROM. Slower to reach the
    /// kernel; kept to test the firmware-assigned path.
    Q35Seabios,
    /// `-M microvm,acpi=off`: no PCI, no ACPI; `virtio-net-device` on a
    /// virtio-mmio transport QEMU appends to the command line
    /// (`virtio_mmio.device=512@0xfeb00e00:12`); CPUs from the MP table.
    Microvm,
    /// `-M microvm,acpi=on`: the transport is found in the DSDT; MADT,
    /// hardware-reduced FADT (no PM timer).
    MicrovmAcpi,
}

impl Machine {
    /// `$MACHINE` (`q35`, `q35-seabios`, `microvm`, `microvm-acpi`), q35
    /// if unset.
    pub fn from_env() -> Machine {
        match std::env::var("MACHINE").as_deref() {
            Err(_) | Ok("") | Ok("q35") => Machine::Q35,
            Ok("q35-seabios") => Machine::Q35Seabios,
            Ok("microvm") => Machine::Microvm,
            Ok("microvm-acpi") => Machine::MicrovmAcpi,
            Ok(other) => {
                panic!("MACHINE={other}: expected q35, q35-seabios, microvm or microvm-acpi")
            }
        }
    }

    /// `-M …` and the options that go with it.
    pub fn qemu_args(self) -> &'static [&'static str] {
        match self {
            Machine::Q35 => &["-M", "q35", "-nodefaults", "-bios", "qboot.rom"],
            Machine::Q35Seabios => &["-M", "q35"],
            Machine::Microvm => &[
                "-M",
                "microvm,acpi=off",
                "-global",
                "virtio-mmio.force-legacy=false",
            ],
            Machine::MicrovmAcpi => &[
                "-M",
                "microvm,acpi=on",
                "-global",
                "virtio-mmio.force-legacy=false",
            ],
        }
    }

    /// The virtio-net device for `-netdev` `net0`.
    pub fn nic(self) -> &'static str {
        match self {
            Machine::Q35 => "virtio-net-pci,netdev=net0,disable-legacy=on,romfile=",
            Machine::Q35Seabios => "virtio-net-pci,netdev=net0,disable-legacy=on",
            Machine::Microvm | Machine::MicrovmAcpi => "virtio-net-device,netdev=net0",
        }
    }

    /// What `/api/net` says the NIC's transport is.
    pub fn transport(self) -> &'static str {
        match self {
            Machine::Q35 | Machine::Q35Seabios => "virtio-pci",
            Machine::Microvm | Machine::MicrovmAcpi => "virtio-mmio",
        }
    }

    pub fn is_microvm(self) -> bool {
        matches!(self, Machine::Microvm | Machine::MicrovmAcpi)
    }

    /// The end of RAM (a PFN) for `-m` of `mem_mib` MiB, below the 32-bit
    /// hole (up to 2 GiB): SeaBIOS keeps the last 33 pages (its e820 ends
    /// at 0x7ffdf000 for 2 GiB); under qboot (q35, microvm) RAM is all
    /// usable.
    pub fn ram_end_pfn(self, mem_mib: u64) -> u64 {
        let pages = mem_mib << 8;
        if self == Machine::Q35Seabios { pages - 33 } else { pages }
    }

    /// What QEMU appends to the guest's command line: microvm without
    /// ACPI names the virtio-mmio transport it put the NIC on (the last
    /// of eight, `microvm_fix_kernel_cmdline()`), with or without a NIC.
    pub fn appended_cmdline(self) -> &'static str {
        match self {
            Machine::Microvm => " virtio_mmio.device=512@0xfeb00e00:12",
            Machine::Q35 | Machine::Q35Seabios | Machine::MicrovmAcpi => "",
        }
    }
}

/// Everything a boot can vary.
#[derive(Clone, Debug)]
pub struct BootOptions {
    /// The machine; [`Machine::from_env`] by default.
    pub machine: Machine,
    pub mem: String,
    /// CPUs (`-smp`); 1 unless a test asks for more.
    pub smp: u32,
    pub append: String,
    /// Forward a free 127.0.0.1 port to the guest's API port.
    pub network: bool,
    /// Without `network`: a NIC on QEMU's user network with its IPv4 off,
    /// so no DHCP server answers (the kernel falls back to its static
    /// address after `dhcp_timeout`); else no NIC at all.
    pub silent_nic: bool,
    pub guest_port: u16,
    /// Hard limit on QEMU's life; it is killed after this whatever happens.
    pub deadline: Duration,
}

impl Default for BootOptions {
    fn default() -> Self {
        BootOptions {
            machine: Machine::from_env(),
            mem: "2G".into(),
            smp: 1,
            append: String::new(),
            network: false,
            silent_nic: false,
            guest_port: 80,
            deadline: Duration::from_secs(120),
        }
    }
}

impl BootOptions {
    pub fn mem(mut self, mem: &str) -> Self {
        self.mem = mem.into();
        self
    }
    pub fn smp(mut self, cpus: u32) -> Self {
        self.smp = cpus;
        self
    }
    pub fn append(mut self, append: &str) -> Self {
        self.append = append.into();
        self
    }
    pub fn network(mut self) -> Self {
        self.network = true;
        self
    }
    pub fn machine(mut self, machine: Machine) -> Self {
        self.machine = machine;
        self
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The kernel image: `$PAGEZONE_ELF` (set by `make test`), else built here
/// into a target dir of its own so a plain `cargo test` works too without
/// contending for the outer cargo's lock.
pub fn kernel_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        if let Some(p) = std::env::var_os("PAGEZONE_ELF") {
            let p = PathBuf::from(p);
            assert!(p.exists(), "PAGEZONE_ELF={} does not exist", p.display());
            return p;
        }
        let root = workspace_root();
        let target_dir = root.join("target/tests-kernel");
        let status = Command::new("cargo")
            .current_dir(&root)
            .args([
                "build",
                "-p",
                "unikernel",
                "--target",
                "x86_64-unknown-none",
                "--profile",
                "kernel",
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            .status()
            .expect("run cargo to build the kernel");
        assert!(status.success(), "building the kernel failed");
        target_dir.join("x86_64-unknown-none/kernel/unikernel")
    })
}

/// A free TCP port on 127.0.0.1 (bound then released; QEMU takes it next).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local addr").port()
}

#[derive(Default)]
struct Serial {
    lines: Vec<String>,
    closed: bool,
}

/// A running guest. Dropping it kills QEMU.
pub struct Guest {
    child: Arc<Mutex<Child>>,
    serial: Arc<(Mutex<Serial>, Condvar)>,
    started: Instant,
    deadline: Duration,
    /// The host side of the API port forward, when networking is on.
    pub host_port: Option<u16>,
    cursor: usize,
}

impl Guest {
    pub fn boot(opts: BootOptions) -> Guest {
        let accel = std::env::var("ACCEL").unwrap_or_else(|_| "tcg".into());
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(opts.machine.qemu_args());
        cmd.args([
            "-m",
            &opts.mem,
            "-smp",
            &opts.smp.to_string(),
            "-display",
            "none",
            "-no-reboot",
        ]);
        if accel == "kvm" {
            cmd.args(["-accel", "kvm", "-cpu", "host"]);
        } else {
            cmd.args(["-accel", "tcg", "-cpu", "max"]);
        }
        cmd.args(["-serial", "stdio", "-monitor", "none"]);
        // Names each vCPU's host thread ("CPU 1/TCG"): see `vcpu_threads`.
        cmd.args(["-name", "pagezone,debug-threads=on"]);
        cmd.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
        let mut host_port = None;
        if opts.network {
            let port = free_port();
            host_port = Some(port);
            cmd.args([
                "-netdev",
                &format!(
                    "user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:{}",
                    opts.guest_port
                ),
                "-device",
                opts.machine.nic(),
            ]);
        } else if opts.silent_nic {
            cmd.args([
                "-netdev",
                "user,id=net0,restrict=on,ipv4=off,ipv6=on",
                "-device",
                opts.machine.nic(),
            ]);
        } else {
            cmd.args(["-nic", "none"]);
        }
        cmd.arg("-kernel")
            .arg(kernel_image())
            .args(["-append", &opts.append]);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd
            .spawn()
            .expect("start qemu-system-x86_64 (run `make deps`)");
        let stdout = child.stdout.take().expect("piped stdout");
        let child = Arc::new(Mutex::new(child));

        // The watchdog: QEMU never outlives its deadline, whatever the test
        // is blocked on.
        let watched = Arc::downgrade(&child);
        let deadline = Instant::now() + opts.deadline;
        std::thread::spawn(move || {
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
                if watched.strong_count() == 0 {
                    return;
                }
            }
            if let Some(c) = watched.upgrade() {
                let _ = c.lock().unwrap().kill();
            }
        });

        let serial = Arc::new((Mutex::new(Serial::default()), Condvar::new()));
        let s2 = Arc::clone(&serial);
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf)
                            .trim_end_matches(['\r', '\n'])
                            .to_string();
                        if std::env::var_os("PAGEZONE_SERIAL").is_some() {
                            eprintln!("serial| {line}");
                        }
                        let (m, cv) = &*s2;
                        m.lock().unwrap().lines.push(line);
                        cv.notify_all();
                    }
                }
            }
            let (m, cv) = &*s2;
            m.lock().unwrap().closed = true;
            cv.notify_all();
        });
        Guest {
            child,
            serial,
            started: Instant::now(),
            deadline: opts.deadline,
            host_port,
            cursor: 0,
        }
    }

    fn remaining(&self) -> Duration {
        self.deadline.saturating_sub(self.started.elapsed())
    }

    /// Waits for the next serial line (after the previous match) containing
    /// `needle`; panics with the whole log on timeout or guest exit.
    pub fn wait_for(&mut self, needle: &str) -> String {
        self.wait_for_any(&[needle]).1
    }

    /// Like [`wait_for`](Self::wait_for) for several needles: returns which
    /// one matched first and its line.
    pub fn wait_for_any(&mut self, needles: &[&str]) -> (usize, String) {
        let end = Instant::now() + self.remaining();
        let (m, cv) = &*self.serial;
        let mut s = m.lock().unwrap();
        loop {
            while self.cursor < s.lines.len() {
                let line = &s.lines[self.cursor];
                self.cursor += 1;
                if let Some(i) = needles.iter().position(|n| line.contains(n)) {
                    return (i, line.clone());
                }
            }
            let now = Instant::now();
            if s.closed || now >= end {
                let why = if s.closed {
                    "guest exited"
                } else {
                    "deadline passed"
                };
                panic!(
                    "{why} before serial output contained {needles:?}; log:\n{}",
                    s.lines.join("\n")
                );
            }
            s = cv.wait_timeout(s, end - now).unwrap().0;
        }
    }

    /// Every serial line so far.
    pub fn log(&self) -> Vec<String> {
        self.serial.0.lock().unwrap().lines.clone()
    }

    /// Waits for QEMU to exit by itself (within the deadline) and returns its status.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let end = Instant::now() + self.remaining();
        loop {
            let status = self
                .child
                .lock()
                .unwrap()
                .try_wait()
                .expect("wait for qemu");
            if let Some(st) = status {
                // Let the reader thread drain the pipe.
                let (m, cv) = &*self.serial;
                let s = m.lock().unwrap();
                let _ = cv
                    .wait_timeout_while(s, Duration::from_secs(5), |s| !s.closed)
                    .unwrap();
                return st;
            }
            if Instant::now() >= end {
                let _ = self.child.lock().unwrap().kill();
                panic!(
                    "guest did not exit before its deadline; log:\n{}",
                    self.log().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The host thread ids of QEMU's vCPU threads, by CPU number (read
    /// from the `CPU n/TCG` or `CPU n/KVM` names `-name …,debug-threads=on`
    /// gives them), for pinning them (`taskset -p`) in benchmarks.
    pub fn vcpu_threads(&self) -> Vec<u32> {
        let pid = self.child.lock().unwrap().id();
        let mut threads: Vec<(usize, u32)> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|task| {
                let tid: u32 = task.file_name().to_str()?.parse().ok()?;
                let comm = std::fs::read_to_string(task.path().join("comm")).ok()?;
                let cpu = comm.strip_prefix("CPU ")?.split('/').next()?.parse().ok()?;
                Some((cpu, tid))
            })
            .collect();
        threads.sort_unstable();
        threads.into_iter().map(|(_, tid)| tid).collect()
    }

    /// The API's base URL on the host side of the port forward.
    pub fn base_url(&self) -> String {
        format!(
            "127.0.0.1:{}",
            self.host_port.expect("boot with .network()")
        )
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let mut c = self.child.lock().unwrap_or_else(|e| e.into_inner());
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// The console line that ends deferred struct-page init: from then on the
/// buddy allocator holds every free frame, and `/api/buddyinfo` is what
/// `POST /api/reset` returns to.
pub const DEFERRED_INIT_DONE: &str = "deferred pages initialised in";

/// Boots a networked guest, waits for its `READY http://…` line and for
/// the end of deferred struct-page init (either may come first), and
/// returns it with the host port of the API.
pub fn boot_ready(opts: BootOptions) -> (Guest, u16) {
    let mut guest = Guest::boot(opts.network());
    let (first, _) = guest.wait_for_any(&["READY http://", DEFERRED_INIT_DONE]);
    guest.wait_for(if first == 0 {
        DEFERRED_INIT_DONE
    } else {
        "READY http://"
    });
    let port = guest.host_port.expect("networked guest");
    (guest, port)
}
