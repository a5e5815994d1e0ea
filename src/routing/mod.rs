//! Who the new task goes to: a decision, not wire JSON. From a conversation's stored inputs,
//! routing decides a [`Route`] (workspace, workflow, task channel, priority, timeout,
//! attributes), an optional reply, or to create no task; the Twilio client turns a route
//! into the Interactions API's fields. First-match `[[routing.rules]]` change the default
//! route of the `flex.*` settings. The inputs are kept with each job, and schedules are
//! judged at the first message's time, so a retry decides the very same route again.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::{FlexConfig, RoutingConfig};
use crate::domain::{
    ChannelType, ConversationSid, CustomerAddress, WorkerSid, WorkflowSid, WorkspaceSid,
};
use crate::event::MessageAdded;

mod decide;
#[cfg(test)]
mod tests_rules;

pub use decide::{Decision, Skipped};

/// What routing needs from the first message. Stored as JSON with the job: fields may be
/// added (with a default), never renamed. The body only with `routing.allow_body`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingInput {
    pub customer_address: Option<CustomerAddress>,
    pub channel_type: ChannelType,
    #[serde(default)]
    pub proxy_address: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
    /// The address the customer wrote to: `?address=` on the webhook URL, else the
    /// binding's proxy address, else looked up by the worker.
    #[serde(default)]
    pub address: Option<String>,
    /// The conversation's attributes, when a rule needs them (looked up by the worker).
    #[serde(default)]
    pub attributes: Option<Value>,
    /// When the first message was sent (Twilio's `DateCreated`, else its arrival), Unix ms:
    /// schedules are judged then, so a retry cannot flip the decision.
    #[serde(default)]
    pub at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Who last handled this customer, when known-agent routing is on: looked up once by
    /// the worker (`None` until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_worker: Option<LastWorker>,
}

/// The agent who last accepted a task of the customer, within `routing.known_agent_within`
/// of the lookup; both `None` when there was none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastWorker {
    pub worker_sid: Option<WorkerSid>,
    /// When they accepted it, Unix ms.
    pub at_ms: Option<i64>,
}

impl LastWorker {
    pub fn of(known: Option<crate::store::KnownAgent>) -> Self {
        match known {
            Some(k) => Self {
                worker_sid: Some(k.worker_sid),
                at_ms: Some(k.at_ms),
            },
            None => Self::default(),
        }
    }
}

impl RoutingInput {
    /// `address`: the webhook URL's `?address=`; `allow_body`: `routing.allow_body`.
    pub fn from_event(
        message: &MessageAdded,
        address: Option<&str>,
        allow_body: bool,
        received_at_ms: i64,
    ) -> Self {
        let customer_address = message.customer_address().cloned();
        let channel_type = customer_address
            .as_ref()
            .map_or(ChannelType::Web, CustomerAddress::channel_type);
        let proxy_address = message.messaging_binding.proxy_address.clone();
        let sent_at = message
            .date_created
            .as_deref()
            .and_then(|d| humantime::parse_rfc3339_weak(d.trim()).ok())
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .and_then(|d| i64::try_from(d.as_millis()).ok());
        Self {
            customer_address,
            channel_type,
            address: address
                .map(str::to_owned)
                .filter(|a| !a.trim().is_empty())
                .or_else(|| proxy_address.clone()),
            proxy_address,
            source: message.source.clone(),
            attributes: None,
            at_ms: Some(sent_at.unwrap_or(received_at_ms)),
            body: message.body.clone().filter(|_| allow_body),
            last_worker: None,
        }
    }
}

/// Where one conversation's task goes, and what it carries.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub workspace_sid: WorkspaceSid,
    pub workflow_sid: WorkflowSid,
    pub task_channel: String,
    pub priority: Option<u32>,
    pub timeout_secs: Option<u32>,
    /// The task's attributes, flexhook's own included.
    pub attributes: Map<String, Value>,
}

/// Decides routes: the first `[[routing.rules]]` that matches changes the default route of
/// the `flex.*` settings (see `decide.rs`).
#[derive(Debug, Clone)]
pub struct Router {
    default: FlexConfig,
    rules: RoutingConfig,
}

impl Router {
    /// The router of the account named `account`: its `[flex]` settings, and the rules
    /// that apply to it (`match.account` empty or naming it).
    pub fn new(flex: &FlexConfig, rules: &RoutingConfig, account: &str) -> Self {
        Self {
            default: flex.clone(),
            rules: rules.for_account(account),
        }
    }

    pub fn workspace_sid(&self) -> &WorkspaceSid {
        &self.default.workspace_sid
    }

    /// Whether some rule needs the address the customer wrote to.
    pub fn needs_address(&self) -> bool {
        self.rules.rules.iter().any(|r| r.uses_address())
    }

    /// `routing.known_agent_within`: how far back the agent who last accepted a task of
    /// the customer counts; `None` when known-agent routing is off.
    pub fn known_agent_within(&self) -> Option<std::time::Duration> {
        self.rules.known_agent_within
    }

    /// Whether some rule needs the conversation's attributes.
    pub fn needs_attributes(&self) -> bool {
        self.rules.rules.iter().any(|r| r.uses_attributes())
    }

    /// The route of this conversation's task, whatever the rules say.
    pub fn route(&self, conversation: &ConversationSid, input: &RoutingInput) -> Route {
        self.decide(conversation, input, input.at_ms.unwrap_or(0))
            .route
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadOptions, Settings};

    fn router(overrides: &[(&str, &str)]) -> Router {
        let settings = Settings::load(&LoadOptions {
            environment: Some("local".into()),
            config_dir: Some(concat!(env!("CARGO_MANIFEST_DIR"), "/config").into()),
            read_env: false,
            overrides: overrides
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..LoadOptions::default()
        })
        .unwrap()
        .validate()
        .unwrap();
        let account = settings.accounts.first();
        Router::new(&account.flex, &settings.routing, &account.name)
    }

    fn input(address: &str) -> RoutingInput {
        let a = CustomerAddress::new(address);
        RoutingInput {
            channel_type: a.channel_type(),
            customer_address: Some(a),
            proxy_address: None,
            source: None,
            address: None,
            attributes: None,
            at_ms: None,
            body: None,
            last_worker: None,
        }
    }

    #[test]
    fn the_route_names_the_workflow_channel_and_the_conversation() {
        let ch = ConversationSid::parse("CH11111111111111111111111111111111").unwrap();
        let route = router(&[("flex.priority", "5")]).route(&ch, &input("whatsapp:+34600111222"));
        assert_eq!(
            route.workspace_sid.as_str(),
            "WS00000000000000000000000000000000"
        );
        assert_eq!(
            route.workflow_sid.as_str(),
            "WW00000000000000000000000000000000"
        );
        assert_eq!(route.task_channel, "chat");
        assert_eq!(route.priority, Some(5));
        assert_eq!(route.timeout_secs, None);
        let a = &route.attributes;
        assert_eq!(a["name"], "whatsapp:+34600111222");
        assert_eq!(a["customerName"], "whatsapp:+34600111222");
        assert_eq!(a["from"], "whatsapp:+34600111222");
        assert_eq!(a["customerAddress"], "whatsapp:+34600111222");
        assert_eq!(a["conversationSid"], ch.as_str());
        assert_eq!(a["channelType"], "whatsapp");
    }

    #[test]
    fn static_attributes_are_merged_but_cannot_override_the_conversation() {
        let ch = ConversationSid::parse("CH11111111111111111111111111111111").unwrap();
        let route = router(&[(
            "flex.task_attributes",
            r#"{"team":"billing","conversationSid":"CHnotthisone","name":"VIP line","from":"x"}"#,
        )])
        .route(&ch, &input("+14155550100"));
        let a = &route.attributes;
        assert_eq!(a["team"], "billing");
        assert_eq!(a["name"], "VIP line", "a team may relabel its tasks");
        assert_eq!(a["customerName"], "+14155550100");
        assert_eq!(a["from"], "+14155550100", "from stays flexhook's");
        assert_eq!(a["conversationSid"], ch.as_str());
        assert_eq!(a["channelType"], "sms");
    }

    #[test]
    fn routing_inputs_stored_by_earlier_versions_still_load() {
        // A row written before proxy_address and source existed.
        let stored = r#"{"customer_address":"whatsapp:+34600111222","channel_type":"whatsapp"}"#;
        let input: RoutingInput = serde_json::from_str(stored).unwrap();
        assert_eq!(input.channel_type, ChannelType::Whatsapp);
        assert_eq!(input.proxy_address, None);
        assert_eq!(
            input.customer_address.unwrap().expose(),
            "whatsapp:+34600111222"
        );
    }
}
