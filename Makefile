# Pagezone — build, boot and test the unikernel.
#
#   make run     build the kernel, install what is missing, boot it in QEMU
#                with 127.0.0.1:$(PORT) forwarded to the guest's API port
#   make test    host unit/property tests, then QEMU boot and browser tests
#   make debug   boot halted with a gdb stub on :1234; prints the gdb command
#   make soak    a seeded random walk over every command for SOAK_SECONDS
#                (default 300), selfcheck and reset-to-boot every 200 steps
#   make bench   the benchmark tables of docs/benchmarks.md: page, slab and
#                vmalloc layers on the host, then the booted image in QEMU
#   make kernel  just build target/pagezone.elf (stripped) and
#                target/pagezone.debug (its symbols and DWARF)
#
# MACHINE=q35 (default): PCI, virtio-net-pci, qboot as the firmware (no
# default devices, no option ROM: the kernel assigns the NIC's BARs);
# MACHINE=q35-seabios: the same machine as QEMU sets it up by default
# (SeaBIOS, which assigns them; slower to start). MACHINE=microvm: QEMU's
# microvm, no PCI, virtio-net-device on virtio-mmio, found from the
# `virtio_mmio.device=` QEMU appends to the command line (ACPI off, as
# Firecracker boots); MACHINE=microvm-acpi: the same with microvm's ACPI,
# the device found in the DSDT. run and debug take it; `make test` runs
# its own mix (below), and `MACHINE=… cargo test -p tests --test …` any
# suite on any machine.

MEM    ?= 2G
# CPUs (-smp); the boot CPU serves, the others idle (README "CPUs").
SMP    ?= 2
PORT   ?= 8080
ACCEL  ?= tcg
APPEND ?=
GUEST_PORT ?= 80

KERNEL_TARGET := x86_64-unknown-none
# Cargo.toml's `kernel` profile: release, optimised for size.
KERNEL_BUILD  := $(or $(CARGO_TARGET_DIR),target)/$(KERNEL_TARGET)/kernel/unikernel
KERNEL_ELF    := target/pagezone.elf
KERNEL_DEBUG  := target/pagezone.debug
OBJCOPY       ?= objcopy

ifeq ($(ACCEL),kvm)
  QEMU_ACCEL := -accel kvm -cpu host
else
  QEMU_ACCEL := -accel tcg -cpu max
endif

MACHINE ?= q35
ifeq ($(MACHINE),q35)
  QEMU_MACHINE := -M q35 -nodefaults -bios qboot.rom
  QEMU_NIC     := -device virtio-net-pci,netdev=net0,disable-legacy=on,romfile=
else ifeq ($(MACHINE),q35-seabios)
  QEMU_MACHINE := -M q35
  QEMU_NIC     := -device virtio-net-pci,netdev=net0,disable-legacy=on
else ifeq ($(MACHINE),microvm)
  QEMU_MACHINE := -M microvm,acpi=off -global virtio-mmio.force-legacy=false
  QEMU_NIC     := -device virtio-net-device,netdev=net0
else ifeq ($(MACHINE),microvm-acpi)
  QEMU_MACHINE := -M microvm,acpi=on -global virtio-mmio.force-legacy=false
  QEMU_NIC     := -device virtio-net-device,netdev=net0
else
  $(error MACHINE=$(MACHINE): expected q35, q35-seabios, microvm or microvm-acpi)
endif

QEMU_ARGS = $(QEMU_MACHINE) -m $(MEM) -smp $(SMP) $(QEMU_ACCEL) -display none -no-reboot \
	-name pagezone,debug-threads=on \
	-serial mon:stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$(PORT)-:$(GUEST_PORT) \
	$(QEMU_NIC) \
	-kernel $(KERNEL_ELF) -append "$(APPEND)"

.PHONY: all deps kernel run debug test test-host test-qemu bench soak clean FORCE

all: kernel

deps:
	@.ci/deps.sh rust qemu

# Cargo decides what is stale; FORCE makes make always ask it.
# The image QEMU loads is stripped (under 1 MiB); its symbols and DWARF go
# to $(KERNEL_DEBUG), which gdb finds through the image's .gnu_debuglink
# (the GNU way: objcopy --only-keep-debug, --strip-all, --add-gnu-debuglink).
$(KERNEL_ELF): FORCE
	@.ci/deps.sh rust objcopy
	cargo build -p unikernel --target $(KERNEL_TARGET) --profile kernel
	@mkdir -p $(dir $(KERNEL_ELF))
	@$(OBJCOPY) --only-keep-debug $(KERNEL_BUILD) $(KERNEL_DEBUG)
	@$(OBJCOPY) --strip-all --add-gnu-debuglink=$(KERNEL_DEBUG) $(KERNEL_BUILD) $(KERNEL_ELF)
	@echo "pagezone: $(KERNEL_ELF) $$(stat -c %s $(KERNEL_ELF)) bytes, symbols in $(KERNEL_DEBUG)"

kernel: $(KERNEL_ELF)

run: deps kernel
	@echo "pagezone: booting $(MACHINE) ($(MEM), $(SMP) CPUs, $(ACCEL)); API on http://127.0.0.1:$(PORT)/ — Ctrl-A X quits"
	qemu-system-x86_64 $(QEMU_ARGS)

# gdb reads the symbols from $(KERNEL_DEBUG) (the image's debuglink).
debug: deps kernel
	@echo "pagezone: halted at reset; attach with:"
	@echo "  gdb $(KERNEL_ELF) -ex 'target remote :1234' -ex 'break unikernel::kmain' -ex continue"
	qemu-system-x86_64 $(QEMU_ARGS) -s -S

# Everything on q35, then the boot-level suites (boot, api, selftest) on
# q35 under SeaBIOS (with vm: the BARs the firmware assigned) and on
# microvm, without and with its ACPI.
test: deps kernel
	@.ci/deps.sh rust qemu browser prometheus schemathesis
	MACHINE=q35 PAGEZONE_ELF=$(abspath $(KERNEL_ELF)) cargo test --workspace --exclude unikernel
	MACHINE=q35-seabios PAGEZONE_ELF=$(abspath $(KERNEL_ELF)) cargo test -p tests --test boot --test api --test vm
	MACHINE=microvm PAGEZONE_ELF=$(abspath $(KERNEL_ELF)) cargo test -p tests --test boot --test api
	MACHINE=microvm-acpi PAGEZONE_ELF=$(abspath $(KERNEL_ELF)) cargo test -p tests --test boot

# A seeded random walk over every command for SOAK_SECONDS (SOAK_SEED=N
# repeats one) on a SOAK_MEM guest, memory run dry every third window;
# selfcheck and reset-to-boot every 200 steps. CI runs it for 60 s.
SOAK_SECONDS ?= 300
SOAK_MEM     ?= 2G

soak: deps kernel
	PAGEZONE_ELF=$(abspath $(KERNEL_ELF)) SOAK_SECONDS=$(SOAK_SECONDS) SOAK_MEM=$(SOAK_MEM) cargo test -p tests --test soak -- --ignored --nocapture

# One process per table, every row of a table from that one run; host
# tables in --release (cargo bench), then boot times, wrk, image size,
# smallest -m and idle CPU of the image `make kernel` just built.
bench: deps kernel
	@.ci/deps.sh bench
	cargo bench -p benches --bench pages
	cargo bench -p benches --bench kmalloc
	cargo bench -p mm --features sim --bench vmalloc
	PAGEZONE_ELF=$(abspath $(KERNEL_ELF)) cargo bench -p benches --bench system

clean:
	cargo clean
