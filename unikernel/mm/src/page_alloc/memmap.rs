//! `mem_map` as the allocator holds it: the descriptor array behind a raw
//! pointer, so CPUs can write the descriptors of frames they own at the
//! same time (see [`super::smp`]).
//!
#![allow(unsafe_code)]
//! Code under the exclusive lock sees a plain slice ([`MemMap`] derefs to
//! `[Page]`); nothing else runs then. The per-CPU fast paths, which run
//! concurrently with each other, never form a slice: they reach single
//! descriptors from `MemMap::base`, and touch only frames that are on
//! their own CPU's lists or that their caller owns — the ownership Linux's
//! `struct page` relies on — and a zone-lock holder only the free blocks
//! of its zone. `flags` is the one field another CPU may read at the same
//! time (the pageblock's migrate type rides in its first frame's flags),
//! so it is accessed atomically there (see [`super::zone_lock`]).

use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::ptr::NonNull;

use crate::page::Page;

/// The descriptor array, borrowed mutably for `'a`.
pub struct MemMap<'a> {
    ptr: NonNull<Page>,
    len: usize,
    _borrow: PhantomData<&'a mut [Page]>,
}

// SAFETY: a `MemMap` is the unique borrow of its array (it is built from
// a `&'a mut [Page]`), as sendable as that borrow. Shared access from
// several CPUs follows the protocol in the module docs: only the exclusive
// holder forms slices, concurrent fast paths write disjoint descriptors.
unsafe impl Send for MemMap<'_> {}
// SAFETY: see `Send`; `&MemMap` hands out no reference to a descriptor
// except through `Deref`, which only the exclusive holder (or a caller
// with no concurrent writer, e.g. a single-threaded host test) uses.
unsafe impl Sync for MemMap<'_> {}

impl<'a> MemMap<'a> {
    /// Takes over the borrow of `slice`.
    pub fn new(slice: &'a mut [Page]) -> MemMap<'a> {
        let len = slice.len();
        MemMap {
            ptr: NonNull::from(slice).cast(),
            len,
            _borrow: PhantomData,
        }
    }

    /// The first descriptor, as a raw pointer (no reference formed).
    #[inline(always)]
    pub(crate) fn base(&self) -> *mut Page {
        self.ptr.as_ptr()
    }
}

impl Deref for MemMap<'_> {
    type Target = [Page];

    #[inline(always)]
    fn deref(&self) -> &[Page] {
        // SAFETY: pointer and length come from the `&'a mut [Page]` this
        // map borrows; see the `Sync` note for who may call this.
        unsafe { core::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for MemMap<'_> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [Page] {
        // SAFETY: as for `deref`, and `&mut self` makes the slice unique.
        unsafe { core::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}
