//! Fault injection at run time, at Linux's debugfs paths
//! (`Documentation/fault-injection/fault-injection.rst`):
//! `GET`/`PUT /sys/kernel/debug/{fail_page_alloc,failslab}/{attribute}`.
//! A `PUT` body is the value as `echo` writes it (`10`, `-1`, `1\n`); a
//! `GET` answers it as debugfs reads it (the number and a newline), plus
//! the read-only `injected` count Pagezone adds. Values are validated by
//! `mm::fault_inject` (probability 0..=100, interval ≥ 1, times ≥ -1,
//! booleans 0/1): a bad one is 400 and changes nothing; an unknown
//! attribute or file is 404.
//!
//! The kernel's own heap allocates with `__GFP_NOFAIL`, which both hooks
//! skip as Linux's do, so injection fails the API's allocations — the
//! requests — and never the kernel that answers them.

use alloc::format;

use mm::fault_inject::{FailPageAlloc, FailSlab, FaultAttrError};
use mm::platform::Platform;

use super::Api;
use super::slab::locked;
use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::Response;

/// The two fault files this build has.
#[derive(Clone, Copy)]
enum Fault {
    PageAlloc,
    Slab,
}

fn fault(name: &str) -> Result<Fault, ApiError> {
    match name {
        "fail_page_alloc" => Ok(Fault::PageAlloc),
        "failslab" => Ok(Fault::Slab),
        _ => Err(ApiError::enoent(format!(
            "no fault injection capability '{name}' (fail_page_alloc, failslab)"
        ))),
    }
}

fn attr_error(fault: &str, attr: &str, e: FaultAttrError) -> ApiError {
    match e {
        FaultAttrError::UnknownAttribute => ApiError::enoent(format!(
            "/sys/kernel/debug/{fault}/{attr}: no such attribute"
        )),
        other => ApiError::einval(format!("/sys/kernel/debug/{fault}/{attr}: {other}")),
    }
}

impl<P: Platform> Api<'_, P> {
    /// Reads one attribute (`injected` counts the failures so far).
    fn fault_get(&self, which: Fault, attr: &str) -> Option<i64> {
        match which {
            Fault::PageAlloc => {
                let pa = self.mm.lock();
                let f: &FailPageAlloc = pa.fail_page_alloc();
                match attr {
                    "injected" => Some(f.attr.injected() as i64),
                    _ => f.get(attr),
                }
            }
            Fault::Slab => locked(self.slab_access().ok()?, |slab, _| {
                let f: &FailSlab = slab.failslab();
                match attr {
                    "injected" => Some(f.attr.injected() as i64),
                    _ => f.get(attr),
                }
            })
            .flatten(),
        }
    }

    /// `GET /sys/kernel/debug/{fault}/{attr}`.
    pub(super) fn fault_attr_get(
        &self,
        fault_name: &str,
        attr: &str,
    ) -> Result<Response, ApiError> {
        let which = fault(fault_name)?;
        let value = self
            .fault_get(which, attr)
            .ok_or_else(|| attr_error(fault_name, attr, FaultAttrError::UnknownAttribute))?;
        Ok(Response::text(200, format!("{value}\n")))
    }

    /// `PUT /sys/kernel/debug/{fault}/{attr}` with the value as the body.
    pub(super) fn fault_attr_set(
        &mut self,
        fault_name: &str,
        attr: &str,
        req: &Request,
    ) -> Result<Response, ApiError> {
        let which = fault(fault_name)?;
        let value = core::str::from_utf8(&req.body)
            .map_err(|_| ApiError::einval("the value must be text, e.g. 10"))?;
        let result = match which {
            Fault::PageAlloc => self.mm.lock().fail_page_alloc_mut().set(attr, value),
            Fault::Slab => locked(self.slab_access()?, |slab, _| {
                slab.failslab_mut().set(attr, value)
            })
            .unwrap_or(Err(FaultAttrError::UnknownAttribute)),
        };
        result.map_err(|e| attr_error(fault_name, attr, e))?;
        self.fault_attr_get(fault_name, attr)
    }
}
