//! GitHub: starred repositories (`GET {base}/user/starred`, newest star first), then
//! notifications (`GET {base}/notifications`), each paginated by the `Link` header. A
//! next-page link is followed only on the origin of the configured base URL.
//!
//! The cursor is `"<stream> <url of the next page>"`, stream being `starred` or
//! `notifications`.

use super::{same_origin, CaughtUp, Connector, Event, IdValue, Page, ProviderHttp};
use crate::error::Result;
use latchkey_shared::secret::SecretString;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use url::Url;

/// The public GitHub API.
pub const DEFAULT_BASE: &str = "https://api.github.com";
const API_VERSION: (&str, &str) = ("x-github-api-version", "2022-11-28");

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Starred,
    Notifications,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Starred => "starred",
            Stream::Notifications => "notifications",
        }
    }
}

/// The GitHub connector.
pub struct Github {
    base: Url,
}

#[derive(Deserialize)]
struct ItemHead<'a> {
    #[serde(default, borrow)]
    id: Option<IdValue<'a>>,
    #[serde(default, borrow)]
    starred_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    updated_at: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    repo: Option<RepoHead<'a>>,
}

#[derive(Deserialize)]
struct RepoHead<'a> {
    #[serde(borrow)]
    id: IdValue<'a>,
}

impl Github {
    pub fn new(base: Url) -> Self {
        Self { base }
    }

    fn first(&self, stream: Stream) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty();
            match stream {
                Stream::Starred => path.extend(["user", "starred"]),
                Stream::Notifications => path.push("notifications"),
            };
        }
        match stream {
            Stream::Starred => url.query_pairs_mut().append_pair("per_page", "100").append_pair("page", "1"),
            Stream::Notifications => url.query_pairs_mut().append_pair("all", "true").append_pair("per_page", "50"),
        };
        url
    }

    fn cursor(stream: Stream, url: &Url) -> String {
        format!("{} {url}", stream.name())
    }

    /// The stream and URL a cursor names; a cursor this connector cannot use (another
    /// origin, say, after `base_url` changed) starts over.
    fn position(&self, cursor: Option<&str>) -> (Stream, Url) {
        let parsed = cursor.and_then(|c| c.split_once(' ')).and_then(|(stream, url)| {
            let stream = match stream {
                "starred" => Stream::Starred,
                "notifications" => Stream::Notifications,
                _ => return None,
            };
            Url::parse(url).ok().filter(|u| same_origin(u, &self.base)).map(|u| (stream, u))
        });
        parsed.unwrap_or_else(|| (Stream::Starred, self.first(Stream::Starred)))
    }
}

impl Connector for Github {
    async fn fetch_page(&self, http: &ProviderHttp, token: &SecretString, cursor: Option<&str>) -> Result<Page> {
        let (stream, url) = self.position(cursor);
        let accept = match stream {
            Stream::Starred => "application/vnd.github.star+json",
            Stream::Notifications => "application/vnd.github+json",
        };
        let resp = http.get(&url, token, &[("accept", accept), API_VERSION]).await?;
        let items = parse_items(stream, &resp.body).map_err(|e| http.bad_answer(&url, e))?;
        let link = resp.headers.get(reqwest::header::LINK).and_then(|v| v.to_str().ok());
        let next = match link.and_then(|l| next_link(l, &url)) {
            Some(next) if same_origin(&next, &self.base) => Some(Self::cursor(stream, &next)),
            Some(next) => {
                return Err(http.bad_answer(
                    &url,
                    format!(
                        "a next-page link to {}, which is not on {} and is not followed",
                        next.origin().ascii_serialization(),
                        self.base.origin().ascii_serialization()
                    ),
                ))
            }
            None if stream == Stream::Starred => {
                Some(Self::cursor(Stream::Notifications, &self.first(Stream::Notifications)))
            }
            None => None,
        };
        Ok(Page { items, next_cursor: next, total: None })
    }

    fn caught_up(&self, cursor: Option<&str>) -> CaughtUp {
        match self.position(cursor).0 {
            Stream::Starred => {
                CaughtUp::Jump(Some(Self::cursor(Stream::Notifications, &self.first(Stream::Notifications))))
            }
            Stream::Notifications => CaughtUp::Jump(None),
        }
    }
}

fn parse_items(stream: Stream, body: &[u8]) -> Result<Vec<Event>, String> {
    let raw: Vec<&RawValue> =
        serde_json::from_slice(body).map_err(|e| format!("a page that is not a JSON array ({e})"))?;
    let mut events = Vec::with_capacity(raw.len());
    for item in raw {
        let head: ItemHead<'_> =
            serde_json::from_str(item.get()).map_err(|e| format!("an item that is not understood ({e})"))?;
        let (id, at) = match stream {
            // With the star media type an item is {starred_at, repo}; without it, a repo.
            Stream::Starred => match (&head.repo, &head.id) {
                (Some(repo), _) => (repo.id.text(), head.starred_at.as_deref()),
                (None, Some(id)) => (id.text(), None),
                (None, None) => return Err("a starred item without a repository id".into()),
            },
            Stream::Notifications => match &head.id {
                Some(id) => (id.text(), head.updated_at.as_deref()),
                None => return Err("a notification without an id".into()),
            },
        };
        events.push(Event {
            external_id: format!("{}:{id}", if stream == Stream::Starred { "starred" } else { "notification" }),
            occurred_at: at.and_then(super::normalize_time),
            payload: item.get().to_owned(),
        });
    }
    Ok(events)
}

/// The `rel="next"` target of a `Link` header (RFC 8288), resolved against `current`.
pub fn next_link(header: &str, current: &Url) -> Option<Url> {
    let mut rest = header;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>')? + open;
        let target = &rest[open + 1..close];
        let params_end = rest[close..].find('<').map_or(rest.len(), |i| close + i);
        let params = &rest[close + 1..params_end];
        let is_next = params.split(';').any(|p| {
            let p = p.trim().trim_end_matches(',').trim();
            p.strip_prefix("rel=")
                .is_some_and(|v| v.trim_matches('"').split_whitespace().any(|r| r.eq_ignore_ascii_case("next")))
        });
        if is_next {
            return current.join(target).ok();
        }
        rest = &rest[params_end..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn link_headers() {
        let here = url("https://api.github.com/user/starred?per_page=100&page=1");
        let header = r#"<https://api.github.com/user/starred?per_page=100&page=2>; rel="next", <https://api.github.com/user/starred?per_page=100&page=9>; rel="last""#;
        assert_eq!(
            next_link(header, &here).map(String::from),
            Some("https://api.github.com/user/starred?per_page=100&page=2".into())
        );
        let last_only = r#"<https://api.github.com/user/starred?page=1>; rel="first", <https://api.github.com/user/starred?page=8>; rel="prev""#;
        assert_eq!(next_link(last_only, &here), None);
        assert_eq!(
            next_link(r#"</user/starred?page=3>; rel=next"#, &here).map(String::from),
            Some("https://api.github.com/user/starred?page=3".into())
        );
        assert_eq!(next_link("garbage", &here), None);
    }

    #[test]
    fn cursors_and_streams() {
        let g = Github::new(url("https://api.github.com"));
        assert_eq!(g.first(Stream::Starred).as_str(), "https://api.github.com/user/starred?per_page=100&page=1");
        assert_eq!(
            g.first(Stream::Notifications).as_str(),
            "https://api.github.com/notifications?all=true&per_page=50"
        );
        let (s, u) = g.position(Some("notifications https://api.github.com/notifications?page=2"));
        assert_eq!((s, u.as_str()), (Stream::Notifications, "https://api.github.com/notifications?page=2"));
        // A cursor on another origin starts over.
        let (s, u) = g.position(Some("notifications https://evil.example/notifications?page=2"));
        assert_eq!((s, u.as_str()), (Stream::Starred, "https://api.github.com/user/starred?per_page=100&page=1"));
        assert!(matches!(g.caught_up(None), CaughtUp::Jump(Some(c)) if c.starts_with("notifications ")));
        assert_eq!(
            g.caught_up(Some("notifications https://api.github.com/notifications?page=2")),
            CaughtUp::Jump(None)
        );
    }

    #[test]
    fn items() {
        let stars = br#"[{"starred_at":"2024-01-02T03:04:05Z","repo":{"id":101,"full_name":"a/b"}},{"id":7,"full_name":"plain/repo"}]"#;
        let events = parse_items(Stream::Starred, stars).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(events[0].external_id, "starred:101");
        assert_eq!(events[0].occurred_at.as_deref(), Some("2024-01-02T03:04:05.000Z"));
        assert_eq!(events[1].external_id, "starred:7");
        let notes = br#"[{"id":"555","updated_at":"2024-02-02T00:00:00Z","reason":"mention"}]"#;
        let events = parse_items(Stream::Notifications, notes).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(events[0].external_id, "notification:555");
        assert!(parse_items(Stream::Notifications, br#"{"message":"Bad credentials"}"#).is_err());
    }
}
