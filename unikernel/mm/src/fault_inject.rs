//! Fault injection, Linux's way (cf. `lib/fault-inject.c`,
//! `mm/failslab.c`, `fail_page_alloc` in `mm/page_alloc.c` and
//! `Documentation/fault-injection/fault-injection.rst`).
//!
//! A [`FaultAttr`] decides, call by call, whether an allocation that would
//! have succeeded fails anyway, so the fallible paths above the allocators
//! (the HTTP API's error answers, mempool's reserve, the kernel heap's
//! fallback) can be exercised on demand. Two users own one each, as in
//! Linux: the buddy allocator ([`FailPageAlloc`], checked at the start of
//! `PageAlloc::alloc_pages`, cf. `prepare_alloc_pages()` →
//! `should_fail_alloc_page()`) and the slab allocator ([`FailSlab`],
//! checked before every object allocation, cf. `slab_pre_alloc_hook()` →
//! `should_failslab()`). Both start disabled (probability 0); the boot
//! options `fail_page_alloc=` / `failslab=` (cf. `setup_fault_attr()`) or
//! the debugfs-like [`FaultAttr::set`] arm them.
//!
//! `__GFP_NOFAIL` is never failed by injection — the kernel heap uses it
//! for exactly that reason. What Linux has and we do not: `task-filter` and
//! `fail-nth` (no tasks), the stack-trace filters, and `fail_dump()` (this
//! crate does not print; the counters [`FaultAttr::injected`] and
//! [`FaultAttr::count`] tell what happened).
//!
//! Randomness is a seedable xorshift64* ([`FaultAttr::set_seed`]): `mm` has
//! no dependencies, and a fixed seed makes a failing test repeatable.

use core::fmt;

use crate::gfp::GfpFlags;
use crate::slab::SlabFlags;
use crate::types::{MAX_ORDER, Order};

/// The seed a new [`FaultAttr`] starts with (any non-zero value works).
pub const DEFAULT_SEED: u64 = 0x9e37_79b9_7f4a_7c15;

/// Names of the attributes every [`FaultAttr`] has (cf. the files
/// `fault_create_debugfs_attr()` makes).
pub const FAULT_ATTR_ATTRIBUTES: [&str; 5] =
    ["probability", "interval", "times", "space", "verbose"];

/// [`FAULT_ATTR_ATTRIBUTES`] plus `fail_page_alloc`'s own.
pub const FAIL_PAGE_ALLOC_ATTRIBUTES: [&str; 8] = [
    "probability",
    "interval",
    "times",
    "space",
    "verbose",
    "ignore-gfp-wait",
    "ignore-gfp-highmem",
    "min-order",
];

/// [`FAULT_ATTR_ATTRIBUTES`] plus `failslab`'s own.
pub const FAILSLAB_ATTRIBUTES: [&str; 7] = [
    "probability",
    "interval",
    "times",
    "space",
    "verbose",
    "ignore-gfp-wait",
    "cache-filter",
];

/// Why an attribute value (or a boot option) was refused. A refused
/// setting changes nothing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultAttrError {
    /// No attribute of that name.
    UnknownAttribute,
    /// Not a decimal integer.
    NotANumber {
        /// The attribute.
        name: &'static str,
    },
    /// Not a boolean (1/0, y/n, on/off, yes/no).
    NotBoolean {
        /// The attribute.
        name: &'static str,
    },
    /// A number outside the attribute's inclusive range.
    OutOfRange {
        /// The attribute.
        name: &'static str,
        /// Smallest allowed value.
        min: i64,
        /// Largest allowed value.
        max: i64,
    },
    /// A boot option that is not four comma-separated numbers.
    NotFourFields,
}

impl fmt::Display for FaultAttrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FaultAttrError::UnknownAttribute => f.write_str("unknown attribute"),
            FaultAttrError::NotANumber { name } => write!(f, "{name}: not a decimal integer"),
            FaultAttrError::NotBoolean { name } => {
                write!(f, "{name}: expected a boolean (1/0, y/n, on/off)")
            }
            FaultAttrError::OutOfRange { name, min, max } => {
                write!(f, "{name}: out of range (expected {min}..={max})")
            }
            FaultAttrError::NotFourFields => {
                f.write_str("expected <interval>,<probability>,<space>,<times>")
            }
        }
    }
}

/// The four numbers of a `fail_page_alloc=` / `failslab=` boot option, in
/// the order Linux reads them: `<interval>,<probability>,<space>,<times>`
/// (cf. `setup_fault_attr()`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultConfig {
    /// Fail at most every `interval`-th eligible call (≥ 1).
    pub interval: u64,
    /// Percent chance (0..=100) of failing an eligible call.
    pub probability: u8,
    /// Budget of size let through before any failure.
    pub space: u64,
    /// Failures left; -1 for no limit.
    pub times: i64,
}

impl FaultConfig {
    /// Parse `<interval>,<probability>,<space>,<times>` (cf. the `sscanf`
    /// in `setup_fault_attr()`, but every field validated as
    /// [`FaultAttr::set`] does: interval ≥ 1, probability 0..=100,
    /// times ≥ -1).
    pub fn parse(s: &str) -> Result<FaultConfig, FaultAttrError> {
        let mut fields = s.split(',');
        let mut next = || fields.next().ok_or(FaultAttrError::NotFourFields);
        let (interval, probability, space, times) = (next()?, next()?, next()?, next()?);
        if fields.next().is_some() {
            return Err(FaultAttrError::NotFourFields);
        }
        Ok(FaultConfig {
            interval: parse_ranged("interval", interval, 1, i64::MAX)? as u64,
            probability: parse_ranged("probability", probability, 0, 100)? as u8,
            space: parse_ranged("space", space, 0, i64::MAX)? as u64,
            times: parse_ranged("times", times, -1, i64::MAX)?,
        })
    }
}

/// One fault-injection capability (cf. `struct fault_attr`).
///
/// The defaults are `FAULT_ATTR_INITIALIZER`'s: probability 0 (disabled),
/// interval 1, times 1, space 0, verbose 2.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FaultAttr {
    probability: u8,
    interval: u64,
    times: i64,
    space: u64,
    verbose: u8,
    /// Eligible calls counted while `interval > 1` (cf. `attr->count`).
    count: u64,
    /// Failures injected so far (ours; Linux only prints them).
    injected: u64,
    /// xorshift64* state, never 0.
    rng: u64,
}

impl Default for FaultAttr {
    fn default() -> Self {
        FaultAttr::new()
    }
}

impl FaultAttr {
    /// A disabled attribute with Linux's defaults (cf.
    /// `FAULT_ATTR_INITIALIZER`).
    pub const fn new() -> FaultAttr {
        FaultAttr {
            probability: 0,
            interval: 1,
            times: 1,
            space: 0,
            verbose: 2,
            count: 0,
            injected: 0,
            rng: DEFAULT_SEED,
        }
    }

    /// Apply a boot option's four numbers (cf. `setup_fault_attr()`).
    pub fn setup(&mut self, cfg: FaultConfig) {
        self.interval = cfg.interval.max(1);
        self.probability = cfg.probability.min(100);
        self.space = cfg.space;
        self.times = cfg.times.max(-1);
    }

    /// Reseed the random numbers (0 is mapped to [`DEFAULT_SEED`]:
    /// xorshift never leaves 0).
    pub fn set_seed(&mut self, seed: u64) {
        self.rng = if seed == 0 { DEFAULT_SEED } else { seed };
    }

    /// Percent chance of failing an eligible call; 0 disables.
    pub const fn probability(&self) -> u8 {
        self.probability
    }

    /// Only every `interval`-th eligible call may fail.
    pub const fn interval(&self) -> u64 {
        self.interval
    }

    /// Failures left, -1 for no limit.
    pub const fn times(&self) -> i64 {
        self.times
    }

    /// Size still let through before failures may start.
    pub const fn space(&self) -> u64 {
        self.space
    }

    /// Verbosity for the caller's reporting (Linux: 0 quiet, 1 a line,
    /// 2 a line and a stack dump).
    pub const fn verbose(&self) -> u8 {
        self.verbose
    }

    /// Calls counted for `interval` (cf. `attr->count`).
    pub const fn count(&self) -> u64 {
        self.count
    }

    /// Failures injected since boot.
    pub const fn injected(&self) -> u64 {
        self.injected
    }

    /// Whether a call could fail at all (probability above 0 and times
    /// left); the cheap test the hooks make before anything else.
    #[inline(always)]
    pub const fn is_armed(&self) -> bool {
        self.probability != 0 && self.times != 0
    }

    /// Decide one call of `size` (cf. `should_fail_ex()`), in Linux's
    /// order: probability 0 never fails; nor does `times == 0`; while
    /// `space > size` the call is let through and `space` shrinks by `size`
    /// (strictly greater, as in Linux: the call that would use the last of
    /// the budget is eligible); with `interval > 1` only every
    /// `interval`-th eligible call goes on; then it fails with
    /// `probability` percent, and a failure uses up one of `times` unless
    /// that is -1.
    pub fn should_fail(&mut self, size: u64) -> bool {
        if self.probability == 0 {
            return false;
        }
        if self.times == 0 {
            return false;
        }
        if self.space > size {
            self.space -= size;
            return false;
        }
        if self.interval > 1 {
            self.count = self.count.wrapping_add(1);
            if !self.count.is_multiple_of(self.interval) {
                return false;
            }
        }
        if u32::from(self.probability) <= self.random_below(100) {
            return false;
        }
        if self.times != -1 {
            self.times -= 1; // cf. atomic_dec_not_zero(): times > 0 here
        }
        self.injected += 1;
        true
    }

    /// A uniform number in `0..bound` (cf. `prandom_u32_max()`: the high
    /// half of a 32×32-bit product).
    fn random_below(&mut self, bound: u32) -> u32 {
        // xorshift64* (Vigna), upper 32 bits of the scrambled output.
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        let r = (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32) as u32;
        ((u64::from(r) * u64::from(bound)) >> 32) as u32
    }

    /// The attribute names [`FaultAttr::set`] and [`FaultAttr::get`] know.
    pub fn attributes() -> &'static [&'static str] {
        &FAULT_ATTR_ATTRIBUTES
    }

    /// Write one attribute as a debugfs file write would (cf.
    /// `fault_create_debugfs_attr()`); surrounding whitespace is ignored.
    /// `probability` 0..=100, `interval` ≥ 1, `times` ≥ -1, `space` ≥ 0,
    /// `verbose` 0..=2. On error nothing changes.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), FaultAttrError> {
        let value = value.trim();
        match name {
            "probability" => self.probability = parse_ranged("probability", value, 0, 100)? as u8,
            "interval" => self.interval = parse_ranged("interval", value, 1, i64::MAX)? as u64,
            "times" => self.times = parse_ranged("times", value, -1, i64::MAX)?,
            "space" => self.space = parse_ranged("space", value, 0, i64::MAX)? as u64,
            "verbose" => self.verbose = parse_ranged("verbose", value, 0, 2)? as u8,
            _ => return Err(FaultAttrError::UnknownAttribute),
        }
        Ok(())
    }

    /// Read one attribute; `None` for an unknown name.
    pub fn get(&self, name: &str) -> Option<i64> {
        Some(match name {
            "probability" => i64::from(self.probability),
            "interval" => self.interval as i64,
            "times" => self.times,
            "space" => self.space as i64,
            "verbose" => i64::from(self.verbose),
            _ => return None,
        })
    }
}

/// `fail_page_alloc` (cf. the struct of that name in `mm/page_alloc.c`):
/// failures of the buddy allocator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailPageAlloc {
    /// The shared decision logic.
    pub attr: FaultAttr,
    /// `ignore-gfp-highmem`: never fail `__GFP_HIGHMEM` requests
    /// (default true).
    pub ignore_gfp_highmem: bool,
    /// `ignore-gfp-wait`: never fail requests that may reclaim
    /// (`__GFP_DIRECT_RECLAIM`, i.e. GFP_KERNEL; default true).
    pub ignore_gfp_reclaim: bool,
    /// `min-order`: never fail smaller orders (default 1).
    pub min_order: u32,
}

impl Default for FailPageAlloc {
    fn default() -> Self {
        FailPageAlloc::new()
    }
}

impl FailPageAlloc {
    /// Disabled, with Linux's defaults.
    pub const fn new() -> FailPageAlloc {
        FailPageAlloc {
            attr: FaultAttr::new(),
            ignore_gfp_highmem: true,
            ignore_gfp_reclaim: true,
            min_order: 1,
        }
    }

    /// Should this allocation fail? (cf. `should_fail_alloc_page()` /
    /// `__should_fail_alloc_page()`). Never for orders below `min_order`,
    /// `__GFP_NOFAIL`, and — as configured — HighMem or reclaiming
    /// requests; otherwise [`FaultAttr::should_fail`] with the size in
    /// pages, `1 << order`, exactly as Linux passes it (so `space` counts
    /// pages here, bytes in `failslab`).
    #[inline]
    pub fn should_fail_alloc_page(&mut self, gfp: GfpFlags, order: Order) -> bool {
        if !self.attr.is_armed() {
            return false;
        }
        self.should_fail_slow(gfp, order)
    }

    #[cold]
    #[inline(never)]
    fn should_fail_slow(&mut self, gfp: GfpFlags, order: Order) -> bool {
        if u32::from(order.get()) < self.min_order {
            return false;
        }
        if gfp.contains(GfpFlags::NOFAIL) {
            return false;
        }
        if self.ignore_gfp_highmem && gfp.contains(GfpFlags::HIGHMEM) {
            return false;
        }
        if self.ignore_gfp_reclaim && gfp.contains(GfpFlags::DIRECT_RECLAIM) {
            return false;
        }
        self.attr.should_fail(order.nr_pages())
    }

    /// The attribute names [`FailPageAlloc::set`] knows.
    pub fn attributes() -> &'static [&'static str] {
        &FAIL_PAGE_ALLOC_ATTRIBUTES
    }

    /// Write one attribute (cf. `fail_page_alloc_debugfs()`): the
    /// [`FaultAttr`] ones plus `ignore-gfp-wait`, `ignore-gfp-highmem`
    /// (booleans) and `min-order` (0..=MAX_ORDER).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), FaultAttrError> {
        let v = value.trim();
        match name {
            "ignore-gfp-wait" => self.ignore_gfp_reclaim = parse_bool("ignore-gfp-wait", v)?,
            "ignore-gfp-highmem" => self.ignore_gfp_highmem = parse_bool("ignore-gfp-highmem", v)?,
            "min-order" => {
                self.min_order = parse_ranged("min-order", v, 0, MAX_ORDER as i64)? as u32
            }
            _ => return self.attr.set(name, value),
        }
        Ok(())
    }

    /// Read one attribute (booleans as 0/1).
    pub fn get(&self, name: &str) -> Option<i64> {
        match name {
            "ignore-gfp-wait" => Some(i64::from(self.ignore_gfp_reclaim)),
            "ignore-gfp-highmem" => Some(i64::from(self.ignore_gfp_highmem)),
            "min-order" => Some(i64::from(self.min_order)),
            _ => self.attr.get(name),
        }
    }
}

/// `failslab` (cf. `mm/failslab.c`): failures of slab object allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FailSlab {
    /// The shared decision logic.
    pub attr: FaultAttr,
    /// `ignore-gfp-wait`: never fail requests that may reclaim
    /// (default true).
    pub ignore_gfp_reclaim: bool,
    /// `cache-filter`: only fail caches created with `SLAB_FAILSLAB`
    /// (default false).
    pub cache_filter: bool,
}

impl Default for FailSlab {
    fn default() -> Self {
        FailSlab::new()
    }
}

impl FailSlab {
    /// Disabled, with Linux's defaults.
    pub const fn new() -> FailSlab {
        FailSlab {
            attr: FaultAttr::new(),
            ignore_gfp_reclaim: true,
            cache_filter: false,
        }
    }

    /// Should this object allocation fail? (cf. `should_failslab()` /
    /// `__should_failslab()`). Never for `__GFP_NOFAIL`, reclaiming
    /// requests when `ignore_gfp_reclaim`, or caches without
    /// `SLAB_FAILSLAB` when `cache_filter`; otherwise
    /// [`FaultAttr::should_fail`] with the cache's object size in bytes.
    #[inline]
    pub fn should_failslab(
        &mut self,
        cache_flags: SlabFlags,
        object_size: u64,
        gfp: GfpFlags,
    ) -> bool {
        if !self.attr.is_armed() {
            return false;
        }
        self.should_failslab_slow(cache_flags, object_size, gfp)
    }

    #[cold]
    #[inline(never)]
    fn should_failslab_slow(
        &mut self,
        cache_flags: SlabFlags,
        object_size: u64,
        gfp: GfpFlags,
    ) -> bool {
        if gfp.contains(GfpFlags::NOFAIL) {
            return false;
        }
        if self.ignore_gfp_reclaim && gfp.contains(GfpFlags::DIRECT_RECLAIM) {
            return false;
        }
        if self.cache_filter && !cache_flags.contains(SlabFlags::FAILSLAB) {
            return false;
        }
        self.attr.should_fail(object_size)
    }

    /// The attribute names [`FailSlab::set`] knows.
    pub fn attributes() -> &'static [&'static str] {
        &FAILSLAB_ATTRIBUTES
    }

    /// Write one attribute (cf. `failslab_debugfs_init()`): the
    /// [`FaultAttr`] ones plus `ignore-gfp-wait` and `cache-filter`
    /// (booleans).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), FaultAttrError> {
        let v = value.trim();
        match name {
            "ignore-gfp-wait" => self.ignore_gfp_reclaim = parse_bool("ignore-gfp-wait", v)?,
            "cache-filter" => self.cache_filter = parse_bool("cache-filter", v)?,
            _ => return self.attr.set(name, value),
        }
        Ok(())
    }

    /// Read one attribute (booleans as 0/1).
    pub fn get(&self, name: &str) -> Option<i64> {
        match name {
            "ignore-gfp-wait" => Some(i64::from(self.ignore_gfp_reclaim)),
            "cache-filter" => Some(i64::from(self.cache_filter)),
            _ => self.attr.get(name),
        }
    }
}

/// A decimal integer (optional leading `-`) within `min..=max`.
fn parse_ranged(name: &'static str, s: &str, min: i64, max: i64) -> Result<i64, FaultAttrError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FaultAttrError::NotANumber { name });
    }
    match s.parse::<i64>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(FaultAttrError::OutOfRange { name, min, max }),
    }
}

/// A boolean as `kstrtobool()` reads it.
fn parse_bool(name: &'static str, s: &str) -> Result<bool, FaultAttrError> {
    const TRUE: [&str; 4] = ["1", "y", "on", "yes"];
    const FALSE: [&str; 4] = ["0", "n", "off", "no"];
    if TRUE.iter().any(|t| t.eq_ignore_ascii_case(s)) {
        Ok(true)
    } else if FALSE.iter().any(|f| f.eq_ignore_ascii_case(s)) {
        Ok(false)
    } else {
        Err(FaultAttrError::NotBoolean { name })
    }
}

#[cfg(test)]
mod tests;

/// Something a hot path asks "could you fail at all?" through a cached
/// flag rather than through its fields.
pub trait Armed {
    /// Whether a call could fail now.
    fn is_armed(&self) -> bool;
}

impl Armed for FailPageAlloc {
    fn is_armed(&self) -> bool {
        self.attr.is_armed()
    }
}

impl Armed for FailSlab {
    fn is_armed(&self) -> bool {
        self.attr.is_armed()
    }
}

/// `&mut` access to a fault capability that refreshes its owner's cached
/// "armed" flag when dropped, so the allocation fast paths test one bool
/// (as Linux tests a static key) and never see a stale one.
pub struct ArmedMut<'a, T: Armed> {
    inner: &'a mut T,
    armed: &'a mut bool,
}

impl<'a, T: Armed> ArmedMut<'a, T> {
    pub(crate) fn new(inner: &'a mut T, armed: &'a mut bool) -> Self {
        ArmedMut { inner, armed }
    }
}

impl<T: Armed> core::ops::Deref for ArmedMut<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.inner
    }
}

impl<T: Armed> core::ops::DerefMut for ArmedMut<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.inner
    }
}

impl<T: Armed> Drop for ArmedMut<'_, T> {
    fn drop(&mut self) {
        *self.armed = self.inner.is_armed();
    }
}
