//! Host tests of coherent DMA and the bounce pool on the simulated arena
//! (64 MiB: DMA [0,16M), DMA32 [16M,32M), HighMem [32M,64M)).

use super::*;
use crate::memblock::Memblock;
use crate::page::Page;
use crate::page_alloc::PageAlloc;
use crate::platform::sim::SimPlatform;
use crate::zone::ZoneLayout;

const RAM: u64 = 64 << 20;

fn manager(mem_map: &mut [Page]) -> MemoryManager<'_, SimPlatform> {
    let mut mb = Memblock::new();
    mb.add(PhysAddr(0), RAM).unwrap();
    mb.reserve(PhysAddr(0), 0x1000, "bios").unwrap();
    let mut pa = PageAlloc::new(mem_map, ZoneLayout::from_bytes(32 << 20, RAM)).unwrap();
    pa.memblock_free_all(&mb).unwrap();
    pa.setup_watermarks();
    MemoryManager::new(pa, SimPlatform::new(RAM >> 12))
}

fn mem_map() -> Vec<Page> {
    vec![Page::new_reserved(); (RAM >> 12) as usize]
}

/// Bytes at `[addr, addr+len)` of the arena.
fn read(mm: &MemoryManager<'_, SimPlatform>, addr: PhysAddr, len: u64) -> Vec<u8> {
    (addr.0..addr.0 + len)
        .map(|a| mm.platform().frame(Pfn::from_phys(PhysAddr(a)))[(a % PAGE_SIZE) as usize])
        .collect()
}

fn write(mm: &MemoryManager<'_, SimPlatform>, addr: PhysAddr, data: &[u8]) {
    for (i, &b) in data.iter().enumerate() {
        let a = addr.0 + i as u64;
        mm.platform()
            .with_frame(Pfn::from_phys(PhysAddr(a)), &mut |bytes| {
                bytes[(a % PAGE_SIZE) as usize] = b;
            });
    }
}

#[test]
fn coherent_alloc_is_zeroed_dma32_and_free_restores_buddyinfo() {
    let mut mem_map = mem_map();
    let mm = manager(&mut mem_map);
    let mut dma = Dma::new();
    let before = mm.drained_buddyinfo();

    let buf = dma.dma_alloc_coherent(&mm, 5000, "virtio-net rx").unwrap();
    assert_eq!(buf.size(), 5000);
    assert_eq!(buf.info().order, Order::new(1).unwrap());
    assert_eq!(buf.info().zone, ZoneType::Dma32);
    assert!(buf.dma_addr().is_aligned(2 * PAGE_SIZE));
    assert!(
        buf.dma_addr().0 + 8192 <= 32 << 20,
        "below lowmem and 4 GiB"
    );
    assert_eq!(
        buf.cpu_addr().0,
        crate::types::PAGE_OFFSET + buf.dma_addr().0
    );
    assert!(
        read(&mm, buf.dma_addr(), 8192).iter().all(|&b| b == 0),
        "zeroed (arena starts 0xCC)"
    );
    {
        let pages = mm.lock();
        let head = pages.page(Pfn::from_phys(buf.dma_addr())).unwrap();
        assert!(head.is_head());
        assert_eq!(head.owner, OwnerTag::DMA);
    }
    assert_ne!(mm.drained_buddyinfo(), before);

    dma.dma_free_coherent(&mm, buf).unwrap();
    assert_eq!(mm.drained_buddyinfo(), before);
    assert_eq!(dma.snapshot().coherent().count(), 0);
    mm.lock().check_invariants().unwrap();
}

#[test]
fn registry_lists_live_buffers_and_refuses_bad_frees() {
    let mut mem_map = mem_map();
    let mm = manager(&mut mem_map);
    let mut dma = Dma::new();
    let before = mm.drained_buddyinfo();

    let rx = dma
        .dma_alloc_coherent(&mm, 64 << 10, "virtio-net rx")
        .unwrap();
    let tx = dma.dma_alloc_coherent(&mm, 4096, "virtio-net tx").unwrap();
    let snap = dma.snapshot();
    let listed: Vec<_> = snap
        .coherent()
        .map(|e| (e.owner, e.dma_addr, e.size, e.zone))
        .collect();
    assert_eq!(
        listed,
        vec![
            ("virtio-net rx", rx.dma_addr(), 64 << 10, ZoneType::Dma32),
            ("virtio-net tx", tx.dma_addr(), 4096, ZoneType::Dma32),
        ]
    );
    assert_eq!(
        dma.coherent_at(tx.dma_addr()).map(|e| e.owner),
        Some("virtio-net tx")
    );

    // Unknown address, wrong size: refused, nothing freed.
    let bogus = PhysAddr(tx.dma_addr().0 + 4096);
    assert_eq!(
        dma.free_coherent_at(&mm, bogus, 4096),
        Err(DmaError::NotFound { dma_addr: bogus })
    );
    assert_eq!(
        dma.free_coherent_at(&mm, rx.dma_addr(), 4096),
        Err(DmaError::SizeMismatch {
            dma_addr: rx.dma_addr(),
            allocated: 64 << 10,
            requested: 4096
        })
    );
    assert_eq!(dma.snapshot().coherent().count(), 2);

    // Freed by address (the Hal's path), then a second free is refused.
    let rx_addr = rx.dma_addr();
    dma.free_coherent_at(&mm, rx_addr, 64 << 10).unwrap();
    assert_eq!(
        dma.free_coherent_at(&mm, rx_addr, 64 << 10),
        Err(DmaError::NotFound { dma_addr: rx_addr })
    );
    dma.dma_free_coherent(&mm, tx).unwrap();
    assert_eq!(mm.drained_buddyinfo(), before);
}

#[test]
fn bad_sizes_and_full_registry_fail_cleanly() {
    let mut mem_map = mem_map();
    let mm = manager(&mut mem_map);
    let mut dma = Dma::new();
    let before = mm.drained_buddyinfo();
    assert_eq!(
        dma.dma_alloc_coherent(&mm, 0, "x").unwrap_err(),
        DmaError::InvalidSize { size: 0 }
    );
    let too_big = (4 << 20) + 1;
    assert_eq!(
        dma.dma_alloc_coherent(&mm, too_big, "x").unwrap_err(),
        DmaError::InvalidSize { size: too_big }
    );

    let mut bufs = Vec::new();
    for _ in 0..MAX_COHERENT {
        bufs.push(dma.dma_alloc_coherent(&mm, 100, "many").unwrap());
    }
    let after_fill = mm.drained_buddyinfo();
    assert_eq!(
        dma.dma_alloc_coherent(&mm, 100, "one more").unwrap_err(),
        DmaError::RegistryFull
    );
    assert_eq!(
        mm.drained_buddyinfo(),
        after_fill,
        "a refused alloc takes no frames"
    );
    for b in bufs {
        dma.dma_free_coherent(&mm, b).unwrap();
    }
    assert_eq!(mm.drained_buddyinfo(), before);
}

#[test]
fn zone_exhaustion_is_no_memory() {
    let mut mem_map = mem_map();
    let mm = manager(&mut mem_map);
    let mut dma = Dma::new();
    let before = mm.drained_buddyinfo();
    // 16 MiB of DMA32 plus ~16 MiB of DMA cannot give more than ~7 blocks of 4 MiB.
    let mut bufs = Vec::new();
    let err = loop {
        match dma.dma_alloc_coherent(&mm, 4 << 20, "big") {
            Ok(b) => bufs.push(b),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, DmaError::NoMemory { size, .. } if size == 4 << 20),
        "{err:?}"
    );
    assert!(
        bufs.iter().all(|b| b.dma_addr().0 < 32 << 20),
        "never HighMem"
    );
    for b in bufs {
        dma.dma_free_coherent(&mm, b).unwrap();
    }
    assert_eq!(mm.drained_buddyinfo(), before);
}

#[test]
fn bounce_copies_in_and_out_and_counts() {
    let mut mem_map = mem_map();
    let mm = manager(&mut mem_map);
    let mut dma = Dma::new();
    assert_eq!(
        dma.map_single(
            &mm,
            &[PhysSegment {
                addr: PhysAddr(0x10_0000),
                len: 1
            }],
            DmaDirection::ToDevice
        ),
        Err(DmaError::NoBouncePool)
    );
    dma.swiotlb_init(&mm, 16).unwrap();
    assert_eq!(dma.swiotlb_init(&mm, 16), Err(DmaError::BadBouncePool));
    let pool = dma.bounce_stats();
    assert_eq!((pool.slots, pool.used, pool.bytes_bounced), (16, 0, 0));
    let pool_addr = pool.dma_addr.unwrap();
    assert_eq!(
        dma.snapshot().coherent().next().map(|e| (e.owner, e.size)),
        Some(("swiotlb", 16 * 2048))
    );
    assert_eq!(
        dma.free_coherent_at(&mm, pool_addr, 16 * 2048),
        Err(DmaError::NotFound {
            dma_addr: pool_addr
        })
    );

    // A buffer in two pieces, both crossing frame boundaries; one in HighMem.
    let a = PhysAddr(0x20_0ff0); // 0x30 bytes: 16 in one frame, 32 in the next
    let b = PhysAddr((40 << 20) + 0xf00); // HighMem, 0x300 bytes across a frame boundary
    let data_a: Vec<u8> = (0..0x30u32).map(|i| i as u8).collect();
    let data_b: Vec<u8> = (0..0x300u32).map(|i| (i * 7 + 3) as u8).collect();
    write(&mm, a, &data_a);
    write(&mm, b, &data_b);
    let segs = [
        PhysSegment { addr: a, len: 0x30 },
        PhysSegment {
            addr: b,
            len: 0x300,
        },
    ];

    let dma_addr = dma.map_single(&mm, &segs, DmaDirection::ToDevice).unwrap();
    assert_eq!(dma_addr, pool_addr);
    assert!(dma.is_bounced(dma_addr));
    let mut expect = data_a.clone();
    expect.extend_from_slice(&data_b);
    assert_eq!(
        read(&mm, dma_addr, 0x330),
        expect,
        "bytes copied into the slots in order"
    );
    let s = dma.bounce_stats();
    assert_eq!(
        (s.used, s.bytes_bounced, s.mappings, s.total_maps),
        (1, 0x330, 1, 1)
    );

    // A second mapping of 3 slots goes right after the first.
    let big = PhysAddr(0x30_0000);
    let dma2 = dma
        .map_single(
            &mm,
            &[PhysSegment {
                addr: big,
                len: 5000,
            }],
            DmaDirection::FromDevice,
        )
        .unwrap();
    assert_eq!(dma2, PhysAddr(pool_addr.0 + 2048));
    assert_eq!(dma.bounce_stats().used, 4);

    // The "device" writes into the second mapping; unmap copies it back.
    let dev: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    write(&mm, dma2, &dev);
    assert_eq!(
        dma.unmap_single(&mm, dma2, DmaDirection::FromDevice),
        Ok(5000)
    );
    assert_eq!(read(&mm, big, 5000), dev);

    // ToDevice unmap copies nothing back even if the slots changed.
    write(&mm, dma_addr, &[0xEE; 0x330]);
    assert_eq!(
        dma.unmap_single(&mm, dma_addr, DmaDirection::ToDevice),
        Ok(0)
    );
    assert_eq!(read(&mm, a, 0x30), data_a);
    assert_eq!(
        dma.unmap_single(&mm, dma_addr, DmaDirection::ToDevice),
        Err(DmaError::NotFound { dma_addr })
    );
    assert!(!dma.is_bounced(dma_addr));

    let s = dma.bounce_stats();
    assert_eq!((s.used, s.mappings, s.total_maps), (0, 0, 2));
    assert_eq!(s.bytes_bounced, 0x330 + 5000 + 5000);
}

#[test]
fn bidirectional_keeps_bytes_the_device_did_not_write() {
    let mut mem_map = mem_map();
    let mm = manager(&mut mem_map);
    let mut dma = Dma::new();
    dma.swiotlb_init(&mm, 4).unwrap();
    let buf = PhysAddr(0x40_0000);
    write(&mm, buf, &[1, 2, 3, 4, 5, 6, 7, 8]);
    let at = dma
        .map_single(
            &mm,
            &[PhysSegment { addr: buf, len: 8 }],
            DmaDirection::Bidirectional,
        )
        .unwrap();
    write(&mm, PhysAddr(at.0 + 2), &[0xAA, 0xBB]);
    assert_eq!(
        dma.unmap_single(&mm, at, DmaDirection::Bidirectional),
        Ok(8)
    );
    assert_eq!(read(&mm, buf, 8), vec![1, 2, 0xAA, 0xBB, 5, 6, 7, 8]);
}

#[test]
fn bounce_pool_exhaustion_is_a_clean_error() {
    let mut mem_map = mem_map();
    let mm = manager(&mut mem_map);
    let mut dma = Dma::new();
    dma.swiotlb_init(&mm, 8).unwrap();
    let seg = |addr: u64, len: u64| {
        [PhysSegment {
            addr: PhysAddr(addr),
            len,
        }]
    };

    let first = dma
        .map_single(&mm, &seg(0x50_0000, 3 * 2048), DmaDirection::ToDevice)
        .unwrap();
    let second = dma
        .map_single(&mm, &seg(0x51_0000, 3 * 2048), DmaDirection::ToDevice)
        .unwrap();
    // 2 slots left: 3 do not fit.
    let before = dma.bounce_stats();
    assert_eq!(
        dma.map_single(&mm, &seg(0x52_0000, 3 * 2048), DmaDirection::ToDevice),
        Err(DmaError::BounceFull {
            size: 3 * 2048,
            free_slots: 2
        })
    );
    let after = dma.bounce_stats();
    assert_eq!(
        (after.used, after.bytes_bounced, after.failures),
        (before.used, before.bytes_bounced, 1)
    );

    // Free the first run: 3 + 2 free but not contiguous with each other → 4 fits
    // only once the first run is back (slots 0..3 then 6..8).
    dma.unmap_single(&mm, first, DmaDirection::ToDevice)
        .unwrap();
    assert!(matches!(
        dma.map_single(&mm, &seg(0x52_0000, 4 * 2048), DmaDirection::ToDevice),
        Err(DmaError::BounceFull { free_slots: 5, .. })
    ));
    let third = dma
        .map_single(&mm, &seg(0x52_0000, 3 * 2048), DmaDirection::ToDevice)
        .unwrap();
    assert_eq!(third, first, "first fit reuses the lowest run");
    dma.unmap_single(&mm, second, DmaDirection::ToDevice)
        .unwrap();
    dma.unmap_single(&mm, third, DmaDirection::ToDevice)
        .unwrap();
    assert_eq!(dma.bounce_stats().used, 0);
}

#[test]
fn bad_segments_are_refused() {
    let mut mem_map = mem_map();
    let mm = manager(&mut mem_map);
    let mut dma = Dma::new();
    dma.swiotlb_init(&mm, 8).unwrap();
    assert_eq!(
        dma.map_single(&mm, &[], DmaDirection::ToDevice),
        Err(DmaError::BadSegments)
    );
    assert_eq!(
        dma.map_single(
            &mm,
            &[PhysSegment {
                addr: PhysAddr(0x1000),
                len: 0
            }],
            DmaDirection::ToDevice
        ),
        Err(DmaError::BadSegments)
    );
    let too_many = [PhysSegment {
        addr: PhysAddr(0x10_0000),
        len: 1,
    }; MAX_SEGMENTS + 1];
    assert_eq!(
        dma.map_single(&mm, &too_many, DmaDirection::ToDevice),
        Err(DmaError::BadSegments)
    );
    // Past the end of RAM.
    assert_eq!(
        dma.map_single(
            &mm,
            &[PhysSegment {
                addr: PhysAddr(RAM - 16),
                len: 32
            }],
            DmaDirection::ToDevice
        ),
        Err(DmaError::NotRam {
            pfn: Pfn(RAM >> 12)
        })
    );
    assert_eq!(dma.bounce_stats().used, 0);
}
