//! The generic connector for any JSON API that pages through a list: `url` is the first
//! page, `items` a JSON pointer to the array, `id` the field (or pointer) that identifies
//! an item, and `next` a pointer to the next page — either a URL, followed only on the
//! origin of `url`, or a cursor sent back in the `cursor_param` query parameter.
//!
//! The cursor is `"url <next page URL>"` or `"cursor <value>"`.

use super::{same_origin, CaughtUp, Connector, Event, Page, ProviderHttp};
use crate::config::HttpJsonConfig;
use crate::error::Result;
use latchkey_shared::secret::SecretString;
use serde_json::Value;
use url::Url;

/// The http-json connector.
pub struct HttpJson {
    settings: HttpJsonConfig,
}

/// Where the next page is, as read from a page.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Url(Url),
    Cursor(String),
}

impl HttpJson {
    pub fn new(settings: HttpJsonConfig) -> Self {
        Self { settings }
    }

    /// The URL a stored cursor names. A URL cursor on another origin (after `url` changed)
    /// starts over.
    fn page_url(&self, cursor: Option<&str>) -> Url {
        match cursor.and_then(|c| c.split_once(' ')) {
            Some(("url", next)) => match Url::parse(next) {
                Ok(next) if same_origin(&next, &self.settings.url) => next,
                _ => self.settings.url.clone(),
            },
            Some(("cursor", value)) => self.with_cursor(value),
            _ => self.settings.url.clone(),
        }
    }

    fn with_cursor(&self, value: &str) -> Url {
        let mut url = self.settings.url.clone();
        let param = self.settings.cursor_param.as_str();
        let kept: Vec<(String, String)> =
            url.query_pairs().filter(|(k, _)| k != param).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        url.query_pairs_mut().clear().extend_pairs(kept).append_pair(param, value);
        url
    }

    /// Reads one page fetched from `current`.
    fn parse_page(&self, body: &[u8], current: &Url) -> Result<Page, String> {
        let doc: Value = serde_json::from_slice(body).map_err(|e| format!("a page that is not JSON ({e})"))?;
        let s = &self.settings;
        let array = match doc.pointer(&s.items) {
            Some(Value::Array(items)) => items,
            Some(Value::Null) | None => {
                return Err(format!("a page without an array at `{}` (the `items` setting)", s.items))
            }
            Some(_) => return Err(format!("a page whose `{}` (the `items` setting) is not an array", s.items)),
        };
        let mut items = Vec::with_capacity(array.len());
        for (n, item) in array.iter().enumerate() {
            let id = field(item, &s.id).and_then(super::id_text).ok_or_else(|| {
                format!("item #{} without a string or number at `{}` (the `id` setting)", n + 1, s.id)
            })?;
            let occurred_at = s
                .occurred_at
                .as_deref()
                .and_then(|f| field(item, f))
                .and_then(Value::as_str)
                .and_then(super::normalize_time);
            items.push(Event { external_id: id, occurred_at, payload: item.to_string() });
        }
        let next = match s.next.as_deref() {
            Some(pointer) if !items.is_empty() => read_next(doc.pointer(pointer), current)?,
            _ => None,
        };
        let next_cursor = match next {
            None => None,
            Some(Next::Url(url)) => {
                if !same_origin(&url, &s.url) {
                    return Err(format!(
                        "a next page on {}, which is not the origin of `url` ({}); it is not followed, so the access token stays with {}",
                        url.origin().ascii_serialization(),
                        s.url.origin().ascii_serialization(),
                        s.url.origin().ascii_serialization()
                    ));
                }
                // The same page again would loop forever.
                (url != *current).then(|| format!("url {url}"))
            }
            Some(Next::Cursor(value)) => (self.with_cursor(&value) != *current).then(|| format!("cursor {value}")),
        };
        Ok(Page { items, next_cursor, total: None })
    }
}

/// An item's field: a JSON pointer when it starts with `/`, else a top-level key.
fn field<'a>(item: &'a Value, name: &str) -> Option<&'a Value> {
    if name.starts_with('/') {
        item.pointer(name)
    } else {
        item.get(name)
    }
}

/// A `next` value: null, empty or missing ends the walk; text that looks like a URL
/// (absolute, or starting with `/` or `?`) is a URL resolved against the current page;
/// anything else is a cursor.
fn read_next(value: Option<&Value>, current: &Url) -> Result<Option<Next>, String> {
    let text = match value {
        None | Some(Value::Null) | Some(Value::Bool(false)) => return Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => return Ok(None),
        Some(Value::String(s)) => s.trim().to_owned(),
        Some(Value::Number(n)) => return Ok(Some(Next::Cursor(n.to_string()))),
        Some(other) => return Err(format!("a `next` that is neither a URL nor a cursor: {other}")),
    };
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("http://") || lower.starts_with("https://") || text.starts_with('/') || text.starts_with('?') {
        let url = current.join(&text).map_err(|e| format!("a `next` URL that does not parse ({e})"))?;
        return Ok(Some(Next::Url(url)));
    }
    if lower.contains("://") {
        return Err(format!("a `next` URL with a scheme other than http(s): {text}"));
    }
    Ok(Some(Next::Cursor(text)))
}

impl Connector for HttpJson {
    async fn fetch_page(&self, http: &ProviderHttp, token: &SecretString, cursor: Option<&str>) -> Result<Page> {
        let url = self.page_url(cursor);
        let resp = http.get(&url, token, &[]).await?;
        self.parse_page(&resp.body, &url).map_err(|e| http.bad_answer(&url, e))
    }

    fn caught_up(&self, _cursor: Option<&str>) -> CaughtUp {
        // Nothing says the pages are newest first: walk them all.
        CaughtUp::Continue
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_CURSOR_PARAM;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    fn connector(items: &str, id: &str, next: Option<&str>) -> HttpJson {
        HttpJson::new(HttpJsonConfig {
            url: url("https://api.example.com/v2/items?kind=all"),
            items: items.into(),
            id: id.into(),
            next: next.map(Into::into),
            cursor_param: DEFAULT_CURSOR_PARAM.into(),
            occurred_at: Some("/meta/at".into()),
        })
    }

    #[test]
    fn pointers_find_items_ids_and_times() {
        let c = connector("/data/results", "/meta/id", Some("/paging/next"));
        let first = c.page_url(None);
        let body = br#"{"data":{"results":[{"meta":{"id":12,"at":"2024-01-01T00:00:00+01:00"},"x":1},{"meta":{"id":"b"}}]},"paging":{"next":"abc=="}}"#;
        let page = c.parse_page(body, &first).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(page.items.iter().map(|e| e.external_id.as_str()).collect::<Vec<_>>(), ["12", "b"]);
        assert_eq!(page.items[0].occurred_at.as_deref(), Some("2023-12-31T23:00:00.000Z"));
        assert_eq!(page.items[0].payload, r#"{"meta":{"at":"2024-01-01T00:00:00+01:00","id":12},"x":1}"#);
        assert_eq!(page.next_cursor.as_deref(), Some("cursor abc=="));
        // The cursor goes into `cursor_param`, replacing an earlier one.
        let second = c.page_url(page.next_cursor.as_deref());
        assert_eq!(second.as_str(), "https://api.example.com/v2/items?kind=all&cursor=abc%3D%3D");
        let third = c.page_url(Some("cursor xyz"));
        assert_eq!(third.as_str(), "https://api.example.com/v2/items?kind=all&cursor=xyz");

        // A top-level array and a plain field name.
        let top = connector("", "id", None);
        let page = top.parse_page(br#"[{"id":"a"},{"id":2}]"#, &first).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((page.items.len(), page.next_cursor), (2, None));
    }

    #[test]
    fn next_urls_are_followed_only_on_the_same_origin() {
        let c = connector("/items", "id", Some("/next"));
        let here = c.page_url(None);
        let page = |next: &str| c.parse_page(format!(r#"{{"items":[{{"id":1}}],"next":{next}}}"#).as_bytes(), &here);
        assert_eq!(
            page(r#""https://api.example.com/v2/items?page=2""#).ok().and_then(|p| p.next_cursor).as_deref(),
            Some("url https://api.example.com/v2/items?page=2")
        );
        assert_eq!(
            page(r#""/v2/items?page=3""#).ok().and_then(|p| p.next_cursor).as_deref(),
            Some("url https://api.example.com/v2/items?page=3")
        );
        assert_eq!(
            page(r#""?page=4""#).ok().and_then(|p| p.next_cursor).as_deref(),
            Some("url https://api.example.com/v2/items?page=4")
        );
        for elsewhere in [
            r#""https://evil.example/steal""#,
            r#""http://api.example.com/v2/items?page=2""#,
            r#""https://api.example.com:8443/x""#,
            r#""//evil.example/x""#,
        ] {
            let e = page(elsewhere).err().unwrap_or_default();
            assert!(e.contains("not the origin of `url`") && e.contains("not followed"), "{elsewhere}: {e}");
        }
        assert!(page(r#""javascript://x""#).is_err());
        assert_eq!(page("null").ok().map(|p| p.next_cursor), Some(None));
        assert_eq!(page(r#""""#).ok().map(|p| p.next_cursor), Some(None));
        assert_eq!(page("7").ok().and_then(|p| p.next_cursor).as_deref(), Some("cursor 7"));
        // The same page again ends the walk instead of looping.
        assert_eq!(page(r#""https://api.example.com/v2/items?kind=all""#).ok().map(|p| p.next_cursor), Some(None));
        // A stored URL cursor on another origin starts over at `url`.
        assert_eq!(
            c.page_url(Some("url https://evil.example/x")).as_str(),
            "https://api.example.com/v2/items?kind=all"
        );
        // An empty page ends the walk whatever `next` says.
        let empty = c.parse_page(br#"{"items":[],"next":"more"}"#, &here).ok().map(|p| p.next_cursor);
        assert_eq!(empty, Some(None));
    }

    #[test]
    fn bad_pages_say_which_setting() {
        let c = connector("/items", "id", None);
        let here = c.page_url(None);
        let e = c.parse_page(br#"{"results":[]}"#, &here).err().unwrap_or_default();
        assert!(e.contains("`/items` (the `items` setting)"), "{e}");
        let e = c.parse_page(br#"{"items":{"a":1}}"#, &here).err().unwrap_or_default();
        assert!(e.contains("is not an array"), "{e}");
        let e = c.parse_page(br#"{"items":[{"id":1},{"name":"x"}]}"#, &here).err().unwrap_or_default();
        assert!(e.contains("item #2") && e.contains("the `id` setting"), "{e}");
        assert!(c.parse_page(b"not json", &here).is_err());
    }
}
