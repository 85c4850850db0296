//! HTTP handlers, one module per resource. Each handler parses, authenticates, calls one
//! domain function and maps the result; nothing else.

pub mod accounts;
pub mod apps;
pub mod connection_token;
pub mod connections;
pub mod devices;
pub mod ops;
pub mod orgs;
pub mod tokens;
