//! PVH entry: from 32-bit protected mode to `kmain` in long mode.
//!
//! QEMU (`-kernel image.elf`) finds `XEN_ELFNOTE_PHYS32_ENTRY` in our PT_NOTE
//! and starts `pvh_start32` as the PVH boot ABI prescribes
//! (xen/include/public/arch-x86/hvm/start_info.h, docs/misc/pvh.pandoc):
//! 32-bit flat protected mode, paging off, interrupts off, `%ebx` = physical
//! address of `hvm_start_info`, no stack, GDTR undefined. Cf. Linux
//! `arch/x86/platform/pvh/head.S`.
//!
//! The stub zeroes .bss, identity-maps the first 4 GiB with 2 MiB pages
//! (PML4 → one PDPT → four PDs, all in .bss), enables PAE, EFER.LME (+NXE when
//! the CPU has it) and CR0.PG|WP, loads a 64-bit GDT and far-jumps to 64-bit
//! code, which switches to a 128 KiB .bss stack and calls
//! `kmain(start_info_phys)`. Rust then replaces GDT, IDT and, later, these
//! page tables; [`boot_page_tables`] tells memblock where they are.

use core::arch::global_asm;
use core::ops::Range;

/// Size of the boot stack `kmain` runs on: the main loop, the network
/// stack and every request run on it (64 KiB was outgrown when the boot
/// phases, SMP bring-up and the per-CPU allocator's state arrived).
pub const BOOT_STACK_SIZE: u64 = 128 * 1024;
/// The boot page tables identity-map `[0, BOOT_IDENTITY_LIMIT)`.
pub const BOOT_IDENTITY_LIMIT: u64 = 4 << 30;

// The PVH ELF note (type 18 = XEN_ELFNOTE_PHYS32_ENTRY). Standard ELF note
// layout with 4-byte alignment; the descriptor is 8 bytes because QEMU
// (hw/i386/x86.c: read_pvh_start_addr) reads a 64-bit value, which Xen's
// libelf also accepts. The value is the 32-bit physical entry point.
global_asm!(
    r#"
    .pushsection .note.Xen, "a", @note
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4
    .popsection
    "#,
    options(att_syntax)
);

// Boot page tables and stack. `.bss.pvh_pgtables` is placed first in .bss
// by linker.ld so the six tables are contiguous and page-aligned.
global_asm!(
    r#"
    .pushsection .bss.pvh_pgtables, "aw", @nobits
    .balign 4096
    .global pvh_boot_pgtables_start
pvh_boot_pgtables_start:
    .global pvh_boot_pml4
pvh_boot_pml4:
    .skip 4096
pvh_boot_pdpt:
    .skip 4096
pvh_boot_pd:
    .skip 4096 * 4
    .global pvh_boot_pgtables_end
pvh_boot_pgtables_end:
    .popsection

    .pushsection .bss.pvh_stack, "aw", @nobits
    .balign 4096
    /* Never used: an overflow of the boot stack lands here before it can
       reach the page tables, and the final tables can leave it unmapped. */
    .global pvh_boot_stack_guard
pvh_boot_stack_guard:
    .skip 4096
    .global pvh_boot_stack_bottom
pvh_boot_stack_bottom:
    .skip 131072
    .global pvh_boot_stack_top
pvh_boot_stack_top:
    .popsection
    "#,
    options(att_syntax)
);

// Temporary GDT: null, 64-bit code (0x08), data (0x10). Accessed bits are
// preset so the CPU never writes to it. The pointer's base is a .quad so the
// same descriptor would also serve a 64-bit `lgdt`.
global_asm!(
    r#"
    .pushsection .rodata.pvh_gdt, "a"
    .balign 16
pvh_gdt:
    .quad 0
    .quad 0x00af9b000000ffff    /* 0x08: L=1 D=0 P=1 DPL=0 code, execute/read */
    .quad 0x00cf93000000ffff    /* 0x10: P=1 DPL=0 data, read/write, 4 GiB */
pvh_gdt_end:
    .balign 8
pvh_gdt_ptr:
    .word pvh_gdt_end - pvh_gdt - 1
    .quad pvh_gdt
    .popsection
    "#,
    options(att_syntax)
);

global_asm!(
    r#"
    .pushsection .text.pvh_entry, "ax"
    .code32
    .global pvh_start32
    .type pvh_start32, @function
pvh_start32:
    cli
    cld
    movl %ebx, %esi                 /* hvm_start_info phys; cpuid clobbers ebx */

    /* Long mode is required; NX is used when present. */
    movl $0x80000000, %eax
    cpuid
    cmpl $0x80000001, %eax
    jb .Lno_long_mode
    movl $0x80000001, %eax
    cpuid
    btl $29, %edx                   /* LM */
    jnc .Lno_long_mode
    movl %edx, %ebp                 /* keep bit 20 (NX) for EFER below */

    /* Zero .bss (page-aligned start and end, so a multiple of 4 bytes). */
    movl $__bss_start, %edi
    movl $__bss_end, %ecx
    subl %edi, %ecx
    shrl $2, %ecx
    xorl %eax, %eax
    rep stosl

    /* PML4[0] -> PDPT. Upper halves of entries stay zero from .bss. */
    movl $pvh_boot_pdpt + 0x3, pvh_boot_pml4        /* P | RW */

    /* PDPT[0..4] -> PD[0..4]. */
    movl $pvh_boot_pdpt, %edi
    movl $pvh_boot_pd + 0x3, %eax
    movl $4, %ecx
1:  movl %eax, (%edi)
    addl $0x1000, %eax
    addl $8, %edi
    loop 1b

    /* PD entries: 2048 x 2 MiB, entry i maps i * 2 MiB. */
    movl $pvh_boot_pd, %edi
    movl $0x83, %eax                /* P | RW | PS */
    movl $2048, %ecx
1:  movl %eax, (%edi)
    addl $0x200000, %eax
    addl $8, %edi
    loop 1b

    movl $pvh_boot_pml4, %eax
    movl %eax, %cr3

    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4

    movl $0xc0000080, %ecx          /* IA32_EFER */
    rdmsr
    orl $0x100, %eax                /* LME */
    btl $20, %ebp
    jnc 2f
    orl $0x800, %eax                /* NXE */
2:  wrmsr

    lgdt pvh_gdt_ptr

    movl %cr0, %eax
    orl $0x80010001, %eax           /* PG | WP | PE */
    movl %eax, %cr0

    ljmp $0x08, $pvh_start64

.Lno_long_mode:
    /* Nothing can report this but the UART: best effort, then stop. */
    movl $.Lno_lm_msg, %ebx
    movw $0x3f8, %dx
3:  movb (%ebx), %al
    testb %al, %al
    jz 4f
    outb %al, %dx
    incl %ebx
    jmp 3b
4:  hlt
    jmp 4b

    .code64
pvh_start64:
    movl $0x10, %eax
    movl %eax, %ds
    movl %eax, %es
    movl %eax, %ss
    xorl %eax, %eax
    movl %eax, %fs
    movl %eax, %gs

    movq $pvh_boot_stack_top, %rsp  /* 16-byte aligned, so the call is ABI-aligned */
    xorl %ebp, %ebp                 /* terminate frame-pointer chains */
    movl %esi, %edi                 /* zero-extends: kmain(start_info_phys) */
    call {kmain}
5:  cli
    hlt
    jmp 5b
    .size pvh_start32, . - pvh_start32
    .popsection

    .pushsection .rodata.pvh_msg, "a"
.Lno_lm_msg:
    .asciz "PVH: this CPU has no long mode; halting\r\n"
    .popsection
    "#,
    kmain = sym crate::kmain,
    options(att_syntax)
);

unsafe extern "C" {
    static __kernel_start: u8;
    static __kernel_end: u8;
    static __bss_start: u8;
    static __bss_end: u8;
    static pvh_boot_pml4: u8;
    static pvh_boot_pgtables_start: u8;
    static pvh_boot_pgtables_end: u8;
    static pvh_boot_stack_guard: u8;
    static pvh_boot_stack_bottom: u8;
    static pvh_boot_stack_top: u8;
}

// Only the addresses of these symbols are taken, never their contents, and
// the image is identity-linked, so each address is also the physical one.

/// Physical address of the boot PML4 (what CR3 holds until the final tables
/// are loaded).
pub fn boot_pml4_phys() -> u64 {
    (&raw const pvh_boot_pml4) as u64
}

/// Physical range of all boot page tables (PML4, PDPT, 4 PDs; 24 KiB,
/// page-aligned, inside .bss). Reserve it while CR3 points at it; it is part
/// of the kernel image, so never hand it to the buddy allocator.
pub fn boot_page_tables() -> Range<u64> {
    (&raw const pvh_boot_pgtables_start) as u64..(&raw const pvh_boot_pgtables_end) as u64
}

/// Physical range of the 128 KiB boot stack (`kmain` never leaves it).
pub fn boot_stack() -> Range<u64> {
    (&raw const pvh_boot_stack_bottom) as u64..(&raw const pvh_boot_stack_top) as u64
}

/// The 4 KiB page right below the boot stack, kept free so the final page
/// tables can leave it unmapped (a stack overflow then faults into #DF
/// instead of corrupting .bss).
pub fn boot_stack_guard() -> Range<u64> {
    let start = (&raw const pvh_boot_stack_guard) as u64;
    start..start + 4096
}

/// Physical range of the whole loaded image, .bss included
/// (`__kernel_start..__kernel_end`, page-aligned).
pub fn kernel_image() -> Range<u64> {
    (&raw const __kernel_start) as u64..(&raw const __kernel_end) as u64
}

/// Physical range of .bss (`__bss_start..__bss_end`).
pub fn bss() -> Range<u64> {
    (&raw const __bss_start) as u64..(&raw const __bss_end) as u64
}

/// Logs where the boot-time structures are, for whoever reserves them.
pub fn log_layout() {
    let (image, bss, tables, stack) = (kernel_image(), bss(), boot_page_tables(), boot_stack());
    log::info!(
        "boot: image {:#x}-{:#x}, .bss {:#x}-{:#x}",
        image.start,
        image.end,
        bss.start,
        bss.end
    );
    log::debug!(
        "boot: page tables {:#x}-{:#x} (PML4 {:#x}, identity map of [0, {} GiB) in 2 MiB pages), stack {:#x}-{:#x} (guard page {:#x})",
        tables.start,
        tables.end,
        boot_pml4_phys(),
        BOOT_IDENTITY_LIMIT >> 30,
        stack.start,
        stack.end,
        boot_stack_guard().start
    );
    debug_assert_eq!(stack.end - stack.start, BOOT_STACK_SIZE);
}
