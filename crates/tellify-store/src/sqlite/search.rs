//! Event search in the SQLite store: one bounded step at a time.
//!
//! A step first picks at most `max_examined` *candidate* rows, newest first, along the
//! cheapest path the search allows: the type index when a type is given, the time index
//! when the time range holds few enough rows to take them all, and otherwise a plain walk
//! back along `seq`. Only then are the other predicates (time range, `field == literal`
//! on the stored body) applied to the candidates. However rare the events sought, one step
//! never looks at more than about `max_examined` rows, so it holds a read connection for a
//! bounded time and never the writer; the caller goes on from `resume_before`.

use rusqlite::types::Value as SqlValue;
use rusqlite::Connection;
use tellify_engine::IndexValue;

use super::{read_listed_event, unavailable};
use crate::{EventSearch, SearchStep, StoreResult};

/// The type of an event, indexed as an expression on the stored body (repeats, whose body
/// holds only what differs, index as NULL): no column to fill in on append.
pub(super) const MIGRATION: &str = r#"
CREATE INDEX events_type ON events(json_extract(body, '$.type'));
"#;

/// How a step picks its candidates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Path {
    /// Events of one type, through `events_type`.
    Type,
    /// Every event in the time range, through `events_time`: chosen only when the range
    /// holds no more rows than a step may examine.
    TimeRange,
    /// Back along `seq` from the cursor.
    Scan,
}

pub(super) fn search(connection: &Connection, search: &EventSearch) -> StoreResult<SearchStep> {
    let budget = search.max_examined.max(1) as i64;
    let since = search.since.map_or(i64::MIN, |t| t.as_millisecond());
    let until = search.until.map_or(i64::MAX, |t| t.as_millisecond());
    let path = choose_path(connection, search, since, until, budget)?;
    let candidates = candidate_sql(path);
    let mut parameters: Vec<SqlValue> = vec![
        SqlValue::Integer(search.before_seq.unwrap_or(i64::MAX)),
        SqlValue::Integer(since),
        SqlValue::Integer(until),
        SqlValue::Integer(budget),
        SqlValue::Text(search.event_type.clone().unwrap_or_default()),
    ];
    let mut statement = connection
        .prepare_cached(&format!(
            "WITH candidates AS ({candidates}) SELECT count(*), min(seq) FROM candidates"
        ))
        .map_err(unavailable)?;
    bind(&mut statement, &parameters)?;
    let mut rows = statement.raw_query();
    let (examined, oldest): (i64, Option<i64>) = match rows.next().map_err(unavailable)? {
        Some(row) => (
            row.get(0).map_err(unavailable)?,
            row.get(1).map_err(unavailable)?,
        ),
        None => (0, None),
    };
    drop(rows);
    drop(statement);
    parameters.push(SqlValue::Integer(search.limit as i64));
    for (name, value) in &search.field_equals {
        parameters.push(SqlValue::Text(field_path(name)));
        parameters.push(match value {
            IndexValue::Str(text) => SqlValue::Text(text.clone()),
            IndexValue::Int(number) => SqlValue::Integer(*number),
            IndexValue::Bool(flag) => SqlValue::Integer(i64::from(*flag)),
        });
    }
    let mut statement = connection
        .prepare_cached(&step_sql(path, search.field_equals.len()))
        .map_err(unavailable)?;
    bind(&mut statement, &parameters)?;
    let mut rows = statement.raw_query();
    let mut events = Vec::new();
    while let Some(row) = rows.next().map_err(unavailable)? {
        events.push(read_listed_event(row).map_err(unavailable)?);
    }
    let full_page = search.limit > 0 && events.len() >= search.limit;
    let resume_before = match events.last() {
        Some(last) if full_page => Some(last.seq),
        _ if examined >= budget => oldest,
        _ => None,
    };
    Ok(SearchStep {
        events,
        examined: examined.max(0) as usize,
        resume_before,
    })
}

/// Binds the numbered parameters a statement uses: each query of a step uses a subset of
/// one numbering.
fn bind(statement: &mut rusqlite::CachedStatement, parameters: &[SqlValue]) -> StoreResult<()> {
    let used = statement.parameter_count();
    for (index, value) in parameters.iter().enumerate().take(used) {
        statement
            .raw_bind_parameter(index + 1, value)
            .map_err(unavailable)?;
    }
    Ok(())
}

fn choose_path(
    connection: &Connection,
    search: &EventSearch,
    since: i64,
    until: i64,
    budget: i64,
) -> StoreResult<Path> {
    if search.event_type.is_some() {
        return Ok(Path::Type);
    }
    if search.since.is_none() && search.until.is_none() {
        return Ok(Path::Scan);
    }
    // Counting stops one past the budget, so the probe is as bounded as the step.
    let in_range: i64 = connection
        .prepare_cached(
            "SELECT count(*) FROM
                (SELECT 1 FROM events WHERE time_ms >= ?1 AND time_ms < ?2 LIMIT ?3)",
        )
        .and_then(|mut statement| {
            statement.query_row(rusqlite::params![since, until, budget + 1], |row| {
                row.get(0)
            })
        })
        .map_err(unavailable)?;
    Ok(if in_range <= budget {
        Path::TimeRange
    } else {
        Path::Scan
    })
}

/// The candidates of a step, newest first. Parameters: ?1 cursor, ?2 since (ms), ?3 until
/// (ms), ?4 most rows, ?5 type.
fn candidate_sql(path: Path) -> &'static str {
    match path {
        Path::Type => {
            "SELECT seq FROM events INDEXED BY events_type
             WHERE json_extract(body, '$.type') = ?5 AND seq < ?1
             ORDER BY seq DESC LIMIT ?4"
        }
        Path::TimeRange => {
            "SELECT seq FROM events INDEXED BY events_time
             WHERE time_ms >= ?2 AND time_ms < ?3 AND seq < ?1
             ORDER BY seq DESC LIMIT ?4"
        }
        Path::Scan => "SELECT seq FROM events WHERE seq < ?1 ORDER BY seq DESC LIMIT ?4",
    }
}

/// The events of a step: the candidates (driving the join, so no other rows are read)
/// that pass every predicate. Parameters as [`candidate_sql`], then ?6 the most events,
/// then a JSON path and a value per field equality.
fn step_sql(path: Path, field_equalities: usize) -> String {
    let mut sql = format!(
        "WITH candidates AS MATERIALIZED ({})
         SELECT e.seq, e.body, e.repeat_count FROM candidates c CROSS JOIN events e
         WHERE e.seq = c.seq AND e.repeat_of IS NULL AND e.time_ms >= ?2 AND e.time_ms < ?3",
        candidate_sql(path)
    );
    for index in 0..field_equalities {
        let path_parameter = 7 + 2 * index;
        let value_parameter = path_parameter + 1;
        sql.push_str(&format!(
            " AND json_extract(e.body, ?{path_parameter}) = ?{value_parameter}"
        ));
    }
    sql.push_str(" ORDER BY e.seq DESC LIMIT ?6");
    sql
}

/// The JSON path of a top-level field, quoted so any name is taken literally.
pub(super) fn field_path(name: &str) -> String {
    let escaped = name.replace('\\', "\\\\").replace('"', "\\\"");
    format!("$.fields.\"{escaped}\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::query_plans::{migrated, plan};

    #[test]
    fn a_type_search_reads_the_type_index_and_only_candidate_rows() {
        let connection = migrated();
        let sql = step_sql(Path::Type, 1);
        let plan = plan(&connection, &sql, 8);
        assert!(
            plan.contains("INDEX events_type (<expr>=? AND rowid<?)"),
            "{plan}"
        );
        assert!(
            plan.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"),
            "the body is read only for candidates: {plan}"
        );
        assert!(!plan.contains("SCAN e"), "{plan}");
    }

    #[test]
    fn a_narrow_time_range_reads_the_time_index() {
        let connection = migrated();
        let plan = plan(&connection, &step_sql(Path::TimeRange, 0), 6);
        assert!(
            plan.contains("INDEX events_time (time_ms>? AND time_ms<?)"),
            "{plan}"
        );
        assert!(!plan.contains("SCAN e"), "{plan}");
    }

    #[test]
    fn a_scan_walks_back_along_seq_a_bounded_stretch() {
        let connection = migrated();
        let plan = plan(&connection, &step_sql(Path::Scan, 2), 10);
        assert!(
            plan.contains("SEARCH events USING INTEGER PRIMARY KEY (rowid<?)"),
            "{plan}"
        );
        assert!(
            plan.contains("SEARCH e USING INTEGER PRIMARY KEY (rowid=?)"),
            "{plan}"
        );
    }

    #[test]
    fn field_paths_are_quoted() {
        assert_eq!(field_path("block"), "$.fields.\"block\"");
        assert_eq!(field_path("a.b\"c"), "$.fields.\"a.b\\\"c\"");
    }
}
