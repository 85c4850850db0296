//! Connector schedules: `"30s"`, `"15m"`, `"1h"`, `"1d"`, or a sum like `"1h30m"`.

use std::fmt;
use std::time::Duration;

/// The shortest schedule accepted: faster would only hammer the provider.
pub const MIN_INTERVAL: Duration = Duration::from_secs(10);
/// The schedule of a connector that names none.
pub const DEFAULT: Schedule = Schedule(Duration::from_secs(3600));

/// How often `latchkey run` syncs a connector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Schedule(Duration);

impl Schedule {
    pub fn interval(self) -> Duration {
        self.0
    }

    /// Parses `"30s"`, `"15m"`, `"1h"`, `"2d"` or sums of them (`"1h30m"`), at least
    /// [`MIN_INTERVAL`].
    pub fn parse(text: &str) -> Result<Self, String> {
        let interval = parse_duration(text)?;
        if interval < MIN_INTERVAL {
            return Err(format!("is shorter than the minimum of {}s", MIN_INTERVAL.as_secs()));
        }
        Ok(Schedule(interval))
    }
}

/// Parses `"30s"`, `"15m"`, `"1h"`, `"2d"` or sums of them (`"1h30m"`), without a minimum.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("is empty".into());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("has an unknown unit `{c}`")),
        };
        if digits.is_empty() {
            return Err(format!("has a unit `{c}` without a number before it"));
        }
        let n: u64 = digits.parse().map_err(|_| "is too large".to_owned())?;
        total = n.checked_mul(unit).and_then(|s| total.checked_add(s)).ok_or_else(|| "is too large".to_owned())?;
        digits.clear();
    }
    if !digits.is_empty() {
        return Err(format!("ends with `{digits}` without a unit"));
    }
    Ok(Duration::from_secs(total))
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        for (unit, size) in [("d", 86_400), ("h", 3600), ("m", 60)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        if secs > 0 || self.0.as_secs() == 0 {
            write!(f, "{secs}s")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(Schedule::parse("30s").map(Schedule::interval), Ok(Duration::from_secs(30)));
        assert_eq!(Schedule::parse("15m").map(Schedule::interval), Ok(Duration::from_secs(900)));
        assert_eq!(Schedule::parse("1h").map(Schedule::interval), Ok(Duration::from_secs(3600)));
        assert_eq!(Schedule::parse(" 2d ").map(Schedule::interval), Ok(Duration::from_secs(172_800)));
        assert_eq!(Schedule::parse("1h30m").map(Schedule::interval), Ok(Duration::from_secs(5400)));
        assert_eq!(Schedule::parse("1h30m").map(|s| s.to_string()), Ok("1h30m".to_owned()));
        assert_eq!(Schedule::parse("90s").map(|s| s.to_string()), Ok("1m30s".to_owned()));
    }

    #[test]
    fn refuses_nonsense() {
        for (text, why) in [
            ("", "is empty"),
            ("15", "without a unit"),
            ("15x", "unknown unit `x`"),
            ("m", "without a number"),
            ("5s", "shorter than the minimum"),
            ("0m", "shorter than the minimum"),
            ("-5m", "unknown unit `-`"),
            ("99999999999999999999d", "too large"),
            ("1 h", "unknown unit ` `"),
        ] {
            let err = Schedule::parse(text).err().unwrap_or_default();
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }
}
