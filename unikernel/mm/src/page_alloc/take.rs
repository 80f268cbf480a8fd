//! Taking one given block out of the buddy allocator (cf.
//! `take_page_off_buddy()` in mm/page_alloc.c, which memory-failure
//! handling uses to pull a known page off the free lists).
//!
//! `POST /api/reset` uses it to give the kernel heap back exactly the slab
//! pages it held at boot: the buddy allocator's free blocks are a function
//! of which frames are allocated (it always coalesces fully), so taking
//! back the same frames restores `/proc/buddyinfo` exactly — whereas
//! allocating "any" frames would split other blocks.

use super::PageAlloc;
use crate::gfp::GfpFlags;
use crate::page::OwnerTag;
use crate::page_alloc::AllocError;
use crate::types::{NR_ORDERS, Order, Pfn};

impl PageAlloc<'_> {
    /// Take the free block of `2^order` frames at `pfn` (aligned to its
    /// order) out of whatever free block contains it, splitting that block
    /// and putting the other parts back on their free lists; mark it
    /// allocated to `owner` as [`PageAlloc::alloc_pages`] would. No
    /// watermark applies: the caller wants these frames, not memory.
    /// Refused with nothing changed unless every frame of the block is
    /// free (`AllocError::NoMemory`).
    ///
    /// Like Linux's, it counts no `pgalloc_*` event: it takes frames back,
    /// it does not serve an allocation. Freeing the block later counts
    /// `pgfree` as any free does.
    pub fn take_page_off_buddy(
        &mut self,
        pfn: Pfn,
        order: Order,
        owner: OwnerTag,
    ) -> Result<(), AllocError> {
        let refused = AllocError::NoMemory {
            order,
            gfp: GfpFlags::empty(),
        };
        if pfn.0 & (order.nr_pages() - 1) != 0 || pfn.0 + order.nr_pages() > self.max_pfn().0 {
            return Err(refused);
        }
        // The free block holding `pfn`: its head is `pfn` rounded down to
        // the block's order, marked BUDDY with exactly that order.
        let find = |pa: &Self| {
            (order.index()..NR_ORDERS).find_map(|o| {
                let head = pfn.0 & !((1u64 << o) - 1);
                let p = pa.page(Pfn(head))?; // not one deferred init has yet to write
                (p.is_buddy() && p.order as usize == o).then_some((head, o, p.zone as usize))
            })
        };
        // A frame on a per-CPU list is free but not on the buddy lists:
        // drain them and look again.
        let found =
            find(self).or_else(|| (self.drain_all_pages() > 0).then(|| find(self)).flatten());
        let Some((head, mut o, zi)) = found else {
            return Err(refused);
        };
        // cf. take_page_off_buddy(): the pieces go back to the lists of the
        // head's pageblock type.
        let mt = self.pageblock_migratetype(Pfn(head));
        self.del_from_free_list(head as u32, o, zi);
        // Split down to `order`, giving back the half without `pfn` each
        // time (cf. `break_down_buddy_pages()`).
        let mut start = head;
        while o > order.index() {
            o -= 1;
            let half = 1u64 << o;
            if pfn.0 >= start + half {
                self.add_to_free_list(start as u32, o, zi, mt, false);
                start += half;
            } else {
                self.add_to_free_list((start + half) as u32, o, zi, mt, false);
            }
        }
        self.prep_new_page(pfn, order, owner);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::page::Page;

    fn pa(mem_map: &mut [Page]) -> PageAlloc<'_> {
        crate::page_alloc::test_machine_64m(mem_map)
    }

    #[test]
    fn taking_back_the_same_frames_restores_buddyinfo_exactly() {
        let mut mem_map = std::vec![Page::new_reserved(); (64 << 20) >> 12];
        let mut pa = pa(&mut mem_map);
        let o0 = Order::ZERO;
        let boot: std::vec::Vec<_> = pa.zones().iter().map(|z| z.free_area_counts()).collect();
        // Three scattered frames, as a heap's slabs would be.
        let taken: std::vec::Vec<Pfn> = (0..3)
            .map(|_| {
                pa.alloc_pages(GfpFlags::GFP_KERNEL, o0, OwnerTag::SLAB)
                    .unwrap()
            })
            .collect();
        let with: std::vec::Vec<_> = pa.zones().iter().map(|z| z.free_area_counts()).collect();
        for &pfn in &taken {
            pa.free_pages(pfn, o0).unwrap();
        }
        pa.drain_all_pages();
        assert_eq!(
            pa.zones()
                .iter()
                .map(|z| z.free_area_counts())
                .collect::<std::vec::Vec<_>>(),
            boot
        );
        // Churn elsewhere, then take exactly those frames back.
        let other = pa
            .alloc_pages(GfpFlags::GFP_KERNEL, Order::new(3).unwrap(), OwnerTag::API)
            .unwrap();
        pa.free_pages(other, Order::new(3).unwrap()).unwrap();
        for &pfn in taken.iter().rev() {
            pa.take_page_off_buddy(pfn, o0, OwnerTag::SLAB).unwrap();
        }
        assert_eq!(
            pa.zones()
                .iter()
                .map(|z| z.free_area_counts())
                .collect::<std::vec::Vec<_>>(),
            with
        );
        pa.check_invariants().unwrap();
        // An allocated frame cannot be taken; nothing changes.
        assert!(
            pa.take_page_off_buddy(taken[0], o0, OwnerTag::SLAB)
                .is_err()
        );
        // Nor a misaligned block.
        let free = Pfn(taken[0].0 ^ 1);
        assert!(
            pa.take_page_off_buddy(Pfn(free.0 | 1), Order::new(1).unwrap(), OwnerTag::SLAB)
                .is_err()
        );
        assert_eq!(
            pa.zones()
                .iter()
                .map(|z| z.free_area_counts())
                .collect::<std::vec::Vec<_>>(),
            with
        );
        pa.check_invariants().unwrap();
    }
}
