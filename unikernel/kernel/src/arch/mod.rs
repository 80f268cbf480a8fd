//! Architecture support. Only x86_64 exists; the module boundary keeps the
//! hardware details in one place.

pub mod x86_64;
