//! Ganging: one message for several alerts that are due to the same contact point at the
//! same time, so a burst of alerts arrives as one email (or one SMS) instead of twenty.
//!
//! Alerts are grouped by subscription and each group is rendered by its handler kind, which
//! knows best how to describe its own alerts; this module adds the header, the subject and
//! the link, and keeps the channel limits (a one-line subject, a 160-character SMS).
//!
//! Every time in a message is the reader's: shown in their IANA zone and named by the
//! zone's abbreviation from the time zone database (`2026-07-01 14:05 CEST`), so a person
//! in Berlin reads `23:30 CET` in winter and `23:30 CEST` in summer. The [`Reader`] carries
//! the zone; the engine never looks a zone up itself.

use std::fmt;
use std::str::FromStr;

use jiff::tz::TimeZone;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::alerts::{Alert, AlertState};
use crate::handlers::{escape_html, Registry};

/// The longest subject we produce; mail clients cut long subjects anyway, and a bound
/// keeps a huge alert message from bloating every header.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// One SMS segment.
pub const MAX_SMS_CHARS: usize = 160;

/// The sentence every test message carries, so a recipient can tell it from a real alert.
pub const TEST_NOTICE: &str = "This is a test notification from tellify";

/// One alert in a message, with the change that made it worth telling.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RenderItem {
    pub alert: Alert,
    pub transition: Transition,
    /// Signed links the reader may act on this alert with, minted by the caller (the
    /// renderer never sees a key); none for a resolve or when links are off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<ActionLinks>,
}

/// The URLs of an alert's action links, each acting once for the one reader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionLinks {
    /// Acknowledges the alert.
    pub ack: String,
    /// Shelves it (one hour unless the confirming page is told otherwise).
    pub shelve: String,
}

/// The words of the action links, the same in every channel.
pub const ACK_LABEL: &str = "Acknowledge";
pub const SHELVE_LABEL: &str = "Shelve 1 h";

/// Why an alert is in a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transition {
    Fired,
    /// The severity changed while the alert kept firing.
    Escalated,
    Resolved,
    /// Still firing; the rule asked to be reminded.
    Repeat,
    /// A test message a user asked for.
    Test,
}

/// A message in every form a channel may want.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    /// One line, at most [`MAX_SUBJECT_CHARS`] characters.
    pub subject: String,
    pub text: String,
    /// A complete small HTML document with every user-supplied value escaped.
    pub html: String,
    /// The text for chat (Slack, Mattermost): as `text`, with action links in their
    /// `<url|label>` form.
    pub chat: String,
    /// One line, at most [`MAX_SMS_CHARS`] characters.
    pub sms: String,
}

/// Who reads a message, and when it goes out: the zone every time is shown in, and the
/// moment that decides whether a short time needs its date.
#[derive(Clone, Debug, PartialEq)]
pub struct Reader {
    pub zone: TimeZone,
    pub now: Timestamp,
}

impl Reader {
    pub fn new(zone: TimeZone, now: Timestamp) -> Reader {
        Reader { zone, now }
    }

    /// A reader in UTC, for messages to no one in particular.
    pub fn utc(now: Timestamp) -> Reader {
        Reader::new(TimeZone::UTC, now)
    }

    /// `2026-07-01 14:05 CEST`: the date, the time to the minute and the zone's name.
    pub fn date_time(&self, time: Timestamp) -> String {
        time.to_zoned(self.zone.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string()
    }

    /// `23:30 CET` when `time` falls on the reader's today, else [`Reader::date_time`]:
    /// short enough for an SMS and never ambiguous.
    pub fn short_time(&self, time: Timestamp) -> String {
        let local = time.to_zoned(self.zone.clone());
        let today = self.now.to_zoned(self.zone.clone()).date();
        if local.date() == today {
            local.strftime("%H:%M %Z").to_string()
        } else {
            self.date_time(time)
        }
    }
}

/// When an alert fired and, once resolved, when it resolved, in the reader's time:
/// `firing since 2026-07-01 14:05 CEST` or
/// `resolved 2026-07-01 15:10 CEST, fired 2026-07-01 14:05 CEST`.
pub fn alert_times(alert: &Alert, reader: &Reader) -> String {
    match alert.state {
        AlertState::Firing => format!("firing since {}", reader.date_time(alert.first_seen)),
        AlertState::Resolved => format!(
            "resolved {}, fired {}",
            reader.date_time(alert.resolved_at.unwrap_or(alert.last_seen)),
            reader.date_time(alert.first_seen)
        ),
    }
}

impl Transition {
    pub const ALL: [Transition; 5] = [
        Transition::Fired,
        Transition::Escalated,
        Transition::Resolved,
        Transition::Repeat,
        Transition::Test,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Transition::Fired => "fired",
            Transition::Escalated => "escalated",
            Transition::Resolved => "resolved",
            Transition::Repeat => "repeat",
            Transition::Test => "test",
        }
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Transition {
    type Err = String;

    fn from_str(text: &str) -> Result<Transition, String> {
        Transition::ALL
            .into_iter()
            .find(|transition| transition.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                format!(
                    "unknown transition `{text}` (expected fired, escalated, resolved, repeat or test)"
                )
            })
    }
}

/// Which parts of a [`Rendered`] message to write beyond the subject and the text: a
/// channel carries one or two of them, and the HTML document alone costs as much as the
/// text. Parts left out stay empty.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    pub html: bool,
    pub chat: bool,
    pub sms: bool,
}

impl Parts {
    /// Every part.
    pub const ALL: Parts = Parts {
        html: true,
        chat: true,
        sms: true,
    };
    /// The subject and the text only.
    pub const TEXT: Parts = Parts {
        html: false,
        chat: false,
        sms: false,
    };
}

/// Renders one message for `items`, grouped by subscription in the order they first
/// appear, with a link to tellify when `link` is given and every time in `reader`'s zone.
/// No items means a test message.
pub fn render_message(
    registry: &Registry,
    items: &[RenderItem],
    link: Option<&str>,
    reader: &Reader,
) -> Rendered {
    render_parts(registry, items, link, reader, Parts::ALL)
}

/// [`render_message`] with only the subject, the text and the `parts` asked for; the
/// parts it writes are the same as [`render_message`]'s.
pub fn render_parts(
    registry: &Registry,
    items: &[RenderItem],
    link: Option<&str>,
    reader: &Reader,
    parts: Parts,
) -> Rendered {
    if items.is_empty() {
        return render_test(link);
    }
    let is_test = items.iter().any(|item| item.transition == Transition::Test);
    let counts = Counts::of(items.iter());
    let groups = group_by_subscription(items);

    let subject = subject_line(items, &counts, is_test);
    let mut text = String::new();
    let mut chat = String::new();
    let mut html = String::new();
    if parts.html {
        html.push_str(HTML_START);
        html.push_str(&format!("<title>{}</title>", escape_html(&subject)));
        html.push_str("</head><body>\n");
    }
    if is_test {
        text.push_str(TEST_NOTICE);
        text.push_str(".\n\n");
        if parts.html {
            html.push_str(&format!("<p><em>{}.</em></p>\n", escape_html(TEST_NOTICE)));
        }
    }
    text.push_str(&counts.header());
    text.push('\n');
    if parts.chat {
        chat.push_str(&text);
    }
    if parts.html {
        html.push_str(&format!(
            "<p><strong>{}</strong></p>\n",
            escape_html(&counts.header())
        ));
    }

    for group in &groups {
        let alerts: Vec<Alert> = group.items.iter().map(|item| item.alert.clone()).collect();
        let group_counts = Counts::of(group.items.iter().copied());
        let heading = format!("{} ({})", group.title, group_counts.breakdown());
        let mut body = format!("\n{heading}\n");
        if parts.html {
            html.push_str(&format!("<h3>{}</h3>\n", escape_html(&heading)));
        }
        match registry.get(group.kind) {
            Some(kind) => {
                body.push_str(&kind.render_text(&alerts, reader));
                if parts.html {
                    html.push_str(&kind.render_html(&alerts, reader));
                }
            }
            None => {
                body.push_str(&generic_text(&alerts, reader));
                if parts.html {
                    html.push_str(&generic_html(&alerts, reader));
                }
            }
        }
        if !body.ends_with('\n') {
            body.push('\n');
        }
        text.push_str(&body);
        if parts.chat {
            chat.push_str(&body);
        }
        for item in &group.items {
            if let Some(actions) = &item.actions {
                let label = action_label(&item.alert);
                text.push_str(&action_text(&label, actions));
                if parts.chat {
                    chat.push_str(&action_chat(&label, actions));
                }
                if parts.html {
                    html.push_str(&action_html(&label, actions));
                }
            }
        }
    }

    if let Some(link) = link {
        let line = format!("\nOpen tellify: {link}\n");
        text.push_str(&line);
        if parts.chat {
            chat.push_str(&line);
        }
        if parts.html {
            html.push_str(&link_paragraph(link));
        }
    }
    if parts.html {
        html.push_str(HTML_END);
    }

    Rendered {
        subject,
        text,
        html,
        chat,
        sms: if parts.sms {
            sms_line(registry, items, reader)
        } else {
            String::new()
        },
    }
}

/// What an action line names: the alert's group key, which tells apart the alerts of one
/// subscription, or its title when it has none.
fn action_label(alert: &Alert) -> String {
    let label = if alert.group_key.is_empty() {
        &alert.title
    } else {
        &alert.group_key
    };
    one_line(label)
}

/// `Acknowledge fs=/home: URL` and `Shelve 1 h fs=/home: URL`, a line each.
fn action_text(label: &str, actions: &ActionLinks) -> String {
    format!(
        "{ACK_LABEL} {label}: {}\n{SHELVE_LABEL} {label}: {}\n",
        actions.ack, actions.shelve
    )
}

/// `fs=/home: <URL|Acknowledge> · <URL|Shelve 1 h>` (Slack's link form, which Mattermost
/// reads too). `&`, `<` and `>` are escaped as Slack asks, so a label cannot open a link.
fn action_chat(label: &str, actions: &ActionLinks) -> String {
    format!(
        "{}: <{}|{ACK_LABEL}> · <{}|{SHELVE_LABEL}>\n",
        escape_chat(label),
        escape_chat(&actions.ack),
        escape_chat(&actions.shelve)
    )
}

fn action_html(label: &str, actions: &ActionLinks) -> String {
    format!(
        "<p>{}: <a href=\"{}\">{ACK_LABEL}</a> · <a href=\"{}\">{SHELVE_LABEL}</a></p>\n",
        escape_html(label),
        escape_html(&actions.ack),
        escape_html(&actions.shelve)
    )
}

fn escape_chat(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The message for "send me a test": it proves a contact point works without any alert.
pub fn render_test(link: Option<&str>) -> Rendered {
    let subject = "[tellify] Test notification".to_string();
    let explanation = "If you can read this, messages to this contact point arrive.";
    let mut text = format!("{TEST_NOTICE}.\n\n{explanation}\n");
    let mut html = String::from(HTML_START);
    html.push_str(&format!("<title>{}</title>", escape_html(&subject)));
    html.push_str("</head><body>\n");
    html.push_str(&format!(
        "<p><strong>{}.</strong></p>\n<p>{}</p>\n",
        escape_html(TEST_NOTICE),
        escape_html(explanation)
    ));
    if let Some(link) = link {
        text.push_str(&format!("\nOpen tellify: {link}\n"));
        html.push_str(&link_paragraph(link));
    }
    html.push_str(HTML_END);
    Rendered {
        subject,
        chat: text.clone(),
        text,
        html,
        sms: truncate_chars(&one_line(&format!("tellify: {TEST_NOTICE}")), MAX_SMS_CHARS),
    }
}

const HTML_START: &str = "<!doctype html>\n<html><head><meta charset=\"utf-8\">";
const HTML_END: &str = "</body></html>\n";

/// The alerts of one subscription (and kind) within a message.
struct Group<'a> {
    subscription_id: &'a str,
    kind: &'a str,
    title: &'a str,
    items: Vec<&'a RenderItem>,
}

/// Groups by subscription in first-seen order. The kind is part of the key because a
/// subscription whose kind was edited may still have alerts of the old kind, and each kind
/// renders only its own.
fn group_by_subscription(items: &[RenderItem]) -> Vec<Group<'_>> {
    let mut groups: Vec<Group<'_>> = Vec::new();
    for item in items {
        let alert = &item.alert;
        let existing = groups.iter_mut().find(|group| {
            group.subscription_id == alert.subscription_id && group.kind == alert.kind
        });
        match existing {
            Some(group) => group.items.push(item),
            None => groups.push(Group {
                subscription_id: &alert.subscription_id,
                kind: &alert.kind,
                title: &alert.title,
                items: vec![item],
            }),
        }
    }
    groups
}

/// How many items are firing and how many resolved.
struct Counts {
    firing: usize,
    resolved: usize,
}

impl Counts {
    fn of<'a>(items: impl Iterator<Item = &'a RenderItem>) -> Counts {
        let mut counts = Counts {
            firing: 0,
            resolved: 0,
        };
        for item in items {
            if is_resolved(item) {
                counts.resolved += 1;
            } else {
                counts.firing += 1;
            }
        }
        counts
    }

    fn total(&self) -> usize {
        self.firing + self.resolved
    }

    /// `3 alerts: 2 firing, 1 resolved`.
    fn header(&self) -> String {
        let total = self.total();
        let noun = if total == 1 { "alert" } else { "alerts" };
        format!("{total} {noun}: {}", self.breakdown())
    }

    /// `2 firing, 1 resolved`, leaving out a zero.
    fn breakdown(&self) -> String {
        let mut parts = Vec::new();
        if self.firing > 0 {
            parts.push(format!("{} firing", self.firing));
        }
        if self.resolved > 0 {
            parts.push(format!("{} resolved", self.resolved));
        }
        parts.join(", ")
    }
}

fn is_resolved(item: &RenderItem) -> bool {
    item.transition == Transition::Resolved || item.alert.state == AlertState::Resolved
}

fn subject_line(items: &[RenderItem], counts: &Counts, is_test: bool) -> String {
    let test = if is_test { "TEST " } else { "" };
    let subject = match items {
        [item] => format!("[tellify] {}", item_summary(item)),
        _ => format!("[tellify] {test}{}", counts.header()),
    };
    truncate_chars(&one_line(&subject), MAX_SUBJECT_CHARS)
}

/// `CRITICAL disks [fs=/sarc/cad]: usage 97%`, with the transition said up front.
fn item_summary(item: &RenderItem) -> String {
    let alert = &item.alert;
    let severity = alert.severity.as_str().to_uppercase();
    let label = if is_resolved(item) {
        "RESOLVED".to_string()
    } else {
        match item.transition {
            Transition::Escalated => match alert.previous_severity {
                Some(previous) if previous != alert.severity => {
                    format!("{severity} (was {})", previous.as_str().to_uppercase())
                }
                _ => severity,
            },
            Transition::Repeat => format!("{severity} (still firing)"),
            Transition::Test => format!("TEST {severity}"),
            Transition::Fired | Transition::Resolved => severity,
        }
    };
    let mut summary = format!("{label} {}{}", alert.title, group_suffix(&alert.group_key));
    if !alert.message.is_empty() {
        summary.push_str(": ");
        summary.push_str(&alert.message);
    }
    summary
}

fn sms_line(registry: &Registry, items: &[RenderItem], reader: &Reader) -> String {
    let Some(first) = items.first() else {
        return String::new();
    };
    let first_line = item_sms(registry, first, reader);
    if items.len() == 1 {
        return truncate_chars(&first_line, MAX_SMS_CHARS);
    }
    let prefix = format!("tellify: {} alerts: ", items.len());
    let suffix = format!("; +{} more", items.len() - 1);
    // The count and the "more" are what tell the reader to look further, so the first
    // alert's text gives way to keep them.
    let room = MAX_SMS_CHARS.saturating_sub(prefix.chars().count() + suffix.chars().count());
    let line = format!("{prefix}{}{suffix}", truncate_chars(&first_line, room));
    truncate_chars(&line, MAX_SMS_CHARS)
}

/// One alert as the kind puts it in an SMS, after the time of the change and the
/// transition, so a cut never takes the time: `23:30 CET RESOLVED CRIT disks: ...`.
fn item_sms(registry: &Registry, item: &RenderItem, reader: &Reader) -> String {
    let alerts = std::slice::from_ref(&item.alert);
    let body = match registry.get(&item.alert.kind) {
        Some(kind) => kind.render_sms(alerts),
        None => generic_sms(&item.alert),
    };
    let prefix = if is_resolved(item) {
        "RESOLVED "
    } else if item.transition == Transition::Test {
        "TEST "
    } else {
        ""
    };
    let time = reader.short_time(change_time(item));
    one_line(&format!("{time} {prefix}{body}"))
}

/// The moment the change a message reports happened: when the alert fired (a repeat
/// reminds of that too), when its severity last changed, or when it resolved.
fn change_time(item: &RenderItem) -> Timestamp {
    let alert = &item.alert;
    if is_resolved(item) {
        return alert.resolved_at.unwrap_or(alert.last_seen);
    }
    match item.transition {
        Transition::Escalated => alert.last_seen,
        Transition::Fired | Transition::Repeat | Transition::Test | Transition::Resolved => {
            alert.first_seen
        }
    }
}

/// A line per alert for a kind the registry does not know (a removed plug-in).
fn generic_text(alerts: &[Alert], reader: &Reader) -> String {
    let mut text = String::new();
    for alert in alerts {
        text.push_str(&format!(
            "[{}] {}{}: {} ({})\n",
            alert.severity.as_str().to_uppercase(),
            alert.title,
            group_suffix(&alert.group_key),
            alert.message,
            alert_times(alert, reader),
        ));
    }
    text
}

fn generic_html(alerts: &[Alert], reader: &Reader) -> String {
    let mut html = String::from("<ul>\n");
    for alert in alerts {
        html.push_str(&format!(
            "<li><strong>{}</strong> {}{}: {} <em>({})</em></li>\n",
            escape_html(&alert.severity.as_str().to_uppercase()),
            escape_html(&alert.title),
            escape_html(&group_suffix(&alert.group_key)),
            escape_html(&alert.message),
            escape_html(&alert_times(alert, reader)),
        ));
    }
    html.push_str("</ul>\n");
    html
}

fn generic_sms(alert: &Alert) -> String {
    format!(
        "{} {}{}: {}",
        alert.severity.as_str().to_uppercase(),
        alert.title,
        group_suffix(&alert.group_key),
        alert.message
    )
}

fn link_paragraph(link: &str) -> String {
    format!(
        "<p><a href=\"{}\">Open tellify</a></p>\n",
        escape_html(link)
    )
}

fn group_suffix(group_key: &str) -> String {
    if group_key.is_empty() {
        String::new()
    } else {
        format!(" [{group_key}]")
    }
}

/// Replaces line breaks and other control characters with single spaces, so a message
/// cannot add header lines to a subject or split an SMS.
fn one_line(text: &str) -> String {
    let mut line = String::with_capacity(text.len());
    let mut last_was_break = false;
    for c in text.chars() {
        if c.is_control() {
            if !last_was_break {
                line.push(' ');
            }
            last_was_break = true;
        } else {
            line.push(c);
            last_was_break = false;
        }
    }
    line.trim().to_string()
}

/// Cuts `text` to `max` characters, marking the cut with an ellipsis.
fn truncate_chars(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    if max == 0 {
        return String::new();
    }
    let mut cut: String = text.chars().take(max - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{apply_output, AlertOrigin};
    use crate::handlers::AlertOutput;
    use jiff::Timestamp;
    use tellify_model::{Fields, Severity};

    fn alert(subscription: &str, kind: &str, title: &str, group_key: &str, message: &str) -> Alert {
        let origin = AlertOrigin {
            subscription_id: subscription.into(),
            owner_user: None,
            owner_group: None,
            kind: kind.into(),
            title: title.into(),
            latching: false,
        };
        let output = AlertOutput::Fire {
            group_key: group_key.into(),
            severity: Severity::Critical,
            message: message.into(),
            fields: Fields::new(),
            event_id: None,
        };
        apply_output(None, &output, &origin, Timestamp::UNIX_EPOCH, &|| {
            format!("{subscription}/{group_key}")
        })
        .unwrap()
        .0
    }

    /// A reader in UTC on the day the test alerts fire (the Unix epoch).
    fn utc() -> Reader {
        Reader::utc(Timestamp::UNIX_EPOCH)
    }

    fn fired(alert: Alert) -> RenderItem {
        RenderItem {
            alert,
            transition: Transition::Fired,
            actions: None,
        }
    }

    fn resolved(mut alert: Alert) -> RenderItem {
        alert.state = AlertState::Resolved;
        RenderItem {
            alert,
            transition: Transition::Resolved,
            actions: None,
        }
    }

    fn assert_one_line(text: &str, max: usize) {
        assert!(!text.contains('\n') && !text.contains('\r'), "{text:?}");
        assert!(
            text.chars().count() <= max,
            "{} > {max}: {text:?}",
            text.chars().count()
        );
    }

    #[test]
    fn text_parts_are_the_same_as_in_the_full_message() {
        let registry = Registry::builtin();
        let items = [fired(alert("s1", "match", "disk", "db-1", "disk is full"))];
        let full = render_message(&registry, &items, Some("https://t.example"), &utc());
        let text = render_parts(
            &registry,
            &items,
            Some("https://t.example"),
            &utc(),
            Parts::TEXT,
        );
        assert_eq!(text.subject, full.subject);
        assert_eq!(text.text, full.text);
        assert!(text.html.is_empty() && text.chat.is_empty() && text.sms.is_empty());
        assert!(!full.html.is_empty() && !full.chat.is_empty() && !full.sms.is_empty());
    }

    #[test]
    fn one_alert_reads_like_a_headline() {
        let registry = Registry::builtin();
        let items = [fired(alert(
            "s1",
            "match",
            "disks",
            "fs=/sarc/cad",
            "usage 97%",
        ))];
        let rendered = render_message(
            &registry,
            &items,
            Some("https://tellify.example/alerts/1"),
            &utc(),
        );
        assert_eq!(
            rendered.subject,
            "[tellify] CRITICAL disks [fs=/sarc/cad]: usage 97%"
        );
        assert!(
            rendered.text.starts_with("1 alert: 1 firing\n"),
            "{}",
            rendered.text
        );
        assert!(rendered.text.contains("\ndisks (1 firing)\n"));
        assert!(rendered.text.contains("usage 97%"));
        assert!(rendered
            .text
            .ends_with("\nOpen tellify: https://tellify.example/alerts/1\n"));
        assert!(rendered.html.starts_with("<!doctype html>\n<html>"));
        assert!(rendered.html.contains("<body>") && rendered.html.ends_with("</body></html>\n"));
        assert!(rendered
            .html
            .contains("<a href=\"https://tellify.example/alerts/1\">Open tellify</a>"));
        assert!(
            rendered
                .sms
                .starts_with("00:00 UTC CRIT disks [fs=/sarc/cad]: usage 97%"),
            "{}",
            rendered.sms
        );
    }

    #[test]
    fn resolved_alerts_say_resolved() {
        let registry = Registry::builtin();
        let items = [resolved(alert(
            "s1",
            "match",
            "disks",
            "fs=/x",
            "back to 40%",
        ))];
        let rendered = render_message(&registry, &items, None, &utc());
        assert_eq!(
            rendered.subject,
            "[tellify] RESOLVED disks [fs=/x]: back to 40%"
        );
        assert!(rendered.text.starts_with("1 alert: 1 resolved\n"));
        assert!(
            rendered.sms.starts_with("00:00 UTC RESOLVED "),
            "{}",
            rendered.sms
        );
        assert!(!rendered.text.contains("Open tellify"));
    }

    #[test]
    fn escalations_and_repeats_say_so_in_the_subject() {
        let registry = Registry::builtin();
        let mut escalated = alert("s1", "match", "disks", "", "usage 97%");
        escalated.previous_severity = Some(Severity::Warning);
        let item = RenderItem {
            alert: escalated.clone(),
            transition: Transition::Escalated,
            actions: None,
        };
        let rendered = render_message(&registry, std::slice::from_ref(&item), None, &utc());
        assert_eq!(
            rendered.subject,
            "[tellify] CRITICAL (was WARNING) disks: usage 97%"
        );
        let item = RenderItem {
            alert: escalated,
            transition: Transition::Repeat,
            actions: None,
        };
        let rendered = render_message(&registry, std::slice::from_ref(&item), None, &utc());
        assert_eq!(
            rendered.subject,
            "[tellify] CRITICAL (still firing) disks: usage 97%"
        );
    }

    #[test]
    fn several_alerts_are_grouped_by_subscription_in_first_seen_order() {
        let registry = Registry::builtin();
        let items = [
            fired(alert("s-disks", "match", "disks", "fs=/a", "a full")),
            fired(alert("s-load", "threshold", "load", "host=h1", "load 12")),
            resolved(alert("s-disks", "match", "disks", "fs=/b", "b fine")),
        ];
        let rendered = render_message(&registry, &items, Some("https://t.example"), &utc());
        assert_eq!(rendered.subject, "[tellify] 3 alerts: 2 firing, 1 resolved");
        let text = &rendered.text;
        assert!(
            text.starts_with("3 alerts: 2 firing, 1 resolved\n"),
            "{text}"
        );
        let disks = text.find("disks (1 firing, 1 resolved)").unwrap();
        let load = text.find("load (1 firing)").unwrap();
        assert!(disks < load, "{text}");
        // Both disk alerts sit in the disks group, before the load group.
        assert!(text.find("a full").unwrap() < load && text.find("b fine").unwrap() < load);
        assert!(text.find("load 12").unwrap() > load);
        assert_eq!(rendered.html.matches("<h3>").count(), 2);
        assert!(rendered
            .sms
            .starts_with("tellify: 3 alerts: 00:00 UTC CRIT disks [fs=/a]: a full"));
        assert!(rendered.sms.ends_with("; +2 more"), "{}", rendered.sms);
    }

    #[test]
    fn unknown_kinds_get_a_generic_line() {
        let registry = Registry::builtin();
        let items = [
            fired(alert("s1", "gone-plugin", "legacy <b>", "", "still here")),
            fired(alert("s2", "match", "disks", "", "full")),
        ];
        let rendered = render_message(&registry, &items, None, &utc());
        assert!(rendered
            .text
            .contains("[CRITICAL] legacy <b>: still here (firing since 1970-01-01 00:00 UTC)"));
        assert!(rendered.html.contains("legacy &lt;b&gt;") && !rendered.html.contains("<b>"));
        let sms = render_message(&registry, &items[..1], None, &utc()).sms;
        assert_eq!(sms, "00:00 UTC CRITICAL legacy <b>: still here");
    }

    #[test]
    fn html_escapes_every_user_supplied_value() {
        let registry = Registry::builtin();
        let items = [
            fired(alert(
                "s1",
                "match",
                "<script>alert(1)</script>",
                "k=<i>",
                "<script>steal()</script> & more",
            )),
            fired(alert(
                "s2",
                "nope",
                "<script>x</script>",
                "",
                "<script>y</script>",
            )),
        ];
        let rendered = render_message(
            &registry,
            &items,
            Some("https://t.example/?a=1&b=\"><script>"),
            &utc(),
        );
        let html = &rendered.html;
        assert!(
            !html.contains("<script>") && !html.contains("<i>"),
            "{html}"
        );
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("&lt;script&gt;steal()&lt;/script&gt; &amp; more"));
        assert!(html.contains("href=\"https://t.example/?a=1&amp;b=&quot;&gt;&lt;script&gt;\""));
        let single = render_message(&registry, &items[..1], None, &utc());
        assert!(single
            .html
            .contains("<title>[tellify] CRITICAL &lt;script&gt;"));
        assert!(!single.html.contains("<script>"));
    }

    #[test]
    fn subject_and_sms_stay_one_line_and_within_bounds() {
        let registry = Registry::builtin();
        let long = "line one\r\nline two\n".repeat(40);
        let title = format!("title\n{}", "t".repeat(300));
        for count in [1, 2, 12] {
            let items: Vec<RenderItem> = (0..count)
                .map(|index| {
                    fired(alert(
                        &format!("s{index}"),
                        "match",
                        &title,
                        "k=v\nw",
                        &long,
                    ))
                })
                .collect();
            let rendered = render_message(&registry, &items, None, &utc());
            assert_one_line(&rendered.subject, MAX_SUBJECT_CHARS);
            assert_one_line(&rendered.sms, MAX_SMS_CHARS);
            assert!(rendered.subject.starts_with("[tellify] "));
            if count > 1 {
                assert!(
                    rendered.sms.ends_with(&format!("; +{} more", count - 1)),
                    "{}",
                    rendered.sms
                );
            }
        }
        let items = [fired(alert("s", "match", "disks", "", "a\r\nb"))];
        assert_eq!(
            render_message(&registry, &items, None, &utc()).subject,
            "[tellify] CRITICAL disks: a b"
        );
        assert_eq!(truncate_chars("abcdef", 4), "abc…");
        assert_eq!(truncate_chars("abc", 3), "abc");
    }

    #[test]
    fn test_messages_say_they_are_tests() {
        let registry = Registry::builtin();
        let rendered = render_test(Some("https://t.example"));
        assert_eq!(
            render_message(&registry, &[], Some("https://t.example"), &utc()),
            rendered
        );
        assert_eq!(rendered.subject, "[tellify] Test notification");
        assert!(rendered.text.starts_with(TEST_NOTICE));
        assert!(rendered.text.contains("Open tellify: https://t.example"));
        assert!(
            rendered.html.starts_with("<!doctype html>") && rendered.html.contains(TEST_NOTICE)
        );
        assert_one_line(&rendered.sms, MAX_SMS_CHARS);
        assert!(rendered.sms.contains(TEST_NOTICE));

        let items = [RenderItem {
            alert: alert("s", "match", "disks", "", "pretend"),
            transition: Transition::Test,
            actions: None,
        }];
        let rendered = render_message(&registry, &items, None, &utc());
        assert_eq!(rendered.subject, "[tellify] TEST CRITICAL disks: pretend");
        assert!(rendered.text.starts_with(TEST_NOTICE));
        assert!(
            rendered.sms.starts_with("00:00 UTC TEST "),
            "{}",
            rendered.sms
        );
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn berlin(now: &str) -> Reader {
        Reader::new(TimeZone::get("Europe/Berlin").unwrap(), at(now))
    }

    /// An alert that first fired at `first_seen`, as the worker stores it.
    fn fired_at(first_seen: &str) -> Alert {
        let mut alert = alert("s1", "match", "disks", "fs=/x", "usage 97%");
        alert.first_seen = at(first_seen);
        alert.last_seen = at(first_seen);
        alert
    }

    #[test]
    fn times_are_the_readers_own_and_name_the_zone_across_the_dst_change() {
        let registry = Registry::builtin();
        // 22:30 UTC in January is 23:30 in Berlin, on standard time (CET).
        let winter = [fired(fired_at("2026-01-15T22:30:00Z"))];
        let rendered = render_message(&registry, &winter, None, &berlin("2026-01-15T22:31:00Z"));
        assert!(
            rendered
                .text
                .contains("(firing since 2026-01-15 23:30 CET, seen 1x)"),
            "{}",
            rendered.text
        );
        assert!(
            rendered
                .html
                .contains("<em>(firing since 2026-01-15 23:30 CET, seen 1x)</em>"),
            "{}",
            rendered.html
        );
        assert!(
            rendered.sms.starts_with("23:30 CET CRIT disks"),
            "{}",
            rendered.sms
        );
        assert!(!rendered.text.contains("UTC") && !rendered.sms.contains("UTC"));

        // 12:05 UTC in July is 14:05 in Berlin, on summer time (CEST).
        let summer = [fired(fired_at("2026-07-01T12:05:00Z"))];
        let rendered = render_message(&registry, &summer, None, &berlin("2026-07-01T12:06:00Z"));
        assert!(
            rendered.text.contains("firing since 2026-07-01 14:05 CEST"),
            "{}",
            rendered.text
        );
        assert!(rendered.sms.starts_with("14:05 CEST "), "{}", rendered.sms);

        // The same alert for a reader in UTC.
        let rendered = render_message(
            &registry,
            &summer,
            None,
            &Reader::utc(at("2026-07-01T13:00:00Z")),
        );
        assert!(
            rendered.text.contains("firing since 2026-07-01 12:05 UTC"),
            "{}",
            rendered.text
        );
        assert!(rendered.sms.starts_with("12:05 UTC "), "{}", rendered.sms);
    }

    #[test]
    fn an_sms_about_another_day_carries_the_date() {
        let registry = Registry::builtin();
        let items = [RenderItem {
            alert: fired_at("2026-01-15T22:30:00Z"),
            transition: Transition::Repeat,
            actions: None,
        }];
        // Read the next morning in Berlin: 23:30 alone would mean tonight.
        let rendered = render_message(&registry, &items, None, &berlin("2026-01-16T07:00:00Z"));
        assert!(
            rendered.sms.starts_with("2026-01-15 23:30 CET CRIT disks"),
            "{}",
            rendered.sms
        );
        // 23:30 UTC on the 15th is already the 16th in Berlin.
        let reader = berlin("2026-01-16T07:00:00Z");
        assert_eq!(reader.short_time(at("2026-01-15T23:30:00Z")), "00:30 CET");
        assert_eq!(
            reader.date_time(at("2026-01-15T23:30:00Z")),
            "2026-01-16 00:30 CET"
        );
    }

    #[test]
    fn a_resolve_says_when_it_resolved_and_when_it_fired() {
        let registry = Registry::builtin();
        let mut alert = fired_at("2026-03-28T22:00:00Z");
        // Berlin moves to summer time in the night from the 28th to the 29th of March.
        alert.state = AlertState::Resolved;
        alert.resolved_at = Some(at("2026-03-29T06:15:00Z"));
        let items = [RenderItem {
            alert,
            transition: Transition::Resolved,
            actions: None,
        }];
        let rendered = render_message(&registry, &items, None, &berlin("2026-03-29T06:16:00Z"));
        assert!(
            rendered
                .text
                .contains("(resolved 2026-03-29 08:15 CEST, fired 2026-03-28 23:00 CET, seen 1x)"),
            "{}",
            rendered.text
        );
        assert!(
            rendered.sms.starts_with("08:15 CEST RESOLVED "),
            "{}",
            rendered.sms
        );
    }

    #[test]
    fn transitions_parse_and_serialize_lowercase() {
        for transition in Transition::ALL {
            assert_eq!(transition.as_str().parse::<Transition>(), Ok(transition));
            assert_eq!(
                serde_json::to_value(transition).unwrap(),
                serde_json::json!(transition.as_str())
            );
        }
        assert_eq!("Resolved".parse::<Transition>(), Ok(Transition::Resolved));
        assert!("later"
            .parse::<Transition>()
            .unwrap_err()
            .contains("unknown transition `later`"));
    }

    #[test]
    fn action_links_appear_per_alert_in_text_html_and_chat() {
        let registry = Registry::builtin();
        let mut with_links = fired(alert("s1", "match", "disks", "fs=/home", "usage 97%"));
        with_links.actions = Some(ActionLinks {
            ack: "https://t.example/act/AAA".into(),
            shelve: "https://t.example/act/BBB".into(),
        });
        let without = resolved(alert("s1", "match", "disks", "fs=/<b>", "ok"));
        let rendered = render_message(&registry, &[with_links, without], None, &utc());
        assert!(
            rendered
                .text
                .contains("Acknowledge fs=/home: https://t.example/act/AAA\nShelve 1 h fs=/home: https://t.example/act/BBB\n"),
            "{}",
            rendered.text
        );
        assert_eq!(rendered.text.matches("Acknowledge").count(), 1);
        assert!(rendered.html.contains(
            "<p>fs=/home: <a href=\"https://t.example/act/AAA\">Acknowledge</a> · <a href=\"https://t.example/act/BBB\">Shelve 1 h</a></p>"
        ));
        assert!(
            rendered.chat.contains(
                "fs=/home: <https://t.example/act/AAA|Acknowledge> · <https://t.example/act/BBB|Shelve 1 h>\n"
            ),
            "{}",
            rendered.chat
        );
        assert!(!rendered.chat.contains("Acknowledge fs=/home:"));
        assert!(!rendered.sms.contains("act/"), "no links in an SMS");
        // Without actions the chat text is the plain text.
        let plain = render_message(
            &registry,
            &[fired(alert("s1", "match", "disks", "fs=/home", "x"))],
            None,
            &utc(),
        );
        assert_eq!(plain.chat, plain.text);
    }
}
