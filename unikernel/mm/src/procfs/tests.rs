//! Golden tests: the expected texts are written out literally, derived by
//! hand from Linux's format strings and the simulated machine's numbers, so
//! any drift in layout shows up as a diff against what a Linux parser reads.

use super::*;
use crate::gfp::GfpFlags;
use crate::page::{OwnerTag, Page};
use crate::types::{Order, PAGE_SIZE, Pfn};
use crate::zone::{ZoneLayout, ZoneType};

const MIB: u64 = 1 << 20;

/// A `mem_map` that lives for the whole test (tests may leak).
pub(crate) fn mem_map(nr_pages: u64) -> &'static mut [Page] {
    Box::leak(vec![Page::new_reserved(); nr_pages as usize].into_boxed_slice())
}

/// memblock for a 2 GiB q35 guest: usable 0–0x9fc00 and 1M–0x7ffe0000,
/// page 0 and a 2 MiB kernel image at 1 MiB reserved.
pub(crate) fn q35_2g_memblock() -> Memblock {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), 0x9fc00).unwrap();
    mb.add(PhysAddr(0x10_0000), 0x7ffe_0000 - 0x10_0000)
        .unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "firmware").unwrap();
    mb.reserve(PhysAddr(0x10_0000), 2 * MIB, "kernel").unwrap();
    mb
}

/// Boot `mb` as the kernel does: `mem_map` from memblock below lowmem,
/// everything free to the buddy allocator, watermarks set up.
pub(crate) fn boot(mut mb: Memblock, lowmem_bytes: u64) -> (PageAlloc<'static>, Memblock) {
    let layout = ZoneLayout::from_bytes(lowmem_bytes, mb.end_of_ram().0);
    let size = layout.max_pfn.0 * core::mem::size_of::<Page>() as u64;
    mb.alloc_named(size, PAGE_SIZE, PhysAddr(lowmem_bytes), "mem_map")
        .unwrap();
    let mut pa = PageAlloc::new(mem_map(layout.max_pfn.0), layout).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    // Exact buddy predictions: the per-CPU lists are off here (the
    // property tests and page_alloc::pcp's tests run them on).
    pa.set_pcp_enabled(false);
    pa.check_invariants().unwrap();
    (pa, mb)
}

/// SeaBIOS's e820 map for `-M q35 -m 2G`.
fn q35_2g_e820() -> [(PhysAddr, PhysAddr, E820Type); 9] {
    let r = |s: u64, e: u64, t| (PhysAddr(s), PhysAddr(e), t);
    [
        r(0, 0x9fc00, E820Type::Ram),
        r(0x9fc00, 0xa0000, E820Type::Reserved),
        r(0xf0000, 0x10_0000, E820Type::Reserved),
        r(0x10_0000, 0x7ffe_0000, E820Type::Ram),
        r(0x7ffe_0000, 0x8000_0000, E820Type::Reserved),
        r(0xb000_0000, 0xc000_0000, E820Type::Reserved),
        r(0xfed1_c000, 0xfed2_0000, E820Type::Reserved),
        r(0xfeff_c000, 0xff00_0000, E820Type::Reserved),
        r(0xfffc_0000, 0x1_0000_0000, E820Type::Reserved),
    ]
}

fn render(f: impl FnOnce(&mut String) -> fmt::Result) -> String {
    let mut s = String::new();
    f(&mut s).unwrap();
    s
}

// ----------------------------------------------------------------------
// buddyinfo
// ----------------------------------------------------------------------

#[test]
fn buddyinfo_golden_q35_2g() {
    let (pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    // DMA: [1, 159) splits into 1+2+4+…+64 and 16+8+4+2+1 at the top; the
    // kernel ends at 0x300, so [0x300, 0x1000) is one order-8 and three
    // order-10 blocks. DMA32: 218 order-10 blocks below mem_map. HighMem:
    // 287 order-10 blocks and 992 = 512+256+128+64+32 pages. Normal is
    // empty and therefore absent; every line ends in a space.
    let expected = "\
Node 0, zone      DMA      2      2      2      2      2      1      1      0      1      0      3 \n\
Node 0, zone    DMA32      0      0      0      0      0      0      0      0      0      0    218 \n\
Node 0, zone  HighMem      0      0      0      0      0      1      1      1      1      1    287 \n";
    assert_eq!(render(|s| buddyinfo(&pa, s)), expected);
    assert!(expected.lines().all(|l| l.ends_with(' ')));
    assert!(!expected.contains("Normal"));
}

#[test]
fn pagetypeinfo_golden_q35_2g() {
    let (pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    // Same free blocks as buddyinfo, all Movable; pageblocks of 512 pages:
    // DMA 4096/512 = 8, DMA32 225280/512 = 440, HighMem 294880/512 → 576.
    let row = |zone: &str, ty: &str, counts: &str| {
        std::format!("Node    0, zone {zone:>8}, type {ty:>12} {counts}\n")
    };
    let zeros = "     0      0      0      0      0      0      0      0      0      0      0 ";
    let mut expected = String::from(
        "Page block order: 9\nPages per block:  512\n\n\
Free pages count per migrate type at order       0      1      2      3      4      5      6      7      8      9     10 \n",
    );
    for (zone, movable) in [
        (
            "DMA",
            "     2      2      2      2      2      1      1      0      1      0      3 ",
        ),
        (
            "DMA32",
            "     0      0      0      0      0      0      0      0      0      0    218 ",
        ),
        (
            "HighMem",
            "     0      0      0      0      0      1      1      1      1      1    287 ",
        ),
    ] {
        for ty in [
            "Unmovable",
            "Movable",
            "Reclaimable",
            "HighAtomic",
            "CMA",
            "Isolate",
        ] {
            expected.push_str(&row(
                zone,
                ty,
                if ty == "Movable" { movable } else { zeros },
            ));
        }
    }
    expected.push_str("\nNumber of blocks type     Unmovable      Movable  Reclaimable   HighAtomic          CMA      Isolate \n");
    for (zone, blocks) in [("DMA", 8), ("DMA32", 440), ("HighMem", 576)] {
        expected.push_str(&std::format!(
            "Node 0, zone {zone:>8} {:>12} {blocks:>12} {:>12} {:>12} {:>12} {:>12} \n",
            0,
            0,
            0,
            0,
            0
        ));
    }
    assert_eq!(render(|s| pagetypeinfo(&pa, s)), expected);
}

#[test]
fn buddyinfo_follows_allocations() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    let before = free_area_snapshot(&pa);
    let pfn = pa
        .alloc_pages(
            GfpFlags::GFP_KERNEL | GfpFlags::DMA,
            Order::ZERO,
            OwnerTag::API,
        )
        .unwrap();
    let text = render(|s| buddyinfo(&pa, s));
    // Boot left every pageblock Movable: this Unmovable request steals the
    // largest Movable block (an order-10 one, claiming its pageblocks, cf.
    // __rmqueue_fallback()) and splits it, instead of taking the order-0
    // block a type-blind buddy allocator would.
    assert!(
        text.starts_with(
            "Node 0, zone      DMA      3      3      3      3      3      2      2      1      2      1      2 \n"
        ),
        "{text}"
    );
    pa.free_pages(pfn, Order::ZERO).unwrap();
    assert_eq!(free_area_snapshot(&pa), before);
}

// ----------------------------------------------------------------------
// zoneinfo
// ----------------------------------------------------------------------

const ZONEINFO_Q35_2G: &str = "\
Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 0
      nr_active_anon 0
      nr_inactive_file 0
      nr_active_file 0
      nr_unevictable 0
      nr_slab_reclaimable 11
      nr_slab_unreclaimable 123
      nr_isolated_anon 0
      nr_isolated_file 0
      workingset_nodes 0
      workingset_refault_anon 0
      workingset_refault_file 0
      workingset_activate_anon 0
      workingset_activate_file 0
      workingset_restore_anon 0
      workingset_restore_file 0
      workingset_nodereclaim 0
      nr_anon_pages 0
      nr_mapped    0
      nr_file_pages 0
      nr_dirty     0
      nr_writeback 0
      nr_writeback_temp 0
      nr_shmem     0
      nr_shmem_hugepages 0
      nr_shmem_pmdmapped 0
      nr_file_hugepages 0
      nr_file_pmdmapped 0
      nr_anon_transparent_hugepages 0
      nr_vmscan_write 0
      nr_vmscan_immediate_reclaim 0
      nr_dirtied   0
      nr_written   0
      nr_throttled_written 0
      nr_kernel_misc_reclaimable 0
      nr_foll_pin_acquired 0
      nr_foll_pin_released 0
      nr_kernel_stack 64
      nr_page_table_pages 7
      nr_sec_page_table_pages 0
      nr_swapcached 0
  pages free     3486
        boost    0
        min      14
        low      17
        high     20
        spanned  4096
        present  3999
        managed  3486
        cma      0
        protection: (0, 872, 872, 2023)
      nr_free_pages 3486
      nr_zone_inactive_anon 0
      nr_zone_active_anon 0
      nr_zone_inactive_file 0
      nr_zone_active_file 0
      nr_zone_unevictable 0
      nr_zone_write_pending 0
      nr_mlock     0
      nr_bounce    0
      nr_free_cma  0
  pagesets
    cpu: 0
              count: 0
              high:  17
              batch: 1
  vm stats threshold: 0
  node_unreclaimable:  0
  start_pfn:           0
Node 0, zone    DMA32
  pages free     223169
        boost    0
        min      937
        low      1171
        high     1405
        spanned  225280
        present  225280
        managed  223232
        cma      0
        protection: (0, 0, 0, 1151)
      nr_free_pages 223169
      nr_zone_inactive_anon 0
      nr_zone_active_anon 0
      nr_zone_inactive_file 0
      nr_zone_active_file 0
      nr_zone_unevictable 0
      nr_zone_write_pending 0
      nr_mlock     0
      nr_bounce    0
      nr_free_cma  0
  pagesets
    cpu: 0
              count: 63
              high:  1171
              batch: 63
  vm stats threshold: 24
  node_unreclaimable:  0
  start_pfn:           4096
Node 0, zone   Normal
  pages free     0
        boost    0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
        cma      0
        protection: (0, 0, 0, 0)
Node 0, zone  HighMem
  pages free     294880
        boost    0
        min      128
        low      437
        high     746
        spanned  294880
        present  294880
        managed  294880
        cma      0
        protection: (0, 0, 0, 0)
      nr_free_pages 294880
      nr_zone_inactive_anon 0
      nr_zone_active_anon 0
      nr_zone_inactive_file 0
      nr_zone_active_file 0
      nr_zone_unevictable 0
      nr_zone_write_pending 0
      nr_mlock     0
      nr_bounce    0
      nr_free_cma  0
  pagesets
    cpu: 0
              count: 0
              high:  437
              batch: 63
  vm stats threshold: 0
  node_unreclaimable:  0
  start_pfn:           229376
";

#[test]
fn zoneinfo_golden_q35_2g() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    // Pagesets sized from the watermarks, and one order-0 refill's batch
    // of 63 pages waiting on DMA32's list, out of its free count.
    pa.set_pcp_enabled(true);
    let p = pa
        .alloc_pages(GfpFlags::GFP_KERNEL, Order::ZERO, OwnerTag::API)
        .unwrap();
    pa.free_pages(p, Order::ZERO).unwrap();
    let mut extra = ZoneinfoExtra {
        nr_slab_reclaimable: 11,
        nr_slab_unreclaimable: 123,
        nr_kernel_stack_kb: 64,
        nr_page_table_pages: 7,
        ..ZoneinfoExtra::default()
    };
    extra.stat_threshold[ZoneType::Dma32.index()] = 24;
    let text = render(|s| zoneinfo(&pa, &extra, s));
    assert_eq!(text, ZONEINFO_Q35_2G);
}

#[test]
fn zoneinfo_per_node_stats_go_to_first_populated_zone() {
    // HighMem only (lowmem=0): DMA..Normal are empty, so HighMem carries
    // the per-node block, and the empty zones stop after "protection".
    let layout = ZoneLayout {
        lowmem_pfn: Pfn(0),
        max_pfn: Pfn(1024),
    };
    let mut pa = PageAlloc::new(mem_map(1024), layout).unwrap();
    pa.mark_ram(Pfn(0), Pfn(1024)).unwrap();
    pa.free_bootmem(Pfn(0), Pfn(1024)).unwrap();
    pa.setup_watermarks();
    // Exact buddy predictions: the per-CPU lists are off here (the
    // property tests and page_alloc::pcp's tests run them on).
    pa.set_pcp_enabled(false);
    let text = render(|s| zoneinfo(&pa, &ZoneinfoExtra::DEFAULT, s));
    assert!(text.starts_with("Node 0, zone      DMA\n  pages free     0\n        boost    0\n"));
    assert_eq!(text.matches("per-node stats").count(), 1);
    assert!(text.contains("Node 0, zone  HighMem\n  per-node stats\n      nr_inactive_anon 0\n"));
    assert_eq!(text.matches("\n  pagesets").count(), 1);
    assert!(text.ends_with("  start_pfn:           0\n"));
    assert_eq!(
        render(|s| buddyinfo(&pa, s)),
        "Node 0, zone  HighMem      0      0      0      0      0      0      0      0      0      0      1 \n"
    );
}

// ----------------------------------------------------------------------
// meminfo
// ----------------------------------------------------------------------

const MEMINFO_Q35_2G: &str = "\
MemTotal:        2086392 kB
MemFree:         2086392 kB
MemAvailable:    2065212 kB
Buffers:               0 kB
Cached:                0 kB
SwapCached:            0 kB
Active:                0 kB
Inactive:              0 kB
Active(anon):          0 kB
Inactive(anon):        0 kB
Active(file):          0 kB
Inactive(file):        0 kB
Unevictable:           0 kB
Mlocked:               0 kB
HighTotal:       1179520 kB
HighFree:        1179520 kB
LowTotal:         906872 kB
LowFree:          906872 kB
SwapTotal:             0 kB
SwapFree:              0 kB
Dirty:                 0 kB
Writeback:             0 kB
AnonPages:             0 kB
Mapped:                0 kB
Shmem:                 0 kB
KReclaimable:        400 kB
Slab:               1200 kB
SReclaimable:        400 kB
SUnreclaim:          800 kB
KernelStack:          64 kB
PageTables:           28 kB
SecPageTables:         0 kB
NFS_Unstable:          0 kB
Bounce:                0 kB
WritebackTmp:          0 kB
CommitLimit:     1043196 kB
Committed_AS:          0 kB
VmallocTotal:    1048576 kB
VmallocUsed:        4096 kB
VmallocChunk:          0 kB
Percpu:                0 kB
HardwareCorrupted:     0 kB
AnonHugePages:         0 kB
ShmemHugePages:        0 kB
ShmemPmdMapped:        0 kB
FileHugePages:         0 kB
FilePmdMapped:         0 kB
CmaTotal:              0 kB
CmaFree:               0 kB
HugePages_Total:       0
HugePages_Free:        0
HugePages_Rsvd:        0
HugePages_Surp:        0
Hugepagesize:       2048 kB
Hugetlb:               0 kB
DirectMap4k:        4096 kB
DirectMap2M:      913408 kB
";

#[test]
fn meminfo_golden_q35_2g() {
    let (pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    // managed: DMA 3486 + DMA32 223232 + HighMem 294880 = 521598 pages.
    // MemAvailable = free 521598 - totalreserve 5345 = 516253 pages, plus
    // reclaimable slab 100 pages - min(100/2, wmark_low 1625) = 516303.
    // CommitLimit = 521598 * 50 / 100 = 260799 pages.
    let mut mi = Meminfo::from_page_alloc(&pa);
    assert_eq!(mi.mem_available_kb, 516_253 * 4);
    mi.set_slab_kb(400, 800);
    mi.kernel_stack_kb = 64;
    mi.page_tables_kb = 28;
    mi.vmalloc_total_kb = 1 << 20;
    mi.vmalloc_used_kb = 4096;
    mi.direct_map_4k_kb = 4096;
    mi.direct_map_2m_kb = 892 * 1024;
    let text = render(|s| meminfo(&mi, s));
    assert_eq!(text, MEMINFO_Q35_2G);
}

#[test]
fn meminfo_fields_match_text_and_direct_map_1g_is_optional() {
    let (pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    let mut mi = Meminfo::from_page_alloc(&pa);
    let keys: Vec<_> = mi.fields().map(|(k, _, _)| k).collect();
    assert_eq!(keys.len(), 57);
    assert!(!keys.contains(&"DirectMap1G"));
    mi.direct_map_1g_kb = Some(1 << 20);
    let text = render(|s| meminfo(&mi, s));
    assert!(text.ends_with("DirectMap1G:     1048576 kB\n"));
    // Every line's key and value are what fields() reports, in order.
    let fields: Vec<_> = mi.fields().collect();
    assert_eq!(fields.len(), text.lines().count());
    for ((key, value, is_kb), line) in fields.iter().zip(text.lines()) {
        let (label, rest) = line.split_once(':').unwrap();
        assert_eq!(label, *key);
        let mut parts = rest.split_whitespace();
        assert_eq!(parts.next().unwrap().parse::<u64>().unwrap(), *value);
        assert_eq!(parts.next() == Some("kB"), *is_kb, "{line}");
    }
    let counts: Vec<_> = mi.fields().filter(|f| !f.2).map(|f| f.0).collect();
    assert_eq!(
        counts,
        [
            "HugePages_Total",
            "HugePages_Free",
            "HugePages_Rsvd",
            "HugePages_Surp"
        ]
    );
}

#[test]
fn meminfo_tracks_allocations_and_wide_values() {
    let (mut pa, _mb) = boot(q35_2g_memblock(), 896 * MIB);
    let h = pa
        .alloc_pages(GfpFlags::GFP_HIGHUSER, Order::MAX, OwnerTag::API)
        .unwrap();
    let mi = Meminfo::from_page_alloc(&pa);
    assert_eq!(mi.mem_free_kb, (521_598 - 1024) * 4);
    assert_eq!(mi.high_free_kb, (294_880 - 1024) * 4);
    assert_eq!(mi.low_free_kb, 906_872);
    pa.free_pages(h, Order::MAX).unwrap();
    // A value wider than the column pushes the line right, as %8lu does.
    let wide = Meminfo {
        vmalloc_total_kb: 34_359_738_367,
        ..Meminfo::default()
    };
    let text = render(|s| meminfo(&wide, s));
    assert!(text.contains("\nVmallocTotal:   34359738367 kB\n"));
    // MemAvailable never goes negative.
    let mut empty = Meminfo::default();
    empty.set_slab_kb(0, 0);
    assert_eq!(empty.mem_available_kb, 0);
}

// ----------------------------------------------------------------------
// iomem
// ----------------------------------------------------------------------

fn kernel_sections() -> KernelSections {
    let r = |s: u64, e: u64| Some((PhysAddr(s), PhysAddr(e)));
    KernelSections {
        code: r(0x10_0000, 0x18_0000),
        rodata: r(0x18_0000, 0x1c_0000),
        data: r(0x1c_0000, 0x1e_0000),
        bss: r(0x1e_0000, 0x20_0000),
    }
}

fn iomem_text(mb: &Memblock, fw: &[(PhysAddr, PhysAddr, E820Type)], k: KernelSections) -> String {
    let mut out = [IomemEntry::EMPTY; 32];
    let n = build_iomem_entries(mb, fw, k, &mut out);
    render(|s| iomem(&out[..n], s))
}

#[test]
fn iomem_golden_q35_2g() {
    let (_pa, mb) = boot(q35_2g_memblock(), 896 * MIB);
    // Page 0 is reserved as Linux's trim_bios_range() does; memblock
    // reservations (mem_map, the kernel) stay System RAM; the kernel's
    // sections nest under the RAM that holds them.
    let expected = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
00100000-7ffdffff : System RAM
  00100000-0017ffff : Kernel code
  00180000-001bffff : Kernel rodata
  001c0000-001dffff : Kernel data
  001e0000-001fffff : Kernel bss
7ffe0000-7fffffff : Reserved
b0000000-bfffffff : Reserved
fed1c000-fed1ffff : Reserved
feffc000-feffffff : Reserved
fffc0000-ffffffff : Reserved
";
    assert_eq!(iomem_text(&mb, &q35_2g_e820(), kernel_sections()), expected);
}

#[test]
fn iomem_mem_limit_acpi_and_wide_addresses() {
    // 1 GiB below the PCI hole plus 1 GiB above 4 GiB, ACPI tables and NVS
    // at the top of low RAM, a bad stick, and mem=4608M (an address on
    // x86): the upper half of the high GiB is not System RAM but Reserved.
    let r = |s: u64, e: u64, t| (PhysAddr(s), PhysAddr(e), t);
    let fw = [
        r(0x10_0000, 0x3ff0_0000, E820Type::Ram),
        r(0x3ff0_0000, 0x3ffe_0000, E820Type::Acpi),
        r(0x3ffe_0000, 0x4000_0000, E820Type::Nvs),
        r(0x5000_0000, 0x5001_0000, E820Type::Unusable),
        r(0, 0x9fc00, E820Type::Ram),
        r(0x1_0000_0000, 0x1_4000_0000, E820Type::Ram),
        // Overlapping junk: reserved wins over RAM (higher type number).
        r(0x1_3000_0000, 0x1_3000_1000, E820Type::Reserved),
        r(0xfee0_0000, 0xfee0_1000, E820Type::from_raw(0x99)),
    ];
    let mut mb = Memblock::new();
    for &(s, e, t) in &fw {
        if t == E820Type::Ram {
            mb.add(s, e.0 - s.0).unwrap();
        }
    }
    mb.remove(PhysAddr(0x1_3000_0000), 0x1000).unwrap();
    assert_eq!(
        mb.enforce_memory_limit(PhysAddr(0x1_2000_0000)).unwrap(),
        0x2000_0000 - 0x1000
    );
    let expected = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-3fefffff : System RAM
3ff00000-3ffdffff : ACPI Tables
3ffe0000-3fffffff : ACPI Non-volatile Storage
50000000-5000ffff : Unusable memory
fee00000-fee00fff : Unknown E820 type
100000000-11fffffff : System RAM
120000000-13fffffff : Reserved
";
    assert_eq!(iomem_text(&mb, &fw, KernelSections::default()), expected);
}

#[test]
fn iomem_without_firmware_map_and_truncation() {
    // memblock alone: RAM is System RAM (page 0 still Reserved); kernel
    // sections outside any RAM are dropped rather than misnested.
    let (_pa, mb) = boot(q35_2g_memblock(), 896 * MIB);
    let mut k = kernel_sections();
    k.bss = Some((PhysAddr(0x9_0000_0000), PhysAddr(0x9_0000_1000)));
    let text = iomem_text(&mb, &[], k);
    assert_eq!(
        text,
        "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-7ffdffff : System RAM
  00100000-0017ffff : Kernel code
  00180000-001bffff : Kernel rodata
  001c0000-001dffff : Kernel data
"
    );
    let mut small = [IomemEntry::EMPTY; 2];
    assert_eq!(build_iomem_entries(&mb, &[], k, &mut small), 2);
    assert_eq!(small[1].name, "System RAM");
    assert_eq!(build_iomem_entries(&mb, &[], k, &mut []), 0);
}

#[test]
fn iomem_places_pci_bars_where_insert_resource_would() {
    let (_pa, mb) = boot(q35_2g_memblock(), 896 * MIB);
    let r = |s: u64, e: u64, n| (PhysAddr(s), PhysAddr(e), n);
    let devices = [
        // Out of order, as a caller may list them.
        r(0xc000_4000, 0xc000_8000, "0000:00:01.0"),
        r(0xc000_0000, 0xc000_1000, "0000:00:01.0"),
        // Inside the ECAM's reserved range: nested there.
        r(0xb000_0000, 0xb010_0000, "PCI MMCONFIG 0000 [bus 00]"),
        // Inside RAM, after the kernel's sections: nested after them.
        r(0x7000_0000, 0x7000_1000, "ram-device"),
        // Across the end of a reserved range: refused.
        r(0xbfff_f000, 0xc000_0000 + 0x1000, "straddler"),
        // Empty: left out.
        r(0xd000_0000, 0xd000_0000, "empty"),
    ];
    let mut out = [IomemEntry::EMPTY; 32];
    let n = build_iomem_entries_with_devices(
        &mb,
        &q35_2g_e820(),
        kernel_sections(),
        &devices,
        &mut out,
    );
    let expected = "\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
00100000-7ffdffff : System RAM
  00100000-0017ffff : Kernel code
  00180000-001bffff : Kernel rodata
  001c0000-001dffff : Kernel data
  001e0000-001fffff : Kernel bss
  70000000-70000fff : ram-device
7ffe0000-7fffffff : Reserved
b0000000-bfffffff : Reserved
  b0000000-b00fffff : PCI MMCONFIG 0000 [bus 00]
c0000000-c0000fff : 0000:00:01.0
c0004000-c0007fff : 0000:00:01.0
fed1c000-fed1ffff : Reserved
feffc000-feffffff : Reserved
fffc0000-ffffffff : Reserved
";
    assert_eq!(render(|s| iomem(&out[..n], s)), expected);
    // With no devices, exactly the plain view.
    let plain = iomem_text(&mb, &q35_2g_e820(), kernel_sections());
    let mut out2 = [IomemEntry::EMPTY; 32];
    let n2 =
        build_iomem_entries_with_devices(&mb, &q35_2g_e820(), kernel_sections(), &[], &mut out2);
    assert_eq!(render(|s| iomem(&out2[..n2], s)), plain);
    // A full output slice takes no device (nothing is overwritten).
    let mut full = [IomemEntry::EMPTY; 14];
    let nf = build_iomem_entries(&mb, &q35_2g_e820(), kernel_sections(), &mut full);
    assert_eq!(nf, 14);
    let before = full;
    let mut again = [IomemEntry::EMPTY; 14];
    assert_eq!(
        build_iomem_entries_with_devices(
            &mb,
            &q35_2g_e820(),
            kernel_sections(),
            &devices,
            &mut again
        ),
        14
    );
    assert_eq!(again, before);
}

#[test]
fn iomem_depth_indents_two_spaces_per_level() {
    let e = [
        IomemEntry {
            start: PhysAddr(0xa_0000),
            end_inclusive: PhysAddr(0xb_ffff),
            name: "PCI Bus 0000:00",
            depth: 0,
        },
        IomemEntry {
            start: PhysAddr(0xa_0000),
            end_inclusive: PhysAddr(0xa_ffff),
            name: "Video RAM area",
            depth: 2,
        },
    ];
    assert_eq!(
        render(|s| iomem(&e, s)),
        "000a0000-000bffff : PCI Bus 0000:00\n    000a0000-000affff : Video RAM area\n"
    );
}

#[test]
fn e820_types_round_trip() {
    for raw in [1, 2, 3, 4, 5, 7, 12, 0xefff_ffff, 6, 0x99] {
        assert_eq!(E820Type::from_raw(raw).raw(), raw);
    }
    assert_eq!(
        E820Type::from_raw(12).iomem_name(),
        "Persistent Memory (legacy)"
    );
    assert_eq!(E820Type::SoftReserved.iomem_name(), "Soft Reserved");
}
