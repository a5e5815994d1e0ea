//! `GET /v1/Workspaces/{WS}/Tasks?EvaluateTaskAttributes=…`: finds the task an earlier,
//! ambiguous create may have made, so it is adopted instead of created twice.

use serde::Deserialize;

use super::{Api, TwilioClient, TwilioError};
use crate::domain::{
    ConversationSid, InteractionChannelSid, InteractionSid, TaskSid, WorkflowSid, WorkspaceSid,
};

/// A task whose attributes name the conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundTask {
    pub task_sid: TaskSid,
    pub interaction_sid: Option<InteractionSid>,
    pub channel_sid: Option<InteractionChannelSid>,
}

#[derive(Deserialize)]
struct Task {
    sid: String,
    #[serde(default)]
    attributes: Option<String>,
}

impl TwilioClient {
    pub async fn find_task_for_conversation(
        &self,
        workspace: &WorkspaceSid,
        conversation: &ConversationSid,
    ) -> Result<Option<FoundTask>, TwilioError> {
        let path = format!("/v1/Workspaces/{workspace}/Tasks");
        let expression = format!("conversationSid == \"{conversation}\"");
        let tasks: Vec<Task> = self
            .list_all(
                Api::TaskRouter,
                &path,
                &[
                    ("EvaluateTaskAttributes", expression.as_str()),
                    ("PageSize", "20"),
                ],
                "tasks",
            )
            .await?;
        for task in tasks {
            let Ok(task_sid) = TaskSid::parse(&task.sid) else {
                continue;
            };
            // The spec warns that a list may leave `attributes` null (only a fetch of the
            // single task is sure to carry them): then read them from the task itself.
            let attributes = match parse_attributes(task.attributes.as_deref()) {
                Some(a) => a,
                None => self.fetch_task_attributes(workspace, &task_sid).await,
            };
            // TaskRouter evaluated the expression already; this only guards against a
            // loose match when the attributes are known.
            if !attributes.is_null() && attributes["conversationSid"] != conversation.as_str() {
                continue;
            }
            let sid_at = |key: &str| attributes[key].as_str().map(str::to_owned);
            return Ok(Some(FoundTask {
                task_sid,
                interaction_sid: sid_at("flexInteractionSid")
                    .and_then(|s| InteractionSid::parse(&s).ok()),
                channel_sid: sid_at("flexInteractionChannelSid")
                    .and_then(|s| InteractionChannelSid::parse(&s).ok()),
            }));
        }
        Ok(None)
    }
}

impl TwilioClient {
    /// `GET /v1/Workspaces/{WS}/Tasks/{WT}`'s attributes; `Null` when they cannot be read,
    /// which leaves the task adopted without its interaction SIDs rather than created twice.
    async fn fetch_task_attributes(
        &self,
        workspace: &WorkspaceSid,
        task: &TaskSid,
    ) -> serde_json::Value {
        let path = format!("/v1/Workspaces/{workspace}/Tasks/{task}");
        let fetched = match self.get_json::<Task>(Api::TaskRouter, &path, &[]).await {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!(task = %task, error = %e, "could not fetch the task's attributes");
                None
            }
        };
        fetched
            .and_then(|t| parse_attributes(t.attributes.as_deref()))
            .unwrap_or(serde_json::Value::Null)
    }
}

fn parse_attributes(raw: Option<&str>) -> Option<serde_json::Value> {
    serde_json::from_str(raw?).ok()
}

/// A task as the lookup reads it from a list page.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTask {
    pub sid: String,
    /// `None` when the list left them out (or they are not JSON): the lookup then fetches
    /// the task itself.
    pub attributes: Option<serde_json::Value>,
}

/// Parses one page of `GET /v1/Workspaces/{WS}/Tasks` exactly as the lookup does (for
/// contract tests).
pub fn parse_task_list(body: &[u8]) -> Result<Vec<ListedTask>, String> {
    let mut page: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    let tasks: Vec<Task> = super::page_items(&mut page, "tasks").map_err(|e| e.to_string())?;
    Ok(tasks
        .into_iter()
        .map(|t| ListedTask {
            attributes: parse_attributes(t.attributes.as_deref()),
            sid: t.sid,
        })
        .collect())
}

/// The assignment statuses of a task that still has, or may yet get, an agent.
pub const LIVE_STATUSES: &str = "pending,reserved,assigned,wrapping";

#[derive(Deserialize)]
struct LiveTask {
    sid: String,
    assignment_status: Option<String>,
}

/// A task of the conversation that is still live, with its assignment status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveTaskOf {
    pub task_sid: TaskSid,
    pub assignment_status: String,
}

#[derive(Deserialize)]
struct Workspace {
    event_callback_url: Option<String>,
    events_filter: Option<String>,
}

impl TwilioClient {
    /// The conversation's tasks in [`LIVE_STATUSES`] (`conversationSid` in their attributes).
    pub async fn live_tasks_for_conversation(
        &self,
        workspace: &WorkspaceSid,
        conversation: &ConversationSid,
    ) -> Result<Vec<LiveTaskOf>, TwilioError> {
        let path = format!("/v1/Workspaces/{workspace}/Tasks");
        let expression = format!("conversationSid == \"{conversation}\"");
        let tasks: Vec<LiveTask> = self
            .list_all(
                Api::TaskRouter,
                &path,
                &[
                    ("EvaluateTaskAttributes", expression.as_str()),
                    ("AssignmentStatus", LIVE_STATUSES),
                    ("PageSize", "50"),
                ],
                "tasks",
            )
            .await?;
        Ok(tasks
            .into_iter()
            .filter_map(|t| {
                Some(LiveTaskOf {
                    task_sid: TaskSid::parse(&t.sid).ok()?,
                    assignment_status: t.assignment_status.unwrap_or_default(),
                })
            })
            .collect())
    }

    /// The workspace's event callback URL and `EventsFilter`.
    pub async fn workspace_callback(
        &self,
        workspace: &WorkspaceSid,
    ) -> Result<(Option<String>, Option<String>), TwilioError> {
        let w: Workspace = self
            .get_json(Api::TaskRouter, &format!("/v1/Workspaces/{workspace}"), &[])
            .await?;
        let some = |s: Option<String>| s.filter(|v| !v.trim().is_empty());
        Ok((some(w.event_callback_url), some(w.events_filter)))
    }

    /// Sets the workspace's `EventCallbackUrl` and `EventsFilter` (empty strings unset them).
    pub async fn set_workspace_callback(
        &self,
        workspace: &WorkspaceSid,
        url: &str,
        filter: &str,
    ) -> Result<(), TwilioError> {
        let form = [
            ("EventCallbackUrl", url.to_owned()),
            ("EventsFilter", filter.to_owned()),
        ];
        let path = format!("/v1/Workspaces/{workspace}");
        let mut call = super::Request::new(Api::TaskRouter, reqwest::Method::POST, path);
        call.form = &form;
        self.send(call).await.map(|_| ())
    }
}

#[derive(Deserialize)]
struct Named {
    friendly_name: Option<String>,
}

#[derive(Deserialize)]
struct TaskChannel {
    unique_name: Option<String>,
}

impl TwilioClient {
    /// `GET /v1/Workspaces/{WS}/Workflows/{WW}`: the workflow's friendly name.
    pub async fn workflow_name(
        &self,
        workspace: &WorkspaceSid,
        workflow: &WorkflowSid,
    ) -> Result<String, TwilioError> {
        let path = format!("/v1/Workspaces/{workspace}/Workflows/{workflow}");
        let w: Named = self.get_json(Api::TaskRouter, &path, &[]).await?;
        Ok(w.friendly_name.unwrap_or_default())
    }

    /// `GET /v1/Workspaces/{WS}/TaskChannels`, every page: the channels' unique names.
    pub async fn task_channel_names(
        &self,
        workspace: &WorkspaceSid,
    ) -> Result<Vec<String>, TwilioError> {
        let path = format!("/v1/Workspaces/{workspace}/TaskChannels");
        let channels: Vec<TaskChannel> = self
            .list_all(Api::TaskRouter, &path, &[("PageSize", "50")], "channels")
            .await?;
        Ok(channels.into_iter().filter_map(|c| c.unique_name).collect())
    }
}
