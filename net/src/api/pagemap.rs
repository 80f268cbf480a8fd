//! `GET /api/pagemap?start_pfn=&count=`: what every frame of a range is,
//! run-length encoded, for the dashboard's physical memory map.
//!
//! One pass over `mem_map` classifies each frame from its descriptor — the
//! same source of truth as the allocator's own checks (cf. what
//! `/proc/kpageflags` exports and `tools/mm/page-types.c` summarises) — into
//! a [`FrameState`] and an owner, and merges neighbours that agree into a
//! [`Run`]. Runs never cross a zone boundary, so the zone of a run is exact.
//!
//! The walk happens under the zone lock and must not allocate there
//! (DESIGN.md), so the run buffer is reserved before the lock is taken and
//! the walk stops when it is full; the answer then says where to continue
//! (`next_pfn`). [`MAX_COUNT`] bounds the frames one request may ask for.
//!
//! The answer also carries the migrate type of every pageblock the
//! described range touches, one letter each ([`migratetype_letter`], Linux's
//! `show_migration_types()` letters), copied into a buffer reserved before
//! the lock like the runs: at most `MAX_COUNT / 512 + 1` bytes.
//!
//! With `page_owner=on`, every allocated block page_owner knows is a run
//! of its own (neighbouring blocks no longer merge) carrying `"alloc"`:
//! what `/sys/kernel/debug/page_owner` says of it (order, gfp, timestamp,
//! task, API handle, call site). Without it, runs are as before and carry
//! no `"alloc"`.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use serde::Serialize;

use mm::manager::MemoryManager;
use mm::page::{OwnerTag, Page};
use mm::page_alloc::PageAlloc;
use mm::page_owner::{PageOwner, PageOwnerRecord};
use mm::platform::Platform;
use mm::types::Pfn;
use mm::zone::{MigrateType, NR_ZONES, PAGEBLOCK_NR_PAGES, PAGEBLOCK_ORDER, ZoneType};

use crate::server::error::ApiError;
use crate::server::response::Response;

/// Most frames one request may cover (4 GiB of 4 KiB frames).
pub const MAX_COUNT: u64 = 1 << 20;

/// Most runs one answer holds; a range more fragmented than this is cut
/// short and continued from `next_pfn`.
pub const MAX_RUNS: usize = 4096;

/// What a frame is, as the memory map colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameState {
    /// Not RAM (a firmware hole or device range): no usable frame.
    Hole,
    /// RAM the buddy allocator does not manage (firmware, kernel image,
    /// memblock allocations, `mem=` tail).
    Reserved,
    /// Inside a free buddy block.
    Free,
    /// Part of an allocated block; the owner says by whom.
    Allocated,
}

impl FrameState {
    pub const fn name(self) -> &'static str {
        match self {
            FrameState::Hole => "hole",
            FrameState::Reserved => "reserved",
            FrameState::Free => "free",
            FrameState::Allocated => "allocated",
        }
    }

    /// Classify one descriptor (cf. `PageReserved()`, `PageBuddy()`,
    /// `PageHead()`/`PageTail()`; a managed frame that is neither head nor
    /// tail lies inside a free block).
    pub fn of(page: &Page) -> FrameState {
        if page.is_nomap() {
            FrameState::Hole
        } else if page.is_reserved() {
            FrameState::Reserved
        } else if page.is_allocated() {
            FrameState::Allocated
        } else {
            FrameState::Free
        }
    }
}

/// `nr_pages` frames from `pfn` in the same zone, state and owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub pfn: Pfn,
    pub nr_pages: u64,
    pub state: FrameState,
    /// `OwnerTag::NONE` for free frames and holes.
    pub owner: OwnerTag,
    pub zone: ZoneType,
    /// page_owner's record of the allocated block this run is (with
    /// `page_owner=on`; such a run is that one block).
    pub alloc: Option<PageOwnerRecord>,
}

impl Run {
    fn end(&self) -> u64 {
        self.pfn.0 + self.nr_pages
    }
}

/// The run a single frame starts; its owner only where one means something.
fn frame_run(pfn: u64, page: &Page, zone: ZoneType) -> Run {
    let state = FrameState::of(page);
    let owner = match state {
        FrameState::Allocated | FrameState::Reserved => page.owner,
        FrameState::Free | FrameState::Hole => OwnerTag::NONE,
    };
    Run {
        pfn: Pfn(pfn),
        nr_pages: 1,
        state,
        owner,
        zone,
        alloc: None,
    }
}

/// Encode `[start, end)` (clipped to `max_pfn`) into `runs`, which must
/// have spare capacity: it never grows, so this is safe under the zone
/// lock. Returns the first frame not described (`end` unless `runs` filled
/// up first).
#[cfg(test)]
pub fn encode(pa: &PageAlloc<'_>, start: Pfn, end: Pfn, runs: &mut Vec<Run>) -> Pfn {
    encode_with_owners(pa, start, end, runs, None)
}

/// [`encode`], each block `owners` has a record of in a run of its own
/// with that record (`owners`' lock is taken under the zone lock; the
/// allocator never takes them the other way round).
pub fn encode_with_owners(
    pa: &PageAlloc<'_>,
    start: Pfn,
    end: Pfn,
    runs: &mut Vec<Run>,
    owners: Option<&PageOwner<'_>>,
) -> Pfn {
    let end = end.0.min(pa.max_pfn().0);
    let record = |head: Pfn| owners.and_then(|o| o.get(head));
    let mut pfn = start.0;
    // The allocated block being walked: a non-compound block marks its
    // head only, so its other frames take the head's state and owner.
    let (mut block_end, mut block_owner, mut block_alloc) = match pa.compound_head(start) {
        Some((head, order)) if head < start => (
            head.0 + order.nr_pages(),
            pa.page(head).map_or(OwnerTag::NONE, |p| p.owner),
            record(head),
        ),
        _ => (0, OwnerTag::NONE, None),
    };
    while pfn < end {
        let (Some(page), Some(zone)) = (pa.page(Pfn(pfn)), pa.zone_of(Pfn(pfn))) else {
            break;
        };
        // A frame of a block page_owner knows, after its first: joins it.
        let mut inside_known = false;
        let here = if page.is_head() {
            block_end = pfn + (1u64 << page.order);
            block_owner = page.owner;
            block_alloc = if page.is_allocated() {
                record(Pfn(pfn))
            } else {
                None
            };
            Run {
                alloc: block_alloc,
                ..frame_run(pfn, page, zone)
            }
        } else if pfn < block_end {
            inside_known = block_alloc.is_some() && pfn != start.0;
            Run {
                pfn: Pfn(pfn),
                nr_pages: 1,
                state: FrameState::Allocated,
                owner: block_owner,
                zone,
                alloc: block_alloc,
            }
        } else {
            block_alloc = None;
            frame_run(pfn, page, zone)
        };
        let full = runs.len() == runs.capacity();
        match runs.last_mut() {
            Some(last)
                if last.end() == pfn
                    && (last.state, last.owner, last.zone)
                        == (here.state, here.owner, here.zone)
                    && ((last.alloc.is_none() && here.alloc.is_none()) || inside_known) =>
            {
                last.nr_pages += 1;
            }
            _ if full => break,
            _ => runs.push(here),
        }
        pfn += 1;
    }
    Pfn(pfn)
}

/// Most pageblock letters one answer holds: [`MAX_COUNT`] frames touch at
/// most this many pageblocks.
pub const MAX_PAGEBLOCKS: usize = (MAX_COUNT / PAGEBLOCK_NR_PAGES) as usize + 1;

/// One letter per migrate type, as Linux's `show_migration_types()` prints
/// them: `U`nmovable, `M`ovable, r`E`claimable, `H`ighAtomic, `C`MA,
/// `I`solate.
pub const fn migratetype_letter(mt: MigrateType) -> u8 {
    match mt {
        MigrateType::Unmovable => b'U',
        MigrateType::Movable => b'M',
        MigrateType::Reclaimable => b'E',
        MigrateType::HighAtomic => b'H',
        MigrateType::Cma => b'C',
        MigrateType::Isolate => b'I',
    }
}

/// The letters of the pageblocks that `[start, end)` touches, from the one
/// holding `start`, into `letters` (which must have spare capacity for
/// them: it never grows, so this is safe under the zone lock). Returns the
/// first frame of the first pageblock.
pub fn encode_pageblocks(pa: &PageAlloc<'_>, start: Pfn, end: Pfn, letters: &mut Vec<u8>) -> Pfn {
    let first = start.0 & !(PAGEBLOCK_NR_PAGES - 1);
    let mut pfn = first;
    while pfn < end.0 && letters.len() < letters.capacity() {
        letters.push(migratetype_letter(pa.pageblock_migratetype(Pfn(pfn))));
        pfn += PAGEBLOCK_NR_PAGES;
    }
    Pfn(first)
}

/// A decimal query parameter, or `default` when absent.
fn number(name: &str, value: Option<&str>, default: u64) -> Result<u64, ApiError> {
    let Some(s) = value else {
        return Ok(default);
    };
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::einval(format!(
            "{name} must be a decimal number, not '{s}'"
        )));
    }
    s.parse::<u64>()
        .map_err(|_| ApiError::einval(format!("{name} '{s}' is out of range")))
}

#[derive(Serialize)]
struct RunJson {
    pfn: u64,
    nr_pages: u64,
    state: &'static str,
    owner: Option<&'static str>,
    zone: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    alloc: Option<AllocJson>,
}

/// page_owner's record of a run's block.
#[derive(Serialize)]
struct AllocJson {
    order: u8,
    gfp: String,
    ts_ns: u64,
    /// The task it was allocated for (0: none).
    pid: u32,
    /// The API handle it was allocated for (0: the kernel's own).
    handle: u64,
    /// The caller of `alloc_pages()`, `file:line:column`.
    call_site: Option<String>,
}

impl AllocJson {
    fn of(r: &PageOwnerRecord) -> AllocJson {
        AllocJson {
            order: r.order,
            gfp: format!("{}", r.gfp),
            ts_ns: r.ts_ns,
            pid: r.pid,
            handle: r.handle,
            call_site: r
                .call_site
                .map(|l| format!("{}:{}:{}", l.file(), l.line(), l.column())),
        }
    }
}

#[derive(Serialize)]
struct ZoneSpan {
    name: &'static str,
    start_pfn: u64,
    end_pfn: u64,
}

#[derive(Serialize)]
struct Pagemap {
    start_pfn: u64,
    /// Exclusive end of what `runs` describe.
    end_pfn: u64,
    /// Where to continue when the run buffer filled up, else `null`.
    next_pfn: Option<u64>,
    max_pfn: u64,
    /// First frame without a direct-map address (HighMem starts here).
    lowmem_pfn: u64,
    zones: Vec<ZoneSpan>,
    runs: Vec<RunJson>,
    /// `PAGEBLOCK_ORDER`: a pageblock is `1 << pageblock_order` frames.
    pageblock_order: usize,
    /// First frame of the pageblock holding `start_pfn`.
    pageblock_start_pfn: u64,
    /// One [`migratetype_letter`] per pageblock from `pageblock_start_pfn`
    /// through the one holding `end_pfn - 1`.
    pageblocks: String,
}

/// `GET /api/pagemap?start_pfn=N&count=M`: `start_pfn` defaults to 0,
/// `count` to the rest of memory (at most [`MAX_COUNT`]). A count of 0,
/// above [`MAX_COUNT`], or a value that is not a decimal number is 400
/// EINVAL; a start at or past `max_pfn` is 404 ENOENT (no such frame); a
/// range running past `max_pfn` is clipped.
pub fn pagemap<P: Platform>(
    mm: &MemoryManager<'_, P>,
    start_pfn: Option<&str>,
    count: Option<&str>,
) -> Result<Response, ApiError> {
    let start = number("start_pfn", start_pfn, 0)?;
    let max_pfn = mm.lock().max_pfn().0;
    if start >= max_pfn {
        // A well-formed PFN past the end of memory: no such frame.
        return Err(ApiError::enoent(format!(
            "start_pfn {start} is not below max_pfn {max_pfn}"
        )));
    }
    let count = number("count", count, (max_pfn - start).min(MAX_COUNT))?;
    if count == 0 || count > MAX_COUNT {
        return Err(ApiError::einval(format!(
            "count {count} is out of range 1..={MAX_COUNT}"
        )));
    }
    let end = start.saturating_add(count).min(max_pfn);

    // Reserved before the lock: `encode` and `encode_pageblocks` never
    // grow them.
    let mut runs = Vec::with_capacity(MAX_RUNS);
    let mut letters = Vec::with_capacity(MAX_PAGEBLOCKS);
    let (stop, zones, lowmem, pageblock_start) = {
        let pa = mm.lock();
        let owners = mm.page_owner();
        let owners = owners.enabled().then_some(owners);
        let stop = encode_with_owners(&pa, Pfn(start), Pfn(end), &mut runs, owners);
        let pageblock_start = encode_pageblocks(&pa, Pfn(start), stop, &mut letters);
        let mut zones = [(ZoneType::Dma, 0, 0); NR_ZONES];
        for (slot, z) in zones.iter_mut().zip(pa.zones()) {
            *slot = (z.ztype, z.start_pfn.0, z.end_pfn.0);
        }
        (stop.0, zones, pa.lowmem_pfn().0, pageblock_start.0)
    };
    // Only ASCII letters went in.
    let pageblocks = String::from_utf8(letters).unwrap_or_default();

    let body = Pagemap {
        start_pfn: start,
        end_pfn: stop,
        next_pfn: (stop < end).then_some(stop),
        max_pfn,
        lowmem_pfn: lowmem,
        zones: zones
            .iter()
            .map(|&(zt, s, e)| ZoneSpan {
                name: zt.name(),
                start_pfn: s,
                end_pfn: e,
            })
            .collect(),
        runs: runs
            .iter()
            .map(|r| RunJson {
                pfn: r.pfn.0,
                nr_pages: r.nr_pages,
                state: r.state.name(),
                owner: (r.owner != OwnerTag::NONE).then(|| r.owner.name()),
                zone: r.zone.name(),
                alloc: r.alloc.as_ref().map(AllocJson::of),
            })
            .collect(),
        pageblock_order: PAGEBLOCK_ORDER,
        pageblock_start_pfn: pageblock_start,
        pageblocks,
    };
    Ok(Response::json(200, &body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mm::gfp::GfpFlags;
    use mm::platform::sim::SimPlatform;
    use mm::types::Order;
    use mm::zone::ZoneLayout;
    use serde_json::Value;
    use std::string::String;
    use std::vec;

    const MIB: u64 = 1 << 20;

    /// 64 MiB with a hole at [1 MiB, 2 MiB), lowmem at 32 MiB, the first
    /// page reserved for "firmware" and 1 MiB of "kernel" at 2 MiB.
    fn with_mm(body: impl FnOnce(&MemoryManager<'_, SimPlatform>)) {
        let layout = ZoneLayout::from_bytes(32 * MIB, 64 * MIB);
        let mut mem_map = vec![Page::new_reserved(); layout.max_pfn.index()];
        let mut pa = PageAlloc::new(&mut mem_map, layout).unwrap();
        pa.mark_ram(Pfn(0), Pfn(256)).unwrap();
        pa.mark_ram(Pfn(512), Pfn(16384)).unwrap();
        pa.label_reserved(Pfn(0), Pfn(1), OwnerTag::FIRMWARE)
            .unwrap();
        pa.label_reserved(Pfn(512), Pfn(768), OwnerTag::KERNEL_IMAGE)
            .unwrap();
        pa.free_bootmem(Pfn(1), Pfn(256)).unwrap();
        pa.free_bootmem(Pfn(768), Pfn(16384)).unwrap();
        pa.setup_watermarks();
        let mm = MemoryManager::new(pa, SimPlatform::new(layout.max_pfn.0));
        body(&mm);
        mm.lock().check_invariants().unwrap();
    }

    fn get(mm: &MemoryManager<'_, SimPlatform>, start: Option<&str>, count: Option<&str>) -> Value {
        let r = pagemap(mm, start, count).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(r.status, 200);
        serde_json::from_slice(&r.body).unwrap()
    }

    fn refused(
        mm: &MemoryManager<'_, SimPlatform>,
        start: Option<&str>,
        count: Option<&str>,
    ) -> String {
        let r = pagemap(mm, start, count)
            .expect_err("should be refused")
            .into_response();
        assert_eq!(r.status, 400, "{start:?} {count:?}");
        let j: Value = serde_json::from_slice(&r.body).unwrap();
        assert_eq!(j["error"]["code"], "EINVAL");
        j["error"]["message"].as_str().unwrap().into()
    }

    fn runs(j: &Value) -> Vec<(u64, u64, String, Option<String>, String)> {
        j["runs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r["pfn"].as_u64().unwrap(),
                    r["nr_pages"].as_u64().unwrap(),
                    r["state"].as_str().unwrap().into(),
                    r["owner"].as_str().map(String::from),
                    r["zone"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    fn run(
        pfn: u64,
        n: u64,
        state: &str,
        owner: Option<&str>,
        zone: &str,
    ) -> (u64, u64, String, Option<String>, String) {
        (pfn, n, state.into(), owner.map(String::from), zone.into())
    }

    #[test]
    fn whole_map_has_holes_reservations_zones_and_lowmem() {
        with_mm(|mm| {
            let j = get(mm, None, None);
            assert_eq!(j["start_pfn"], 0);
            assert_eq!(j["end_pfn"], 16384);
            assert_eq!(j["max_pfn"], 16384);
            assert_eq!(j["next_pfn"], Value::Null);
            assert_eq!(j["lowmem_pfn"], 8192);
            assert_eq!(
                j["zones"],
                serde_json::json!([
                    {"name":"DMA","start_pfn":0,"end_pfn":4096},
                    {"name":"DMA32","start_pfn":4096,"end_pfn":8192},
                    {"name":"Normal","start_pfn":8192,"end_pfn":8192},
                    {"name":"HighMem","start_pfn":8192,"end_pfn":16384},
                ])
            );
            assert_eq!(
                runs(&j),
                vec![
                    run(0, 1, "reserved", Some("firmware"), "DMA"),
                    run(1, 255, "free", None, "DMA"),
                    run(256, 256, "hole", None, "DMA"),
                    run(512, 256, "reserved", Some("kernel"), "DMA"),
                    run(768, 4096 - 768, "free", None, "DMA"),
                    run(4096, 4096, "free", None, "DMA32"),
                    run(8192, 8192, "free", None, "HighMem"),
                ]
            );
        });
    }

    #[test]
    fn allocations_show_with_their_owner_and_vanish_when_freed() {
        with_mm(|mm| {
            let gfp = GfpFlags::parse("GFP_DMA32").unwrap();
            let api = mm
                .alloc_pages(gfp, Order::new(5).unwrap(), OwnerTag::API)
                .unwrap();
            let slab = mm
                .alloc_pages(gfp, Order::new(0).unwrap(), OwnerTag::SLAB)
                .unwrap();
            let j = get(mm, Some("4096"), Some("4096"));
            let rs = runs(&j);
            assert!(
                rs.contains(&run(api.0, 32, "allocated", Some("api"), "DMA32")),
                "{rs:?}"
            );
            assert!(
                rs.contains(&run(slab.0, 1, "allocated", Some("slab"), "DMA32")),
                "{rs:?}"
            );
            // Every frame of the range is described exactly once, in order.
            let mut next = 4096;
            for (pfn, n, ..) in &rs {
                assert_eq!(*pfn, next);
                next += n;
            }
            assert_eq!(next, 8192);
            mm.free_pages(api, Order::new(5).unwrap()).unwrap();
            mm.free_pages(slab, Order::ZERO).unwrap();
            assert_eq!(
                runs(&get(mm, Some("4096"), Some("4096"))),
                vec![run(4096, 4096, "free", None, "DMA32")]
            );
        });
    }

    /// `(pageblock_start_pfn, pageblocks)` of an answer.
    fn pageblocks(j: &Value) -> (u64, String) {
        assert_eq!(j["pageblock_order"], 9);
        (
            j["pageblock_start_pfn"].as_u64().unwrap(),
            j["pageblocks"].as_str().unwrap().into(),
        )
    }

    #[test]
    fn pageblocks_carry_their_migratetype_and_match_the_zone_counts() {
        with_mm(|mm| {
            // Boot leaves every pageblock Movable: 16384 frames, 32 blocks.
            let (first, letters) = pageblocks(&get(mm, None, None));
            assert_eq!((first, letters.as_str()), (0, "M".repeat(32).as_str()));

            // An unmovable allocation steals from Movable and claims its
            // pageblock.
            let gfp = GfpFlags::parse("GFP_DMA32").unwrap();
            let pfn = mm.alloc_pages(gfp, Order::ZERO, OwnerTag::API).unwrap();
            assert_eq!(mm.lock().pageblock_migratetype(pfn), MigrateType::Unmovable);
            let j = get(mm, None, None);
            let (first, letters) = pageblocks(&j);
            assert_eq!(first, 0);
            assert_eq!(
                letters.as_bytes()[(pfn.0 / 512) as usize],
                b'U',
                "{letters}"
            );

            // Per zone, the letters counted as pageblock_counts() steps
            // (from the zone's first frame) equal /api/zones' pageblocks.
            let pa = mm.lock();
            for z in pa.zones() {
                let mut counts = [0u64; mm::zone::MIGRATE_TYPES];
                let mut p = z.start_pfn.0;
                while p < z.end_pfn.0 {
                    let letter = letters.as_bytes()[(p / 512) as usize];
                    let mt = MigrateType::ALL
                        .into_iter()
                        .find(|&mt| migratetype_letter(mt) == letter)
                        .unwrap();
                    counts[mt.index()] += 1;
                    p += 512;
                }
                assert_eq!(counts, pa.pageblock_counts(z.ztype), "{}", z.name());
            }
            drop(pa);

            // A range inside a pageblock names that block; one across a
            // boundary names both.
            let j = get(mm, Some(&(pfn.0 + 1).to_string()), Some("3"));
            assert_eq!(pageblocks(&j), (pfn.0 & !511, "U".into()));
            let base = pfn.0 & !511;
            let j = get(mm, Some(&(base + 511).to_string()), Some("2"));
            assert_eq!(pageblocks(&j).0, base);
            assert_eq!(pageblocks(&j).1.len(), 2);
            mm.free_pages(pfn, Order::ZERO).unwrap();
        });
    }

    #[test]
    fn pageblock_letters_are_bounded_and_follow_a_cut_short_answer() {
        with_mm(|mm| {
            // The Linux letters, one per type, all distinct.
            let letters: Vec<u8> = MigrateType::ALL.map(migratetype_letter).to_vec();
            assert_eq!(letters, b"UMEHCI");
            let pa = mm.lock();
            // Capacity is the bound: a buffer of 2 stops at 2 letters.
            let mut small = Vec::with_capacity(2);
            assert_eq!(
                encode_pageblocks(&pa, Pfn(700), Pfn(16384), &mut small),
                Pfn(512)
            );
            assert_eq!(small, b"MM");
            drop(pa);
            // Every frame allocated one by one, every other one freed: the
            // answer stops at next_pfn and its letters end with its range.
            let gfp = GfpFlags::parse("GFP_DMA32").unwrap();
            let mut pfns = Vec::new();
            while let Ok(p) = mm.alloc_pages(gfp, Order::ZERO, OwnerTag::API) {
                pfns.push(p);
            }
            for p in pfns.iter().filter(|p| p.0 % 2 == 0) {
                mm.free_pages(*p, Order::ZERO).unwrap();
            }
            let j = get(mm, None, None);
            let next = j["next_pfn"].as_u64().expect("cut short");
            let (first, letters) = pageblocks(&j);
            assert_eq!(first, 0);
            assert_eq!(letters.len() as u64, next.div_ceil(512), "{next}");
            let j2 = get(mm, Some(&next.to_string()), None);
            let (first2, letters2) = pageblocks(&j2);
            assert_eq!(first2, next & !511);
            assert_eq!(first2 / 512 + letters2.len() as u64, 32);
            for p in pfns.iter().filter(|p| p.0 % 2 == 1) {
                mm.free_pages(*p, Order::ZERO).unwrap();
            }
        });
        assert!(MAX_PAGEBLOCKS as u64 * 512 >= MAX_COUNT + 511);
    }

    #[test]
    fn ranges_are_clipped_and_bad_parameters_refused() {
        with_mm(|mm| {
            let j = get(mm, Some("16000"), Some("1000"));
            assert_eq!(
                (j["start_pfn"].as_u64(), j["end_pfn"].as_u64()),
                (Some(16000), Some(16384))
            );
            let j = get(mm, Some("300"), Some("2"));
            assert_eq!(runs(&j), vec![run(300, 2, "hole", None, "DMA")]);
            // Past the end of memory: no such frame.
            let r = pagemap(mm, Some("16384"), None)
                .expect_err("past max_pfn")
                .into_response();
            assert_eq!(r.status, 404);
            for (start, count) in [
                (Some("99999999999999999999"), None),
                (Some("-1"), None),
                (Some("0x10"), None),
                (Some(""), None),
                (None, Some("0")),
                (None, Some("1048577")),
                (None, Some("abc")),
                (None, Some("+5")),
            ] {
                let msg = refused(mm, start, count);
                assert!(msg.contains("start_pfn") || msg.contains("count"), "{msg}");
            }
        });
    }

    #[test]
    fn a_full_run_buffer_stops_and_says_where_to_continue() {
        with_mm(|mm| {
            let pa = mm.lock();
            let mut small = Vec::with_capacity(3);
            let stop = encode(&pa, Pfn(0), Pfn(16384), &mut small);
            assert_eq!(small.len(), 3);
            assert_eq!(stop, Pfn(512), "{small:?}");
            let mut rest = Vec::with_capacity(MAX_RUNS);
            assert_eq!(encode(&pa, stop, Pfn(16384), &mut rest), Pfn(16384));
            assert_eq!(rest[0].pfn, Pfn(512));
        });
    }

    #[test]
    fn fragmented_memory_is_cut_at_max_runs_with_next_pfn() {
        with_mm(|mm| {
            // Every other lowmem frame allocated: thousands of runs.
            let gfp = GfpFlags::parse("GFP_DMA32").unwrap();
            let mut pfns = Vec::new();
            while let Ok(p) = mm.alloc_pages(gfp, Order::ZERO, OwnerTag::API) {
                pfns.push(p);
            }
            assert!(pfns.len() > MAX_RUNS + 64, "{}", pfns.len());
            for p in pfns.iter().filter(|p| p.0 % 2 == 0) {
                mm.free_pages(*p, Order::ZERO).unwrap();
            }
            let j = get(mm, None, None);
            assert_eq!(j["runs"].as_array().unwrap().len(), MAX_RUNS);
            let next = j["next_pfn"].as_u64().expect("cut short");
            assert_eq!(j["end_pfn"].as_u64(), Some(next));
            assert!((1..8192).contains(&next), "{next}");
            let j2 = get(mm, Some(&next.to_string()), None);
            assert_eq!(j2["next_pfn"], Value::Null);
            assert_eq!(j2["runs"][0]["pfn"].as_u64(), Some(next));
            for p in pfns.iter().filter(|p| p.0 % 2 == 1) {
                mm.free_pages(*p, Order::ZERO).unwrap();
            }
        });
    }
}
