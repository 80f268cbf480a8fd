//! `/metrics`: Prometheus text exposition (format 0.0.4) of the zones,
//! the buddy free lists, the API's handles, the vmalloc area and kmap
//! slots, the slab caches, DMA and HTTP (`pagezone_*`), the page
//! allocator's blocks allocated, freed and refused per zone and order,
//! the boot time, and node_exporter's memory families
//! ([`super::node_exporter`]) parsed from the very texts `/proc` serves.
//!
//! Label sets partition what they count: `sum()` over a family's
//! label is the whole (the TCP pool, the pkmap slots).

use core::fmt::{self, Write};

use mm::platform::Platform;
use mm::types::PAGE_SIZE;

use super::Api;
use super::node_exporter;
use super::text;
use super::views::zone_copies;
use crate::server::error::ApiError;
use crate::server::response::{BodyWriter, Response};
use crate::server::stack::NetStats;

/// `Content-Type` of the exposition format.
const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A per-zone gauge: name, help, and how to read it from a zone.
type ZoneGauge = (&'static str, &'static str, fn(&mm::zone::Zone) -> u64);

/// The exposition being written, in page-sized pieces (a
/// [`BodyWriter`], as `seq_file` fills a view page by page): no
/// multi-page buffer, so the text still renders when memory is short and
/// only single pages are left; the first piece the heap refuses fails
/// the whole response (507).
pub(super) struct MetricsOut {
    body: BodyWriter,
}

impl Write for MetricsOut {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.body.write_str(s)
    }
}

pub(super) fn family(out: &mut MetricsOut, name: &str, kind: &str, help: &str) {
    let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
}

/// `s` as a label value: backslash, double quote and newline escaped
/// (cache names may hold any printable ASCII).
pub(super) fn label_value(s: &str) -> impl core::fmt::Display + '_ {
    struct Escaped<'s>(&'s str);
    impl core::fmt::Display for Escaped<'_> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            for c in self.0.chars() {
                match c {
                    '\\' => f.write_str("\\\\")?,
                    '"' => f.write_str("\\\"")?,
                    '\n' => f.write_str("\\n")?,
                    c => f.write_char(c)?,
                }
            }
            Ok(())
        }
    }
    Escaped(s)
}

impl<P: Platform> Api<'_, P> {
    pub(super) fn metrics(&self, net: &NetStats) -> Response {
        match self.metrics_body(net) {
            Ok(response) => response,
            Err(e) => e.into_response(),
        }
    }

    /// The exposition, rendered once into page-sized pieces.
    fn metrics_body(&self, net: &NetStats) -> Result<Response, ApiError> {
        // The /proc texts the node_exporter families are parsed from,
        // rendered first, by the code that serves them.
        let buddyinfo = text::buddyinfo_text(self.mm)?;
        let zoneinfo = text::zoneinfo_text(self.mm, &self.system.zoneinfo_extra())?;
        let meminfo = text::meminfo_text(&self.meminfo())?;
        let vmstat = self.vmstat_text()?;
        // No slab allocator in this build: no node_slabinfo_* (as
        // node_exporter without a /proc/slabinfo).
        let slabinfo = self.slabinfo_text().ok();
        let sources = NodeSources {
            buddyinfo: &buddyinfo,
            zoneinfo: &zoneinfo,
            meminfo: &meminfo,
            vmstat: &vmstat,
            slabinfo: slabinfo.as_deref(),
        };
        let mut out = MetricsOut {
            body: BodyWriter::new(),
        };
        self.render_metrics(net, &sources, &mut out);
        Ok(out.body.finish(200, CONTENT_TYPE_PROMETHEUS)?)
    }

    fn render_metrics(&self, net: &NetStats, node: &NodeSources<'_>, out: &mut MetricsOut) {
        let (zones, _) = zone_copies(self.mm);
        let zones = zones.iter().flatten();

        let per_zone: [ZoneGauge; 4] = [
            ("pagezone_zone_free_pages", "Free pages per zone.", |z| {
                z.free_pages
            }),
            (
                "pagezone_zone_managed_pages",
                "Pages managed by the buddy allocator per zone.",
                |z| z.managed_pages,
            ),
            ("pagezone_zone_present_pages", "RAM pages per zone.", |z| {
                z.present_pages
            }),
            (
                "pagezone_zone_spanned_pages",
                "Pages spanned by each zone, holes included.",
                |z| z.spanned_pages(),
            ),
        ];
        for (name, help, get) in per_zone {
            family(out, name, "gauge", help);
            for z in zones.clone() {
                let _ = writeln!(out, "{name}{{zone=\"{}\"}} {}", z.name(), get(z));
            }
        }
        family(
            out,
            "pagezone_zone_watermark_pages",
            "gauge",
            "Watermarks per zone, in pages.",
        );
        for z in zones.clone() {
            for (level, v) in [
                ("min", z.watermarks.min),
                ("low", z.watermarks.low),
                ("high", z.watermarks.high),
            ] {
                let _ = writeln!(
                    out,
                    "pagezone_zone_watermark_pages{{zone=\"{}\",level=\"{level}\"}} {v}",
                    z.name()
                );
            }
        }
        family(
            out,
            "pagezone_buddy_free_blocks",
            "gauge",
            "Free blocks per zone and order (/proc/buddyinfo).",
        );
        for z in zones.clone() {
            for (order, n) in z.free_area_counts().iter().enumerate() {
                let _ = writeln!(
                    out,
                    "pagezone_buddy_free_blocks{{zone=\"{}\",order=\"{order}\"}} {n}",
                    z.name()
                );
            }
        }

        family(
            out,
            "pagezone_api_handles",
            "gauge",
            "Live API allocations.",
        );
        let _ = writeln!(out, "pagezone_api_handles {}", self.handles.len());
        family(
            out,
            "pagezone_api_pages",
            "gauge",
            "Pages held by API allocations.",
        );
        let _ = writeln!(out, "pagezone_api_pages {}", self.held_pages);
        family(
            out,
            "pagezone_api_quota_pages",
            "gauge",
            "API quota in pages.",
        );
        let _ = writeln!(out, "pagezone_api_quota_pages {}", self.quota_pages);

        self.vm_metrics(out);
        self.wait_metrics(out);
        self.slab_metrics(out);
        self.alloc_counter_metrics(out);

        let dma = self.system.dma();
        family(
            out,
            "pagezone_dma_coherent_buffers",
            "gauge",
            "Coherent DMA buffers.",
        );
        let _ = writeln!(out, "pagezone_dma_coherent_buffers {}", dma.coherent.len());
        family(
            out,
            "pagezone_dma_coherent_bytes",
            "gauge",
            "Bytes in coherent DMA buffers.",
        );
        let bytes: u64 = dma.coherent.iter().map(|b| b.size_bytes).sum();
        let _ = writeln!(out, "pagezone_dma_coherent_bytes {bytes}");
        family(
            out,
            "pagezone_dma_bounce_slots_used",
            "gauge",
            "Bounce-pool slots in use.",
        );
        let _ = writeln!(out, "pagezone_dma_bounce_slots_used {}", dma.bounce.used);
        family(
            out,
            "pagezone_dma_bounced_bytes_total",
            "counter",
            "Bytes copied through the bounce pool.",
        );
        let _ = writeln!(
            out,
            "pagezone_dma_bounced_bytes_total {}",
            dma.bounce.bytes_bounced
        );

        family(
            out,
            "pagezone_net_rx_packets_total",
            "counter",
            "Frames received.",
        );
        let _ = writeln!(out, "pagezone_net_rx_packets_total {}", net.rx_packets);
        family(
            out,
            "pagezone_net_tx_packets_total",
            "counter",
            "Frames sent.",
        );
        let _ = writeln!(out, "pagezone_net_tx_packets_total {}", net.tx_packets);
        family(
            out,
            "pagezone_tcp_sockets",
            "gauge",
            "Listening-pool sockets by use (the states add up to the pool).",
        );
        let _ = writeln!(
            out,
            "pagezone_tcp_sockets{{state=\"in_use\"}} {}",
            net.tcp_sockets_in_use
        );
        let _ = writeln!(
            out,
            "pagezone_tcp_sockets{{state=\"listening\"}} {}",
            net.tcp_sockets_total.saturating_sub(net.tcp_sockets_in_use)
        );
        family(
            out,
            "pagezone_tcp_connections_total",
            "counter",
            "TCP connections accepted.",
        );
        let _ = writeln!(
            out,
            "pagezone_tcp_connections_total {}",
            net.tcp_connections
        );
        family(
            out,
            "pagezone_http_requests_total",
            "counter",
            "HTTP requests answered by the API, by route and status (this one not yet counted).",
        );
        self.counters.for_each(|route, status, n| {
            let _ = writeln!(
                out,
                "pagezone_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        });
        family(
            out,
            "pagezone_uptime_seconds",
            "gauge",
            "Seconds since boot.",
        );
        let ms = self.system.uptime_ms();
        let _ = writeln!(
            out,
            "pagezone_uptime_seconds {}.{:03}",
            ms / 1000,
            ms % 1000
        );
        family(out, "pagezone_page_size_bytes", "gauge", "Size of a page.");
        let _ = writeln!(out, "pagezone_page_size_bytes {PAGE_SIZE}");
        // The usual `*_build_info` gauge: constant 1, the facts in labels.
        family(
            out,
            "pagezone_build_info",
            "gauge",
            "A constant 1 labelled with the kernel's version.",
        );
        let _ = writeln!(
            out,
            "pagezone_build_info{{version=\"{}\"}} 1",
            label_value(self.system.version())
        );
        if let Some(boot) = self.system.boot_time_unix() {
            // A timestamp, so `time() - pagezone_boot_time_seconds` is
            // the uptime and a reboot shows as a step (node_exporter's
            // node_boot_time_seconds and node_time_seconds beside it).
            family(
                out,
                "pagezone_boot_time_seconds",
                "gauge",
                "Unix time of the boot: the CMOS RTC (UTC) read at boot, less the uptime then.",
            );
            let _ = writeln!(out, "pagezone_boot_time_seconds {boot}");
            family(
                out,
                "node_boot_time_seconds",
                "gauge",
                "Node boot time, in unixtime.",
            );
            let _ = writeln!(out, "node_boot_time_seconds {boot}");
            family(
                out,
                "node_time_seconds",
                "gauge",
                "System time in seconds since epoch (1970).",
            );
            let ms = self.system.uptime_ms();
            let _ = writeln!(
                out,
                "node_time_seconds {}.{:03}",
                boot + ms / 1000,
                ms % 1000
            );
        }
        // node_exporter's families; a family that does not fit sets the
        // overflow flag like any other write.
        let _ = node_exporter::buddyinfo(node.buddyinfo, out);
        let _ = node_exporter::zoneinfo(node.zoneinfo, out);
        let _ = node_exporter::meminfo(node.meminfo, out);
        if let Some(slabinfo) = node.slabinfo {
            let _ = node_exporter::slabinfo(slabinfo, out);
        }
        let _ = node_exporter::vmstat(node.vmstat, out);
    }

    /// `pagezone_page_{alloc,free,alloc_fail}_total{zone,order}`: the page
    /// allocator's [`mm::vmstat::AllocCounters`], every zone and order
    /// (zeros included, so that `rate()` has a series from the start).
    fn alloc_counter_metrics(&self, out: &mut MetricsOut) {
        let counters = *self.mm.lock().alloc_counters();
        let families = [
            (
                "pagezone_page_alloc_total",
                "Blocks alloc_pages() handed out, by the zone they came from and order.",
                &counters.alloc,
            ),
            (
                "pagezone_page_free_total",
                "Blocks freed to the page allocator (boot memory excluded), by zone and order.",
                &counters.free,
            ),
            (
                "pagezone_page_alloc_fail_total",
                "alloc_pages() calls that found no memory, by the request's highest zone and order (a request retried after reclaim counts each failed try).",
                &counters.fail,
            ),
        ];
        for (name, help, table) in families {
            family(out, name, "counter", help);
            for zt in mm::zone::ZoneType::ALL {
                for (order, n) in table[zt.index()].iter().enumerate() {
                    let _ = writeln!(
                        out,
                        "{name}{{zone=\"{}\",order=\"{order}\"}} {n}",
                        zt.name()
                    );
                }
            }
        }
    }
}

/// The `/proc` texts node_exporter's families are parsed from.
struct NodeSources<'t> {
    buddyinfo: &'t str,
    zoneinfo: &'t str,
    meminfo: &'t str,
    vmstat: &'t str,
    slabinfo: Option<&'t str>,
}
