//! OAuth as a client of providers: the HTTP calls (`client`) and the managed app's
//! credentials they are made with (`credentials`). The consent flow that uses them is a
//! domain service, `crate::consent`.

pub mod client;
pub mod credentials;
