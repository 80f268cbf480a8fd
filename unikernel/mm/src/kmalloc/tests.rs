//! Host tests for kmalloc: Linux's size → class mapping, `kmalloc_large`,
//! `ksize`/`krealloc`/`kzalloc`, and the `Layout` alignment recipe the
//! kernel's `GlobalAlloc` relies on.

use std::vec::Vec;

use super::*;
use crate::slab::tests::Fixture;
use crate::slab::{CorruptionKind, InvalidFreeKind};

#[test]
fn kmalloc_index_matches_linux() {
    let cases = [
        (0, Some(0)),
        (1, Some(3)),
        (8, Some(3)),
        (9, Some(4)),
        (16, Some(4)),
        (17, Some(5)),
        (64, Some(6)),
        (65, Some(1)),
        (96, Some(1)),
        (97, Some(7)),
        (128, Some(7)),
        (129, Some(2)),
        (192, Some(2)),
        (193, Some(8)),
        (4096, Some(12)),
        (4097, Some(13)),
        (8192, Some(13)),
        (8193, None),
    ];
    for (size, idx) in cases {
        assert_eq!(kmalloc_index(size), idx, "size {size}");
    }
    // The one-table lookup agrees with kmalloc_index for every size.
    let class_of_index = |i: u32| match i {
        1 => 96,
        2 => 192,
        i => 1usize << i,
    };
    for size in 1..=KMALLOC_MAX_CACHE_SIZE {
        assert_eq!(
            kmalloc_size_roundup(size),
            Some(class_of_index(kmalloc_index(size).unwrap())),
            "size {size}"
        );
    }
    assert_eq!(kmalloc_size_roundup(0), None);
    assert_eq!(kmalloc_size_roundup(8193), None);
}

#[test]
fn kmalloc_40_is_a_kmalloc_64_object_and_names_are_linux_names() {
    let mut f = Fixture::new(24);
    let (p, m) = (&f.pages, &f.mem);
    let a = f.slab.kmalloc(m, p, 40, GfpFlags::GFP_KERNEL).unwrap();
    let info = f
        .slab
        .cache_info(&f.mem, f.slab.cache_of(a).unwrap())
        .unwrap();
    assert_eq!(
        (info.name.as_str(), info.active_objs, f.slab.ksize(a)),
        ("kmalloc-64", 1, Some(64))
    );
    let names: Vec<String> = f
        .slab
        .caches(&f.mem)
        .map(|c| c.name.as_str().to_string())
        .collect();
    assert_eq!(names.len(), NR_KMALLOC_SLOTS);
    assert_eq!(names.last().unwrap(), "kmalloc-8");
    for n in [
        "kmalloc-96",
        "kmalloc-192",
        "kmalloc-1k",
        "kmalloc-8k",
        "dma-kmalloc-8",
        "dma-kmalloc-4k",
    ] {
        assert!(names.iter().any(|x| x == n), "{n}");
    }
    f.slab.kfree(m, p, a).unwrap();
}

#[test]
fn kmalloc_large_up_to_4_mib() {
    let mut f = Fixture::new(32);
    let (p, m) = (&f.pages, &f.mem);
    let a = f.slab.kmalloc(m, p, 8193, GfpFlags::GFP_KERNEL).unwrap();
    assert_eq!(f.slab.ksize(a), Some(16384), "order 2");
    assert_eq!((a - PAGE_OFFSET) % 16384, 0);
    assert_eq!(f.slab.large_stats(), (1, 4));
    let page = *f
        .pages
        .lock()
        .page(Pfn((a - PAGE_OFFSET) >> PAGE_SHIFT))
        .unwrap();
    assert!(page.is_head() && !page.is_slab() && page.order == 2);
    // Not at its first byte: invalid, nothing freed.
    let err = f.slab.kfree(m, p, a + 4096).unwrap_err();
    assert_eq!(
        err.kind,
        CorruptionKind::InvalidFree(InvalidFreeKind::NotObjectStart)
    );
    assert_eq!(
        f.slab.kfree(m, p, a + 8).unwrap_err().kind,
        CorruptionKind::InvalidFree(InvalidFreeKind::NotObjectStart)
    );
    assert_eq!(f.slab.large_stats(), (1, 4));
    f.slab.kfree(m, p, a).unwrap();
    assert_eq!(
        f.slab.kfree(m, p, a).unwrap_err().kind,
        CorruptionKind::InvalidFree(InvalidFreeKind::NotSlab)
    );
    let max = f
        .slab
        .kzalloc(m, p, KMALLOC_MAX_SIZE, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_eq!(m.check(max, KMALLOC_MAX_SIZE, 0), None);
    assert_eq!((max - PAGE_OFFSET) % (4 << 20), 0);
    assert_eq!(
        f.slab
            .kmalloc(m, p, KMALLOC_MAX_SIZE + 1, GfpFlags::GFP_KERNEL),
        Err(SlabError::TooLarge {
            size: KMALLOC_MAX_SIZE + 1
        })
    );
    let dma = f
        .slab
        .kmalloc(m, p, 20_000, GfpFlags::GFP_KERNEL | GfpFlags::DMA)
        .unwrap();
    assert!(dma < PAGE_OFFSET + (16 << 20));
    f.slab.kfree(m, p, dma).unwrap();
    f.slab.kfree(m, p, max).unwrap();
    assert_eq!(f.slab.slab_pages(), 0);
    f.slab.check_invariants(m).unwrap();
    f.assert_buddy_restored();
}

#[test]
fn kzalloc_krealloc_ksize() {
    let mut f = Fixture::new(24);
    let (p, m) = (&f.pages, &f.mem);
    let a = f.slab.kmalloc(m, p, 100, GfpFlags::GFP_KERNEL).unwrap();
    m.fill(a, 128, 0xee);
    f.slab.kfree(m, p, a).unwrap();
    let z = f.slab.kzalloc(m, p, 100, GfpFlags::GFP_KERNEL).unwrap();
    assert_eq!(z, a, "LIFO reuse");
    assert_eq!(m.check(z, 128, 0), None, "whole object zeroed");
    m.fill(z, 100, 0x31);
    // In place while it fits the class.
    assert_eq!(f.slab.krealloc(m, p, z, 128, GfpFlags::GFP_KERNEL), Ok(z));
    // Moves, keeping the contents.
    let r = f
        .slab
        .krealloc(m, p, z, 1000, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_ne!(r, z);
    assert_eq!(f.slab.ksize(r), Some(1024));
    assert_eq!(m.check(r, 100, 0x31), None);
    assert_eq!(
        f.slab.ksize(z),
        Some(128),
        "ksize of a freed object still names its class"
    );
    // Into kmalloc_large and back.
    let big = f
        .slab
        .krealloc(m, p, r, 50_000, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_eq!(m.check(big, 100, 0x31), None);
    let small = f
        .slab
        .krealloc(m, p, big, 10, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_eq!(small, big, "shrinking stays in place");
    assert_eq!(
        f.slab.krealloc(m, p, small, 0, GfpFlags::GFP_KERNEL),
        Ok(ZERO_SIZE_PTR)
    );
    assert_eq!(f.slab.large_stats(), (0, 0));
    let n = f
        .slab
        .krealloc(m, p, ZERO_SIZE_PTR, 24, GfpFlags::GFP_KERNEL)
        .unwrap();
    assert_eq!(f.slab.ksize(n), Some(32));
    assert_eq!(f.slab.ksize(n + 8), None);
    assert_eq!(
        f.slab.krealloc(m, p, n + 8, 64, GfpFlags::GFP_KERNEL),
        Err(SlabError::Invalid)
    );
    f.slab.kfree(m, p, n).unwrap();
    f.slab.shrink_all(&f.mem, p);
    f.assert_buddy_restored();
}

#[test]
fn every_layout_alignment_comes_back_aligned() {
    let mut f = Fixture::new(48);
    let (p, m) = (&f.pages, &f.mem);
    let mut held = Vec::new();
    for align_shift in 0..=14u32 {
        let align = 1usize << align_shift;
        for size in [
            1usize, 3, 24, 40, 65, 96, 100, 130, 192, 200, 1000, 3000, 5000, 9000,
        ] {
            let n = kmalloc_size_for_layout(size, align).unwrap();
            let a = f.slab.kmalloc(m, p, n, GfpFlags::GFP_KERNEL).unwrap();
            assert_eq!(
                a % align as u64,
                0,
                "size {size} align {align} via kmalloc({n})"
            );
            assert!(f.slab.ksize(a).unwrap() >= size);
            held.push(a);
        }
    }
    assert_eq!(kmalloc_size_for_layout(8, 3), None);
    assert_eq!(
        kmalloc_size_for_layout(KMALLOC_MAX_SIZE, 8),
        Some(KMALLOC_MAX_SIZE)
    );
    assert_eq!(kmalloc_size_for_layout(KMALLOC_MAX_SIZE + 1, 8), None);
    for a in held {
        f.slab.kfree(m, p, a).unwrap();
    }
    f.slab.check_invariants(m).unwrap();
}

/// `__GFP_ACCOUNT` objects come from the `kmalloc-cg-*` twins, never from
/// a slab the unaccounted (kernel) objects share; DMA wins over it.
#[test]
fn accounted_kmalloc_uses_the_cg_twin() {
    let mut f = Fixture::new(16);
    let (p, m) = (&f.pages, &f.mem);
    let kernel = f.slab.kmalloc(m, p, 64, GfpFlags::GFP_KERNEL).unwrap();
    let user = f
        .slab
        .kmalloc(m, p, 64, GfpFlags::GFP_KERNEL | GfpFlags::ACCOUNT)
        .unwrap();
    assert_eq!(f.slab.cache_of(kernel), f.slab.find_cache("kmalloc-64"));
    assert_eq!(f.slab.cache_of(user), f.slab.find_cache("kmalloc-cg-64"));
    assert_ne!(kernel >> 12, user >> 12, "different slabs");
    let dma = f
        .slab
        .kmalloc(
            m,
            p,
            64,
            GfpFlags::GFP_KERNEL | GfpFlags::DMA | GfpFlags::ACCOUNT,
        )
        .unwrap();
    assert_eq!(f.slab.cache_of(dma), f.slab.find_cache("dma-kmalloc-64"));
    for a in [kernel, user, dma] {
        f.slab.kfree(m, p, a).unwrap();
    }
}
