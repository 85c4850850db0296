//! The data API's items: a deterministic listening history per user, generated on the fly
//! from the item's number, so any page of any size costs only its own items.
//!
//! Item number `k` runs from 0 (the oldest play) to `count - 1` (the newest); pages go
//! newest first. A cursor names the number of the next item to return, so adding items
//! (a larger [`super::Sandbox::set_items`]) never shifts a walk already under way. Plays are
//! at least seven minutes apart and never overlap; repeated plays of one track have the
//! same title, artist, album and duration.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// 2023-01-01T00:00:00Z: when item 0 was played.
const FIRST_PLAY: i64 = 1_672_531_200;
/// Average distance between two plays.
const SPACING_SECS: i64 = 600;
/// Random extra delay of a play, below `SPACING_SECS - longest track`.
const JITTER_SECS: u64 = 180;

const ADJECTIVES: &[&str] = &[
    "Velvet",
    "Neon",
    "Silent",
    "Golden",
    "Hollow",
    "Electric",
    "Paper",
    "Midnight",
    "Crimson",
    "Wild",
    "Frozen",
    "Distant",
    "Broken",
    "Lucky",
    "Quiet",
    "Burning",
    "Silver",
    "Lonely",
    "Sunday",
    "Northern",
    "Restless",
    "Painted",
    "Tender",
    "Glass",
    "Honey",
    "Wandering",
    "Faded",
    "Bright",
];
const NOUNS: &[&str] = &[
    "Harbor",
    "Skyline",
    "River",
    "Echoes",
    "Lanterns",
    "Avenue",
    "Horizon",
    "Garden",
    "Static",
    "Satellites",
    "Summer",
    "Mirrors",
    "Highway",
    "Tides",
    "Embers",
    "Parade",
    "Letters",
    "Shadows",
    "Orchard",
    "Signals",
    "Weather",
    "Canyon",
    "Comets",
    "Window",
    "Coastline",
    "Radio",
    "Heartbeat",
    "Lighthouse",
];
const VERBS: &[&str] = &[
    "Chasing",
    "Holding",
    "Leaving",
    "Finding",
    "Counting",
    "Dancing with",
    "Waiting for",
    "Running to",
    "Dreaming of",
    "Calling",
    "Following",
    "Remembering",
];
const FIRST_NAMES: &[&str] =
    &["Mira", "Jonah", "Ada", "Theo", "Luna", "Felix", "Iris", "Oscar", "Nadia", "Elio", "Rosa", "Milo", "June", "Kai"];
const LAST_NAMES: &[&str] = &[
    "Sol",
    "Hart",
    "Vega",
    "Lindqvist",
    "Okafor",
    "Moreau",
    "Reyes",
    "Kimura",
    "Novak",
    "Bright",
    "Castell",
    "Ward",
    "Quinn",
    "Adeyemi",
];

/// One play in the listening history.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(super) struct Item {
    pub(super) id: String,
    pub(super) played_at: String,
    pub(super) track: String,
    pub(super) artist: String,
    pub(super) album: String,
    pub(super) duration_ms: u64,
}

/// The per-user seed: derived from the user's subject identifier.
pub(super) fn user_seed(subject: &str) -> u64 {
    let digest = super::sha256(subject.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(digest.get(..8).unwrap_or(&[0; 8]));
    u64::from_le_bytes(first)
}

fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn mix(a: u64, b: u64) -> u64 {
    splitmix64(a ^ splitmix64(b))
}

fn pick(list: &[&'static str], h: u64) -> &'static str {
    let len = list.len().max(1) as u64;
    usize::try_from(h % len).ok().and_then(|i| list.get(i)).copied().unwrap_or("Untitled")
}

fn artist_name(h: u64) -> String {
    match h % 4 {
        0 => format!("The {} {}", pick(ADJECTIVES, h >> 8), pick(NOUNS, h >> 16)),
        1 => format!("{} {}", pick(NOUNS, h >> 8), pick(NOUNS, h >> 24)),
        _ => format!("{} {}", pick(FIRST_NAMES, h >> 8), pick(LAST_NAMES, h >> 16)),
    }
}

fn album_title(h: u64) -> String {
    match h % 5 {
        0 => format!("Songs from the {}", pick(NOUNS, h >> 8)),
        1 => pick(NOUNS, h >> 8).to_owned(),
        2 => format!("Live at the {}", pick(NOUNS, h >> 8)),
        _ => format!("{} {}", pick(ADJECTIVES, h >> 8), pick(NOUNS, h >> 16)),
    }
}

fn track_title(h: u64) -> String {
    match h % 5 {
        0 => format!("{} the {}", pick(VERBS, h >> 8), pick(NOUNS, h >> 16)),
        1 => format!("{} in the {}", pick(NOUNS, h >> 8), pick(NOUNS, h >> 16)),
        2 => pick(ADJECTIVES, h >> 8).to_owned(),
        _ => format!("{} {}", pick(ADJECTIVES, h >> 8), pick(NOUNS, h >> 16)),
    }
}

fn rfc3339(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// Item number `k` of the user with `seed`.
pub(super) fn item(seed: u64, k: usize) -> Item {
    let k64 = k as u64;
    let h = mix(seed, k64);
    // Forty artists per user, the first ones played more often.
    let slot = (h % 40).min((h >> 8) % 40);
    let artist = mix(seed ^ 0x0A27_1575, slot);
    let album = mix(artist, (h >> 16) % 4);
    let track = mix(album, (h >> 24) % 11);
    let played_at = FIRST_PLAY
        .saturating_add((k as i64).saturating_mul(SPACING_SECS))
        .saturating_add(i64::try_from((h >> 32) % JITTER_SECS).unwrap_or(0));
    Item {
        id: format!("trk_{k:06}"),
        played_at: rfc3339(played_at),
        track: track_title(track),
        artist: artist_name(artist),
        album: album_title(album),
        // 2:00 to 6:59.
        duration_ms: 120_000 + (track >> 8) % 300_000,
    }
}

/// A page of at most `limit` items, newest first, starting at item number `start` (or at
/// the newest), and the number where the next page starts (`None` after the oldest).
pub(super) fn page(seed: u64, count: usize, start: Option<usize>, limit: usize) -> (Vec<Item>, Option<usize>) {
    let Some(newest) = count.checked_sub(1) else {
        return (Vec::new(), None);
    };
    let top = start.map_or(newest, |s| s.min(newest));
    let n = limit.min(top + 1);
    let items = (0..n).map(|i| item(seed, top - i)).collect();
    let oldest_returned = top + 1 - n;
    (items, oldest_returned.checked_sub(1))
}

const CURSOR_PREFIX: &str = "sbx1:";

pub(super) fn encode_cursor(next: usize) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{next}"))
}

pub(super) fn decode_cursor(cursor: &str) -> Option<usize> {
    let raw = URL_SAFE_NO_PAD.decode(cursor.as_bytes()).ok()?;
    let text = std::str::from_utf8(&raw).ok()?;
    text.strip_prefix(CURSOR_PREFIX)?.parse().ok()
}
