//! Object layout and slab order, as SLUB computes them (cf.
//! `calculate_sizes()`, `calculate_order()`, `calc_slab_order()`).

use super::{MAX_OBJS_PER_PAGE, SLUB_MAX_ORDER, SLUB_MIN_OBJECTS, SlabFlags};
use crate::types::PAGE_SIZE;

/// Object layout and slab geometry for a cache (cf. `calculate_sizes()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    pub size: u32,
    pub align: u32,
    pub offset: u32,
    pub inuse_off: u32,
    pub orig_off: u32,
    pub order: u32,
    pub objects: u32,
}

/// cf. `calculate_alignment()`: at least word alignment; cache-line
/// alignment for `SLAB_HWCACHE_ALIGN`, halved while two objects fit a line.
pub(crate) fn calculate_alignment(flags: SlabFlags, align: usize, size: usize) -> usize {
    let mut align = align.max(8);
    if flags.contains(SlabFlags::HWCACHE_ALIGN) {
        let mut ralign = 64;
        while size <= ralign / 2 && ralign > 8 {
            ralign /= 2;
        }
        align = align.max(ralign);
    }
    align
}

/// Objects in a slab of `order` (cf. `order_objects()`).
const fn order_objects(order: u32, size: u32) -> u32 {
    ((PAGE_SIZE as u32) << order) / size
}

/// Smallest `order >= min_order` whose leftover is at most
/// `slab_size / fract_leftover` (cf. `calc_slab_order()`); `max_order + 1`
/// if none.
const fn calc_slab_order(size: u32, min_order: u32, max_order: u32, fract_leftover: u32) -> u32 {
    let mut order = min_order;
    while order <= max_order {
        let slab_size = (PAGE_SIZE as u32) << order;
        if slab_size % size <= slab_size / fract_leftover {
            break;
        }
        order += 1;
    }
    order
}

/// `get_order()` of a byte count.
const fn get_order(bytes: u64) -> u32 {
    let mut order = 0;
    while (PAGE_SIZE << order) < bytes {
        order += 1;
    }
    order
}

/// The slab order for objects of stride `size` (cf. `calculate_order()`):
/// the smallest order from the `min_objects`-derived one up to
/// `slub_max_order` that wastes at most 1/16 of the slab, then 1/8, then
/// 1/4, then anything; objects too big for `slub_max_order` get
/// `get_order(size)`.
pub(crate) const fn calculate_order(size: u32) -> u32 {
    let max_objects = {
        let m = order_objects(SLUB_MAX_ORDER, size);
        if m == 0 { 1 } else { m }
    };
    let min_objects = if SLUB_MIN_OBJECTS < max_objects {
        SLUB_MIN_OBJECTS
    } else {
        max_objects
    };
    let min_order = get_order(min_objects as u64 * size as u64);
    if order_objects(min_order, size) > MAX_OBJS_PER_PAGE {
        return get_order(size as u64 * MAX_OBJS_PER_PAGE as u64) - 1;
    }
    let mut fraction = 16;
    while fraction > 1 {
        let order = calc_slab_order(size, min_order, SLUB_MAX_ORDER, fraction);
        if order <= SLUB_MAX_ORDER {
            return order;
        }
        fraction /= 2;
    }
    get_order(size as u64)
}

/// cf. `calculate_sizes()`: object, red zone, out-of-object free pointer
/// (debug or constructor), tracked request size (red zone), padding.
pub(crate) fn calculate_sizes(
    object_size: usize,
    align: usize,
    flags: SlabFlags,
    has_ctor: bool,
) -> Geometry {
    let align = calculate_alignment(flags, align, object_size) as u32;
    let object_size = object_size as u32;
    let red_zone = flags.contains(SlabFlags::RED_ZONE);
    let mut size = object_size.next_multiple_of(8);
    if red_zone && size == object_size {
        size += 8; // at least one word of red zone (cf. "size += sizeof(void *)")
    }
    let inuse_off = size;
    let offset = if red_zone || flags.contains(SlabFlags::POISON) || has_ctor {
        size += 8; // free pointer after the object: poison and ctor state survive
        inuse_off
    } else {
        // Middle of the object, so a small overflow from the previous object
        // does not hit it (cf. "s->offset = ALIGN_DOWN(s->object_size / 2, …)").
        (object_size / 2) & !7
    };
    let orig_off = if red_zone {
        size += 8; // cf. set_orig_size()
        size - 8
    } else {
        0
    };
    let size = size.next_multiple_of(align);
    let order = calculate_order(size);
    Geometry {
        size,
        align,
        offset,
        inuse_off,
        orig_off,
        order,
        objects: order_objects(order, size),
    }
}
