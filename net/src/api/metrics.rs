//! `/metrics`: Prometheus text exposition (format 0.0.4) of the zones,
//! the buddy free lists, the API's handles, the vmalloc area and kmap
//! slots, the slab caches, DMA and HTTP.

use alloc::string::String;
use core::fmt::Write;

use mm::platform::Platform;
use mm::types::PAGE_SIZE;

use super::Api;
use super::views::zone_copies;
use crate::server::error::ApiError;
use crate::server::response::Response;
use crate::server::stack::NetStats;

/// `Content-Type` of the exposition format.
const CONTENT_TYPE_PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A per-zone gauge: name, help, and how to read it from a zone.
type ZoneGauge = (&'static str, &'static str, fn(&mm::zone::Zone) -> u64);

pub(super) fn family(out: &mut String, name: &str, kind: &str, help: &str) {
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
        let (zones, _) = zone_copies(self.mm);
        let zones = zones.iter().flatten();
        let mut out = String::new();
        if out.try_reserve(64 * 1024).is_err() {
            return ApiError::enomem("out of memory building the response").into_response();
        }

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
            family(&mut out, name, "gauge", help);
            for z in zones.clone() {
                let _ = writeln!(out, "{name}{{zone=\"{}\"}} {}", z.name(), get(z));
            }
        }
        family(
            &mut out,
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
            &mut out,
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
            &mut out,
            "pagezone_api_handles",
            "gauge",
            "Live API allocations.",
        );
        let _ = writeln!(out, "pagezone_api_handles {}", self.handles.len());
        family(
            &mut out,
            "pagezone_api_pages",
            "gauge",
            "Pages held by API allocations.",
        );
        let _ = writeln!(out, "pagezone_api_pages {}", self.held_pages);
        family(
            &mut out,
            "pagezone_api_quota_pages",
            "gauge",
            "API quota in pages.",
        );
        let _ = writeln!(out, "pagezone_api_quota_pages {}", self.quota_pages);

        self.vm_metrics(&mut out);
        self.wait_metrics(&mut out);
        self.slab_metrics(&mut out);

        let dma = self.system.dma();
        family(
            &mut out,
            "pagezone_dma_coherent_buffers",
            "gauge",
            "Coherent DMA buffers.",
        );
        let _ = writeln!(out, "pagezone_dma_coherent_buffers {}", dma.coherent.len());
        family(
            &mut out,
            "pagezone_dma_coherent_bytes",
            "gauge",
            "Bytes in coherent DMA buffers.",
        );
        let bytes: u64 = dma.coherent.iter().map(|b| b.size_bytes).sum();
        let _ = writeln!(out, "pagezone_dma_coherent_bytes {bytes}");
        family(
            &mut out,
            "pagezone_dma_bounce_slots_used",
            "gauge",
            "Bounce-pool slots in use.",
        );
        let _ = writeln!(out, "pagezone_dma_bounce_slots_used {}", dma.bounce.used);
        family(
            &mut out,
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
            &mut out,
            "pagezone_net_rx_packets_total",
            "counter",
            "Frames received.",
        );
        let _ = writeln!(out, "pagezone_net_rx_packets_total {}", net.rx_packets);
        family(
            &mut out,
            "pagezone_net_tx_packets_total",
            "counter",
            "Frames sent.",
        );
        let _ = writeln!(out, "pagezone_net_tx_packets_total {}", net.tx_packets);
        family(
            &mut out,
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
            &mut out,
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
            &mut out,
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
            &mut out,
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
        family(
            &mut out,
            "pagezone_page_size_bytes",
            "gauge",
            "Size of a page.",
        );
        let _ = writeln!(out, "pagezone_page_size_bytes {PAGE_SIZE}");
        // The usual `*_build_info` gauge: constant 1, the facts in labels.
        family(
            &mut out,
            "pagezone_build_info",
            "gauge",
            "A constant 1 labelled with the kernel's version.",
        );
        let _ = writeln!(
            out,
            "pagezone_build_info{{version=\"{}\"}} 1",
            self.system.version()
        );
        Response::bytes(200, CONTENT_TYPE_PROMETHEUS, out.into_bytes())
    }
}
