//! The schema and the queries, shared by every SQL backend.
//!
//! Each migration is applied once, in order, and recorded in `schema_migrations`. The
//! dialect differences — the id column of `pipeline_runs`, the binary column type, text
//! collation, and reading a JSON array of ids — are applied by each backend
//! (`postgres.rs` lists PostgreSQL's).

/// `(version, statements)`; `{ID}` is replaced by the backend's auto-increment id type and
/// `{BLOB}` by its binary type.
pub const MIGRATIONS: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE batch_table (
        granularity TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        product_id TEXT NOT NULL,
        count BIGINT NOT NULL,
        revenue_cents BIGINT NOT NULL,
        PRIMARY KEY (granularity, bucket_start, product_id)
    );
    CREATE TABLE speed_table (
        granularity TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        product_id TEXT NOT NULL,
        count_estimate BIGINT NOT NULL,
        error_bound BIGINT NOT NULL,
        revenue_estimate BIGINT NOT NULL DEFAULT 0,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (granularity, bucket_start, product_id)
    );
    CREATE TABLE top_lists (
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
    );
    CREATE TABLE pipeline_runs (
        id {ID},
        task TEXT NOT NULL,
        granularity TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        status TEXT NOT NULL,
        attempt BIGINT NOT NULL,
        started_at BIGINT NOT NULL,
        finished_at BIGINT,
        rows_written BIGINT,
        error TEXT
    );
    CREATE INDEX pipeline_runs_bucket ON pipeline_runs (task, granularity, bucket_start);
    CREATE TABLE products (
        product_id TEXT PRIMARY KEY,
        name TEXT,
        category TEXT
    );
    CREATE TABLE accuracy (
        granularity TEXT NOT NULL,
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
        granularity TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        generation BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (granularity, bucket_start)
    );
    CREATE TABLE batch_hour_versions (
        bucket_start BIGINT PRIMARY KEY,
        archive_version BIGINT NOT NULL
    );",
    ),
    (
        2,
        "CREATE TABLE speed_sketches (
        granularity TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        partition_id BIGINT NOT NULL,
        sketch {BLOB} NOT NULL,
        PRIMARY KEY (granularity, bucket_start, partition_id)
    );
    CREATE TABLE consumer_offsets (
        consumer TEXT NOT NULL,
        partition_id BIGINT NOT NULL,
        next_offset BIGINT NOT NULL,
        PRIMARY KEY (consumer, partition_id)
    );",
    ),
    (
        3,
        "CREATE TABLE speed_buckets (
        granularity TEXT NOT NULL,
        bucket_start BIGINT NOT NULL,
        unlisted_bound BIGINT NOT NULL,
        total_count BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (granularity, bucket_start)
    );
    CREATE TABLE bucket_totals (
        granularity TEXT NOT NULL,
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
    ALTER TABLE products ADD COLUMN name_key TEXT;
    CREATE INDEX products_name_key ON products (name_key);",
    ),
];

pub const DELETE_BUCKET_ROWS: &str = "DELETE FROM batch_table WHERE granularity = $1 AND bucket_start = $2";
pub const INSERT_ROW: &str =
    "INSERT INTO batch_table (granularity, bucket_start, product_id, count, revenue_cents) VALUES ($1, $2, $3, $4, $5)";
/// Sums the child granularity's rows inside [start, end) into the bucket.
pub const ROLLUP: &str = "INSERT INTO batch_table (granularity, bucket_start, product_id, count, revenue_cents)
    SELECT $1, $2, product_id, SUM(count), SUM(revenue_cents) FROM batch_table
    WHERE granularity = $3 AND bucket_start >= $2 AND bucket_start < $4
    GROUP BY product_id";
pub const BUCKET_ROWS: &str =
    "SELECT product_id, count, revenue_cents FROM batch_table WHERE granularity = $1 AND bucket_start = $2 ORDER BY product_id";
pub const DELETE_SPEED_ROWS: &str = "DELETE FROM speed_table WHERE granularity = $1 AND bucket_start = $2";
pub const DELETE_TOP_LISTS: &str = "DELETE FROM top_lists WHERE granularity = $1 AND bucket_start = $2";
/// A bucket's best `$3` rows by `{ORDER}`; ties break by product id so lists are
/// deterministic. `ORDER BY … LIMIT` lets both databases keep a top-N heap instead of
/// sorting the whole bucket (5–10× faster than numbering every row with a window function).
pub const TOP_ROWS: &str = "SELECT product_id, count, revenue_cents FROM batch_table
    WHERE granularity = $1 AND bucket_start = $2 ORDER BY {ORDER} DESC, product_id LIMIT $3";
pub const INSERT_TOP_ROW: &str = "INSERT INTO top_lists
    (granularity, bucket_start, ranked_by, rank, product_id, count, revenue_cents, error_bound, source)
    VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 'batch')";
pub const TOP_LIST: &str = "SELECT rank, product_id, count, revenue_cents, error_bound, source FROM top_lists
    WHERE granularity = $1 AND bucket_start = $2 AND ranked_by = $3 AND rank <= $4 ORDER BY rank";
pub const HOUR_VERSION: &str = "SELECT archive_version FROM batch_hour_versions WHERE bucket_start = $1";
pub const SET_HOUR_VERSION: &str = "INSERT INTO batch_hour_versions (bucket_start, archive_version) VALUES ($1, $2)
    ON CONFLICT (bucket_start) DO UPDATE SET archive_version = excluded.archive_version";
pub const ADD_PENDING: &str = "INSERT INTO batch_pending (granularity, bucket_start, generation) VALUES ($1, $2, 0)
    ON CONFLICT (granularity, bucket_start) DO UPDATE SET generation = batch_pending.generation + 1";
/// Only the generation the run started from: a bucket made stale again meanwhile stays.
pub const REMOVE_PENDING: &str =
    "DELETE FROM batch_pending WHERE granularity = $1 AND bucket_start = $2 AND generation = $3";
pub const PENDING_GENERATION: &str =
    "SELECT generation FROM batch_pending WHERE granularity = $1 AND bucket_start = $2";
pub const PENDING: &str = "SELECT granularity, bucket_start FROM batch_pending ORDER BY bucket_start, granularity";
pub const START_RUN: &str = "INSERT INTO pipeline_runs (task, granularity, bucket_start, status, attempt, started_at)
    VALUES ($1, $2, $3, 'running', $4, $5) RETURNING id";
pub const FINISH_RUN: &str =
    "UPDATE pipeline_runs SET status = $1, rows_written = $2, error = $3, finished_at = $4 WHERE id = $5";
pub const FAIL_INTERRUPTED: &str = "UPDATE pipeline_runs SET status = 'failed',
    error = 'interrupted: the process stopped during the run', finished_at = $1 WHERE status = 'running'";
pub const ATTEMPTS: &str =
    "SELECT COUNT(*) FROM pipeline_runs WHERE task = $1 AND granularity = $2 AND bucket_start = $3";
pub const RUNS: &str = "SELECT id, task, granularity, bucket_start, status, attempt, started_at, finished_at,
    rows_written, error FROM pipeline_runs
    ORDER BY CASE status WHEN 'failed' THEN 0 WHEN 'running' THEN 1 ELSE 2 END, id DESC LIMIT $1";
/// Retention drops an hour's rows, and with them its top lists and totals: without the
/// rows a range cannot be answered exactly from that hour any more.
pub const DELETE_HOURS_BEFORE: &str = "DELETE FROM batch_table WHERE granularity = 'hour' AND bucket_start < $1";
pub const DELETE_HOUR_LISTS_BEFORE: &str = "DELETE FROM top_lists WHERE granularity = 'hour' AND bucket_start < $1";
pub const DELETE_HOUR_TOTALS_BEFORE: &str =
    "DELETE FROM bucket_totals WHERE granularity = 'hour' AND bucket_start < $1";
pub const UPSERT_ROW: &str =
    "INSERT INTO batch_table (granularity, bucket_start, product_id, count, revenue_cents) VALUES ($1, $2, $3, $4, $5)
    ON CONFLICT (granularity, bucket_start, product_id)
    DO UPDATE SET count = excluded.count, revenue_cents = excluded.revenue_cents";
pub const HAS_EXACT: &str = "SELECT COUNT(*) FROM top_lists WHERE granularity = $1 AND bucket_start = $2";
pub const INSERT_SPEED_ROW: &str = "INSERT INTO speed_table
    (granularity, bucket_start, product_id, count_estimate, error_bound, revenue_estimate, updated_at)
    VALUES ($1, $2, $3, $4, $5, $6, $7)";
pub const SPEED_ROWS: &str =
    "SELECT product_id, count_estimate, error_bound, revenue_estimate, updated_at FROM speed_table
    WHERE granularity = $1 AND bucket_start = $2 ORDER BY count_estimate DESC, product_id";
pub const UPSERT_SPEED_SKETCH: &str = "INSERT INTO speed_sketches (granularity, bucket_start, partition_id, sketch)
    VALUES ($1, $2, $3, $4)
    ON CONFLICT (granularity, bucket_start, partition_id) DO UPDATE SET sketch = excluded.sketch";
pub const DELETE_SPEED_SKETCHES: &str = "DELETE FROM speed_sketches WHERE granularity = $1 AND bucket_start = $2";
pub const SPEED_SKETCHES: &str = "SELECT granularity, bucket_start, partition_id, sketch FROM speed_sketches";
pub const UPSERT_OFFSET: &str = "INSERT INTO consumer_offsets (consumer, partition_id, next_offset) VALUES ($1, $2, $3)
    ON CONFLICT (consumer, partition_id) DO UPDATE SET next_offset = excluded.next_offset";
pub const OFFSETS: &str =
    "SELECT partition_id, next_offset FROM consumer_offsets WHERE consumer = $1 ORDER BY partition_id";
pub const UPSERT_ACCURACY: &str = "INSERT INTO accuracy (granularity, bucket_start, precision_at_10, precision_at_100,
    max_relative_error, mean_relative_error, bound_coverage, scored_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
    ON CONFLICT (granularity, bucket_start) DO UPDATE SET precision_at_10 = excluded.precision_at_10,
    precision_at_100 = excluded.precision_at_100, max_relative_error = excluded.max_relative_error,
    mean_relative_error = excluded.mean_relative_error, bound_coverage = excluded.bound_coverage,
    scored_at = excluded.scored_at";
pub const ACCURACY: &str = "SELECT granularity, bucket_start, precision_at_10, precision_at_100, max_relative_error,
    mean_relative_error, bound_coverage, scored_at FROM accuracy ORDER BY bucket_start DESC, granularity LIMIT $1";

/// Per approximate bucket: the most any product missing from its rows can have sold, the
/// bucket's exact net quantity, and when the speed layer last wrote it.
pub const UPSERT_SPEED_BUCKET: &str =
    "INSERT INTO speed_buckets (granularity, bucket_start, unlisted_bound, total_count, updated_at)
    VALUES ($1, $2, $3, $4, $5) ON CONFLICT (granularity, bucket_start) DO UPDATE SET
    unlisted_bound = excluded.unlisted_bound, total_count = excluded.total_count, updated_at = excluded.updated_at";
pub const DELETE_SPEED_BUCKET: &str = "DELETE FROM speed_buckets WHERE granularity = $1 AND bucket_start = $2";
pub const SPEED_BUCKETS: &str = "SELECT bucket_start, unlisted_bound, total_count, updated_at FROM speed_buckets
    WHERE granularity = $1 AND bucket_start >= $2 AND bucket_start < $3 ORDER BY bucket_start";
pub const UPSERT_TOTALS: &str = "INSERT INTO bucket_totals (granularity, bucket_start, count, revenue_cents, products)
    SELECT $1, $2, COALESCE(SUM(count), 0), COALESCE(SUM(revenue_cents), 0), COUNT(*) FROM batch_table
    WHERE granularity = $1 AND bucket_start = $2
    ON CONFLICT (granularity, bucket_start) DO UPDATE SET count = excluded.count,
    revenue_cents = excluded.revenue_cents, products = excluded.products";
/// Exact buckets (those with top lists) in a range, with their totals.
pub const EXACT_BUCKETS: &str = "SELECT t.bucket_start, t.count, t.revenue_cents, t.products FROM bucket_totals t
    WHERE t.granularity = $1 AND t.bucket_start >= $2 AND t.bucket_start < $3 AND EXISTS (SELECT 1 FROM top_lists l
    WHERE l.granularity = t.granularity AND l.bucket_start = t.bucket_start) ORDER BY t.bucket_start";
/// Several products' sums in one bucket; `$3` is a JSON array of ids (SQLite's
/// `json_each`, rewritten for PostgreSQL).
pub const PRODUCT_SUMS: &str = "SELECT product_id, count, revenue_cents FROM batch_table
    WHERE granularity = $1 AND bucket_start = $2 AND product_id IN (SELECT value FROM json_each($3))";
pub const RANK_OF: &str = "SELECT rank FROM top_lists
    WHERE granularity = $1 AND bucket_start = $2 AND ranked_by = $3 AND product_id = $4";
pub const UPSERT_PRODUCT: &str = "INSERT INTO products (product_id, name, category, name_key) VALUES ($1, $2, $3, $4)
    ON CONFLICT (product_id) DO UPDATE SET name = COALESCE(excluded.name, products.name),
    category = COALESCE(excluded.category, products.category), name_key = COALESCE(excluded.name_key, products.name_key)";
/// Catalog entries of several products; `$1` is a JSON array of ids (SQLite's form, as
/// [`PRODUCT_SUMS`]).
pub const PRODUCTS: &str =
    "SELECT product_id, name, category FROM products WHERE product_id IN (SELECT value FROM json_each($1))";
/// Prefix searches as ranges (`$1 <= key < $2`), so both databases use the index.
pub const PRODUCTS_BY_ID: &str = "SELECT product_id, name, category FROM products
    WHERE product_id >= $1 AND product_id < $2 ORDER BY product_id LIMIT $3";
pub const PRODUCTS_BY_NAME: &str = "SELECT product_id, name, category FROM products
    WHERE name_key >= $1 AND name_key < $2 ORDER BY name_key, product_id LIMIT $3";
/// Runs per task and status, and the time finished ones took (for metrics).
/// (`SUM` of `BIGINT` is `NUMERIC` on PostgreSQL, hence the cast.)
pub const RUN_STATS: &str = "SELECT task, status, COUNT(*), CAST(COALESCE(SUM(finished_at - started_at), 0) AS BIGINT)
    FROM pipeline_runs GROUP BY task, status ORDER BY task, status";

/// What changes whenever exact rows may have changed: the newest batch run (the batch
/// layer records a run before it touches rows) and Kappa's position in the flush log.
/// A cached exact answer is reused only while this stays the same.
pub const EXACT_GENERATION: &str = "SELECT (SELECT COALESCE(MAX(id), 0) FROM pipeline_runs),
    (SELECT CAST(COALESCE(SUM(next_offset), 0) AS BIGINT) FROM consumer_offsets WHERE consumer = 'kappa')";
