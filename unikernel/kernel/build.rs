//! Links the kernel with `linker.ld`: the PVH boot protocol needs a fixed load
//! address (1 MiB) and a PT_NOTE segment holding `.note.Xen`.

use std::path::PathBuf;

fn main() {
    let dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let script = dir.join("linker.ld");
    // `-bins` only: the script must not reach build scripts or host tests.
    println!("cargo:rustc-link-arg-bins=-T{}", script.display());
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=build.rs");
}
