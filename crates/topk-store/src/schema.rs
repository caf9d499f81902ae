//! The schema: each migration is applied once, in order, and recorded in
//! `schema_migrations`. Column types that differ between the dialects come from
//! [`Dialect`]; the queries live beside the role that runs them (`batch.rs`, `speed.rs`,
//! `serving.rs`, `catalog.rs`).

use crate::dialect::Dialect;

/// The columns of `batch_table`, the exact rows, in the order they are inserted.
pub const EXACT_COLUMNS: &[&str] =
    &["granularity", "bucket_start", "breakdown", "product_id", "count", "revenue_cents"];

/// The tables that migration 6 gives a `breakdown` column, each with its columns (before
/// it) and its primary key (after it).
const BROKEN_DOWN: [(&str, &str, &str); 6] = [
    (
        "batch_table",
        "granularity, bucket_start, product_id, count, revenue_cents",
        "granularity, bucket_start, breakdown, product_id",
    ),
    (
        "top_lists",
        "granularity, bucket_start, ranked_by, rank, product_id, count, revenue_cents, error_bound, source",
        "granularity, bucket_start, breakdown, ranked_by, rank",
    ),
    (
        "bucket_totals",
        "granularity, bucket_start, count, revenue_cents, products, min_count, min_revenue_cents",
        "granularity, bucket_start, breakdown",
    ),
    (
        "speed_table",
        "granularity, bucket_start, product_id, count_estimate, error_bound, revenue_estimate, updated_at",
        "granularity, bucket_start, breakdown, product_id",
    ),
    (
        "speed_buckets",
        "granularity, bucket_start, unlisted_bound, total_count, updated_at",
        "granularity, bucket_start, breakdown",
    ),
    (
        "speed_sketches",
        "granularity, bucket_start, partition_id, sketch",
        "granularity, bucket_start, breakdown, partition_id",
    ),
];

/// Migration 6: breakdowns. Every table of rows, lists, totals and sketches gets a
/// `breakdown` column (`''` for the global lists, `country=DE` for Germany's), part of its
/// primary key after the bucket; `breakdown_values` holds the values each set admitted
/// (at most `breakdown_max_values`; later ones count under `(other)`), and
/// `breakdown_sets` the sets the stored rows were computed for.
fn breakdowns(dialect: Dialect) -> String {
    let mut sql = String::new();
    for (table, columns, key) in BROKEN_DOWN {
        match dialect {
            // SQLite cannot change a primary key: the rows are copied into a new table.
            Dialect::Sqlite => sql.push_str(&format!(
                "ALTER TABLE {table} RENAME TO {table}_v5;
    CREATE TABLE {table} ({}, PRIMARY KEY ({key})){};
    INSERT INTO {table} ({columns}, breakdown) SELECT {columns}, '' FROM {table}_v5;
    DROP TABLE {table}_v5;\n",
                sqlite_columns(table),
                if matches!(table, "batch_table" | "top_lists" | "speed_table") { " WITHOUT ROWID" } else { "" },
            )),
            Dialect::Postgres => sql.push_str(&format!(
                "ALTER TABLE {table} ADD COLUMN breakdown TEXT NOT NULL DEFAULT '';
    ALTER TABLE {table} DROP CONSTRAINT {table}_pkey;
    ALTER TABLE {table} ADD PRIMARY KEY ({key});\n"
            )),
        }
    }
    sql.push_str(
        "CREATE TABLE breakdown_values (
        dim_set TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (dim_set, value)
    );
    CREATE TABLE breakdown_sets (
        dim_set TEXT PRIMARY KEY
    );",
    );
    sql
}

/// A broken-down table's columns as SQLite declares them (types as migrations 1–5 made them).
fn sqlite_columns(table: &str) -> &'static str {
    match table {
        "batch_table" => {
            "granularity TEXT NOT NULL, bucket_start BIGINT NOT NULL, breakdown TEXT NOT NULL DEFAULT '',
        product_id TEXT NOT NULL, count BIGINT NOT NULL, revenue_cents BIGINT NOT NULL"
        }
        "top_lists" => {
            "granularity TEXT NOT NULL, bucket_start BIGINT NOT NULL, breakdown TEXT NOT NULL DEFAULT '',
        ranked_by TEXT NOT NULL, rank BIGINT NOT NULL, product_id TEXT NOT NULL, count BIGINT NOT NULL,
        revenue_cents BIGINT NOT NULL, error_bound BIGINT NOT NULL, source TEXT NOT NULL"
        }
        "bucket_totals" => {
            "granularity TEXT NOT NULL, bucket_start BIGINT NOT NULL, breakdown TEXT NOT NULL DEFAULT '',
        count BIGINT NOT NULL, revenue_cents BIGINT NOT NULL, products BIGINT NOT NULL, min_count BIGINT,
        min_revenue_cents BIGINT"
        }
        "speed_table" => {
            "granularity TEXT NOT NULL, bucket_start BIGINT NOT NULL, breakdown TEXT NOT NULL DEFAULT '',
        product_id TEXT NOT NULL, count_estimate BIGINT NOT NULL, error_bound BIGINT NOT NULL,
        revenue_estimate BIGINT NOT NULL DEFAULT 0, updated_at BIGINT NOT NULL"
        }
        "speed_buckets" => {
            "granularity TEXT NOT NULL, bucket_start BIGINT NOT NULL, breakdown TEXT NOT NULL DEFAULT '',
        unlisted_bound BIGINT NOT NULL, total_count BIGINT NOT NULL, updated_at BIGINT NOT NULL"
        }
        _ => {
            "granularity TEXT NOT NULL, bucket_start BIGINT NOT NULL, breakdown TEXT NOT NULL DEFAULT '',
        partition_id BIGINT NOT NULL, sketch BLOB NOT NULL"
        }
    }
}

/// `(version, statements)` in `dialect`.
pub fn migrations(dialect: Dialect) -> [(i64, String); 8] {
    let (text, id, blob) = (dialect.text(), dialect.id_column(), dialect.blob());
    [
        (
            1,
            format!(
                "CREATE TABLE batch_table (
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        product_id {text} NOT NULL,
        count BIGINT NOT NULL,
        revenue_cents BIGINT NOT NULL,
        PRIMARY KEY (granularity, bucket_start, product_id)
    );
    CREATE TABLE speed_table (
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        product_id {text} NOT NULL,
        count_estimate BIGINT NOT NULL,
        error_bound BIGINT NOT NULL,
        revenue_estimate BIGINT NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (granularity, bucket_start, product_id)
    );
    CREATE TABLE top_lists (
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        ranked_by {text} NOT NULL,
        rank BIGINT NOT NULL,
        product_id {text} NOT NULL,
        count BIGINT NOT NULL,
        revenue_cents BIGINT NOT NULL,
        error_bound BIGINT NOT NULL,
        source {text} NOT NULL,
        PRIMARY KEY (granularity, bucket_start, ranked_by, rank)
    );
    CREATE TABLE pipeline_runs (
        id {id},
        task {text} NOT NULL,
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        status {text} NOT NULL,
        attempt BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        finished_at BIGINT,
        rows_written BIGINT,
        error {text}
    );
    CREATE INDEX pipeline_runs_bucket ON pipeline_runs (task, granularity, bucket_start);
    CREATE TABLE products (
        product_id {text} PRIMARY KEY,
        name {text},
        category {text}
    );
    CREATE TABLE accuracy (
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        precision_at_10 DOUBLE PRECISION,
        precision_at_100 DOUBLE PRECISION,
        max_relative_error DOUBLE PRECISION,
        mean_relative_error DOUBLE PRECISION,
        bound_coverage DOUBLE PRECISION,
        scored_at BIGINT NOT NULL,
        PRIMARY KEY (granularity, bucket_start)
    );
    CREATE TABLE batch_pending (
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        generation BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (granularity, bucket_start)
    );
    CREATE TABLE batch_hour_versions (
        bucket_start BIGINT PRIMARY KEY,
        archive_version BIGINT NOT NULL
    );"
            ),
        ),
        (
            2,
            format!(
                "CREATE TABLE speed_sketches (
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        partition_id BIGINT NOT NULL,
        sketch {blob} NOT NULL,
        PRIMARY KEY (granularity, bucket_start, partition_id)
    );
    CREATE TABLE consumer_offsets (
        consumer {text} NOT NULL,
        partition_id BIGINT NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (consumer, partition_id)
    );"
            ),
        ),
        (
            3,
            format!(
                "CREATE TABLE speed_buckets (
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        unlisted_bound BIGINT NOT NULL,
        total_count BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (granularity, bucket_start)
    );
    CREATE TABLE bucket_totals (
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        count BIGINT NOT NULL,
        revenue_cents BIGINT NOT NULL,
        products BIGINT NOT NULL,
        PRIMARY KEY (granularity, bucket_start)
    );
    INSERT INTO bucket_totals (granularity, bucket_start, count, revenue_cents, products)
        SELECT b.granularity, b.bucket_start, SUM(b.count), SUM(b.revenue_cents), COUNT(*) FROM batch_table b
        WHERE EXISTS (SELECT 1 FROM top_lists l
            WHERE l.granularity = b.granularity AND l.bucket_start = b.bucket_start)
        GROUP BY b.granularity, b.bucket_start;
    ALTER TABLE products ADD COLUMN name_key {text};
    CREATE INDEX products_name_key ON products (name_key);"
            ),
        ),
        (
            // The least count and revenue of an exact bucket's rows: how low any product
            // can be there (refunds can make it negative), which bounds the movers that
            // the stored lists do not reach.
            4,
            "ALTER TABLE bucket_totals ADD COLUMN min_count BIGINT;
    ALTER TABLE bucket_totals ADD COLUMN min_revenue_cents BIGINT;
    UPDATE bucket_totals SET
        min_count = (SELECT MIN(b.count) FROM batch_table b
            WHERE b.granularity = bucket_totals.granularity AND b.bucket_start = bucket_totals.bucket_start),
        min_revenue_cents = (SELECT MIN(b.revenue_cents) FROM batch_table b
            WHERE b.granularity = bucket_totals.granularity AND b.bucket_start = bucket_totals.bucket_start);"
                .to_string(),
        ),
        (
            // SQLite: the exact rows and the top lists stored in their primary key's B-tree
            // (`WITHOUT ROWID`) rather than in a rowid table plus an index of the key: one
            // B-tree to write per row instead of two, and reads by key go straight to the
            // row. PostgreSQL has no such choice.
            5,
            match dialect {
                Dialect::Sqlite => "CREATE TABLE batch_table_v5 (
        granularity TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        product_id TEXT NOT NULL,
        count BIGINT NOT NULL,
        revenue_cents BIGINT NOT NULL,
        PRIMARY KEY (granularity, bucket_start, product_id)
    ) WITHOUT ROWID;
    INSERT INTO batch_table_v5 SELECT granularity, bucket_start, product_id, count, revenue_cents FROM batch_table;
    DROP TABLE batch_table;
    ALTER TABLE batch_table_v5 RENAME TO batch_table;
    CREATE TABLE top_lists_v5 (
        granularity TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        ranked_by TEXT NOT NULL,
        rank BIGINT NOT NULL,
        product_id TEXT NOT NULL,
        count BIGINT NOT NULL,
        revenue_cents BIGINT NOT NULL,
        error_bound BIGINT NOT NULL,
        source TEXT NOT NULL,
        PRIMARY KEY (granularity, bucket_start, ranked_by, rank)
    ) WITHOUT ROWID;
    INSERT INTO top_lists_v5 SELECT granularity, bucket_start, ranked_by, rank, product_id, count,
        revenue_cents, error_bound, source FROM top_lists;
    DROP TABLE top_lists;
    ALTER TABLE top_lists_v5 RENAME TO top_lists;"
                    .to_string(),
                Dialect::Postgres => "SELECT 1".to_string(),
            },
        ),
        (6, breakdowns(dialect)),
        (
            // A breakdown whose rows in a bucket are the global rows themselves (every sale
            // of the bucket has the same value of the set: `category=(none)` where the
            // events carry no category) is marked here instead of stored a second time.
            // Its lists and totals are stored as any breakdown's.
            7,
            format!(
                "CREATE TABLE batch_as_global (
        granularity {text} NOT NULL,
        bucket_start BIGINT NOT NULL,
        breakdown {text} NOT NULL,
        PRIMARY KEY (granularity, bucket_start, breakdown)
    )"
            ),
        ),
        (
            // The event time up to which the speed layer's written estimates are complete
            // (the least watermark of the flush batches it has absorbed), with its offsets
            // at every write: the batch layer scores a bucket's estimates only once they
            // cover it, and waits for them a bounded time while the speed layer is alive.
            8,
            format!(
                "CREATE TABLE speed_watermark (
        consumer {text} PRIMARY KEY,
        watermark_ms BIGINT NOT NULL,
        updated_at BIGINT NOT NULL
    )"
            ),
        ),
    ]
}
