//! The PostgreSQL server a run's instances share: a throwaway one
//! (`storehook-test-postgres`: initdb + pg_ctl in a temporary folder, fsync
//! on) or one given by URL. Every run gets a database of its own, created
//! before and dropped after.

use anyhow::{Context, Result};

pub enum PgServer {
    Throwaway(storehook_test_postgres::Postgres),
    /// A server URL whose user may create databases.
    Given(String),
}

impl PgServer {
    pub fn start(url: Option<&str>) -> Result<Self> {
        match url {
            Some(url) => Ok(Self::Given(url.to_owned())),
            None => {
                let pg = storehook_test_postgres::Postgres::start().context(
                    "starting a throwaway PostgreSQL (is the postgresql package installed?)",
                )?;
                eprintln!("throwaway PostgreSQL on 127.0.0.1:{}", pg.port());
                Ok(Self::Throwaway(pg))
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Throwaway(pg) => pg.url(),
            Self::Given(url) => url.clone(),
        }
    }

    /// The loopback port of a server on this machine (for its CPU figures).
    pub fn local_port(&self) -> Option<u16> {
        match self {
            Self::Throwaway(pg) => Some(pg.port()),
            Self::Given(url) => {
                let config: tokio_postgres::Config = url.parse().ok()?;
                let local = config.get_hosts().iter().all(|h| match h {
                    tokio_postgres::config::Host::Tcp(h) => {
                        h == "localhost" || h.starts_with("127.") || h == "::1"
                    }
                    #[cfg(unix)]
                    tokio_postgres::config::Host::Unix(_) => true,
                });
                local.then(|| config.get_ports().first().copied().unwrap_or(5432))
            }
        }
    }

    async fn admin(&self) -> Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(&self.url(), tokio_postgres::NoTls)
            .await
            .context("connecting to PostgreSQL")?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Creates an empty database `name` (letters, digits, `_`); returns its URL.
    pub async fn create_database(&self, name: &str) -> Result<String> {
        self.admin()
            .await?
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .with_context(|| format!("creating database {name}"))?;
        Ok(with_database(&self.url(), name))
    }

    pub async fn drop_database(&self, name: &str) -> Result<()> {
        self.admin()
            .await?
            .batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await
            .with_context(|| format!("dropping database {name}"))
    }
}

/// `url` with its database (the path) replaced by `name`, options kept.
fn with_database(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let authority = before_query.split('/').next().unwrap_or(before_query);
    let mut out = format!("{scheme}://{authority}/{name}");
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

/// A database name for one run: its label, made safe, and a stamp.
pub fn database_name(label: &str, stamp: u128) -> String {
    let safe: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("bench_{safe}_{stamp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_database_replaces_the_path_and_keeps_the_options() {
        assert_eq!(
            with_database(
                "postgres://u:p@db:5433/postgres?sslmode=disable",
                "bench_x_1"
            ),
            "postgres://u:p@db:5433/bench_x_1?sslmode=disable"
        );
        assert_eq!(
            with_database("postgres://u@127.0.0.1:5432", "b"),
            "postgres://u@127.0.0.1:5432/b"
        );
        assert_eq!(database_name("PG×2", 7), "bench_pg_2_7");
    }
}
