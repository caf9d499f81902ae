//! What differs between SQLite and PostgreSQL, written out: nothing here rewrites SQL
//! text (the SQLite backend only writes the `$n` parameters `?n`, which it numbers the
//! same). Statements are either the same on both (most of them: `$n` parameters,
//! `ON CONFLICT`, `RETURNING`) or given once per dialect ([`PerDialect`]); bulk inserts
//! are described ([`Insert`]) and each backend builds its statement from the description:
//! SQLite multi-row `INSERT`s, PostgreSQL `COPY … FROM STDIN BINARY` or multi-row
//! `INSERT`s.

/// A SQL backend's dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The type of an auto-increment id column that is the primary key.
    pub fn id_column(self) -> &'static str {
        match self {
            Dialect::Sqlite => "INTEGER PRIMARY KEY",
            Dialect::Postgres => "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
        }
    }

    /// The type of a binary column.
    pub fn blob(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BLOB",
            Dialect::Postgres => "BYTEA",
        }
    }

    /// The type of a text column. On PostgreSQL it uses the "C" collation, so product ids
    /// sort (ties in top lists, prefix searches as ranges) in byte order, as on SQLite,
    /// whatever the database's locale.
    pub fn text(self) -> &'static str {
        match self {
            Dialect::Sqlite => "TEXT",
            Dialect::Postgres => "TEXT COLLATE \"C\"",
        }
    }

    /// Starts a transaction that will write: SQLite takes the write lock at once
    /// (`BEGIN IMMEDIATE`, so that two writers wait for each other instead of failing with
    /// "database is locked" when both try to upgrade a read lock).
    pub fn begin(self) -> &'static str {
        match self {
            Dialect::Sqlite => "BEGIN IMMEDIATE",
            Dialect::Postgres => "BEGIN",
        }
    }

    /// A statement that makes concurrent migrations of one database wait for each other,
    /// run first in the migration transaction (SQLite's `BEGIN IMMEDIATE` already does).
    pub fn migration_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock(7401215)"),
        }
    }

    /// A statement that makes the transactions writing one bucket's rows wait for each
    /// other (`$1`: [`bucket_lock_key`]): the batch layer's commit of its exact answer,
    /// and a speed-layer write of its estimates, which looks inside its transaction
    /// whether that answer is there. SQLite's `BEGIN IMMEDIATE` already serialises every
    /// writer.
    pub fn bucket_lock(self) -> Option<&'static str> {
        match self {
            Dialect::Sqlite => None,
            Dialect::Postgres => Some("SELECT pg_advisory_xact_lock($1)"),
        }
    }
}

/// The advisory lock key of a bucket ([`Dialect::bucket_lock`]): its granularity above
/// bit 40, its start in seconds below (until the year 36812); clear of the migration lock's.
pub fn bucket_lock_key(bucket: topk_core::time::Bucket) -> i64 {
    ((bucket.granularity as i64 + 1) << 40) | (bucket.start_ms.div_euclid(1000) & ((1 << 40) - 1))
}

/// A statement written once per dialect.
#[derive(Debug, Clone, Copy)]
pub struct PerDialect {
    pub sqlite: &'static str,
    pub postgres: &'static str,
}

impl PerDialect {
    pub fn get(&self, dialect: Dialect) -> &'static str {
        match dialect {
            Dialect::Sqlite => self.sqlite,
            Dialect::Postgres => self.postgres,
        }
    }
}

/// An `INSERT` of parameter rows: `INSERT INTO table (columns) VALUES ($1, …) conflict`.
#[derive(Debug, Clone, Copy)]
pub struct Insert {
    pub table: &'static str,
    pub columns: &'static [&'static str],
    /// An `ON CONFLICT …` clause, if rows may already exist.
    pub on_conflict: Option<&'static str>,
}

impl Insert {
    /// Parameters per row.
    pub fn width(&self) -> usize {
        self.columns.len()
    }

    /// The statement inserting `rows` rows, the parameters of row `r` numbered from
    /// `r × width + 1`.
    pub fn values(&self, rows: usize) -> String {
        let w = self.width();
        let tuples: Vec<String> = (0..rows)
            .map(|r| {
                let params: Vec<String> = (1..=w).map(|i| format!("${}", r * w + i)).collect();
                format!("({})", params.join(", "))
            })
            .collect();
        let mut sql = format!("INSERT INTO {} ({}) VALUES {}", self.table, self.columns.join(", "), tuples.join(", "));
        if let Some(conflict) = self.on_conflict {
            sql.push(' ');
            sql.push_str(conflict);
        }
        sql
    }

    /// PostgreSQL's bulk load of the same rows, where rows cannot conflict.
    pub fn copy(&self) -> Option<String> {
        self.on_conflict
            .is_none()
            .then(|| format!("COPY {} ({}) FROM STDIN BINARY", self.table, self.columns.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Insert = Insert { table: "t", columns: &["a", "b"], on_conflict: Some("ON CONFLICT (a) DO NOTHING") };

    #[test]
    fn inserts_are_built_for_any_number_of_rows() {
        assert_eq!(T.values(1), "INSERT INTO t (a, b) VALUES ($1, $2) ON CONFLICT (a) DO NOTHING");
        assert_eq!(T.values(3), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6) ON CONFLICT (a) DO NOTHING");
        assert_eq!(T.copy(), None, "rows that may conflict cannot be copied");
        let plain = Insert { on_conflict: None, ..T };
        assert_eq!(plain.values(2), "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)");
        assert_eq!(plain.copy().unwrap(), "COPY t (a, b) FROM STDIN BINARY");
    }
}
