//! API errors: the one place where a failure becomes API.md's status, code
//! and `{"error":{"code":"…","message":"…"}}` body.
//!
//! | constructor | status | code |
//! |---|---|---|
//! | [`ApiError::einval`] | 400 | EINVAL |
//! | [`ApiError::eacces`] | 401 | EACCES (+ `WWW-Authenticate: Bearer`) |
//! | [`ApiError::enoent`] | 404 | ENOENT |
//! | [`ApiError::method_not_allowed`] | 405 | EINVAL (+ `Allow`) |
//! | [`ApiError::ebusy`] | 409 | EBUSY |
//! | [`ApiError::e2big_body`] | 413 | E2BIG |
//! | [`ApiError::e2big_head`] | 431 | E2BIG |
//! | [`ApiError::enomem`] | 507 | ENOMEM |
//! | [`ApiError::equota`] | 507 | EQUOTA |

use alloc::format;
use alloc::string::String;
use core::fmt;
use serde::Serialize;

use crate::server::http::{MAX_BODY_BYTES, MAX_HEAD_BYTES};
use crate::server::response::Response;

/// An error answer of the HTTP API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// `EINVAL`, `EACCES`, `ENOENT`, `EBUSY`, `E2BIG`, `ENOMEM`, `EQUOTA`.
    pub code: &'static str,
    /// Human-readable detail; JSON-escaped on output.
    pub message: String,
    /// The `Allow` header of a 405.
    pub allow: Option<String>,
}

impl ApiError {
    /// Any status and code; prefer the named constructors.
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            allow: None,
        }
    }

    /// 400 EINVAL: malformed request line, JSON, parameter, out-of-range value.
    pub fn einval(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "EINVAL", message)
    }

    /// 401 EACCES: a token is configured and the request lacks it.
    pub fn eacces(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "EACCES", message)
    }

    /// 404 ENOENT: unknown path, handle, cache, pool or kmap slot.
    pub fn enoent(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "ENOENT", message)
    }

    /// 405 EINVAL: known path, wrong method; `allow` becomes the `Allow`
    /// header (e.g. `"GET, HEAD"`).
    pub fn method_not_allowed(allow: &str) -> ApiError {
        ApiError {
            allow: Some(String::from(allow)),
            ..ApiError::new(
                405,
                "EINVAL",
                format!("method not allowed; allowed: {allow}"),
            )
        }
    }

    /// 409 EBUSY: destroy a cache/pool still in use, free with the wrong order.
    pub fn ebusy(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "EBUSY", message)
    }

    /// 413 E2BIG: request body over 64 KiB.
    pub fn e2big_body() -> ApiError {
        ApiError::new(
            413,
            "E2BIG",
            format!("request body over {} bytes", MAX_BODY_BYTES),
        )
    }

    /// 431 E2BIG: request line plus headers over 8 KiB.
    pub fn e2big_head() -> ApiError {
        ApiError::new(
            431,
            "E2BIG",
            format!("request head over {} bytes", MAX_HEAD_BYTES),
        )
    }

    /// 507 ENOMEM: the allocation failed.
    pub fn enomem(message: impl Into<String>) -> ApiError {
        ApiError::new(507, "ENOMEM", message)
    }

    /// 507 EQUOTA: the API quota of managed memory is reached.
    pub fn equota(message: impl Into<String>) -> ApiError {
        ApiError::new(507, "EQUOTA", message)
    }

    /// The JSON error response, with `Allow` on a 405 and
    /// `WWW-Authenticate` on a 401 (RFC 9110 §15.5.2 requires it).
    pub fn into_response(self) -> Response {
        #[derive(Serialize)]
        struct Body<'a> {
            error: Detail<'a>,
        }
        #[derive(Serialize)]
        struct Detail<'a> {
            code: &'a str,
            message: &'a str,
        }
        let body = Body {
            error: Detail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut response = match crate::server::json::to_vec(&body) {
            Ok(bytes) => Response::bytes(
                self.status,
                crate::server::response::CONTENT_TYPE_JSON,
                bytes,
            ),
            // Only a message over 16 MiB gets here: drop it, keep the code.
            Err(_) => {
                let bytes = format!(r#"{{"error":{{"code":"{}","message":""}}}}"#, self.code);
                Response::bytes(
                    self.status,
                    crate::server::response::CONTENT_TYPE_JSON,
                    bytes.into_bytes(),
                )
            }
        };
        if let Some(allow) = self.allow {
            response = response.with_header("Allow", allow);
        }
        if self.status == 401 {
            response = response.with_header("WWW-Authenticate", "Bearer realm=\"pagezone\"");
        }
        response
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::response::ConnectionHeader;

    fn wire(e: ApiError) -> std::string::String {
        std::string::String::from_utf8(e.into_response().to_bytes(false, ConnectionHeader::Default))
            .unwrap()
    }

    #[test]
    fn table_of_api_md() {
        let cases = [
            (ApiError::einval("x"), 400, "EINVAL"),
            (ApiError::eacces("x"), 401, "EACCES"),
            (ApiError::enoent("x"), 404, "ENOENT"),
            (ApiError::method_not_allowed("GET, HEAD"), 405, "EINVAL"),
            (ApiError::ebusy("x"), 409, "EBUSY"),
            (ApiError::e2big_body(), 413, "E2BIG"),
            (ApiError::e2big_head(), 431, "E2BIG"),
            (ApiError::enomem("x"), 507, "ENOMEM"),
            (ApiError::equota("x"), 507, "EQUOTA"),
        ];
        for (e, status, code) in cases {
            assert_eq!((e.status, e.code), (status, code));
            let r = e.into_response();
            assert_eq!(r.status, status);
            assert_eq!(r.content_type, "application/json");
            let prefix = alloc::format!(r#"{{"error":{{"code":"{code}","message":""#);
            assert!(r.body.starts_with(prefix.as_bytes()));
            assert!(r.body.ends_with(b"\"}}"));
        }
    }

    #[test]
    fn exact_bytes() {
        assert_eq!(
            wire(ApiError::enoent("no handle 7")),
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 51\r\n\r\n\
             {\"error\":{\"code\":\"ENOENT\",\"message\":\"no handle 7\"}}"
        );
        assert_eq!(
            wire(ApiError::method_not_allowed("GET, HEAD, POST")),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 84\r\n\
             Allow: GET, HEAD, POST\r\n\r\n\
             {\"error\":{\"code\":\"EINVAL\",\"message\":\"method not allowed; allowed: GET, HEAD, POST\"}}"
        );
        assert_eq!(
            wire(ApiError::eacces("missing bearer token")),
            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: 60\r\n\
             WWW-Authenticate: Bearer realm=\"pagezone\"\r\n\r\n\
             {\"error\":{\"code\":\"EACCES\",\"message\":\"missing bearer token\"}}"
        );
    }

    #[test]
    fn message_is_escaped() {
        let r = ApiError::einval("bad \"gfp\"\n\\").into_response();
        assert_eq!(
            &*r.body,
            br#"{"error":{"code":"EINVAL","message":"bad \"gfp\"\n\\"}}"#
        );
    }
}
