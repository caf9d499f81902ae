//! The production backend: PostgreSQL over the synchronous `postgres` client (the store
//! is called from blocking threads, like SQLite).
//!
//! What differs from SQLite is written out in [`crate::dialect`].
//!
//! A dropped connection (server restart, network) is re-established at the next call
//! outside a transaction; the call that saw the drop fails, and its caller retries.
//!
//! Many rows at once ([`Conn::insert`]) go by `COPY … FROM STDIN BINARY` when they cannot
//! conflict with stored ones, else 1000 to a multi-row `INSERT`.

use std::collections::HashMap;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::ToSql;
use postgres::{Client, NoTls, Row, Statement};

use crate::dialect::{Dialect, Insert};
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

crate::sql::impl_sql_row!(Row, try_get);

/// Rows per multi-row `INSERT`: far fewer round trips, within the protocol's 65535
/// parameters.
const ROWS_PER_INSERT: usize = 1000;

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
        let prepared = self.client()?.prepare(sql)?;
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
    fn dialect(&self) -> Dialect {
        Dialect::Postgres
    }

    fn exec(&mut self, sql: &str, params: &[Value<'_>]) -> Result<u64> {
        let stmt = self.statement(sql)?;
        Ok(self.client()?.execute(&stmt, &bind(params))?)
    }

    fn insert(&mut self, insert: &Insert, rows: &[Value<'_>]) -> Result<u64> {
        let width = insert.width();
        if let Some(copy) = insert.copy().filter(|_| rows.len() > width) {
            // The prepared one-row INSERT says which column types the rows are encoded as.
            let types = self.statement(&insert.values(1))?.params().to_vec();
            let mut writer = BinaryCopyInWriter::new(self.client()?.copy_in(&copy)?, &types);
            for row in rows.chunks(width) {
                writer.write(&bind(row))?;
            }
            return Ok(writer.finish()?);
        }
        let mut n = 0;
        for chunk in rows.chunks(width * ROWS_PER_INSERT) {
            n += self.exec(&insert.values(chunk.len() / width), chunk)?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_left_out_of_messages() {
        assert_eq!(redact("postgres://topk:secret@db:5432/topk"), "postgres://topk:***@db:5432/topk");
        assert_eq!(redact("postgres://db/topk"), "postgres://db/topk");
    }
}
