//! What `flexhook taskrouter connect` replaced, kept for `disconnect`: one row per
//! workspace, the same SQL on both backends.

use sqlx::Row;

use super::{Store, StoreError, WorkspaceCallback};
use crate::domain::WorkspaceSid;

impl Store {
    /// Remembers the workspace's event callback before `taskrouter connect` replaced it.
    /// The first record is kept: connecting twice never forgets the original.
    pub async fn remember_callback(
        &self,
        workspace: &WorkspaceSid,
        previous: &WorkspaceCallback,
    ) -> Result<(), StoreError> {
        let insert = "INSERT INTO workspace_callbacks (workspace_sid, previous_url, \
                      previous_filter, connected_at) VALUES ($1, $2, $3, $4) \
                      ON CONFLICT (workspace_sid) DO NOTHING";
        on_backend!(self, insert, |pool, sql| {
            sqlx::query(&sql)
                .bind(workspace.as_str())
                .bind(previous.url.as_deref())
                .bind(previous.filter.as_deref())
                .bind(self.now_ms())
                .execute(pool)
                .await?;
        });
        Ok(())
    }

    pub async fn remembered_callback(
        &self,
        workspace: &WorkspaceSid,
    ) -> Result<Option<WorkspaceCallback>, StoreError> {
        let read = "SELECT previous_url, previous_filter FROM workspace_callbacks \
                    WHERE workspace_sid = $1";
        on_backend!(self, read, |pool, sql| {
            let row = sqlx::query(&sql)
                .bind(workspace.as_str())
                .fetch_optional(pool)
                .await?;
            row.map(|r| {
                Ok(WorkspaceCallback {
                    url: r.try_get(0)?,
                    filter: r.try_get(1)?,
                })
            })
            .transpose()
        })
    }

    pub async fn forget_callback(&self, workspace: &WorkspaceSid) -> Result<(), StoreError> {
        let delete = "DELETE FROM workspace_callbacks WHERE workspace_sid = $1";
        on_backend!(self, delete, |pool, sql| {
            sqlx::query(&sql)
                .bind(workspace.as_str())
                .execute(pool)
                .await?;
        });
        Ok(())
    }
}
