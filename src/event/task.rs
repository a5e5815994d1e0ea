//! What a verified TaskRouter event callback means. Only the events that can leave a
//! conversation with nobody on it matter to flexhook; every other one is acknowledged.

use serde_json::Value;

use super::{EventError, Fields};
use crate::domain::{
    AccountSid, ConversationSid, CustomerAddress, InteractionChannelSid, InteractionSid, TaskSid,
    WorkerSid, WorkspaceSid,
};
use crate::signature::{Payload, Verified};

/// The events after which a task no longer puts anyone on its conversation, and never had
/// (or no longer has) an agent for it: its conversation may be an orphan.
pub const TASK_ENDED_EVENTS: [&str; 4] = [
    "task.canceled",
    "task.deleted",
    "task.system-deleted",
    "workflow.timeout",
];

/// The end of a task an agent had, once its wrap-up is over. It orphans nothing by itself,
/// but a conversation that task kept open must be looked at again.
pub const TASK_COMPLETED: &str = "task.completed";

/// Every event the lifecycle acts on: what `flexhook taskrouter connect` subscribes to.
pub const LIFECYCLE_EVENTS: [&str; 5] = [
    TASK_ENDED_EVENTS[0],
    TASK_ENDED_EVENTS[1],
    TASK_ENDED_EVENTS[2],
    TASK_ENDED_EVENTS[3],
    TASK_COMPLETED,
];

/// An agent accepted a task: known-agent routing learns who handled the customer.
pub const RESERVATION_ACCEPTED: &str = "reservation.accepted";

/// Every event flexhook acts on: the lifecycle's, and with known-agent routing on
/// (`routing.known_agent_within`), [`RESERVATION_ACCEPTED`]. What `flexhook taskrouter
/// connect` subscribes to and `flexhook check` looks for.
pub fn wanted_events(known_agents: bool) -> Vec<&'static str> {
    let mut events = LIFECYCLE_EVENTS.to_vec();
    if known_agents {
        events.push(RESERVATION_ACCEPTED);
    }
    events
}

/// A TaskRouter event callback.
#[derive(Debug, Clone)]
pub struct TaskEvent {
    pub event_type: String,
    pub account_sid: AccountSid,
    pub workspace_sid: WorkspaceSid,
    pub task_sid: Option<TaskSid>,
    /// The agent of a reservation event.
    pub worker_sid: Option<WorkerSid>,
    /// `TaskAttributes`, as sent (a JSON string).
    pub task_attributes: Option<String>,
    /// Why: `TaskCanceledReason`, else `EventDescription`.
    pub reason: Option<String>,
}

impl TaskEvent {
    /// Whether the event ended its task (see [`LIFECYCLE_EVENTS`]).
    pub fn ends_task(&self) -> bool {
        LIFECYCLE_EVENTS.contains(&self.event_type.as_str())
    }

    /// Whether the event ended its task without an agent (see [`TASK_ENDED_EVENTS`]): its
    /// conversation gets a close job. A completed task only re-checks one kept open.
    pub fn may_orphan(&self) -> bool {
        TASK_ENDED_EVENTS.contains(&self.event_type.as_str())
    }

    /// The customer a task is for: its attributes' `customerAddress` (which flexhook and
    /// Flex both write), else `from`.
    pub fn customer_address(&self) -> Result<Option<CustomerAddress>, AttributesError> {
        let value = self.attributes()?;
        Ok(["customerAddress", "from"]
            .iter()
            .find_map(|key| value.get(*key).and_then(Value::as_str))
            .map(str::trim)
            .filter(|a| !a.is_empty())
            .map(CustomerAddress::new))
    }

    fn attributes(&self) -> Result<Value, AttributesError> {
        let raw = self
            .task_attributes
            .as_deref()
            .ok_or(AttributesError::Missing)?;
        serde_json::from_str(raw).map_err(|e| AttributesError::NotJson(e.to_string()))
    }

    /// The conversation and interaction Flex wrote into the task's attributes.
    pub fn flex_attributes(&self) -> Result<FlexTaskAttributes, AttributesError> {
        let value = self.attributes()?;
        let sid = |key: &str| value.get(key).and_then(Value::as_str).map(str::trim);
        Ok(FlexTaskAttributes {
            conversation_sid: sid("conversationSid").and_then(|s| ConversationSid::parse(s).ok()),
            interaction_sid: sid("flexInteractionSid").and_then(|s| InteractionSid::parse(s).ok()),
            channel_sid: sid("flexInteractionChannelSid")
                .and_then(|s| InteractionChannelSid::parse(s).ok()),
        })
    }
}

/// What Flex (or flexhook) puts into an interaction's task attributes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlexTaskAttributes {
    pub conversation_sid: Option<ConversationSid>,
    pub interaction_sid: Option<InteractionSid>,
    pub channel_sid: Option<InteractionChannelSid>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttributesError {
    #[error("the event carries no TaskAttributes")]
    Missing,
    #[error("TaskAttributes is not JSON: {0}")]
    NotJson(String),
}

/// Parses a verified TaskRouter event callback.
pub fn parse(payload: &Verified<Payload>) -> Result<TaskEvent, EventError> {
    let fields = match payload.get() {
        Payload::Form(pairs) => Fields::from_form(pairs),
        Payload::Json(raw) => Fields::from_json(raw)?,
    };
    Ok(TaskEvent {
        event_type: fields
            .text(&["EventType"])
            .ok_or(EventError::Missing("EventType"))?,
        account_sid: fields
            .sid("AccountSid", &["AccountSid"], AccountSid::parse)?
            .ok_or(EventError::Missing("AccountSid"))?,
        workspace_sid: fields
            .sid("WorkspaceSid", &["WorkspaceSid"], WorkspaceSid::parse)?
            .ok_or(EventError::Missing("WorkspaceSid"))?,
        task_sid: fields.sid("TaskSid", &["TaskSid"], TaskSid::parse)?,
        worker_sid: fields.sid("WorkerSid", &["WorkerSid"], WorkerSid::parse)?,
        task_attributes: fields.text(&["TaskAttributes"]),
        reason: fields.text(&["TaskCanceledReason", "EventDescription"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::testing::verified;

    fn event(pairs: &[(&str, &str)]) -> Result<TaskEvent, EventError> {
        let form = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        parse(&verified(Payload::Form(form)))
    }

    const AC: &str = "AC00000000000000000000000000000001";
    const WS: &str = "WS00000000000000000000000000000001";
    const WT: &str = "WT00000000000000000000000000000001";

    #[test]
    fn a_workflow_timeout_names_its_task_and_ends_it() {
        let e = event(&[
            ("EventType", "workflow.timeout"),
            ("AccountSid", AC),
            ("WorkspaceSid", WS),
            ("TaskSid", WT),
            ("EventDescription", "Task timed out of Workflow"),
            ("TaskAttributes", r#"{"conversationSid":"CH00000000000000000000000000000001","flexInteractionSid":"KD00000000000000000000000000000001","flexInteractionChannelSid":"UO00000000000000000000000000000001"}"#),
        ])
        .unwrap();
        assert!(e.ends_task() && e.may_orphan());
        assert_eq!(e.task_sid.as_ref().unwrap().as_str(), WT);
        assert_eq!(e.reason.as_deref(), Some("Task timed out of Workflow"));
        let a = e.flex_attributes().unwrap();
        assert_eq!(
            a.conversation_sid.unwrap().as_str(),
            "CH00000000000000000000000000000001"
        );
        assert!(a.interaction_sid.is_some() && a.channel_sid.is_some());
    }

    #[test]
    fn a_completed_task_ends_without_orphaning_its_conversation() {
        let e = event(&[
            ("EventType", "task.completed"),
            ("AccountSid", AC),
            ("WorkspaceSid", WS),
            ("TaskSid", WT),
        ])
        .unwrap();
        assert!(e.ends_task());
        assert!(!e.may_orphan());
    }

    #[test]
    fn other_events_do_not_end_a_task_and_bad_attributes_are_an_error_not_a_panic() {
        let e = event(&[
            ("EventType", "reservation.created"),
            ("AccountSid", AC),
            ("WorkspaceSid", WS),
            ("TaskAttributes", "{not json"),
        ])
        .unwrap();
        assert!(!e.ends_task());
        assert!(matches!(
            e.flex_attributes(),
            Err(AttributesError::NotJson(_))
        ));
    }

    #[test]
    fn an_accepted_reservation_names_its_agent_and_its_customer() {
        let e = event(&[
            ("EventType", RESERVATION_ACCEPTED),
            ("AccountSid", AC),
            ("WorkspaceSid", WS),
            ("TaskSid", WT),
            ("WorkerSid", "WK00000000000000000000000000000001"),
            (
                "TaskAttributes",
                r#"{"customerAddress":" whatsapp:+34600111222 ","from":"Ana"}"#,
            ),
        ])
        .unwrap();
        assert!(!e.ends_task());
        assert_eq!(
            e.worker_sid.as_ref().unwrap().as_str(),
            "WK00000000000000000000000000000001"
        );
        assert_eq!(
            e.customer_address().unwrap().unwrap().expose(),
            "whatsapp:+34600111222"
        );
        let from_only = TaskEvent {
            task_attributes: Some(r#"{"from":"+14155550100"}"#.into()),
            ..e.clone()
        };
        assert_eq!(
            from_only.customer_address().unwrap().unwrap().expose(),
            "+14155550100"
        );
        let nobody = TaskEvent {
            task_attributes: Some(r#"{"customerAddress":""}"#.into()),
            ..e
        };
        assert_eq!(nobody.customer_address().unwrap(), None);
    }

    #[test]
    fn a_missing_or_malformed_workspace_is_a_bad_request() {
        let missing = event(&[("EventType", "task.canceled"), ("AccountSid", AC)]).unwrap_err();
        assert_eq!(missing, EventError::Missing("WorkspaceSid"));
        let bad = event(&[
            ("EventType", "task.canceled"),
            ("AccountSid", AC),
            ("WorkspaceSid", "WW00000000000000000000000000000001"),
        ])
        .unwrap_err();
        assert!(matches!(
            bad,
            EventError::Sid {
                field: "WorkspaceSid",
                ..
            }
        ));
    }
}
