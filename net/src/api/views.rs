//! Read-only JSON views. Each copies what it needs out of `mm.lock()`
//! first and serializes after the lock is dropped.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeSeq, Serializer};

use mm::manager::{BuddySnapshot, MemoryManager};
use mm::memblock::Memblock;
use mm::platform::Platform;
use mm::procfs::{E820Type, Meminfo};
use mm::reserve::ReserveStats;
use mm::types::PAGE_SIZE;
use mm::types::{MAX_ORDER, NR_ORDERS, PhysAddr};
use mm::zone::{MIGRATE_TYPES, MigrateType, NR_ZONES, Zone, ZoneType};

use super::{BootView, Handle, System};
use crate::server::response::Response;
use crate::server::stack::NetStats;

/// An address or hash as API.md wants it: a lower-case `"0x…"` string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hex {
    value: u64,
    /// Zero-padded hex digits (0: as few as needed).
    digits: usize,
}

impl Hex {
    pub const fn new(value: u64) -> Hex {
        Hex { value, digits: 0 }
    }

    /// Eight digits, as a CRC-32 is usually shown.
    pub const fn padded32(value: u32) -> Hex {
        Hex {
            value: value as u64,
            digits: 8,
        }
    }
}

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:0width$x}", self.value, width = self.digits)
    }
}

impl Serialize for Hex {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A handle as API.md's `Handle`.
#[derive(Serialize)]
pub struct HandleJson {
    id: u64,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    order: u8,
    nr_pages: u64,
    zone: &'static str,
    pfn: u64,
    phys: Hex,
    virt: Option<Hex>,
    gfp: GfpName,
    created_ms: u64,
}

/// `GfpFlags` in Linux's `%pGg` form, serialized through `Display`.
pub struct GfpName(pub mm::gfp::GfpFlags);

impl Serialize for GfpName {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl From<&Handle> for HandleJson {
    fn from(h: &Handle) -> HandleJson {
        HandleJson {
            id: h.id,
            kind: "pages",
            size: h.order.size_bytes(),
            order: h.order.get(),
            nr_pages: h.order.nr_pages(),
            zone: h.zone.name(),
            pfn: h.pfn.0,
            phys: Hex::new(h.pfn.phys().0),
            virt: h.virt.map(|v| Hex::new(v.0)),
            gfp: GfpName(h.gfp),
            created_ms: h.created_ms,
        }
    }
}

pub fn health(system: &dyn System) -> Response {
    #[derive(Serialize)]
    struct Health<'s> {
        status: &'static str,
        uptime_ms: u64,
        version: &'s str,
    }
    Response::json(
        200,
        &Health {
            status: "ok",
            uptime_ms: system.uptime_ms(),
            version: system.version(),
        },
    )
}

// ----------------------------------------------------------------------
// /api/zones, /api/buddyinfo
// ----------------------------------------------------------------------

#[derive(Serialize)]
struct WatermarksJson {
    min: u64,
    low: u64,
    high: u64,
}

/// One CPU's per-CPU page lists for a zone (`struct per_cpu_pages`).
#[derive(Serialize)]
struct PagesetJson {
    cpu: usize,
    /// Pages waiting on the lists (not in `free`).
    count: u32,
    high: u32,
    batch: u32,
}

/// The online CPUs' pagesets of a zone, serialized as a list.
struct Pagesets {
    sets: [PagesetJson; mm::types::NR_CPUS],
    online: usize,
}

impl Serialize for Pagesets {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let n = self.online.min(self.sets.len());
        let mut seq = s.serialize_seq(Some(n))?;
        for set in &self.sets[..n] {
            seq.serialize_element(set)?;
        }
        seq.end()
    }
}

#[derive(Serialize)]
struct ZoneJson {
    name: &'static str,
    start_pfn: u64,
    end_pfn: u64,
    spanned: u64,
    present: u64,
    managed: u64,
    free: u64,
    watermarks: WatermarksJson,
    protection: [u64; NR_ZONES],
    free_area: [u64; NR_ORDERS],
    /// Free blocks per order on each migrate type's lists (what
    /// `/proc/pagetypeinfo` prints), e.g. `{"Unmovable":[…],"Movable":[…],…}`.
    free_lists: ByType<[u64; NR_ORDERS]>,
    /// Pageblocks of each migrate type.
    pageblocks: ByType<u64>,
    /// Pages in HighAtomic pageblocks (`nr_reserved_highatomic`).
    nr_reserved_highatomic: u64,
    /// Each CPU's per-CPU page lists (zoneinfo's "pagesets").
    pagesets: Pagesets,
    start: Hex,
    end: Hex,
}

/// One value per migrate type, serialized as a map by type name.
#[derive(Clone, Copy)]
pub struct ByType<T>(pub [T; MIGRATE_TYPES]);

impl<T: Serialize> Serialize for ByType<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(MIGRATE_TYPES))?;
        for (mt, v) in MigrateType::ALL.iter().zip(&self.0) {
            map.serialize_entry(mt.name(), v)?;
        }
        map.end()
    }
}

/// A zone with its mobility counts, copied out under the lock.
#[derive(Clone)]
pub struct ZoneCopy {
    pub zone: Zone,
    /// CPUs online: whose pagesets the zone shows.
    pub nr_cpus: usize,
    pub free_lists: ByType<[u64; NR_ORDERS]>,
    pub pageblocks: ByType<u64>,
}

impl From<&ZoneCopy> for ZoneJson {
    fn from(c: &ZoneCopy) -> ZoneJson {
        let z = &c.zone;
        ZoneJson {
            name: z.name(),
            start_pfn: z.start_pfn.0,
            end_pfn: z.end_pfn.0,
            spanned: z.spanned_pages(),
            present: z.present_pages,
            managed: z.managed_pages,
            free: z.free_pages,
            watermarks: WatermarksJson {
                min: z.watermarks.min,
                low: z.watermarks.low,
                high: z.watermarks.high,
            },
            protection: z.lowmem_reserve,
            free_area: z.free_area_counts(),
            free_lists: c.free_lists,
            pageblocks: c.pageblocks,
            nr_reserved_highatomic: z.nr_reserved_highatomic,
            pagesets: Pagesets {
                sets: core::array::from_fn(|cpu| PagesetJson {
                    cpu,
                    count: z.pcp[cpu].count,
                    high: z.pcp[cpu].high,
                    batch: z.pcp[cpu].batch,
                }),
                online: c.nr_cpus,
            },
            start: Hex::new(z.start_pfn.phys().0),
            end: Hex::new(z.end_pfn.phys().0),
        }
    }
}

/// Every zone, copied out of the lock (a fixed array: no allocation).
pub fn zone_copies<P: Platform>(mm: &MemoryManager<'_, P>) -> ([Option<Zone>; NR_ZONES], PhysAddr) {
    let pa = mm.lock();
    let mut zones = [const { None }; NR_ZONES];
    for (slot, zone) in zones.iter_mut().zip(pa.zones()) {
        *slot = Some(zone.clone());
    }
    (zones, pa.lowmem_pfn().phys())
}

/// Every zone with its free lists by migrate type and its pageblock
/// counts (walks the lists and the pageblocks under the lock; no
/// allocation).
pub fn zone_mobility_copies<P: Platform>(
    mm: &MemoryManager<'_, P>,
) -> ([Option<ZoneCopy>; NR_ZONES], PhysAddr) {
    let pa = mm.lock();
    let mut zones = [const { None }; NR_ZONES];
    for (zi, (slot, zone)) in zones.iter_mut().zip(pa.zones()).enumerate() {
        let free_lists = ByType(
            MigrateType::ALL
                .map(|mt| core::array::from_fn(|o| pa.count_free_list(zi, o, mt, u64::MAX).0)),
        );
        *slot = Some(ZoneCopy {
            zone: zone.clone(),
            nr_cpus: pa.nr_cpus(),
            free_lists,
            pageblocks: ByType(pa.pageblock_counts(zone.ztype)),
        });
    }
    (zones, pa.lowmem_pfn().phys())
}

pub fn zones<P: Platform>(mm: &MemoryManager<'_, P>) -> Response {
    let (zones, lowmem) = zone_mobility_copies(mm);
    #[derive(Serialize)]
    struct Zones {
        max_order: usize,
        lowmem_limit: Hex,
        zones: Vec<ZoneJson>,
    }
    Response::json(
        200,
        &Zones {
            max_order: MAX_ORDER,
            lowmem_limit: Hex::new(lowmem.0),
            zones: zones.iter().flatten().map(ZoneJson::from).collect(),
        },
    )
}

pub fn buddyinfo<P: Platform>(mm: &MemoryManager<'_, P>) -> Response {
    buddyinfo_json(&mm.buddyinfo())
}

pub fn buddyinfo_json(snapshot: &BuddySnapshot) -> Response {
    #[derive(Serialize)]
    struct ZoneCounts {
        name: &'static str,
        free_area: [u64; NR_ORDERS],
    }
    #[derive(Serialize)]
    struct Buddyinfo {
        zones: Vec<ZoneCounts>,
    }
    let zones = ZoneType::ALL
        .iter()
        .zip(snapshot)
        .map(|(zt, counts)| ZoneCounts {
            name: zt.name(),
            free_area: *counts,
        })
        .collect();
    Response::json(200, &Buddyinfo { zones })
}

// ----------------------------------------------------------------------
// /api/meminfo
// ----------------------------------------------------------------------

/// `{"MemTotal":N,…}` in `/proc/meminfo` order, from the same list.
struct MeminfoMap<'m>(&'m Meminfo, Option<ReserveStats>);

impl Serialize for MeminfoMap<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (key, value, _) in self.0.fields() {
            map.serialize_entry(key, &value)?;
        }
        // Pagezone's own lines, after Linux's (JSON only: the /proc text
        // stays Linux's byte for byte): the kernel heap's reserve, which
        // only `__GFP_MEMALLOC` (the heap) reaches.
        if let Some(r) = self.1 {
            let kb = |pages: u64| pages * (PAGE_SIZE >> 10);
            map.serialize_entry("KernelReserve", &kb(r.nr_pages))?;
            map.serialize_entry("KernelReserveFree", &kb(r.free_pages))?;
            map.serialize_entry("KernelReserveMinFree", &kb(r.min_free_pages))?;
        }
        map.end()
    }
}

/// `/api/meminfo`: `/proc/meminfo`'s keys, then `KernelReserve*`.
pub fn meminfo(mi: &Meminfo, reserve: Option<ReserveStats>) -> Response {
    Response::json(200, &MeminfoMap(mi, reserve))
}

// ----------------------------------------------------------------------
// /api/memmap
// ----------------------------------------------------------------------

/// One `/api/memmap` entry: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MemmapEntry {
    pub start: Hex,
    /// Exclusive.
    pub end: Hex,
    pub size: u64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Who: the firmware type's Linux name, or the memblock reservation.
    pub name: &'static str,
}

/// Classify `addr`: (type, name), or `None` for a hole.
fn classify(
    mb: &Memblock,
    fw: &[(PhysAddr, PhysAddr, E820Type)],
    addr: u64,
) -> Option<(&'static str, &'static str)> {
    let covers = |base: u64, end: u64| base <= addr && addr < end;
    if let Some(r) = mb
        .reserved_regions()
        .iter()
        .find(|r| covers(r.base.0, r.end().0))
    {
        return Some(match r.name {
            "kernel" => ("kernel", "kernel"),
            "firmware" => ("reserved", "firmware"),
            name => ("memblock", name),
        });
    }
    if mb
        .limited_regions()
        .iter()
        .any(|r| covers(r.base.0, r.end().0))
    {
        return Some(("mem_limit", mm::memblock::MEM_LIMIT_NAME));
    }
    // Where firmware entries overlap, the higher type wins (cf.
    // e820__update_table()).
    let firmware = fw
        .iter()
        .filter(|(s, e, _)| covers(s.0, e.0))
        .map(|(_, _, t)| *t)
        .max_by_key(|t| t.raw());
    match firmware {
        Some(E820Type::Ram) => Some(("usable", "System RAM")),
        Some(t @ (E820Type::Acpi | E820Type::Nvs)) => Some(("acpi", t.iomem_name())),
        Some(t) => Some(("reserved", t.iomem_name())),
        None if mb
            .memory_regions()
            .iter()
            .any(|r| covers(r.base.0, r.end().0)) =>
        {
            Some(("usable", "System RAM"))
        }
        None => None,
    }
}

/// The firmware map merged with memblock's reservations and `mem=` tail,
/// sorted, adjacent equal entries merged.
pub fn memmap_entries(boot: &BootView<'_>) -> Vec<MemmapEntry> {
    let mb = boot.memblock;
    let fw = boot.firmware_map;
    let mut bounds: Vec<u64> = fw
        .iter()
        .flat_map(|&(s, e, _)| [s.0, e.0])
        .chain(
            mb.memory_regions()
                .iter()
                .flat_map(|r| [r.base.0, r.end().0]),
        )
        .chain(
            mb.reserved_regions()
                .iter()
                .flat_map(|r| [r.base.0, r.end().0]),
        )
        .chain(
            mb.limited_regions()
                .iter()
                .flat_map(|r| [r.base.0, r.end().0]),
        )
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let mut out: Vec<MemmapEntry> = Vec::new();
    for pair in bounds.windows(2) {
        let (start, end) = (pair[0], pair[1]);
        let Some((kind, name)) = classify(mb, fw, start) else {
            continue;
        };
        match out.last_mut() {
            Some(last) if last.end.value == start && last.kind == kind && last.name == name => {
                last.end = Hex::new(end);
                last.size = end - last.start.value;
            }
            _ => out.push(MemmapEntry {
                start: Hex::new(start),
                end: Hex::new(end),
                size: end - start,
                kind,
                name,
            }),
        }
    }
    out
}

pub fn memmap(boot: &BootView<'_>) -> Response {
    #[derive(Serialize)]
    struct Memmap<'c> {
        cmdline: &'c str,
        entries: Vec<MemmapEntry>,
    }
    Response::json(
        200,
        &Memmap {
            cmdline: boot.cmdline,
            entries: memmap_entries(boot),
        },
    )
}

// ----------------------------------------------------------------------
// /api/dma
// ----------------------------------------------------------------------

/// One `dma_alloc_coherent()` buffer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CoherentBuffer {
    /// Who asked (`"virtio-net rx"`, …).
    pub owner: String,
    pub cpu_addr: u64,
    pub dma_addr: u64,
    pub size_bytes: u64,
    /// Zone name of its frames.
    pub zone: &'static str,
}

/// The bounce pool (cf. swiotlb).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BounceInfo {
    pub slots: u64,
    pub used: u64,
    pub bytes_bounced: u64,
}

/// What `/api/dma` shows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DmaInfo {
    pub coherent: Vec<CoherentBuffer>,
    pub bounce: BounceInfo,
}

pub fn dma(info: &DmaInfo) -> Response {
    #[derive(Serialize)]
    struct Coherent<'o> {
        owner: &'o str,
        cpu_addr: Hex,
        dma_addr: Hex,
        size: u64,
        zone: &'static str,
    }
    #[derive(Serialize)]
    struct Bounce {
        slots: u64,
        used: u64,
        bytes_bounced: u64,
    }
    #[derive(Serialize)]
    struct Dma<'o> {
        coherent: Vec<Coherent<'o>>,
        bounce: Bounce,
    }
    let coherent = info
        .coherent
        .iter()
        .map(|b| Coherent {
            owner: &b.owner,
            cpu_addr: Hex::new(b.cpu_addr),
            dma_addr: Hex::new(b.dma_addr),
            size: b.size_bytes,
            zone: b.zone,
        })
        .collect();
    Response::json(
        200,
        &Dma {
            coherent,
            bounce: Bounce {
                slots: info.bounce.slots,
                used: info.bounce.used,
                bytes_bounced: info.bounce.bytes_bounced,
            },
        },
    )
}

// ----------------------------------------------------------------------
// /api/allocations, /api/net
// ----------------------------------------------------------------------

/// `"52:54:00:12:34:56"`.
pub struct Mac(pub [u8; 6]);

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

/// `"10.0.2.15"`.
pub struct Ipv4(pub [u8; 4]);

impl fmt::Display for Ipv4 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let a = self.0;
        write!(f, "{}.{}.{}.{}", a[0], a[1], a[2], a[3])
    }
}

struct Shown<T>(T);

impl<T: fmt::Display> Serialize for Shown<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

pub fn net(stats: &NetStats) -> Response {
    #[derive(Serialize)]
    struct Sockets {
        total: usize,
        in_use: usize,
    }
    #[derive(Serialize)]
    struct Net {
        mac: Shown<Mac>,
        ipv4: Option<Shown<Ipv4>>,
        prefix_len: Option<u8>,
        gateway: Option<Shown<Ipv4>>,
        address_source: &'static str,
        port: u16,
        rx_packets: u64,
        tx_packets: u64,
        tcp_sockets: Sockets,
        tcp_connections: u64,
        http_requests: u64,
        transport: Option<&'static str>,
    }
    Response::json(
        200,
        &Net {
            mac: Shown(Mac(stats.mac)),
            ipv4: stats.ipv4.map(|(a, _)| Shown(Ipv4(a))),
            prefix_len: stats.ipv4.map(|(_, p)| p),
            gateway: stats.gateway.map(|g| Shown(Ipv4(g))),
            address_source: stats.address_source.as_str(),
            port: stats.port,
            rx_packets: stats.rx_packets,
            tx_packets: stats.tx_packets,
            tcp_sockets: Sockets {
                total: stats.tcp_sockets_total,
                in_use: stats.tcp_sockets_in_use,
            },
            tcp_connections: stats.tcp_connections,
            http_requests: stats.http_requests,
            transport: stats.transport,
        },
    )
}

/// One online CPU as the kernel knows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuInfo {
    /// Logical CPU number (the index of its per-CPU structures).
    pub cpu: usize,
    /// Its local APIC id (from the MADT).
    pub apic_id: u32,
    /// Work items its queue has run.
    pub work_done: u64,
    /// TLB-shootdown IPIs it has handled.
    pub tlb_flushes: u64,
}

/// `GET /api/cpus`: `{"online":[{"cpu","apic_id","pcp":{"count","high","batch"},"pagesets":[…]}]}`.
/// `pcp` sums the CPU's lists over the zones (pages waiting, and the
/// `high` marks); `batch` is that of the zone with the most managed pages
/// (the one ordinary allocations refill from). `pagesets` has each
/// zone's own; `work_done` and `tlb_flushes` count the work items the CPU
/// ran and the shootdown IPIs it handled, and `tlb_shootdowns` (top level)
/// those sent. A CPU at or above `mm::types::NR_CPUS` has no page lists:
/// it is listed with `pcp` zero (`batch` 1) and no pagesets.
pub fn cpus<P: Platform>(
    mm: &MemoryManager<'_, P>,
    online: &[CpuInfo],
    tlb_shootdowns: u64,
) -> Response {
    #[derive(Serialize)]
    struct Pcp {
        count: u64,
        high: u64,
        batch: u32,
    }
    #[derive(Serialize)]
    struct ZonePcp {
        zone: &'static str,
        count: u32,
        high: u32,
        batch: u32,
    }
    #[derive(Serialize)]
    struct Cpu {
        cpu: usize,
        apic_id: u32,
        pcp: Pcp,
        pagesets: Vec<ZonePcp>,
        work_done: u64,
        tlb_flushes: u64,
    }
    #[derive(Serialize)]
    struct Cpus {
        online: Vec<Cpu>,
        tlb_shootdowns: u64,
    }
    // Every vector is sized before the zone lock is taken: nothing
    // allocates under it.
    let mut out: Vec<Cpu> = Vec::new();
    if out.try_reserve_exact(online.len()).is_err() {
        return crate::ApiError::enomem("no memory for the CPU list").into_response();
    }
    for c in online {
        let mut pagesets = Vec::new();
        if pagesets.try_reserve_exact(NR_ZONES).is_err() {
            return crate::ApiError::enomem("no memory for the CPU list").into_response();
        }
        out.push(Cpu {
            cpu: c.cpu,
            apic_id: c.apic_id,
            pcp: Pcp {
                count: 0,
                high: 0,
                batch: 1,
            },
            pagesets,
            work_done: c.work_done,
            tlb_flushes: c.tlb_flushes,
        });
    }
    {
        let pa = mm.lock();
        let zones = pa.zones();
        let biggest = (0..zones.len())
            .max_by_key(|&i| zones[i].managed_pages)
            .unwrap_or(0);
        for cpu in out.iter_mut().filter(|c| c.cpu < mm::types::NR_CPUS) {
            let n = cpu.cpu;
            for z in zones.iter().filter(|z| z.is_populated()) {
                let p = &z.pcp[n];
                cpu.pagesets.push(ZonePcp {
                    zone: z.name(),
                    count: p.count,
                    high: p.high,
                    batch: p.batch,
                });
            }
            cpu.pcp = Pcp {
                count: zones.iter().map(|z| u64::from(z.pcp[n].count)).sum(),
                high: zones.iter().map(|z| u64::from(z.pcp[n].high)).sum(),
                batch: zones[biggest].pcp[n].batch,
            };
        }
    }
    Response::json(
        200,
        &Cpus {
            online: out,
            tlb_shootdowns,
        },
    )
}
