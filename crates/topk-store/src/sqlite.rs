//! The embedded backend: one SQLite file, WAL mode, so the API can read while the batch
//! layer writes, and a separate `topk batch` process can share it.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::types::{ToSql, ToSqlOutput, ValueRef};
use rusqlite::{Connection, Row};

use crate::dialect::{Dialect, Insert};
use crate::sql::{Conn, SqlRow, SqlStore, Value};
use crate::{Result, StoreError};

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Statements kept prepared per connection: more than the queries in `schema`.
const STATEMENT_CACHE: usize = 128;

/// Rows per multi-row `INSERT`: fewer statements to step through than one per row.
const ROWS_PER_INSERT: usize = 64;

/// The statement with `$n` parameters written `?n`, which SQLite numbers n (a `$n` would
/// be a name, looked up on every bind).
fn numbered(sql: &str) -> std::borrow::Cow<'_, str> {
    if !sql.contains('$') {
        return sql.into();
    }
    sql.replace('$', "?").into()
}

pub(crate) struct SqliteConn {
    conn: Connection,
}

impl ToSql for Value<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Value::Int(Some(v)) => ToSqlOutput::from(v),
            Value::Real(Some(v)) => ToSqlOutput::from(v),
            Value::Text(Some(v)) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
            Value::Int(None) | Value::Real(None) | Value::Text(None) => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

crate::sql::impl_sql_row!(Row<'_>, get);

impl SqliteConn {
    /// Prepares (once per connection) and binds `$1`, `$2`, … by number, so a query may
    /// use its parameters in any order and more than once.
    fn prepare<'c>(&'c self, sql: &str, params: &[Value<'_>]) -> Result<rusqlite::CachedStatement<'c>> {
        let mut stmt = self.conn.prepare_cached(&numbered(sql))?;
        // `?NNN` is parameter NNN, and the statement has as many as its largest NNN: the
        // parameters past it are not used by the query.
        let used = stmt.parameter_count();
        for (i, p) in params.iter().enumerate().take(used) {
            stmt.raw_bind_parameter(i + 1, p)?;
        }
        Ok(stmt)
    }
}

impl Conn for SqliteConn {
    fn dialect(&self) -> Dialect {
        Dialect::Sqlite
    }

    fn exec(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64> {
        Ok(self.prepare(sql, params)?.raw_execute()? as u64)
    }

    /// Prepared statements of [`ROWS_PER_INSERT`] rows, then one per row for the rest.
    fn insert(&mut self, insert: &Insert, rows: &[Value<'_>]) -> Result<u64> {
        let width = insert.width();
        let mut n = 0;
        let mut chunks = rows.chunks_exact(width * ROWS_PER_INSERT);
        if chunks.len() > 0 {
            let sql = insert.values(ROWS_PER_INSERT);
            for chunk in &mut chunks {
                n += self.exec(&sql, chunk)?;
            }
        }
        let sql = insert.values(1);
        for row in chunks.remainder().chunks(width) {
            n += self.exec(&sql, row)?;
        }
        Ok(n)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        each: &mut dyn FnMut(&dyn SqlRow) -> Result<()>,
    ) -> Result<()> {
        let mut stmt = self.prepare(sql, params)?;
        let mut rows = stmt.raw_query();
        while let Some(r) = rows.next()? {
            each(r)?;
        }
        Ok(())
    }

    fn script(&mut self, sql: &str) -> Result<()> {
        Ok(self.conn.execute_batch(sql)?)
    }
}

impl SqliteConn {
    pub(crate) fn open(path: &Path) -> Result<SqliteConn> {
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        conn.busy_timeout(BUSY_TIMEOUT)?;
        // Every query is prepared once per connection: more than the default 16 of them
        // would be re-parsed and re-planned on each use.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        // And kept as prepared: without the query planner stability guarantee, SQLite marks
        // a statement whose plan might depend on a bound value (a range on a key column, a
        // LIMIT) to be prepared again whenever that value changes, which is on every use
        // here. That re-preparing was a third of an uncached answer's time in a profile
        // (BENCHMARKS.md, "The uncached API"). Without statistics tables the plans do not
        // depend on the values anyway.
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        // Switching a new file to WAL needs it to itself for a moment, and SQLite answers
        // "busy" at once rather than through the busy handler when another connection is
        // migrating it (two processes starting together): wait for it here.
        let deadline = Instant::now() + BUSY_TIMEOUT;
        loop {
            match conn.pragma_update(None, "journal_mode", "WAL") {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(5));
                }
                done => break done?,
            }
        }
        // With WAL, NORMAL is durable across process crashes; FULL adds power-loss safety.
        conn.pragma_update(None, "synchronous", "FULL")?;
        Ok(SqliteConn { conn })
    }
}

impl SqlStore {
    /// Opens (creating if needed) a SQLite store file and applies pending migrations.
    pub fn open_sqlite(path: impl AsRef<Path>) -> Result<SqlStore> {
        SqlStore::new(Box::new(SqliteConn::open(path.as_ref())?))
    }
}
