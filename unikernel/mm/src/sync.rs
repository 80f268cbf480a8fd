//! The two synchronisation primitives the per-CPU fast paths stand on.
//!
//! * [`BrLock`] — a "big-reader" lock (Linux 2.4's `brlock`, today's
//!   `percpu_rw_semaphore` in spirit): one spin flag per CPU on a cache
//!   line of its own. A CPU's fast path takes only its own flag, so fast
//!   paths on different CPUs share no written cache line; the exclusive
//!   side takes every CPU's flag, in CPU order, and then owns the data
//!   alone. In the page allocator the exclusive side is `zone->lock` plus
//!   every `pcp->lock` at once; the shared side is one CPU's `pcp->lock`.
//! * [`PcpCell`] — one CPU's slot of per-CPU data inside a structure the
//!   fast paths share (cf. `DEFINE_PER_CPU` / `this_cpu_ptr()`): mutable
//!   through `&mut` by the exclusive holder, and through a shared
//!   reference only by the CPU whose [`BrLock`] flag is held.
//! * [`LateInit`] — an `Option` for a value set at boot, whose "not yet"
//!   is all zero bytes, so a `static` holding one (in a [`BrLock`], which
//!   is zeros too) is `.bss`, not image.
//!
//! This module and the three that build the fast paths on it
//! (`page_alloc::memmap`, `page_alloc::smp`, `slab::smp`) are the only
//! places `mm` uses `unsafe`; everything else is checked by the compiler.

#![allow(unsafe_code)]

use core::cell::UnsafeCell;
use core::mem::MaybeUninit;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::types::NR_CPUS;

/// Keeps a value on a 64-byte cache line of its own (cf.
/// `____cacheline_aligned_in_smp`).
#[derive(Default)]
#[repr(align(64))]
pub struct CachePadded<T>(pub T);

impl<T> Deref for CachePadded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

/// A spin flag: the lock bit of one CPU's slot.
struct SpinFlag(AtomicBool);

impl SpinFlag {
    const fn new() -> SpinFlag {
        SpinFlag(AtomicBool::new(false))
    }

    #[inline(always)]
    fn try_lock(&self) -> bool {
        self.0
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
    }

    #[inline(always)]
    fn lock(&self) {
        while !self.try_lock() {
            while self.0.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
    }

    #[inline(always)]
    fn unlock(&self) {
        self.0.store(false, Ordering::Release);
    }
}

/// A lock with one flag per CPU: [`BrLock::read_cpu`] takes one,
/// [`BrLock::write`] takes them all.
pub struct BrLock<T> {
    flags: [CachePadded<SpinFlag>; NR_CPUS],
    /// CPUs whose flags exist for [`BrLock::read_cpu`], *minus one*;
    /// `write` takes only these (a 1-CPU machine pays for one flag).
    /// Counted from 0 so that a new lock is all zero bytes around its
    /// data: a `static` whose data is zeros too lands in `.bss`, not in
    /// the image's `.data` (the kernel's slab lock).
    nr_cpus_m1: AtomicUsize,
    data: UnsafeCell<T>,
}

// SAFETY: the data is reached mutably only by the exclusive holder (all
// flags held), and shared by readers (each holding its own flag), which
// the `BrReadGuard` contract limits to shared access plus what `T` itself
// makes safe to share (`PcpCell` slots of the reader's own CPU).
unsafe impl<T: Send + Sync> Sync for BrLock<T> {}
// SAFETY: owning the lock owns the data.
unsafe impl<T: Send> Send for BrLock<T> {}

impl<T> BrLock<T> {
    /// A lock for one CPU; [`BrLock::set_nr_cpus`] raises it at bring-up.
    pub const fn new(data: T) -> BrLock<T> {
        BrLock {
            flags: [const { CachePadded(SpinFlag::new()) }; NR_CPUS],
            nr_cpus_m1: AtomicUsize::new(0),
            data: UnsafeCell::new(data),
        }
    }

    /// CPUs that may take the shared side: `1..=NR_CPUS`. Changing it
    /// takes the exclusive side first, so no reader of a CPU outside the
    /// old range can be running.
    pub fn set_nr_cpus(&self, n: usize) {
        let n = n.clamp(1, NR_CPUS);
        let guard = self.write();
        // Every flag up to NR_CPUS is free except those `guard` holds, and
        // it releases the first `old` only: take the new ones now so the
        // guard's drop (which reads `nr_cpus` afresh) frees exactly them.
        let old = guard.nr;
        for flag in &self.flags[old..n.max(old)] {
            flag.lock();
        }
        self.nr_cpus_m1.store(n - 1, Ordering::Relaxed);
        let mut guard = guard;
        guard.nr = n.max(old);
        drop(guard);
        // Flags beyond `n` (when shrinking) were released by the drop.
    }

    /// CPUs that may take the shared side.
    pub fn nr_cpus(&self) -> usize {
        self.nr_cpus_m1.load(Ordering::Relaxed) + 1
    }

    /// The exclusive side: every CPU's flag, in CPU order.
    #[inline]
    pub fn write(&self) -> BrWriteGuard<'_, T> {
        let nr = self.nr_cpus();
        for flag in &self.flags[..nr] {
            flag.lock();
        }
        BrWriteGuard { lock: self, nr }
    }

    /// The shared side for `cpu`, `None` if `cpu` has no flag. The caller
    /// must run on `cpu` (or, on the host, be the one thread acting as it).
    #[inline(always)]
    pub fn read_cpu(&self, cpu: usize) -> Option<BrReadGuard<'_, T>> {
        if cpu > self.nr_cpus_m1.load(Ordering::Relaxed) {
            return None;
        }
        let flag = &self.flags[cpu];
        flag.lock();
        Some(BrReadGuard { lock: self, cpu })
    }
}

/// Holds every CPU's flag; the data is this guard's alone.
pub struct BrWriteGuard<'a, T> {
    lock: &'a BrLock<T>,
    nr: usize,
}

impl<T> Deref for BrWriteGuard<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: every reader flag is held, so no other reference to the
        // data exists (see `BrLock`'s `Sync`).
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> DerefMut for BrWriteGuard<'_, T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes this reference unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

impl<T> Drop for BrWriteGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        for flag in self.lock.flags[..self.nr].iter().rev() {
            flag.unlock();
        }
    }
}

/// Holds one CPU's flag: shared access to the data, alongside other CPUs'
/// readers and never alongside the writer.
pub struct BrReadGuard<'a, T> {
    lock: &'a BrLock<T>,
    cpu: usize,
}

impl<T> BrReadGuard<'_, T> {
    /// The CPU whose flag this guard holds.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// The data as a raw pointer, for readers that write the parts a
    /// finer lock of their own gives them (the page allocator's zone
    /// locks, `page_alloc::zone_lock`) and so must not hold a shared
    /// reference to the whole while other CPUs do the same.
    #[inline(always)]
    pub fn as_ptr(&self) -> *mut T {
        self.lock.data.get()
    }
}

impl<T> Deref for BrReadGuard<'_, T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: no writer runs while a flag is held; readers only share.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> Drop for BrReadGuard<'_, T> {
    #[inline(always)]
    fn drop(&mut self) {
        self.lock.flags[self.cpu].unlock();
    }
}

/// One CPU's slot of per-CPU data (see the module docs), on cache lines of
/// its own so CPUs writing neighbouring slots do not share a line.
#[repr(align(64))]
pub struct PcpCell<T>(UnsafeCell<T>);

// SAFETY: a slot is written through a shared reference only by the CPU
// holding its `BrLock` flag (the contract of `PcpCell::slot_mut`)
// and read through `Deref` only when no such writer can run: by the
// exclusive holder, or by the slot's own CPU.
unsafe impl<T: Send> Sync for PcpCell<T> {}

impl<T> PcpCell<T> {
    /// A slot holding `v`.
    pub const fn new(v: T) -> PcpCell<T> {
        PcpCell(UnsafeCell::new(v))
    }

    /// The slot, mutably, for its owner.
    ///
    /// # Safety
    /// The caller holds this slot's CPU flag of the [`BrLock`] guarding
    /// the structure, and no other reference to the slot is live.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slot_mut(&self) -> &mut T {
        // SAFETY: the caller's contract: the flag excludes the exclusive
        // holder and the other CPUs never touch this slot.
        unsafe { &mut *self.0.get() }
    }
}

impl<T> Deref for PcpCell<T> {
    type Target = T;
    #[inline(always)]
    fn deref(&self) -> &T {
        // SAFETY: see the `Sync` impl: only the exclusive holder or the
        // slot's own CPU reads through a shared reference.
        unsafe { &*self.0.get() }
    }
}

impl<T> DerefMut for PcpCell<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut T {
        self.0.get_mut()
    }
}

impl<T: Clone> Clone for PcpCell<T> {
    fn clone(&self) -> Self {
        PcpCell::new((**self).clone())
    }
}

impl<T: core::fmt::Debug> core::fmt::Debug for PcpCell<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        (**self).fmt(f)
    }
}

impl<T: PartialEq> PartialEq for PcpCell<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl<T: Eq> Eq for PcpCell<T> {}

/// A value set once the kernel can build it, `None` until then: what
/// `Option<T>` says, with a representation whose "none" is all zero
/// bytes. `Option<T>` encodes `None` in a niche the compiler picks, for
/// `Option<SlabAllocator>` a byte 2 inside it, which puts a `static`
/// holding 30 KB of otherwise zero bytes into the image's `.data`;
/// `LateInit::NONE` is zeros throughout, so such a static is `.bss`.
/// The flag costs what `Option`'s discriminant test did: one byte compare.
pub struct LateInit<T> {
    value: MaybeUninit<T>,
    /// Whether `value` holds a `T` (then and only then initialised).
    set: bool,
}

// SAFETY: a `LateInit<T>` owns at most one `T` and hands out only `&T` /
// `&mut T` borrowed from itself, exactly as `Option<T>` does.
unsafe impl<T: Send> Send for LateInit<T> {}
// SAFETY: as for `Send`: `&LateInit<T>` gives only `&T`.
unsafe impl<T: Sync> Sync for LateInit<T> {}

impl<T> LateInit<T> {
    /// Nothing yet; every byte zero.
    pub const NONE: LateInit<T> = LateInit {
        value: MaybeUninit::zeroed(),
        set: false,
    };

    /// The value, if set (`Option::as_ref`).
    #[inline(always)]
    pub fn as_ref(&self) -> Option<&T> {
        if self.set {
            // SAFETY: `set` is true only after `put` wrote `value`.
            Some(unsafe { self.value.assume_init_ref() })
        } else {
            None
        }
    }

    /// The value, mutably, if set (`Option::as_mut`).
    #[inline(always)]
    pub fn as_mut(&mut self) -> Option<&mut T> {
        if self.set {
            // SAFETY: as for `as_ref`; `&mut self` makes it unique.
            Some(unsafe { self.value.assume_init_mut() })
        } else {
            None
        }
    }

    /// Sets the value (dropping the old one, if any) and returns it:
    /// `*opt = Some(v)`. Inlined so that a large `v` can be built in place.
    #[inline(always)]
    pub fn put(&mut self, v: T) -> &mut T {
        if self.set {
            self.set = false;
            // SAFETY: `set` was true, so `value` holds a `T`, dropped
            // once: `set` is already false if the drop unwinds.
            unsafe { self.value.assume_init_drop() };
        }
        let v = self.value.write(v);
        self.set = true;
        v
    }
}

impl<T> Drop for LateInit<T> {
    fn drop(&mut self) {
        if self.set {
            // SAFETY: `set` says `value` holds a `T`; dropped once, here.
            unsafe { self.value.assume_init_drop() };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 1-CPU lock's bytes around its data and an unset [`LateInit`]'s
    /// are all zero, so `static X: BrLock<LateInit<T>>` is `.bss` (the
    /// kernel's slab lock, `slab_glue::SLAB`).
    #[test]
    fn new_lock_and_unset_late_init_are_zero_bytes() {
        let lock = BrLock::new(());
        assert_eq!(lock.nr_cpus_m1.load(Ordering::Relaxed), 0);
        assert_eq!(lock.nr_cpus(), 1);
        assert!(lock.read_cpu(0).is_some() && lock.read_cpu(1).is_none());
        // 15 bytes of value and the flag: no padding to leave unread.
        const N: usize = 15;
        assert_eq!(size_of::<LateInit<[u8; N]>>(), N + 1);
        // SAFETY: `LateInit<[u8; 15]>` is 16 initialised bytes (`zeroed`
        // and the flag), no padding, and every byte pattern is a `u8`.
        let bytes: [u8; N + 1] = unsafe { core::mem::transmute(LateInit::<[u8; N]>::NONE) };
        assert_eq!(bytes, [0; N + 1]);
        // The same for a type whose `Option` niche is not zero.
        assert_ne!(
            // SAFETY: `Option<bool>` is one initialised byte.
            unsafe { core::mem::transmute::<Option<bool>, u8>(None) },
            0
        );
        // SAFETY: `LateInit<bool>` is two initialised bytes, no padding.
        let b: [u8; 2] = unsafe { core::mem::transmute(LateInit::<bool>::NONE) };
        assert_eq!(b, [0, 0]);
    }

    #[test]
    fn late_init_sets_replaces_and_drops_once() {
        use std::rc::Rc;
        let counter = Rc::new(());
        let mut slot = LateInit::<(u32, Rc<()>)>::NONE;
        assert!(slot.as_ref().is_none() && slot.as_mut().is_none());
        assert_eq!(slot.put((7, counter.clone())).0, 7);
        assert_eq!(Rc::strong_count(&counter), 2);
        slot.as_mut().unwrap().0 = 9;
        assert_eq!(slot.as_ref().unwrap().0, 9);
        slot.put((11, counter.clone()));
        assert_eq!(Rc::strong_count(&counter), 2, "the old value dropped");
        assert_eq!(slot.as_ref().unwrap().0, 11);
        drop(slot);
        assert_eq!(Rc::strong_count(&counter), 1, "dropped with the slot");
    }

    #[test]
    fn write_excludes_readers_and_readers_share() {
        let lock = BrLock::new(0u64);
        lock.set_nr_cpus(2);
        let r0 = lock.read_cpu(0).unwrap();
        let r1 = lock.read_cpu(1).unwrap();
        assert_eq!(*r0 + *r1, 0);
        assert!(lock.read_cpu(2).is_none(), "no flag past nr_cpus");
        drop((r0, r1));
        *lock.write() = 7;
        assert_eq!(*lock.read_cpu(1).unwrap(), 7);
    }

    #[test]
    fn threads_counting_under_write_lose_nothing() {
        let lock = BrLock::new(0u64);
        lock.set_nr_cpus(4);
        std::thread::scope(|s| {
            for cpu in 0..4 {
                let lock = &lock;
                s.spawn(move || {
                    for _ in 0..10_000 {
                        *lock.write() += 1;
                        // A reader of this CPU never sees a half-done write.
                        let r = lock.read_cpu(cpu).unwrap();
                        assert!(*r >= 1);
                    }
                });
            }
        });
        assert_eq!(*lock.write(), 40_000);
    }

    #[test]
    fn shrinking_and_growing_nr_cpus_leaves_every_flag_free() {
        let lock = BrLock::new(());
        lock.set_nr_cpus(8);
        lock.set_nr_cpus(2);
        lock.set_nr_cpus(5);
        for cpu in 0..5 {
            drop(lock.read_cpu(cpu).unwrap());
        }
        drop(lock.write());
        assert_eq!(lock.nr_cpus(), 5);
    }
}
