#![doc = include_str!("../README.md")]
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod api;
pub mod server;
#[cfg(test)]
mod testing;

pub use api::{Api, BootView, System};
pub use server::{
    ApiError, App, ConnConfig, ConnState, Connection, HttpError, Method, NetConfig, NetStack,
    NetStats, Request, RequestParser, Response, RouteId, RouteMatch, Stream, StreamError, Version,
    default_max_connections, query_param, route,
};
