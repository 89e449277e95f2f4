//! Hints for the slips people make when they write their first filter: `=` for `==`,
//! `and`, `or` and `not` for `&&`, `||` and `!`, a single `&` or `|`.
//!
//! cel's parser answers these with a grammar message ("token recognition error at: '= '",
//! "mismatched input 'and'") that says what went wrong for the parser, not what the person
//! meant. Only when the parser has refused a filter does [`find_slip`] scan it, outside
//! string literals and comments, for the first slip, so a valid filter with a field named
//! `and` is never second-guessed.

use std::sync::Arc;

use cel::common::ast::{CallExpr, EntryExpr, Expr, IdedExpr};

/// A slip: where it is (a byte offset) and what was probably meant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Slip {
    pub offset: usize,
    pub written: &'static str,
    pub meant: &'static str,
}

/// The first slip in `source`, if any.
pub(super) fn find_slip(source: &str) -> Option<Slip> {
    let bytes = source.as_bytes();
    let mut index = 0;
    // The last significant byte before `index`, outside strings and comments.
    let mut previous: Option<u8> = None;
    while index < bytes.len() {
        let byte = bytes[index];
        match byte {
            b'"' | b'\'' => {
                index = skip_string(bytes, index);
                previous = Some(b'"');
                continue;
            }
            b'/' if bytes.get(index + 1) == Some(&b'/') => {
                while index < bytes.len() && bytes[index] != b'\n' {
                    index += 1;
                }
                continue;
            }
            b'=' => {
                if bytes.get(index + 1) == Some(&b'=') {
                    index += 2;
                    previous = Some(b'=');
                    continue;
                }
                if !matches!(previous_byte(bytes, index), Some(b'!' | b'<' | b'>' | b'=')) {
                    return Some(slip(index, "=", "=="));
                }
            }
            b'&' | b'|' => {
                if bytes.get(index + 1) == Some(&byte) {
                    index += 2;
                    previous = Some(byte);
                    continue;
                }
                return Some(if byte == b'&' {
                    slip(index, "&", "&&")
                } else {
                    slip(index, "|", "||")
                });
            }
            _ if byte.is_ascii_alphabetic() || byte == b'_' => {
                let start = index;
                while index < bytes.len()
                    && (bytes[index].is_ascii_alphanumeric() || bytes[index] == b'_')
                {
                    index += 1;
                }
                let word = &source[start..index];
                let next = next_significant(bytes, index);
                let after_operand = previous.is_some_and(ends_operand);
                let before_operand = next.is_some_and(starts_operand);
                let member = previous == Some(b'.');
                if !member && after_operand && before_operand {
                    match word {
                        "and" => return Some(slip(start, "and", "&&")),
                        "or" => return Some(slip(start, "or", "||")),
                        _ => {}
                    }
                }
                if !member && !after_operand && before_operand && word == "not" {
                    return Some(slip(start, "not", "!"));
                }
                previous = Some(b'a');
                continue;
            }
            _ => {}
        }
        if !byte.is_ascii_whitespace() {
            previous = Some(byte);
        }
        index += 1;
    }
    None
}

/// A call in a filter that parsed to a function cel does not have: it would fail on
/// every event, which reads exactly like a missing field (false, no error). `not(...)`
/// is the slip for `!`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct UnknownFunction {
    pub offset: usize,
    pub message: String,
}

/// The first call to a function `env` does not know, if any. Whether a function exists is
/// asked of cel itself: a call to it without arguments fails with "undeclared reference"
/// only when there is no such function (a known one fails on its arguments instead).
pub(super) fn find_unknown_function(
    program: &cel::Program,
    source: &str,
    env: &Arc<cel::Env>,
) -> Option<UnknownFunction> {
    let mut calls = Vec::new();
    collect_calls(program.expression(), &mut calls);
    for (id, call) in calls {
        if is_known(call, env) {
            continue;
        }
        let at = program
            .source_info()
            .offset_for(id)
            .map_or(0, |(start, _)| start as usize);
        let offset = name_start(source, at, &call.func_name);
        let message = if call.func_name == "not" && call.target.is_none() {
            "`not` is not a function in a filter; did you mean !?".to_string()
        } else {
            format!("`{}` is not a function a filter can call", call.func_name)
        };
        return Some(UnknownFunction { offset, message });
    }
    None
}

fn collect_calls<'a>(expr: &'a IdedExpr, calls: &mut Vec<(u64, &'a CallExpr)>) {
    match &expr.expr {
        Expr::Call(call) => {
            calls.push((expr.id, call));
            if let Some(target) = &call.target {
                collect_calls(target, calls);
            }
            for argument in &call.args {
                collect_calls(argument, calls);
            }
        }
        Expr::Select(select) => collect_calls(&select.operand, calls),
        Expr::List(list) => {
            for element in &list.elements {
                collect_calls(element, calls);
            }
        }
        Expr::Map(map) => collect_entries(&map.entries, calls),
        Expr::Struct(structure) => collect_entries(&structure.entries, calls),
        Expr::Comprehension(comprehension) => {
            for part in [
                &comprehension.iter_range,
                &comprehension.accu_init,
                &comprehension.loop_cond,
                &comprehension.loop_step,
                &comprehension.result,
            ] {
                collect_calls(part, calls);
            }
        }
        Expr::Ident(_) | Expr::Literal(_) | Expr::Unspecified => {}
    }
}

fn collect_entries<'a>(
    entries: &'a [cel::common::ast::IdedEntryExpr],
    calls: &mut Vec<(u64, &'a CallExpr)>,
) {
    for entry in entries {
        match &entry.expr {
            EntryExpr::MapEntry(pair) => {
                collect_calls(&pair.key, calls);
                collect_calls(&pair.value, calls);
            }
            EntryExpr::StructField(field) => collect_calls(&field.value, calls),
        }
    }
}

/// Whether cel has the function of `call`: as a global, a method, or a qualified name
/// (`optional.of`). Operators (`_==_`, `!_`, `@in`) always are.
fn is_known(call: &CallExpr, env: &Arc<cel::Env>) -> bool {
    let name = &call.func_name;
    let plain = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    if !plain || name.starts_with('_') {
        return true;
    }
    // Each probe with whether any undeclared name in it (the namespace too) means "no".
    let mut probes = Vec::new();
    match &call.target {
        None => probes.push((format!("{name}()"), false)),
        Some(target) => {
            probes.push((format!("0.{name}()"), false));
            if let Expr::Ident(namespace) = &target.expr {
                probes.push((format!("{namespace}.{name}()"), true));
            }
        }
    }
    let context = cel::Context::with_env(env.clone());
    probes.iter().any(|(probe, qualified)| {
        let Ok(program) = env.compile(probe) else {
            return true;
        };
        match program.execute(&context) {
            Err(cel::ExecutionError::UndeclaredReference(missing)) => {
                !*qualified && missing.as_str() != name
            }
            _ => true,
        }
    })
}

/// Where the name of a call starts: cel places a call at its `(` (or the `.` before a
/// method), so step back over spaces, a dot and the name itself when it is there.
fn name_start(source: &str, at: usize, name: &str) -> usize {
    let before = source.get(..at.min(source.len())).unwrap_or("");
    let trimmed = before.trim_end_matches(|c: char| c.is_whitespace() || c == '.');
    match trimmed.strip_suffix(name) {
        Some(rest) => rest.len(),
        None => at,
    }
}

fn slip(offset: usize, written: &'static str, meant: &'static str) -> Slip {
    Slip {
        offset,
        written,
        meant,
    }
}

/// The byte right before `index` (not skipping spaces: `< =` is a slip, `<=` is not).
fn previous_byte(bytes: &[u8], index: usize) -> Option<u8> {
    index.checked_sub(1).map(|before| bytes[before])
}

fn next_significant(bytes: &[u8], mut index: usize) -> Option<u8> {
    while index < bytes.len() && bytes[index].is_ascii_whitespace() {
        index += 1;
    }
    bytes.get(index).copied()
}

/// Whether an operand can end with `byte` (`a`, `1`, `)`, `]`, `"`; strings are `"`).
fn ends_operand(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b')' | b']' | b'}' | b'"')
}

/// Whether an operand can start with `byte`.
fn starts_operand(byte: u8) -> bool {
    byte.is_ascii_alphanumeric()
        || matches!(
            byte,
            b'_' | b'(' | b'[' | b'{' | b'"' | b'\'' | b'!' | b'-' | b'.'
        )
}

/// The index just past the string literal that starts at `start` (single or triple
/// quotes; a backslash escapes the next byte). An unclosed string runs to the end.
fn skip_string(bytes: &[u8], start: usize) -> usize {
    let quote = bytes[start];
    let triple = bytes.get(start + 1) == Some(&quote) && bytes.get(start + 2) == Some(&quote);
    let mut index = if triple { start + 3 } else { start + 1 };
    while index < bytes.len() {
        match bytes[index] {
            b'\\' => index += 2,
            byte if byte == quote => {
                if !triple {
                    return index + 1;
                }
                if bytes.get(index + 1) == Some(&quote) && bytes.get(index + 2) == Some(&quote) {
                    return index + 3;
                }
                index += 1;
            }
            _ => index += 1,
        }
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(source: &str) -> Option<(usize, &'static str)> {
        find_slip(source).map(|slip| (slip.offset, slip.meant))
    }

    #[test]
    fn each_slip_is_found_where_it_is() {
        assert_eq!(found(r#"status = "fail""#), Some((7, "==")));
        assert_eq!(found(r#"a == 1 and b == 2"#), Some((7, "&&")));
        assert_eq!(found(r#"a == 1 or b == 2"#), Some((7, "||")));
        assert_eq!(found(r#"a == 1 & b == 2"#), Some((7, "&&")));
        assert_eq!(found(r#"a == 1 | b == 2"#), Some((7, "||")));
        assert_eq!(found(r#"not (a == 1)"#), Some((0, "!")));
        assert_eq!(found(r#"(a == 1) and(b == 2)"#), Some((9, "&&")));
    }

    #[test]
    fn operators_strings_members_and_comments_are_not_slips() {
        for source in [
            r#"a == 1 && b != 2 || c <= 3 || d >= 4"#,
            r#"message == "a = b and c | d & e""#,
            r#"message == 'a = b' && n == 1"#,
            r#"message == """x = "y" and z""" && n == 1"#,
            r#"x.and == 1 && y.or == 2"#,
            r#"and == 1 && or == 2 && not == 3"#,
            "a == 1 // status = fail and more\n && b == 2",
            r#"message == "escaped \" = quote""#,
        ] {
            assert_eq!(find_slip(source), None, "{source}");
        }
    }
}
