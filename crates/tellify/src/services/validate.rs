//! Checks every service shares: names, and times as people write them. Each reports into
//! a list of [`ParamError`]s, so a request's failures come back together.

use tellify_engine::ParamError;

/// What a kind of name may hold.
pub struct NameRule {
    max_bytes: usize,
    allowed: fn(char) -> bool,
    /// The allowed characters, as the error message names them.
    described: &'static str,
}

/// Users and groups: lowercase, so `Ann` and `ann` are never two people.
pub const PERSON_NAME: NameRule = NameRule {
    max_bytes: 64,
    allowed: |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'),
    described: "a-z, 0-9 and `.`, `_`, `-`",
};

/// A person's own settings: policies and contact points, named in URL paths.
pub const SETTING_NAME: NameRule = NameRule {
    max_bytes: 64,
    allowed: |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
    described: "letters, digits and `.`, `_`, `-`",
};

/// Event types: `:` too, for namespaced types such as `k8s:pod.crash`.
pub const EVENT_TYPE_NAME: NameRule = NameRule {
    max_bytes: 128,
    allowed: |c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':'),
    described: "letters, digits and `.`, `_`, `-`, `:`",
};

/// The one name check: not empty, at most the rule's bytes, only its characters; each
/// failure reported at `path`. Returns whether the name passed.
pub fn check_name(name: &str, path: &str, rule: &NameRule, errors: &mut Vec<ParamError>) -> bool {
    if name.is_empty() {
        errors.push(ParamError::new(path, "must not be empty"));
        return false;
    }
    let before = errors.len();
    if name.len() > rule.max_bytes {
        errors.push(ParamError::new(
            path,
            format!(
                "is {} bytes, more than the limit of {}",
                name.len(),
                rule.max_bytes
            ),
        ));
    }
    if !name.chars().all(rule.allowed) {
        errors.push(ParamError::new(
            path,
            format!("`{name}` may hold only {}", rule.described),
        ));
    }
    errors.len() == before
}

/// How far ahead a person may set a time (an ack's expiry, a shelve, a silence's end):
/// a year and a day. Longer than that is "forever", which clearing or unshelving says
/// better, and it keeps every later addition to such a time far from overflow.
pub const MAX_HORIZON: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 366);

/// Parses a time: RFC 3339, or a duration counted back from `now` (`10m` ago) when
/// `ahead` is false, forward (`in 1h`) when it is true. Durations are bounded by
/// [`tellify_model::MAX_DURATION`] and the arithmetic saturates, so no input can panic.
pub fn parse_when(
    name: &str,
    text: &str,
    now: jiff::Timestamp,
    ahead: bool,
) -> Result<jiff::Timestamp, String> {
    if let Ok(time) = text.parse::<jiff::Timestamp>() {
        return Ok(time);
    }
    match tellify_model::parse_duration(text) {
        Ok(duration) if ahead => Ok(tellify_model::later(now, duration)),
        Ok(duration) => Ok(tellify_model::earlier(now, duration)),
        Err(error) if text.trim().chars().next().is_some_and(|c| c.is_ascii_digit()) && !text.contains('-') => {
            Err(format!("`{name}`: {error}"))
        }
        Err(_) => Err(format!(
            "`{name}`: `{text}` is neither an RFC 3339 time (2026-11-23T18:00:00Z) nor a duration (10m, 2h)"
        )),
    }
}

/// A time ahead of `now`: RFC 3339, or a duration from now; at most [`MAX_HORIZON`] ahead.
pub fn parse_future(
    name: &str,
    text: &str,
    now: jiff::Timestamp,
) -> Result<jiff::Timestamp, String> {
    let time = parse_when(name, text, now, true)?;
    check_horizon(name, time, now)?;
    Ok(time)
}

/// Refuses a time further ahead than [`MAX_HORIZON`], naming the field and the limit.
pub fn check_horizon(
    name: &str,
    time: jiff::Timestamp,
    now: jiff::Timestamp,
) -> Result<(), String> {
    if time > tellify_model::later(now, MAX_HORIZON) {
        return Err(format!(
            "`{name}`: must be at most {} from now (got {time})",
            tellify_model::format_duration(MAX_HORIZON)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failures(name: &str, rule: &NameRule) -> Vec<String> {
        let mut errors = Vec::new();
        check_name(name, "name", rule, &mut errors);
        errors.into_iter().map(|error| error.message).collect()
    }

    #[test]
    fn one_check_serves_every_kind_of_name() {
        assert!(failures("ann.b_c-1", &PERSON_NAME).is_empty());
        assert_eq!(failures("Ann", &PERSON_NAME).len(), 1);
        assert!(failures("Pager-1", &SETTING_NAME).is_empty());
        assert_eq!(failures("k8s:pod", &SETTING_NAME).len(), 1);
        assert!(failures("k8s:pod.crash", &EVENT_TYPE_NAME).is_empty());
        assert_eq!(failures("", &EVENT_TYPE_NAME), vec!["must not be empty"]);
        let long = "x y".repeat(50);
        assert_eq!(
            failures(&long, &SETTING_NAME).len(),
            2,
            "too long and bad characters are both reported"
        );
    }
}
