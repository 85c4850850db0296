//! The device page (`verification_uri`): where a member reviews a device's pairing
//! request and approves or denies it. A code, typed or pre-filled by a link, first shows
//! what asked and what it will get; only "Yes, this is my device" approves.

use super::{browser_session, render, to_login};
use crate::access::{ClientMeta, MaybePrincipal};
use crate::accounts;
use crate::devices;
use crate::error::{Error, Result};
use crate::http::extract::Query;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct DeviceQuery {
    user_code: Option<String>,
}

pub async fn device_page(
    State(state): State<AppState>,
    principal: MaybePrincipal,
    meta: ClientMeta,
    Query(q): Query<DeviceQuery>,
) -> Result<Response> {
    let Some(principal) = browser_session(principal) else { return Ok(to_login(&q.back_here())) };
    let username = accounts::me(&state, &principal.user_id).await?.username;
    let Some(code) = q.user_code.as_deref().filter(|c| !c.trim().is_empty()) else {
        return render(StatusCode::OK, "device.html", context! { username });
    };
    match devices::review(&state, &principal, &meta, code).await {
        Ok(review) => render(StatusCode::OK, "device.html", context! { username, review }),
        Err(Error::Client { status, description, .. }) => {
            render(status, "device.html", context! { username, error => description, user_code => q.shown_code() })
        }
        Err(e) => Err(e),
    }
}

impl DeviceQuery {
    /// Where sign-in returns to: this page with the same code.
    fn back_here(&self) -> String {
        match &self.user_code {
            Some(c) => {
                format!("/device?user_code={}", url::form_urlencoded::byte_serialize(c.as_bytes()).collect::<String>())
            }
            None => "/device".to_owned(),
        }
    }

    /// The code to show again in the form, with anything that cannot be part of a code dropped.
    fn shown_code(&self) -> String {
        let code = self.user_code.as_deref().unwrap_or_default();
        code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(16).collect()
    }
}
