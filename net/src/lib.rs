#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod api;
pub mod conn;
pub mod error;
pub mod http;
pub mod json;
pub mod response;
pub mod router;
pub mod stack;
#[cfg(test)]
mod testing;

pub use api::{Api, BootView, System};
pub use conn::{ConnConfig, ConnState, Connection, Stream, StreamError};
pub use error::ApiError;
pub use http::{HttpError, Method, Request, RequestParser, Version, query_param};
pub use response::Response;
pub use router::{RouteId, RouteMatch, route};
pub use stack::{App, NetConfig, NetStack, NetStats};
