//! `[flex]`: where new tasks go (workspace, workflow, channel, attributes) and how fast
//! interactions may be created.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::accounts::Keys;
use super::de::{empty_as_none, json_object};
use super::problems::Problems;
use crate::domain::{WorkflowSid, WorkspaceSid};

#[derive(Deserialize, Debug, Clone)]
pub struct FlexSettings {
    #[serde(deserialize_with = "empty_as_none")]
    pub workspace_sid: Option<String>,
    #[serde(deserialize_with = "empty_as_none")]
    pub workflow_sid: Option<String>,
    pub task_channel: String,
    #[serde(deserialize_with = "json_object")]
    pub task_attributes: Map<String, Value>,
    #[serde(deserialize_with = "empty_as_none")]
    pub priority: Option<String>,
    #[serde(deserialize_with = "empty_as_none")]
    pub task_timeout_secs: Option<String>,
    pub remove_webhook_after_handoff: bool,
    pub max_creates_per_second: u32,
}

/// `[flex]`, checked.
#[derive(Debug, Clone)]
pub struct FlexConfig {
    pub workspace_sid: WorkspaceSid,
    pub workflow_sid: WorkflowSid,
    pub task_channel: String,
    pub task_attributes: Map<String, Value>,
    pub priority: Option<u32>,
    pub task_timeout_secs: Option<u32>,
    pub remove_webhook_after_handoff: bool,
    pub max_creates_per_second: u32,
}

/// How long TaskRouter lets a task wait when it is given no timeout.
const TASKROUTER_DEFAULT_TIMEOUT_SECS: u32 = 86_400;

impl FlexConfig {
    /// `flex.task_timeout_secs`, or TaskRouter's default when it is unset.
    pub fn task_timeout_secs_or_default(&self) -> u32 {
        self.task_timeout_secs
            .unwrap_or(TASKROUTER_DEFAULT_TIMEOUT_SECS)
    }
}

impl FlexSettings {
    /// Checked, each problem named by `keys` (`flex.*`, or an `[accounts.NAME]` table's).
    pub(super) fn validate_at(&self, keys: &Keys, p: &mut Problems) -> Option<FlexConfig> {
        let before = p.count();
        let key = keys.flex("workspace_sid");
        let workspace_sid = required(p, &key, &self.workspace_sid)
            .and_then(|s| p.check(&key, WorkspaceSid::parse(s.trim())));
        let key = keys.flex("workflow_sid");
        let workflow_sid = required(p, &key, &self.workflow_sid)
            .and_then(|s| p.check(&key, WorkflowSid::parse(s.trim())));
        if self.task_channel.trim().is_empty() {
            p.add(
                &keys.flex("task_channel"),
                "must not be empty (Flex's default is `chat`)",
            );
        }
        let priority = whole_number(p, &keys.flex("priority"), &self.priority);
        let task_timeout_secs =
            whole_number(p, &keys.flex("task_timeout_secs"), &self.task_timeout_secs);
        if self.max_creates_per_second == 0 || self.max_creates_per_second > 20 {
            p.add(
                &keys.flex("max_creates_per_second"),
                format!(
                    "is {}; it must be between 1 and 20 (Twilio's limit for the Interactions API)",
                    self.max_creates_per_second
                ),
            );
        }
        if p.count() != before {
            return None;
        }
        Some(FlexConfig {
            workspace_sid: workspace_sid?,
            workflow_sid: workflow_sid?,
            task_channel: self.task_channel.trim().to_owned(),
            task_attributes: self.task_attributes.clone(),
            priority,
            task_timeout_secs,
            remove_webhook_after_handoff: self.remove_webhook_after_handoff,
            max_creates_per_second: self.max_creates_per_second,
        })
    }
}

fn required<'a>(p: &mut Problems, key: &str, value: &'a Option<String>) -> Option<&'a str> {
    if value.is_none() {
        p.add(key, "is required");
    }
    value.as_deref()
}

fn whole_number(p: &mut Problems, key: &str, value: &Option<String>) -> Option<u32> {
    let v = value.as_deref()?.trim();
    p.check(
        key,
        v.parse()
            .map_err(|_| format!("`{v}` is not a whole number")),
    )
}
