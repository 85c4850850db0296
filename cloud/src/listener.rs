//! The accept loop (in place of `axum::serve`), and closing it without dropping a request
//! that already reached the replica.
//!
//! `axum::serve`'s graceful shutdown drops the listener, which resets the connections still
//! in the kernel's accept queue, and shuts every connection down at once, which closes a
//! connection that has not read its first request yet (hyper) with that request unread in
//! the socket. Either way the client, typically a balancer on a fresh connection, sees a
//! reset after sending: for a POST it cannot know whether it ran, so it answers 502. Here,
//! once `stop` resolves, the accept queue is taken in first, and a connection that has not
//! started a request gets `FIRST_REQUEST_GRACE` for it before it is shut down; a
//! connection whose request is under way finishes it (hyper's graceful shutdown).

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tower::ServiceExt;

/// How long a connection accepted before the stop may take to send its first request. A
/// balancer sends right after connecting; a client that only opened a connection ahead of
/// time is closed after this.
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// Serves `app` on `listener` until `stop` resolves, then stops accepting and resolves once
/// every connection is done.
pub async fn serve(listener: TcpListener, app: axum::Router, stop: impl Future<Output = ()>) -> std::io::Result<()> {
    let (stopping_tx, stopping_rx) = watch::channel(false);
    // Each connection task holds a receiver; all are gone when `closed` resolves.
    let (open_tx, open_rx) = watch::channel(());
    let start = |stream, addr| start_connection(app.clone(), stream, addr, stopping_rx.clone(), open_rx.clone());
    tokio::pin!(stop);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, addr)) => start(stream, addr),
                Err(e) => accept_failed(e).await,
            },
            () = &mut stop => break,
        }
    }
    // Connections the kernel completed but nobody accepted yet are reset when the listener
    // closes, often with a request already sent: take them in.
    // The socket itself is asked (non-blocking), not tokio's cached readiness, which may
    // not have seen the latest arrivals yet.
    if let Ok(listener) = listener.into_std() {
        while let Ok((stream, addr)) = listener.accept() {
            // Accepted sockets do not inherit non-blocking mode; tokio needs it.
            match stream.set_nonblocking(true).and_then(|()| TcpStream::from_std(stream)) {
                Ok(stream) => start(stream, addr),
                Err(e) => tracing::warn!(error = %e, "a connection taken in at the stop could not be served"),
            }
        }
    }
    stopping_tx.send_replace(true);
    drop(open_rx);
    open_tx.closed().await;
    Ok(())
}

/// A failed accept: a connection that died in the queue is skipped; anything else (too many
/// open files) is logged, with a pause so the loop does not spin.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(e.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

fn start_connection(
    app: axum::Router,
    stream: TcpStream,
    addr: SocketAddr,
    mut stopping: watch::Receiver<bool>,
    open: watch::Receiver<()>,
) {
    let (first_tx, mut first_rx) = watch::channel(false);
    let first_tx = Arc::new(first_tx);
    let service = tower::service_fn(move |mut req: Request<Incoming>| {
        first_tx.send_replace(true);
        req.extensions_mut().insert(ConnectInfo(addr));
        app.clone().oneshot(req.map(Body::new))
    });
    tokio::spawn(async move {
        let builder = Builder::new(TokioExecutor::new());
        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), TowerToHyperService::new(service));
        tokio::pin!(conn);
        let stopped = async {
            // An error means the server task is gone: stop as well.
            let _ = stopping.wait_for(|stopping| *stopping).await;
            let _ = tokio::time::timeout(FIRST_REQUEST_GRACE, first_rx.wait_for(|started| *started)).await;
        };
        tokio::select! {
            served = conn.as_mut() => log_end(served),
            () = stopped => {
                conn.as_mut().graceful_shutdown();
                log_end(conn.await);
            }
        }
        drop(open);
    });
}

fn log_end(served: Result<(), Box<dyn std::error::Error + Send + Sync>>) {
    if let Err(e) = served {
        tracing::trace!(error = %e, "connection ended with an error");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A balancer's fresh connection, opened before the stop, whose request goes out just
    /// after it: answered, not reset (`axum::serve` closed it unread).
    #[tokio::test]
    async fn a_request_sent_on_a_connection_opened_before_the_stop_is_answered() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new().route("/", axum::routing::post(|| async { "served" }));
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, app, async move {
            let _ = stop_rx.await;
        }));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        stop_tx.send(()).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stream.write_all(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await.unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("an answer, not a reset");
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(answer.ends_with("served"), "{answer}");
        tokio::time::timeout(Duration::from_secs(2), server).await.unwrap().unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "no longer accepting");
    }
}
