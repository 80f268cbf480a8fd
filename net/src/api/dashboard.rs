//! `GET /`: the dashboard, embedded gzip-compressed.
//!
//! `build.rs` compresses `web-ui/index.html` (~138 KB) into ~38 KB of gzip,
//! which is all the image carries (it must stay under 1 MiB). A client
//! whose `Accept-Encoding` takes gzip (every browser) gets those bytes as
//! they are, with `Content-Encoding: gzip`, straight from the image. Any
//! other client (a plain `curl`) gets the HTML itself: the first such
//! request inflates it, once, into a buffer in `.bss` (which costs the
//! image nothing), and later ones are served from there. No request
//! allocates from the heap for the body, so `/` still answers 200 with
//! memory exhausted, like the other read-only views.
//!
//! Both answers carry `Vary: Accept-Encoding` (a cache must not hand one
//! client's representation to another) and keep `Cache-Control:
//! no-cache`. There is no `ETag`, so no validator can be confused between
//! the two representations.

use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::inflate::core::{DecompressorOxide, decompress, inflate_flags};

use crate::server::error::ApiError;
use crate::server::http::Request;
use crate::server::response::Response;

/// `Content-Type` of the dashboard (either encoding).
const CONTENT_TYPE_HTML: &str = "text/html; charset=utf-8";

/// The dashboard as `build.rs` gzip-compressed it (RFC 1952).
pub(crate) const DASHBOARD_GZ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/index.html.gz"));

/// The fixed gzip header `build.rs` writes: magic, CM = 8 (deflate),
/// FLG = 0 (no name, comment or extra field, so the deflate data follows
/// at once).
const GZ_HEADER_BYTES: usize = 10;
/// CRC32 and ISIZE, little-endian.
const GZ_TRAILER_BYTES: usize = 8;

const _: () = assert!(
    DASHBOARD_GZ.len() > GZ_HEADER_BYTES + GZ_TRAILER_BYTES
        && DASHBOARD_GZ[0] == 0x1f
        && DASHBOARD_GZ[1] == 0x8b
        && DASHBOARD_GZ[2] == 8
        && DASHBOARD_GZ[3] == 0,
    "build.rs must write a plain gzip member (no FNAME/FEXTRA/FCOMMENT)"
);

/// Length of the HTML: the gzip trailer's ISIZE.
pub(crate) const DASHBOARD_LEN: usize = {
    let n = DASHBOARD_GZ.len();
    u32::from_le_bytes([
        DASHBOARD_GZ[n - 4],
        DASHBOARD_GZ[n - 3],
        DASHBOARD_GZ[n - 2],
        DASHBOARD_GZ[n - 1],
    ]) as usize
};

/// Where the HTML is inflated, once (all zeros: `.bss`, not in the image).
/// Its guard is leaked for good by the one [`PLAIN`] initialisation.
static PLAIN_BUF: spin::Mutex<[u8; DASHBOARD_LEN]> = spin::Mutex::new([0; DASHBOARD_LEN]);

/// The inflated HTML, or `None` should the embedded stream not inflate to
/// exactly [`DASHBOARD_LEN`] bytes (a build bug; the host tests would fail).
static PLAIN: spin::Once<Option<&'static [u8]>> = spin::Once::new();

/// `GET /` (and `HEAD /`): gzip when `Accept-Encoding` takes it, else
/// the HTML.
pub(crate) fn dashboard(req: &Request) -> Result<Response, ApiError> {
    let response = if req.headers.accept_encoding.gzip() {
        Response::bytes(200, CONTENT_TYPE_HTML, DASHBOARD_GZ)
            .with_header("Content-Encoding", "gzip")
    } else {
        let html = plain().ok_or_else(|| {
            ApiError::new(
                500,
                "EIO",
                "the embedded dashboard does not inflate; GET / with Accept-Encoding: gzip",
            )
        })?;
        Response::bytes(200, CONTENT_TYPE_HTML, html)
    };
    Ok(response
        .with_header("Vary", "Accept-Encoding")
        .with_header("Cache-Control", "no-cache"))
}

/// The HTML, inflated on first use.
fn plain() -> Option<&'static [u8]> {
    *PLAIN.call_once(|| {
        // The only lock ever taken on `PLAIN_BUF`: `call_once` runs this
        // once, and the guard is never released.
        let buf: &'static mut [u8; DASHBOARD_LEN] = spin::MutexGuard::leak(PLAIN_BUF.lock());
        inflate(buf).then_some(&buf[..])
    })
}

/// Inflate the embedded deflate stream into `out`, which must come out
/// exactly full. (The gzip CRC is not checked here: the stream is part of
/// the image, and the host tests compare the result with the file.)
fn inflate(out: &mut [u8]) -> bool {
    let deflate = &DASHBOARD_GZ[GZ_HEADER_BYTES..DASHBOARD_GZ.len() - GZ_TRAILER_BYTES];
    let mut state = DecompressorOxide::new();
    // The whole stream in one call; `out` is the whole output, so it is
    // its own 32 KiB history window (non-wrapping).
    let (status, read, written) = decompress(
        &mut state,
        deflate,
        out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    status == TINFLStatus::Done && read == deflate.len() && written == out.len()
}
