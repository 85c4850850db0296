//! OAuth as a client of providers: the HTTP calls (`client`), the managed app's
//! credentials they are made with (`credentials`), and ID-token verification with the
//! provider's metadata and keys (`oidc`). The consent flow that uses them is a
//! domain service, `crate::consent`.

pub mod client;
pub mod credentials;
pub mod oidc;
