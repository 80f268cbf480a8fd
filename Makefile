# Pagezone — build, boot and test the unikernel.
#
#   make run     build the kernel, install what is missing, boot it in QEMU
#                with 127.0.0.1:$(PORT) forwarded to the guest's API port
#   make test    host unit/property tests, then QEMU boot and browser tests
#   make debug   boot halted with a gdb stub on :1234 (see README)
#   make soak    a seeded random walk over every command for SOAK_SECONDS
#                (default 300), selfcheck and reset-to-boot every 200 steps
#   make bench   the benchmark tables of docs/benchmarks.md: page, slab and
#                vmalloc layers on the host, then the booted image in QEMU
#   make kernel  just build target/pagezone.elf

MEM    ?= 2G
# CPUs (-smp); the boot CPU serves, the others idle (README "CPUs").
SMP    ?= 2
PORT   ?= 8080
ACCEL  ?= tcg
APPEND ?=
GUEST_PORT ?= 80

KERNEL_TARGET := x86_64-unknown-none
KERNEL_BUILD  := $(or $(CARGO_TARGET_DIR),target)/$(KERNEL_TARGET)/release/unikernel
KERNEL_ELF    := target/pagezone.elf

ifeq ($(ACCEL),kvm)
  QEMU_ACCEL := -accel kvm -cpu host
else
  QEMU_ACCEL := -accel tcg -cpu max
endif

QEMU_ARGS = -M q35 -m $(MEM) -smp $(SMP) $(QEMU_ACCEL) -display none -no-reboot \
	-serial mon:stdio -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
	-netdev user,id=net0,restrict=on,hostfwd=tcp:127.0.0.1:$(PORT)-:$(GUEST_PORT) \
	-device virtio-net-pci,netdev=net0,disable-legacy=on \
	-kernel $(KERNEL_ELF) -append "$(APPEND)"

.PHONY: all deps kernel run debug test test-host test-qemu bench soak clean FORCE

all: kernel

deps:
	@.ci/deps.sh rust qemu

# Cargo decides what is stale; FORCE makes make always ask it.
$(KERNEL_ELF): FORCE
	@.ci/deps.sh rust
	cargo build -p unikernel --target $(KERNEL_TARGET) --release
	@mkdir -p $(dir $(KERNEL_ELF))
	@cp $(KERNEL_BUILD) $(KERNEL_ELF)

kernel: $(KERNEL_ELF)

run: deps kernel
	@echo "pagezone: booting ($(MEM), $(SMP) CPUs, $(ACCEL)); API on http://127.0.0.1:$(PORT)/ — Ctrl-A X quits"
	qemu-system-x86_64 $(QEMU_ARGS)

debug: deps kernel
	@echo "pagezone: halted at reset; attach with:"
	@echo "  gdb $(KERNEL_ELF) -ex 'target remote :1234'"
	qemu-system-x86_64 $(QEMU_ARGS) -s -S

test: deps kernel
	@.ci/deps.sh rust qemu browser
	PAGEZONE_ELF=$(abspath $(KERNEL_ELF)) cargo test --workspace --exclude unikernel

# A seeded random walk over every command for SOAK_SECONDS (SOAK_SEED=N
# repeats one), memory run dry every third window; selfcheck and
# reset-to-boot every 200 steps. CI runs it for 60 s.
SOAK_SECONDS ?= 300

soak: deps kernel
	PAGEZONE_ELF=$(abspath $(KERNEL_ELF)) SOAK_SECONDS=$(SOAK_SECONDS) cargo test -p tests --test soak -- --ignored --nocapture

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
