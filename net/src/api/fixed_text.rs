//! [`FixedText`]: a string in a fixed buffer, for text the API builds
//! where it must not allocate (an OOM report printed line by line, the
//! selfcheck's problem descriptions).

use core::fmt;

use serde::{Serialize, Serializer};

/// At most `N` bytes of UTF-8; writes past the end are cut at a character
/// boundary (as printk cuts a long line) and never fail.
#[derive(Clone, Copy)]
pub struct FixedText<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> FixedText<N> {
    pub const fn new() -> Self {
        FixedText {
            buf: [0; N],
            len: 0,
        }
    }

    /// `value` as `Display` prints it (cut to `N` bytes).
    pub fn of(value: &dyn fmt::Display) -> Self {
        let mut t = Self::new();
        let _ = fmt::Write::write_fmt(&mut t, format_args!("{value}"));
        t
    }

    pub fn as_str(&self) -> &str {
        // Only whole characters are ever copied in.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.len = 0;
    }
}

impl<const N: usize> Default for FixedText<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> fmt::Write for FixedText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let mut end = s.len().min(N - self.len);
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        self.buf[self.len..self.len + end].copy_from_slice(&s.as_bytes()[..end]);
        self.len += end;
        Ok(())
    }
}

impl<const N: usize> Serialize for FixedText<N> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::fmt::Write as _;

    #[test]
    fn writes_are_cut_on_a_character_boundary() {
        let mut t: FixedText<5> = FixedText::new();
        write!(t, "ab").unwrap();
        write!(t, "éé").unwrap(); // 4 bytes, only one 'é' fits
        assert_eq!(t.as_str(), "abé");
        write!(t, "xyz").unwrap();
        assert_eq!(t.as_str(), "abéx", "only what fits");
        t.clear();
        assert!(t.is_empty());
        assert_eq!(FixedText::<8>::of(&42).as_str(), "42");
    }
}
