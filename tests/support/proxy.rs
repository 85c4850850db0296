//! A reverse proxy as nginx runs in front of the cloud (`deploy/nginx/latchkey.conf`): it
//! appends the address it was connected from to `X-Forwarded-For`
//! (`$proxy_add_x_forwarded_for`) and passes the request on.

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::response::Response;
use std::net::SocketAddr;

pub struct Proxy {
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(upstream: &str) -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("addr"));
        let app = axum::Router::new().fallback(forward).with_state(upstream.to_owned());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await;
        });
        Proxy { base, task }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn forward(
    State(upstream): State<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers.clone();
    headers.remove(axum::http::header::HOST);
    let forwarded = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(earlier) => format!("{earlier}, {}", peer.ip()),
        None => peer.ip().to_string(),
    };
    headers.insert("x-forwarded-for", forwarded.parse().expect("header value"));
    let body = axum::body::to_bytes(body, 1 << 20).await.expect("body");
    let answer = reqwest::Client::new()
        .request(parts.method, format!("{upstream}{path}"))
        .headers(headers)
        .body(body)
        .send()
        .await
        .expect("upstream");
    let mut response = Response::builder().status(answer.status());
    for (name, value) in answer.headers() {
        response = response.header(name, value);
    }
    response.body(Body::from(answer.bytes().await.expect("upstream body"))).expect("response")
}
