//! The production backend: PostgreSQL over the synchronous `postgres` client (the store
//! is called from blocking threads, like SQLite).
//!
//! Dialect, applied to the shared SQL of [`crate::schema`]:
//! - `{ID}` is an identity column and `{BLOB}` is `BYTEA`;
//! - every `TEXT` column uses the "C" collation, so product ids sort (ties in top lists,
//!   prefix searches as ranges) in byte order, as on SQLite, whatever the database's locale;
//! - `json_each($n)` (a JSON array of ids, bound as text) becomes
//!   `json_array_elements_text(($n::text)::json)`.
//!
//! A dropped connection (server restart, network) is re-established at the next call
//! outside a transaction; the call that saw the drop fails, and its caller retries.
//!
//! Many rows at once (`exec_rows`) go by `COPY … FROM STDIN BINARY` when the statement is
//! a plain `INSERT` of parameters, else 1000 to a multi-row `INSERT`.

use std::collections::HashMap;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::sql::{Conn, SqlRow, Value};
use crate::{Result, StoreError};

pub(crate) struct PgConn {
    config: postgres::Config,
    client: Client,
    statements: HashMap<String, Statement>,
    in_transaction: bool,
}

impl From<postgres::Error> for StoreError {
    fn from(e: postgres::Error) -> Self {
        let mut message = e.to_string();
        if let Some(db) = e.as_db_error() {
            message = format!("{message}: {db}");
        } else if let Some(source) = std::error::Error::source(&e) {
            message = format!("{message}: {source}");
        }
        StoreError::Postgres(message)
    }
}

impl SqlRow for Row {
    fn int(&self, i: usize) -> Result<i64> {
        Ok(self.try_get(i)?)
    }
    fn opt_int(&self, i: usize) -> Result<Option<i64>> {
        Ok(self.try_get(i)?)
    }
    fn real(&self, i: usize) -> Result<f64> {
        Ok(self.try_get(i)?)
    }
    fn text(&self, i: usize) -> Result<String> {
        Ok(self.try_get(i)?)
    }
    fn opt_text(&self, i: usize) -> Result<Option<String>> {
        Ok(self.try_get(i)?)
    }
    fn bytes(&self, i: usize) -> Result<Vec<u8>> {
        Ok(self.try_get(i)?)
    }
}

/// Rows per multi-row `INSERT`: far fewer round trips, within the protocol's 65535
/// parameters.
const ROWS_PER_INSERT: usize = 1000;

/// A one-row `INSERT … VALUES (…) …` turned into one of `rows` rows, the parameters of
/// row `r` renumbered `$k` → `$(k + r × width)`.
fn multi_row(sql: &str, width: usize, rows: usize) -> Option<String> {
    let open = sql.find("VALUES (")? + "VALUES ".len();
    let close = open + sql[open..].find(')')?;
    let tuple = &sql[open..=close];
    let mut out = String::with_capacity(sql.len() + rows * (tuple.len() + 8));
    out.push_str(&sql[..open]);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        let mut chars = tuple.char_indices().peekable();
        while let Some((_, ch)) = chars.next() {
            if ch != '$' {
                out.push(ch);
                continue;
            }
            let digits: String =
                std::iter::from_fn(|| chars.next_if(|(_, d)| d.is_ascii_digit()).map(|(_, d)| d)).collect();
            let k: usize = digits.parse().ok()?;
            out.push_str(&format!("${}", k + r * width));
        }
    }
    out.push_str(&sql[close + 1..]);
    Some(out)
}

/// The `COPY … FROM STDIN BINARY` that loads what `sql` inserts, if `sql` is a plain
/// `INSERT INTO t (cols) VALUES ($1, …, $width)`: no constants, no `ON CONFLICT`.
fn copy_of(sql: &str, width: usize) -> Option<String> {
    let sql = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    let (target, values) = sql.strip_prefix("INSERT INTO ")?.split_once(" VALUES ")?;
    let params: Vec<String> = (1..=width).map(|i| format!("${i}")).collect();
    (values == format!("({})", params.join(", ")) && target.ends_with(')'))
        .then(|| format!("COPY {target} FROM STDIN BINARY"))
}

/// Rewrites SQLite's `json_each($n)` into PostgreSQL's form (see the module docs).
fn dialect(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut rest = sql;
    while let Some(at) = rest.find("json_each($") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "json_each(".len()..];
        let end = after.find(')').unwrap_or(after.len());
        out.push_str(&format!("json_array_elements_text(({}::text)::json) AS value", &after[..end]));
        rest = after.get(end + 1..).unwrap_or("");
    }
    out.push_str(rest);
    out
}

impl PgConn {
    pub(crate) fn connect(url: &str) -> Result<PgConn> {
        let config: postgres::Config =
            url.parse().map_err(|e| StoreError::Open { path: redact(url), reason: format!("{e}") })?;
        let client = config
            .connect(NoTls)
            .map_err(|e| StoreError::Open { path: redact(url), reason: StoreError::from(e).to_string() })?;
        Ok(PgConn { config, client, statements: HashMap::new(), in_transaction: false })
    }

    /// The client, reconnected first if the connection was lost between transactions.
    fn client(&mut self) -> Result<&mut Client> {
        if self.client.is_closed() {
            if self.in_transaction {
                return Err(StoreError::Postgres("connection lost during a transaction".into()));
            }
            self.client = self.config.connect(NoTls)?;
            self.statements.clear();
            tracing::warn!("reconnected to postgresql");
        }
        Ok(&mut self.client)
    }

    fn statement(&mut self, sql: &str) -> Result<Statement> {
        if let Some(s) = self.statements.get(sql) {
            if !self.client.is_closed() {
                return Ok(s.clone());
            }
        }
        let prepared = self.client()?.prepare(&dialect(sql))?;
        self.statements.insert(sql.to_owned(), prepared.clone());
        Ok(prepared)
    }
}

/// A URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

fn bind<'a>(params: &'a [Value<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    params
        .iter()
        .map(|p| -> &(dyn ToSql + Sync) {
            match p {
                Value::Int(v) => v,
                Value::Real(v) => v,
                Value::Text(v) => v,
                Value::Bytes(v) => v,
            }
        })
        .collect()
}

impl Conn for PgConn {
    fn exec(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        Ok(self.client()?.execute(&stmt, &bind(params))?)
    }

    fn exec_rows(&mut self, sql: &str, width: usize, rows: &[Value<'_>]) -> Result<u64> {
        if let Some(copy) = copy_of(sql, width).filter(|_| rows.len() > width) {
            // The prepared INSERT says which column types the rows are encoded as.
            let types = self.statement(sql)?.params().to_vec();
            let mut writer = BinaryCopyInWriter::new(self.client()?.copy_in(&copy)?, &types);
            for row in rows.chunks(width) {
                writer.write(&bind(row))?;
            }
            return Ok(writer.finish()?);
        }
        let mut n = 0;
        for chunk in rows.chunks(width * ROWS_PER_INSERT) {
            let count = chunk.len() / width;
            let many = multi_row(sql, width, count)
                .ok_or_else(|| StoreError::Corrupt(format!("not a one-row INSERT … VALUES (…): {sql}")))?;
            n += self.exec(&many, chunk)?;
        }
        Ok(n)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[Value<'_>],
        each: &mut dyn FnMut(&dyn SqlRow) -> Result<()>,
    ) -> Result<()> {
        let stmt = self.statement(sql)?;
        for row in self.client()?.query(&stmt, &bind(params))? {
            each(&row)?;
        }
        Ok(())
    }

    fn script(&mut self, sql: &str) -> Result<()> {
        let result = self.client().and_then(|c| Ok(c.batch_execute(sql)?));
        match sql {
            "BEGIN" => self.in_transaction = result.is_ok(),
            "COMMIT" | "ROLLBACK" => self.in_transaction = false,
            _ => {}
        }
        result
    }

    fn migration(&self, sql: &str) -> String {
        sql.replace("{ID}", "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY")
            .replace("{BLOB}", "BYTEA")
            .replace(" TEXT", " TEXT COLLATE \"C\"")
    }

    fn begin(&self) -> &'static str {
        "BEGIN"
    }

    fn migration_lock(&self) -> Option<&'static str> {
        // Processes starting together wait for one another's migrations.
        Some("SELECT pg_advisory_xact_lock(7401215)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_each_becomes_json_array_elements_text() {
        assert_eq!(
            dialect("SELECT a FROM t WHERE b = $1 AND id IN (SELECT value FROM json_each($3))"),
            "SELECT a FROM t WHERE b = $1 AND id IN (SELECT value FROM json_array_elements_text(($3::text)::json) AS value)"
        );
        assert_eq!(dialect("SELECT 1"), "SELECT 1");
    }

    #[test]
    fn one_row_inserts_become_multi_row_ones() {
        let sql = "INSERT INTO t (a, b, c) VALUES ($1, $2, 0) ON CONFLICT (a) DO UPDATE SET b = excluded.b";
        assert_eq!(
            multi_row(sql, 2, 3).unwrap(),
            "INSERT INTO t (a, b, c) VALUES ($1, $2, 0), ($3, $4, 0), ($5, $6, 0) ON CONFLICT (a) DO UPDATE SET b = excluded.b"
        );
        assert_eq!(
            multi_row("INSERT INTO t VALUES ($1, $12)", 12, 2).unwrap(),
            "INSERT INTO t VALUES ($1, $12), ($13, $24)"
        );
        assert_eq!(multi_row("DELETE FROM t", 1, 2), None);
    }

    #[test]
    fn plain_inserts_of_parameters_become_copies() {
        use crate::schema::{INSERT_ROW, INSERT_SPEED_ROW, INSERT_TOP_ROW, UPSERT_ROW};
        assert_eq!(
            copy_of(INSERT_ROW, 5).unwrap(),
            "COPY batch_table (granularity, bucket_start, product_id, count, revenue_cents) FROM STDIN BINARY"
        );
        assert!(copy_of(INSERT_SPEED_ROW, 7).unwrap().starts_with("COPY speed_table (granularity, "));
        assert_eq!(copy_of(INSERT_ROW, 4), None, "five parameters, not four");
        assert_eq!(copy_of(INSERT_TOP_ROW, 7), None, "constants in VALUES");
        assert_eq!(copy_of(UPSERT_ROW, 5), None, "ON CONFLICT");
        assert_eq!(copy_of("INSERT INTO t VALUES ($1)", 1), None, "no column list");
    }

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(redact("postgres://topk:secret@db:5432/topk"), "postgres://topk:***@db:5432/topk");
        assert_eq!(redact("postgres://db/topk"), "postgres://db/topk");
    }
}
