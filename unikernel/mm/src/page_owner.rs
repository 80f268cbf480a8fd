//! page_owner: who allocated each block, when, how (cf. `mm/page_owner.c`,
//! Linux 6.1; `page_owner=on` on the command line, off by default as in
//! Linux).
//!
//! What it owns and why:
//! * **A side array, one [`PageOwnerRecord`] per frame** (cf. `page_ext`),
//!   lent once at boot ([`PageOwner::attach`]; the kernel carves it from
//!   memblock only when `page_owner=on`), indexed by PFN. Nothing here
//!   touches the heap, so recording the heap's own pages cannot recurse,
//!   and the array never grows. Off, nothing is reserved and each hook
//!   costs one relaxed load and a branch.
//! * **One record per block, at its head** (Linux writes every page of the
//!   block and prints only the aligned heads; the print is the same, the
//!   write is O(1) here).
//! * **Who**: the allocation's `gfp`, `order`, timestamp, the PID of the
//!   task it was made for (0 for none: Linux's pid of the idle task) and
//!   the API handle it was made for (0 for the kernel's own), both from
//!   the *current* context the API sets around a request
//!   ([`PageOwner::set_current`], as Linux records `current`); the
//!   kernel subsystem is the frame's [`crate::page::OwnerTag`] in
//!   `mem_map`, read when printed.
//! * **Where**: Linux saves a stack trace in the stack depot. Here the
//!   call site is the `#[track_caller]` location of the caller of
//!   `MemoryManager::alloc_pages()` (or of the slab's page source):
//!   `file:line:column` compiled into the image, exact, and free of any
//!   unwinding or symbol table. It is one frame, not a stack, and the
//!   print says so by printing exactly that one line.
//!
//! The hooks are [`PageOwner::set_page_owner`] / [`PageOwner::reset_page_owner`],
//! called where `kmem:mm_page_alloc` / `kmem:mm_page_free` fire
//! (`MemoryManager`'s `trace_page_alloc` / `trace_page_free`).

use core::fmt;
use core::panic::Location;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use spin::Mutex;

use crate::gfp::GfpFlags;
use crate::types::Pfn;

/// One frame's record (cf. `struct page_owner`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageOwnerRecord {
    /// When it was allocated (ns of the platform clock).
    pub ts_ns: u64,
    /// When it was last freed (0: never).
    pub free_ts_ns: u64,
    /// The caller of `alloc_pages()`, `None` before the first allocation.
    pub call_site: Option<&'static Location<'static>>,
    /// The API handle it was allocated for (0: the kernel's own).
    pub handle: u64,
    pub gfp: GfpFlags,
    /// The task it was allocated for (0: none).
    pub pid: u32,
    pub order: u8,
    /// Allocated now (cf. `PAGE_EXT_OWNER_ALLOCATED`).
    pub allocated: bool,
}

/// What `page_owner=on` costs per frame (cf. `page_ext`'s size in Linux).
const _: () = assert!(core::mem::size_of::<PageOwnerRecord>() <= 48);

impl PageOwnerRecord {
    /// A never-allocated frame: fills the array lent to [`PageOwner::attach`].
    pub const EMPTY: PageOwnerRecord = PageOwnerRecord {
        ts_ns: 0,
        free_ts_ns: 0,
        call_site: None,
        handle: 0,
        gfp: GfpFlags::empty(),
        pid: 0,
        order: 0,
        allocated: false,
    };
}

/// The side array and the current context; see the module doc.
pub struct PageOwner<'a> {
    enabled: AtomicBool,
    records: Mutex<&'a mut [PageOwnerRecord]>,
    current_handle: AtomicU64,
    current_pid: AtomicU32,
}

impl Default for PageOwner<'_> {
    fn default() -> Self {
        Self::new()
    }
}

/// Restores the previous context when dropped ([`PageOwner::set_current`]).
pub struct CurrentGuard<'p, 'a> {
    owner: &'p PageOwner<'a>,
    handle: u64,
    pid: u32,
}

impl Drop for CurrentGuard<'_, '_> {
    fn drop(&mut self) {
        self.owner
            .current_handle
            .store(self.handle, Ordering::Relaxed);
        self.owner.current_pid.store(self.pid, Ordering::Relaxed);
    }
}

impl<'a> PageOwner<'a> {
    /// Off, no array.
    pub const fn new() -> Self {
        PageOwner {
            enabled: AtomicBool::new(false),
            records: Mutex::new(&mut []),
            current_handle: AtomicU64::new(0),
            current_pid: AtomicU32::new(0),
        }
    }

    /// Lends the array (one record per PFN from 0, every one
    /// [`PageOwnerRecord::EMPTY`]) and turns page_owner on (cf.
    /// `init_page_owner()`). Blocks allocated before stay unknown, as in
    /// Linux for pages allocated before page_ext existed.
    pub fn attach(&self, records: &'a mut [PageOwnerRecord]) {
        *self.records.lock() = records;
        self.enabled.store(true, Ordering::Relaxed);
    }

    /// Whether `page_owner=on` took effect (cf. `page_owner_inited`).
    #[inline(always)]
    pub fn enabled(&self) -> bool {
        self.enabled.load(Ordering::Relaxed)
    }

    /// Allocations until the guard drops are made for API handle `handle`
    /// and task `pid` (0: none), as Linux records `current`.
    pub fn set_current(&self, handle: u64, pid: u32) -> CurrentGuard<'_, 'a> {
        CurrentGuard {
            owner: self,
            handle: self.current_handle.swap(handle, Ordering::Relaxed),
            pid: self.current_pid.swap(pid, Ordering::Relaxed),
        }
    }

    /// Records an allocation of the block at `pfn` (cf. `__set_page_owner()`).
    /// `now` gives the timestamp; it is only called when page_owner is on.
    #[inline(always)]
    pub fn set_page_owner(
        &self,
        pfn: Pfn,
        order: u8,
        gfp: GfpFlags,
        call_site: &'static Location<'static>,
        now: impl FnOnce() -> u64,
    ) {
        if self.enabled() {
            self.record_alloc(pfn, order, gfp, call_site, now());
        }
    }

    #[cold]
    #[inline(never)]
    fn record_alloc(
        &self,
        pfn: Pfn,
        order: u8,
        gfp: GfpFlags,
        call_site: &'static Location<'static>,
        ts_ns: u64,
    ) {
        let mut records = self.records.lock();
        if let Some(r) = usize::try_from(pfn.0).ok().and_then(|i| records.get_mut(i)) {
            *r = PageOwnerRecord {
                ts_ns,
                free_ts_ns: r.free_ts_ns,
                call_site: Some(call_site),
                handle: self.current_handle.load(Ordering::Relaxed),
                gfp,
                pid: self.current_pid.load(Ordering::Relaxed),
                order,
                allocated: true,
            };
        }
    }

    /// Records the free of the block at `pfn` (cf. `__reset_page_owner()`):
    /// no longer printed; the free time is kept.
    #[inline(always)]
    pub fn reset_page_owner(&self, pfn: Pfn, now: impl FnOnce() -> u64) {
        if self.enabled() {
            self.record_free(pfn, now());
        }
    }

    #[cold]
    #[inline(never)]
    fn record_free(&self, pfn: Pfn, ts_ns: u64) {
        let mut records = self.records.lock();
        if let Some(r) = usize::try_from(pfn.0).ok().and_then(|i| records.get_mut(i)) {
            r.allocated = false;
            r.free_ts_ns = ts_ns;
        }
    }

    /// Migration moved the page at `src` to `dst` (cf. `folio_copy_owner()`
    /// then the old page's free): `dst` gets `src`'s record, `src` is free
    /// as of `ts_ns`.
    pub fn migrate(&self, src: Pfn, dst: Pfn, ts_ns: u64) {
        if !self.enabled() {
            return;
        }
        let mut records = self.records.lock();
        let (Ok(s), Ok(d)) = (usize::try_from(src.0), usize::try_from(dst.0)) else {
            return;
        };
        let Some(&rec) = records.get(s).filter(|r| r.allocated) else {
            return;
        };
        if let Some(slot) = records.get_mut(d) {
            *slot = rec;
        }
        if let Some(old) = records.get_mut(s) {
            old.allocated = false;
            old.free_ts_ns = ts_ns;
        }
    }

    /// The record of the block headed at `pfn`, if one is allocated there.
    pub fn get(&self, pfn: Pfn) -> Option<PageOwnerRecord> {
        let records = self.records.lock();
        let r = *records.get(usize::try_from(pfn.0).ok()?)?;
        r.allocated.then_some(r)
    }

    /// Copies the allocated blocks' records from `*pfn` on into `out`
    /// (heads only, in PFN order) and moves `*pfn` past the last one
    /// copied; returns how many (0: none left). For
    /// `/sys/kernel/debug/page_owner`, which formats a batch at a time
    /// with the array unlocked (cf. `read_page_owner()`).
    pub fn read_allocated(&self, pfn: &mut Pfn, out: &mut [(Pfn, PageOwnerRecord)]) -> usize {
        let records = self.records.lock();
        let mut n = 0;
        let mut i = usize::try_from(pfn.0).unwrap_or(usize::MAX);
        while i < records.len() && n < out.len() {
            let r = records[i];
            if r.allocated {
                out[n] = (Pfn(i as u64), r);
                n += 1;
                i += 1 << r.order;
            } else {
                i += 1;
            }
        }
        *pfn = Pfn(i as u64);
        n
    }
}

/// The first line of a record as `print_page_owner()` prints it (without
/// the newline): `Page allocated via order %u, mask %#x(%pGg), pid %d,
/// tgid %d (%s), ts %llu ns, free_ts %llu ns`. `comm` is the task's
/// name (`swapper/0` for pid 0, as Linux names the idle task).
pub struct AllocatedLine<'r> {
    pub rec: &'r PageOwnerRecord,
    pub comm: &'r str,
}

impl fmt::Display for AllocatedLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.rec;
        write!(
            f,
            "Page allocated via order {}, mask {:#x}({}), pid {}, tgid {} ({}), ts {} ns, free_ts {} ns",
            r.order,
            r.gfp.bits(),
            crate::trace::ShowGfpFlags(r.gfp),
            r.pid,
            r.pid,
            self.comm,
            r.ts_ns,
            r.free_ts_ns
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[track_caller]
    fn here() -> &'static Location<'static> {
        Location::caller()
    }

    #[test]
    fn off_records_nothing_on_records_heads_with_context() {
        let po = PageOwner::new();
        let site = here();
        po.set_page_owner(Pfn(8), 3, GfpFlags::GFP_KERNEL, site, || {
            panic!("no clock read while off")
        });
        assert_eq!(po.get(Pfn(8)), None);

        let records = Box::leak(vec![PageOwnerRecord::EMPTY; 64].into_boxed_slice());
        po.attach(records);
        {
            let _cur = po.set_current(42, 7);
            po.set_page_owner(Pfn(8), 3, GfpFlags::GFP_KERNEL, site, || 1000);
        }
        po.set_page_owner(Pfn(20), 0, GfpFlags::GFP_ATOMIC, site, || 2000);
        let r = po.get(Pfn(8)).unwrap();
        assert_eq!((r.order, r.handle, r.pid, r.ts_ns), (3, 42, 7, 1000));
        assert_eq!(r.call_site.unwrap().line(), site.line());
        assert!(r.call_site.unwrap().file().ends_with("page_owner.rs"));
        let r = po.get(Pfn(20)).unwrap();
        assert_eq!(
            (r.handle, r.pid),
            (0, 0),
            "the context ended with its guard"
        );
        assert_eq!(po.get(Pfn(9)), None, "tails have no record");

        // Reading skips tails and free blocks; a free keeps its time.
        let mut at = Pfn(0);
        let mut out = [(Pfn(0), PageOwnerRecord::EMPTY); 1];
        assert_eq!(po.read_allocated(&mut at, &mut out), 1);
        assert_eq!((out[0].0, at), (Pfn(8), Pfn(16)));
        assert_eq!(po.read_allocated(&mut at, &mut out), 1);
        assert_eq!(out[0].0, Pfn(20));
        assert_eq!(po.read_allocated(&mut at, &mut out), 0);
        po.reset_page_owner(Pfn(8), || 3000);
        assert_eq!(po.get(Pfn(8)), None);
        po.set_page_owner(Pfn(8), 0, GfpFlags::GFP_KERNEL, site, || 4000);
        assert_eq!(po.get(Pfn(8)).unwrap().free_ts_ns, 3000);
        // Migration moves the record.
        po.migrate(Pfn(20), Pfn(30), 5000);
        assert_eq!(po.get(Pfn(20)), None);
        let moved = po.get(Pfn(30)).unwrap();
        assert_eq!((moved.ts_ns, moved.gfp), (2000, GfpFlags::GFP_ATOMIC));
        // Out of range: ignored.
        po.set_page_owner(Pfn(64), 0, GfpFlags::GFP_KERNEL, site, || 0);
    }

    #[test]
    fn the_manager_records_its_caller_and_clock() {
        use crate::manager::MemoryManager;
        use crate::memblock::Memblock;
        use crate::page::{OwnerTag, Page};
        use crate::page_alloc::PageAlloc;
        use crate::platform::sim::SimPlatform;
        use crate::types::{Order, PhysAddr};
        use crate::zone::ZoneLayout;

        let ram = 64u64 << 20;
        let mut mb = Memblock::new();
        mb.add(PhysAddr(0), ram).unwrap();
        mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
        let mem_map =
            Box::leak(vec![Page::new_reserved(); (ram >> 12) as usize].into_boxed_slice());
        let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(32 << 20, ram)).unwrap();
        pa.memblock_free_all(&mb).unwrap();
        pa.setup_watermarks();
        let mm = MemoryManager::new(pa, SimPlatform::new(ram >> 12));
        let records =
            Box::leak(vec![PageOwnerRecord::EMPTY; (ram >> 12) as usize].into_boxed_slice());
        mm.page_owner().attach(records);
        let line = line!() + 1;
        let pfn = mm
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::new(2).unwrap(), OwnerTag::API)
            .unwrap();
        let r = mm.page_owner().get(pfn).unwrap();
        let site = r.call_site.unwrap();
        assert_eq!(site.file(), file!(), "the caller of alloc_pages");
        assert!((line..line + 4).contains(&site.line()), "{site}: the call");
        assert_eq!(
            (r.order, r.gfp, r.handle, r.pid),
            (2, GfpFlags::GFP_KERNEL, 0, 0)
        );
        assert!(r.ts_ns > 0, "the platform clock");
        mm.free_pages(pfn, Order::new(2).unwrap()).unwrap();
        assert_eq!(mm.page_owner().get(pfn), None);
    }

    #[test]
    fn first_line_is_print_page_owner() {
        let rec = PageOwnerRecord {
            ts_ns: 4215337000,
            free_ts_ns: 0,
            call_site: None,
            handle: 3,
            gfp: GfpFlags::GFP_KERNEL,
            pid: 0,
            order: 3,
            allocated: true,
        };
        let line = AllocatedLine {
            rec: &rec,
            comm: "swapper/0",
        }
        .to_string();
        assert_eq!(
            line,
            "Page allocated via order 3, mask 0xcc0(GFP_KERNEL), pid 0, tgid 0 (swapper/0), ts 4215337000 ns, free_ts 0 ns"
        );
    }
}
