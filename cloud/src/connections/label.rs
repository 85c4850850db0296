//! A connection's label: the short name that tells a member's accounts on one connector
//! apart (`work`, `octocat`), unique per member and connector. This module owns what a
//! label may be, the default one a new connection gets, and how a request's `connection`
//! (a label or an id) picks one of the caller's connections. It never reads or writes the
//! database: callers hand it the rows they read.

use crate::error::{Error, Result};

/// The longest label, in characters.
pub const MAX_LEN: usize = 64;

/// A label as a member typed it, made canonical (trimmed), or why it cannot be one.
pub fn validate(raw: &str) -> Result<String> {
    let label = raw.trim();
    if label.is_empty() {
        return Err(Error::bad_request("label: must not be empty"));
    }
    if label.chars().count() > MAX_LEN {
        return Err(Error::bad_request(format!("label: at most {MAX_LEN} characters")));
    }
    if label.chars().any(char::is_control) {
        return Err(Error::bad_request("label: must not contain control characters"));
    }
    Ok(label.to_owned())
}

/// The label a new connection gets: the provider account's name (or id), made valid, and
/// made unique among `taken` with a suffix (`octocat`, `octocat-2`, …).
pub fn default_for(account_name: Option<&str>, account_id: &str, taken: &[String]) -> String {
    let base = [account_name.unwrap_or_default(), account_id]
        .into_iter()
        .map(|s| s.chars().filter(|c| !c.is_control()).collect::<String>().trim().to_owned())
        .find(|s| !s.is_empty())
        .unwrap_or_else(|| "account".to_owned());
    unique(&base, taken)
}

/// `base` (cut to fit) if no connection uses it, else `base-2`, `base-3`, …
pub fn unique(base: &str, taken: &[String]) -> String {
    let is_taken = |l: &str| taken.iter().any(|t| t == l);
    let first = cut(base, MAX_LEN);
    if !is_taken(&first) {
        return first;
    }
    (2..)
        .map(|n| {
            let suffix = format!("-{n}");
            format!("{}{suffix}", cut(base, MAX_LEN - suffix.len()))
        })
        .find(|l| !is_taken(l))
        .unwrap_or(first)
}

fn cut(s: &str, max_chars: usize) -> String {
    s.chars().take(max_chars).collect::<String>().trim_end().to_owned()
}

/// What [`pick`] needs to know of a connection.
pub trait Named {
    fn id(&self) -> &str;
    fn label(&self) -> &str;
}

/// The one of the caller's connections on a connector that a request means: the one
/// `name` names (by id first, then by label), or the only one when none is named.
/// Several and none named: 409 `ambiguous_connection` with their labels, never a guess.
/// None, or a name that matches none: `not_found`.
pub fn pick<T: Named>(mut mine: Vec<T>, name: Option<&str>, not_found: impl Fn() -> Error) -> Result<T> {
    match name {
        Some(name) => {
            let at = mine
                .iter()
                .position(|c| c.id() == name)
                .or_else(|| mine.iter().position(|c| c.label() == name))
                .ok_or_else(&not_found)?;
            Ok(mine.swap_remove(at))
        }
        None if mine.len() > 1 => {
            let mut labels: Vec<String> = mine.iter().map(|c| c.label().to_owned()).collect();
            labels.sort();
            Err(Error::ambiguous_connection(labels))
        }
        None => mine.pop().ok_or_else(not_found),
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;

    struct C(&'static str, &'static str);
    impl Named for C {
        fn id(&self) -> &str {
            self.0
        }
        fn label(&self) -> &str {
            self.1
        }
    }

    fn nf() -> Error {
        Error::not_found("none")
    }

    #[test]
    fn labels_are_trimmed_bounded_and_printable() {
        assert_eq!(validate("  work ").ok().as_deref(), Some("work"));
        assert!(validate("   ").is_err());
        assert!(validate("a\u{7}b").is_err());
        assert!(validate(&"x".repeat(65)).is_err());
        assert_eq!(validate(&"é".repeat(64)).ok().map(|l| l.chars().count()), Some(64));
    }

    #[test]
    fn default_labels_take_the_account_name_and_a_suffix_when_taken() {
        let taken = vec!["octocat".to_owned(), "octocat-2".to_owned()];
        assert_eq!(default_for(Some("octocat"), "1", &[]), "octocat");
        assert_eq!(default_for(Some("octocat"), "1", &taken), "octocat-3");
        assert_eq!(default_for(Some(" "), "42", &[]), "42");
        assert_eq!(default_for(None, "", &[]), "account");
        let long = "n".repeat(70);
        let first = default_for(Some(&long), "1", &[]);
        assert_eq!(first.len(), 64);
        let second = default_for(Some(&long), "1", &[first]);
        assert!(second.ends_with("-2") && second.len() == 64, "{second}");
    }

    #[test]
    fn pick_by_id_then_label_one_unnamed_and_never_a_guess() {
        let two = || vec![C("id1", "work"), C("id2", "home")];
        assert_eq!(pick(two(), Some("home"), nf).map(|c| c.0).ok(), Some("id2"));
        assert_eq!(pick(two(), Some("id1"), nf).map(|c| c.0).ok(), Some("id1"));
        assert!(matches!(
            pick(two(), Some("nope"), nf),
            Err(Error::Client { code: latchkey_shared::ErrorCode::NotFound, .. })
        ));
        match pick(two(), None, nf) {
            Err(Error::Client { connections: Some(labels), .. }) => assert_eq!(labels, ["home", "work"]),
            _ => panic!("several and none named is ambiguous"),
        }
        assert_eq!(pick(vec![C("id1", "work")], None, nf).map(|c| c.0).ok(), Some("id1"));
        assert!(pick(Vec::<C>::new(), None, nf).is_err());
        // An id beats a label that happens to equal it.
        let tricky = vec![C("id1", "id2"), C("id2", "x")];
        assert_eq!(pick(tricky, Some("id2"), nf).map(|c| c.0).ok(), Some("id2"));
    }
}
