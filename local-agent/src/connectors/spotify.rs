//! Spotify: recently played tracks, `GET {base}/v1/me/player/recently-played?limit=50&before=…`,
//! newest first. The cursor is `cursors.before` (milliseconds since the epoch); a page
//! whose `next` is null is the last. A play is identified by its `played_at`.

use super::{CaughtUp, Connector, Event, Page, ProviderHttp};
use crate::error::Result;
use latchkey_shared::secret::SecretString;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use url::Url;

/// The public Spotify Web API.
pub const DEFAULT_BASE: &str = "https://api.spotify.com";
/// Items per request: Spotify's maximum.
pub const PAGE_SIZE: u32 = 50;

/// The Spotify connector.
pub struct Spotify {
    base: Url,
}

#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    cursors: Option<Cursors>,
}

#[derive(Deserialize)]
struct Cursors {
    #[serde(default)]
    before: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct PlayHead<'a> {
    #[serde(borrow)]
    played_at: Cow<'a, str>,
}

impl Spotify {
    pub fn new(base: Url) -> Self {
        Self { base }
    }

    fn page_url(&self, cursor: Option<&str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["v1", "me", "player", "recently-played"]);
        }
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", &PAGE_SIZE.to_string());
            if let Some(before) = cursor {
                query.append_pair("before", before);
            }
        }
        url
    }
}

impl Connector for Spotify {
    async fn fetch_page(&self, http: &ProviderHttp, token: &SecretString, cursor: Option<&str>) -> Result<Page> {
        let url = self.page_url(cursor);
        let resp = http.get(&url, token, &[]).await?;
        parse_page(&resp.body).map_err(|e| http.bad_answer(&url, e))
    }

    fn caught_up(&self, _cursor: Option<&str>) -> CaughtUp {
        CaughtUp::Jump(None)
    }
}

/// Parses one page of recently played tracks.
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    let page: RawPage<'_> = serde_json::from_slice(body).map_err(|e| format!("a page that is not understood ({e})"))?;
    let mut items = Vec::with_capacity(page.items.len());
    for raw in &page.items {
        let head: PlayHead<'_> =
            serde_json::from_str(raw.get()).map_err(|e| format!("a play without `played_at` ({e})"))?;
        items.push(Event {
            external_id: head.played_at.to_string(),
            occurred_at: super::normalize_time(&head.played_at),
            payload: raw.get().to_owned(),
        });
    }
    let before = page.cursors.and_then(|c| c.before).and_then(|b| super::id_text(&b)).or_else(|| {
        // No `cursors`: read `before` from the `next` URL.
        let next = Url::parse(page.next.as_deref()?).ok()?;
        let before = next.query_pairs().find(|(k, _)| k == "before").map(|(_, v)| v.into_owned());
        before
    });
    let next_cursor = if page.next.is_some() && !items.is_empty() { before } else { None };
    Ok(Page { items, next_cursor, total: None })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pages() {
        let body = br#"{"items":[{"track":{"id":"t1","name":"Song"},"played_at":"2024-03-01T10:00:00.123Z"}],
            "next":"https://api.spotify.com/v1/me/player/recently-played?before=1709287200123&limit=50",
            "cursors":{"after":"1709290000000","before":"1709287200123"},"limit":50}"#;
        let page = parse_page(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.items[0].external_id, "2024-03-01T10:00:00.123Z");
        assert_eq!(page.items[0].occurred_at.as_deref(), Some("2024-03-01T10:00:00.123Z"));
        assert_eq!(page.next_cursor.as_deref(), Some("1709287200123"));

        let from_next = br#"{"items":[{"played_at":"2024-03-01T10:00:00Z"}],"next":"https://api.spotify.com/v1/me/player/recently-played?before=42&limit=50","cursors":null}"#;
        assert_eq!(parse_page(from_next).ok().and_then(|p| p.next_cursor).as_deref(), Some("42"));

        let last = br#"{"items":[{"played_at":"2024-03-01T10:00:00Z"}],"next":null,"cursors":{"before":"1"}}"#;
        assert_eq!(parse_page(last).ok().map(|p| p.next_cursor), Some(None));
        let empty = br#"{"items":[],"next":"https://api.spotify.com/x?before=1","cursors":{"before":"1"}}"#;
        assert_eq!(parse_page(empty).ok().map(|p| p.next_cursor), Some(None), "no items: done");
    }

    #[test]
    fn page_urls() {
        let s = Spotify::new(Url::parse(DEFAULT_BASE).unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(s.page_url(None).as_str(), "https://api.spotify.com/v1/me/player/recently-played?limit=50");
        assert_eq!(
            s.page_url(Some("123")).as_str(),
            "https://api.spotify.com/v1/me/player/recently-played?limit=50&before=123"
        );
    }
}
