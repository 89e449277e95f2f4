use jiff::{SignedDuration, Timestamp};

/// The longest duration anyone may write anywhere (about ten years). Every time a person
/// supplies is later added to a timestamp; this bound keeps that sum far inside the range of
/// a timestamp (year 9999), so no window, interval or expiry can overflow time arithmetic.
pub const MAX_DURATION: SignedDuration = SignedDuration::from_hours(24 * 3660);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason}")]
pub struct DurationError {
    pub text: String,
    pub reason: String,
}

/// What a duration looks like, as a JSON Schema `pattern` (and an HTML `pattern`: it is
/// anchored at both ends and valid in both regex dialects): numbers with units (`90s`,
/// `1h30m`, `2 days`, `1h, 30m`) or an ISO 8601 duration (`PT10M`). It only shapes forms and
/// early messages; [`parse_duration`] stays the judge of value and range.
pub const DURATION_PATTERN: &str = r"^\s*(?:[0-9]+(?:\.[0-9]+)?\s*[a-zA-Z]+(?:,?\s*[0-9]+(?:\.[0-9]+)?\s*[a-zA-Z]+)*|[pP][0-9a-zA-Z.,]+)\s*$";

/// Parses a human duration such as `90s`, `10m`, `1h30m` or `2 days` into a positive
/// duration.
pub fn parse_duration(text: &str) -> Result<SignedDuration, DurationError> {
    let fail = |reason: &str| DurationError {
        text: text.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(fail("empty (use a form like 90s, 10m or 1h)"));
    }
    let duration: SignedDuration = if let Ok(span) = trimmed.parse::<jiff::Span>() {
        span.to_duration(jiff::SpanRelativeTo::days_are_24_hours())
            .map_err(|_| fail("out of range"))?
    } else {
        trimmed
            .parse::<SignedDuration>()
            .map_err(|_| fail("use a form like 90s, 10m, 1h30m or 2d"))?
    };
    if duration.is_negative() || duration.is_zero() {
        return Err(fail("must be greater than zero"));
    }
    if duration > MAX_DURATION {
        return Err(fail(&format!(
            "must be at most {} (about ten years)",
            format_duration(MAX_DURATION)
        )));
    }
    Ok(duration)
}

/// The range a duration field accepts, inclusive at both ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DurationRange {
    pub min: SignedDuration,
    pub max: SignedDuration,
}

impl DurationRange {
    pub const fn new(min: SignedDuration, max: SignedDuration) -> DurationRange {
        DurationRange { min, max }
    }

    /// From one second to [`MAX_DURATION`].
    pub const ANY: DurationRange = DurationRange::new(SignedDuration::from_secs(1), MAX_DURATION);

    /// Parses `text` and checks it lies in the range; the error names the range.
    pub fn parse(&self, text: &str) -> Result<SignedDuration, DurationError> {
        let duration = parse_duration(text)?;
        self.check(text, duration)?;
        Ok(duration)
    }

    /// Checks an already parsed duration; `text` is what the person wrote.
    pub fn check(&self, text: &str, duration: SignedDuration) -> Result<(), DurationError> {
        if duration < self.min || duration > self.max {
            return Err(DurationError {
                text: text.to_string(),
                reason: format!(
                    "must be between {} and {}",
                    self.describe_min(),
                    self.describe_max()
                ),
            });
        }
        Ok(())
    }

    fn describe_min(&self) -> String {
        format_duration(self.min)
    }

    fn describe_max(&self) -> String {
        format_duration(self.max)
    }
}

/// A compact form that [`parse_duration`] reads back: `90s`, `15m`, `1h30m`, `30d`.
pub fn format_duration(duration: SignedDuration) -> String {
    if duration.subsec_nanos() != 0 || !duration.is_positive() {
        return format!("{duration:#}");
    }
    let mut seconds = duration.as_secs();
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            text.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    text
}

/// `time + duration`, or the latest representable time when that overflows: a deadline
/// that far out never comes, which is what an absurd duration means.
pub fn later(time: Timestamp, duration: SignedDuration) -> Timestamp {
    time.checked_add(duration)
        .unwrap_or(if duration.is_negative() {
            Timestamp::MIN
        } else {
            Timestamp::MAX
        })
}

/// `time - duration`, saturating at the ends of the timestamp range.
pub fn earlier(time: Timestamp, duration: SignedDuration) -> Timestamp {
    time.checked_sub(duration)
        .unwrap_or(if duration.is_negative() {
            Timestamp::MAX
        } else {
            Timestamp::MIN
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        assert_eq!(
            parse_duration("90s").unwrap(),
            SignedDuration::from_secs(90)
        );
        assert_eq!(
            parse_duration("10m").unwrap(),
            SignedDuration::from_mins(10)
        );
        assert_eq!(
            parse_duration("1h30m").unwrap(),
            SignedDuration::from_mins(90)
        );
        assert_eq!(
            parse_duration("2d").unwrap(),
            SignedDuration::from_hours(48)
        );
    }

    #[test]
    fn rejects_garbage_zero_and_empty() {
        assert!(parse_duration("soon")
            .unwrap_err()
            .to_string()
            .contains("soon"));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn durations_beyond_ten_years_are_refused_with_the_bound() {
        let error = parse_duration("175307616h").unwrap_err().to_string();
        assert!(error.contains("at most 3660d"), "{error}");
        assert!(parse_duration("70000000h").is_err());
        assert_eq!(parse_duration("3660d").unwrap(), MAX_DURATION);
    }

    #[test]
    fn ranges_name_both_ends() {
        let range = DurationRange::new(
            SignedDuration::from_mins(1),
            SignedDuration::from_hours(24 * 7),
        );
        assert_eq!(range.parse("5m").unwrap(), SignedDuration::from_mins(5));
        let error = range.parse("1ns").unwrap_err().to_string();
        assert!(error.contains("between 1m and 7d"), "{error}");
        assert!(range.parse("8d").is_err());
    }

    #[test]
    fn formatting_reads_back() {
        for text in ["90s", "15m", "1h30m", "2d", "3660d"] {
            let duration = parse_duration(text).unwrap();
            assert_eq!(
                parse_duration(&format_duration(duration)).unwrap(),
                duration
            );
        }
        assert_eq!(format_duration(SignedDuration::from_secs(5400)), "1h30m");
    }

    #[test]
    fn time_arithmetic_saturates_instead_of_panicking() {
        let now: Timestamp = "2026-12-06T00:00:00Z".parse().unwrap();
        let huge = SignedDuration::MAX;
        assert_eq!(later(now, huge), Timestamp::MAX);
        assert_eq!(earlier(now, huge), Timestamp::MIN);
        assert_eq!(
            later(now, SignedDuration::from_secs(60)),
            "2026-12-06T00:01:00Z".parse().unwrap()
        );
    }
}
