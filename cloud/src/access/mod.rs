//! Who is calling, and what may they touch. Every rule about credentials and org access
//! has its one home here, and every caller (the extractors, the token endpoint, the
//! domain services) uses it:
//!
//! - `credentials`: reading the `Authorization: Bearer` header and the session cookie,
//!   and refusing cross-site cookie writes (`Origin`, else `Referer`);
//! - `csrf`: the tokens of the page forms, bound to the login (or, for the sign-in form,
//!   to a double-submit cookie);
//! - `pat`: the one PAT verifier (format and checksum, one look-up by hash, revoked or
//!   expired, `last_used_at`), which a hot path may extend with joins so it still takes
//!   one round trip;
//! - `session`: the session cookie and the access JWT, both checked against the
//!   `sessions` row on every request;
//! - `org`: org visibility, membership, role and a PAT's org binding, decided in one
//!   function (`org::check`);
//! - `principal` and `extract`: the verified caller handlers receive, and where the
//!   request came from (`ClientMeta`).
//!
//! Every credential is checked against the database on every request, so a revoked
//! session or PAT stops working at once on every replica.

pub mod credentials;
pub mod csrf;
pub mod extract;
pub mod org;
pub mod pat;
pub mod principal;
pub mod session;

pub use credentials::SESSION_COOKIE;
pub use extract::{ClientMeta, MaybePrincipal, SameOrigin};
pub use org::{authorize, Need, Org, Role, Visibility};
pub use principal::{Principal, Via};

/// `last_used_at` of a session or PAT is written at most this often, to keep the hot
/// path free of writes.
pub const LAST_USED_GRANULARITY_SECS: i64 = 60;
