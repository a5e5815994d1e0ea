//! What `flexhook taskrouter connect` replaced, kept for `disconnect`: one row per workspace.

use sqlx::Row;

use super::SqliteStore;
use crate::store::{StoreError, WorkspaceCallback};

impl SqliteStore {
    pub async fn remember_callback(
        &self,
        workspace: &str,
        previous: &WorkspaceCallback,
        now: i64,
    ) -> Result<(), StoreError> {
        // The first connect's record is the one to restore: a second connect replaces ours.
        sqlx::query(
            "INSERT INTO workspace_callbacks (workspace_sid, previous_url, previous_filter, \
             connected_at) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (workspace_sid) DO NOTHING",
        )
        .bind(workspace)
        .bind(previous.url.as_deref())
        .bind(previous.filter.as_deref())
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn remembered_callback(
        &self,
        workspace: &str,
    ) -> Result<Option<WorkspaceCallback>, StoreError> {
        let row = sqlx::query(
            "SELECT previous_url, previous_filter FROM workspace_callbacks WHERE workspace_sid = ?1",
        )
        .bind(workspace)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(WorkspaceCallback {
                url: r.try_get(0)?,
                filter: r.try_get(1)?,
            })
        })
        .transpose()
    }

    pub async fn forget_callback(&self, workspace: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM workspace_callbacks WHERE workspace_sid = ?1")
            .bind(workspace)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
