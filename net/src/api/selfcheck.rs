//! `GET /api/selfcheck`: an O(memory) consistency walk over everything
//! the kernel's allocators keep (cf. `CONFIG_DEBUG_VM`, SLUB's
//! `validate_slab_cache()`), plus the API's own claim on memory: every
//! handle's block is allocated, headed where the handle says, owned by
//! the API. The walks are `mm::selfcheck`'s; this module takes each lock
//! in the kernel's order (slab, then zone; vmap, pkmap, kmap_atomic on
//! their own), collects the problems into a fixed buffer (the walk itself
//! never allocates) and renders
//! `{"ok":bool,"checked":{…},"problems":[…],"total_problems":N}`.

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

use mm::page::OwnerTag;
use mm::platform::Platform;
use mm::selfcheck::{self as sc, Checked, Problem, Problems};

use super::Api;
use super::fixed_text::FixedText;
use super::slab::locked;
use super::vm::DynMapper;
use crate::server::error::ApiError;
use crate::server::response::Response;

/// Problems listed in one answer (the count says how many there were).
const MAX_LISTED: usize = 64;

/// `checked` as a JSON object, keyed by `Checked::fields` names.
struct CheckedJson(Checked, u64);

impl Serialize for CheckedJson {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let fields = self.0.fields();
        let mut m = s.serialize_map(Some(fields.len() + 1))?;
        for (name, value) in fields {
            m.serialize_entry(name, &value)?;
        }
        m.serialize_entry("handles", &self.1)?;
        m.end()
    }
}

#[derive(Serialize)]
struct ProblemJson {
    subsystem: &'static str,
    what: &'static str,
    addr: Option<super::views::Hex>,
    /// The problem's `Display`, rendered without the heap.
    text: FixedText<160>,
}

impl<P: Platform> Api<'_, P> {
    /// `GET /api/selfcheck`.
    pub(super) fn selfcheck(&self) -> Result<Response, ApiError> {
        let mut problems: Problems<MAX_LISTED> = Problems::default();
        let mut checked = Checked::default();
        {
            let pa = self.mm.lock();
            sc::check_buddy(&pa, &mut |p| problems.push(p), &mut checked);
            if let Err(what) = pa.check_kernel_reserve() {
                problems.push(Problem::new("reserve", what, None));
            }
            if let Err(what) = pa.check_lru() {
                problems.push(Problem::new("lru", what, None));
            }
            // The API's own claims: a pages handle heads an allocated
            // block of its order that the API owns.
            for h in self.handles.values() {
                let ok = pa.page(h.pfn).is_some_and(|p| {
                    p.is_head() && p.order == h.order.get() && p.owner == OwnerTag::API
                });
                if !ok {
                    problems.push(Problem::new(
                        "api",
                        "pages handle does not head an API-owned block of its order",
                        Some(h.pfn.0),
                    ));
                }
            }
        }
        if let Ok(access) = self.slab_access() {
            let mm = self.mm;
            locked(access, |slab, mem| {
                sc::check_slab(slab, mem, &mut |p| problems.push(p), &mut checked);
                let pa = mm.lock();
                sc::check_slab_pages(slab, &pa, &mut |p| problems.push(p), &mut checked);
            });
        }
        if let Some(vm) = self.vm_state() {
            let mapper = DynMapper(vm.mapper);
            {
                let areas = vm.areas.lock();
                let pa = self.mm.lock();
                sc::check_vmap_areas(
                    &areas,
                    &mapper,
                    &pa,
                    &mut |p| problems.push(p),
                    &mut checked,
                );
            }
            sc::check_pkmap(
                &vm.pkmap.lock(),
                &mapper,
                &mut |p| problems.push(p),
                &mut checked,
            );
            sc::check_kmap_atomic(
                &vm.kmap_atomic.lock(),
                &mapper,
                &mut |p| problems.push(p),
                &mut checked,
            );
        }
        let handles = self.nr_handles() as u64;
        let mut listed = alloc::vec::Vec::new();
        listed
            .try_reserve_exact(problems.iter().count())
            .map_err(|_| ApiError::enomem("out of memory building the selfcheck report"))?;
        listed.extend(problems.iter().map(|p| ProblemJson {
            subsystem: p.subsystem,
            what: p.what,
            addr: p.addr.map(super::views::Hex::new),
            text: FixedText::of(p),
        }));
        #[derive(Serialize)]
        struct Report<'r> {
            ok: bool,
            checked: CheckedJson,
            total_problems: usize,
            problems: &'r [ProblemJson],
        }
        Ok(Response::json(
            200,
            &Report {
                ok: problems.total == 0,
                checked: CheckedJson(checked, handles),
                total_problems: problems.total,
                problems: &listed,
            },
        ))
    }
}
