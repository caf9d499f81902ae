//! The one [`Store`] implementation, written against a small connection trait that each
//! SQL backend (SQLite, PostgreSQL) implements: every query and transaction is written
//! once, and only statement execution and row access differ per backend.

use topk_core::accuracy::Accuracy;
use topk_core::time::{Bucket, Granularity};

use crate::schema::*;
use crate::{
    AccuracyRecord, By, ExactBucket, Product, ProductSum, Result, RunRecord, RunStats, RunStatus, SpeedBucket,
    SpeedRow, SpeedWrite, Store, StoreError, TopRow,
};

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

/// What a SQL backend provides: statements with `$n` parameters (prepared once per
/// connection), row access, and plain SQL scripts for migrations and transactions.
pub trait Conn: Send {
    fn exec(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64>;
    /// Runs a one-row `INSERT … VALUES ($1, …, $width) …` for each row of `rows` (the
    /// rows' parameters one after the other). A backend where a statement is a network
    /// round trip sends many rows per statement.
    fn exec_rows(&mut self, sql: &str, width: usize, rows: &[Value<'_>]) -> Result<u64> {
        let mut n = 0;
        for row in rows.chunks(width) {
            n += self.exec(sql, row)?;
        }
        Ok(n)
    }
    fn query(&mut self, sql: &str, params: &[Value<'_>], each: &mut dyn FnMut(&dyn SqlRow) -> Result<()>)
        -> Result<()>;
    /// Runs a script of one or more statements without parameters.
    fn script(&mut self, sql: &str) -> Result<()>;
    /// A migration in this backend's dialect (see [`crate::schema::MIGRATIONS`]).
    fn migration(&self, sql: &str) -> String;
    /// Starts a transaction that will write: SQLite takes the write lock at once
    /// (`BEGIN IMMEDIATE`, so that two writers wait for each other instead of failing with
    /// "database is locked" when both try to upgrade a read lock).
    fn begin(&self) -> &'static str;
    /// Statements that make concurrent migrations of one database wait for each other,
    /// run first in the migration transaction.
    fn migration_lock(&self) -> Option<&'static str>;
}

/// The store over any [`Conn`].
pub struct SqlStore {
    conn: Box<dyn Conn>,
}

fn query<T>(
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

/// The first column of the first row, if any.
fn query_int(c: &mut dyn Conn, sql: &str, params: &[Value<'_>]) -> Result<Option<i64>> {
    Ok(query(c, sql, params, |r| r.int(0))?.into_iter().next())
}

fn bucket_at(r: &dyn SqlRow, g: usize, start: usize) -> Result<Bucket> {
    Ok(Bucket { granularity: granularity(&r.text(g)?)?, start_ms: r.int(start)? })
}

fn product_sum(r: &dyn SqlRow) -> Result<ProductSum> {
    Ok(ProductSum { product_id: r.text(0)?, count: r.int(1)?, revenue_cents: r.int(2)? })
}

fn product(r: &dyn SqlRow) -> Result<Product> {
    Ok(Product { product_id: r.text(0)?, name: r.opt_text(1)?, category: r.opt_text(2)? })
}

/// Ids as a JSON array, the form [`PRODUCT_SUMS`] and [`PRODUCTS`] read them in.
fn json_array(ids: &[&str]) -> String {
    serde_json::to_string(ids).expect("strings serialise")
}

/// The least string above every string that starts with `prefix` (in byte order).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

fn granularity(s: &str) -> Result<Granularity> {
    s.parse().map_err(|e| StoreError::Corrupt(format!("{e}")))
}

fn add_pending(c: &mut dyn Conn, buckets: &[Bucket]) -> Result<()> {
    for b in buckets {
        c.exec(ADD_PENDING, &vals![b.granularity.as_str(), b.start_ms])?;
    }
    Ok(())
}

fn regenerate_top_lists(c: &mut dyn Conn, bucket: Bucket, k: usize) -> Result<u64> {
    let g = bucket.granularity.as_str();
    c.exec(DELETE_TOP_LISTS, &vals![g, bucket.start_ms])?;
    let mut n = 0;
    for by in By::ALL {
        let order = match by {
            By::Quantity => "count",
            By::Revenue => "revenue_cents",
        };
        let top = query(c, &TOP_ROWS.replace("{ORDER}", order), &vals![g, bucket.start_ms, k as i64], product_sum)?;
        let params: Vec<Value<'_>> = (1i64..)
            .zip(&top)
            .flat_map(|(rank, row)| {
                vals![g, bucket.start_ms, by.as_str(), rank, &row.product_id, row.count, row.revenue_cents]
            })
            .collect();
        n += c.exec_rows(INSERT_TOP_ROW, 7, &params)?;
    }
    c.exec(UPSERT_TOTALS, &vals![g, bucket.start_ms])?;
    Ok(n)
}

/// Upserts catalog entries (ids unique within the call: PostgreSQL cannot update one row
/// twice in a statement).
fn upsert_products(c: &mut dyn Conn, products: &[Product]) -> Result<()> {
    let keys: Vec<Option<String>> = products.iter().map(|p| p.name.as_deref().map(str::to_lowercase)).collect();
    let params: Vec<Value<'_>> = products
        .iter()
        .zip(&keys)
        .flat_map(|(p, key)| vals![&p.product_id, p.name.as_deref(), p.category.as_deref(), key.as_deref()])
        .collect();
    c.exec_rows(UPSERT_PRODUCT, 4, &params).map(drop)
}

fn upsert_offsets(c: &mut dyn Conn, consumer: &str, offsets: &[(u32, u64)]) -> Result<()> {
    for &(p, next) in offsets {
        c.exec(UPSERT_OFFSET, &vals![consumer, i64::from(p), next as i64])?;
    }
    Ok(())
}

impl SqlStore {
    /// Wraps a connection and applies pending migrations.
    pub fn new(conn: Box<dyn Conn>) -> Result<SqlStore> {
        let mut store = SqlStore { conn };
        store.migrate()?;
        Ok(store)
    }

    /// Opens the store at `location`: a `postgres://` or `postgresql://` URL, else the
    /// path of a SQLite file (created if missing).
    pub fn open(location: &str) -> Result<SqlStore> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            SqlStore::new(Box::new(crate::postgres::PgConn::connect(location)?))
        } else {
            SqlStore::open_sqlite(location)
        }
    }

    fn migrate(&mut self) -> Result<()> {
        let lock = self.conn.migration_lock();
        self.transaction(|c| {
            if let Some(lock) = lock {
                c.script(lock)?;
            }
            c.script("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")?;
            for &(version, sql) in MIGRATIONS {
                if query_int(c, "SELECT COUNT(*) FROM schema_migrations WHERE version = $1", &vals![version])?
                    == Some(0)
                {
                    let sql = c.migration(sql);
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
        let begin = self.conn.begin();
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
        SqlStore { conn }
    }

    #[cfg(test)]
    pub(crate) fn conn(&mut self) -> &mut dyn Conn {
        &mut *self.conn
    }

    /// Runs one statement (tests, benchmarks, ad-hoc maintenance).
    pub fn execute(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64> {
        self.conn.exec(sql, params)
    }

    /// Runs a script of statements without parameters, in one transaction.
    pub fn execute_script(&mut self, sql: &str) -> Result<()> {
        self.transaction(|c| c.script(sql))
    }
}

impl Store for SqlStore {
    fn replace_hour(&mut self, hour: Bucket, rows: &[ProductSum], version: u64, pending: &[Bucket]) -> Result<u64> {
        self.transaction(|c| {
            let g = hour.granularity.as_str();
            c.exec(DELETE_BUCKET_ROWS, &vals![g, hour.start_ms])?;
            let params: Vec<Value<'_>> =
                rows.iter().flat_map(|r| vals![g, hour.start_ms, &r.product_id, r.count, r.revenue_cents]).collect();
            c.exec_rows(INSERT_ROW, 5, &params)?;
            c.exec(SET_HOUR_VERSION, &vals![hour.start_ms, version as i64])?;
            add_pending(c, pending)?;
            Ok(rows.len() as u64)
        })
    }

    fn rollup(&mut self, bucket: Bucket) -> Result<u64> {
        let child = bucket
            .granularity
            .child()
            .ok_or_else(|| StoreError::Corrupt(format!("{bucket} has no finer granularity to roll up from")))?;
        self.transaction(|c| {
            let g = bucket.granularity.as_str();
            c.exec(DELETE_BUCKET_ROWS, &vals![g, bucket.start_ms])?;
            c.exec(ROLLUP, &vals![g, bucket.start_ms, child.as_str(), bucket.end_ms()])
        })
    }

    fn delete_speed_rows(&mut self, bucket: Bucket) -> Result<u64> {
        let params = vals![bucket.granularity.as_str(), bucket.start_ms];
        self.transaction(|c| {
            let n = c.exec(DELETE_SPEED_ROWS, &params)?;
            c.exec(DELETE_SPEED_BUCKET, &params)?;
            Ok(n)
        })
    }

    fn regenerate_top_lists(&mut self, bucket: Bucket, k: usize) -> Result<u64> {
        self.transaction(|c| regenerate_top_lists(c, bucket, k))
    }

    fn bucket_rows(&mut self, bucket: Bucket) -> Result<Vec<ProductSum>> {
        query(&mut *self.conn, BUCKET_ROWS, &vals![bucket.granularity.as_str(), bucket.start_ms], product_sum)
    }

    fn top_list(&mut self, bucket: Bucket, by: By, k: usize) -> Result<Vec<TopRow>> {
        let params = vals![bucket.granularity.as_str(), bucket.start_ms, by.as_str(), k as i64];
        query(&mut *self.conn, TOP_LIST, &params, |r| {
            Ok(TopRow {
                rank: r.int(0)?,
                product_id: r.text(1)?,
                count: r.int(2)?,
                revenue_cents: r.int(3)?,
                error_bound: r.int(4)?,
                source: r.text(5)?,
            })
        })
    }

    fn hour_version(&mut self, hour: Bucket) -> Result<Option<u64>> {
        Ok(query_int(&mut *self.conn, HOUR_VERSION, &vals![hour.start_ms])?.map(|v| v as u64))
    }

    fn add_pending(&mut self, buckets: &[Bucket]) -> Result<()> {
        self.transaction(|c| add_pending(c, buckets))
    }

    fn pending_generation(&mut self, bucket: Bucket) -> Result<Option<i64>> {
        query_int(&mut *self.conn, PENDING_GENERATION, &vals![bucket.granularity.as_str(), bucket.start_ms])
    }

    fn remove_pending(&mut self, bucket: Bucket, generation: i64) -> Result<()> {
        self.conn.exec(REMOVE_PENDING, &vals![bucket.granularity.as_str(), bucket.start_ms, generation]).map(drop)
    }

    fn pending(&mut self) -> Result<Vec<Bucket>> {
        query(&mut *self.conn, PENDING, &[], |r| bucket_at(r, 0, 1))
    }

    fn start_run(&mut self, task: &str, bucket: Bucket, attempt: i64, now_ms: i64) -> Result<i64> {
        let params = vals![task, bucket.granularity.as_str(), bucket.start_ms, attempt, now_ms];
        query_int(&mut *self.conn, START_RUN, &params)?
            .ok_or_else(|| StoreError::Corrupt("INSERT … RETURNING gave no id".into()))
    }

    fn finish_run(
        &mut self,
        id: i64,
        status: RunStatus,
        rows: Option<i64>,
        error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        self.conn.exec(FINISH_RUN, &vals![status.as_str(), rows, error, now_ms, id]).map(drop)
    }

    fn fail_interrupted_runs(&mut self, now_ms: i64) -> Result<u64> {
        self.conn.exec(FAIL_INTERRUPTED, &vals![now_ms])
    }

    fn attempts(&mut self, task: &str, bucket: Bucket) -> Result<i64> {
        let params = vals![task, bucket.granularity.as_str(), bucket.start_ms];
        Ok(query_int(&mut *self.conn, ATTEMPTS, &params)?.unwrap_or(0))
    }

    fn runs(&mut self, limit: usize) -> Result<Vec<RunRecord>> {
        query(&mut *self.conn, RUNS, &vals![limit as i64], |r| {
            Ok(RunRecord {
                id: r.int(0)?,
                task: r.text(1)?,
                bucket: bucket_at(r, 2, 3)?,
                status: RunStatus::parse(&r.text(4)?)?,
                attempt: r.int(5)?,
                started_ms: r.int(6)?,
                finished_ms: r.opt_int(7)?,
                rows: r.opt_int(8)?,
                error: r.opt_text(9)?,
            })
        })
    }

    fn run_stats(&mut self) -> Result<Vec<RunStats>> {
        query(&mut *self.conn, RUN_STATS, &[], |r| {
            Ok(RunStats {
                task: r.text(0)?,
                status: RunStatus::parse(&r.text(1)?)?,
                runs: r.int(2)?,
                duration_ms: r.int(3)?,
            })
        })
    }

    fn delete_hours_before(&mut self, before_ms: i64) -> Result<u64> {
        self.transaction(|c| {
            let n = c.exec(DELETE_HOURS_BEFORE, &vals![before_ms])?;
            c.exec(DELETE_HOUR_LISTS_BEFORE, &vals![before_ms])?;
            c.exec(DELETE_HOUR_TOTALS_BEFORE, &vals![before_ms])?;
            Ok(n)
        })
    }

    fn consumer_offsets(&mut self, consumer: &str) -> Result<Vec<(u32, u64)>> {
        query(&mut *self.conn, OFFSETS, &vals![consumer], |r| Ok((r.int(0)? as u32, r.int(1)? as u64)))
    }

    fn write_speed(
        &mut self,
        consumer: &str,
        writes: &[SpeedWrite],
        offsets: &[(u32, u64)],
        products: &[Product],
    ) -> Result<()> {
        self.transaction(|c| {
            upsert_products(c, products)?;
            for w in writes {
                let (g, start) = (w.bucket.granularity.as_str(), w.bucket.start_ms);
                c.exec(DELETE_SPEED_ROWS, &vals![g, start])?;
                let params: Vec<Value<'_>> = w
                    .rows
                    .iter()
                    .flat_map(|r| vals![g, start, &r.product_id, r.count, r.error, r.revenue_cents, r.updated_ms])
                    .collect();
                c.exec_rows(INSERT_SPEED_ROW, 7, &params)?;
                if w.finished {
                    c.exec(DELETE_SPEED_SKETCHES, &vals![g, start])?;
                }
                if w.rows.is_empty() && w.finished {
                    c.exec(DELETE_SPEED_BUCKET, &vals![g, start])?;
                } else {
                    let updated = w.rows.first().map_or(0, |r| r.updated_ms);
                    c.exec(UPSERT_SPEED_BUCKET, &vals![g, start, w.unlisted_bound, w.total_count, updated])?;
                }
                for (p, bytes) in w.sketches.iter().filter(|_| !w.finished) {
                    c.exec(UPSERT_SPEED_SKETCH, &vals![g, start, i64::from(*p), bytes.as_slice()])?;
                }
            }
            upsert_offsets(c, consumer, offsets)
        })
    }

    fn speed_sketches(&mut self) -> Result<Vec<(Bucket, u32, Vec<u8>)>> {
        query(&mut *self.conn, SPEED_SKETCHES, &[], |r| Ok((bucket_at(r, 0, 1)?, r.int(2)? as u32, r.bytes(3)?)))
    }

    fn speed_rows(&mut self, bucket: Bucket) -> Result<Vec<SpeedRow>> {
        query(&mut *self.conn, SPEED_ROWS, &vals![bucket.granularity.as_str(), bucket.start_ms], |r| {
            Ok(SpeedRow {
                product_id: r.text(0)?,
                count: r.int(1)?,
                error: r.int(2)?,
                revenue_cents: r.int(3)?,
                updated_ms: r.int(4)?,
            })
        })
    }

    fn write_exact(
        &mut self,
        consumer: &str,
        rows: &[(Bucket, Vec<ProductSum>)],
        top_k: usize,
        offsets: &[(u32, u64)],
        products: &[Product],
    ) -> Result<()> {
        self.transaction(|c| {
            upsert_products(c, products)?;
            for (bucket, sums) in rows {
                let g = bucket.granularity.as_str();
                let params: Vec<Value<'_>> = sums
                    .iter()
                    .flat_map(|r| vals![g, bucket.start_ms, &r.product_id, r.count, r.revenue_cents])
                    .collect();
                c.exec_rows(UPSERT_ROW, 5, &params)?;
                regenerate_top_lists(c, *bucket, top_k)?;
            }
            upsert_offsets(c, consumer, offsets)
        })
    }

    fn has_exact(&mut self, bucket: Bucket) -> Result<bool> {
        let n = query_int(&mut *self.conn, HAS_EXACT, &vals![bucket.granularity.as_str(), bucket.start_ms])?;
        Ok(n.unwrap_or(0) > 0)
    }

    fn speed_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<SpeedBucket>> {
        query(&mut *self.conn, SPEED_BUCKETS, &vals![granularity.as_str(), from_ms, to_ms], |r| {
            Ok(SpeedBucket {
                bucket: Bucket { granularity, start_ms: r.int(0)? },
                unlisted_bound: r.int(1)?,
                total_count: r.int(2)?,
                updated_ms: r.int(3)?,
            })
        })
    }

    fn exact_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<ExactBucket>> {
        query(&mut *self.conn, EXACT_BUCKETS, &vals![granularity.as_str(), from_ms, to_ms], |r| {
            Ok(ExactBucket {
                bucket: Bucket { granularity, start_ms: r.int(0)? },
                count: r.int(1)?,
                revenue_cents: r.int(2)?,
                products: r.int(3)?,
            })
        })
    }

    fn product_sums(&mut self, bucket: Bucket, product_ids: &[&str]) -> Result<Vec<ProductSum>> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_array(product_ids);
        query(&mut *self.conn, PRODUCT_SUMS, &vals![bucket.granularity.as_str(), bucket.start_ms, &ids], product_sum)
    }

    fn rank_of(&mut self, bucket: Bucket, by: By, product_id: &str) -> Result<Option<i64>> {
        let params = vals![bucket.granularity.as_str(), bucket.start_ms, by.as_str(), product_id];
        query_int(&mut *self.conn, RANK_OF, &params)
    }

    fn upsert_products(&mut self, products: &[Product]) -> Result<()> {
        self.transaction(|c| upsert_products(c, products))
    }

    fn products(&mut self, product_ids: &[&str]) -> Result<Vec<Product>> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        query(&mut *self.conn, PRODUCTS, &vals![&json_array(product_ids)], product)
    }

    fn search_products(&mut self, prefix: &str, limit: usize) -> Result<Vec<Product>> {
        let limit = limit as i64;
        let mut found = query(&mut *self.conn, PRODUCTS_BY_ID, &vals![prefix, &prefix_end(prefix), limit], product)?;
        let key = prefix.to_lowercase();
        for p in query(&mut *self.conn, PRODUCTS_BY_NAME, &vals![&key, &prefix_end(&key), limit], product)? {
            if found.len() < limit as usize && !found.iter().any(|f| f.product_id == p.product_id) {
                found.push(p);
            }
        }
        Ok(found)
    }

    fn record_accuracy(&mut self, bucket: Bucket, a: &Accuracy, now_ms: i64) -> Result<()> {
        let params = vals![
            bucket.granularity.as_str(),
            bucket.start_ms,
            a.precision_at_10,
            a.precision_at_100,
            a.max_relative_error,
            a.mean_relative_error,
            a.bound_coverage,
            now_ms,
        ];
        self.conn.exec(UPSERT_ACCURACY, &params).map(drop)
    }

    fn exact_generation(&mut self) -> Result<(i64, i64)> {
        let rows = query(&mut *self.conn, EXACT_GENERATION, &[], |r| Ok((r.int(0)?, r.int(1)?)))?;
        Ok(rows.into_iter().next().unwrap_or_default())
    }

    fn accuracy(&mut self, limit: usize) -> Result<Vec<AccuracyRecord>> {
        query(&mut *self.conn, ACCURACY, &vals![limit as i64], |r| {
            Ok(AccuracyRecord {
                bucket: bucket_at(r, 0, 1)?,
                accuracy: Accuracy {
                    precision_at_10: r.real(2)?,
                    precision_at_100: r.real(3)?,
                    max_relative_error: r.real(4)?,
                    mean_relative_error: r.real(5)?,
                    bound_coverage: r.real(6)?,
                },
                scored_ms: r.int(7)?,
            })
        })
    }
}
