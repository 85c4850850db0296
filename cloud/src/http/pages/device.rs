//! The device page (`verification_uri`): where a member approves a device's code.

use super::{browser_session, render, to_login};
use crate::access::MaybePrincipal;
use crate::accounts;
use crate::error::Result;
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
    Query(q): Query<DeviceQuery>,
) -> Result<Response> {
    let Some(principal) = browser_session(principal) else { return Ok(to_login(&q.back_here())) };
    let me = accounts::me(&state, &principal.user_id).await?;
    render(StatusCode::OK, "device.html", context! { username => me.username, user_code => q.shown_code() })
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

    /// The code to pre-fill, with anything that cannot be part of a code dropped.
    fn shown_code(&self) -> String {
        let code = self.user_code.as_deref().unwrap_or_default();
        code.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').take(16).collect()
    }
}
