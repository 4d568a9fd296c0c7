//! The chart tables in SQLite's dialect: the write primitives (the rules
//! are in [`crate::rules`]) and the chart reads.

use std::sync::LazyLock;

use rusqlite::{params, Connection};

use crate::rules::{
    self, ChartFact, ChartFactColumns, ChartLedger, DeltaKey, DeltaRead, DeltaRow, LagKey, LagRow,
    NotificationTimes, Period, SeriesBy,
};
use crate::sqlite::Cached;
use crate::{sql_common, Chart, ChartQuery, DbError};

/// Read on every arrival that shapes a period: its text is made once.
static CHART_FACTS: LazyLock<String> = LazyLock::new(|| sql_common::chart_facts("?1", "?2"));

impl ChartLedger for Connection {
    fn chart_facts(&self, store: &str, key: &str) -> Result<Vec<ChartFact>, DbError> {
        let mut stmt = self.prepare_cached(&CHART_FACTS)?;
        let rows = stmt.query_map(params![store, key], |r| {
            Ok(ChartFactColumns {
                id: r.get(0)?,
                occurred_at: r.get(1)?,
                event_type: r.get(2)?,
                environment: r.get(3)?,
                app_id: r.get(4)?,
                product_id: r.get(5)?,
                state_json: r.get(6)?,
                details_json: r.get(7)?,
                fetched: r.get(8)?,
            })
        })?;
        rows.map(|row| row?.into_fact()).collect()
    }

    fn delete_chart_periods(&self, store: &str, key: &str) -> Result<(), DbError> {
        self.run(
            "DELETE FROM chart_periods WHERE store = ?1 AND subscription_key = ?2",
            params![store, key],
        )
    }

    fn upsert_chart_period(&self, store: &str, key: &str, p: &Period) -> Result<(), DbError> {
        self.run(
            "INSERT OR REPLACE INTO chart_periods (store, subscription_key, start_at, end_at,
                 nominal_end_at, environment, app_id, product_id, is_trial, renewal_number, kind,
                 price_micros, currency, mrr_micros, refunded_at, churned)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
            params![
                store,
                key,
                p.start_ms,
                p.end_ms,
                p.nominal_end_ms,
                p.environment,
                p.app_id,
                p.product_id,
                p.is_trial,
                p.renewal_number,
                p.kind.as_str(),
                p.price_micros,
                p.currency,
                p.mrr_micros,
                p.refunded_at_ms,
                p.churned,
            ],
        )
    }

    fn delete_chart_period(&self, store: &str, key: &str, start_ms: i64) -> Result<(), DbError> {
        self.run(
            "DELETE FROM chart_periods WHERE store = ?1 AND subscription_key = ?2 AND start_at = ?3",
            params![store, key, start_ms],
        )
    }

    fn add_chart_delta(&self, k: &DeltaKey, value: i64) -> Result<(), DbError> {
        self.run(
            "INSERT INTO chart_deltas (metric, environment, day, store, app_id, product_id, currency, value)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (metric, environment, day, store, app_id, product_id, currency)
             DO UPDATE SET value = value + excluded.value",
            params![
                k.metric,
                k.environment,
                k.day,
                k.store,
                k.app_id,
                k.product_id,
                k.currency,
                value
            ],
        )
    }

    fn add_chart_lag(&self, k: &LagKey, count: i64) -> Result<(), DbError> {
        match &k.product {
            None => self.run(
                "INSERT INTO chart_lag (environment, store, day, bin, count) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (environment, store, day, bin) DO UPDATE SET count = count + excluded.count",
                params![k.environment, k.store, k.day, k.bin, count],
            ),
            Some((app, product)) => self.run(
                "INSERT INTO chart_lag_products (environment, store, app_id, product_id, day, bin, count)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (environment, day, bin, store, app_id, product_id)
                 DO UPDATE SET count = count + excluded.count",
                params![k.environment, k.store, app, product, k.day, k.bin, count],
            ),
        }
    }

    fn chart_subscriptions(&self) -> Result<Vec<(String, String)>, DbError> {
        let mut stmt = self.prepare_cached(
            "SELECT DISTINCT store, subscription_key FROM notifications
             WHERE subscription_key IS NOT NULL AND verdict <> 'rejected'",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn notification_times(
        &self,
        after: i64,
        limit: i64,
    ) -> Result<Vec<(i64, NotificationTimes)>, DbError> {
        let mut stmt = self.prepare_cached(
            "SELECT id, store, environment, app_id, product_id, occurred_at, received_at
             FROM notifications WHERE id > ?1 AND verdict <> 'rejected' ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![after, limit], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                NotificationTimes {
                    store: r.get(1)?,
                    environment: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                    app_id: r.get(3)?,
                    product_id: r.get(4)?,
                    occurred_at_ms: r.get::<_, Option<i64>>(5)?.unwrap_or(0),
                    received_at_ms: r.get(6)?,
                },
            ))
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn clear_charts(&self) -> Result<(), DbError> {
        self.execute_batch(
            "DELETE FROM chart_periods; DELETE FROM chart_deltas; DELETE FROM chart_lag;
             DELETE FROM chart_lag_products;",
        )?;
        Ok(())
    }

    fn take_chart_rebuild_request(&self) -> Result<bool, DbError> {
        Ok(self.exec("DELETE FROM chart_rebuild", [])? > 0)
    }
}

fn series_column(by: SeriesBy) -> &'static str {
    match by {
        SeriesBy::All => "''",
        SeriesBy::Currency => "currency",
        SeriesBy::Store => "store",
    }
}

fn delta_rows(
    conn: &Connection,
    q: &ChartQuery,
    read: &DeltaRead,
) -> Result<Vec<DeltaRow>, DbError> {
    let range = rules::day_range(q, read);
    let sql = format!(
        "SELECT day, {series}, sum(value) FROM chart_deltas
         WHERE metric = ?1 AND environment = ?2 AND day >= ?3 AND day <= ?4
           AND (?5 IS NULL OR store = ?5) AND (?6 IS NULL OR app_id = ?6)
           AND (?7 IS NULL OR product_id = ?7)
         GROUP BY day, {series}",
        series = series_column(read.series_by)
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(
        params![
            read.metric,
            q.environment.as_str(),
            range.from_day.unwrap_or(i64::MIN),
            range.to_day,
            q.store,
            q.app,
            q.product
        ],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    Ok(rows.collect::<Result<_, _>>()?)
}

fn lag_rows(conn: &Connection, q: &ChartQuery) -> Result<Vec<LagRow>, DbError> {
    let (from, to) = rules::lag_day_range(q);
    let env = q.environment.as_str();
    let get = |r: &rusqlite::Row<'_>| Ok((r.get(0)?, r.get(1)?, r.get(2)?));
    if q.app.is_none() && q.product.is_none() {
        let mut stmt = conn.prepare_cached(
            "SELECT day, bin, sum(count) FROM chart_lag
             WHERE environment = ?1 AND day >= ?2 AND day <= ?3 AND (?4 IS NULL OR store = ?4)
             GROUP BY day, bin",
        )?;
        let rows = stmt.query_map(params![env, from, to, q.store], get)?;
        return Ok(rows.collect::<Result<_, _>>()?);
    }
    let mut stmt = conn.prepare_cached(
        "SELECT day, bin, sum(count) FROM chart_lag_products
         WHERE environment = ?1 AND day >= ?2 AND day <= ?3 AND (?4 IS NULL OR store = ?4)
           AND (?5 IS NULL OR app_id = ?5) AND (?6 IS NULL OR product_id = ?6)
         GROUP BY day, bin",
    )?;
    let rows = stmt.query_map(params![env, from, to, q.store, q.app, q.product], get)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// One chart, read from the chart tables.
pub(crate) fn chart(conn: &Connection, q: &ChartQuery) -> Result<Chart, DbError> {
    let fetched = rules::reads(q.metric)
        .iter()
        .map(|read| delta_rows(conn, q, read))
        .collect::<Result<Vec<_>, _>>()?;
    let lag = if q.metric == crate::ChartMetric::Lag {
        lag_rows(conn, q)?
    } else {
        Vec::new()
    };
    Ok(rules::build_chart(q, &fetched, &lag))
}
