//! placeholder
pub(crate) struct PostgresStorage;
impl PostgresStorage {
    pub(crate) async fn open(
        _url: &str,
        _o: crate::OutboxConfig,
    ) -> Result<crate::sqlite::SqliteStorage, crate::DbError> {
        Err(crate::DbError::Config("PostgreSQL: not yet".into()))
    }
}
