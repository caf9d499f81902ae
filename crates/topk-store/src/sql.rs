//! The SQL layer every role's store is written on: statement parameters, rows, the
//! connection trait each backend (SQLite, PostgreSQL) implements, and [`SqlStore`] — one
//! connection, its migrations and transactions. The role traits are implemented over it
//! in `serving.rs`, `batch.rs` and `speed.rs`; the queries live there.

use topk_core::time::{Bucket, Granularity};

use crate::dialect::{Dialect, Insert};
use crate::schema::migrations;
use crate::{ProductSum, Result, StoreError};

/// A statement parameter. `None` binds SQL `NULL`.
#[derive(Debug, Clone, Copy)]
pub enum Value<'a> {
    Int(Option<i64>),
    Real(Option<f64>),
    Text(Option<&'a str>),
    Bytes(&'a [u8]),
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<Option<i64>> for Value<'_> {
    fn from(v: Option<i64>) -> Self {
        Value::Int(v)
    }
}
impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::Real(Some(v))
    }
}
impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Text(Some(v))
    }
}
impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Text(Some(v))
    }
}
impl<'a> From<Option<&'a str>> for Value<'a> {
    fn from(v: Option<&'a str>) -> Self {
        Value::Text(v)
    }
}
impl<'a> From<&'a [u8]> for Value<'a> {
    fn from(v: &'a [u8]) -> Self {
        Value::Bytes(v)
    }
}

/// `vals![a, b]` = `[Value::from(a), Value::from(b)]`.
#[macro_export]
macro_rules! vals {
    ($($v:expr),* $(,)?) => { [$($crate::Value::from($v)),*] };
}

/// One result row, read by column index.
pub trait SqlRow {
    fn int(&self, i: usize) -> Result<i64>;
    fn opt_int(&self, i: usize) -> Result<Option<i64>>;
    fn real(&self, i: usize) -> Result<f64>;
    fn text(&self, i: usize) -> Result<String>;
    fn opt_text(&self, i: usize) -> Result<Option<String>>;
    fn bytes(&self, i: usize) -> Result<Vec<u8>>;
}

/// Implements [`SqlRow`] for a driver's row type through its typed getter (`get` for
/// rusqlite, `try_get` for postgres), whose error converts into a `StoreError`.
macro_rules! impl_sql_row {
    ($row:ty, $get:ident) => {
        impl $crate::sql::SqlRow for $row {
            fn int(&self, i: usize) -> $crate::Result<i64> {
                Ok(self.$get(i)?)
            }
            fn opt_int(&self, i: usize) -> $crate::Result<Option<i64>> {
                Ok(self.$get(i)?)
            }
            fn real(&self, i: usize) -> $crate::Result<f64> {
                Ok(self.$get(i)?)
            }
            fn text(&self, i: usize) -> $crate::Result<String> {
                Ok(self.$get(i)?)
            }
            fn opt_text(&self, i: usize) -> $crate::Result<Option<String>> {
                Ok(self.$get(i)?)
            }
            fn bytes(&self, i: usize) -> $crate::Result<Vec<u8>> {
                Ok(self.$get(i)?)
            }
        }
    };
}
pub(crate) use impl_sql_row;

/// What a SQL backend provides: statements with `$n` parameters (prepared once per
/// connection), bulk inserts, row access, and plain SQL scripts for migrations and
/// transactions.
pub trait Conn: Send {
    fn dialect(&self) -> Dialect;
    fn exec(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64>;
    /// Inserts rows (their parameters one after the other, [`Insert::width`] per row).
    fn insert(&mut self, insert: &Insert, rows: &[Value<'_>]) -> Result<u64>;
    fn query(&mut self, sql: &str, params: &[Value<'_>], each: &mut dyn FnMut(&dyn SqlRow) -> Result<()>)
        -> Result<()>;
    /// Runs a script of one or more statements without parameters.
    fn script(&mut self, sql: &str) -> Result<()>;
}

/// The store over any [`Conn`].
pub struct SqlStore {
    pub(crate) conn: Box<dyn Conn>,
    /// The breakdown the serving reads are of (`""`: the global lists).
    pub(crate) breakdown: String,
}

pub(crate) fn query<T>(
    c: &mut dyn Conn,
    sql: &str,
    params: &[Value<'_>],
    mut f: impl FnMut(&dyn SqlRow) -> Result<T>,
) -> Result<Vec<T>> {
    let mut out = Vec::new();
    c.query(sql, params, &mut |r| {
        out.push(f(r)?);
        Ok(())
    })?;
    Ok(out)
}

/// Takes the bucket locks of `buckets` (sorted, so two writers never wait for each other
/// in a circle) for the rest of the transaction ([`Dialect::bucket_lock`]).
pub(crate) fn lock_buckets(c: &mut dyn Conn, buckets: impl IntoIterator<Item = Bucket>) -> Result<()> {
    let Some(lock) = c.dialect().bucket_lock() else { return Ok(()) };
    let keys: std::collections::BTreeSet<i64> = buckets.into_iter().map(crate::dialect::bucket_lock_key).collect();
    for key in keys {
        c.exec(lock, &vals![key])?;
    }
    Ok(())
}

/// The first column of the first row, if any.
pub(crate) fn query_int(c: &mut dyn Conn, sql: &str, params: &[Value<'_>]) -> Result<Option<i64>> {
    Ok(query(c, sql, params, |r| r.int(0))?.into_iter().next())
}

pub(crate) fn bucket_at(r: &dyn SqlRow, g: usize, start: usize) -> Result<Bucket> {
    Ok(Bucket { granularity: granularity(&r.text(g)?)?, start_ms: r.int(start)? })
}

pub(crate) fn product_sum(r: &dyn SqlRow) -> Result<ProductSum> {
    Ok(ProductSum { product_id: r.text(0)?, count: r.int(1)?, revenue_cents: r.int(2)? })
}

/// Ids as a JSON array: the form the queries of several products' rows bind them in.
pub(crate) fn json_array(ids: &[&str]) -> String {
    serde_json::to_string(ids).expect("strings serialise")
}

pub(crate) fn granularity(s: &str) -> Result<Granularity> {
    s.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))
}

impl SqlStore {
    /// Wraps a connection and applies pending migrations.
    pub fn new(conn: Box<dyn Conn>) -> Result<SqlStore> {
        let mut store = SqlStore { conn, breakdown: String::new() };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        let dialect = self.conn.dialect();
        self.transaction(|c| {
            if let Some(lock) = dialect.migration_lock() {
                c.script(lock)?;
            }
            c.script("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")?;
            for (version, sql) in migrations(dialect) {
                if query_int(c, "SELECT COUNT(*) FROM schema_migrations WHERE version = $1", &vals![version])?
                    == Some(0)
                {
                    c.script(&sql)?;
                    c.exec("INSERT INTO schema_migrations (version) VALUES ($1)", &vals![version])?;
                    tracing::info!(version, "applied store migration");
                }
            }
            Ok(())
        })
    }

    /// Runs `f` in one transaction: committed if it returns `Ok`, rolled back if not.
    pub fn transaction<T>(&mut self, f: impl FnOnce(&mut dyn Conn) -> Result<T>) -> Result<T> {
        let begin = self.conn.dialect().begin();
        self.conn.script(begin)?;
        let done = f(&mut *self.conn).and_then(|v| self.conn.script("COMMIT").map(|()| v));
        if done.is_err() {
            // A failed COMMIT may leave the transaction open (SQLite when busy).
            if let Err(e) = self.conn.script("ROLLBACK") {
                tracing::debug!(error = %e, "rollback after a failed transaction");
            }
        }
        done
    }

    #[cfg(test)]
    pub(crate) fn unmigrated(conn: Box<dyn Conn>) -> SqlStore {
        SqlStore { conn, breakdown: String::new() }
    }

    #[cfg(test)]
    pub(crate) fn conn(&mut self) -> &mut dyn Conn {
        &mut *self.conn
    }

    /// Runs one statement (tests, benchmarks, ad-hoc maintenance).
    pub fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64> {
        self.conn.exec(sql, params)
    }

    /// Inserts rows (tests, benchmarks, ad-hoc maintenance).
    pub fn insert(&mut self, insert: &Insert, rows: &[Value<'_>]) -> Result<u64> {
        self.conn.insert(insert, rows)
    }

    /// Runs a script of statements without parameters, in one transaction.
    pub fn execute_script(&mut self, sql: &str) -> Result<()> {
        self.transaction(|c| c.script(sql))
    }
}
