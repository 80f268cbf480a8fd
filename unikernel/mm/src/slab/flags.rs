//! The nouns of the slab layer: creation flags (Linux's `SLAB_*` values),
//! who made a cache, its inline name, its generation-checked handle, and the
//! constructor and corruption-report hooks (cf. `include/linux/slab.h`).

use core::fmt;

use super::{CACHE_NAME_MAX, Corruption, ObjectMemory};

/// Cache creation flags; values are Linux's (`include/linux/slab.h`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SlabFlags(pub u32);

impl SlabFlags {
    /// No flag.
    pub const NONE: SlabFlags = SlabFlags(0);
    /// `SLAB_CONSISTENCY_CHECKS`: full checks on every alloc/free (slow path,
    /// double-free detection by free-list walk).
    pub const CONSISTENCY_CHECKS: SlabFlags = SlabFlags(0x0000_0100);
    /// `SLAB_RED_ZONE`: guard bytes after each object (and after the requested
    /// size of a kmalloc object), checked on free.
    pub const RED_ZONE: SlabFlags = SlabFlags(0x0000_0400);
    /// `SLAB_POISON`: free objects filled with `0x6b…0xa5`, checked on alloc.
    pub const POISON: SlabFlags = SlabFlags(0x0000_0800);
    /// `SLAB_HWCACHE_ALIGN`: align objects to cache lines.
    pub const HWCACHE_ALIGN: SlabFlags = SlabFlags(0x0000_2000);
    /// `SLAB_CACHE_DMA`: slab pages from ZONE_DMA.
    pub const CACHE_DMA: SlabFlags = SlabFlags(0x0000_4000);
    /// `SLAB_ACCOUNT`: objects are charged to a memory cgroup; set on the
    /// `kmalloc-cg-*` caches.
    pub const ACCOUNT: SlabFlags = SlabFlags(0x0400_0000);
    /// `SLAB_FAILSLAB`: the cache takes part in `failslab` fault injection
    /// when its `cache-filter` is on (cf. `mm/failslab.c`).
    pub const FAILSLAB: SlabFlags = SlabFlags(0x0200_0000);
    /// Flags that send a cache down the checked slow path
    /// (cf. `SLAB_DEBUG_FLAGS`).
    pub const DEBUG_FLAGS: SlabFlags = SlabFlags(0x100 | 0x400 | 0x800);

    const NAMES: [(SlabFlags, &'static str); 6] = [
        (SlabFlags::HWCACHE_ALIGN, "SLAB_HWCACHE_ALIGN"),
        (SlabFlags::CACHE_DMA, "SLAB_CACHE_DMA"),
        (SlabFlags::POISON, "SLAB_POISON"),
        (SlabFlags::RED_ZONE, "SLAB_RED_ZONE"),
        (SlabFlags::CONSISTENCY_CHECKS, "SLAB_CONSISTENCY_CHECKS"),
        (SlabFlags::FAILSLAB, "SLAB_FAILSLAB"),
    ];
    pub(crate) const ALL_BITS: u32 = 0x100 | 0x400 | 0x800 | 0x2000 | 0x4000 | 0x0200_0000;

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: SlabFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: SlabFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Union.
    pub const fn union(self, other: SlabFlags) -> SlabFlags {
        SlabFlags(self.0 | other.0)
    }

    /// The flag called `name` (`"SLAB_POISON"`…), for the API.
    pub fn from_name(name: &str) -> Option<SlabFlags> {
        SlabFlags::NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(f, _)| *f)
    }

    /// Names of the set flags, in a fixed order.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        SlabFlags::NAMES
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl core::ops::BitOr for SlabFlags {
    type Output = SlabFlags;
    fn bitor(self, rhs: SlabFlags) -> SlabFlags {
        self.union(rhs)
    }
}

impl fmt::Debug for SlabFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlabFlags(")?;
        for (i, n) in self.names().enumerate() {
            write!(f, "{}{n}", if i > 0 { "|" } else { "" })?;
        }
        write!(f, ")")
    }
}

/// Who created a cache (API.md `Cache.kind`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum CacheKind {
    /// One of the `kmalloc-*` / `dma-kmalloc-*` caches.
    Kmalloc,
    /// Created through the HTTP API; `POST /api/reset` destroys these.
    Api,
    /// Created by kernel code.
    #[default]
    Kernel,
}

impl CacheKind {
    /// `"kmalloc"`, `"api"` or `"kernel"`.
    pub const fn name(self) -> &'static str {
        match self {
            CacheKind::Kmalloc => "kmalloc",
            CacheKind::Api => "api",
            CacheKind::Kernel => "kernel",
        }
    }
}

/// A cache name stored inline (no heap): printable ASCII without spaces, so
/// `/proc/slabinfo` stays parseable by whitespace splitting.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct CacheName {
    bytes: [u8; CACHE_NAME_MAX],
    len: u8,
}

impl CacheName {
    pub(crate) const EMPTY: CacheName = CacheName {
        bytes: [0; CACHE_NAME_MAX],
        len: 0,
    };

    /// `None` if empty, longer than [`CACHE_NAME_MAX`], or not graphic ASCII.
    pub fn new(name: &str) -> Option<CacheName> {
        let mut n = CacheName::EMPTY;
        fmt::Write::write_str(&mut n, name).ok()?;
        (n.len > 0).then_some(n)
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Write for CacheName {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let at = self.len as usize;
        if at + s.len() > CACHE_NAME_MAX || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(fmt::Error);
        }
        self.bytes[at..at + s.len()].copy_from_slice(s.as_bytes());
        self.len += s.len() as u8;
        Ok(())
    }
}

impl fmt::Debug for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for CacheName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Handle of a cache (cf. `struct kmem_cache *`): a table slot plus a
/// generation, so a handle kept past `kmem_cache_destroy` is refused rather
/// than aliasing a later cache in the same slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CacheId {
    pub(crate) slot: u8,
    pub(crate) generation: u16,
}

impl CacheId {
    /// Table slot (stable while the cache lives).
    pub const fn slot(self) -> usize {
        self.slot as usize
    }
}

/// Object constructor (cf. the `ctor` of `kmem_cache_create()`): called once
/// per object when its slab is created, with the object's address and
/// `object_size`. Objects must be returned to the cache in constructed
/// state; a cache with a constructor keeps its free pointer outside the
/// object and is never poisoned (as in SLUB).
pub type Ctor = fn(mem: &dyn ObjectMemory, addr: u64, object_size: usize);

/// Corruption reporter: called with the cache name (or `"?"` for an address
/// in no cache) for every detected corruption, while the slab lock is held —
/// it must not allocate (the kernel's prints to serial).
pub type ReportFn = fn(cache: &str, corruption: &Corruption);
