//! A bounded queue in front of scarce work: at most `running` at once, at most `waiting`
//! more in line, and a refusal for anyone beyond, so a flood is turned away instead of
//! piling up memory and threads.

use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug)]
pub struct Gate {
    /// Running plus waiting: taken without waiting, or the caller is refused.
    admitted: Arc<Semaphore>,
    running: Arc<Semaphore>,
}

/// The right to run; the slot is freed when it drops.
#[derive(Debug)]
pub struct Pass {
    _running: OwnedSemaphorePermit,
    _admitted: OwnedSemaphorePermit,
}

impl Gate {
    pub fn new(running: usize, waiting: usize) -> Self {
        Gate {
            admitted: Arc::new(Semaphore::new(running.saturating_add(waiting))),
            running: Arc::new(Semaphore::new(running)),
        }
    }

    /// Waits for a turn, or `None` at once when the line is full. Move the pass into the
    /// work itself (e.g. a blocking task), so a caller that goes away does not free the
    /// slot while the work still runs.
    pub async fn enter(&self) -> Option<Pass> {
        let admitted = Arc::clone(&self.admitted).try_acquire_owned().ok()?;
        let running = Arc::clone(&self.running).acquire_owned().await.ok()?;
        Some(Pass { _running: running, _admitted: admitted })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn beyond_running_and_waiting_is_refused() {
        let gate = Arc::new(Gate::new(1, 1));
        let first = gate.enter().await.unwrap();
        let g = Arc::clone(&gate);
        let second = tokio::spawn(async move { g.enter().await.map(|_| ()) });
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        assert!(gate.enter().await.is_none(), "a third caller waits in a full line");
        drop(first);
        assert!(second.await.unwrap().is_some());
        assert!(gate.enter().await.is_some());
    }
}
