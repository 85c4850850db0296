//! The cloud's sandbox provider's data API: `GET {base}/api/items?cursor=&limit=500`,
//! newest first, `{"items": [{"id", "played_at", …}], "next_cursor": string | null}`.
//! The base defaults to `{cloud_url}/sandbox`; only the provider token is sent there.

use super::{CaughtUp, Connector, Event, IdValue, Page, ProviderHttp};
use crate::error::Result;
use latchkey_shared::secret::SecretString;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use url::Url;

/// Items per request: the sandbox's maximum.
pub const PAGE_SIZE: usize = 500;

/// The sandbox connector.
pub struct Sandbox {
    base: Url,
}

#[derive(Deserialize)]
struct RawPage<'a> {
    #[serde(borrow)]
    items: Vec<&'a RawValue>,
    #[serde(default)]
    next_cursor: Option<String>,
    #[serde(default)]
    total: Option<u64>,
}

#[derive(Deserialize)]
struct ItemHead<'a> {
    #[serde(borrow)]
    id: IdValue<'a>,
    #[serde(default, borrow)]
    played_at: Option<Cow<'a, str>>,
}

impl Sandbox {
    pub fn new(base: Url) -> Self {
        Self { base }
    }

    pub fn base(&self) -> &Url {
        &self.base
    }

    fn page_url(&self, cursor: Option<&str>) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "items"]);
        }
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("limit", &PAGE_SIZE.to_string());
            if let Some(cursor) = cursor {
                query.append_pair("cursor", cursor);
            }
        }
        url
    }
}

impl Connector for Sandbox {
    async fn fetch_page(&self, http: &ProviderHttp, token: &SecretString, cursor: Option<&str>) -> Result<Page> {
        let url = self.page_url(cursor);
        let resp = http.get(&url, token, &[]).await?;
        parse_page(&resp.body).map_err(|e| http.bad_answer(&url, e))
    }

    fn caught_up(&self, _cursor: Option<&str>) -> CaughtUp {
        CaughtUp::Jump(None)
    }
}

/// Parses one page; the payload of each event is the item exactly as sent.
pub fn parse_page(body: &[u8]) -> Result<Page, String> {
    let page: RawPage<'_> = serde_json::from_slice(body).map_err(|e| format!("a page that is not understood ({e})"))?;
    let mut items = Vec::with_capacity(page.items.len());
    for raw in page.items {
        let head: ItemHead<'_> =
            serde_json::from_str(raw.get()).map_err(|e| format!("an item without a usable `id` ({e})"))?;
        items.push(Event {
            external_id: head.id.text(),
            occurred_at: head.played_at.as_deref().and_then(super::normalize_time),
            payload: raw.get().to_owned(),
        });
    }
    Ok(Page { items, next_cursor: page.next_cursor.filter(|c| !c.is_empty()), total: page.total })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_page() {
        let body = br#"{"items":[{"id":"trk_000002","played_at":"2023-01-01T00:20:00Z","track":"A \"b\""},{"id":7}],"next_cursor":"c2J4MTox"}"#;
        let page = parse_page(body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.items[0].external_id, "trk_000002");
        assert_eq!(page.items[0].occurred_at.as_deref(), Some("2023-01-01T00:20:00.000Z"));
        assert_eq!(
            page.items[0].payload,
            r#"{"id":"trk_000002","played_at":"2023-01-01T00:20:00Z","track":"A \"b\""}"#
        );
        assert_eq!((page.items[1].external_id.as_str(), page.items[1].occurred_at.as_deref()), ("7", None));
        assert_eq!(page.next_cursor.as_deref(), Some("c2J4MTox"));
        let last = parse_page(br#"{"items":[],"next_cursor":null}"#).unwrap_or_else(|e| panic!("{e}"));
        assert!(last.items.is_empty() && last.next_cursor.is_none());
        assert!(parse_page(br#"{"items":[{"name":"no id"}]}"#).is_err());
        assert!(parse_page(b"<html>").is_err());
    }

    #[test]
    fn page_urls() {
        let s = Sandbox::new(Url::parse("http://127.0.0.1:8080/sandbox").unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(s.page_url(None).as_str(), "http://127.0.0.1:8080/sandbox/api/items?limit=500");
        assert_eq!(
            s.page_url(Some("a+b=")).as_str(),
            "http://127.0.0.1:8080/sandbox/api/items?limit=500&cursor=a%2Bb%3D"
        );
    }
}
