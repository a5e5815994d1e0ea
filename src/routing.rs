//! Who the new task goes to: a decision, not wire JSON. From a conversation's stored inputs,
//! routing decides a [`Route`] (workspace, workflow, task channel, priority, timeout,
//! attributes); the Twilio client turns it into the Interactions API's fields. Today one
//! route (the `flex.*` settings) applies to every conversation; the inputs it uses are kept
//! with each job so that a retry decides the very same route again.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::config::FlexConfig;
use crate::domain::{ChannelType, ConversationSid, CustomerAddress, WorkflowSid, WorkspaceSid};
use crate::event::MessageAdded;

/// What routing needs from the first message (never its body). Stored as JSON with the
/// job: fields may be added (with a default), never renamed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingInput {
    pub customer_address: Option<CustomerAddress>,
    pub channel_type: ChannelType,
    #[serde(default)]
    pub proxy_address: Option<String>,
    #[serde(default)]
    pub source: Option<String>,
}

impl RoutingInput {
    pub fn from_event(message: &MessageAdded) -> Self {
        let customer_address = message.customer_address().cloned();
        let channel_type = customer_address
            .as_ref()
            .map_or(ChannelType::Web, CustomerAddress::channel_type);
        Self {
            customer_address,
            channel_type,
            proxy_address: message.messaging_binding.proxy_address.clone(),
            source: message.source.clone(),
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

/// Decides routes. Today: the single route of the `flex.*` settings.
#[derive(Debug, Clone)]
pub struct Router {
    default: FlexConfig,
}

impl Router {
    pub fn new(flex: &FlexConfig) -> Self {
        Self {
            default: flex.clone(),
        }
    }

    pub fn workspace_sid(&self) -> &WorkspaceSid {
        &self.default.workspace_sid
    }

    /// The route of this conversation's task.
    pub fn route(&self, conversation: &ConversationSid, input: &RoutingInput) -> Route {
        let flex = &self.default;
        let address = input
            .customer_address
            .as_ref()
            .map_or("unknown", CustomerAddress::expose);
        // Studio's Send to Flex names the task after the sender; Flex UI shows `name`, then
        // `customerName`, then `from`. A team may label tasks otherwise in task_attributes.
        let mut attributes = Map::new();
        attributes.insert("name".into(), json!(address));
        attributes.insert("customerName".into(), json!(address));
        attributes.extend(flex.task_attributes.clone());
        // flexhook's own attributes win: the task lookup relies on conversationSid.
        for (k, v) in [
            ("from", json!(address)),
            ("customerAddress", json!(address)),
            ("conversationSid", json!(conversation.as_str())),
            ("channelType", json!(input.channel_type.as_str())),
        ] {
            attributes.insert(k.to_owned(), v);
        }
        Route {
            workspace_sid: flex.workspace_sid.clone(),
            workflow_sid: flex.workflow_sid.clone(),
            task_channel: flex.task_channel.clone(),
            priority: flex.priority,
            timeout_secs: flex.task_timeout_secs,
            attributes,
        }
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
        Router::new(&settings.flex)
    }

    fn input(address: &str) -> RoutingInput {
        let a = CustomerAddress::new(address);
        RoutingInput {
            channel_type: a.channel_type(),
            customer_address: Some(a),
            proxy_address: None,
            source: None,
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
