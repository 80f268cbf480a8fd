//! The Linux text views (`/proc/...`), rendered by `mm::procfs`.
//!
//! The formatters that read the allocator run under `mm.lock()`; they
//! write into a [`Bounded`] buffer whose capacity was reserved before the
//! lock was taken and which refuses to grow, so no heap allocation happens
//! under the lock. Should the text not fit, the lock is dropped, the
//! buffer doubled, and the view rendered again.

use alloc::string::String;
use alloc::vec;
use core::fmt::{self, Write};

use mm::manager::MemoryManager;
use mm::page_alloc::PageAlloc;
use mm::platform::Platform;
use mm::procfs::{self, IomemEntry, KernelSections, Meminfo, ZoneinfoExtra};

use super::BootView;
use crate::server::error::ApiError;
use crate::server::response::{Response, try_string};

/// Largest text view (a zoneinfo of four zones is about 12 KiB).
const MAX_TEXT_BYTES: usize = 1 << 20;

/// A `fmt::Write` into a `String` that fails instead of reallocating.
pub struct Bounded<'s>(pub &'s mut String);

impl Write for Bounded<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.0.len() + s.len() > self.0.capacity() {
            return Err(fmt::Error);
        }
        self.0.push_str(s);
        Ok(())
    }
}

/// Render `f` over the locked allocator without allocating under the lock.
pub fn render_locked<P: Platform>(
    mm: &MemoryManager<'_, P>,
    initial_bytes: usize,
    f: impl Fn(&PageAlloc<'_>, &mut Bounded<'_>) -> fmt::Result,
) -> Result<String, ApiError> {
    let mut capacity = initial_bytes;
    while capacity <= MAX_TEXT_BYTES {
        let mut text = try_string(capacity)?;
        let done = {
            let pa = mm.lock();
            f(&pa, &mut Bounded(&mut text)).is_ok()
        };
        if done {
            return Ok(text);
        }
        capacity *= 2;
    }
    Err(ApiError::enomem("view too large to render"))
}

pub fn text_or_error(text: Result<String, ApiError>) -> Response {
    match text {
        Ok(text) => Response::text(200, text),
        Err(e) => e.into_response(),
    }
}

pub fn buddyinfo<P: Platform>(mm: &MemoryManager<'_, P>) -> Response {
    text_or_error(buddyinfo_text(mm))
}

/// `/proc/buddyinfo`'s text (also parsed by `/metrics`).
pub fn buddyinfo_text<P: Platform>(mm: &MemoryManager<'_, P>) -> Result<String, ApiError> {
    render_locked(mm, 512, |pa, w| procfs::buddyinfo(pa, w))
}

/// `/proc/pagetypeinfo` (cf. `mm/vmstat.c:pagetypeinfo_show()`): one
/// line per migrate type of each populated zone, 2 to 3 KiB.
pub fn pagetypeinfo<P: Platform>(mm: &MemoryManager<'_, P>) -> Response {
    text_or_error(render_locked(mm, 4096, |pa, w| procfs::pagetypeinfo(pa, w)))
}

/// `/sys/kernel/debug/extfrag/extfrag_index`: one line per populated
/// zone, 11 indices.
pub fn extfrag_index<P: Platform>(mm: &MemoryManager<'_, P>) -> Response {
    text_or_error(render_locked(mm, 512, |pa, w| procfs::extfrag_index(pa, w)))
}

/// `/sys/kernel/debug/extfrag/unusable_index`.
pub fn unusable_index<P: Platform>(mm: &MemoryManager<'_, P>) -> Response {
    text_or_error(render_locked(mm, 512, |pa, w| {
        procfs::unusable_index(pa, w)
    }))
}

pub fn zoneinfo<P: Platform>(mm: &MemoryManager<'_, P>, extra: &ZoneinfoExtra) -> Response {
    text_or_error(zoneinfo_text(mm, extra))
}

/// `/proc/zoneinfo`'s text (also parsed by `/metrics`).
pub fn zoneinfo_text<P: Platform>(
    mm: &MemoryManager<'_, P>,
    extra: &ZoneinfoExtra,
) -> Result<String, ApiError> {
    render_locked(mm, 16 * 1024, |pa, w| procfs::zoneinfo(pa, extra, w))
}

pub fn meminfo(mi: &Meminfo) -> Response {
    text_or_error(meminfo_text(mi))
}

/// `/proc/meminfo`'s text (also parsed by `/metrics`).
pub fn meminfo_text(mi: &Meminfo) -> Result<String, ApiError> {
    let mut text = try_string(4096)?;
    if procfs::meminfo(mi, &mut Bounded(&mut text)).is_err() {
        return Err(ApiError::enomem("view too large to render"));
    }
    Ok(text)
}

pub fn iomem(boot: &BootView<'_>, kernel: &KernelSections) -> Response {
    let mut capacity = 64;
    loop {
        let mut entries = vec![IomemEntry::EMPTY; capacity];
        let n = procfs::build_iomem_entries_with_devices(
            boot.memblock,
            boot.firmware_map,
            *kernel,
            boot.devices,
            &mut entries,
        );
        // A full slice may mean truncation: retry larger (bounded).
        if n < capacity || capacity >= 4096 {
            let mut text = match try_string(n * 96 + 64) {
                Ok(text) => text,
                Err(e) => return ApiError::from(e).into_response(),
            };
            if procfs::iomem(&entries[..n], &mut Bounded(&mut text)).is_err() {
                return ApiError::enomem("view too large to render").into_response();
            }
            return Response::text(200, text);
        }
        capacity *= 2;
    }
}
