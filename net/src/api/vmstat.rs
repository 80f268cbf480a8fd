//! `/proc/vmstat` (Linux 6.1's names and order, cf. `vmstat_show()`) and
//! `/api/vmstat` (the same as one JSON object): the page allocator's
//! counters from `mm::vmstat`, plus the node counters only the kernel
//! knows (slab and page-table pages, kernel stacks). Only counters that
//! something maintains are printed: every number is real.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use mm::platform::Platform;
use mm::procfs::{self, VmstatExtra};
use mm::types::PAGE_SIZE;

use super::Api;
use super::text::{render_locked, text_or_error};
use crate::server::error::ApiError;
use crate::server::response::Response;

/// Most lines `/proc/vmstat` can have (`vmstat_text[]` is ~170 long).
const MAX_FIELDS: usize = 256;

/// The copied fields, serialized as one object.
struct Fields {
    items: [(&'static str, u64); MAX_FIELDS],
    len: usize,
}

impl Serialize for Fields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.len))?;
        for (name, value) in &self.items[..self.len] {
            m.serialize_entry(name, value)?;
        }
        m.end()
    }
}

impl<P: Platform> Api<'_, P> {
    /// What `VmstatExtra` carries: the kernel's own numbers.
    fn vmstat_extra(&self) -> VmstatExtra {
        let mi = self.meminfo();
        VmstatExtra {
            // Every slab here is unreclaimable (no shrinker frees objects).
            nr_slab_reclaimable: Some(0),
            nr_slab_unreclaimable: self.slab_pages(),
            nr_kernel_stack_kb: Some(mi.kernel_stack_kb),
            nr_page_table_pages: Some(mi.page_tables_kb / (PAGE_SIZE >> 10)),
        }
    }

    /// `GET /proc/vmstat`.
    pub(super) fn proc_vmstat(&self) -> Response {
        text_or_error(self.vmstat_text())
    }

    /// `/proc/vmstat`'s text (also parsed by `/metrics`).
    pub(super) fn vmstat_text(&self) -> Result<alloc::string::String, ApiError> {
        let extra = self.vmstat_extra();
        render_locked(self.mm, 4096, |pa, w| procfs::vmstat(pa, &extra, w))
    }

    /// `GET /api/vmstat`: the same fields, copied under the lock into a
    /// fixed array (no heap there), serialized after.
    pub(super) fn api_vmstat(&self) -> Result<Response, ApiError> {
        let extra = self.vmstat_extra();
        let mut fields = Fields {
            items: [("", 0); MAX_FIELDS],
            len: 0,
        };
        {
            let pa = self.mm.lock();
            for (slot, field) in fields
                .items
                .iter_mut()
                .zip(procfs::vmstat_fields(&pa, &extra))
            {
                *slot = field;
                fields.len += 1;
            }
        }
        Ok(Response::json(200, &fields))
    }
}
