//! `GET /sys/kernel/debug/page_owner` (cf. `read_page_owner()` and
//! `print_page_owner()` in `mm/page_owner.c`, Linux 6.1): one block of
//! text per allocated block, in PFN order, over `mm::page_owner`.
//!
//! ```text
//! Page allocated via order 3, mask 0xcc0(GFP_KERNEL), pid 0, tgid 0 (swapper/0), ts 4215337000 ns, free_ts 0 ns
//! PFN 115624 type Unmovable Block 225 type Unmovable Flags 0x4(head|node=0|zone=1)
//!  net/src/api/alloc_cmd.rs:317:14
//! Owner api, handle 3
//!
//! ```
//! Linux's lines, but for the stack: Linux prints the saved stack trace
//! (` %pS` per frame); here the one frame known, the caller of
//! `alloc_pages()` as `file:line:column` (see `mm::page_owner`), and a
//! line Linux does not have, naming the subsystem (the frame's owner tag)
//! and the API handle (`handle 0`: the kernel's own). `Flags` is this
//! kernel's `page->flags` word with its names, then `node=0|zone=N` as
//! `%pGp` appends them.
//!
//! The view is large (one block per allocated block), so it is streamed
//! ([`Response::stream`]): each round formats the next records from where
//! the last stopped (the token carries the PFN), with the allocator's lock
//! held only to copy a batch of descriptors out, and the stream ends after
//! the last block. Boot without `page_owner=on` and the file does not
//! exist (404), as in Linux.

use core::fmt::Write as _;

use mm::page::Page;
use mm::page_owner::{AllocatedLine, PageOwnerRecord};
use mm::platform::Platform;
use mm::types::Pfn;
use mm::zone::{MigrateType, PAGEBLOCK_ORDER};

use super::Api;
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::{BodyWriter, CONTENT_TYPE_TEXT, Pending, Response};

/// Records formatted per round (about 16 KiB of text).
const RECORDS_PER_ROUND: usize = 64;
/// Token kind (top byte), beside `wait.rs`'s and `events.rs`'s.
pub(super) const TOKEN_PAGE_OWNER: u64 = 5;

/// Linux's `migratetype_names[]` entry for `mt`.
fn migratetype_name(mt: u8) -> &'static str {
    MigrateType::ALL
        .get(usize::from(mt))
        .map_or("Unknown", |m| m.name())
}

impl<P: Platform> Api<'_, P> {
    /// `GET /sys/kernel/debug/page_owner`: the first round, or the next.
    pub(super) fn page_owner(&mut self, req: &Request) -> Result<Response, ApiError> {
        let po = self.mm.page_owner();
        if !po.enabled() {
            return Err(ApiError::enoent(
                "page_owner is disabled: boot with page_owner=on",
            ));
        }
        let mut pfn = match req.park {
            Some(p) => Pfn(p.token & ((1 << 56) - 1)),
            None => Pfn(0),
        };
        let mut batch = [(Pfn(0), PageOwnerRecord::EMPTY); RECORDS_PER_ROUND];
        let n = po.read_allocated(&mut pfn, &mut batch);
        // The descriptors, copied under the lock (no heap while held).
        let mut pages = [(Page::new_reserved(), 0u8); RECORDS_PER_ROUND];
        {
            let pa = self.mm.lock();
            for ((head, _), slot) in batch[..n].iter().zip(pages.iter_mut()) {
                let block = Pfn(head.0 >> PAGEBLOCK_ORDER << PAGEBLOCK_ORDER);
                if let (Some(page), Some(first)) = (pa.page(*head), pa.page(block)) {
                    *slot = (*page, first.pageblock_migratetype());
                }
            }
        }
        let mut w = BodyWriter::new();
        for ((head, rec), (page, block_mt)) in batch[..n].iter().zip(&pages) {
            let comm = match rec.pid {
                0 => "swapper/0",
                pid => self.task_comm(pid).unwrap_or("<exited>"),
            };
            let _ = writeln!(w, "{}", AllocatedLine { rec, comm });
            let _ = write!(
                w,
                "PFN {} type {} Block {} type {} Flags {:#x}(",
                head.0,
                rec.gfp.migratetype().name(),
                head.0 >> PAGEBLOCK_ORDER,
                migratetype_name(*block_mt),
                page.flags.0
            );
            for name in page.flags.names() {
                let _ = write!(w, "{name}|");
            }
            let _ = writeln!(w, "node=0|zone={})", page.zone);
            if let Some(site) = rec.call_site {
                let _ = writeln!(w, " {}:{}:{}", site.file(), site.line(), site.column());
            }
            let _ = writeln!(w, "Owner {}, handle {}\n", page.owner.name(), rec.handle);
        }
        let done = n < RECORDS_PER_ROUND;
        let token = (TOKEN_PAGE_OWNER << 56) | pfn.0;
        let until = self
            .system
            .uptime_ms()
            .saturating_add(super::events::STREAM_POLL_MS);
        if req.park.is_some() {
            let mut r = w.finish(200, "").unwrap_or_else(|_| Response::empty(200));
            if !done {
                r.stream = Some(Pending {
                    token,
                    until_ms: until,
                });
            }
            // (A piece the heap refused is skipped, not retried: the
            // answer goes on with the next records.)
            return Ok(r);
        }
        // Even when everything fit in this round, a stream (one framing
        // for the whole view): the next round finds nothing and ends it.
        let mut r = w.finish(200, CONTENT_TYPE_TEXT)?;
        r.stream = Some(Pending {
            token,
            until_ms: until,
        });
        Ok(r)
    }
}
