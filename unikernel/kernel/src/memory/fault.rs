//! Kernel page faults that are not bugs: demand paging of lazy vmalloc
//! areas, and exception fixups for the probes that fault such pages in.
//!
//! - [`handle_page_fault`] is the #PF path before the oops (cf.
//!   `exc_page_fault()` → `do_kern_addr_fault()` → `handle_mm_fault()`):
//!   a supervisor, non-reserved-bit, non-fetch fault inside the vmalloc
//!   area goes to `mm::fault::handle_vmalloc_fault`, which maps the zero
//!   page or a zeroed frame. Anything else is still reported as a fatal
//!   exception with its page-table walk.
//! - [`probe_read`] / [`probe_write`] touch one byte of a page without
//!   changing it (cf. `fault_in_readable()` / `fault_in_writeable()`), so
//!   the CPU raises the fault the handler resolves. The write probe is a
//!   plain store of 0, used only on pages whose bytes are all zero (not yet
//!   touched, or mapping the zero page): a locked read-modify-write would
//!   leave any page unchanged, but TCG delivers its load as a read fault
//!   first, which would map the zero page only to replace it at once. Their accesses have
//!   entries in a two-row exception table (cf. `_ASM_EXTABLE` and
//!   `fixup_exception()`): when the handler cannot resolve the fault (no
//!   memory: `VM_FAULT_OOM`), execution resumes after the access with an
//!   error code instead of an oops, and the caller recovers the way
//!   `pagefault_out_of_memory()` does.
//! - [`zero_page`] is the shared zero page (cf. `empty_zero_page`): a
//!   page of zeros in the kernel image, which no one may write (it sits in
//!   the read-only image; lazy areas map it read-only).

use core::arch::global_asm;

use x86_64::registers::control::Cr2;

use mm::fault::{FaultAccess, FaultError, FaultResolution};
use mm::types::{PAGE_SHIFT, Pfn, VirtAddr};

use crate::arch::x86_64::idt::TrapFrame;

/// The #PF error code bits (SDM 4.7).
const PF_WRITE: u64 = 1 << 1;
const PF_USER: u64 = 1 << 2;
const PF_RSVD: u64 = 1 << 3;
const PF_INSTR: u64 = 1 << 4;

/// What a probe's fixup leaves in RAX.
const FIXUP_OOM: u64 = 1;
const FIXUP_BAD_AREA: u64 = 2;

/// `empty_zero_page`: one page of zeros, page-aligned, in the identity-
/// mapped kernel image (so its physical address is its address) and
/// read-only there.
#[repr(C, align(4096))]
struct ZeroPage([u8; 4096]);

static ZERO_PAGE: ZeroPage = ZeroPage([0; 4096]);

/// The zero page's frame.
pub fn zero_page() -> Pfn {
    Pfn((&raw const ZERO_PAGE) as u64 >> PAGE_SHIFT)
}

// The probes. Each is a leaf: `xor eax, eax`, the access (label 1), `ret`
// (label 2). The exception table row (1b, 2b) sends a fault the handler
// could not resolve to the `ret` with the reason in RAX.
global_asm!(
    r#"
    .pushsection .text.pz_probe, "ax"
    .balign 16
    .global pz_probe_read
pz_probe_read:
    xor eax, eax
1:  mov cl, byte ptr [rdi]
2:  ret
    .pushsection .rodata.pz_extable, "a"
    .balign 8
    .global pz_extable
pz_extable:
    .quad 1b, 2b
    .popsection

    .balign 16
    .global pz_probe_write
pz_probe_write:
    xor eax, eax
1:  mov byte ptr [rdi], 0
2:  ret
    .pushsection .rodata.pz_extable, "a"
    .quad 1b, 2b
    .popsection
    .popsection
    "#
);

unsafe extern "C" {
    /// Reads the byte at `addr`; 0, or a `FIXUP_*` code.
    fn pz_probe_read(addr: u64) -> u64;
    /// Stores 0 at `addr`; 0, or a `FIXUP_*` code.
    fn pz_probe_write(addr: u64) -> u64;
    /// (faulting instruction, resume address) for each probe.
    static pz_extable: [[u64; 2]; 2];
}

fn probe_result(code: u64) -> Result<(), FaultError> {
    match code {
        0 => Ok(()),
        FIXUP_OOM => Err(FaultError::Oom),
        _ => Err(FaultError::BadArea),
    }
}

/// Faults the page of `addr` in for reading (cf. `fault_in_readable()`).
///
/// # Safety
/// `addr` must lie in a lazy vmalloc area, or in memory mapped readable:
/// anywhere else the fault is a bug and is reported as such — unless it is
/// outside the vmalloc area, where it resumes with `BadArea`.
pub unsafe fn probe_read(addr: VirtAddr) -> Result<(), FaultError> {
    // SAFETY: the probe reads one byte into a scratch register and touches
    // nothing else; a fault it raises is resolved or fixed up (see the
    // exception table above), per the caller's contract on `addr`.
    probe_result(unsafe { pz_probe_read(addr.0) })
}

/// Faults the page of `addr` in for writing (cf. `fault_in_writeable()`)
/// by storing a 0 byte there.
///
/// # Safety
/// As [`probe_read`], and the byte at `addr` must already read as 0: the
/// page is a lazy page not yet written (unmapped, or mapping the zero
/// page), so the store changes nothing.
pub unsafe fn probe_write(addr: VirtAddr) -> Result<(), FaultError> {
    // SAFETY: the store writes the value the byte already has (caller's
    // contract); faults as for `probe_read`.
    probe_result(unsafe { pz_probe_write(addr.0) })
}

/// The #PF handler's first step: resolve a demand-paging fault, or fix up
/// a probe. `false`: a real fault, for the oops.
pub fn handle_page_fault(frame: &mut TrapFrame) -> bool {
    let addr = Cr2::read_raw();
    let code = frame.error_code;
    let kernel_data_access = code & (PF_USER | PF_RSVD | PF_INSTR) == 0 && frame.cs & 3 == 0;
    let access = if code & PF_WRITE != 0 {
        FaultAccess::Write
    } else {
        FaultAccess::Read
    };
    let outcome = if kernel_data_access {
        vmalloc_fault(VirtAddr(addr), access)
    } else {
        Err(FaultError::BadArea)
    };
    match outcome {
        Ok(_) => true,
        Err(e) => fixup_exception(frame, e),
    }
}

/// A fault at `addr` inside the vmalloc area (cf. `handle_mm_fault()`).
/// Never blocks on the area lock: were the fault taken with it held, this
/// is a bug to report, not to deadlock on.
fn vmalloc_fault(addr: VirtAddr, access: FaultAccess) -> Result<FaultResolution, FaultError> {
    let Some(mut areas) = super::vmalloc::vmap_areas().try_lock() else {
        return Err(FaultError::BadArea);
    };
    if !areas.is_vmalloc_addr(addr) {
        return Err(FaultError::BadArea);
    }
    let mm = super::mm();
    mm::fault::handle_vmalloc_fault(&mut areas, mm, mm.platform(), addr, access)
}

/// `fixup_exception()`: a fault at a probe's access resumes after it with
/// the reason in RAX.
fn fixup_exception(frame: &mut TrapFrame, error: FaultError) -> bool {
    // SAFETY: `pz_extable` is defined in the `global_asm!` above with
    // exactly two rows of two `.quad`s in `.rodata`, never written.
    let table = unsafe { &pz_extable };
    let Some(&[_, resume]) = table.iter().find(|row| row[0] == frame.rip) else {
        return false;
    };
    frame.rip = resume;
    frame.rax = match error {
        FaultError::Oom => FIXUP_OOM,
        FaultError::BadArea => FIXUP_BAD_AREA,
    };
    true
}
