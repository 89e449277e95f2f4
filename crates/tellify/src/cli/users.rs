//! `tellify users`: users (`/api/v1/users`) and groups (`/api/v1/groups`).

use std::process::ExitCode;

use anyhow::Context;
use reqwest::Method;
use serde_json::{json, Map, Value};

use super::client::Client;
use super::output::{
    items, key_values, optional_time, print, print_json, print_line, text, truncate,
    use_callers_zone, Table, MESSAGE_WIDTH,
};
use super::Connection;

/// What offboarding removes, in the order the counts are shown.
const OFFBOARD_COUNTS: [&str; 12] = [
    "subscriptions",
    "alerts",
    "alert_history",
    "handler_states",
    "policies",
    "contact_points",
    "pending_deliveries",
    "deliveries",
    "notifications",
    "silences",
    "tokens",
    "group_memberships",
];

#[derive(clap::Args, Debug)]
pub struct UsersArgs {
    #[command(flatten)]
    connection: Connection,
    /// Print the server's JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: UsersCommand,
}

#[derive(clap::Subcommand, Debug)]
enum UsersCommand {
    /// List users (admins see everyone, others themselves).
    List,
    /// Show one user.
    Get {
        /// The user's name.
        name: String,
    },
    /// Create a user (admins only).
    Create {
        /// 1 to 64 characters of a-z, 0-9, '.', '_' or '-'.
        name: String,
        /// The user's email address.
        #[arg(long)]
        email: Option<String>,
        /// An IANA time zone such as Europe/Berlin (default UTC).
        #[arg(long)]
        timezone: Option<String>,
        /// Make the user an administrator.
        #[arg(long)]
        admin: bool,
        /// Read the user's dashboard password (10 to 1024 characters) from the first line
        /// of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set or reset a user's dashboard password (admins only; to change your own, use
    /// `tellify passwd`). Every dashboard session of theirs ends. Audited.
    #[command(after_help = "Example:
  printf '%s\\n' 'a long new password' | tellify users set-password bob --password-stdin")]
    SetPassword {
        /// The user's name.
        name: String,
        /// Read the new password from the first line of stdin (required: a password is
        /// never an argument, which other users of the machine could see).
        #[arg(long, required = true)]
        password_stdin: bool,
    },
    /// Change a user: your own time zone, email and display name (NAME `me`); admins
    /// change anyone's, and also the admin role and the groups. Audited.
    #[command(after_help = "Examples:
  tellify users update me --timezone Europe/Berlin --email ann@example.com
  tellify users update bob --admin true --groups ops,db")]
    Update {
        /// The user's name, or `me`.
        name: String,
        /// An IANA time zone such as Europe/Berlin.
        #[arg(long, value_name = "ZONE")]
        timezone: Option<String>,
        /// An email address; an empty value removes it.
        #[arg(long)]
        email: Option<String>,
        /// The name people see, such as "Ann Smith"; an empty value removes it.
        #[arg(long, value_name = "TEXT")]
        display_name: Option<String>,
        /// Admins: whether the user is an administrator.
        #[arg(long, value_name = "true|false")]
        admin: Option<bool>,
        /// Admins: every group the user is to be in, comma-separated; they leave the
        /// others ("" leaves all).
        #[arg(long, value_name = "GROUP,...", value_delimiter = ',')]
        groups: Option<Vec<String>>,
    },
    /// Offboard a user (admins only): everything of theirs goes (subscriptions, alerts,
    /// contact points, policies, deliveries, tokens, ...), with an audit record.
    Delete {
        /// The user's name.
        name: String,
        /// Count what would go, and remove nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show who the token belongs to and its scope.
    Me,
    /// List groups (admins see all, others their own).
    Groups,
    /// Create a group (admins only).
    GroupCreate {
        /// The group's name (as for users: a-z, 0-9, '.', '_', '-').
        name: String,
        /// A member's user name; repeat for more.
        #[arg(long = "member", value_name = "USER")]
        members: Vec<String>,
    },
    /// Add a user to a group (admins only).
    GroupAdd {
        /// The group's name.
        name: String,
        /// The user's name.
        user: String,
    },
    /// Remove a user from a group (admins only).
    GroupRemove {
        /// The group's name.
        name: String,
        /// The user's name.
        user: String,
    },
}

pub async fn run(args: UsersArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let json = args.json;
    match args.command {
        UsersCommand::List => {
            let page = client.get(&["users"], &[]).await?;
            if json {
                print_json(&page)?;
            } else {
                use_callers_zone(&client).await?;
                list_users(&page)?;
            }
        }
        UsersCommand::Get { name } => {
            let user = client.get(&["users", &name], &[]).await?;
            if json {
                print_json(&user)?;
            } else {
                use_callers_zone(&client).await?;
                // `me` answers who is calling: the user, their token's scope and id.
                let user = match user.get("user") {
                    Some(me) if name == "me" => me,
                    _ => &user,
                };
                print(&describe_user(user))?;
            }
        }
        UsersCommand::Create {
            name,
            email,
            timezone,
            admin,
            password_stdin,
        } => {
            let mut body = Map::new();
            if password_stdin {
                let password = first_stdin_line()?;
                body.insert("password".into(), password.into());
            }
            body.insert("name".into(), name.into());
            if let Some(email) = email {
                body.insert("email".into(), email.into());
            }
            if let Some(timezone) = timezone {
                body.insert("timezone".into(), timezone.into());
            }
            body.insert("admin".into(), admin.into());
            let user = client.post(&["users"], Some(&Value::Object(body))).await?;
            if json {
                print_json(&user)?;
            } else {
                let role = if admin { "admin" } else { "user" };
                print_line(&format!(
                    "created {role} {} ({})",
                    text(user.get("name")),
                    text(user.get("id"))
                ))?;
            }
        }
        UsersCommand::SetPassword { name, .. } => {
            let password = first_stdin_line()?;
            client
                .call(
                    Method::PUT,
                    &["users", &name, "password"],
                    &[],
                    Some(&json!({"password": password})),
                )
                .await?;
            if !json {
                print_line(&format!(
                    "set the password of {name}; their dashboard sessions ended"
                ))?;
            }
        }
        UsersCommand::Update {
            name,
            timezone,
            email,
            display_name,
            admin,
            groups,
        } => {
            let body = update_body(timezone, email, display_name, admin, groups)?;
            let user = client
                .call_json(Method::PATCH, &["users", &name], &[], Some(&body))
                .await?;
            if json {
                print_json(&user)?;
            } else {
                let mut text_out = format!("updated user {}\n", text(user.get("name")));
                text_out.push_str(&describe_user(&user));
                print(&text_out)?;
            }
        }
        UsersCommand::Delete { name, dry_run } => {
            let dry_run_text = dry_run.to_string();
            let report = client
                .call_json(
                    Method::DELETE,
                    &["users", &name],
                    &[("dry_run", &dry_run_text)],
                    None,
                )
                .await?;
            if json {
                print_json(&report)?;
            } else {
                print(&describe_offboarding(&report))?;
            }
        }
        UsersCommand::Me => {
            let me = client.get(&["users", "me"], &[]).await?;
            if json {
                print_json(&me)?;
            } else {
                let user = me.get("user").unwrap_or(&Value::Null);
                let mut text_out = describe_user(user);
                text_out.push_str(&key_values(&[
                    ("scope", text(me.get("scope"))),
                    ("token", text(me.get("token_id"))),
                ]));
                print(&text_out)?;
            }
        }
        UsersCommand::Groups => {
            let page = client.get(&["groups"], &[]).await?;
            if json {
                print_json(&page)?;
            } else {
                use_callers_zone(&client).await?;
                list_groups(&page)?;
            }
        }
        UsersCommand::GroupCreate { name, members } => {
            let body = json!({"name": name, "members": members});
            let group = client.post(&["groups"], Some(&body)).await?;
            group_done(&group, "created group", json)?;
        }
        UsersCommand::GroupAdd { name, user } => {
            let body = json!({"user": user});
            let group = client
                .post(&["groups", &name, "members"], Some(&body))
                .await?;
            group_done(&group, &format!("added {user} to group"), json)?;
        }
        UsersCommand::GroupRemove { name, user } => {
            client.delete(&["groups", &name, "members", &user]).await?;
            if !json {
                print_line(&format!("removed {user} from group {name}"))?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `tellify passwd`: change your own dashboard password.
#[derive(clap::Args, Debug)]
#[command(after_help = "Examples:
  printf '%s\\n%s\\n' \"$OLD\" \"$NEW\" | tellify passwd --password-stdin
  printf '%s\\n' \"$NEW\" | tellify passwd --password-stdin    # no password yet")]
pub struct PasswdArgs {
    #[command(flatten)]
    connection: Connection,
    /// Read the passwords from stdin: the current one on the first line and the new one on
    /// the second; a single line is the new password, for an account that has none yet
    /// (required: a password is never an argument).
    #[arg(long, required = true)]
    password_stdin: bool,
}

/// Changes the caller's password (`PUT /api/v1/users/me/password`); their other
/// dashboard sessions end.
pub async fn passwd(args: PasswdArgs) -> anyhow::Result<ExitCode> {
    let client = Client::new(&args.connection)?;
    let lines = stdin_lines()?;
    let body = match lines.as_slice() {
        [new] => json!({"password": new}),
        [current, new] => json!({"password": new, "current": current}),
        [] => anyhow::bail!(
            "no password on stdin: give the current password and the new one on two lines"
        ),
        _ => anyhow::bail!(
            "stdin has {} lines: give the current password and the new one on two lines \
             (one line when you have no password yet)",
            lines.len()
        ),
    };
    client
        .call(Method::PUT, &["users", "me", "password"], &[], Some(&body))
        .await?;
    print_line("password changed; your other dashboard sessions ended")?;
    Ok(ExitCode::SUCCESS)
}

/// The first line of stdin, without its line ending; an error when there is none.
fn first_stdin_line() -> anyhow::Result<String> {
    match stdin_lines()?.into_iter().next() {
        Some(line) => Ok(line),
        None => anyhow::bail!("no password on stdin: give it on the first line"),
    }
}

/// Stdin's lines without their line endings (`\n` or `\r\n`) and without trailing empty
/// lines; each line is kept exactly otherwise (a password may begin or end with a space).
fn stdin_lines() -> anyhow::Result<Vec<String>> {
    use std::io::Read;
    let mut text = String::new();
    std::io::stdin()
        .read_to_string(&mut text)
        .context("cannot read stdin (the password must be UTF-8 text)")?;
    Ok(split_lines(&text))
}

fn split_lines(text: &str) -> Vec<String> {
    let mut lines: Vec<String> = text
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line).to_string())
        .collect();
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// The merge patch of `users update`: only the fields given; an empty email or display
/// name is `null` (removed), empty group names are skipped (`--groups ""` is no group).
fn update_body(
    timezone: Option<String>,
    email: Option<String>,
    display_name: Option<String>,
    admin: Option<bool>,
    groups: Option<Vec<String>>,
) -> anyhow::Result<Value> {
    let cleared = |value: String| {
        if value.trim().is_empty() {
            Value::Null
        } else {
            Value::String(value)
        }
    };
    let mut body = Map::new();
    if let Some(timezone) = timezone {
        body.insert("timezone".into(), timezone.into());
    }
    if let Some(email) = email {
        body.insert("email".into(), cleared(email));
    }
    if let Some(display_name) = display_name {
        body.insert("display_name".into(), cleared(display_name));
    }
    if let Some(admin) = admin {
        body.insert("admin".into(), admin.into());
    }
    if let Some(groups) = groups {
        let names: Vec<String> = groups
            .into_iter()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .collect();
        body.insert("groups".into(), names.into());
    }
    if body.is_empty() {
        anyhow::bail!(
            "nothing to change: give --timezone, --email, --display-name, --admin or --groups"
        );
    }
    Ok(Value::Object(body))
}

fn list_users(page: &Value) -> anyhow::Result<()> {
    let users = items(page);
    if users.is_empty() {
        eprintln!("no users");
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "ROLE", "TIMEZONE", "CREATED", "EMAIL"]);
    for user in users {
        table.row(vec![
            text(user.get("name")),
            role(user).to_string(),
            text(user.get("timezone")),
            optional_time(user.get("created")),
            truncate(&text(user.get("email")), MESSAGE_WIDTH),
        ]);
    }
    print(&table.render())
}

fn role(user: &Value) -> &'static str {
    if user.get("admin").and_then(Value::as_bool) == Some(true) {
        "admin"
    } else {
        "user"
    }
}

fn describe_user(user: &Value) -> String {
    key_values(&[
        ("name", text(user.get("name"))),
        ("id", text(user.get("id"))),
        ("role", role(user).to_string()),
        ("display name", text(user.get("display_name"))),
        ("email", text(user.get("email"))),
        ("timezone", text(user.get("timezone"))),
        ("created", optional_time(user.get("created"))),
    ])
}

/// A headline saying what happened (or would have), then one count per kind of thing.
fn describe_offboarding(report: &Value) -> String {
    let user = text(report.get("user"));
    let dry_run = report.get("dry_run").and_then(Value::as_bool) == Some(true);
    let mut output = if dry_run {
        format!("dry run: deleting user {user} would remove\n")
    } else {
        format!("deleted user {user}, removing\n")
    };
    let removed = report.get("removed").unwrap_or(&Value::Null);
    let labels: Vec<String> = OFFBOARD_COUNTS
        .iter()
        .map(|key| key.replace('_', " "))
        .collect();
    let pairs: Vec<(&str, String)> = OFFBOARD_COUNTS
        .iter()
        .zip(&labels)
        .map(|(key, label)| (label.as_str(), text(removed.get(*key))))
        .collect();
    for line in key_values(&pairs).lines() {
        output.push_str("  ");
        output.push_str(line);
        output.push('\n');
    }
    output
}

fn members(group: &Value) -> String {
    let names: Vec<&str> = group
        .get("members")
        .and_then(Value::as_array)
        .map(|members| members.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if names.is_empty() {
        "-".to_string()
    } else {
        names.join(",")
    }
}

fn list_groups(page: &Value) -> anyhow::Result<()> {
    let groups = items(page);
    if groups.is_empty() {
        eprintln!("no groups");
        return Ok(());
    }
    let mut table = Table::new(&["NAME", "CREATED", "MEMBERS"]);
    for group in groups {
        table.row(vec![
            text(group.get("name")),
            optional_time(group.get("created")),
            truncate(&members(group), MESSAGE_WIDTH),
        ]);
    }
    print(&table.render())
}

fn group_done(group: &Value, what: &str, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(group);
    }
    print_line(&format!(
        "{what} {} (members: {})",
        text(group.get("name")),
        truncate(&members(group), MESSAGE_WIDTH)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdin_lines_lose_their_endings_and_keep_their_spaces() {
        assert_eq!(
            split_lines("old pass\r\n new pass \n\n"),
            ["old pass", " new pass "]
        );
        assert_eq!(split_lines("only"), ["only"]);
        assert!(split_lines("\n\n").is_empty());
        assert_eq!(split_lines("\nnew"), ["", "new"]);
    }

    #[test]
    fn an_update_sends_only_what_was_given_and_empty_values_remove() {
        let body = update_body(
            Some("Europe/Berlin".into()),
            Some(String::new()),
            None,
            Some(false),
            Some(vec!["ops".into(), " db ".into(), String::new()]),
        )
        .unwrap();
        assert_eq!(
            body,
            json!({"timezone": "Europe/Berlin", "email": null, "admin": false,
                   "groups": ["ops", "db"]})
        );
        let none = update_body(None, None, None, None, Some(vec![String::new()])).unwrap();
        assert_eq!(none, json!({"groups": []}));
        let error = update_body(None, None, None, None, None).unwrap_err();
        assert!(
            error.to_string().starts_with("nothing to change"),
            "{error}"
        );
    }

    #[test]
    fn offboarding_shows_every_count_and_whether_it_was_a_dry_run() {
        let report = json!({
            "user": "bob", "dry_run": true,
            "removed": {"subscriptions": 2, "alerts": 5, "alert_history": 9,
                        "handler_states": 2, "policies": 1, "contact_points": 1,
                        "pending_deliveries": 0, "deliveries": 3, "notifications": 4,
                        "silences": 0, "tokens": 1, "group_memberships": 1}
        });
        let text = describe_offboarding(&report);
        assert!(
            text.starts_with("dry run: deleting user bob would remove\n  subscriptions       2\n"),
            "{text}"
        );
        assert!(text.contains("\n  alert history       9\n"), "{text}");
        assert!(text.ends_with("\n  group memberships   1\n"), "{text}");
        assert_eq!(text.lines().count(), 13, "{text}");
        let done = describe_offboarding(&json!({"user": "bob", "dry_run": false}));
        assert!(done.starts_with("deleted user bob, removing\n"), "{done}");
        assert!(done.contains("  tokens              -\n"), "{done}");
    }
}
