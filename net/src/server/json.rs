//! JSON output on top of `serde-json-core`, which serializes into a fixed
//! slice: [`to_vec`] retries with a doubled buffer until the value fits, so
//! responses of any size work without guessing a bound per endpoint.
//!
//! Every buffer is reserved fallibly (`try_reserve_exact`): when the heap
//! cannot give one, the answer is [`JsonError::NoMemory`] — a 507 for the
//! client — never an aborted kernel.
//!
//! `serde-json-core` panics (`unreachable!`) on a few shapes it does not
//! support; Serialize types given to this module must avoid them: `char`,
//! `u128`/`i128`, map keys that are not strings, enum tuple variants, and
//! any `Serialize` impl that calls `Error::custom`.

use alloc::vec::Vec;
use serde::Serialize;

/// First buffer size tried; most API answers fit.
const INITIAL_BYTES: usize = 512;

/// Largest JSON document [`to_vec`] will produce (16 MiB). It bounds the
/// retries should a `Display` impl inside `collect_str` fail for another
/// reason than a full buffer (serde-json-core reports both the same way).
pub const MAX_JSON_BYTES: usize = 16 << 20;

/// Why [`to_vec`] produced nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonError {
    /// The value would serialize to more than [`MAX_JSON_BYTES`].
    TooLarge,
    /// The heap could not give the buffer.
    NoMemory,
}

/// A zeroed buffer of `size` bytes, or `None` when the heap refuses.
pub fn try_zeroed(size: usize) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    buf.try_reserve_exact(size).ok()?;
    buf.resize(size, 0);
    Some(buf)
}

/// Serialize `value` as compact JSON into a vector of exactly its length.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JsonError> {
    let mut size = INITIAL_BYTES;
    loop {
        let mut buf = try_zeroed(size).ok_or(JsonError::NoMemory)?;
        match serde_json_core::to_slice(value, &mut buf) {
            Ok(len) => {
                // No `shrink_to_fit`: it reallocates infallibly.
                buf.truncate(len);
                return Ok(buf);
            }
            Err(serde_json_core::ser::Error::BufferFull) if size < MAX_JSON_BYTES => {
                size = (size * 2).min(MAX_JSON_BYTES);
            }
            Err(_) => return Err(JsonError::TooLarge),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;

    #[derive(Serialize)]
    struct Item<'a> {
        name: &'a str,
        pfn: u64,
        virt: Option<&'a str>,
    }

    #[test]
    fn small_value() {
        let item = Item {
            name: "a\"b\\c\n",
            pfn: 42,
            virt: None,
        };
        assert_eq!(
            to_vec(&item).unwrap(),
            br#"{"name":"a\"b\\c\n","pfn":42,"virt":null}"#
        );
    }

    #[test]
    fn large_value_grows_buffer() {
        let names: Vec<String> = (0..5000).map(|i| alloc::format!("cache-{i}")).collect();
        let json = to_vec(&names).unwrap();
        assert!(json.len() > 50_000);
        assert!(json.starts_with(br#"["cache-0","cache-1","#));
        assert!(json.ends_with(br#""cache-4999"]"#));
        // Exactly at a power-of-two boundary too.
        let exact = "x".repeat(INITIAL_BYTES - 2);
        assert_eq!(to_vec(exact.as_str()).unwrap().len(), INITIAL_BYTES);
        let over = "x".repeat(INITIAL_BYTES - 1);
        assert_eq!(to_vec(over.as_str()).unwrap().len(), INITIAL_BYTES + 1);
    }

    #[test]
    fn too_large_is_an_error_not_a_loop() {
        let huge = "y".repeat(MAX_JSON_BYTES);
        assert_eq!(to_vec(huge.as_str()), Err(JsonError::TooLarge));
    }
}
