//! IDT and interrupt entry on stable Rust.
//!
//! Every vector enters through a small stub that makes the stack uniform
//! (a dummy error code where the CPU pushes none, then the vector number) and
//! jumps to [`interrupt_common`], which saves all general-purpose registers
//! into a [`TrapFrame`] and calls [`interrupt_dispatch`] (cf. Linux
//! `idtentry` / `error_entry` in arch/x86/entry/entry_64.S).
//!
//! - Exceptions 0-31: one `#[unsafe(naked)]` stub each. Vectors that CPUs do
//!   not raise (15, 22-27, 31) are private fields of the x86_64 crate's IDT,
//!   so their gates stay not-present; were one ever delivered, the CPU would
//!   raise #GP with an IDT error code, which the report decodes.
//! - Vectors 32-255: a table of stubs generated in assembly
//!   (`pz_irq_entry_table`), dispatched to handlers registered with
//!   [`set_irq_handler`]; others are logged as spurious and ignored.
//!
//! Fatal exceptions print a report (vector, error code, registers, control
//! registers and a page-table walk) and exit QEMU with status 35. #BP logs
//! and resumes.

use core::arch::{global_asm, naked_asm};
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use spin::{Once, RwLock};
use x86_64::VirtAddr;
use x86_64::registers::control::Cr2;
use x86_64::structures::idt::InterruptDescriptorTable;

use super::gdt::{IST_DOUBLE_FAULT, IST_MACHINE_CHECK, IST_NMI};
use super::qemu::{QemuExitCode, exit_qemu};
use super::{paging, serial};

/// Register state saved by the entry path, lowest address first: the
/// general-purpose registers pushed by [`interrupt_common`], the vector and
/// error code pushed by the stub, then the CPU's interrupt frame.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TrapFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    /// The CPU's error code, or 0 for vectors that have none.
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

/// A handler for vectors 32-255. Runs with interrupts disabled, on the
/// interrupted stack; must not allocate (DESIGN.md) and must send its own EOI.
pub type IrqHandler = fn(&mut TrapFrame);

/// Mnemonic and name of each exception vector.
pub const EXCEPTION_NAMES: [(&str, &str); 32] = [
    ("#DE", "Divide Error"),
    ("#DB", "Debug"),
    ("NMI", "Non-Maskable Interrupt"),
    ("#BP", "Breakpoint"),
    ("#OF", "Overflow"),
    ("#BR", "BOUND Range Exceeded"),
    ("#UD", "Invalid Opcode"),
    ("#NM", "Device Not Available"),
    ("#DF", "Double Fault"),
    ("#MP", "Coprocessor Segment Overrun"),
    ("#TS", "Invalid TSS"),
    ("#NP", "Segment Not Present"),
    ("#SS", "Stack-Segment Fault"),
    ("#GP", "General Protection"),
    ("#PF", "Page Fault"),
    ("#15", "Reserved"),
    ("#MF", "x87 Floating-Point Error"),
    ("#AC", "Alignment Check"),
    ("#MC", "Machine Check"),
    ("#XM", "SIMD Floating-Point"),
    ("#VE", "Virtualization"),
    ("#CP", "Control Protection"),
    ("#22", "Reserved"),
    ("#23", "Reserved"),
    ("#24", "Reserved"),
    ("#25", "Reserved"),
    ("#26", "Reserved"),
    ("#27", "Reserved"),
    ("#HV", "Hypervisor Injection"),
    ("#VC", "VMM Communication"),
    ("#SX", "Security"),
    ("#31", "Reserved"),
];

pub const VECTOR_BREAKPOINT: u8 = 3;
pub const VECTOR_DOUBLE_FAULT: u8 = 8;
pub const VECTOR_PAGE_FAULT: u8 = 14;
/// First vector not reserved for exceptions.
pub const FIRST_IRQ_VECTOR: u8 = 32;
const NR_IRQ_VECTORS: usize = 256 - FIRST_IRQ_VECTOR as usize;

// ---------------------------------------------------------------------------
// Entry stubs

/// Saves the GPRs on top of the stub's vector/error code, calls
/// `interrupt_dispatch(&mut TrapFrame)`, restores and returns.
///
/// Alignment: the CPU aligns RSP to 16 before pushing its 5-word frame (64-bit
/// mode); with error code, vector and 15 GPRs that is 22 words, so RSP is
/// 16-byte aligned at the call. It is re-aligned anyway, with the original
/// kept in callee-saved rbx, so a miscounted stub cannot misalign Rust code.
#[unsafe(naked)]
extern "C" fn interrupt_common() {
    naked_asm!(
        "push rax",
        "push rbx",
        "push rcx",
        "push rdx",
        "push rsi",
        "push rdi",
        "push rbp",
        "push r8",
        "push r9",
        "push r10",
        "push r11",
        "push r12",
        "push r13",
        "push r14",
        "push r15",
        "cld",
        "mov rdi, rsp",
        "mov rbx, rsp",
        "and rsp, -16",
        "call {dispatch}",
        "mov rsp, rbx",
        "pop r15",
        "pop r14",
        "pop r13",
        "pop r12",
        "pop r11",
        "pop r10",
        "pop r9",
        "pop r8",
        "pop rbp",
        "pop rdi",
        "pop rsi",
        "pop rdx",
        "pop rcx",
        "pop rbx",
        "pop rax",
        "add rsp, 16", // vector and error code
        "iretq",
        dispatch = sym interrupt_dispatch,
    )
}

/// Defines a naked entry stub for exception `$vector`. `no_err` pushes a
/// dummy 0 where the CPU pushes no error code, so every frame looks alike.
macro_rules! exception_stub {
    ($name:ident, $vector:literal, no_err) => {
        #[unsafe(naked)]
        extern "C" fn $name() {
            naked_asm!(
                "push 0",
                "push {vector}",
                "jmp {common}",
                vector = const $vector,
                common = sym interrupt_common,
            )
        }
    };
    ($name:ident, $vector:literal, err) => {
        #[unsafe(naked)]
        extern "C" fn $name() {
            naked_asm!(
                "push {vector}",
                "jmp {common}",
                vector = const $vector,
                common = sym interrupt_common,
            )
        }
    };
}

exception_stub!(entry_divide_error, 0, no_err);
exception_stub!(entry_debug, 1, no_err);
exception_stub!(entry_nmi, 2, no_err);
exception_stub!(entry_breakpoint, 3, no_err);
exception_stub!(entry_overflow, 4, no_err);
exception_stub!(entry_bound_range, 5, no_err);
exception_stub!(entry_invalid_opcode, 6, no_err);
exception_stub!(entry_device_not_available, 7, no_err);
exception_stub!(entry_double_fault, 8, err);
exception_stub!(entry_coprocessor_segment_overrun, 9, no_err);
exception_stub!(entry_invalid_tss, 10, err);
exception_stub!(entry_segment_not_present, 11, err);
exception_stub!(entry_stack_segment, 12, err);
exception_stub!(entry_general_protection, 13, err);
exception_stub!(entry_page_fault, 14, err);
exception_stub!(entry_x87_floating_point, 16, no_err);
exception_stub!(entry_alignment_check, 17, err);
exception_stub!(entry_machine_check, 18, no_err);
exception_stub!(entry_simd_floating_point, 19, no_err);
exception_stub!(entry_virtualization, 20, no_err);
exception_stub!(entry_control_protection, 21, err);
exception_stub!(entry_hv_injection, 28, no_err);
exception_stub!(entry_vmm_communication, 29, err);
exception_stub!(entry_security, 30, err);

// Stubs for vectors 32-255, and a table of their addresses in .rodata
// (cf. Linux's `irq_entries_start`). External interrupts push no error code.
// Each stub's address is recorded as it is emitted (`.quad 1b`), so nothing
// depends on the stubs' sizes.
global_asm!(
    r#"
    .pushsection .rodata.pz_irq_entry_table, "a"
    .balign 8
    .global pz_irq_entry_table
pz_irq_entry_table:
    .popsection

    .pushsection .text.pz_irq_entries, "ax"
    .set pz_vector, 32
    .rept 224
    .balign 16
1:  push 0
    .byte 0x68                  /* push imm32 (sign-extended): the vector */
    .long pz_vector
    jmp {common}
    .pushsection .rodata.pz_irq_entry_table, "a"
    .quad 1b
    .popsection
    .set pz_vector, pz_vector + 1
    .endr
    .popsection
    "#,
    common = sym interrupt_common,
);

unsafe extern "C" {
    /// Addresses of the 224 stubs for vectors 32..=255, in vector order.
    static pz_irq_entry_table: [u64; NR_IRQ_VECTORS];
}

// ---------------------------------------------------------------------------
// IDT

static IDT: Once<InterruptDescriptorTable> = Once::new();

static IRQ_HANDLERS: RwLock<[Option<IrqHandler>; NR_IRQ_VECTORS]> =
    RwLock::new([None; NR_IRQ_VECTORS]);

/// Builds and loads the IDT. Call after [`super::gdt::init`] (the gates use
/// the current CS and the TSS's IST slots).
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        let addr = |stub: extern "C" fn()| VirtAddr::new(stub as usize as u64);
        // SAFETY (for every `set_handler_addr` / `set_stack_index` below):
        // each address is one of the naked stubs above, which expects exactly
        // the frame the CPU pushes for that vector (error code or not, as
        // declared by `exception_stub!` to match the SDM's table 6-1) and
        // ends in `iretq` or never returns. The IST indices name stacks
        // installed in the TSS by `gdt::init`, each used by one vector only.
        unsafe {
            idt.divide_error.set_handler_addr(addr(entry_divide_error));
            idt.debug.set_handler_addr(addr(entry_debug));
            idt.non_maskable_interrupt
                .set_handler_addr(addr(entry_nmi))
                .set_stack_index(IST_NMI);
            idt.breakpoint.set_handler_addr(addr(entry_breakpoint));
            idt.overflow.set_handler_addr(addr(entry_overflow));
            idt.bound_range_exceeded
                .set_handler_addr(addr(entry_bound_range));
            idt.invalid_opcode
                .set_handler_addr(addr(entry_invalid_opcode));
            idt.device_not_available
                .set_handler_addr(addr(entry_device_not_available));
            idt.double_fault
                .set_handler_addr(addr(entry_double_fault))
                .set_stack_index(IST_DOUBLE_FAULT);
            // Vector 9 has no public field; `IndexMut<u8>` reaches it.
            idt[9].set_handler_addr(addr(entry_coprocessor_segment_overrun));
            idt.invalid_tss.set_handler_addr(addr(entry_invalid_tss));
            idt.segment_not_present
                .set_handler_addr(addr(entry_segment_not_present));
            idt.stack_segment_fault
                .set_handler_addr(addr(entry_stack_segment));
            idt.general_protection_fault
                .set_handler_addr(addr(entry_general_protection));
            idt.page_fault.set_handler_addr(addr(entry_page_fault));
            idt.x87_floating_point
                .set_handler_addr(addr(entry_x87_floating_point));
            idt.alignment_check
                .set_handler_addr(addr(entry_alignment_check));
            idt.machine_check
                .set_handler_addr(addr(entry_machine_check))
                .set_stack_index(IST_MACHINE_CHECK);
            idt.simd_floating_point
                .set_handler_addr(addr(entry_simd_floating_point));
            idt.virtualization
                .set_handler_addr(addr(entry_virtualization));
            idt.cp_protection_exception
                .set_handler_addr(addr(entry_control_protection));
            idt.hv_injection_exception
                .set_handler_addr(addr(entry_hv_injection));
            idt.vmm_communication_exception
                .set_handler_addr(addr(entry_vmm_communication));
            idt.security_exception
                .set_handler_addr(addr(entry_security));
        }
        // SAFETY: `pz_irq_entry_table` is defined in the `global_asm!` above
        // with exactly NR_IRQ_VECTORS `.quad` entries in `.rodata`, never
        // written; reading it by value copies 224 initialised u64s.
        let stubs = unsafe { pz_irq_entry_table };
        for (entry, &stub) in idt
            .slice_mut(FIRST_IRQ_VECTOR..)
            .iter_mut()
            .zip(stubs.iter())
        {
            // SAFETY: each table entry is the address of a stub that pushes
            // a dummy error code and its vector, matching an external
            // interrupt's frame, and returns with `iretq`.
            unsafe { entry.set_handler_addr(VirtAddr::new(stub)) };
        }
        idt
    });
    idt.load();
    log::debug!("IDT loaded: 24 exception gates, vectors 32-255 -> irq stubs");
}

/// Loads the IDT [`init`] built on an application processor: one table
/// for every CPU, as in Linux (`load_current_idt()` in `cpu_init()`).
/// Returns false if the boot CPU has not built it.
pub fn load_ap() -> bool {
    match IDT.get() {
        Some(idt) => {
            idt.load();
            true
        }
        None => false,
    }
}

/// Routes vector `vector` (32-255) to `handler`. Returns false for an
/// exception vector.
pub fn set_irq_handler(vector: u8, handler: IrqHandler) -> bool {
    let Some(slot) = vector.checked_sub(FIRST_IRQ_VECTOR) else {
        return false;
    };
    // Interrupts off: an interrupt arriving while we hold the write lock
    // would find it taken (and be reported spurious) rather than deadlock.
    x86_64::instructions::interrupts::without_interrupts(|| {
        IRQ_HANDLERS.write()[usize::from(slot)] = Some(handler);
    });
    true
}

// ---------------------------------------------------------------------------
// Dispatch

static IN_FATAL: AtomicBool = AtomicBool::new(false);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

/// Called by [`interrupt_common`] with a pointer to the saved frame.
extern "C" fn interrupt_dispatch(frame: &mut TrapFrame) {
    let vector = frame.vector;
    if vector >= u64::from(FIRST_IRQ_VECTOR) {
        let slot = (vector - u64::from(FIRST_IRQ_VECTOR)) as usize;
        let handler = IRQ_HANDLERS
            .try_read()
            .and_then(|h| h.get(slot).copied().flatten());
        match handler {
            Some(handler) => handler(frame),
            None => {
                // Logged a few times only: a stuck line must not flood serial.
                let n = SPURIOUS.fetch_add(1, Ordering::Relaxed);
                if n < 8 {
                    log::warn!(
                        "spurious/unexpected interrupt: vector {vector:#x} at RIP {:#x}",
                        frame.rip
                    );
                }
            }
        }
        return;
    }
    // Demand paging is `mm`'s, which only CPU 0 may enter until the
    // allocator is SMP-safe: a page fault on another CPU is fatal.
    if vector == u64::from(VECTOR_PAGE_FAULT)
        && super::percpu::this_cpu_id() == 0
        && crate::memory::fault::handle_page_fault(frame)
    {
        return;
    }
    if vector == u64::from(VECTOR_BREAKPOINT) {
        // int3 leaves RIP after the instruction: resuming continues there.
        log::info!(
            "#BP Breakpoint at RIP {:#x} (RSP {:#x}); continuing",
            frame.rip.wrapping_sub(1),
            frame.rsp
        );
        return;
    }
    fatal_exception(frame)
}

/// The one-line summary and decoded error code.
struct ErrorCode<'a>(&'a TrapFrame);

impl fmt::Display for ErrorCode<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = self.0.error_code;
        match self.0.vector as u8 {
            VECTOR_PAGE_FAULT => {
                let bit = |n: u32| u8::from(code & (1 << n) != 0);
                write!(
                    f,
                    "{code:#06x} [P={} W={} U={} RSVD={} I={} PK={} SS={}]",
                    bit(0),
                    bit(1),
                    bit(2),
                    bit(3),
                    bit(4),
                    bit(5),
                    bit(6)
                )
            }
            // Selector error code (SDM 6.13): EXT, IDT, TI, index.
            10..=13 | 17 if code != 0 => {
                let table = if code & 2 != 0 {
                    "IDT"
                } else if code & 4 != 0 {
                    "LDT"
                } else {
                    "GDT"
                };
                write!(
                    f,
                    "{code:#06x} [{table} index {}{}]",
                    code >> 3,
                    if code & 1 != 0 { ", external" } else { "" }
                )
            }
            _ => write!(f, "{code:#06x}"),
        }
    }
}

/// Prints the report for an unrecoverable exception and exits QEMU (35).
fn fatal_exception(frame: &TrapFrame) -> ! {
    if IN_FATAL.swap(true, Ordering::SeqCst) {
        // A fault while reporting a fault (or panicking): no formatting, out.
        serial::enter_fatal();
        serial::write_str_raw("\nnested fault during fault report; exiting\n");
        exit_qemu(QemuExitCode::Failed);
    }
    serial::enter_fatal();
    let vector = frame.vector as usize;
    let (mnemonic, name) = EXCEPTION_NAMES
        .get(vector)
        .copied()
        .unwrap_or(("#??", "Unknown"));
    let cr2 = Cr2::read_raw();
    let cr3 = x86_64::registers::control::Cr3::read_raw()
        .0
        .start_address()
        .as_u64();

    log::error!(
        "EXCEPTION: {mnemonic} {name} (vector {vector}) error code {} on CPU {}",
        ErrorCode(frame),
        super::percpu::this_cpu_id()
    );
    if vector == usize::from(VECTOR_PAGE_FAULT) {
        // Linux's wording (arch/x86/mm/fault.c:show_fault_oops()).
        let code = frame.error_code;
        log::error!(
            "#PF: {} {} access in {} mode; {}",
            if code & 4 != 0 { "user" } else { "supervisor" },
            if code & 16 != 0 {
                "instruction fetch"
            } else if code & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if frame.cs & 3 != 0 { "user" } else { "kernel" },
            if code & 8 != 0 {
                "reserved bit violation"
            } else if code & 1 != 0 {
                "permissions violation"
            } else {
                "not-present page"
            }
        );
    }
    log::error!(
        "RIP {:#018x}  CS  {:#06x}  RFLAGS {:#010x}",
        frame.rip,
        frame.cs,
        frame.rflags
    );
    log::error!("RSP {:#018x}  SS  {:#06x}", frame.rsp, frame.ss);
    log::error!("CR2 {cr2:#018x}  CR3 {cr3:#018x}");
    log::error!(
        "RAX {:#018x}  RBX {:#018x}  RCX {:#018x}",
        frame.rax,
        frame.rbx,
        frame.rcx
    );
    log::error!(
        "RDX {:#018x}  RSI {:#018x}  RDI {:#018x}",
        frame.rdx,
        frame.rsi,
        frame.rdi
    );
    log::error!(
        "RBP {:#018x}  R8  {:#018x}  R9  {:#018x}",
        frame.rbp,
        frame.r8,
        frame.r9
    );
    log::error!(
        "R10 {:#018x}  R11 {:#018x}  R12 {:#018x}",
        frame.r10,
        frame.r11,
        frame.r12
    );
    log::error!(
        "R13 {:#018x}  R14 {:#018x}  R15 {:#018x}",
        frame.r13,
        frame.r14,
        frame.r15
    );

    if vector == usize::from(VECTOR_PAGE_FAULT) {
        log_walk(cr2, "CR2", cr3);
    } else {
        log_walk(frame.rip, "RIP", cr3);
        // A double fault is usually a page fault that could not be
        // delivered (kernel stack overflow): CR2 names the culprit.
        if vector == usize::from(VECTOR_DOUBLE_FAULT) && cr2 != 0 {
            log_walk(cr2, "CR2, last #PF address", cr3);
        }
    }
    exit_qemu(QemuExitCode::Failed)
}

/// Logs the page-table walk of `vaddr` through the live tables.
fn log_walk(vaddr: u64, what: &str, cr3: u64) {
    let (walk, complete) = paging::walk_current(vaddr);
    log::error!("page walk of {vaddr:#x} ({what}), CR3 {cr3:#x}:");
    // One log line per walk line, so each gets the prefix.
    let mut line = LineSplitter::new();
    let _ = fmt::write(&mut line, format_args!("{walk}\n"));
    if !complete {
        log::error!("  (a table lies outside the physical window; walk truncated)");
    }
    crate::memory::vmalloc::describe_fault_address(vaddr);
}

/// Logs formatted text line by line without allocating.
struct LineSplitter {
    buf: [u8; 160],
    len: usize,
}

impl LineSplitter {
    const fn new() -> Self {
        LineSplitter {
            buf: [0; 160],
            len: 0,
        }
    }
}

impl fmt::Write for LineSplitter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &b in s.as_bytes() {
            if b == b'\n' || self.len == self.buf.len() {
                let text = core::str::from_utf8(&self.buf[..self.len]).unwrap_or("<non-UTF-8>");
                log::error!("  {text}");
                self.len = 0;
                if b == b'\n' {
                    continue;
                }
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        Ok(())
    }
}
