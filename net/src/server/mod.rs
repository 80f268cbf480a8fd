//! The HTTP server room: bytes in, requests out to an [`App`], responses
//! back as bytes. It parses (`http`), routes (`router`), renders
//! (`response`, `json`, `error`), keeps connections with their
//! backpressure (`conn`) and runs the smoltcp socket pool (`stack`).
//!
//! It never calls `mm`: everything it knows of memory arrives as an
//! already-built [`Response`]. The API handlers (`crate::api`) are the other
//! room; they never touch sockets or the growth of connection buffers.

pub mod conn;
pub mod error;
pub mod http;
pub mod json;
pub mod response;
pub mod router;
pub mod stack;

pub use conn::{ConnConfig, ConnState, Connection, Stream, StreamError};
pub use error::ApiError;
pub use http::{HttpError, Method, Request, RequestParser, Version, query_param};
pub use response::Response;
pub use router::{RouteId, RouteMatch, route};
pub use stack::{App, NetConfig, NetStack, NetStats, default_max_connections};
