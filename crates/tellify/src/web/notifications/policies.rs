//! The policy editor: a policy's rules as a form in my time zone (days Mon–Sun, from/to
//! local times, `outside`, minimum severity, contact points, mode now / digest every N /
//! hold until HH:MM, repeat, notify resolved, continue). Rules are added, removed and
//! moved without JavaScript: those buttons submit the form, which comes back re-rendered
//! with everything typed kept. "Save" builds the policy's JSON shape and hands it to
//! `services::notify::put_policy` (the API's function), whose errors, each with its path
//! (`rules[1].when.from`), are shown next to their field.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::{json, Value};
use tellify_engine::policy::Policy;

use super::FieldErrors;
use crate::services::{notify, AppState, ServiceError};
use crate::web::{render, render_status, see_other, CsrfForm, Layout, Viewer, WebError};

/// The days of the week, as the policy's JSON names them, and as shown.
pub const DAYS: [(&str, &str); 7] = [
    ("mon", "Mon"),
    ("tue", "Tue"),
    ("wed", "Wed"),
    ("thu", "Thu"),
    ("fri", "Fri"),
    ("sat", "Sat"),
    ("sun", "Sun"),
];

/// The most rules the editor adds (the engine allows more; a form this long is a mistake).
const MAX_FORM_RULES: usize = 50;

/// One rule as the form holds it: text as typed, so a re-rendered form keeps it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleForm {
    pub days: Vec<String>,
    pub from: String,
    pub to: String,
    pub outside: bool,
    pub min_severity: String,
    pub contact_points: Vec<String>,
    /// `now`, `digest` or `hold`.
    pub mode: String,
    pub digest: String,
    pub hold: String,
    pub repeat: String,
    pub resolved: bool,
    pub continue_: bool,
}

impl RuleForm {
    fn blank() -> RuleForm {
        RuleForm {
            min_severity: "info".to_string(),
            mode: "now".to_string(),
            ..RuleForm::default()
        }
    }

    /// A stored rule as the form shows it (from its public JSON shape).
    fn from_json(rule: &Value) -> RuleForm {
        let text = |value: &Value| value.as_str().unwrap_or_default().to_string();
        let when = &rule["when"];
        let mode = &rule["mode"];
        let (mode_name, digest, hold) = if mode["digest"].is_string() {
            ("digest", text(&mode["digest"]), String::new())
        } else if mode["hold_until"].is_string() {
            ("hold", String::new(), text(&mode["hold_until"]))
        } else {
            ("now", String::new(), String::new())
        };
        let mut form = RuleForm {
            min_severity: text(&rule["min_severity"]),
            contact_points: rule["contact_points"]
                .as_array()
                .map(|names| names.iter().map(text).collect())
                .unwrap_or_default(),
            mode: mode_name.to_string(),
            digest,
            hold,
            repeat: text(&rule["repeat"]),
            resolved: rule["notify_resolved"] == json!(true),
            continue_: rule["continue"] == json!(true),
            ..RuleForm::default()
        };
        if when.is_object() {
            form.days = when["days"]
                .as_array()
                .map(|days| days.iter().map(text).collect())
                .unwrap_or_default();
            form.from = text(&when["from"]);
            form.to = text(&when["to"]);
            // The time inputs cannot show 24:00; empty means the end of the day.
            if form.to == "24:00" {
                form.to.clear();
            }
            if form.from == "00:00" && form.to.is_empty() {
                form.from.clear();
            }
            form.outside = when["outside"] == json!(true);
        }
        form
    }

    /// The rule in the policy's JSON shape. No days, no times and not `outside` is
    /// "always"; no days with times is every day; days without times are whole days.
    fn to_json(&self) -> Value {
        let always =
            self.days.is_empty() && self.from.is_empty() && self.to.is_empty() && !self.outside;
        let when = if always {
            Value::Null
        } else {
            let mut window = json!({"days": self.days, "outside": self.outside});
            if !self.from.is_empty() {
                window["from"] = json!(self.from);
            }
            if !self.to.is_empty() {
                window["to"] = json!(self.to);
            }
            window
        };
        let mode = match self.mode.as_str() {
            "digest" => json!({"digest": self.digest.trim()}),
            "hold" => json!({"hold_until": self.hold.trim()}),
            _ => json!("now"),
        };
        let repeat = match self.repeat.trim() {
            "" => Value::Null,
            text => json!(text),
        };
        json!({
            "when": when,
            "min_severity": self.min_severity,
            "contact_points": self.contact_points,
            "mode": mode,
            "repeat": repeat,
            "notify_resolved": self.resolved,
            "continue": self.continue_,
        })
    }

    pub fn has_day(&self, day: &str) -> bool {
        self.days.iter().any(|d| d == day)
    }

    pub fn has_point(&self, name: &str) -> bool {
        self.contact_points.iter().any(|p| p == name)
    }
}

/// The whole editor as submitted: the policy's name, its rules, and which button was
/// pressed (`save`, `add`, `remove-N`, `up-N`, `down-N`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PolicyForm {
    pub name: String,
    /// Set when editing a stored policy (its name is then fixed).
    pub existing: bool,
    pub rules: Vec<RuleForm>,
    pub op: String,
}

impl PolicyForm {
    /// Reads the form's fields: `name`, `existing`, `op`, `rules` (how many) and per rule
    /// `rN.field` (days and contact points repeat).
    pub fn parse(fields: &[(String, String)]) -> PolicyForm {
        let mut form = PolicyForm::default();
        let count = fields
            .iter()
            .find(|(key, _)| key == "rules")
            .and_then(|(_, value)| value.parse::<usize>().ok())
            .unwrap_or(0)
            .min(MAX_FORM_RULES);
        form.rules = vec![
            RuleForm {
                mode: "now".to_string(),
                min_severity: "info".to_string(),
                ..RuleForm::default()
            };
            count
        ];
        for (key, value) in fields {
            match key.as_str() {
                "name" => form.name = value.trim().to_string(),
                "existing" => form.existing = value == "true",
                "op" => form.op = value.clone(),
                _ => {}
            }
            let Some((index, field)) = key
                .strip_prefix('r')
                .and_then(|rest| rest.split_once('.'))
                .and_then(|(index, field)| Some((index.parse::<usize>().ok()?, field)))
            else {
                continue;
            };
            let Some(rule) = form.rules.get_mut(index) else {
                continue;
            };
            let value = value.clone();
            match field {
                "days" => rule.days.push(value),
                "from" => rule.from = value.trim().to_string(),
                "to" => rule.to = value.trim().to_string(),
                "outside" => rule.outside = true,
                "min_severity" => rule.min_severity = value,
                "cp" => rule.contact_points.push(value),
                "mode" => rule.mode = value,
                "digest" => rule.digest = value,
                "hold" => rule.hold = value.trim().to_string(),
                "repeat" => rule.repeat = value,
                "resolved" => rule.resolved = true,
                "continue" => rule.continue_ = true,
                _ => {}
            }
        }
        form
    }

    /// Applies an editing button; `false` for `save` (or anything else).
    pub fn apply_edit(&mut self) -> bool {
        let op = self.op.clone();
        if op == "add" {
            if self.rules.len() < MAX_FORM_RULES {
                self.rules.push(RuleForm::blank());
            }
            return true;
        }
        let Some((what, index)) = op
            .split_once('-')
            .and_then(|(what, index)| Some((what, index.parse::<usize>().ok()?)))
        else {
            return false;
        };
        if index >= self.rules.len() {
            return true;
        }
        match what {
            "remove" => {
                self.rules.remove(index);
            }
            "up" if index > 0 => self.rules.swap(index, index - 1),
            "down" if index + 1 < self.rules.len() => self.rules.swap(index, index + 1),
            _ => {}
        }
        true
    }

    pub fn to_json(&self) -> Value {
        let rules: Vec<Value> = self.rules.iter().map(RuleForm::to_json).collect();
        json!({ "rules": rules })
    }
}

/// The form field an error path belongs to: `rules[1].when.from` → `r1.from`.
pub fn field_of(path: &str) -> Option<String> {
    if path == "name" {
        return Some("name".to_string());
    }
    let rest = path.strip_prefix("rules[")?;
    let (index, rest) = rest.split_once(']')?;
    let index: usize = index.parse().ok()?;
    let rest = rest.strip_prefix('.').unwrap_or(rest);
    let field = if rest.starts_with("when.days") || rest == "when" {
        "days"
    } else if rest.starts_with("when.from") {
        "from"
    } else if rest.starts_with("when.to") {
        "to"
    } else if rest.starts_with("when.outside") {
        "outside"
    } else if rest.starts_with("min_severity") {
        "min_severity"
    } else if rest.starts_with("contact_points") {
        "cp"
    } else if rest.starts_with("mode.digest") {
        "digest"
    } else if rest.starts_with("mode.hold_until") {
        "hold"
    } else if rest.starts_with("mode") {
        "mode"
    } else if rest.starts_with("repeat") {
        "repeat"
    } else if rest.starts_with("notify_resolved") {
        "resolved"
    } else if rest.starts_with("continue") {
        "continue"
    } else if rest.is_empty() {
        "rule"
    } else {
        return None;
    };
    Some(format!("r{index}.{field}"))
}

#[derive(Template)]
#[template(path = "notifications_policy.html")]
struct EditorPage {
    layout: Layout,
    form: PolicyForm,
    errors: FieldErrors,
    /// The contact points to choose from: mine, and any a rule names that no longer exists.
    points: Vec<String>,
    timezone: String,
    days: Vec<(&'static str, &'static str)>,
}

impl EditorPage {
    /// The error of rule `index`'s `field`, if any.
    fn error(&self, index: impl std::fmt::Display, field: &str) -> Option<&str> {
        self.errors.get(&format!("r{index}.{field}"))
    }

    /// `aria-describedby` and `aria-invalid` for a field with an error, else nothing.
    fn described(&self, index: impl std::fmt::Display, field: &str) -> String {
        match self.error(&index, field) {
            Some(_) => {
                format!(" aria-invalid=\"true\" aria-describedby=\"f-r{index}-{field}-error\"")
            }
            None => String::new(),
        }
    }
}

async fn editor(
    state: &AppState,
    viewer: &Viewer,
    form: PolicyForm,
    errors: FieldErrors,
) -> Result<EditorPage, WebError> {
    let mut points: Vec<String> = notify::list_contact_points(state, &viewer.principal, None)
        .await?
        .into_iter()
        .map(|point| point.name)
        .collect();
    for rule in &form.rules {
        for name in &rule.contact_points {
            if !points.contains(name) {
                points.push(name.clone());
            }
        }
    }
    let title = if form.existing {
        format!("Policy {}", form.name)
    } else {
        "New policy".to_string()
    };
    Ok(EditorPage {
        layout: Layout::new(title, "notifications", viewer),
        form,
        errors,
        points,
        timezone: viewer.principal.user.timezone.clone(),
        days: DAYS.to_vec(),
    })
}

pub async fn new_page(State(state): State<AppState>, viewer: Viewer) -> Result<Response, WebError> {
    let has_default = notify::policy(&state, &viewer.principal, None, "default")
        .await
        .is_ok();
    let form = PolicyForm {
        name: if has_default {
            String::new()
        } else {
            "default".to_string()
        },
        rules: vec![RuleForm::blank()],
        ..PolicyForm::default()
    };
    render(&editor(&state, &viewer, form, FieldErrors::default()).await?)
}

pub async fn edit_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(name): Path<String>,
) -> Result<Response, WebError> {
    let record = notify::policy(&state, &viewer.principal, None, &name).await?;
    let form = form_of(&record.name, &record.policy);
    render(&editor(&state, &viewer, form, FieldErrors::default()).await?)
}

fn form_of(name: &str, policy: &Policy) -> PolicyForm {
    PolicyForm {
        name: name.to_string(),
        existing: true,
        rules: policy
            .rules
            .iter()
            .map(|rule| RuleForm::from_json(&rule.to_json()))
            .collect(),
        op: String::new(),
    }
}

pub async fn submit(
    State(state): State<AppState>,
    CsrfForm { viewer, form }: CsrfForm<Vec<(String, String)>>,
) -> Result<Response, WebError> {
    let mut form = PolicyForm::parse(&form);
    if form.apply_edit() {
        return render(&editor(&state, &viewer, form, FieldErrors::default()).await?);
    }
    if form.name.is_empty() {
        let mut errors = FieldErrors::default();
        errors
            .by_field
            .insert("name".to_string(), "give the policy a name".to_string());
        let page = editor(&state, &viewer, form, errors).await?;
        return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
    }
    if !form.existing {
        // A new policy must not silently replace one of the same name.
        if notify::policy(&state, &viewer.principal, None, &form.name)
            .await
            .is_ok()
        {
            let mut errors = FieldErrors::default();
            errors.by_field.insert(
                "name".to_string(),
                format!("you already have a policy named `{}`", form.name),
            );
            let page = editor(&state, &viewer, form, errors).await?;
            return render_status(StatusCode::UNPROCESSABLE_ENTITY, &page);
        }
    }
    let body = form.to_json();
    match notify::put_policy(&state, &viewer.principal, None, &form.name, &body).await {
        Ok(_) => Ok(see_other("/notifications?done=policy-saved")),
        Err(ServiceError::Invalid(errors)) => {
            let errors = FieldErrors::sort(&errors, field_of);
            let page = editor(&state, &viewer, form, errors).await?;
            render_status(StatusCode::UNPROCESSABLE_ENTITY, &page)
        }
        Err(other) => Err(other.into()),
    }
}

pub async fn delete(
    State(state): State<AppState>,
    Path(name): Path<String>,
    CsrfForm { viewer, .. }: CsrfForm<super::contact_points::NoFields>,
) -> Result<Response, WebError> {
    notify::delete_policy(&state, &viewer.principal, None, &name).await?;
    Ok(see_other("/notifications?done=policy-deleted"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(fields: &[(&str, &str)]) -> Vec<(String, String)> {
        fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_form_reads_rules_and_writes_the_policy_shape() {
        let form = PolicyForm::parse(&pairs(&[
            ("name", "default"),
            ("rules", "2"),
            ("r0.days", "mon"),
            ("r0.days", "fri"),
            ("r0.from", "09:00"),
            ("r0.to", "18:00"),
            ("r0.min_severity", "warning"),
            ("r0.cp", "work"),
            ("r0.mode", "now"),
            ("r1.outside", "on"),
            ("r1.days", "mon"),
            ("r1.cp", "home"),
            ("r1.cp", "phone"),
            ("r1.mode", "digest"),
            ("r1.digest", "30m"),
            ("r1.resolved", "on"),
            ("op", "save"),
        ]));
        let policy = Policy::parse(&form.to_json()).expect("valid");
        assert_eq!(policy.rules.len(), 2);
        assert_eq!(
            policy.rules[0].when.as_ref().unwrap().to_string(),
            "mon,fri 09:00-18:00"
        );
        assert_eq!(policy.rules[1].contact_points, vec!["home", "phone"]);
        assert!(policy.rules[1].notify_resolved);
        // Read back into the form, it is the same form.
        let again = form_of("default", &policy);
        assert_eq!(again.rules[1].digest, "30m");
        assert_eq!(again.rules[0].days, vec!["mon", "fri"]);
        assert_eq!(Policy::parse(&again.to_json()).expect("valid"), policy);
    }

    #[test]
    fn rules_are_added_removed_and_moved() {
        let mut form = PolicyForm::parse(&pairs(&[("rules", "1"), ("r0.cp", "a"), ("op", "add")]));
        assert!(form.apply_edit());
        assert_eq!(form.rules.len(), 2);
        form.rules[1].contact_points = vec!["b".to_string()];
        form.op = "up-1".to_string();
        assert!(form.apply_edit());
        assert_eq!(form.rules[0].contact_points, vec!["b"]);
        form.op = "remove-0".to_string();
        assert!(form.apply_edit());
        assert_eq!(form.rules.len(), 1);
        assert_eq!(form.rules[0].contact_points, vec!["a"]);
        form.op = "save".to_string();
        assert!(!form.apply_edit());
    }

    #[test]
    fn error_paths_find_their_fields() {
        assert_eq!(field_of("rules[1].when.from").as_deref(), Some("r1.from"));
        assert_eq!(
            field_of("rules[0].contact_points[2]").as_deref(),
            Some("r0.cp")
        );
        assert_eq!(
            field_of("rules[3].mode.digest").as_deref(),
            Some("r3.digest")
        );
        assert_eq!(field_of("name").as_deref(), Some("name"));
        assert_eq!(field_of("rules"), None);
    }
}
