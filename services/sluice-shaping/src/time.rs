//! Time as a value: the engine never reads a clock.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Milliseconds in a second, minute, hour and day.
pub const SECOND: u64 = 1_000;
/// Milliseconds in a minute.
pub const MINUTE: u64 = 60 * SECOND;
/// Milliseconds in an hour.
pub const HOUR: u64 = 60 * MINUTE;
/// Milliseconds in a day.
pub const DAY: u64 = 24 * HOUR;

/// A point in time: milliseconds since the Unix epoch, supplied by the caller.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Millis(pub u64);

impl Millis {
    /// This instant moved `span` later (saturating).
    pub fn after(self, span: Span) -> Millis {
        Millis(self.0.saturating_add(span.0))
    }

    /// UTC calendar day number (days since the epoch).
    pub fn day(self) -> u32 {
        (self.0 / DAY) as u32
    }

    /// UTC hour number (hours since the epoch).
    pub fn hour(self) -> u32 {
        (self.0 / HOUR) as u32
    }

    /// Start of the UTC day after this instant's day.
    pub fn next_day_start(self) -> Millis {
        Millis((self.0 / DAY + 1) * DAY)
    }

    /// Start of the UTC hour after this instant's hour.
    pub fn next_hour_start(self) -> Millis {
        Millis((self.0 / HOUR + 1) * HOUR)
    }

    /// Time from `earlier` to `self`, zero if `earlier` is later.
    pub fn since(self, earlier: Millis) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }
}

/// A duration in milliseconds. In configuration it is written as a string with a unit
/// (`"500ms"`, `"90s"`, `"10m"`, `"6h"`, `"5d"`) or as an integer number of seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Span(pub u64);

impl Span {
    /// A span of `n` seconds.
    pub const fn secs(n: u64) -> Span {
        Span(n * SECOND)
    }
    /// A span of `n` minutes.
    pub const fn mins(n: u64) -> Span {
        Span(n * MINUTE)
    }
    /// A span of `n` hours.
    pub const fn hours(n: u64) -> Span {
        Span(n * HOUR)
    }
    /// A span of `n` days.
    pub const fn days(n: u64) -> Span {
        Span(n * DAY)
    }

    /// Parses `"<integer><unit>"` with unit `ms`, `s`, `m`, `h` or `d`.
    pub fn parse(text: &str) -> Result<Span, String> {
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .ok_or_else(|| format!("duration `{text}` has no unit (ms, s, m, h, d)"))?;
        let (digits, unit) = text.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("duration `{text}` does not start with an integer"))?;
        let scale = match unit {
            "ms" => 1,
            "s" => SECOND,
            "m" => MINUTE,
            "h" => HOUR,
            "d" => DAY,
            _ => return Err(format!("duration `{text}` has unknown unit `{unit}`")),
        };
        n.checked_mul(scale)
            .map(Span)
            .ok_or_else(|| format!("duration `{text}` is too large"))
    }
}

impl From<Span> for std::time::Duration {
    fn from(span: Span) -> Self {
        std::time::Duration::from_millis(span.0)
    }
}

impl Span {
    /// This span as a [`std::time::Duration`].
    pub const fn as_duration(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0)
    }
}

impl fmt::Display for Span {
    /// Shortest exact form: `1m`, `10m`, `1h`, `6h`, `1d`, `90s`, `250ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(DAY, "d"), (HOUR, "h"), (MINUTE, "m"), (SECOND, "s")];
        for (scale, unit) in units {
            if self.0 >= scale && self.0.is_multiple_of(scale) {
                return write!(f, "{}{unit}", self.0 / scale);
            }
        }
        write!(f, "{}ms", self.0)
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(de: D) -> Result<Span, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Secs(u64),
            Text(String),
        }
        match Raw::deserialize(de)? {
            Raw::Secs(n) => Ok(Span::secs(n)),
            Raw::Text(t) => Span::parse(&t).map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(feature = "schema")]
impl schemars::JsonSchema for Span {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Span".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "description": "A duration: an integer with a unit (`500ms`, `30s`, `10m`, `6h`, `5d`) or an integer of seconds.",
            "anyOf": [{ "type": "string" }, { "type": "integer", "minimum": 0 }]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units() {
        assert_eq!(Span::parse("250ms"), Ok(Span(250)));
        assert_eq!(Span::parse("90s"), Ok(Span::secs(90)));
        assert_eq!(Span::parse("10m"), Ok(Span::mins(10)));
        assert_eq!(Span::parse("6h"), Ok(Span::hours(6)));
        assert_eq!(Span::parse("5d"), Ok(Span::days(5)));
        assert!(Span::parse("5").is_err());
        assert!(Span::parse("5w").is_err());
        assert!(Span::parse("m").is_err());
    }

    #[test]
    fn displays_shortest_exact_unit() {
        assert_eq!(Span::mins(1).to_string(), "1m");
        assert_eq!(Span::mins(90).to_string(), "90m");
        assert_eq!(Span::hours(24).to_string(), "1d");
        assert_eq!(Span(1500).to_string(), "1500ms");
    }

    #[test]
    fn calendar_helpers() {
        let t = Millis(DAY + HOUR + 5);
        assert_eq!(t.day(), 1);
        assert_eq!(t.hour(), 25);
        assert_eq!(t.next_day_start(), Millis(2 * DAY));
        assert_eq!(t.next_hour_start(), Millis(DAY + 2 * HOUR));
    }
}
