use jiff::SignedDuration;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration `{text}`: {reason}")]
pub struct DurationError {
    pub text: String,
    pub reason: String,
}

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
    Ok(duration)
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
}
