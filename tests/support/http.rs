//! A small HTTP client that does not follow redirects: the API as a script sees it, and a
//! browser's cookie jar.

use crate::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// A response as a test reads it.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts the contract's error shape and code, and returns the description.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        let body = self.json();
        assert_eq!(body["error"], code, "unexpected error code; body: {}", self.text);
        let description = body["error_description"].as_str().expect("error_description is a string");
        assert!(!description.is_empty());
        description.to_owned()
    }

    /// Asserts an HTML error page (what a browser gets on a page route, never JSON) and
    /// returns the reason it shows.
    #[track_caller]
    pub fn assert_page_error(&self, status: u16) -> String {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        let kind = self.header("content-type").unwrap_or_default();
        assert!(kind.starts_with("text/html"), "an error page, not {kind}: {}", self.text);
        let reason = self.text.split("id=\"error-reason\">").nth(1).and_then(|r| r.split('<').next());
        let reason = reason.unwrap_or_else(|| panic!("the error page gives no reason: {}", self.text));
        assert!(!reason.trim().is_empty());
        reason.to_owned()
    }

    #[track_caller]
    pub fn ok(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "unexpected status; body: {}", self.text);
        if self.text.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }
}

/// A tiny client for the cloud's API that never follows redirects.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
}

impl Api {
    pub fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Api { base: base.to_owned(), client }
    }

    pub async fn send(&self, method: Method, path: &str, token: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = self.client.request(method, format!("{}{}", self.base, path));
        if path.starts_with("/sandbox/admin/") {
            req = req.header("x-sandbox-admin", SANDBOX_ADMIN_SECRET);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        Self::read(req).await
    }

    pub async fn read(req: reqwest::RequestBuilder) -> Reply {
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        Reply { status, headers, text }
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> Reply {
        self.send(Method::PUT, path, token, Some(body)).await
    }

    pub async fn delete(&self, path: &str, token: Option<&str>) -> Reply {
        self.send(Method::DELETE, path, token, None).await
    }

    /// Registers and logs in a user named `name`.
    pub async fn user(&self, name: &str) -> User {
        let email = format!("{name}@example.test");
        let password = format!("{name} rides a purple bicycle to the lighthouse");
        let reg =
            self.post("/v1/auth/register", None, json!({"email": email, "username": name, "password": password})).await;
        let id = reg.ok(201)["id"].as_str().expect("id").to_owned();
        let login = self.post("/v1/auth/login", None, json!({"email": email, "password": password})).await.ok(200);
        User {
            id,
            email,
            password,
            access: login["access_token"].as_str().expect("access").to_owned(),
            refresh: login["refresh_token"].as_str().expect("refresh").to_owned(),
        }
    }

    /// Creates an org owned by `owner`.
    pub async fn org(&self, owner: &User, slug: &str, visibility: &str) -> Value {
        self.post("/v1/orgs", Some(&owner.access), json!({"slug": slug, "name": slug, "visibility": visibility}))
            .await
            .ok(201)
    }

    /// Creates a PAT for `user` with `scopes`; returns (id, token).
    pub async fn pat(&self, user: &User, scopes: &[&str]) -> (String, String) {
        let body = self.post("/v1/tokens", Some(&user.access), json!({"name": "test", "scopes": scopes})).await.ok(201);
        (body["id"].as_str().expect("id").to_owned(), body["token"].as_str().expect("token").to_owned())
    }
}

/// A logged-in test user.
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub email: String,
    pub password: String,
    pub access: String,
    pub refresh: String,
}

/// A browser as the cloud sees it: a cookie jar, and redirects followed by hand so every
/// hop is visible.
#[derive(Clone)]
pub struct Browser {
    pub client: reqwest::Client,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let client = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Browser { client }
    }

    /// Signs in through the login form, as a person would.
    pub async fn login(&self, base: &str, user: &User) -> Reply {
        self.login_as(base, &user.email, &user.password, "/").await
    }

    /// Signs in through the login form with these credentials, then goes to `next`: the
    /// form's page first (its token and cookie), then its post, from the cloud's origin.
    pub async fn login_as(&self, base: &str, email: &str, password: &str, next: &str) -> Reply {
        let next_q: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
        let page = self.get(&format!("{base}/login?next={next_q}")).await;
        let fields = form_fields(&page.text, &[("email", email), ("password", password), ("next", next)]);
        self.post_form(base, "/login", &fields).await
    }

    /// Posts a form as our own pages do: with `Origin` naming the cloud.
    pub async fn post_form(&self, base: &str, path: &str, fields: &[(String, String)]) -> Reply {
        Api::read(self.client.post(format!("{base}{path}")).header("origin", base).form(fields)).await
    }

    /// Opens `/connect/{org}/{key}` and presses its button: the answer is the redirect to
    /// the provider.
    pub async fn start_consent(&self, base: &str, org: &str, key: &str) -> Reply {
        let path = format!("/connect/{org}/{key}");
        let page = self.get(&format!("{base}{path}")).await;
        assert_eq!(page.status, 200, "the confirm page of {path}: {}", page.text);
        self.post_form(base, &path, &hidden_fields(&page.text)).await
    }

    /// A whole consent from the confirm page on, following every redirect after its button.
    pub async fn connect(&self, base: &str, org: &str, key: &str) -> (Vec<String>, Reply) {
        let start = self.start_consent(base, org, key).await;
        let provider =
            start.header("location").unwrap_or_else(|| panic!("no redirect: {} {}", start.status, start.text));
        self.follow(provider).await
    }

    pub async fn get(&self, url: &str) -> Reply {
        Api::read(self.client.get(url)).await
    }

    /// Follows redirects (up to 10) and returns every hop's URL and the final reply.
    pub async fn follow(&self, url: &str) -> (Vec<String>, Reply) {
        let mut hops = vec![url.to_owned()];
        let mut reply = self.get(url).await;
        for _ in 0..10 {
            if !reply.status.is_redirection() {
                break;
            }
            let next = reply.header("location").expect("redirect without Location").to_owned();
            let next = if next.starts_with('/') {
                let base = url::Url::parse(hops.last().expect("hop")).expect("url");
                base.join(&next).expect("join").to_string()
            } else {
                next
            };
            hops.push(next.clone());
            reply = self.get(&next).await;
        }
        (hops, reply)
    }
}

/// The hidden fields of a page's forms, decoded; a name that several forms share (the
/// CSRF token) once, as one form would post it.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut seen = std::collections::HashSet::new();
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .filter_map(|rest| {
            let name = rest.strip_prefix("name=\"")?.split('"').next()?;
            let value = rest.split("value=\"").nth(1)?.split('"').next()?;
            Some((name.to_owned(), unescape(value)))
        })
        .filter(|(name, _)| seen.insert(name.clone()))
        .collect()
}

/// A page's hidden fields (its CSRF token) with these fields filled in.
pub fn form_fields(html: &str, filled: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut fields: Vec<(String, String)> =
        hidden_fields(html).into_iter().filter(|(k, _)| !filled.iter().any(|(f, _)| f == k)).collect();
    fields.extend(filled.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    fields
}

fn unescape(text: &str) -> String {
    text.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}
