//! The device page (`verification_uri`): where a member reviews a device's pairing
//! request and approves or denies it. A code, typed or pre-filled by a link, first shows
//! what asked and what it will get; only "Yes, this is my device" approves.

use super::{Page, PageResult};
use crate::access::ClientMeta;
use crate::devices;
use crate::error::Error;
use crate::http::extract::Query;
use crate::state::AppState;
use axum::extract::State;
use minijinja::context;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

pub async fn device_page(
    State(state): State<AppState>,
    page: Page,
    meta: ClientMeta,
    Query(q): Query<DeviceQuery>,
) -> PageResult {
    let Some(code) = q.user_code.as_deref().filter(|c| !c.trim().is_empty()) else {
        return page.ok("device.html", context! {});
    };
    match devices::review(&state, &page.principal, &meta, code).await {
        Ok(review) => page.ok("device.html", context! { review }),
        Err(Error::Client { status, description, .. }) => {
            page.render(status, "device.html", context! { error => description, user_code => q.shown_code() })
        }
        Err(e) => Err(e.into()),
    }
}

impl DeviceQuery {
    /// The code to show again in the form, with anything that cannot be part of a code dropped.
    fn shown_code(&self) -> String {
        let code = self.user_code.as_deref().unwrap_or_default();
        code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(16).collect()
    }
}
