//! The storage behaviour suite runs every test against both backends:
//! `backends!` makes a `sqlite` and a `postgres` module of `#[tokio::test]`s
//! out of `async fn test(backend: Backend)` functions. PostgreSQL is a
//! throwaway server (`storehook-test-postgres`), a database per test.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use storehook_db::{DatabaseOptions, DatabaseUrl, OutboxConfig, Storage, Synchronous};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// One test's database: a SQLite file in a temporary folder, or a fresh
/// PostgreSQL database. Open it as often as the test likes (a reopen is a
/// restart).
pub struct TestDb {
    pub url: DatabaseUrl,
    pub dir: tempfile::TempDir,
}

impl TestDb {
    pub fn new(backend: Backend) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = match backend {
            Backend::Sqlite => DatabaseUrl::sqlite(Path::new("storehook.db"), dir.path()),
            Backend::Postgres => {
                let url = storehook_test_postgres::database().expect("a throwaway PostgreSQL");
                DatabaseUrl::parse(&url, dir.path()).expect("url")
            }
        };
        Self { url, dir }
    }

    pub async fn open(&self) -> Arc<dyn Storage> {
        self.open_with(OutboxConfig::default()).await
    }

    pub async fn open_with(&self, outbox: OutboxConfig) -> Arc<dyn Storage> {
        let mut options = DatabaseOptions::new(self.url.clone());
        // Only to keep SQLite cases fast: no rule depends on it.
        options.synchronous = Synchronous::Off;
        options.outbox = outbox;
        storehook_db::open(options).await.expect("open database")
    }
}

/// `backends!(a, b)` runs `async fn a(backend: Backend)` and `b` once per backend.
#[macro_export]
macro_rules! backends {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}
