//! The catalog (`products`): every product that sold, with the newest name and category
//! its events carried. The speed role writes it, in the transaction of its offsets (see
//! `speed.rs`); the API reads it.

use crate::dialect::{Insert, PerDialect};
use crate::sql::{json_array, query, Conn, SqlRow, SqlStore, Value};
use crate::{vals, Product, Result};

/// A missing name or category keeps the stored one.
const UPSERT: Insert = Insert {
    table: "products",
    columns: &["product_id", "name", "category", "name_key"],
    on_conflict: Some(
        "ON CONFLICT (product_id) DO UPDATE SET name = COALESCE(excluded.name, products.name),
        category = COALESCE(excluded.category, products.category),
        name_key = COALESCE(excluded.name_key, products.name_key)",
    ),
};
/// Catalog entries of several products; `$1` is a JSON array of ids.
const BY_IDS: PerDialect = PerDialect {
    sqlite: "SELECT product_id, name, category FROM products WHERE product_id IN (SELECT value FROM json_each($1))",
    postgres: "SELECT product_id, name, category FROM products
        WHERE product_id IN (SELECT json_array_elements_text(($1::text)::json))",
};
/// Prefix searches as ranges (`$1 <= key < $2`), so both databases use the index.
const BY_ID_PREFIX: &str = "SELECT product_id, name, category FROM products
    WHERE product_id >= $1 AND product_id < $2 ORDER BY product_id LIMIT $3";
/// Catalog ids in byte order after a cursor (`$1`, "" for the first page).
const IDS_AFTER: &str = "SELECT product_id FROM products WHERE product_id > $1 ORDER BY product_id LIMIT $2";
const BY_NAME_PREFIX: &str = "SELECT product_id, name, category FROM products
    WHERE name_key >= $1 AND name_key < $2 ORDER BY name_key, product_id LIMIT $3";

fn product(r: &dyn SqlRow) -> Result<Product> {
    Ok(Product { product_id: r.text(0)?, name: r.opt_text(1)?, category: r.opt_text(2)? })
}

/// The least string above every string that starts with `prefix` (in byte order).
fn prefix_end(prefix: &str) -> String {
    format!("{prefix}\u{10FFFF}")
}

/// Entries handed to one [`Conn::insert`]: a replay's first write can hold every product
/// of its input, whose parameters at once had taken 25 MB of its peak (BENCHMARKS.md).
pub(crate) const UPSERT_SLICE: usize = 16_384;

/// Upserts catalog entries (ids unique within the call: PostgreSQL cannot update one row
/// twice in a statement).
pub(crate) fn upsert(c: &mut dyn Conn, products: &[Product]) -> Result<()> {
    for chunk in products.chunks(UPSERT_SLICE) {
        let keys: Vec<Option<String>> = chunk.iter().map(|p| p.name.as_deref().map(str::to_lowercase)).collect();
        let params: Vec<Value<'_>> = chunk
            .iter()
            .zip(&keys)
            .flat_map(|(p, key)| vals![&p.product_id, p.name.as_deref(), p.category.as_deref(), key.as_deref()])
            .collect();
        c.insert(&UPSERT, &params)?;
    }
    Ok(())
}

pub(crate) fn by_ids(c: &mut dyn Conn, product_ids: &[&str]) -> Result<Vec<Product>> {
    if product_ids.is_empty() {
        return Ok(Vec::new());
    }
    let sql = BY_IDS.get(c.dialect());
    query(c, sql, &vals![&json_array(product_ids)], product)
}

/// Products whose id, then those whose name (case-insensitive), start with `prefix`.
pub(crate) fn search(c: &mut dyn Conn, prefix: &str, limit: usize) -> Result<Vec<Product>> {
    let limit = limit as i64;
    let mut found = query(c, BY_ID_PREFIX, &vals![prefix, &prefix_end(prefix), limit], product)?;
    let key = prefix.to_lowercase();
    for p in query(c, BY_NAME_PREFIX, &vals![&key, &prefix_end(&key), limit], product)? {
        if found.len() < limit as usize && !found.iter().any(|f| f.product_id == p.product_id) {
            found.push(p);
        }
    }
    Ok(found)
}

/// Up to `limit` catalog ids after `after` (every id for "" ), in byte order.
pub(crate) fn ids_after(c: &mut dyn Conn, after: &str, limit: usize) -> Result<Vec<String>> {
    query(c, IDS_AFTER, &vals![after, limit as i64], |r| r.text(0))
}

impl SqlStore {
    /// Adds products to the catalog outside a speed write cycle (tools, tests); a missing
    /// name or category keeps the stored one. The ids must be distinct.
    pub fn upsert_products(&mut self, products: &[Product]) -> Result<()> {
        self.transaction(|c| upsert(c, products))
    }
}
