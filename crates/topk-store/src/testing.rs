//! Test support shared by the crates' suites: a PostgreSQL schema of one's own.

use std::sync::atomic::{AtomicU32, Ordering};

/// The test database: `TOPK_TEST_POSTGRES`, default `postgres://postgres@127.0.0.1:5432/test`.
pub fn postgres_url() -> String {
    std::env::var("TOPK_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh schema in the test database, dropped afterwards; `url` connects with it as
/// the search path, so a store opened there sees only its own tables.
pub struct Postgres {
    pub url: String,
    admin: String,
    schema: String,
}

impl Postgres {
    pub fn new() -> Postgres {
        static N: AtomicU32 = AtomicU32::new(0);
        let admin = postgres_url();
        let schema = format!("topk_test_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut client = ::postgres::Client::connect(&admin, ::postgres::NoTls)
            .unwrap_or_else(|e| panic!("the tests need PostgreSQL at {admin}: {e}"));
        client.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}")).unwrap();
        let sep = if admin.contains('?') { '&' } else { '?' };
        let url = format!("{admin}{sep}options=-csearch_path%3D{schema}");
        Postgres { url, admin, schema }
    }
}

impl Default for Postgres {
    fn default() -> Self {
        Postgres::new()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Ok(mut client) = ::postgres::Client::connect(&self.admin, ::postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}
