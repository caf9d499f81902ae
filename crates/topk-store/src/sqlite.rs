//! The embedded store: one SQLite file, WAL mode, so the API can read while the batch
//! layer writes, and a separate `topk batch` process can share it.

use std::path::Path;
use std::time::Duration;

use rusqlite::types::ToSql;
use rusqlite::{Connection, Row, Statement};
use topk_core::time::{Bucket, Granularity};

use crate::schema::*;
use crate::{
    AccuracyRecord, By, ExactBucket, Product, ProductSum, Result, RunRecord, RunStats, RunStatus, SpeedBucket,
    SpeedRow, SpeedWrite, Store, StoreError, TopRow,
};
use topk_core::accuracy::Accuracy;

/// Statements kept prepared per connection: more than the queries in `schema`.
const STATEMENT_CACHE: usize = 128;

pub struct SqliteStore {
    conn: Connection,
}

/// Binds `$1`, `$2`, … by name, so a query may use its parameters in any order.
fn bind(stmt: &mut Statement<'_>, params: &[&dyn ToSql]) -> Result<()> {
    for (i, p) in params.iter().enumerate() {
        if let Some(idx) = stmt.parameter_index(&format!("${}", i + 1))? {
            stmt.raw_bind_parameter(idx, p)?;
        }
    }
    Ok(())
}

fn exec(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> Result<u64> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, params)?;
    Ok(stmt.raw_execute()? as u64)
}

/// Runs a query and maps every row with `f`.
fn query<T>(
    conn: &Connection,
    sql: &str,
    params: &[&dyn ToSql],
    mut f: impl FnMut(&Row<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql)?;
    bind(&mut stmt, params)?;
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        out.push(f(r)?);
    }
    Ok(out)
}

/// The first column of the first row, if any.
fn query_one<T: rusqlite::types::FromSql>(conn: &Connection, sql: &str, params: &[&dyn ToSql]) -> Result<Option<T>> {
    Ok(query(conn, sql, params, |r| Ok(r.get(0)?))?.into_iter().next())
}

fn bucket_at(r: &Row<'_>, g: usize, start: usize) -> Result<Bucket> {
    let name: String = r.get(g)?;
    Ok(Bucket { granularity: granularity(&name)?, start_ms: r.get(start)? })
}

fn product_sum(r: &Row<'_>) -> Result<ProductSum> {
    Ok(ProductSum { product_id: r.get(0)?, count: r.get(1)?, revenue_cents: r.get(2)? })
}

fn product(r: &Row<'_>) -> Result<Product> {
    Ok(Product { product_id: r.get(0)?, name: r.get(1)?, category: r.get(2)? })
}

/// Ids as a JSON array, the form `json_each` reads them in.
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

impl SqliteStore {
    /// Opens (creating if needed) the store file and applies pending migrations.
    pub fn open(path: impl AsRef<Path>) -> Result<SqliteStore> {
        let path = path.as_ref();
        let conn = Connection::open(path)
            .map_err(|e| StoreError::Open { path: path.display().to_string(), reason: e.to_string() })?;
        conn.busy_timeout(Duration::from_secs(30))?;
        // Every query is prepared once per connection: more than the default 16 of them
        // would be re-parsed and re-planned on each use.
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // With WAL, NORMAL is durable across process crashes; FULL adds power-loss safety.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let mut store = SqliteStore { conn };
        store.migrate()?;
        Ok(store)
    }

    fn migrate(&mut self) -> Result<()> {
        self.conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY)")?;
        for (version, sql) in MIGRATIONS {
            let tx = self.conn.transaction()?;
            let done: i64 =
                tx.query_row("SELECT COUNT(*) FROM schema_migrations WHERE version = ?1", [version], |r| r.get(0))?;
            if done == 0 {
                tx.execute_batch(&sql.replace("{ID}", "INTEGER PRIMARY KEY").replace("{BLOB}", "BLOB"))?;
                tx.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [version])?;
                tracing::info!(version, "applied store migration");
            }
            tx.commit()?;
        }
        Ok(())
    }

    /// Direct access for tests and ad-hoc checks.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }
}

fn add_pending(tx: &Connection, buckets: &[Bucket]) -> Result<()> {
    for b in buckets {
        exec(tx, ADD_PENDING, &[&b.granularity.as_str(), &b.start_ms])?;
    }
    Ok(())
}

fn regenerate_top_lists(tx: &Connection, bucket: Bucket, k: usize) -> Result<u64> {
    let g = bucket.granularity.as_str();
    exec(tx, DELETE_TOP_LISTS, &[&g, &bucket.start_ms])?;
    let mut n = 0;
    for by in By::ALL {
        let order = match by {
            By::Quantity => "count",
            By::Revenue => "revenue_cents",
        };
        let top = query(tx, &TOP_ROWS.replace("{ORDER}", order), &[&g, &bucket.start_ms, &(k as i64)], product_sum)?;
        let mut insert = tx.prepare_cached(INSERT_TOP_ROW)?;
        for (rank, row) in (1i64..).zip(&top) {
            bind(
                &mut insert,
                &[&g, &bucket.start_ms, &by.as_str(), &rank, &row.product_id, &row.count, &row.revenue_cents],
            )?;
            n += insert.raw_execute()? as u64;
        }
    }
    exec(tx, UPSERT_TOTALS, &[&g, &bucket.start_ms])?;
    Ok(n)
}

fn upsert_offsets(tx: &Connection, consumer: &str, offsets: &[(u32, u64)]) -> Result<()> {
    for &(p, next) in offsets {
        exec(tx, UPSERT_OFFSET, &[&consumer, &i64::from(p), &(next as i64)])?;
    }
    Ok(())
}

impl Store for SqliteStore {
    fn replace_hour(&mut self, hour: Bucket, rows: &[ProductSum], version: u64, pending: &[Bucket]) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let g = hour.granularity.as_str();
        exec(&tx, DELETE_BUCKET_ROWS, &[&g, &hour.start_ms])?;
        {
            let mut stmt = tx.prepare_cached(INSERT_ROW)?;
            for r in rows {
                bind(&mut stmt, &[&g, &hour.start_ms, &r.product_id, &r.count, &r.revenue_cents])?;
                stmt.raw_execute()?;
            }
        }
        exec(&tx, SET_HOUR_VERSION, &[&hour.start_ms, &(version as i64)])?;
        add_pending(&tx, pending)?;
        tx.commit()?;
        Ok(rows.len() as u64)
    }

    fn rollup(&mut self, bucket: Bucket) -> Result<u64> {
        let child = bucket
            .granularity
            .child()
            .ok_or_else(|| StoreError::Corrupt(format!("{bucket} has no finer granularity to roll up from")))?;
        let tx = self.conn.transaction()?;
        let g = bucket.granularity.as_str();
        exec(&tx, DELETE_BUCKET_ROWS, &[&g, &bucket.start_ms])?;
        let n = exec(&tx, ROLLUP, &[&g, &bucket.start_ms, &child.as_str(), &bucket.end_ms()])?;
        tx.commit()?;
        Ok(n)
    }

    fn delete_speed_rows(&mut self, bucket: Bucket) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let params: [&dyn ToSql; 2] = [&bucket.granularity.as_str(), &bucket.start_ms];
        let n = exec(&tx, DELETE_SPEED_ROWS, &params)?;
        exec(&tx, DELETE_SPEED_BUCKET, &params)?;
        tx.commit()?;
        Ok(n)
    }

    fn regenerate_top_lists(&mut self, bucket: Bucket, k: usize) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let n = regenerate_top_lists(&tx, bucket, k)?;
        tx.commit()?;
        Ok(n)
    }

    fn bucket_rows(&mut self, bucket: Bucket) -> Result<Vec<ProductSum>> {
        query(&self.conn, BUCKET_ROWS, &[&bucket.granularity.as_str(), &bucket.start_ms], product_sum)
    }

    fn top_list(&mut self, bucket: Bucket, by: By, k: usize) -> Result<Vec<TopRow>> {
        let params: [&dyn ToSql; 4] = [&bucket.granularity.as_str(), &bucket.start_ms, &by.as_str(), &(k as i64)];
        query(&self.conn, TOP_LIST, &params, |r| {
            Ok(TopRow {
                rank: r.get(0)?,
                product_id: r.get(1)?,
                count: r.get(2)?,
                revenue_cents: r.get(3)?,
                error_bound: r.get(4)?,
                source: r.get(5)?,
            })
        })
    }

    fn hour_version(&mut self, hour: Bucket) -> Result<Option<u64>> {
        Ok(query_one::<i64>(&self.conn, HOUR_VERSION, &[&hour.start_ms])?.map(|v| v as u64))
    }

    fn add_pending(&mut self, buckets: &[Bucket]) -> Result<()> {
        let tx = self.conn.transaction()?;
        add_pending(&tx, buckets)?;
        tx.commit()?;
        Ok(())
    }

    fn pending_generation(&mut self, bucket: Bucket) -> Result<Option<i64>> {
        query_one(&self.conn, PENDING_GENERATION, &[&bucket.granularity.as_str(), &bucket.start_ms])
    }

    fn remove_pending(&mut self, bucket: Bucket, generation: i64) -> Result<()> {
        exec(&self.conn, REMOVE_PENDING, &[&bucket.granularity.as_str(), &bucket.start_ms, &generation]).map(drop)
    }

    fn pending(&mut self) -> Result<Vec<Bucket>> {
        query(&self.conn, PENDING, &[], |r| bucket_at(r, 0, 1))
    }

    fn start_run(&mut self, task: &str, bucket: Bucket, attempt: i64, now_ms: i64) -> Result<i64> {
        let params: [&dyn ToSql; 5] = [&task, &bucket.granularity.as_str(), &bucket.start_ms, &attempt, &now_ms];
        query_one(&self.conn, START_RUN, &params)?
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
        exec(&self.conn, FINISH_RUN, &[&status.as_str(), &rows, &error, &now_ms, &id]).map(drop)
    }

    fn fail_interrupted_runs(&mut self, now_ms: i64) -> Result<u64> {
        exec(&self.conn, FAIL_INTERRUPTED, &[&now_ms])
    }

    fn attempts(&mut self, task: &str, bucket: Bucket) -> Result<i64> {
        Ok(query_one(&self.conn, ATTEMPTS, &[&task, &bucket.granularity.as_str(), &bucket.start_ms])?.unwrap_or(0))
    }

    fn runs(&mut self, limit: usize) -> Result<Vec<RunRecord>> {
        query(&self.conn, RUNS, &[&(limit as i64)], |r| {
            let status: String = r.get(4)?;
            Ok(RunRecord {
                id: r.get(0)?,
                task: r.get(1)?,
                bucket: bucket_at(r, 2, 3)?,
                status: RunStatus::parse(&status)?,
                attempt: r.get(5)?,
                started_ms: r.get(6)?,
                finished_ms: r.get(7)?,
                rows: r.get(8)?,
                error: r.get(9)?,
            })
        })
    }

    fn run_stats(&mut self) -> Result<Vec<RunStats>> {
        query(&self.conn, RUN_STATS, &[], |r| {
            Ok(RunStats {
                task: r.get(0)?,
                status: RunStatus::parse(&r.get::<_, String>(1)?)?,
                runs: r.get(2)?,
                duration_ms: r.get(3)?,
            })
        })
    }

    fn delete_hours_before(&mut self, before_ms: i64) -> Result<u64> {
        let tx = self.conn.transaction()?;
        let n = exec(&tx, DELETE_HOURS_BEFORE, &[&before_ms])?;
        exec(&tx, DELETE_HOUR_LISTS_BEFORE, &[&before_ms])?;
        exec(&tx, DELETE_HOUR_TOTALS_BEFORE, &[&before_ms])?;
        tx.commit()?;
        Ok(n)
    }

    fn consumer_offsets(&mut self, consumer: &str) -> Result<Vec<(u32, u64)>> {
        query(&self.conn, OFFSETS, &[&consumer], |r| Ok((r.get::<_, i64>(0)? as u32, r.get::<_, i64>(1)? as u64)))
    }

    fn write_speed(&mut self, consumer: &str, writes: &[SpeedWrite], offsets: &[(u32, u64)]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for w in writes {
            let (g, start) = (w.bucket.granularity.as_str(), w.bucket.start_ms);
            exec(&tx, DELETE_SPEED_ROWS, &[&g, &start])?;
            let mut insert = tx.prepare_cached(INSERT_SPEED_ROW)?;
            for r in &w.rows {
                bind(&mut insert, &[&g, &start, &r.product_id, &r.count, &r.error, &r.revenue_cents, &r.updated_ms])?;
                insert.raw_execute()?;
            }
            if w.finished {
                exec(&tx, DELETE_SPEED_SKETCHES, &[&g, &start])?;
            }
            if w.rows.is_empty() && w.finished {
                exec(&tx, DELETE_SPEED_BUCKET, &[&g, &start])?;
            } else {
                let updated = w.rows.first().map_or(0, |r| r.updated_ms);
                exec(&tx, UPSERT_SPEED_BUCKET, &[&g, &start, &w.unlisted_bound, &w.total_count, &updated])?;
            }
            for (p, bytes) in w.sketches.iter().filter(|_| !w.finished) {
                exec(&tx, UPSERT_SPEED_SKETCH, &[&g, &start, &i64::from(*p), bytes])?;
            }
        }
        upsert_offsets(&tx, consumer, offsets)?;
        tx.commit()?;
        Ok(())
    }

    fn speed_sketches(&mut self) -> Result<Vec<(Bucket, u32, Vec<u8>)>> {
        query(&self.conn, SPEED_SKETCHES, &[], |r| Ok((bucket_at(r, 0, 1)?, r.get::<_, i64>(2)? as u32, r.get(3)?)))
    }

    fn speed_rows(&mut self, bucket: Bucket) -> Result<Vec<SpeedRow>> {
        query(&self.conn, SPEED_ROWS, &[&bucket.granularity.as_str(), &bucket.start_ms], |r| {
            Ok(SpeedRow {
                product_id: r.get(0)?,
                count: r.get(1)?,
                error: r.get(2)?,
                revenue_cents: r.get(3)?,
                updated_ms: r.get(4)?,
            })
        })
    }

    fn write_exact(
        &mut self,
        consumer: &str,
        rows: &[(Bucket, Vec<ProductSum>)],
        top_k: usize,
        offsets: &[(u32, u64)],
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        for (bucket, sums) in rows {
            let g = bucket.granularity.as_str();
            {
                let mut upsert = tx.prepare_cached(UPSERT_ROW)?;
                for r in sums {
                    bind(&mut upsert, &[&g, &bucket.start_ms, &r.product_id, &r.count, &r.revenue_cents])?;
                    upsert.raw_execute()?;
                }
            }
            regenerate_top_lists(&tx, *bucket, top_k)?;
        }
        upsert_offsets(&tx, consumer, offsets)?;
        tx.commit()?;
        Ok(())
    }

    fn has_exact(&mut self, bucket: Bucket) -> Result<bool> {
        let n: Option<i64> = query_one(&self.conn, HAS_EXACT, &[&bucket.granularity.as_str(), &bucket.start_ms])?;
        Ok(n.unwrap_or(0) > 0)
    }

    fn speed_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<SpeedBucket>> {
        query(&self.conn, SPEED_BUCKETS, &[&granularity.as_str(), &from_ms, &to_ms], |r| {
            Ok(SpeedBucket {
                bucket: Bucket { granularity, start_ms: r.get(0)? },
                unlisted_bound: r.get(1)?,
                total_count: r.get(2)?,
                updated_ms: r.get(3)?,
            })
        })
    }

    fn exact_buckets(&mut self, granularity: Granularity, from_ms: i64, to_ms: i64) -> Result<Vec<ExactBucket>> {
        query(&self.conn, EXACT_BUCKETS, &[&granularity.as_str(), &from_ms, &to_ms], |r| {
            Ok(ExactBucket {
                bucket: Bucket { granularity, start_ms: r.get(0)? },
                count: r.get(1)?,
                revenue_cents: r.get(2)?,
                products: r.get(3)?,
            })
        })
    }

    fn product_sums(&mut self, bucket: Bucket, product_ids: &[&str]) -> Result<Vec<ProductSum>> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = json_array(product_ids);
        query(&self.conn, PRODUCT_SUMS, &[&bucket.granularity.as_str(), &bucket.start_ms, &ids], product_sum)
    }

    fn rank_of(&mut self, bucket: Bucket, by: By, product_id: &str) -> Result<Option<i64>> {
        query_one(&self.conn, RANK_OF, &[&bucket.granularity.as_str(), &bucket.start_ms, &by.as_str(), &product_id])
    }

    fn upsert_products(&mut self, products: &[Product]) -> Result<()> {
        let tx = self.conn.transaction()?;
        for p in products {
            let key = p.name.as_deref().map(str::to_lowercase);
            exec(&tx, UPSERT_PRODUCT, &[&p.product_id, &p.name, &p.category, &key])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn products(&mut self, product_ids: &[&str]) -> Result<Vec<Product>> {
        if product_ids.is_empty() {
            return Ok(Vec::new());
        }
        query(&self.conn, PRODUCTS, &[&json_array(product_ids)], product)
    }

    fn search_products(&mut self, prefix: &str, limit: usize) -> Result<Vec<Product>> {
        let limit = limit as i64;
        let mut found = query(&self.conn, PRODUCTS_BY_ID, &[&prefix, &prefix_end(prefix), &limit], product)?;
        let key = prefix.to_lowercase();
        for p in query(&self.conn, PRODUCTS_BY_NAME, &[&key, &prefix_end(&key), &limit], product)? {
            if found.len() < limit as usize && !found.iter().any(|f| f.product_id == p.product_id) {
                found.push(p);
            }
        }
        Ok(found)
    }

    fn record_accuracy(&mut self, bucket: Bucket, a: &Accuracy, now_ms: i64) -> Result<()> {
        exec(
            &self.conn,
            UPSERT_ACCURACY,
            &[
                &bucket.granularity.as_str(),
                &bucket.start_ms,
                &a.precision_at_10,
                &a.precision_at_100,
                &a.max_relative_error,
                &a.mean_relative_error,
                &a.bound_coverage,
                &now_ms,
            ],
        )
        .map(drop)
    }

    fn accuracy(&mut self, limit: usize) -> Result<Vec<AccuracyRecord>> {
        query(&self.conn, ACCURACY, &[&(limit as i64)], |r| {
            Ok(AccuracyRecord {
                bucket: bucket_at(r, 0, 1)?,
                accuracy: Accuracy {
                    precision_at_10: r.get(2)?,
                    precision_at_100: r.get(3)?,
                    max_relative_error: r.get(4)?,
                    mean_relative_error: r.get(5)?,
                    bound_coverage: r.get(6)?,
                },
                scored_ms: r.get(7)?,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;
    const DAY0: i64 = 1_796_083_200_000; // 2026-12-01T00:00:00Z

    fn sum(p: &str, count: i64) -> ProductSum {
        ProductSum { product_id: p.into(), count, revenue_cents: count * 10 }
    }

    #[test]
    fn hours_roll_up_into_a_day_and_top_lists_rank_it() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path().join("store.db")).unwrap();
        let day = Bucket::containing(Granularity::Day, DAY0);
        for (h, rows) in [(0, vec![sum("a", 5), sum("b", 1)]), (23, vec![sum("b", 7), sum("c", 2)])] {
            let hour = Bucket::containing(Granularity::Hour, DAY0 + h * H);
            s.replace_hour(hour, &rows, 1, &hour.ancestors()).unwrap();
        }
        // An hour of the next day must not leak in.
        let next = Bucket::containing(Granularity::Hour, DAY0 + 24 * H);
        s.replace_hour(next, &[sum("a", 100)], 1, &[]).unwrap();
        assert_eq!(s.rollup(day).unwrap(), 3);
        assert_eq!(s.bucket_rows(day).unwrap(), vec![sum("a", 5), sum("b", 8), sum("c", 2)]);
        // Re-running replaces rather than adds.
        assert_eq!(s.rollup(day).unwrap(), 3);
        assert_eq!(s.bucket_rows(day).unwrap()[1], sum("b", 8));
        s.regenerate_top_lists(day, 2).unwrap();
        let top: Vec<_> =
            s.top_list(day, By::Quantity, 10).unwrap().into_iter().map(|r| (r.rank, r.product_id, r.count)).collect();
        assert_eq!(top, [(1, "b".to_string(), 8), (2, "a".to_string(), 5)]);
        assert_eq!(s.top_list(day, By::Revenue, 1).unwrap()[0].source, "batch");
        assert!(s.pending().unwrap().contains(&day));
        // A run clears only the generation it started from.
        let generation = s.pending_generation(day).unwrap().unwrap();
        s.add_pending(&[day]).unwrap();
        s.remove_pending(day, generation).unwrap();
        assert!(s.pending().unwrap().contains(&day), "made stale again while running: stays pending");
        s.remove_pending(day, generation + 1).unwrap();
        assert!(!s.pending().unwrap().contains(&day));
        assert_eq!(s.hour_version(Bucket::containing(Granularity::Hour, DAY0)).unwrap(), Some(1));
    }

    #[test]
    fn upgrading_a_store_backfills_the_totals_of_exact_buckets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.db");
        let day = Bucket::containing(Granularity::Day, DAY0);
        {
            // A store as the previous release left it: migrations 1 and 2 only.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE schema_migrations (version BIGINT PRIMARY KEY)").unwrap();
            for (version, sql) in &MIGRATIONS[..2] {
                conn.execute_batch(&sql.replace("{ID}", "INTEGER PRIMARY KEY").replace("{BLOB}", "BLOB")).unwrap();
                conn.execute("INSERT INTO schema_migrations (version) VALUES (?1)", [version]).unwrap();
            }
            for (p, c) in [("a", 5), ("b", 3)] {
                let params: [&dyn ToSql; 5] = [&"day", &DAY0, &p, &c, &(c * 10)];
                exec(&conn, INSERT_ROW, &params).unwrap();
            }
            regenerate_top_lists(&conn, day, 10).unwrap_err(); // bucket_totals does not exist yet
            conn.execute_batch("DELETE FROM top_lists").unwrap();
            for (rank, p, c) in [(1, "a", 5), (2, "b", 3)] {
                let params: [&dyn ToSql; 7] = [&"day", &DAY0, &"quantity", &rank, &p, &c, &(c * 10)];
                exec(&conn, INSERT_TOP_ROW, &params).unwrap();
            }
        }
        let mut s = SqliteStore::open(&path).unwrap();
        let exact = s.exact_buckets(Granularity::Day, DAY0, DAY0 + 1).unwrap();
        assert_eq!(exact, [ExactBucket { bucket: day, count: 8, revenue_cents: 80, products: 2 }]);
    }

    #[test]
    fn runs_are_recorded_failures_first_and_interrupted_ones_marked() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = SqliteStore::open(dir.path().join("store.db")).unwrap();
        let b = Bucket::containing(Granularity::Hour, DAY0);
        let ok = s.start_run("rollup", b, 1, 10).unwrap();
        s.finish_run(ok, RunStatus::Success, Some(3), None, 20).unwrap();
        let bad = s.start_run("rollup", b, 2, 30).unwrap();
        s.finish_run(bad, RunStatus::Failed, None, Some("disk full"), 40).unwrap();
        s.start_run("top_lists", b, 1, 50).unwrap();
        drop(s);
        let mut s = SqliteStore::open(dir.path().join("store.db")).unwrap();
        assert_eq!(s.fail_interrupted_runs(60).unwrap(), 1);
        let runs = s.runs(10).unwrap();
        assert_eq!(
            runs.iter().map(|r| r.status).collect::<Vec<_>>(),
            [RunStatus::Failed, RunStatus::Failed, RunStatus::Success]
        );
        assert_eq!(runs[0].error.as_deref(), Some("interrupted: the process stopped during the run"));
        assert_eq!(runs[1].error.as_deref(), Some("disk full"));
        assert_eq!(s.attempts("rollup", b).unwrap(), 2);
    }
}
