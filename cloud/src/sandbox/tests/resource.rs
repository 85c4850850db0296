//! `GET /sandbox/userinfo` and the data API `GET /sandbox/api/items`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use serde_json::{json, Value};

use super::*;

#[tokio::test]
async fn userinfo_rejects_bad_tokens() {
    let (_sb, app) = sandbox();
    for reply in [
        get_bearer(&app, "/sandbox/userinfo", "sbx_at_unknown").await,
        get(&app, "/sandbox/userinfo").await,
        send(
            &app,
            Request::get("/sandbox/userinfo").header(header::AUTHORIZATION, "Basic eDp5").body(Body::empty()).unwrap(),
        )
        .await,
    ] {
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some("Bearer error=\"invalid_token\""));
        assert_eq!(reply.oauth_error(), "invalid_token");
    }
    // Expired: a zero lifetime.
    put_faults(&app, json!({"access_token_ttl_secs": 0})).await;
    let (access, rt) = connect(&app, "jack").await;
    assert_eq!(get_bearer(&app, "/sandbox/userinfo", &access).await.status, StatusCode::UNAUTHORIZED);
    put_faults(&app, json!({"access_token_ttl_secs": 60})).await;
    let fresh = refresh(&app, &rt).await.json();
    assert_eq!(fresh["expires_in"], 60);
    let me = get_bearer(&app, "/sandbox/userinfo", fresh["access_token"].as_str().unwrap()).await;
    assert_eq!(me.json()["name"], "jack");
    // Stable subject per username, different across usernames.
    assert_eq!(subject_for("jack"), subject_for("jack"));
    assert_ne!(subject_for("jack"), subject_for("jill"));
}

async fn walk_items(app: &Router, token: &str, limit: usize) -> Vec<Value> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            Some(c) => format!("/sandbox/api/items?limit={limit}&cursor={c}"),
            None => format!("/sandbox/api/items?limit={limit}"),
        };
        let reply = get_bearer(app, &uri, token).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let body = reply.json();
        let items = body["items"].as_array().unwrap();
        assert!(items.len() <= limit);
        all.extend(items.iter().cloned());
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => {
                assert!(body["next_cursor"].is_null());
                return all;
            }
        }
    }
}

#[tokio::test]
async fn items_paginate_to_the_end_without_duplicates() {
    let (sb, app) = sandbox();
    let (access, _) = connect(&app, "kate").await;

    // Default: 250 items, 100 per page.
    let first = get_bearer(&app, "/sandbox/api/items", &access).await.json();
    assert_eq!(first["items"].as_array().unwrap().len(), 100);
    let all = walk_items(&app, &access, 100).await;
    assert_eq!(all.len(), 250);

    sb.set_items(1234);
    let all = walk_items(&app, &access, 500).await;
    assert_eq!(all.len(), 1234);
    let ids: HashSet<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1234);
    assert_eq!(all[0]["id"], "trk_001233");
    assert_eq!(all[1233]["id"], "trk_000000");
    let times: Vec<time::OffsetDateTime> = all
        .iter()
        .map(|i| {
            time::OffsetDateTime::parse(
                i["played_at"].as_str().unwrap(),
                &time::format_description::well_known::Rfc3339,
            )
            .unwrap()
        })
        .collect();
    assert!(times.windows(2).all(|w| w[0] > w[1]), "newest first");
    let item = &all[7];
    for field in ["track", "artist", "album"] {
        let text = item[field].as_str().unwrap();
        assert!(!text.is_empty() && !text.to_lowercase().contains("item"), "{field}: {text}");
    }
    let duration = item["duration_ms"].as_u64().unwrap();
    assert!((120_000..420_000).contains(&duration));
    let distinct_tracks: HashSet<&str> = all.iter().map(|i| i["track"].as_str().unwrap()).collect();
    assert!(distinct_tracks.len() > 50, "varied titles");

    // Deterministic per user: the same again, and different for another user.
    assert_eq!(walk_items(&app, &access, 500).await, all);
    let (other, _) = connect(&app, "liam").await;
    let theirs = walk_items(&app, &other, 500).await;
    assert_eq!(theirs.len(), 1234);
    assert_ne!(theirs, all);

    // Items added during a walk do not shift it.
    let page = get_bearer(&app, "/sandbox/api/items?limit=10", &access).await.json();
    sb.set_items(1300);
    let next = page["next_cursor"].as_str().unwrap();
    let page2 = get_bearer(&app, &format!("/sandbox/api/items?limit=10&cursor={next}"), &access).await.json();
    assert_eq!(page2["items"][0]["id"], "trk_001223");
    assert_eq!(page2["total"], 1300, "the stream's size, for progress bars");

    // Bad limits and cursors.
    for q in ["limit=0", "limit=501", "limit=abc", "cursor=%%%", "cursor=bm90LWEtY3Vyc29y", "limit=5&limit=6"] {
        let reply = get_bearer(&app, &format!("/sandbox/api/items?{q}"), &access).await;
        assert_eq!((reply.status, reply.oauth_error().as_str()), (StatusCode::BAD_REQUEST, "invalid_request"), "{q}");
    }
    // No token.
    let reply = get(&app, "/sandbox/api/items").await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
    assert_eq!(reply.header(header::WWW_AUTHENTICATE), Some("Bearer error=\"invalid_token\""));

    // Empty history.
    sb.set_items(0);
    let empty = get_bearer(&app, "/sandbox/api/items", &access).await.json();
    assert_eq!(empty, json!({"items": [], "next_cursor": null, "total": 0}));
}

#[tokio::test]
async fn a_hundred_thousand_items_are_fast() {
    let (sb, app) = sandbox();
    let (access, _) = connect(&app, "mona").await;
    sb.set_items(100_000);
    let started = Instant::now();
    let all = walk_items(&app, &access, 500).await;
    assert_eq!(all.len(), 100_000);
    assert_eq!(all[0]["id"], "trk_099999");
    let ids: HashSet<&str> = all.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 100_000);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
}
