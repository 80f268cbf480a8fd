//! What can go wrong: [`SlabError`] for calls that fail cleanly, and the
//! corruption reports of the debug checks and invalid frees (cf. the
//! `slab_err()` / `object_err()` messages of `mm/slub.c`).

use core::fmt;

use super::{CacheId, MAX_CACHES};
use crate::types::Order;

/// Why a slab operation failed. A failed call changes no state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlabError {
    /// The page allocator could not supply a slab (or a `kmalloc_large`
    /// block) — or, from a mempool, neither the cache nor the reserve could.
    NoMemory {
        /// Order asked of the page allocator.
        order: Order,
    },
    /// No live cache with this id or name.
    NoCache,
    /// A cache of that name exists already.
    Exists,
    /// Every slot of the cache table is taken.
    TooManyCaches,
    /// Bad size, alignment, flags or name.
    Invalid,
    /// `kmalloc` of more than [`KMALLOC_MAX_SIZE`](crate::kmalloc::KMALLOC_MAX_SIZE).
    TooLarge {
        /// Bytes requested.
        size: usize,
    },
    /// `kmem_cache_destroy` while objects are live (API: 409).
    Busy {
        /// Objects still allocated (quarantined ones excluded).
        active_objs: u64,
    },
    /// The kmalloc caches are permanent.
    Permanent,
}

impl fmt::Display for SlabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SlabError::NoMemory { order } => write!(f, "out of memory (order {order})"),
            SlabError::NoCache => write!(f, "no such cache"),
            SlabError::Exists => write!(f, "cache exists"),
            SlabError::TooManyCaches => write!(f, "cache table full ({MAX_CACHES})"),
            SlabError::Invalid => write!(f, "invalid cache parameters"),
            SlabError::TooLarge { size } => write!(f, "kmalloc of {size} bytes is too large"),
            SlabError::Busy { active_objs } => write!(f, "cache has {active_objs} live objects"),
            SlabError::Permanent => write!(f, "kmalloc caches cannot be destroyed"),
        }
    }
}

/// Why a free was judged invalid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InvalidFreeKind {
    /// The address is in no slab and heads no `kmalloc_large` block.
    NotSlab,
    /// Inside a slab (or large block) but not at an object's first byte.
    NotObjectStart,
    /// `kmem_cache_free` named another cache than the object's
    /// (cf. `cache_from_obj()`: "Wrong slab cache").
    WrongCache,
}

/// What the debug checks found (cf. the `slab_err`/`object_err` messages).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CorruptionKind {
    /// A red zone byte changed: after the object, or between a kmalloc
    /// object's requested size and its class size ("Right Redzone
    /// overwritten").
    RedZone,
    /// A free object's poison changed: a write after free ("Poison
    /// overwritten").
    Poison,
    /// The object is already free ("Object already free").
    DoubleFree,
    /// A free pointer leads outside its slab or off an object boundary
    /// ("Freepointer corrupt"); the rest of that free list is isolated.
    FreePointer,
    /// A bad pointer was freed.
    InvalidFree(InvalidFreeKind),
}

impl CorruptionKind {
    /// Linux's wording.
    pub const fn message(self) -> &'static str {
        match self {
            CorruptionKind::RedZone => "Right Redzone overwritten",
            CorruptionKind::Poison => "Poison overwritten",
            CorruptionKind::DoubleFree => "Object already free",
            CorruptionKind::FreePointer => "Freepointer corrupt",
            CorruptionKind::InvalidFree(InvalidFreeKind::NotSlab) => {
                "Invalid free: not a slab object"
            }
            CorruptionKind::InvalidFree(InvalidFreeKind::NotObjectStart) => {
                "Invalid free: not at an object boundary"
            }
            CorruptionKind::InvalidFree(InvalidFreeKind::WrongCache) => "Wrong slab cache",
        }
    }
}

/// One detected corruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corruption {
    /// What was found.
    pub kind: CorruptionKind,
    /// The object (or freed pointer) concerned.
    pub addr: u64,
    /// Offset of the first bad byte from `addr`, where one applies.
    pub offset: Option<u32>,
    /// The cache the address belongs to, if any.
    pub cache: Option<CacheId>,
}

impl fmt::Display for Corruption {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {:#x}", self.kind.message(), self.addr)?;
        if let Some(off) = self.offset {
            write!(f, " (offset {off})")?;
        }
        Ok(())
    }
}

/// Per-cache corruption counters (`/api/slabinfo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CorruptionCounts {
    /// [`CorruptionKind::RedZone`] reports.
    pub red_zone: u64,
    /// [`CorruptionKind::Poison`] reports.
    pub poison: u64,
    /// [`CorruptionKind::DoubleFree`] reports.
    pub double_free: u64,
    /// [`CorruptionKind::FreePointer`] reports.
    pub free_pointer: u64,
    /// [`CorruptionKind::InvalidFree`] reports.
    pub invalid_free: u64,
}

impl CorruptionCounts {
    pub(crate) fn count(&mut self, kind: CorruptionKind) {
        match kind {
            CorruptionKind::RedZone => self.red_zone += 1,
            CorruptionKind::Poison => self.poison += 1,
            CorruptionKind::DoubleFree => self.double_free += 1,
            CorruptionKind::FreePointer => self.free_pointer += 1,
            CorruptionKind::InvalidFree(_) => self.invalid_free += 1,
        }
    }

    /// Sum over every kind.
    pub fn total(&self) -> u64 {
        self.red_zone + self.poison + self.double_free + self.free_pointer + self.invalid_free
    }
}
