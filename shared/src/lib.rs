//! Types both halves of Latchkey agree on: the PAT format, scopes, the error body,
//! the `Secret` wrapper and the wire types of the connection-token endpoint.
//!
//! Nothing here talks to a network or a database.
#![forbid(unsafe_code)]

pub mod agent_connectors;
pub mod error;
pub mod pat;
pub mod scope;
pub mod secret;
pub mod wire;

pub use error::{ErrorBody, ErrorCode};
pub use pat::{Pat, PatFormatError};
pub use scope::{Scope, ScopeSet};
pub use secret::Secret;
