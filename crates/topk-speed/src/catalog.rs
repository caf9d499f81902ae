//! The product catalog as the speed role writes it.

use std::collections::{HashMap, HashSet};

use foldhash::fast::RandomState;
use topk_core::flush::FlushBatch;
use topk_store::Product;

/// The product catalog's input: every product of the absorbed flushes, with the newest
/// name and category they carried, written with the offsets that cover them — so the
/// catalog is as crash-safe as the counts. What was written is remembered (up to
/// [`CATALOG_MEMORY`] entries), so a product is written once, not once per flush.
#[derive(Default)]
pub(crate) struct Catalog {
    /// Entries to write: by product id, its name and category (each product's id held
    /// once: a replay's first write can hold every product of the input).
    pending: HashMap<String, (Option<String>, Option<String>), RandomState>,
    /// Digests of the (id, name, category) entries written, and of the ids written.
    written: HashSet<u64, RandomState>,
}

/// The catalog forgets what it wrote past this many entries (and writes them again).
const CATALOG_MEMORY: usize = 1_000_000;

impl Catalog {
    fn key(id: &str, name: Option<&str>, category: Option<&str>) -> u64 {
        use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};
        let key = xxh3_64_with_seed(name.unwrap_or("").as_bytes(), xxh3_64(id.as_bytes()));
        category.map_or(key, |c| xxh3_64_with_seed(c.as_bytes(), !key))
    }

    pub(crate) fn absorb(&mut self, batch: &FlushBatch) {
        for r in &batch.rows {
            if !self.written.contains(&Catalog::key(&r.product_id, None, None))
                && !self.pending.contains_key(&r.product_id)
            {
                self.pending.insert(r.product_id.clone(), (None, None));
            }
        }
        for p in &batch.products {
            if self.written.contains(&Catalog::key(&p.product_id, p.name.as_deref(), p.category.as_deref())) {
                continue;
            }
            let (name, category) = self.pending.entry(p.product_id.clone()).or_default();
            // The newest wins; a flush without one keeps what an earlier flush said.
            if p.name.is_some() {
                name.clone_from(&p.name);
            }
            if p.category.is_some() {
                category.clone_from(&p.category);
            }
        }
    }

    /// The entries to write now; [`Catalog::written`] once they are durable.
    pub(crate) fn take(&mut self) -> Vec<Product> {
        let mut products: Vec<Product> =
            self.pending.drain().map(|(product_id, (name, category))| Product { product_id, name, category }).collect();
        products.sort_unstable_by(|a, b| a.product_id.cmp(&b.product_id));
        products
    }

    pub(crate) fn wrote(&mut self, products: &[Product]) {
        if self.written.len() + 2 * products.len() > CATALOG_MEMORY {
            self.written.clear();
        }
        for p in products {
            self.written.insert(Catalog::key(&p.product_id, None, None));
            self.written.insert(Catalog::key(&p.product_id, p.name.as_deref(), p.category.as_deref()));
        }
    }
}
