//! The reads a reconciliation sweep makes: the account's active conversations, a
//! conversation's webhooks, its customer's binding and first message, and TaskRouter's
//! event log. Lists are read to their last page; in dry-run every list is empty.

use serde::Deserialize;
use serde_json::Value;

use super::conversations::conversation_path;
use super::{Api, TwilioClient, TwilioError};
use crate::domain::{
    AccountSid, ChatServiceSid, ConversationSid, MessageSid, TaskSid, WebhookSid, WorkerSid,
    WorkspaceSid,
};
use crate::event::task::TaskEvent;

/// Pages of a conversation's messages read to find its customer's first one.
const MESSAGE_PAGES: usize = 4;

/// One conversation as `GET /v1/Conversations` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedConversation {
    pub sid: ConversationSid,
    pub chat_service_sid: Option<ChatServiceSid>,
    /// `date_created`, RFC 3339 as Twilio sends it.
    pub date_created: Option<String>,
}

/// A conversation-scoped webhook (`GET …/Conversations/{CH}/Webhooks`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConversationWebhook {
    pub sid: WebhookSid,
    /// `target`: webhook, trigger or studio.
    pub target: String,
    /// `configuration.url` (none for Studio's: it names a flow instead).
    pub url: Option<String>,
}

/// The customer's side of a conversation: a participant's messaging binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerBinding {
    /// `messaging_binding.address`, e.g. `whatsapp:+34600111222`.
    pub address: String,
    /// `messaging_binding.proxy_address`: the address the customer wrote to.
    pub proxy_address: Option<String>,
}

/// A message as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedMessage {
    pub sid: Option<MessageSid>,
    pub author: Option<String>,
    pub date_created: Option<String>,
}

/// Where the conversations list goes on.
enum Next {
    First,
    Url(String),
    Done,
}

/// The pages of the active conversations list, read one by one.
pub struct ConversationPages<'a> {
    client: &'a TwilioClient,
    since: String,
    next: Next,
    read: usize,
}

impl ConversationPages<'_> {
    /// The next page's conversations; `None` after the last page.
    pub async fn next_page(&mut self) -> Result<Option<Vec<ListedConversation>>, TwilioError> {
        let api = Api::Conversations;
        let mut page: Value = match &self.next {
            Next::Done => return Ok(None),
            Next::First => {
                let query = [
                    ("State", "active"),
                    ("StartDate", self.since.as_str()),
                    ("PageSize", "100"),
                ];
                self.client
                    .get_json(api, "/v1/Conversations", &query)
                    .await?
            }
            Next::Url(url) => self.client.get_json(api, url, &[]).await?,
        };
        self.read += 1;
        let raw: Vec<RawConversation> = super::page_items(&mut page, "conversations")?;
        self.next = match super::next_page_url(&page) {
            None => Next::Done,
            Some(next) if !next.starts_with(self.client.base(api)) => {
                return Err(TwilioError::Decode {
                    status: 200,
                    message: format!("next_page_url {next} is not on Conversations: not followed"),
                })
            }
            Some(_) if self.read >= super::MAX_PAGES => {
                return Err(TwilioError::Decode {
                    status: 200,
                    message: format!("more than {} pages of conversations", super::MAX_PAGES),
                })
            }
            Some(next) => Next::Url(next),
        };
        Ok(Some(
            raw.into_iter()
                .filter_map(|c| {
                    Some(ListedConversation {
                        sid: ConversationSid::parse(&c.sid).ok()?,
                        chat_service_sid: c
                            .chat_service_sid
                            .and_then(|s| ChatServiceSid::parse(&s).ok()),
                        date_created: c.date_created,
                    })
                })
                .collect(),
        ))
    }
}

#[derive(Deserialize)]
struct RawConversation {
    sid: String,
    chat_service_sid: Option<String>,
    date_created: Option<String>,
}

#[derive(Deserialize)]
struct RawWebhook {
    sid: String,
    target: Option<String>,
    #[serde(default)]
    configuration: Value,
}

#[derive(Deserialize)]
struct RawMessage {
    sid: Option<String>,
    author: Option<String>,
    date_created: Option<String>,
}

#[derive(Deserialize)]
struct RawEvent {
    event_type: Option<String>,
    account_sid: Option<String>,
    workspace_sid: Option<String>,
    resource_type: Option<String>,
    resource_sid: Option<String>,
    #[serde(default)]
    event_data: Value,
}

impl TwilioClient {
    /// `GET /v1/Conversations?State=active&StartDate={since}`, a page at a time (`since`:
    /// RFC 3339), so that a sweep holds one page of a long list, not all of it.
    pub fn active_conversations_since(&self, since: &str) -> ConversationPages<'_> {
        ConversationPages {
            client: self,
            since: since.to_owned(),
            next: Next::First,
            read: 0,
        }
    }

    /// The conversation's webhooks (at most 5, so one page).
    pub async fn conversation_webhooks(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
    ) -> Result<Vec<ConversationWebhook>, TwilioError> {
        let path = format!("{}/Webhooks", conversation_path(service, conversation));
        let raw: Vec<RawWebhook> = self
            .list_all(Api::Conversations, &path, &[("PageSize", "5")], "webhooks")
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|w| {
                Some(ConversationWebhook {
                    sid: WebhookSid::parse(&w.sid).ok()?,
                    target: w.target.unwrap_or_default(),
                    url: w.configuration["url"].as_str().map(str::to_owned),
                })
            })
            .collect())
    }

    /// The first participant with a messaging binding that has an address: the customer.
    pub async fn customer_binding(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
    ) -> Result<Option<CustomerBinding>, TwilioError> {
        let bindings = self.messaging_bindings(service, conversation).await?;
        Ok(bindings.into_iter().find_map(|binding| {
            Some(CustomerBinding {
                address: binding["address"].as_str()?.to_owned(),
                proxy_address: binding["proxy_address"].as_str().map(str::to_owned),
            })
        }))
    }

    /// The conversation's first message written by `author`, oldest first, within the first
    /// few pages.
    pub async fn first_message_by(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
        author: &str,
    ) -> Result<Option<ListedMessage>, TwilioError> {
        let path = format!("{}/Messages", conversation_path(service, conversation));
        let mut page: Value = self
            .get_json(
                Api::Conversations,
                &path,
                &[("Order", "asc"), ("PageSize", "50")],
            )
            .await?;
        for _ in 0..MESSAGE_PAGES {
            let messages: Vec<RawMessage> = super::page_items(&mut page, "messages")?;
            if let Some(m) = messages
                .into_iter()
                .find(|m| m.author.as_deref() == Some(author))
            {
                return Ok(Some(ListedMessage {
                    sid: m.sid.and_then(|s| MessageSid::parse(&s).ok()),
                    author: m.author,
                    date_created: m.date_created,
                }));
            }
            let Some(next) = super::next_page_url(&page) else {
                break;
            };
            if !next.starts_with(self.base(Api::Conversations)) {
                break;
            }
            page = self.get_json(Api::Conversations, &next, &[]).await?;
        }
        Ok(None)
    }

    /// TaskRouter's events of `event_type` since `since` (RFC 3339), every page, as the
    /// event callback would have carried them. Events that name no task are left out.
    pub async fn task_events_since(
        &self,
        workspace: &WorkspaceSid,
        event_type: &str,
        since: &str,
    ) -> Result<Vec<TaskEvent>, TwilioError> {
        let path = format!("/v1/Workspaces/{workspace}/Events");
        let raw: Vec<RawEvent> = self
            .list_all(
                Api::TaskRouter,
                &path,
                &[
                    ("EventType", event_type),
                    ("StartDate", since),
                    ("PageSize", "200"),
                ],
                "events",
            )
            .await?;
        Ok(raw
            .into_iter()
            .filter_map(|e| task_event(e, workspace))
            .collect())
    }
}

/// A logged event as the callback would have carried it: the task, its attributes and why
/// it ended, from `event_data` (snake_case keys, or the callback's own names).
fn task_event(e: RawEvent, workspace: &WorkspaceSid) -> Option<TaskEvent> {
    let data = &e.event_data;
    let field = |snake: &str, callback: &str| {
        data.get(snake)
            .or_else(|| data.get(callback))
            .and_then(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Null => None,
                other => Some(other.to_string()),
            })
    };
    let task = field("task_sid", "TaskSid").or_else(|| {
        e.resource_type
            .as_deref()
            .filter(|t| t.eq_ignore_ascii_case("task"))
            .and(e.resource_sid.clone())
    })?;
    Some(TaskEvent {
        event_type: e.event_type?,
        account_sid: AccountSid::parse(e.account_sid.as_deref()?).ok()?,
        workspace_sid: e
            .workspace_sid
            .and_then(|w| WorkspaceSid::parse(&w).ok())
            .unwrap_or_else(|| workspace.clone()),
        task_sid: Some(TaskSid::parse(&task).ok()?),
        worker_sid: field("worker_sid", "WorkerSid").and_then(|w| WorkerSid::parse(&w).ok()),
        task_attributes: field("task_attributes", "TaskAttributes"),
        reason: field("task_canceled_reason", "TaskCanceledReason")
            .or_else(|| field("description", "EventDescription")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn workspace() -> WorkspaceSid {
        WorkspaceSid::parse("WS00000000000000000000000000000001").unwrap()
    }

    fn raw(value: Value) -> RawEvent {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn a_logged_task_event_reads_as_its_callback_would() {
        let e = task_event(
            raw(json!({
                "event_type": "workflow.timeout",
                "account_sid": "AC00000000000000000000000000000001",
                "workspace_sid": "WS00000000000000000000000000000001",
                "resource_type": "Task",
                "resource_sid": "WT00000000000000000000000000000001",
                "event_data": {
                    "task_sid": "WT00000000000000000000000000000001",
                    "task_attributes": "{\"conversationSid\":\"CH00000000000000000000000000000001\"}",
                    "task_canceled_reason": "Task TTL Exceeded",
                },
            })),
            &workspace(),
        )
        .unwrap();
        assert_eq!(e.event_type, "workflow.timeout");
        assert_eq!(
            e.task_sid.as_ref().unwrap().as_str(),
            "WT00000000000000000000000000000001"
        );
        assert_eq!(e.reason.as_deref(), Some("Task TTL Exceeded"));
        assert_eq!(
            e.flex_attributes()
                .unwrap()
                .conversation_sid
                .unwrap()
                .as_str(),
            "CH00000000000000000000000000000001"
        );
    }

    #[test]
    fn attributes_given_as_an_object_and_the_task_as_the_resource_are_read_too() {
        let e = task_event(
            raw(json!({
                "event_type": "task.canceled",
                "account_sid": "AC00000000000000000000000000000001",
                "resource_type": "task",
                "resource_sid": "WT00000000000000000000000000000002",
                "event_data": {"TaskAttributes": {"conversationSid": "CH00000000000000000000000000000002"}},
            })),
            &workspace(),
        )
        .unwrap();
        assert_eq!(
            e.task_sid.as_ref().unwrap().as_str(),
            "WT00000000000000000000000000000002"
        );
        assert_eq!(e.workspace_sid, workspace());
        assert!(e.flex_attributes().unwrap().conversation_sid.is_some());
    }

    #[test]
    fn an_event_that_names_no_task_is_left_out() {
        let worker_event = raw(json!({
            "event_type": "worker.activity.update",
            "account_sid": "AC00000000000000000000000000000001",
            "resource_type": "Worker",
            "resource_sid": "WK00000000000000000000000000000001",
            "event_data": {},
        }));
        assert!(task_event(worker_event, &workspace()).is_none());
    }
}
