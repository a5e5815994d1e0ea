//! Twilio's state as a reconciliation sweep reads it, served by wiremock from one shared
//! world: the active conversations (`GET /v1/Conversations`), each one's webhooks,
//! participants and messages, TaskRouter's events, and interaction channels' status.
//! Every read is counted by path, so a test can say what a sweep asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// One conversation as Twilio holds it.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub sid: String,
    /// Its Conversations service, as the list names it (`None`: the list names none).
    pub chat_service: Option<String>,
    /// `(target, url)` of its one webhook: `("webhook", url)`, `("studio", "")`, or none.
    pub webhook: Option<(String, String)>,
    pub webhook_sid: String,
    /// The customer's address and the address they wrote to.
    pub author: String,
    pub proxy_address: String,
    /// When the customer's first message was sent (RFC 3339).
    pub first_message_at: String,
}

impl Conversation {
    /// A conversation created by an address whose webhook is `url`.
    pub fn with_webhook(url: &str, author: &str, first_message_at: &str) -> Self {
        Self {
            sid: super::random_sid("CH"),
            chat_service: Some(super::SERVICE.to_owned()),
            webhook: Some(("webhook".into(), url.into())),
            webhook_sid: super::random_sid("WH"),
            author: author.into(),
            proxy_address: "whatsapp:+15550001111".into(),
            first_message_at: first_message_at.into(),
        }
    }
}

#[derive(Default)]
struct State {
    conversations: Vec<Conversation>,
    /// TaskRouter's events, as the Events list shows them.
    events: Vec<Value>,
    /// Interaction channel (UO…) → status.
    channels: HashMap<String, String>,
    /// GET requests by path.
    reads: HashMap<String, usize>,
}

/// The world; clones share it.
#[derive(Clone, Default)]
pub struct World(Arc<Mutex<State>>);

fn page(key: &str, items: Vec<Value>) -> Value {
    json!({
        key: items,
        "meta": {"page": 0, "page_size": 50, "key": key, "next_page_url": null},
    })
}

impl World {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn add(&self, conversation: Conversation) {
        self.state().conversations.push(conversation);
    }

    /// A TaskRouter event that ended `task` of `conversation`'s interaction.
    pub fn task_ended(
        &self,
        event_type: &str,
        task: &str,
        conversation: &str,
        interaction: &str,
        channel: &str,
    ) {
        let attributes = json!({
            "conversationSid": conversation,
            "flexInteractionSid": interaction,
            "flexInteractionChannelSid": channel,
        })
        .to_string();
        self.state().events.push(json!({
            "sid": super::random_sid("EV"),
            "account_sid": super::ACCOUNT,
            "workspace_sid": super::WORKSPACE,
            "event_type": event_type,
            "resource_type": "Task",
            "resource_sid": task,
            "event_date": "2026-12-05T10:00:00Z",
            "event_data": {
                "task_sid": task,
                "task_attributes": attributes,
                "task_assignment_status": "canceled",
                "task_canceled_reason": "Task TTL Exceeded",
                "workspace_sid": super::WORKSPACE,
            },
        }));
    }

    pub fn channel_status(&self, channel: &str, status: &str) {
        self.state()
            .channels
            .insert(channel.to_owned(), status.to_owned());
    }

    /// How many GETs `path` got.
    pub fn reads(&self, path: &str) -> usize {
        self.state().reads.get(path).copied().unwrap_or(0)
    }

    /// Serves every GET of the world on `server` (Conversations, TaskRouter and Flex may
    /// share one, or each have its own).
    pub async fn serve(&self, server: &MockServer) {
        Mock::given(method("GET"))
            .respond_with(self.clone())
            .with_priority(10)
            .mount(server)
            .await;
    }

    fn answer(&self, request: &Request) -> Option<Value> {
        let mut state = self.state();
        let path = request.url.path().to_owned();
        *state.reads.entry(path.clone()).or_default() += 1;
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let query = |name: &str| {
            request
                .url
                .query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        let find = |sid: &str| state.conversations.iter().find(|c| c.sid == sid).cloned();
        match segments.as_slice() {
            ["v1", "Conversations"] => Some(page(
                "conversations",
                state
                    .conversations
                    .iter()
                    .map(|c| {
                        json!({"sid": c.sid, "account_sid": super::ACCOUNT,
                            "chat_service_sid": c.chat_service, "state": "active",
                            "date_created": c.first_message_at})
                    })
                    .collect(),
            )),
            [.., "Conversations", ch, "Webhooks"] => {
                let c = find(ch)?;
                let hooks = c
                    .webhook
                    .iter()
                    .map(|(target, url)| {
                        let configuration = if target == "studio" {
                            json!({"flow_sid": "FW00000000000000000000000000000001"})
                        } else {
                            json!({"url": url, "method": "POST", "filters": ["onMessageAdded"]})
                        };
                        json!({"sid": c.webhook_sid, "conversation_sid": c.sid,
                            "target": target, "configuration": configuration})
                    })
                    .collect();
                Some(page("webhooks", hooks))
            }
            [.., "Conversations", ch, "Participants"] => {
                let c = find(ch)?;
                Some(page(
                    "participants",
                    vec![
                        json!({"sid": super::random_sid("MB"), "messaging_binding": {
                        "type": "whatsapp", "address": c.author, "proxy_address": c.proxy_address}}),
                    ],
                ))
            }
            [.., "Conversations", ch, "Messages"] => {
                let c = find(ch)?;
                Some(page(
                    "messages",
                    vec![json!({"sid": super::random_sid("IM"), "author": c.author,
                        "index": 0, "date_created": c.first_message_at})],
                ))
            }
            ["v1", "Workspaces", _, "Events"] => {
                let wanted = query("EventType");
                Some(page(
                    "events",
                    state
                        .events
                        .iter()
                        .filter(|e| wanted.as_deref().map_or(true, |w| e["event_type"] == w))
                        .cloned()
                        .collect(),
                ))
            }
            ["v1", "Interactions", _, "Channels", uo] => {
                let status = state.channels.get(*uo).cloned()?;
                Some(json!({"sid": uo, "status": status, "type": "whatsapp"}))
            }
            _ => None,
        }
    }
}

impl Respond for World {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        match self.answer(request) {
            Some(body) => ResponseTemplate::new(200).set_body_json(body),
            None => ResponseTemplate::new(404).set_body_json(json!({
                "code": 20404, "message": "The requested resource was not found",
                "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404,
            })),
        }
    }
}
