//! `latchkey run`'s account of the cloud being away: one line when an outage starts (since
//! when, why, and until when each connector can go on with its cached token), one when it
//! ends, and the same in the run-state file for `latchkey status`. Whichever request met
//! the outage first (a token fetch, the `cloud_poll`), it is reported once.

use crate::cloud::CloudClient;
use crate::config::ConnectorConfig;
use crate::run_state::{self, RunState};
use crate::token_client::TokenClient;
use std::path::PathBuf;
use std::sync::Arc;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Looks at the cloud client's outage and the token cache every tick.
pub(super) struct OutageWatch {
    cloud: Arc<CloudClient>,
    tokens: Arc<TokenClient>,
    data_dir: PathBuf,
    state: RunState,
    /// Whether the run-state file could be written last time (a failure is said once).
    writable: bool,
}

impl OutageWatch {
    pub(super) fn new(cloud: Arc<CloudClient>, tokens: Arc<TokenClient>, data_dir: PathBuf) -> Self {
        let state = RunState { pid: std::process::id(), ..RunState::default() };
        let mut watch = OutageWatch { cloud, tokens, data_dir, state, writable: true };
        watch.save();
        watch
    }

    /// Compares what is now with what was; returns the lines to log (none most ticks).
    pub(super) fn tick(&mut self, connectors: &[ConnectorConfig]) -> Vec<String> {
        let mut lines = Vec::new();
        let mut next = self.state.clone();
        match self.cloud.outage() {
            Some(outage) => {
                next.cloud_away_since = Some(run_state::stamp(outage.since));
                next.cloud_away_reason = Some(outage.reason.clone());
                next.cached_until = connectors
                    .iter()
                    .filter_map(|c| self.tokens.valid_until(c).map(|t| (c.name.clone(), run_state::stamp(t))))
                    .collect();
                if self.state.cloud_away_since.is_none() {
                    lines.push(format!(
                        "cloud unreachable since {} ({}), retrying; {}",
                        run_state::clock(outage.since),
                        outage.reason,
                        self.carrying_on(connectors)
                    ));
                }
            }
            None => {
                if let Some(since) = self.state.cloud_away_since.take() {
                    let now = OffsetDateTime::now_utc();
                    let lasted = OffsetDateTime::parse(&since, &Rfc3339)
                        .map(|s| u64::try_from((now - s).whole_seconds()).unwrap_or(0))
                        .unwrap_or(0);
                    lines.push(format!(
                        "cloud reachable again (unreachable from {} for {}); fetching fresh tokens",
                        run_state::clock_of(&since),
                        run_state::span(lasted)
                    ));
                    next.cloud_back_at = Some(run_state::stamp(now));
                    next.last_outage_secs = Some(lasted);
                }
                next.cloud_away_since = None;
                next.cloud_away_reason = None;
                next.cached_until.clear();
            }
        }
        if next != self.state {
            self.state = next;
            self.save();
        }
        lines
    }

    /// `sandbox: syncing with the cached token until 08:32:10 UTC; github: no valid token,
    /// its syncs wait for the cloud`.
    fn carrying_on(&self, connectors: &[ConnectorConfig]) -> String {
        if connectors.is_empty() {
            return String::from("no connectors to sync");
        }
        let parts: Vec<String> = connectors
            .iter()
            .map(|c| match self.tokens.valid_until(c) {
                Some(until) => format!("{}: syncing with the cached token until {}", c.name, run_state::clock(until)),
                None => format!("{}: no valid token cached, its syncs wait for the cloud", c.name),
            })
            .collect();
        parts.join("; ")
    }

    fn save(&mut self) {
        match run_state::write(&self.data_dir, &self.state) {
            Ok(()) => self.writable = true,
            Err(e) if self.writable => {
                self.writable = false;
                super::run::log(&format!("cannot record the run's state for `latchkey status`: {e}"));
            }
            Err(_) => {}
        }
    }

    /// On a clean stop: `latchkey status` no longer reports a running `run`.
    pub(super) fn stop(&self) {
        run_state::remove(&self.data_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::IntoResponse;
    use latchkey_shared::Pat;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// A cloud whose `GET /v1/connections` answers `[]`, or 503 while `down` is set.
    async fn cloud(down: Arc<AtomicBool>) -> Arc<CloudClient> {
        let app = axum::Router::new().route(
            "/v1/connections",
            axum::routing::get(move || {
                let down = down.load(Ordering::SeqCst);
                async move {
                    if down {
                        let body = serde_json::json!({"error": "temporarily_unavailable", "error_description": "x"});
                        (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
                    } else {
                        axum::Json(serde_json::json!([])).into_response()
                    }
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let base = url::Url::parse(&format!("http://{addr}")).unwrap();
        Arc::new(CloudClient::new(base, Some(Pat::generate())).unwrap())
    }

    fn connector() -> ConnectorConfig {
        ConnectorConfig {
            name: "sbx".into(),
            kind: crate::config::Kind::Sandbox,
            org: "acme".into(),
            connector_key: "sandbox".into(),
            connection: None,
            schedule: crate::schedule::DEFAULT,
            base_url: None,
            http_json: None,
        }
    }

    #[tokio::test]
    async fn an_outage_is_told_once_and_its_end_too() {
        let down = Arc::new(AtomicBool::new(false));
        let cloud = cloud(down.clone()).await;
        let tokens = Arc::new(TokenClient::new(cloud.clone()));
        let dir = tempfile::tempdir().unwrap();
        let mut watch = OutageWatch::new(cloud.clone(), tokens, dir.path().to_owned());
        let connectors = [connector()];
        assert_eq!(watch.tick(&connectors), Vec::<String>::new());
        let state = run_state::read(dir.path()).unwrap();
        assert_eq!((state.pid, state.cloud_away_since), (std::process::id(), None));

        // Many failed polls, one line.
        down.store(true, Ordering::SeqCst);
        for _ in 0..3 {
            assert!(cloud.connections_polled().await.is_err_and(|e| e.is_cloud_outage()));
        }
        let lines = watch.tick(&connectors);
        assert_eq!(lines.len(), 1, "{lines:?}");
        for wanted in [
            "cloud unreachable since ",
            "(it answered 503 Service Unavailable), retrying",
            "sbx: no valid token cached, its syncs wait for the cloud",
        ] {
            assert!(lines[0].contains(wanted), "{wanted:?} in {}", lines[0]);
        }
        assert!(cloud.connections_polled().await.is_err());
        assert_eq!(watch.tick(&connectors), Vec::<String>::new(), "once per outage");
        let state = run_state::read(dir.path()).unwrap();
        assert!(state.cloud_away_since.is_some() && state.cached_until.is_empty(), "{state:?}");

        // Back: one line, and the file says so.
        down.store(false, Ordering::SeqCst);
        assert!(cloud.connections_polled().await.is_ok());
        let lines = watch.tick(&connectors);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].starts_with("cloud reachable again (unreachable from "), "{}", lines[0]);
        let state = run_state::read(dir.path()).unwrap();
        assert!(state.cloud_away_since.is_none() && state.cloud_back_at.is_some(), "{state:?}");
        watch.stop();
        assert_eq!(run_state::read(dir.path()), None);
    }
}
