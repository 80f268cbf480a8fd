//! `/metrics`' node_exporter families: what node_exporter's collectors
//! would export if pointed at Pagezone's own `/proc` files, with their
//! exact metric names, label names, types and help texts, so that the
//! memory panels and alerts written for node_exporter work unchanged.
//!
//! Each function takes the text of one Linux view, rendered by the same
//! code that serves it under `/proc` (so `/metrics` and `/proc` never
//! disagree), and parses it the way node_exporter does:
//!
//! | collector (`collector/*_linux.go`) | parser | families |
//! |---|---|---|
//! | `buddyinfo` | procfs `parseBuddyInfo` | `node_buddyinfo_blocks{node,zone,size}` |
//! | `zoneinfo` | procfs `parseZoneinfo` | `node_zoneinfo_*{node,zone}`, `node_zoneinfo_protection_N` |
//! | `meminfo` | `parseMemInfo` (≤ 1.8; 1.9+ keeps a subset, same names) | `node_memory_<Field>_bytes` |
//! | `slabinfo` | procfs `parseSlabInfo21` | `node_slabinfo_*{slab}` |
//! | `vmstat` | line split, default `--collector.vmstat.fields` | `node_vmstat_<field>` (untyped) |
//!
//! Where node_exporter emits a sample per parsed line, the exposition
//! format wants a family's samples together: each family is written once,
//! with every sample the text has for it, in the text's order.
//!
//! Pure text in, text out: no lock, no allocation (host-tested in
//! [`tests`]).

use core::fmt::{self, Write};

use super::metrics::label_value;

/// `# HELP` and `# TYPE` lines.
fn family(out: &mut impl Write, name: &impl fmt::Display, kind: &str, help: &str) -> fmt::Result {
    write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n")
}

/// `node_buddyinfo_blocks` (`collector/buddyinfo.go`): one gauge per zone
/// and order, `size` being the order, from lines
/// `Node 0, zone      DMA      1      0 …`. Labels in the order
/// node_exporter's client library prints them (sorted by name).
pub fn buddyinfo(text: &str, out: &mut impl Write) -> fmt::Result {
    family(
        out,
        &"node_buddyinfo_blocks",
        "gauge",
        "Count of free blocks according to size.",
    )?;
    for line in text.lines() {
        let parts = line.split_whitespace();
        let mut head = parts.clone();
        let (Some(_), Some(node), Some(_), Some(zone)) =
            (head.next(), head.next(), head.next(), head.next())
        else {
            continue;
        };
        let (node, zone) = (node.trim_end_matches(','), zone.trim_end_matches(','));
        for (size, n) in parts.skip(4).enumerate() {
            writeln!(
                out,
                "node_buddyinfo_blocks{{node=\"{}\",size=\"{size}\",zone=\"{}\"}} {n}",
                label_value(node),
                label_value(zone)
            )?;
        }
    }
    Ok(())
}

/// A `node_zoneinfo_*` family: the `/proc/zoneinfo` key procfs reads,
/// the metric's name, its help text, and whether it is a counter.
type ZoneField = (&'static str, &'static str, &'static str, bool);

/// `collector/zoneinfo_linux.go`'s descriptions, keyed by the line
/// procfs's `parseZoneinfo` takes each value from.
const ZONE_FIELDS: &[ZoneField] = &[
    (
        "nr_free_pages",
        "nr_free_pages",
        "Total number of free pages in the zone",
        false,
    ),
    ("min", "min_pages", "Zone watermark pages_min", false),
    ("low", "low_pages", "Zone watermark pages_low", false),
    ("high", "high_pages", "Zone watermark pages_high", false),
    (
        "scanned",
        "scanned_pages",
        "Pages scanned since last reclaim",
        false,
    ),
    (
        "spanned",
        "spanned_pages",
        "Total pages spanned by the zone, including holes",
        false,
    ),
    (
        "present",
        "present_pages",
        "Physical pages existing within the zone",
        false,
    ),
    (
        "managed",
        "managed_pages",
        "Present pages managed by the buddy system",
        false,
    ),
    (
        "nr_active_anon",
        "nr_active_anon_pages",
        "Number of anonymous pages recently more used",
        false,
    ),
    (
        "nr_inactive_anon",
        "nr_inactive_anon_pages",
        "Number of anonymous pages recently less used",
        false,
    ),
    (
        "nr_isolated_anon",
        "nr_isolated_anon_pages",
        "Temporary isolated pages from anon lru",
        false,
    ),
    (
        "nr_anon_pages",
        "nr_anon_pages",
        "Number of anonymous pages currently used by the system",
        false,
    ),
    (
        "nr_anon_transparent_hugepages",
        "nr_anon_transparent_hugepages",
        "Number of anonymous transparent huge pages currently used by the system",
        false,
    ),
    (
        "nr_active_file",
        "nr_active_file_pages",
        "Number of active pages with file-backing",
        false,
    ),
    (
        "nr_inactive_file",
        "nr_inactive_file_pages",
        "Number of inactive pages with file-backing",
        false,
    ),
    (
        "nr_isolated_file",
        "nr_isolated_file_pages",
        "Temporary isolated pages from file lru",
        false,
    ),
    (
        "nr_file_pages",
        "nr_file_pages",
        "Number of file pages",
        false,
    ),
    (
        "nr_slab_reclaimable",
        "nr_slab_reclaimable_pages",
        "Number of reclaimable slab pages",
        false,
    ),
    (
        "nr_slab_unreclaimable",
        "nr_slab_unreclaimable_pages",
        "Number of unreclaimable slab pages",
        false,
    ),
    (
        "nr_mlock_stack",
        "nr_mlock_stack_pages",
        "mlock()ed pages found and moved off LRU",
        false,
    ),
    (
        "nr_kernel_stack",
        "nr_kernel_stacks",
        "Number of kernel stacks",
        false,
    ),
    (
        "nr_mapped",
        "nr_mapped_pages",
        "Number of mapped pages",
        false,
    ),
    ("nr_dirty", "nr_dirty_pages", "Number of dirty pages", false),
    (
        "nr_writeback",
        "nr_writeback_pages",
        "Number of writeback pages",
        false,
    ),
    (
        "nr_unevictable",
        "nr_unevictable_pages",
        "Number of unevictable pages",
        false,
    ),
    (
        "nr_shmem",
        "nr_shmem_pages",
        "Number of shmem pages (included tmpfs/GEM pages)",
        false,
    ),
    (
        "nr_dirtied",
        "nr_dirtied_total",
        "Page dirtyings since bootup",
        true,
    ),
    (
        "nr_written",
        "nr_written_total",
        "Page writings since bootup",
        true,
    ),
    (
        "numa_hit",
        "numa_hit_total",
        "Allocated in intended node",
        true,
    ),
    (
        "numa_miss",
        "numa_miss_total",
        "Allocated in non intended node",
        true,
    ),
    (
        "numa_foreign",
        "numa_foreign_total",
        "Was intended here, hit elsewhere",
        true,
    ),
    (
        "numa_interleave",
        "numa_interleave_total",
        "Interleaver preferred this zone",
        true,
    ),
    (
        "numa_local",
        "numa_local_total",
        "Allocation from local node",
        true,
    ),
    (
        "numa_other",
        "numa_other_total",
        "Allocation from other node",
        true,
    ),
];

/// Most `protection:` entries a zone line can have (one per zone type).
const MAX_PROTECTION: usize = 8;

/// One `Node N, zone NAME` block of `/proc/zoneinfo` (procfs splits the
/// text on `"\nNode"`): its node and zone, from the regexp
/// `(\d+), zone\s+(\w+)` on the block's first matching line.
struct ZoneBlock<'t> {
    node: &'t str,
    zone: &'t str,
    body: &'t str,
}

fn zone_blocks(text: &str) -> impl Iterator<Item = ZoneBlock<'_>> {
    text.split("\nNode").filter_map(|body| {
        body.lines()
            .find_map(node_and_zone)
            .map(|(node, zone)| ZoneBlock { node, zone, body })
    })
}

/// procfs's `(\d+), zone\s+(\w+)` on one line.
fn node_and_zone(line: &str) -> Option<(&str, &str)> {
    let at = line.find(", zone")?;
    let before = &line[..at];
    let start = before
        .rfind(|c: char| !c.is_ascii_digit())
        .map_or(0, |i| i + 1);
    let node = &before[start..];
    let rest = &line[at + ", zone".len()..];
    let name = rest.trim_start();
    if node.is_empty() || name.len() == rest.len() {
        return None;
    }
    let end = name
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(name.len());
    (end > 0).then(|| (node, &name[..end]))
}

impl<'t> ZoneBlock<'t> {
    /// The value procfs keeps for `key`: that of the block's last line
    /// whose first field is `key` (each match overwrites the previous).
    fn value(&self, key: &str) -> Option<i64> {
        let mut found = None;
        for line in self.body.lines() {
            if line.trim_start().starts_with("per-node stats") {
                continue;
            }
            let mut parts = line.split_whitespace();
            if let (Some(k), Some(v)) = (parts.next(), parts.next())
                && k == key
            {
                found = v.parse().ok();
            }
        }
        found
    }

    /// `protection: (a, b, …)`: procfs keeps the array only if every
    /// entry parses.
    fn protection(&self) -> Option<([i64; MAX_PROTECTION], usize)> {
        let mut found = None;
        for line in self.body.lines() {
            if line.split_whitespace().next() != Some("protection:") {
                continue;
            }
            let values = line.split(':').nth(1)?.trim().trim_start_matches('(');
            let values = values.strip_suffix(')').unwrap_or(values);
            let mut out = [0i64; MAX_PROTECTION];
            let mut n = 0;
            let mut ok = true;
            for v in values.split(", ") {
                match (v.parse(), out.get_mut(n)) {
                    (Ok(v), Some(slot)) => {
                        *slot = v;
                        n += 1;
                    }
                    _ => ok = false,
                }
            }
            found = ok.then_some((out, n));
        }
        found
    }
}

/// The `node_zoneinfo_*` families (`collector/zoneinfo_linux.go`): every
/// field procfs parses that the text has, per node and zone, gauges but
/// the `_total` counters; then `node_zoneinfo_protection_N`, the
/// `protection:` array (`lowmem_reserve[]`), one family per index.
pub fn zoneinfo(text: &str, out: &mut impl Write) -> fmt::Result {
    for &(key, name, help, counter) in ZONE_FIELDS {
        let mut first = true;
        for b in zone_blocks(text) {
            let Some(v) = b.value(key) else { continue };
            if first {
                let kind = if counter { "counter" } else { "gauge" };
                family(out, &FamilyName("node_zoneinfo_", name), kind, help)?;
                first = false;
            }
            writeln!(
                out,
                "node_zoneinfo_{name}{{node=\"{}\",zone=\"{}\"}} {v}",
                label_value(b.node),
                label_value(b.zone)
            )?;
        }
    }
    for i in 0..MAX_PROTECTION {
        let mut first = true;
        for b in zone_blocks(text) {
            let Some((values, n)) = b.protection() else {
                continue;
            };
            if i >= n {
                continue;
            }
            if first {
                write!(
                    out,
                    "# HELP node_zoneinfo_protection_{i} Protection array {i}. field\n\
                     # TYPE node_zoneinfo_protection_{i} gauge\n"
                )?;
                first = false;
            }
            writeln!(
                out,
                "node_zoneinfo_protection_{i}{{node=\"{}\",zone=\"{}\"}} {}",
                label_value(b.node),
                label_value(b.zone),
                values[i]
            )?;
        }
    }
    Ok(())
}

/// A name made of two parts, displayed joined (no allocation).
struct FamilyName<'a>(&'a str, &'a str);

impl fmt::Display for FamilyName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)?;
        f.write_str(self.1)
    }
}

/// A `/proc/meminfo` key as node_exporter names it: `Active(anon)` →
/// `Active_anon` (the regexp `\((.*)\)` → `_${1}`), plus `_bytes` when
/// the line has a unit (kB, multiplied by 1024).
struct MeminfoKey<'a> {
    key: &'a str,
    bytes: bool,
}

impl fmt::Display for MeminfoKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.key.find('('), self.key.rfind(')')) {
            (Some(open), Some(close)) if open < close => {
                f.write_str(&self.key[..open])?;
                f.write_char('_')?;
                f.write_str(&self.key[open + 1..close])?;
                f.write_str(&self.key[close + 1..])?;
            }
            _ => f.write_str(self.key)?,
        }
        if self.bytes {
            f.write_str("_bytes")?;
        }
        Ok(())
    }
}

/// `node_memory_*` (`collector/meminfo.go`, `meminfo_linux.go`): one
/// family per `/proc/meminfo` line, named by [`MeminfoKey`], help
/// `Memory information field KEY.`, a gauge (a counter only for a key
/// ending in `_total`, which Linux's meminfo has none of).
pub fn meminfo(text: &str, out: &mut impl Write) -> fmt::Result {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(value) = value.parse::<u64>() else {
            continue;
        };
        let bytes = parts.next().is_some();
        let key = MeminfoKey {
            key: key.strip_suffix(':').unwrap_or(key),
            bytes,
        };
        let value = if bytes {
            value.saturating_mul(1024)
        } else {
            value
        };
        write!(
            out,
            "# HELP node_memory_{key} Memory information field {key}.\n\
             # TYPE node_memory_{key} gauge\nnode_memory_{key} {value}\n"
        )?;
    }
    Ok(())
}

/// `node_slabinfo_*` (`collector/slabinfo_linux.go`): five gauges per
/// cache (label `slab`) from `/proc/slabinfo` 2.1's 16-field lines.
pub fn slabinfo(text: &str, out: &mut impl Write) -> fmt::Result {
    const FAMILIES: [(&str, &str, usize); 5] = [
        (
            "active_objects",
            "The number of objects that are currently active (i.e., in use).",
            1,
        ),
        (
            "objects",
            "The total number of allocated objects (i.e., objects that are both in use and not in use).",
            2,
        ),
        (
            "object_size_bytes",
            "The size of objects in this slab, in bytes.",
            3,
        ),
        (
            "objects_per_slab",
            "The number of objects stored in each slab.",
            4,
        ),
        (
            "pages_per_slab",
            "The number of pages allocated for each slab.",
            5,
        ),
    ];
    let entries = || {
        text.lines()
            .filter(|l| !l.contains("slabinfo -") && !l.contains("# name"))
            .filter(|l| l.split_whitespace().count() == 16)
    };
    for (name, help, column) in FAMILIES {
        family(out, &FamilyName("node_slabinfo_", name), "gauge", help)?;
        for line in entries() {
            let mut fields = line.split_whitespace();
            let slab = fields.next().unwrap_or_default();
            let value = fields.nth(column - 1).unwrap_or_default();
            writeln!(
                out,
                "node_slabinfo_{name}{{slab=\"{}\"}} {value}",
                label_value(slab)
            )?;
        }
    }
    Ok(())
}

/// Whether node_exporter's default `--collector.vmstat.fields`,
/// `^(oom_kill|pgpg|pswp|pg.*fault).*`, matches `name`.
pub fn vmstat_field_exported(name: &str) -> bool {
    name.starts_with("oom_kill")
        || name.starts_with("pgpg")
        || name.starts_with("pswp")
        || name
            .strip_prefix("pg")
            .is_some_and(|rest| rest.contains("fault"))
}

/// `node_vmstat_*` (`collector/vmstat_linux.go`): the `/proc/vmstat`
/// lines the default field filter keeps, untyped, help
/// `/proc/vmstat information field NAME.`.
pub fn vmstat(text: &str, out: &mut impl Write) -> fmt::Result {
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let (Some(name), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        if !vmstat_field_exported(name) {
            continue;
        }
        write!(
            out,
            "# HELP node_vmstat_{name} /proc/vmstat information field {name}.\n\
             # TYPE node_vmstat_{name} untyped\nnode_vmstat_{name} {value}\n"
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
