//! Pooled connections that keep the statements they prepared.
//!
//! The synchronous client prepares a statement given as text on every call (a round
//! trip to PostgreSQL, which parses and plans it again) before it executes it (another
//! round trip), and it closes it afterwards. A node on PostgreSQL spends most of its
//! time waiting for such round trips, and the append path pays them while it holds
//! [`super::LOCK_EVENTS`], which every node's appends queue for. So each pooled
//! [`Session`] keeps what it prepared, keyed by the SQL text: a statement that ran once
//! on a connection costs one round trip from then on.
//!
//! r2d2 checks a connection with a query of its own on every checkout by default, one
//! more round trip per store call. A session is checked only when it has sat idle long
//! enough for the server or the network to have dropped it ([`CHECK_AFTER_IDLE`]); a
//! connection that breaks in use fails that call, and the pool replaces it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use postgres::error::SqlState;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, NoTls, Row, Statement, Transaction};

/// How many prepared statements one session keeps; the store has fewer distinct ones than
/// this, so the bound only stops SQL built with values in its text from growing it.
const STATEMENTS_KEPT: usize = 512;

/// A session unused for longer than this is checked before it is handed out.
const CHECK_AFTER_IDLE: Duration = Duration::from_secs(5);

/// The statements one session has prepared, by SQL text.
pub(crate) struct Statements {
    prepared: HashMap<String, Statement>,
    /// The connection failed in a way that leaves it unusable.
    lost: bool,
    /// Connections any session of this pool lost so far (see [`Session::usable`]).
    losses: Arc<AtomicU64>,
    /// Statements any session of this pool ran so far ([`Manager::statements_run`]).
    run: Arc<AtomicU64>,
}

impl Statements {
    fn get(
        &mut self,
        client: &mut impl GenericClient,
        sql: &str,
    ) -> Result<Statement, postgres::Error> {
        if let Some(statement) = self.prepared.get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        if self.prepared.len() >= STATEMENTS_KEPT {
            self.prepared.clear();
        }
        self.prepared.insert(sql.to_string(), statement.clone());
        Ok(statement)
    }

    /// Learns from a failed call: forgets every prepared statement after an error that
    /// says the server no longer has one, or that a table under one changed shape (a
    /// migration by another node), so the next use prepares it again; and notes a
    /// connection the server ended or lost, so the pool replaces it.
    fn note(&mut self, error: &postgres::Error) {
        let code = error.code();
        let stale = code.is_some_and(|code| {
            *code == SqlState::INVALID_SQL_STATEMENT_NAME
                || *code == SqlState::FEATURE_NOT_SUPPORTED
        });
        if stale {
            self.prepared.clear();
        }
        // Class 08 is a connection exception, class 57 an operator's intervention (the
        // session was terminated, the server shuts down); no code at all is an I/O error.
        let lost = error.is_closed()
            || code.map_or(error.as_db_error().is_none(), |code| {
                matches!(code.code().get(..2), Some("08" | "57"))
            });
        if lost && !self.lost {
            self.lost = true;
            self.losses.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Runs SQL through the prepared-statement cache of the session it belongs to. Both a
/// [`Session`] and a transaction on it ([`Tx`]) do.
pub(crate) trait Sql {
    type Client: GenericClient;

    fn parts(&mut self) -> (&mut Self::Client, &mut Statements);

    /// Runs `call` with the prepared statement for `sql`; an error is noted (see
    /// [`Statements::note`]) before it is returned.
    fn run<T>(
        &mut self,
        sql: &str,
        call: impl FnOnce(&mut Self::Client, &Statement) -> Result<T, postgres::Error>,
    ) -> Result<T, postgres::Error> {
        let (client, statements) = self.parts();
        let statement = statements.get(client, sql)?;
        statements.run.fetch_add(1, Ordering::Relaxed);
        call(client, &statement).inspect_err(|error| statements.note(error))
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        self.run(sql, |client, statement| client.query(statement, params))
    }

    fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        self.run(sql, |client, statement| client.query_one(statement, params))
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        self.run(sql, |client, statement| client.query_opt(statement, params))
    }

    fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        self.run(sql, |client, statement| client.execute(statement, params))
    }
}

/// One pooled connection and the statements it prepared.
pub(crate) struct Session {
    client: Client,
    statements: Statements,
    used: Instant,
    /// The pool's count of lost connections when this session was last known good.
    losses_seen: u64,
    broken: bool,
}

impl Session {
    /// Starts a transaction (read committed).
    pub(crate) fn transaction(&mut self) -> Result<Tx<'_>, postgres::Error> {
        let statements = &mut self.statements;
        let tx = self
            .client
            .transaction()
            .inspect_err(|error| statements.note(error))?;
        Ok(Tx { tx, statements })
    }

    /// Starts a read-only transaction at `isolation`.
    pub(crate) fn read_transaction(
        &mut self,
        isolation: IsolationLevel,
    ) -> Result<Tx<'_>, postgres::Error> {
        let tx = self
            .client
            .build_transaction()
            .isolation_level(isolation)
            .read_only(true)
            .start()
            .inspect_err(|error| self.statements.note(error))?;
        Ok(Tx {
            tx,
            statements: &mut self.statements,
        })
    }

    /// False when a check (one round trip) found this session gone; it is then marked
    /// broken, and the pool closes it when it comes back. Only a session that sat unused
    /// long enough for the server or the network to have dropped it is checked, or every
    /// session once another session of the pool lost its connection (a server restart
    /// ends them all at once, and each would otherwise fail one call).
    pub(crate) fn usable(&mut self) -> bool {
        let losses = self.statements.losses.load(Ordering::Relaxed);
        if self.used.elapsed() <= CHECK_AFTER_IDLE && losses == self.losses_seen {
            return true;
        }
        if self.client.simple_query("").is_err() {
            self.broken = true;
            return false;
        }
        self.losses_seen = losses;
        true
    }

    /// Marks this session used now.
    pub(crate) fn touch(&mut self) {
        self.used = Instant::now();
    }
}

impl Sql for Session {
    type Client = Client;

    fn parts(&mut self) -> (&mut Client, &mut Statements) {
        (&mut self.client, &mut self.statements)
    }
}

/// A transaction on a [`Session`], sharing its prepared statements. Dropped without
/// [`Tx::commit`], it rolls back.
pub(crate) struct Tx<'a> {
    tx: Transaction<'a>,
    statements: &'a mut Statements,
}

impl Tx<'_> {
    pub(crate) fn commit(self) -> Result<(), postgres::Error> {
        let statements = self.statements;
        self.tx.commit().inspect_err(|error| statements.note(error))
    }
}

impl<'a> Sql for Tx<'a> {
    type Client = Transaction<'a>;

    fn parts(&mut self) -> (&mut Transaction<'a>, &mut Statements) {
        (&mut self.tx, self.statements)
    }
}

/// Opens [`Session`]s for the pool, each with the session settings the store relies on.
#[derive(Debug)]
pub(crate) struct Manager {
    config: postgres::Config,
    /// Run once on each new connection (simple protocol).
    setup: String,
    losses: Arc<AtomicU64>,
    run: Arc<AtomicU64>,
}

impl Manager {
    pub(crate) fn new(config: postgres::Config, setup: String) -> Manager {
        Manager {
            config,
            setup,
            losses: Arc::default(),
            run: Arc::default(),
        }
    }

    /// Counts the statements the pool's sessions run through their caches (each one
    /// round trip; transaction control not counted).
    pub(crate) fn statements_run(&self) -> Arc<AtomicU64> {
        self.run.clone()
    }
}

impl r2d2::ManageConnection for Manager {
    type Connection = Session;
    type Error = postgres::Error;

    fn connect(&self) -> Result<Session, postgres::Error> {
        let mut client = self.config.connect(NoTls)?;
        client.batch_execute(&self.setup)?;
        Ok(Session {
            client,
            statements: Statements {
                prepared: HashMap::new(),
                lost: false,
                losses: self.losses.clone(),
                run: self.run.clone(),
            },
            used: Instant::now(),
            losses_seen: self.losses.load(Ordering::Relaxed),
            broken: false,
        })
    }

    fn is_valid(&self, session: &mut Session) -> Result<(), postgres::Error> {
        session.client.simple_query("").map(|_| ())
    }

    fn has_broken(&self, session: &mut Session) -> bool {
        session.broken || session.statements.lost || session.client.is_closed()
    }
}
