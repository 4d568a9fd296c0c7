//! The chart tables in PostgreSQL's dialect: the write primitives (the
//! rules are in [`crate::rules`]) and the chart reads.

use std::sync::LazyLock;

use deadpool_postgres::Object;
use tokio_postgres::types::ToSql;

use super::conn::PgConn;
use crate::rules::{
    self, ChartFact, ChartFactColumns, ChartLedger, DeltaKey, DeltaRead, DeltaRow, LagKey, LagRow,
    NotificationTimes, Period, SeriesBy,
};
use crate::{sql_common, Chart, ChartQuery, DbError};

/// Read on every arrival that shapes a period: its text is made once.
static CHART_FACTS: LazyLock<String> = LazyLock::new(|| sql_common::chart_facts("$1", "$2"));

impl ChartLedger for PgConn {
    fn chart_facts(&self, store: &str, key: &str) -> Result<Vec<ChartFact>, DbError> {
        let rows = self.rows(&CHART_FACTS, &[&store, &key])?;
        rows.iter()
            .map(|r| {
                ChartFactColumns {
                    id: r.try_get(0)?,
                    occurred_at: r.try_get(1)?,
                    event_type: r.try_get(2)?,
                    environment: r.try_get(3)?,
                    app_id: r.try_get(4)?,
                    product_id: r.try_get(5)?,
                    state_json: r.try_get(6)?,
                    details_json: r.try_get(7)?,
                    fetched: r.try_get(8)?,
                }
                .into_fact()
            })
            .collect()
    }

    fn delete_chart_periods(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "DELETE FROM chart_periods WHERE store = $1 AND subscription_key = $2",
            &[&store, &key],
        )
    }

    fn upsert_chart_period(&self, store: &str, key: &str, p: &Period) -> Result<(), DbError> {
        self.run(
            "INSERT INTO chart_periods (store, subscription_key, start_at, end_at, nominal_end_at,
                 environment, app_id, product_id, is_trial, renewal_number, kind, price_micros,
                 currency, mrr_micros, refunded_at, churned)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
             ON CONFLICT (store, subscription_key, start_at) DO UPDATE SET
                 end_at = excluded.end_at, nominal_end_at = excluded.nominal_end_at,
                 environment = excluded.environment, app_id = excluded.app_id,
                 product_id = excluded.product_id, is_trial = excluded.is_trial,
                 renewal_number = excluded.renewal_number, kind = excluded.kind,
                 price_micros = excluded.price_micros, currency = excluded.currency,
                 mrr_micros = excluded.mrr_micros, refunded_at = excluded.refunded_at,
                 churned = excluded.churned",
            &[
                &store,
                &key,
                &p.start_ms,
                &p.end_ms,
                &p.nominal_end_ms,
                &p.environment,
                &p.app_id,
                &p.product_id,
                &p.is_trial,
                &p.renewal_number,
                &p.kind.as_str(),
                &p.price_micros,
                &p.currency,
                &p.mrr_micros,
                &p.refunded_at_ms,
                &p.churned,
            ],
        )
    }

    fn delete_chart_period(&self, store: &str, key: &str, start_ms: i64) -> Result<(), DbError> {
        self.run(
            "DELETE FROM chart_periods WHERE store = $1 AND subscription_key = $2 AND start_at = $3",
            &[&store, &key, &start_ms],
        )
    }

    fn add_chart_delta(&self, k: &DeltaKey, value: i64) -> Result<(), DbError> {
        self.run(ADD_CHART_DELTA, &chart_delta_params(k, &value))
    }

    fn add_chart_lag(&self, k: &LagKey, count: i64) -> Result<(), DbError> {
        let (sql, params) = chart_lag_statement(k, &count);
        self.run(sql, &params)
    }

    fn chart_subscriptions(&self) -> Result<Vec<(String, String)>, DbError> {
        self.rows(
            "SELECT DISTINCT store, subscription_key FROM notifications
             WHERE subscription_key IS NOT NULL AND verdict <> 'rejected'",
            &[],
        )?
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect()
    }

    fn notification_times(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, NotificationTimes)>, DbError> {
        self.rows(
            "SELECT id, store, environment, app_id, product_id, occurred_at, received_at
             FROM notifications WHERE id > $1 AND verdict <> 'rejected' ORDER BY id LIMIT $2",
            &[&after, &limit],
        )?
        .iter()
        .map(|r| {
            Ok((
                r.try_get(0)?,
                NotificationTimes {
                    store: r.try_get(1)?,
                    environment: r.try_get::<_, Option<String>>(2)?.unwrap_or_default(),
                    app_id: r.try_get(3)?,
                    product_id: r.try_get(4)?,
                    occurred_at_ms: r.try_get::<_, Option<i64>>(5)?.unwrap_or(0),
                    received_at_ms: r.try_get(6)?,
                },
            ))
        })
        .collect()
    }

    fn clear_charts(&self) -> Result<(), DbError> {
        for table in [
            "chart_periods",
            "chart_deltas",
            "chart_lag",
            "chart_lag_products",
        ] {
            self.run(&format!("DELETE FROM {table}"), &[])?;
        }
        Ok(())
    }

    fn take_chart_rebuild_request(&self) -> Result<bool, DbError> {
        // Instances starting together: the first deletes the row and
        // rebuilds; the others wait for its commit and find nothing.
        Ok(self.exec("DELETE FROM chart_rebuild", &[])? > 0)
    }
}

/// Asks the next start to build the chart tables from the stored history
/// (after `migrate-db` copied a history in).
pub(crate) async fn request_chart_rebuild(c: &tokio_postgres::Client) -> Result<(), DbError> {
    c.batch_execute(
        "DELETE FROM chart_rebuild; INSERT INTO chart_rebuild (requested) VALUES (TRUE);",
    )
    .await?;
    Ok(())
}

fn series_column(by: SeriesBy) -> &'static str {
    match by {
        SeriesBy::All => "''::text",
        SeriesBy::Currency => "currency",
        SeriesBy::Store => "store",
    }
}

async fn delta_rows(
    c: &Object,
    q: &ChartQuery,
    read: &DeltaRead,
) -> Result<Vec<DeltaRow>, DbError> {
    let range = rules::day_range(q, read);
    let sql = format!(
        "SELECT day, {series}, sum(value)::bigint FROM chart_deltas
         WHERE metric = $1 AND environment = $2 AND day >= $3 AND day <= $4
           AND ($5::text IS NULL OR store = $5) AND ($6::text IS NULL OR app_id = $6)
           AND ($7::text IS NULL OR product_id = $7)
         GROUP BY day, {series}",
        series = series_column(read.series_by)
    );
    let stmt = c.prepare_cached(&sql).await?;
    let from = range.from_day.unwrap_or(i64::MIN);
    let rows = c
        .query(
            &stmt,
            &[
                &read.metric,
                &q.environment.as_str(),
                &from,
                &range.to_day,
                &q.store,
                &q.app,
                &q.product,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

async fn lag_rows(c: &Object, q: &ChartQuery) -> Result<Vec<LagRow>, DbError> {
    let (from, to) = rules::lag_day_range(q);
    let env = q.environment.as_str();
    let rows = if q.app.is_none() && q.product.is_none() {
        let stmt = c
            .prepare_cached(
                "SELECT day, bin, sum(count)::bigint FROM chart_lag
                 WHERE environment = $1 AND day >= $2 AND day <= $3 AND ($4::text IS NULL OR store = $4)
                 GROUP BY day, bin",
            )
            .await?;
        c.query(&stmt, &[&env, &from, &to, &q.store]).await?
    } else {
        let stmt = c
            .prepare_cached(
                "SELECT day, bin, sum(count)::bigint FROM chart_lag_products
                 WHERE environment = $1 AND day >= $2 AND day <= $3 AND ($4::text IS NULL OR store = $4)
                   AND ($5::text IS NULL OR app_id = $5) AND ($6::text IS NULL OR product_id = $6)
                 GROUP BY day, bin",
            )
            .await?;
        c.query(&stmt, &[&env, &from, &to, &q.store, &q.app, &q.product])
            .await?
    };
    rows.iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
        .collect()
}

/// One chart, read from the chart tables.
pub(crate) async fn chart(c: &Object, q: &ChartQuery) -> Result<Chart, DbError> {
    let mut fetched = Vec::new();
    for read in rules::reads(q.metric) {
        fetched.push(delta_rows(c, q, &read).await?);
    }
    let lag = if q.metric == crate::ChartMetric::Lag {
        lag_rows(c, q).await?
    } else {
        Vec::new()
    };
    Ok(rules::build_chart(q, &fetched, &lag))
}

pub(crate) const ADD_CHART_DELTA: &str =
    "INSERT INTO chart_deltas (metric, environment, day, store, app_id, product_id, currency, value)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (metric, environment, day, store, app_id, product_id, currency)
     DO UPDATE SET value = chart_deltas.value + excluded.value";

pub(crate) fn chart_delta_params<'a>(
    k: &'a DeltaKey,
    value: &'a i64,
) -> Vec<&'a (dyn ToSql + Sync)> {
    vec![
        &k.metric,
        &k.environment,
        &k.day,
        &k.store,
        &k.app_id,
        &k.product_id,
        &k.currency,
        value,
    ]
}

/// A lag cell's upsert: into the per-store table, or the per-product one.
pub(crate) fn chart_lag_statement<'a>(
    k: &'a LagKey,
    count: &'a i64,
) -> (&'static str, Vec<&'a (dyn ToSql + Sync)>) {
    match &k.product {
        None => (
            "INSERT INTO chart_lag (environment, store, day, bin, count) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (environment, store, day, bin)
             DO UPDATE SET count = chart_lag.count + excluded.count",
            vec![&k.environment, &k.store, &k.day, &k.bin, count],
        ),
        Some((app, product)) => (
            "INSERT INTO chart_lag_products (environment, store, app_id, product_id, day, bin, count)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (environment, day, bin, store, app_id, product_id)
             DO UPDATE SET count = chart_lag_products.count + excluded.count",
            vec![&k.environment, &k.store, app, product, &k.day, &k.bin, count],
        ),
    }
}
