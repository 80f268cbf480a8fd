//! The node_exporter families over fixed Linux 6.1 texts: names, labels,
//! types, help texts and values as node_exporter's collectors (and
//! procfs's parsers) produce them, checked line by line.

use alloc::string::String;

use super::*;

fn render(f: fn(&str, &mut String) -> fmt::Result, text: &str) -> String {
    let mut out = String::new();
    f(text, &mut out).unwrap();
    out
}

/// The sample lines of `out` (no `#` lines).
fn samples(out: &str) -> alloc::vec::Vec<&str> {
    out.lines().filter(|l| !l.starts_with('#')).collect()
}

#[test]
fn buddyinfo_is_one_gauge_per_zone_and_order() {
    let text = "Node 0, zone      DMA      1      0      2 \n\
                Node 0, zone    DMA32    370     12      0 \n";
    let out = render(buddyinfo, text);
    assert_eq!(
        out,
        "# HELP node_buddyinfo_blocks Count of free blocks according to size.\n\
         # TYPE node_buddyinfo_blocks gauge\n\
         node_buddyinfo_blocks{node=\"0\",size=\"0\",zone=\"DMA\"} 1\n\
         node_buddyinfo_blocks{node=\"0\",size=\"1\",zone=\"DMA\"} 0\n\
         node_buddyinfo_blocks{node=\"0\",size=\"2\",zone=\"DMA\"} 2\n\
         node_buddyinfo_blocks{node=\"0\",size=\"0\",zone=\"DMA32\"} 370\n\
         node_buddyinfo_blocks{node=\"0\",size=\"1\",zone=\"DMA32\"} 12\n\
         node_buddyinfo_blocks{node=\"0\",size=\"2\",zone=\"DMA32\"} 0\n"
    );
}

/// A Linux 6.1 `/proc/zoneinfo` of two zones, the first populated (with
/// the per-node stats) and the second empty.
const ZONEINFO: &str = "Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 7
      nr_active_anon 3
      nr_inactive_file 100
      nr_active_file 20
      nr_slab_reclaimable 5
      nr_kernel_stack 16
      nr_dirtied   9
  pages free     3840
        boost    0
        min      21
        low      26
        high     31
        spanned  4095
        present  3998
        managed  3840
        cma      0
        protection: (0, 2919, 2919, 2919)
      nr_free_pages 3840
      nr_zone_inactive_anon 0
      numa_hit     12
  pagesets
    cpu: 0
              count: 0
              high:  0
              batch: 1
  vm stats threshold: 4
  node_unreclaimable:  0
  start_pfn:           1
Node 0, zone   Normal
  pages free     0
        boost    0
        min      0
        low      0
        high     0
        spanned  0
        present  0
        managed  0
        cma      0
        protection: (0, 0, 0, 0)
";

#[test]
fn zoneinfo_has_procfs_fields_per_zone_and_the_protection_array() {
    let out = render(zoneinfo, ZONEINFO);
    let expect = "\
# HELP node_zoneinfo_nr_free_pages Total number of free pages in the zone
# TYPE node_zoneinfo_nr_free_pages gauge
node_zoneinfo_nr_free_pages{node=\"0\",zone=\"DMA\"} 3840
# HELP node_zoneinfo_min_pages Zone watermark pages_min
# TYPE node_zoneinfo_min_pages gauge
node_zoneinfo_min_pages{node=\"0\",zone=\"DMA\"} 21
node_zoneinfo_min_pages{node=\"0\",zone=\"Normal\"} 0
# HELP node_zoneinfo_low_pages Zone watermark pages_low
# TYPE node_zoneinfo_low_pages gauge
node_zoneinfo_low_pages{node=\"0\",zone=\"DMA\"} 26
node_zoneinfo_low_pages{node=\"0\",zone=\"Normal\"} 0
# HELP node_zoneinfo_high_pages Zone watermark pages_high
# TYPE node_zoneinfo_high_pages gauge
node_zoneinfo_high_pages{node=\"0\",zone=\"DMA\"} 31
node_zoneinfo_high_pages{node=\"0\",zone=\"Normal\"} 0
# HELP node_zoneinfo_spanned_pages Total pages spanned by the zone, including holes
# TYPE node_zoneinfo_spanned_pages gauge
node_zoneinfo_spanned_pages{node=\"0\",zone=\"DMA\"} 4095
node_zoneinfo_spanned_pages{node=\"0\",zone=\"Normal\"} 0
# HELP node_zoneinfo_present_pages Physical pages existing within the zone
# TYPE node_zoneinfo_present_pages gauge
node_zoneinfo_present_pages{node=\"0\",zone=\"DMA\"} 3998
node_zoneinfo_present_pages{node=\"0\",zone=\"Normal\"} 0
# HELP node_zoneinfo_managed_pages Present pages managed by the buddy system
# TYPE node_zoneinfo_managed_pages gauge
node_zoneinfo_managed_pages{node=\"0\",zone=\"DMA\"} 3840
node_zoneinfo_managed_pages{node=\"0\",zone=\"Normal\"} 0
# HELP node_zoneinfo_nr_active_anon_pages Number of anonymous pages recently more used
# TYPE node_zoneinfo_nr_active_anon_pages gauge
node_zoneinfo_nr_active_anon_pages{node=\"0\",zone=\"DMA\"} 3
# HELP node_zoneinfo_nr_inactive_anon_pages Number of anonymous pages recently less used
# TYPE node_zoneinfo_nr_inactive_anon_pages gauge
node_zoneinfo_nr_inactive_anon_pages{node=\"0\",zone=\"DMA\"} 7
# HELP node_zoneinfo_nr_active_file_pages Number of active pages with file-backing
# TYPE node_zoneinfo_nr_active_file_pages gauge
node_zoneinfo_nr_active_file_pages{node=\"0\",zone=\"DMA\"} 20
# HELP node_zoneinfo_nr_inactive_file_pages Number of inactive pages with file-backing
# TYPE node_zoneinfo_nr_inactive_file_pages gauge
node_zoneinfo_nr_inactive_file_pages{node=\"0\",zone=\"DMA\"} 100
# HELP node_zoneinfo_nr_slab_reclaimable_pages Number of reclaimable slab pages
# TYPE node_zoneinfo_nr_slab_reclaimable_pages gauge
node_zoneinfo_nr_slab_reclaimable_pages{node=\"0\",zone=\"DMA\"} 5
# HELP node_zoneinfo_nr_kernel_stacks Number of kernel stacks
# TYPE node_zoneinfo_nr_kernel_stacks gauge
node_zoneinfo_nr_kernel_stacks{node=\"0\",zone=\"DMA\"} 16
# HELP node_zoneinfo_nr_dirtied_total Page dirtyings since bootup
# TYPE node_zoneinfo_nr_dirtied_total counter
node_zoneinfo_nr_dirtied_total{node=\"0\",zone=\"DMA\"} 9
# HELP node_zoneinfo_numa_hit_total Allocated in intended node
# TYPE node_zoneinfo_numa_hit_total counter
node_zoneinfo_numa_hit_total{node=\"0\",zone=\"DMA\"} 12
# HELP node_zoneinfo_protection_0 Protection array 0. field
# TYPE node_zoneinfo_protection_0 gauge
node_zoneinfo_protection_0{node=\"0\",zone=\"DMA\"} 0
node_zoneinfo_protection_0{node=\"0\",zone=\"Normal\"} 0
# HELP node_zoneinfo_protection_1 Protection array 1. field
# TYPE node_zoneinfo_protection_1 gauge
node_zoneinfo_protection_1{node=\"0\",zone=\"DMA\"} 2919
node_zoneinfo_protection_1{node=\"0\",zone=\"Normal\"} 0
# HELP node_zoneinfo_protection_2 Protection array 2. field
# TYPE node_zoneinfo_protection_2 gauge
node_zoneinfo_protection_2{node=\"0\",zone=\"DMA\"} 2919
node_zoneinfo_protection_2{node=\"0\",zone=\"Normal\"} 0
# HELP node_zoneinfo_protection_3 Protection array 3. field
# TYPE node_zoneinfo_protection_3 gauge
node_zoneinfo_protection_3{node=\"0\",zone=\"DMA\"} 2919
node_zoneinfo_protection_3{node=\"0\",zone=\"Normal\"} 0
";
    assert_eq!(out, expect);
}

#[test]
fn meminfo_follows_node_exporters_naming() {
    let text = "MemTotal:        2014088 kB\n\
                MemAvailable:    1900000 kB\n\
                Active(anon):          4 kB\n\
                HugePages_Total:       0\n\
                Hugepagesize:       2048 kB\n";
    let out = render(meminfo, text);
    assert_eq!(
        out,
        "# HELP node_memory_MemTotal_bytes Memory information field MemTotal_bytes.\n\
         # TYPE node_memory_MemTotal_bytes gauge\n\
         node_memory_MemTotal_bytes 2062426112\n\
         # HELP node_memory_MemAvailable_bytes Memory information field MemAvailable_bytes.\n\
         # TYPE node_memory_MemAvailable_bytes gauge\n\
         node_memory_MemAvailable_bytes 1945600000\n\
         # HELP node_memory_Active_anon_bytes Memory information field Active_anon_bytes.\n\
         # TYPE node_memory_Active_anon_bytes gauge\n\
         node_memory_Active_anon_bytes 4096\n\
         # HELP node_memory_HugePages_Total Memory information field HugePages_Total.\n\
         # TYPE node_memory_HugePages_Total gauge\n\
         node_memory_HugePages_Total 0\n\
         # HELP node_memory_Hugepagesize_bytes Memory information field Hugepagesize_bytes.\n\
         # TYPE node_memory_Hugepagesize_bytes gauge\n\
         node_memory_Hugepagesize_bytes 2097152\n"
    );
}

#[test]
fn slabinfo_is_five_gauges_per_cache() {
    let text = "slabinfo - version: 2.1\n\
# name            <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\n\
kmalloc-64           100    128     64   64    1 : tunables    0    0    0 : slabdata      2      2      0\n\
my.cache               3     32    100   32    1 : tunables    0    0    0 : slabdata      1      1      0\n";
    let out = render(slabinfo, text);
    assert_eq!(
        samples(&out),
        [
            "node_slabinfo_active_objects{slab=\"kmalloc-64\"} 100",
            "node_slabinfo_active_objects{slab=\"my.cache\"} 3",
            "node_slabinfo_objects{slab=\"kmalloc-64\"} 128",
            "node_slabinfo_objects{slab=\"my.cache\"} 32",
            "node_slabinfo_object_size_bytes{slab=\"kmalloc-64\"} 64",
            "node_slabinfo_object_size_bytes{slab=\"my.cache\"} 100",
            "node_slabinfo_objects_per_slab{slab=\"kmalloc-64\"} 64",
            "node_slabinfo_objects_per_slab{slab=\"my.cache\"} 32",
            "node_slabinfo_pages_per_slab{slab=\"kmalloc-64\"} 1",
            "node_slabinfo_pages_per_slab{slab=\"my.cache\"} 1",
        ]
    );
    assert!(out.contains(
        "# HELP node_slabinfo_objects The total number of allocated objects (i.e., objects that are both in use and not in use).\n\
         # TYPE node_slabinfo_objects gauge\n"
    ));
}

#[test]
fn vmstat_keeps_the_default_field_filter() {
    for (name, kept) in [
        ("oom_kill", true),
        ("pgpgin", true),
        ("pgpgout", true),
        ("pswpin", true),
        ("pgfault", true),
        ("pgmajfault", true),
        ("pgalloc_dma", false),
        ("pgfree", false),
        ("nr_free_pages", false),
        ("compact_stall", false),
        ("thp_fault_alloc", false),
    ] {
        assert_eq!(vmstat_field_exported(name), kept, "{name}");
    }
    let out = render(
        vmstat,
        "nr_free_pages 10\npgpgin 4\npgfree 99\npgfault 7\noom_kill 1\n",
    );
    assert_eq!(
        out,
        "# HELP node_vmstat_pgpgin /proc/vmstat information field pgpgin.\n\
         # TYPE node_vmstat_pgpgin untyped\nnode_vmstat_pgpgin 4\n\
         # HELP node_vmstat_pgfault /proc/vmstat information field pgfault.\n\
         # TYPE node_vmstat_pgfault untyped\nnode_vmstat_pgfault 7\n\
         # HELP node_vmstat_oom_kill /proc/vmstat information field oom_kill.\n\
         # TYPE node_vmstat_oom_kill untyped\nnode_vmstat_oom_kill 1\n"
    );
}
