//! The statements on the hot path read what they need by index, whatever the size of the
//! tables: each is run under `EXPLAIN ANALYZE` over tables of thousands of rows, with
//! the plan PostgreSQL makes for the values at hand (a custom plan) and the one it may
//! switch a prepared statement to after a few runs (a generic plan), and no scan may
//! touch more than a batch's worth of rows. A join written the natural way was once
//! planned as a hash of the whole `events` table on every worker step.

#![cfg(test)]

use postgres::{Client, NoTls};
use serde_json::Value;

use super::testing::TestDatabase;
use super::PostgresStore;

/// Rows in the big tables; a statement that scans one whole touches far more than
/// [`MOST_TOUCHED`].
const ROWS: i64 = 50_000;

/// Users, each with one contact point: as many as a small installation has, where a hash
/// of them all still looks cheap to the planner.
const USERS: i64 = 1_000;

/// The most rows one scan of a table may touch (rows returned and rows filtered out,
/// over all its loops): the batches below are ten rows or fewer.
const MOST_TOUCHED: f64 = 50.0;

/// The tables filled below; only these are analyzed (a bare `ANALYZE` would also
/// analyze other tests' schemas in the same database, halfway through their inserts).
const TABLES: [&str; 6] = [
    "events",
    "users",
    "contact_points",
    "subscriptions",
    "alerts",
    "deliveries",
];

/// A fresh schema holding `ROWS` events (every third one a repeat of the one before),
/// users each with a contact point, alerts of one subscription, and deliveries of which
/// the last five are due; not analyzed yet.
fn filled() -> (TestDatabase, Client) {
    let database = TestDatabase::create_blocking().unwrap();
    drop(PostgresStore::connect(&database.url()).unwrap());
    let mut client = Client::connect(&database.url(), NoTls).unwrap();
    // Autovacuum stays away, so "not analyzed yet" is what the test says: an analysis
    // made while the rows below are being inserted would record the tables as empty.
    for table in TABLES {
        client
            .batch_execute(&format!(
                "ALTER TABLE {table} SET (autovacuum_enabled = false)"
            ))
            .unwrap();
    }
    client
        .batch_execute(&format!(
            "INSERT INTO events (id, time_ms, body, repeat_of)
                 SELECT 'event-' || g, g, '{{}}', CASE WHEN g % 3 = 0 THEN g - 1 END
                 FROM generate_series(1, {ROWS}) g;
             INSERT INTO users (id, name, timezone, admin, created)
                 SELECT 'user-' || g, 'name-' || g, 'UTC', false, 'now'
                 FROM generate_series(1, {USERS}) g;
             INSERT INTO contact_points (id, user_id, name, kind, address, created)
                 SELECT 'point-' || g, 'user-' || g, 'hook', 'webhook', 'http://x', 'now'
                 FROM generate_series(1, {USERS}) g;
             INSERT INTO subscriptions (id, kind, title, params, owner_user, enabled, latching,
                     created, updated)
                 VALUES ('subscription', 'match', 'all', '{{}}', 'user-1', true, false, 'now', 'now');
             INSERT INTO alerts (id, subscription_id, group_key, state, severity, cleared,
                     last_seen_ms, body)
                 SELECT 'alert-' || g, 'subscription', 'key-' || g, 'firing', 'warning', false,
                     g, '{{}}'
                 FROM generate_series(1, {ROWS}) g;
             INSERT INTO deliveries (id, user_id, contact_point_id, contact_point, kind,
                     status, attempts, next_attempt_ms, items, created)
                 SELECT 'delivery-' || g, 'user-' || (g % {USERS} + 1),
                     'point-' || (g % {USERS} + 1), 'hook', 'webhook',
                     CASE WHEN g > {ROWS} - 5 THEN 'pending' ELSE 'sent' END, 0, g, 1, 'now'
                 FROM generate_series(1, {ROWS}) g;"
        ))
        .unwrap();
    (database, client)
}

/// The scans of `plan` (an `EXPLAIN (ANALYZE, FORMAT JSON)` node and its children) as
/// (table, rows touched) pairs.
fn scans(plan: &Value, found: &mut Vec<(String, f64)>) {
    if let Some(table) = plan["Relation Name"].as_str() {
        let number = |key: &str| plan[key].as_f64().unwrap_or(0.0);
        let per_loop = number("Actual Rows")
            + number("Rows Removed by Filter")
            + number("Rows Removed by Index Recheck");
        found.push((table.to_string(), per_loop * number("Actual Loops")));
    }
    for child in plan["Plans"].as_array().into_iter().flatten() {
        scans(child, found);
    }
}

/// Runs `sql` prepared with `types`, executed with `arguments` (SQL literals), in a
/// transaction that is rolled back, under each plan cache mode, first with the tables
/// as freshly written (no statistics yet, as before autovacuum comes by) then analyzed;
/// fails when a scan touches more than [`MOST_TOUCHED`] rows.
fn assert_reads_by_index(client: &mut Client, name: &str, sql: &str, types: &str, arguments: &str) {
    let modes = ["force_custom_plan", "force_generic_plan"];
    for (analyzed, mode) in [
        (false, modes[0]),
        (false, modes[1]),
        (true, modes[0]),
        (true, modes[1]),
    ] {
        if analyzed {
            client
                .batch_execute(&format!("ANALYZE {}", TABLES.join(", ")))
                .unwrap();
        }
        let mut tx = client.transaction().unwrap();
        tx.batch_execute(&format!(
            "SET LOCAL plan_cache_mode = {mode}; PREPARE hot({types}) AS {sql}"
        ))
        .unwrap();
        // The simple protocol answers in text, which is the plan's JSON.
        let answer = tx
            .simple_query(&format!(
                "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE hot({arguments})"
            ))
            .unwrap();
        let text = answer
            .iter()
            .find_map(|message| match message {
                postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_string),
                _ => None,
            })
            .unwrap();
        let explained: Value = serde_json::from_str(&text).unwrap();
        let mut found = Vec::new();
        scans(&explained[0]["Plan"], &mut found);
        assert!(!found.is_empty(), "{name}: no scan in {explained:#}");
        for (table, touched) in &found {
            assert!(
                *touched <= MOST_TOUCHED,
                "{name} ({mode}, analyzed: {analyzed}) touches {touched} rows of `{table}`: {explained:#}"
            );
        }
        tx.batch_execute("DEALLOCATE hot").unwrap();
        tx.rollback().unwrap();
    }
}

#[test]
fn the_worker_reads_its_batch_without_scanning_the_log() {
    let (_database, mut client) = filled();
    let after = ROWS - 10;
    let arguments = format!("{after}, 2000");
    assert_reads_by_index(
        &mut client,
        "events_to_process",
        super::events::EVENTS_TO_PROCESS,
        "int8, int8",
        &arguments,
    );
    assert_reads_by_index(
        &mut client,
        "events_after",
        super::events::EVENTS_AFTER,
        "int8, int8",
        &arguments,
    );
}

#[test]
fn a_claim_leases_the_due_deliveries_without_scanning_every_contact_point() {
    let (_database, mut client) = filled();
    let arguments = format!("{ROWS}, 100, {}, 'gone'", ROWS * 10);
    assert_reads_by_index(
        &mut client,
        "lease",
        &super::notify::lease_sql(),
        "int8, int8, int8, text",
        &arguments,
    );
    // The claim that also writes the round's new deliveries, one of them leased at once.
    let arguments = format!(
        "{ROWS}, 100, {}, 'gone', ARRAY['new-1', 'new-2'], ARRAY['user-1', 'user-2'], \
         ARRAY['point-1', 'point-2'], ARRAY[1, 1]::int8[], 'gone', 'gone', 'now', \
         ARRAY[]::int8[], ARRAY[]::text[]",
        ROWS * 10
    );
    assert_reads_by_index(
        &mut client,
        "gang_and_lease",
        &super::notify::gang_and_lease_sql(),
        "int8, int8, int8, text, text[], text[], text[], int8[], text, text, text, int8[], text[]",
        &arguments,
    );
}

#[test]
fn a_processing_commit_finds_its_alerts_by_key() {
    let (_database, mut client) = filled();
    assert_reads_by_index(
        &mut client,
        "alerts_by_keys",
        super::alerts::ALERTS_BY_KEYS,
        "text[], text[]",
        "ARRAY['subscription', 'subscription', 'subscription'], ARRAY['key-7', 'key-9', 'new']",
    );
}
