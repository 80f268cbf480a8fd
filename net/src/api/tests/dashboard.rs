//! `GET /`: the dashboard as gzip to clients that accept it, as HTML to
//! the others, over the simulated network (real request and response
//! bytes).

use std::io::Read as _;

use super::*;
use crate::api::dashboard::{DASHBOARD_GZ, DASHBOARD_LEN};

/// The file `build.rs` compressed.
const HTML: &[u8] = include_bytes!("../../../../web-ui/index.html");

/// `GET /` (or `HEAD /`) with these extra header lines.
fn get_root(t: &mut T<'_>, method: &str, extra: &str) -> HttpResponse {
    t.raw(format!("{method} / HTTP/1.1\r\nHost: 10.0.2.15\r\n{extra}\r\n").as_bytes())
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(body)
        .read_to_end(&mut out)
        .expect("a valid gzip member (CRC and ISIZE checked)");
    out
}

fn assert_gzip(r: &HttpResponse, what: &str) {
    assert_eq!(r.status, 200, "{what}");
    assert_eq!(r.header("content-encoding"), Some("gzip"), "{what}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{what}");
    assert_eq!(r.header("cache-control"), Some("no-cache"), "{what}");
    assert_eq!(r.body, DASHBOARD_GZ, "{what}");
    assert_eq!(gunzip(&r.body), HTML, "{what}");
}

fn assert_identity(r: &HttpResponse, what: &str) {
    assert_eq!(r.status, 200, "{what}");
    assert_eq!(r.header("content-encoding"), None, "{what}");
    assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(r.header("vary"), Some("Accept-Encoding"), "{what}");
    assert_eq!(r.header("cache-control"), Some("no-cache"), "{what}");
    assert_eq!(
        r.header("content-length"),
        Some(HTML.len().to_string().as_str())
    );
    assert!(
        r.body == HTML,
        "{what}: the identity body is not web-ui/index.html"
    );
}

#[test]
fn embedded_gzip_is_the_file_and_small() {
    assert_eq!(gunzip(DASHBOARD_GZ), HTML);
    assert_eq!(DASHBOARD_LEN, HTML.len());
    // The issue's budget: the dashboard costs at most 40 KB of the image.
    assert!(DASHBOARD_GZ.len() <= 40_000, "{} bytes", DASHBOARD_GZ.len());
    // Reproducible: mtime 0, no file name, OS unknown.
    assert_eq!(&DASHBOARD_GZ[..4], &[0x1f, 0x8b, 8, 0]);
    assert_eq!(&DASHBOARD_GZ[4..8], &[0, 0, 0, 0]);
    assert_eq!(DASHBOARD_GZ[9], 255);
}

#[test]
fn gzip_to_clients_that_accept_it() {
    run(DEFAULT, |t| {
        for accept in [
            "gzip",
            "gzip, deflate, br, zstd", // Chromium
            "GZIP",
            "x-gzip",
            "br;q=1.0, gzip;q=0.8, *;q=0.1",
            "identity;q=0, gzip;q=0.001",
            "*",
            "deflate, *;q=0.5",
            "gzip ; q=1",
        ] {
            let r = get_root(t, "GET", &format!("Accept-Encoding: {accept}\r\n"));
            assert_gzip(&r, accept);
        }
        // Two field lines are one list.
        let r = get_root(t, "GET", "Accept-Encoding: br\r\nAccept-Encoding: gzip\r\n");
        assert_gzip(&r, "two lines");
    });
}

#[test]
fn identity_to_clients_that_do_not() {
    run(DEFAULT, |t| {
        // No Accept-Encoding at all: a plain curl.
        let r = get_root(t, "GET", "");
        assert_identity(&r, "no header");
        for accept in [
            "",
            "identity",
            "deflate, br",
            "gzip;q=0",
            "gzip; q=0.000",
            "gzip;q=0, *",
            "*;q=0",
            "*, gzip;q=0",
            "gzip;q=2", // not a qvalue: the element is ignored
            "gzip;q=0.5x",
            "gzipx, xgzip",
        ] {
            let r = get_root(t, "GET", &format!("Accept-Encoding: {accept}\r\n"));
            assert_identity(&r, accept);
        }
        let r = get_root(
            t,
            "GET",
            "Accept-Encoding: gzip\r\nAccept-Encoding: gzip;q=0\r\n",
        );
        assert_identity(&r, "refused on a second line");
        // Served again from the inflated copy: the same bytes.
        assert_identity(&get_root(t, "GET", ""), "second time");
    });
}

#[test]
fn head_has_each_encoding_length_and_no_body() {
    run(DEFAULT, |t| {
        let r = get_root(t, "HEAD", "Accept-Encoding: gzip\r\n");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), Some("gzip"));
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(
            r.header("content-length"),
            Some(DASHBOARD_GZ.len().to_string().as_str())
        );
        assert!(r.body.is_empty());

        let r = get_root(t, "HEAD", "");
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-encoding"), None);
        assert_eq!(r.header("vary"), Some("Accept-Encoding"));
        assert_eq!(
            r.header("content-length"),
            Some(HTML.len().to_string().as_str())
        );
        assert!(r.body.is_empty());
    });
}

/// `GET /openapi.json` the same way: gzip to clients that take it, the
/// minified JSON to the others — both the same document as the indented
/// `openapi.json` in the source tree.
#[test]
fn openapi_json_is_served_gzip_or_plain_and_is_the_source_document() {
    run(DEFAULT, |t| {
        let source: Value =
            serde_json::from_str(include_str!("../openapi.json")).expect("openapi.json parses");
        let get = |t: &mut T<'_>, extra: &str| {
            t.raw(
                format!("GET /openapi.json HTTP/1.1\r\nHost: 10.0.2.15\r\n{extra}\r\n").as_bytes(),
            )
        };
        let gz = get(t, "Accept-Encoding: gzip\r\n");
        assert_eq!(gz.status, 200);
        assert_eq!(gz.header("content-encoding"), Some("gzip"));
        assert_eq!(gz.header("content-type"), Some("application/json"));
        assert_eq!(gz.header("vary"), Some("Accept-Encoding"));
        let inflated = gunzip(&gz.body);
        assert_eq!(serde_json::from_slice::<Value>(&inflated).unwrap(), source);
        let plain = get(t, "");
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(
            plain.body, inflated,
            "the same bytes, inflated in the guest"
        );
        // Minified: no whitespace between tokens, so well under the source.
        assert!(plain.body.len() * 10 < include_str!("../openapi.json").len() * 8);
        assert!(
            gz.body.len() * 5 < plain.body.len(),
            "{} gzip bytes",
            gz.body.len()
        );
    });
}
