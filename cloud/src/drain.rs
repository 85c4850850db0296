//! The drain: what a replica does between its first stop signal and its exit, so that a
//! rolling deploy fails no request.
//!
//! `Serving` → (first SIGTERM/SIGINT) `Draining`: `/readyz` answers 503 so the balancer
//! stops sending new work, while every answer still goes out, with `Connection: close`
//! (HTTP/1.x) so that keep-alive connections from balancers and agents end after their
//! current request and reopen elsewhere. → (after `drain_secs`) `Stopping`: the listener
//! closes and what is in flight finishes (`server::serve` bounds it). This module holds the
//! phase and the response layer; it never decides when to move on (the server does).

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Version};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;
use tokio::sync::watch;

/// Where the replica is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    Serving,
    /// Still serving, not ready: balancers move away.
    Draining,
    /// No longer accepting; finishing what is in flight.
    Stopping,
}

/// The phase, shared by the server, `/readyz`, `/metrics` and the response layer. Cheap to
/// clone.
#[derive(Clone, Debug)]
pub struct Drain(Arc<watch::Sender<Phase>>);

impl Default for Drain {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(Phase::Serving)))
    }
}

impl Drain {
    pub fn phase(&self) -> Phase {
        *self.0.borrow()
    }

    /// From the first stop signal on.
    pub fn is_draining(&self) -> bool {
        self.phase() != Phase::Serving
    }

    /// Moves forward to `phase` (never back); true when that changed anything.
    pub fn advance(&self, phase: Phase) -> bool {
        self.0.send_if_modified(|current| {
            let moved = phase > *current;
            if moved {
                *current = phase;
            }
            moved
        })
    }

    /// Resolves once the phase has reached `phase`.
    pub async fn reached(&self, phase: Phase) {
        let mut rx = self.0.subscribe();
        // The sender lives in `self`, so this cannot fail while we wait.
        let _ = rx.wait_for(|current| *current >= phase).await;
    }
}

/// Response layer: while draining, every HTTP/1.x answer carries `Connection: close`, and
/// hyper closes the connection after writing it. (HTTP/2 has no such header; a balancer
/// on HTTP/2 sees the GOAWAY of the graceful shutdown instead.)
pub async fn close_connections(State(drain): State<Drain>, req: Request, next: Next) -> Response {
    let http1 = matches!(req.version(), Version::HTTP_10 | Version::HTTP_11);
    let mut response = next.run(req).await;
    if http1 && drain.is_draining() {
        response.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_phase_only_moves_forward_and_waiters_wake() {
        let drain = Drain::default();
        assert!(!drain.is_draining());
        let waiter = {
            let drain = drain.clone();
            tokio::spawn(async move { drain.reached(Phase::Stopping).await })
        };
        assert!(drain.advance(Phase::Draining));
        assert!(drain.is_draining());
        assert!(!drain.advance(Phase::Draining), "already there");
        assert!(!waiter.is_finished());
        assert!(drain.advance(Phase::Stopping));
        tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await.unwrap().unwrap();
        assert!(!drain.advance(Phase::Serving), "never back");
        assert_eq!(drain.phase(), Phase::Stopping);
    }
}
