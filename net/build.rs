//! Compresses the dashboard (`web-ui/index.html`) into
//! `$OUT_DIR/index.html.gz` at build time, so that the kernel image
//! carries ~38 KB of gzip instead of ~138 KB of HTML (the image must stay
//! under 1 MiB). `api::dashboard` embeds the result and serves it as is
//! to clients that accept gzip, inflating it for the others.
//!
//! The output is reproducible: no file name, mtime 0, OS "unknown" (255),
//! so the image's bytes depend only on the HTML.
//!
//! It also writes `$OUT_DIR/openapi.min.json.gz`: `src/api/openapi.json`
//! without the whitespace between tokens (the file is kept indented for
//! people), gzip-compressed the same way; `api::dashboard` serves both.

use std::io::Write as _;
use std::path::PathBuf;
use std::{env, fs};

use flate2::{Compression, GzBuilder};

/// miniz_oxide's highest level (10, "uber"): slower than 9, a little
/// smaller, and the build compresses one file once.
const LEVEL: u32 = 10;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let html_path = manifest.join("../web-ui/index.html");
    println!("cargo:rerun-if-changed={}", html_path.display());
    println!("cargo:rerun-if-changed=build.rs");

    let html =
        fs::read(&html_path).unwrap_or_else(|e| panic!("reading {}: {e}", html_path.display()));
    assert!(
        u32::try_from(html.len()).is_ok(),
        "the dashboard must stay under 4 GiB (gzip's ISIZE is 32 bits)"
    );

    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("index.html.gz");
    fs::write(&out, gzip(&html)).unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));

    let openapi_path = manifest.join("src/api/openapi.json");
    println!("cargo:rerun-if-changed={}", openapi_path.display());
    let openapi = fs::read_to_string(&openapi_path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", openapi_path.display()));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("openapi.min.json.gz");
    fs::write(&out, gzip(minify_json(&openapi).as_bytes()))
        .unwrap_or_else(|e| panic!("writing {}: {e}", out.display()));
}

/// `data` as one reproducible gzip member (no name, mtime 0, OS 255).
fn gzip(data: &[u8]) -> Vec<u8> {
    assert!(
        u32::try_from(data.len()).is_ok(),
        "an embedded document must stay under 4 GiB (gzip's ISIZE is 32 bits)"
    );
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(Vec::new(), Compression::new(LEVEL));
    gz.write_all(data).expect("compressing");
    gz.finish().expect("compressing")
}

/// `json` without whitespace outside strings (JSON's insignificant
/// whitespace: space, tab, CR, LF between tokens).
fn minify_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped) = (false, false);
    for c in json.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
        } else if c == '"' {
            in_string = true;
            out.push(c);
        } else if !matches!(c, ' ' | '\t' | '\r' | '\n') {
            out.push(c);
        }
    }
    out
}
