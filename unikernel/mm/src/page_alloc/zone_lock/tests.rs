//! The buddy core's two ways in leave the same state: the exclusive
//! side's [`ZoneFree<true>`] (the one-load buddy test against a pattern,
//! the 32-bit flags-and-order stores, the 64-bit list clears) and the
//! zone-lock side's [`ZoneFree<false>`] (every access at its own width),
//! over the unrolled merge and split entered at every order, zone edges
//! that are not `MAX_ORDER`-aligned, and the per-type masks of non-empty
//! orders the search reads.

extern crate std;

use crate::test_rng::Rng;
use std::vec::Vec;

use super::ZoneFree;
use crate::page::LIST_END;
use crate::page_alloc::PageAlloc;
use crate::page_alloc::tests::sim;
use crate::types::NR_ORDERS;
use crate::zone::{MigrateType, NR_ZONES};

fn free_counts(pa: &PageAlloc<'_>) -> Vec<[u64; NR_ORDERS]> {
    (0..NR_ZONES)
        .map(|zi| core::array::from_fn(|o| pa.zones[zi].free_area[o].nr_free))
        .collect()
}

/// Random splits and merges straight on the buddy core, the exclusive
/// side's on one machine and the zone-locked side's on its twin: after
/// every operation the same block comes back, the zones (lists, counts,
/// masks) are equal, and every 64 operations so are the whole `mem_map`s.
/// Freeing everything gives back the boot free lists on both.
#[test]
fn exclusive_and_zone_locked_cores_leave_identical_state() {
    twin(false);
}

/// As [`exclusive_and_zone_locked_cores_leave_identical_state`], the
/// exclusive side freeing through its unrolled merge
/// (`free_one_page_inline`: the levels' common case, a buddy alone on its
/// list, then the loop from the first buddy that is not — the first
/// level's buddy alone is not so about a hundred times).
#[test]
fn the_unrolled_merge_and_the_zone_locked_loop_leave_identical_state() {
    twin(true);
}

fn twin(unrolled: bool) {
    let mut a = sim(false);
    let mut b = sim(false);
    let fresh = free_counts(&a);
    let zones: Vec<usize> = (0..NR_ZONES)
        .filter(|&zi| a.zones[zi].managed_pages > 0)
        .collect();
    assert!(
        zones.len() >= 2,
        "a machine with zone edges inside MAX_ORDER blocks"
    );
    let types = [
        MigrateType::Unmovable,
        MigrateType::Movable,
        MigrateType::Reclaimable,
    ];
    let mut rng = Rng(0x5eed_b0dd);
    let mut live: Vec<(usize, u32, usize, MigrateType)> = Vec::new();
    let (mut splits, mut merges_to_max, mut not_alone) = (0u64, 0u64, 0u64);
    for step in 0..12_000u32 {
        let r = rng.next();
        if live.is_empty() || r % 5 < 3 {
            let zi = zones[(r >> 8) as usize % zones.len()];
            let order = (r >> 16) as usize % NR_ORDERS;
            let mt = types[(r >> 24) as usize % types.len()];
            // SAFETY: `&mut` each machine: the exclusive side; the
            // zone-locked core needs its zone's lock, which nobody else
            // can take meanwhile.
            let (ga, gb) = unsafe {
                (
                    a.zone_free(zi).rmqueue_smallest(order, mt),
                    ZoneFree::<false>::new(&mut b, zi).rmqueue_smallest(order, mt),
                )
            };
            assert_eq!(ga, gb, "step {step}: rmqueue_smallest({order}, {mt:?})");
            if let Some(pfn) = ga {
                splits += 1;
                live.push((zi, pfn, order, mt));
            }
        } else {
            let (zi, pfn, order, mt) = live.swap_remove((r >> 8) as usize % live.len());
            let to_tail = r & (1 << 40) != 0;
            // A first buddy that is free but not alone on `mt`'s list: the
            // unrolled merge's rare case.
            let buddy = (pfn ^ (1 << order)) as usize;
            if order < NR_ORDERS - 1 && buddy < a.mem_map.len() {
                let bp = &a.mem_map[buddy];
                let end = LIST_END + mt as u32;
                if bp.is_buddy()
                    && usize::from(bp.order) == order
                    && (bp.prev, bp.next) != (end, end)
                {
                    not_alone += 1;
                }
            }
            // SAFETY: as above; the block is one the core handed out.
            unsafe {
                if unrolled {
                    a.zone_free(zi)
                        .free_one_page_inline(u64::from(pfn), order, mt, to_tail);
                } else {
                    a.zone_free(zi)
                        .free_one_page(u64::from(pfn), order, mt, to_tail);
                }
                ZoneFree::<false>::new(&mut b, zi).free_one_page(
                    u64::from(pfn),
                    order,
                    mt,
                    to_tail,
                );
            }
            if a.zones[zi].free_area[NR_ORDERS - 1].nr_free > 0 {
                merges_to_max += 1;
            }
        }
        assert!(a.zones == b.zones, "step {step}: zones differ");
        if step % 64 == 0 {
            assert!(
                a.mem_map[..] == b.mem_map[..],
                "step {step}: mem_map differs"
            );
        }
    }
    assert!(
        splits > 2_000 && merges_to_max > 1_000 && not_alone > 50,
        "{splits} {merges_to_max} {not_alone}"
    );
    for (zi, pfn, order, mt) in live.drain(..) {
        // SAFETY: as above.
        unsafe {
            a.zone_free(zi)
                .free_one_page(u64::from(pfn), order, mt, false);
            ZoneFree::<false>::new(&mut b, zi).free_one_page(u64::from(pfn), order, mt, false);
        }
    }
    assert!(a.mem_map[..] == b.mem_map[..]);
    assert!(a.zones == b.zones);
    a.check_invariants().unwrap();
    b.check_invariants().unwrap();
    assert_eq!(free_counts(&a), fresh);
}

/// The mask is what the search reads: a bit that disagrees with its list
/// is reported by `check_invariants` (and so by every property test that
/// checks invariants after its operations).
#[test]
fn a_mask_bit_that_disagrees_with_its_list_is_reported() {
    let mut pa = sim(false);
    pa.check_invariants().unwrap();
    let zi = (0..NR_ZONES)
        .find(|&zi| pa.zones[zi].managed_pages > 0)
        .unwrap();
    let mt = MigrateType::Movable.index();
    let empty = (0..NR_ORDERS)
        .find(|&o| pa.zones[zi].free_area[o].free_list[mt].head == crate::page::NIL)
        .unwrap();
    pa.zones[zi].free_area_mask[mt] |= 1 << empty;
    assert_eq!(
        pa.check_invariants(),
        Err("free_area_mask bit disagrees with its free list")
    );
    pa.zones[zi].free_area_mask[mt] &= !(1 << empty);
    pa.check_invariants().unwrap();
    let full = (0..NR_ORDERS)
        .find(|&o| pa.zones[zi].free_area[o].free_list[mt].head != crate::page::NIL)
        .unwrap();
    pa.zones[zi].free_area_mask[mt] &= !(1 << full);
    assert!(pa.check_invariants().is_err());
}

/// The steps a chain entered at `sel` runs, in order; `None` for the
/// diverging arm.
fn run(sel: usize) -> Option<Vec<u32>> {
    let mut ran = Vec::new();
    enter_chain!(sel, return None;
        'a 3 => { ran.push(3); },
        'b 7 => { ran.push(7); },
        'c 1 => { ran.push(1); },
    );
    Some(ran)
}

#[test]
fn a_chain_runs_from_the_step_named_to_the_last_written() {
    assert_eq!(run(3), Some(std::vec![3, 7, 1]));
    assert_eq!(run(7), Some(std::vec![7, 1]));
    assert_eq!(run(1), Some(std::vec![1]));
    assert_eq!(run(0), None);
    assert_eq!(run(2), None);
}

/// A pageblock's migrate type is read by a select, not a table: the
/// field's values 0–5 are the types of those indices, 6 and 7 read as
/// Movable, and the other bits of the first frame's flags do not matter.
#[test]
fn pageblock_bits_read_as_their_type_and_6_7_as_movable() {
    use crate::page::{Page, PageFlags};
    let mut map = std::vec![Page::new_reserved(); 2 * crate::zone::PAGEBLOCK_NR_PAGES as usize];
    let mask = PageFlags::PB_MIGRATE.0;
    let shift = mask.trailing_zeros();
    for bits in 0u16..8 {
        for other in [0u16, !mask] {
            map[0].flags = PageFlags(bits << shift | other);
            let want = MigrateType::from_index(usize::from(bits)).unwrap_or(MigrateType::Movable);
            for pfn in [0, 1, crate::zone::PAGEBLOCK_NR_PAGES - 1] {
                // SAFETY: `pfn` < the map's length.
                let got = unsafe { super::pageblock_mt_raw(map.as_mut_ptr(), pfn) };
                assert_eq!(got, want, "bits {bits} other {other:#x} pfn {pfn}");
            }
        }
    }
}
