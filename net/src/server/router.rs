//! The static route table of API.md.
//!
//! Each route is one line of the `routes!` invocation below: method,
//! pattern, and the [`RouteId`] variant the API layer matches on. A pattern
//! is a path whose segments are literals, `{name}` (one non-empty segment)
//! or, last, `{*name}` (the non-empty rest, slashes included). HEAD is
//! served wherever GET is. Routes are tried in table order, so a literal
//! route that overlaps a `{param}` one must come first.
//!
//! [`route`] answers [`RouteMatch::Found`] with the captured parameters,
//! [`RouteMatch::MethodNotAllowed`] with the `Allow` header value when the
//! path exists under other methods, or [`RouteMatch::NotFound`].

use alloc::string::String;

use crate::server::http::Method;

/// Most `{param}`s a pattern may hold (checked by a test).
pub const MAX_PARAMS: usize = 4;

/// One entry of [`ROUTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: Method,
    pub pattern: &'static str,
    pub id: RouteId,
}

macro_rules! routes {
    ($( $(#[$doc:meta])* $method:ident $pattern:literal => $id:ident, )*) => {
        /// What a request is for; one variant per route of [`ROUTES`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RouteId {
            $(
                #[doc = concat!("`", stringify!($method), " ", $pattern, "`")]
                $(#[$doc])*
                $id,
            )*
        }

        /// How many routes [`ROUTES`] has (`RouteId as usize` is below it).
        pub const NR_ROUTES: usize = [$( RouteId::$id, )*].len();

        /// Every route of API.md, in matching order.
        pub static ROUTES: &[Route] = &[
            $( Route { method: Method::$method, pattern: $pattern, id: RouteId::$id }, )*
        ];

        impl RouteId {
            /// The method this route answers (GET routes answer HEAD too).
            pub const fn method(self) -> Method {
                match self { $( RouteId::$id => Method::$method, )* }
            }

            /// The pattern, e.g. `/api/alloc/{id}/fill` (metrics labels,
            /// `/openapi.json`).
            pub const fn pattern(self) -> &'static str {
                match self { $( RouteId::$id => $pattern, )* }
            }
        }
    };
}

routes! {
    // Dashboard and assets.
    Get "/" => Dashboard,
    Get "/ui/{*path}" => UiAsset,
    // Read-only JSON views.
    Get "/api/health" => Health,
    Get "/api/memmap" => Memmap,
    Get "/api/zones" => Zones,
    Get "/api/buddyinfo" => Buddyinfo,
    Get "/api/meminfo" => Meminfo,
    Get "/api/slabinfo" => Slabinfo,
    Get "/api/vmallocinfo" => Vmallocinfo,
    Get "/api/kmap" => KmapInfo,
    Get "/api/dma" => Dma,
    Get "/api/mempools" => MempoolList,
    Get "/api/allocations" => Allocations,
    /// `?addr=0x…`
    Get "/api/pagetable" => Pagetable,
    Get "/api/net" => NetInfo,
    /// The consistency walk of every allocator.
    Get "/api/selfcheck" => Selfcheck,
    /// `?since=SEQ`: the kernel log ring as `dmesg` prints it.
    Get "/api/dmesg" => Dmesg,
    Get "/api/dmesg.json" => DmesgJson,
    Get "/api/vmstat" => Vmstat,
    /// `?event=&zone=&order=`: the tracepoints as Server-Sent Events.
    Get "/api/events" => Events,
    // Tasks and the OOM killer.
    Post "/api/tasks" => TaskCreate,
    Get "/api/tasks" => TaskList,
    Get "/api/tasks/{pid}" => TaskGet,
    Delete "/api/tasks/{pid}" => TaskDelete,
    Put "/api/tasks/{pid}/oom_score_adj" => TaskOomScoreAdj,
    Get "/api/oom" => Oom,
    /// `?start_pfn=&count=` (the dashboard's memory map)
    Get "/api/pagemap" => Pagemap,
    Get "/metrics" => Metrics,
    Get "/openapi.json" => OpenApi,
    // Linux text views.
    Get "/proc/buddyinfo" => ProcBuddyinfo,
    Get "/proc/zoneinfo" => ProcZoneinfo,
    Get "/proc/slabinfo" => ProcSlabinfo,
    Get "/proc/vmallocinfo" => ProcVmallocinfo,
    Get "/proc/meminfo" => ProcMeminfo,
    Get "/proc/iomem" => ProcIomem,
    Get "/proc/pagetypeinfo" => ProcPagetypeinfo,
    Get "/proc/vmstat" => ProcVmstat,
    Get "/proc/{pid}/oom_score" => ProcOomScore,
    Get "/proc/{pid}/oom_score_adj" => ProcOomScoreAdj,
    // External fragmentation (Linux's debugfs), before the fault
    // attributes' pattern, which would match them too.
    Get "/sys/kernel/debug/extfrag/extfrag_index" => ExtfragIndex,
    Get "/sys/kernel/debug/extfrag/unusable_index" => UnusableIndex,
    /// Needs `page_owner=on`; streamed.
    Get "/sys/kernel/debug/page_owner" => PageOwner,
    // Fault injection (Linux's debugfs).
    Get "/sys/kernel/debug/{fault}/{attr}" => FaultAttrGet,
    Put "/sys/kernel/debug/{fault}/{attr}" => FaultAttrSet,
    // tracefs (kernel/trace): literal routes before the `{param}` ones.
    Get "/sys/kernel/tracing/trace" => TraceRead,
    /// Any body: clears the ring (`echo > trace`).
    Put "/sys/kernel/tracing/trace" => TraceClear,
    /// Consuming and blocking: a stream of lines until the client closes.
    Get "/sys/kernel/tracing/trace_pipe" => TracePipe,
    Get "/sys/kernel/tracing/available_events" => TraceAvailableEvents,
    Get "/sys/kernel/tracing/buffer_size_kb" => TraceBufferSizeKb,
    Get "/sys/kernel/tracing/buffer_total_size_kb" => TraceBufferTotalSizeKb,
    /// `{cpu}` is `cpuN`; `{file}` is `trace`, `stats` or `buffer_size_kb`.
    Get "/sys/kernel/tracing/per_cpu/{cpu}/{file}" => TracePerCpu,
    Get "/sys/kernel/tracing/events/enable" => TraceEnableAllGet,
    Put "/sys/kernel/tracing/events/enable" => TraceEnableAllSet,
    Get "/sys/kernel/tracing/events/{system}/enable" => TraceEnableSystemGet,
    Put "/sys/kernel/tracing/events/{system}/enable" => TraceEnableSystemSet,
    Get "/sys/kernel/tracing/events/{system}/{event}/enable" => TraceEnableEventGet,
    Put "/sys/kernel/tracing/events/{system}/{event}/enable" => TraceEnableEventSet,
    // Commands.
    Post "/api/alloc" => Alloc,
    Get "/api/alloc/{id}" => HandleInfo,
    /// `?order=K` on a `pages` handle
    Delete "/api/alloc/{id}" => Free,
    Post "/api/alloc/{id}/fill" => Fill,
    Get "/api/alloc/{id}/checksum" => Checksum,
    Post "/api/caches" => CacheCreate,
    Delete "/api/caches/{name}" => CacheDestroy,
    Post "/api/caches/{name}/shrink" => CacheShrink,
    Post "/api/mempools" => MempoolCreate,
    Delete "/api/mempools/{name}" => MempoolDestroy,
    Post "/api/mempools/{name}/resize" => MempoolResize,
    Post "/api/kmap" => Kmap,
    Delete "/api/kmap/{slot}" => Kunmap,
    Post "/api/reset" => Reset,
    /// `{"zone"?:NAME}`: `/proc/sys/vm/compact_memory`.
    Post "/api/compact" => Compact,
    Get "/api/cma" => Cma,
    /// Online CPUs with their per-CPU page lists.
    Get "/api/cpus" => Cpus,
    Post "/api/bench" => Bench,
}

/// Path parameters captured by a match, borrowed from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'p> {
    len: usize,
    items: [(&'static str, &'p str); MAX_PARAMS],
}

impl<'p> Params<'p> {
    /// The value captured for `{name}`.
    pub fn get(&self, name: &str) -> Option<&'p str> {
        self.iter().find(|(n, _)| *n == name).map(|(_, v)| v)
    }

    /// `(name, value)` pairs in pattern order.
    pub fn iter(&self) -> impl Iterator<Item = (&'static str, &'p str)> + '_ {
        self.items[..self.len].iter().copied()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn push(&mut self, name: &'static str, value: &'p str) -> bool {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = (name, value);
                self.len += 1;
                true
            }
            None => false,
        }
    }
}

/// The outcome of [`route`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteMatch<'p> {
    Found(RouteId, Params<'p>),
    NotFound,
    /// The path exists for other methods; the value for `Allow`
    /// (`"GET, HEAD, POST"`: canonical order, HEAD with GET).
    MethodNotAllowed(String),
}

/// Route a request through [`ROUTES`].
pub fn route(method: Method, path: &str) -> RouteMatch<'_> {
    route_in(ROUTES, method, path)
}

/// Route through any table (tests, or a second server on another port).
pub fn route_in<'p>(table: &[Route], method: Method, path: &'p str) -> RouteMatch<'p> {
    let wanted = if method == Method::Head {
        Method::Get
    } else {
        method
    };
    let mut allowed = [false; Method::ALL.len()];
    for r in table {
        let Some(params) = match_pattern(r.pattern, path) else {
            continue;
        };
        if r.method == wanted {
            return RouteMatch::Found(r.id, params);
        }
        for (slot, m) in allowed.iter_mut().zip(Method::ALL) {
            *slot |= m == r.method || (m == Method::Head && r.method == Method::Get);
        }
    }
    if !allowed.contains(&true) {
        return RouteMatch::NotFound;
    }
    let mut allow = String::new();
    for (m, _) in Method::ALL.into_iter().zip(allowed).filter(|(_, a)| *a) {
        if !allow.is_empty() {
            allow.push_str(", ");
        }
        allow.push_str(m.as_str());
    }
    RouteMatch::MethodNotAllowed(allow)
}

/// Match `path` against `pattern`, capturing parameters.
fn match_pattern<'p>(pattern: &'static str, path: &'p str) -> Option<Params<'p>> {
    let mut params = Params::default();
    // `None` once every segment of the path has been consumed.
    let mut rest = Some(path.strip_prefix('/')?);
    for want in pattern.strip_prefix('/')?.split('/') {
        let here = rest?;
        if let Some(name) = want.strip_prefix("{*").and_then(|w| w.strip_suffix('}')) {
            return (!here.is_empty() && params.push(name, here)).then_some(params);
        }
        let (segment, tail) = match here.split_once('/') {
            Some((segment, tail)) => (segment, Some(tail)),
            None => (here, None),
        };
        if let Some(name) = want.strip_prefix('{').and_then(|w| w.strip_suffix('}')) {
            if segment.is_empty() || !params.push(name, segment) {
                return None;
            }
        } else if want != segment {
            return None;
        }
        rest = tail;
    }
    rest.is_none().then_some(params)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::vec::Vec;

    fn found(method: Method, path: &str) -> (RouteId, Vec<(&'static str, &str)>) {
        match route(method, path) {
            RouteMatch::Found(id, params) => (id, params.iter().collect()),
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    fn allow(method: Method, path: &str) -> String {
        match route(method, path) {
            RouteMatch::MethodNotAllowed(allow) => allow,
            other => panic!("{method} {path}: {other:?}"),
        }
    }

    #[test]
    fn every_api_md_route() {
        let expected: &[(Method, &str, RouteId)] = &[
            (Method::Get, "/", RouteId::Dashboard),
            (Method::Get, "/ui/app.js", RouteId::UiAsset),
            (Method::Get, "/api/health", RouteId::Health),
            (Method::Get, "/api/memmap", RouteId::Memmap),
            (Method::Get, "/api/zones", RouteId::Zones),
            (Method::Get, "/api/buddyinfo", RouteId::Buddyinfo),
            (Method::Get, "/api/meminfo", RouteId::Meminfo),
            (Method::Get, "/api/slabinfo", RouteId::Slabinfo),
            (Method::Get, "/api/vmallocinfo", RouteId::Vmallocinfo),
            (Method::Get, "/api/kmap", RouteId::KmapInfo),
            (Method::Get, "/api/dma", RouteId::Dma),
            (Method::Get, "/api/mempools", RouteId::MempoolList),
            (Method::Get, "/api/allocations", RouteId::Allocations),
            (Method::Get, "/api/pagetable", RouteId::Pagetable),
            (Method::Get, "/api/net", RouteId::NetInfo),
            (Method::Get, "/api/pagemap", RouteId::Pagemap),
            (Method::Get, "/metrics", RouteId::Metrics),
            (Method::Get, "/openapi.json", RouteId::OpenApi),
            (Method::Get, "/proc/buddyinfo", RouteId::ProcBuddyinfo),
            (Method::Get, "/proc/zoneinfo", RouteId::ProcZoneinfo),
            (Method::Get, "/proc/slabinfo", RouteId::ProcSlabinfo),
            (Method::Get, "/proc/vmallocinfo", RouteId::ProcVmallocinfo),
            (Method::Get, "/proc/meminfo", RouteId::ProcMeminfo),
            (Method::Get, "/proc/iomem", RouteId::ProcIomem),
            (Method::Get, "/proc/pagetypeinfo", RouteId::ProcPagetypeinfo),
            (Method::Post, "/api/alloc", RouteId::Alloc),
            (Method::Delete, "/api/alloc/12", RouteId::Free),
            (Method::Post, "/api/alloc/12/fill", RouteId::Fill),
            (Method::Get, "/api/alloc/12/checksum", RouteId::Checksum),
            (Method::Post, "/api/caches", RouteId::CacheCreate),
            (
                Method::Delete,
                "/api/caches/my-cache",
                RouteId::CacheDestroy,
            ),
            (
                Method::Post,
                "/api/caches/my-cache/shrink",
                RouteId::CacheShrink,
            ),
            (Method::Post, "/api/mempools", RouteId::MempoolCreate),
            (Method::Delete, "/api/mempools/p", RouteId::MempoolDestroy),
            (
                Method::Post,
                "/api/mempools/p/resize",
                RouteId::MempoolResize,
            ),
            (Method::Post, "/api/kmap", RouteId::Kmap),
            (Method::Delete, "/api/kmap/3", RouteId::Kunmap),
            (Method::Post, "/api/reset", RouteId::Reset),
            (Method::Post, "/api/bench", RouteId::Bench),
            (Method::Get, "/api/alloc/5", RouteId::HandleInfo),
            (Method::Get, "/api/selfcheck", RouteId::Selfcheck),
            (Method::Get, "/api/dmesg", RouteId::Dmesg),
            (Method::Get, "/api/dmesg.json", RouteId::DmesgJson),
            (Method::Get, "/proc/vmstat", RouteId::ProcVmstat),
            (Method::Get, "/api/vmstat", RouteId::Vmstat),
            (Method::Get, "/proc/7/oom_score", RouteId::ProcOomScore),
            (
                Method::Get,
                "/proc/7/oom_score_adj",
                RouteId::ProcOomScoreAdj,
            ),
            (Method::Post, "/api/tasks", RouteId::TaskCreate),
            (Method::Get, "/api/tasks", RouteId::TaskList),
            (Method::Get, "/api/tasks/7", RouteId::TaskGet),
            (Method::Delete, "/api/tasks/7", RouteId::TaskDelete),
            (
                Method::Put,
                "/api/tasks/7/oom_score_adj",
                RouteId::TaskOomScoreAdj,
            ),
            (Method::Get, "/api/oom", RouteId::Oom),
            (
                Method::Get,
                "/sys/kernel/debug/failslab/probability",
                RouteId::FaultAttrGet,
            ),
            (
                Method::Put,
                "/sys/kernel/debug/fail_page_alloc/times",
                RouteId::FaultAttrSet,
            ),
            (
                Method::Get,
                "/sys/kernel/debug/extfrag/extfrag_index",
                RouteId::ExtfragIndex,
            ),
            (Method::Post, "/api/compact", RouteId::Compact),
            (Method::Get, "/api/cma", RouteId::Cma),
            (Method::Get, "/api/cpus", RouteId::Cpus),
            (
                Method::Get,
                "/sys/kernel/debug/extfrag/unusable_index",
                RouteId::UnusableIndex,
            ),
            (Method::Get, "/sys/kernel/tracing/trace", RouteId::TraceRead),
            (Method::Get, "/api/events", RouteId::Events),
            (
                Method::Get,
                "/sys/kernel/debug/page_owner",
                RouteId::PageOwner,
            ),
            (
                Method::Put,
                "/sys/kernel/tracing/trace",
                RouteId::TraceClear,
            ),
            (
                Method::Get,
                "/sys/kernel/tracing/trace_pipe",
                RouteId::TracePipe,
            ),
            (
                Method::Get,
                "/sys/kernel/tracing/available_events",
                RouteId::TraceAvailableEvents,
            ),
            (
                Method::Get,
                "/sys/kernel/tracing/buffer_size_kb",
                RouteId::TraceBufferSizeKb,
            ),
            (
                Method::Get,
                "/sys/kernel/tracing/buffer_total_size_kb",
                RouteId::TraceBufferTotalSizeKb,
            ),
            (
                Method::Get,
                "/sys/kernel/tracing/per_cpu/cpu1/stats",
                RouteId::TracePerCpu,
            ),
            (
                Method::Get,
                "/sys/kernel/tracing/events/enable",
                RouteId::TraceEnableAllGet,
            ),
            (
                Method::Put,
                "/sys/kernel/tracing/events/enable",
                RouteId::TraceEnableAllSet,
            ),
            (
                Method::Get,
                "/sys/kernel/tracing/events/kmem/enable",
                RouteId::TraceEnableSystemGet,
            ),
            (
                Method::Put,
                "/sys/kernel/tracing/events/vmscan/enable",
                RouteId::TraceEnableSystemSet,
            ),
            (
                Method::Get,
                "/sys/kernel/tracing/events/kmem/mm_page_alloc/enable",
                RouteId::TraceEnableEventGet,
            ),
            (
                Method::Put,
                "/sys/kernel/tracing/events/oom/mark_victim/enable",
                RouteId::TraceEnableEventSet,
            ),
        ];
        for &(m, path, id) in expected {
            assert_eq!(found(m, path).0, id, "{m} {path}");
            assert_eq!(id.method(), m);
        }
        assert_eq!(expected.len(), ROUTES.len(), "a route without a test line");
    }

    #[test]
    fn table_is_well_formed() {
        let mut seen = HashSet::new();
        for r in ROUTES {
            assert!(seen.insert((r.method, r.pattern)), "duplicate {r:?}");
            assert!(r.pattern.starts_with('/'), "{r:?}");
            assert_ne!(r.method, Method::Head, "HEAD follows GET: {r:?}");
            assert_ne!(r.method, Method::Other, "{r:?}");
            let params = r.pattern.matches('{').count();
            assert!(params <= MAX_PARAMS, "{r:?}");
            assert_eq!(r.id.pattern(), r.pattern);
            assert_eq!(r.id.method(), r.method);
            if let Some(i) = r.pattern.find("{*") {
                assert!(
                    !r.pattern[i..].contains('/'),
                    "catch-all must be last: {r:?}"
                );
            }
        }
        let ids: HashSet<_> = ROUTES.iter().map(|r| r.id).collect();
        assert_eq!(ids.len(), ROUTES.len(), "an id used twice");
    }

    #[test]
    fn params_are_captured() {
        assert_eq!(
            found(Method::Post, "/api/alloc/42/fill"),
            (RouteId::Fill, vec![("id", "42")])
        );
        assert_eq!(
            found(Method::Delete, "/api/caches/kmalloc-64"),
            (RouteId::CacheDestroy, vec![("name", "kmalloc-64")])
        );
        assert_eq!(
            found(Method::Get, "/ui/css/site.css"),
            (RouteId::UiAsset, vec![("path", "css/site.css")])
        );
        match route(Method::Get, "/api/alloc/7/checksum") {
            RouteMatch::Found(RouteId::Checksum, p) => {
                assert_eq!(p.get("id"), Some("7"));
                assert_eq!(p.get("nope"), None);
                assert_eq!(p.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        match route(Method::Get, "/api/health") {
            RouteMatch::Found(_, p) => assert!(p.is_empty()),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn head_follows_get() {
        assert_eq!(found(Method::Head, "/api/zones").0, RouteId::Zones);
        assert_eq!(found(Method::Head, "/").0, RouteId::Dashboard);
        assert_eq!(allow(Method::Head, "/api/alloc"), "POST");
    }

    #[test]
    fn not_found() {
        for path in [
            "/nope",
            "/api",
            "/api/",
            "/api/health/",
            "//api/health",
            "/api/healthz",
            "/api/alloc/",
            "/api/alloc//fill",
            "/api/alloc/1/fill/x",
            "/ui",
            "/ui/",
            "",
            "*",
            "/proc",
            "/proc/cpuinfo",
        ] {
            assert_eq!(route(Method::Get, path), RouteMatch::NotFound, "{path:?}");
            assert_eq!(route(Method::Post, path), RouteMatch::NotFound, "{path:?}");
        }
    }

    #[test]
    fn method_not_allowed_lists_exact_allow() {
        assert_eq!(allow(Method::Post, "/api/health"), "GET, HEAD");
        assert_eq!(allow(Method::Delete, "/"), "GET, HEAD");
        assert_eq!(allow(Method::Get, "/api/alloc"), "POST");
        assert_eq!(allow(Method::Put, "/api/alloc/5"), "GET, HEAD, DELETE");
        assert_eq!(allow(Method::Put, "/api/kmap"), "GET, HEAD, POST");
        assert_eq!(allow(Method::Delete, "/api/mempools"), "GET, HEAD, POST");
        assert_eq!(allow(Method::Get, "/api/caches/x"), "DELETE");
        assert_eq!(allow(Method::Post, "/api/alloc/5/checksum"), "GET, HEAD");
        assert_eq!(allow(Method::Other, "/api/zones"), "GET, HEAD");
        assert_eq!(allow(Method::Options, "/api/reset"), "POST");
        assert_eq!(allow(Method::Patch, "/proc/meminfo"), "GET, HEAD");
    }

    #[test]
    fn table_order_and_custom_tables() {
        let table = [
            Route {
                method: Method::Get,
                pattern: "/x/{a}/{b}",
                id: RouteId::Health,
            },
            Route {
                method: Method::Delete,
                pattern: "/x/lit/{b}",
                id: RouteId::Free,
            },
            Route {
                method: Method::Put,
                pattern: "/x/{a}/{b}",
                id: RouteId::Fill,
            },
        ];
        match route_in(&table, Method::Get, "/x/1/2") {
            RouteMatch::Found(RouteId::Health, p) => {
                assert_eq!((p.get("a"), p.get("b")), (Some("1"), Some("2")));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            route_in(&table, Method::Post, "/x/lit/2"),
            RouteMatch::MethodNotAllowed("GET, HEAD, PUT, DELETE".into())
        );
        assert_eq!(route_in(&table, Method::Get, "/x/1"), RouteMatch::NotFound);
        assert_eq!(route_in(&[], Method::Get, "/"), RouteMatch::NotFound);
    }

    #[test]
    fn too_many_params_do_not_panic() {
        let table = [Route {
            method: Method::Get,
            pattern: "/{a}/{b}/{c}/{d}/{e}",
            id: RouteId::Health,
        }];
        assert_eq!(
            route_in(&table, Method::Get, "/1/2/3/4/5"),
            RouteMatch::NotFound
        );
    }
}
