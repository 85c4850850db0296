//! OAuth as a client of providers: the HTTP calls (`client`) and the consent flow
//! (`consent`).

pub mod client;
pub mod consent;
