//! How the dashboard shows values: times in the reader's zone, durations in words,
//! severities by icon and word (never colour alone), and URL encoding for links.

use jiff::tz::TimeZone;
use jiff::{Timestamp, Zoned};
use tellify_model::Severity;

/// Times as one reader sees them: in their zone, named by its abbreviation.
#[derive(Clone)]
pub struct Clock {
    zone: TimeZone,
    now: Timestamp,
}

impl Clock {
    /// The reader's zone (an IANA name; UTC when it does not resolve) as of `now`.
    pub fn new(zone_name: &str, now: Timestamp) -> Clock {
        Clock {
            zone: TimeZone::get(zone_name).unwrap_or(TimeZone::UTC),
            now,
        }
    }

    pub fn now(&self) -> Timestamp {
        self.now
    }

    pub fn zone(&self) -> &TimeZone {
        &self.zone
    }

    pub fn local(&self, time: Timestamp) -> Zoned {
        time.to_zoned(self.zone.clone())
    }

    /// `2026-12-06 14:03 CET`; today's times without the date.
    pub fn at(&self, time: Timestamp) -> String {
        let local = self.local(time);
        let today = self.local(self.now).date();
        if local.date() == today {
            local.strftime("%H:%M %Z").to_string()
        } else {
            local.strftime("%Y-%m-%d %H:%M %Z").to_string()
        }
    }

    /// Always with the date and seconds: `2026-12-06 14:03:09 CET`.
    pub fn full(&self, time: Timestamp) -> String {
        self.local(time)
            .strftime("%Y-%m-%d %H:%M:%S %Z")
            .to_string()
    }

    /// The machine-readable form for `<time datetime>`.
    pub fn iso(&self, time: Timestamp) -> String {
        time.to_string()
    }

    /// `5 min ago`, `in 2 h`.
    pub fn relative(&self, time: Timestamp) -> String {
        let seconds = time.as_second() - self.now.as_second();
        if seconds.abs() < 5 {
            return "just now".to_string();
        }
        let words = span_words(seconds.unsigned_abs());
        if seconds >= 0 {
            format!("in {words}")
        } else {
            format!("{words} ago")
        }
    }
}

/// `45 s`, `12 min`, `3 h 20 min`, `2 d 4 h`.
pub fn span_words(seconds: u64) -> String {
    match seconds {
        0..=59 => format!("{seconds} s"),
        60..=3599 => format!("{} min", seconds / 60),
        3600..=86_399 => {
            let minutes = (seconds % 3600) / 60;
            if minutes == 0 {
                format!("{} h", seconds / 3600)
            } else {
                format!("{} h {} min", seconds / 3600, minutes)
            }
        }
        _ => {
            let hours = (seconds % 86_400) / 3600;
            if hours == 0 {
                format!("{} d", seconds / 86_400)
            } else {
                format!("{} d {} h", seconds / 86_400, hours)
            }
        }
    }
}

/// The icon shown before a severity's word (the word is always shown too).
pub fn severity_icon(severity: Severity) -> &'static str {
    match severity {
        Severity::Critical => "✖",
        Severity::Warning => "⚠",
        Severity::Info => "ℹ",
    }
}

/// Percent-encodes everything but unreserved characters, for query values and paths.
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(byte as char)
            }
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// A local path to come back to after signing in; anything else (another site,
/// `//host`, a scheme) goes home.
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.starts_with("/\\")
                && !path.chars().any(|c| c.is_control()) =>
        {
            path.to_string()
        }
        _ => "/".to_string(),
    }
}

/// `text` with its first letter in upper case, for a service message shown as a sentence.
pub fn capitalise(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_in_the_readers_zone_with_its_name() {
        let now: Timestamp = "2026-12-06T12:00:00Z".parse().unwrap();
        let clock = Clock::new("Europe/Berlin", now);
        assert_eq!(
            clock.at("2026-12-06T11:30:00Z".parse().unwrap()),
            "12:30 CET"
        );
        assert_eq!(
            clock.at("2026-12-01T11:30:00Z".parse().unwrap()),
            "2026-12-01 12:30 CET"
        );
        assert_eq!(
            clock.relative("2026-12-06T11:55:00Z".parse().unwrap()),
            "5 min ago"
        );
        assert_eq!(
            clock.relative("2026-12-06T14:30:00Z".parse().unwrap()),
            "in 2 h 30 min"
        );
        let unknown = Clock::new("Mars/Olympus", now);
        assert_eq!(unknown.at(now), "12:00 UTC");
        assert_eq!(clock.relative(now), "just now");
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/alerts/01H?x=1")), "/alerts/01H?x=1");
        for hostile in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil",
            "javascript:x",
            "",
        ] {
            assert_eq!(safe_next(Some(hostile)), "/", "{hostile}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn url_encoding_leaves_only_unreserved_characters() {
        assert_eq!(url_encode("/a b?c=d&e"), "%2Fa%20b%3Fc%3Dd%26e");
    }
}
