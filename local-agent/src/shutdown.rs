//! Stopping gracefully: the first SIGINT or SIGTERM asks running syncs to finish the page
//! in hand and stop; a second one exits at once.

use tokio::sync::watch;

/// Whether a stop was asked for; cheap to clone.
#[derive(Clone, Debug)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// Asks a [`Shutdown`] to stop (tests, and the signal task).
#[derive(Debug)]
pub struct Trigger {
    tx: watch::Sender<bool>,
}

impl Trigger {
    pub fn fire(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// A shutdown fired by hand.
    pub fn manual() -> (Trigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (Trigger { tx }, Shutdown { rx })
    }

    /// A shutdown fired by SIGINT or SIGTERM; a second signal exits with status 130.
    /// Needs a running tokio runtime.
    pub fn on_signals(announce: &'static str) -> Shutdown {
        let (trigger, shutdown) = Shutdown::manual();
        tokio::spawn(async move {
            signal().await;
            eprintln!("{announce} (press Ctrl-C again to quit at once)");
            trigger.fire();
            signal().await;
            std::process::exit(130);
        });
        shutdown
    }

    pub fn requested(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once a stop is asked for (never, if the trigger is gone unfired).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_once_for_everyone() {
        let (trigger, stop) = Shutdown::manual();
        let other = stop.clone();
        assert!(!stop.requested());
        let waiter = tokio::spawn(async move { other.wait().await });
        trigger.fire();
        assert!(stop.requested());
        assert!(tokio::time::timeout(std::time::Duration::from_secs(1), waiter).await.is_ok());
        stop.wait().await;
    }
}
