//! A deterministic xorshift64 for the crate's randomised unit tests: the
//! same seed gives the same operations on every run and every machine.

/// xorshift64 (Marsaglia); the seed must not be zero.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
