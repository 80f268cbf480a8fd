//! `GET /` (the dashboard) and `GET /openapi.json`, embedded
//! gzip-compressed.
//!
//! `build.rs` compresses `web-ui/index.html` (~138 KB) and the minified
//! `openapi.json` (~100 KB) into ~38 KB and a few KB of gzip, which is all
//! the image carries (it must stay under 1 MiB). A client whose
//! `Accept-Encoding` takes gzip (every browser, `curl --compressed`) gets
//! those bytes as they are, with `Content-Encoding: gzip`, straight from
//! the image. Any other client (a plain `curl`) gets the document itself:
//! the first such request inflates it, once, into a buffer in `.bss`
//! (which costs the image nothing), and later ones are served from there.
//! No request allocates from the heap for the body, so both still answer
//! 200 with memory exhausted, like the other read-only views.
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

/// The fixed gzip header `build.rs` writes: magic, CM = 8 (deflate),
/// FLG = 0 (no name, comment or extra field, so the deflate data follows
/// at once).
const GZ_HEADER_BYTES: usize = 10;
/// CRC32 and ISIZE, little-endian.
const GZ_TRAILER_BYTES: usize = 8;

/// Whether `gz` is a plain gzip member as `build.rs` writes them.
const fn is_plain_gzip(gz: &[u8]) -> bool {
    gz.len() > GZ_HEADER_BYTES + GZ_TRAILER_BYTES
        && gz[0] == 0x1f
        && gz[1] == 0x8b
        && gz[2] == 8
        && gz[3] == 0
}

/// The inflated length of `gz` (its ISIZE).
const fn gz_len(gz: &[u8]) -> usize {
    let n = gz.len();
    u32::from_le_bytes([gz[n - 4], gz[n - 3], gz[n - 2], gz[n - 1]]) as usize
}

/// One embedded document: its gzip bytes, its content type, and where it
/// is inflated for clients that do not take gzip.
macro_rules! gz_asset {
    ($gz:ident, $len:ident, $buf:ident, $once:ident, $plain:ident, $file:literal) => {
        pub(crate) const $gz: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/", $file));
        const _: () = assert!(
            is_plain_gzip($gz),
            "build.rs must write a plain gzip member (no FNAME/FEXTRA/FCOMMENT)"
        );
        /// The inflated length (the gzip trailer's ISIZE).
        pub(crate) const $len: usize = gz_len($gz);
        /// Where the document is inflated, once (`.bss`: free in the image).
        static $buf: spin::Mutex<[u8; $len]> = spin::Mutex::new([0; $len]);
        static $once: spin::Once<Option<&'static [u8]>> = spin::Once::new();
        /// The document inflated (once), `None` if the embedded bytes do
        /// not inflate to exactly `$len` bytes (a build bug).
        fn $plain() -> Option<&'static [u8]> {
            *$once.call_once(|| {
                let buf: &'static mut [u8; $len] = spin::MutexGuard::leak($buf.lock());
                inflate($gz, buf).then_some(&buf[..])
            })
        }
    };
}

gz_asset!(
    DASHBOARD_GZ,
    DASHBOARD_LEN,
    DASHBOARD_BUF,
    DASHBOARD_PLAIN,
    dashboard_plain,
    "index.html.gz"
);
gz_asset!(
    OPENAPI_GZ,
    OPENAPI_LEN,
    OPENAPI_BUF,
    OPENAPI_PLAIN,
    openapi_plain,
    "openapi.min.json.gz"
);

/// `GET /` (and `HEAD /`): the dashboard, gzip or inflated.
pub(crate) fn dashboard(req: &Request) -> Result<Response, ApiError> {
    serve(req, DASHBOARD_GZ, dashboard_plain, CONTENT_TYPE_HTML, "/")
}

/// `GET /openapi.json`: the API's description, gzip or inflated.
pub(crate) fn openapi(req: &Request) -> Result<Response, ApiError> {
    serve(
        req,
        OPENAPI_GZ,
        openapi_plain,
        crate::server::response::CONTENT_TYPE_JSON,
        "/openapi.json",
    )
}

/// The minified `openapi.json`, inflated (for host tests and callers that
/// want the document itself).
pub fn openapi_json() -> Option<&'static str> {
    openapi_plain().and_then(|b| core::str::from_utf8(b).ok())
}

fn serve(
    req: &Request,
    gz: &'static [u8],
    plain: fn() -> Option<&'static [u8]>,
    content_type: &'static str,
    path: &str,
) -> Result<Response, ApiError> {
    let response = if req.headers.accept_encoding.gzip() {
        Response::bytes(200, content_type, gz).with_header("Content-Encoding", "gzip")
    } else {
        let body = plain().ok_or_else(|| {
            ApiError::new(
                500,
                "EIO",
                alloc::format!(
                    "the embedded {path} does not inflate; GET it with Accept-Encoding: gzip"
                ),
            )
        })?;
        Response::bytes(200, content_type, body)
    };
    Ok(response
        .with_header("Vary", "Accept-Encoding")
        .with_header("Cache-Control", "no-cache"))
}

/// Inflates the deflate stream inside `gz` into `out`, which must end
/// up exactly full (ISIZE bytes). Needs no heap: the decompressor state
/// (~10 KB) lives on the stack for the call.
fn inflate(gz: &[u8], out: &mut [u8]) -> bool {
    let deflate = &gz[GZ_HEADER_BYTES..gz.len() - GZ_TRAILER_BYTES];
    let mut state = DecompressorOxide::new();
    let (status, read, written) = decompress(
        &mut state,
        deflate,
        out,
        0,
        inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF,
    );
    status == TINFLStatus::Done && read == deflate.len() && written == out.len()
}
