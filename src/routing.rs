//! Who the new task goes to: the Interaction's `Channel` and `Routing` for a conversation.
//! Today one route (the `flex.*` settings) applies to every conversation; the inputs it uses
//! are kept with each job so a retry builds the very same request again.

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::config::ValidSettings;
use crate::domain::{ChannelType, ConversationSid, CustomerAddress, WorkflowSid, WorkspaceSid};
use crate::event::MessageAdded;
use crate::twilio::InteractionRequest;

/// What routing needs from the first message (never its body).
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

/// The single route of the `flex.*` settings.
#[derive(Debug, Clone)]
pub struct Router {
    workspace_sid: WorkspaceSid,
    workflow_sid: WorkflowSid,
    task_channel: String,
    static_attributes: Map<String, Value>,
    priority: Option<u32>,
    timeout_secs: Option<u32>,
}

impl Router {
    pub fn from_settings(settings: &ValidSettings) -> Self {
        Self {
            workspace_sid: settings.workspace_sid.clone(),
            workflow_sid: settings.workflow_sid.clone(),
            task_channel: settings.settings.flex.task_channel.clone(),
            static_attributes: settings.settings.flex.task_attributes.clone(),
            priority: settings.priority,
            timeout_secs: settings.task_timeout_secs,
        }
    }

    pub fn workspace_sid(&self) -> &WorkspaceSid {
        &self.workspace_sid
    }

    /// The `POST /v1/Interactions` fields for this conversation.
    pub fn interaction(
        &self,
        conversation: &ConversationSid,
        input: &RoutingInput,
    ) -> InteractionRequest {
        let address = input
            .customer_address
            .as_ref()
            .map_or("unknown", CustomerAddress::expose);
        let mut attributes = self.static_attributes.clone();
        // flexhook's own attributes win: the task lookup relies on conversationSid.
        for (k, v) in [
            ("from", json!(address)),
            ("customerAddress", json!(address)),
            ("conversationSid", json!(conversation.as_str())),
            ("channelType", json!(input.channel_type.as_str())),
        ] {
            attributes.insert(k.to_owned(), v);
        }
        let mut properties = Map::new();
        properties.insert("workspace_sid".into(), json!(self.workspace_sid.as_str()));
        properties.insert("workflow_sid".into(), json!(self.workflow_sid.as_str()));
        properties.insert("task_channel_unique_name".into(), json!(self.task_channel));
        properties.insert("attributes".into(), Value::Object(attributes));
        if let Some(p) = self.priority {
            properties.insert("priority".into(), json!(p));
        }
        if let Some(t) = self.timeout_secs {
            properties.insert("timeout".into(), json!(t));
        }
        InteractionRequest {
            channel: json!({
                "type": input.channel_type.as_str(),
                "initiated_by": "customer",
                "properties": { "media_channel_sid": conversation.as_str() },
            }),
            routing: json!({ "properties": Value::Object(properties) }),
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
        Router::from_settings(&settings)
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
    fn the_interaction_names_the_conversation_workflow_and_channel() {
        let ch = ConversationSid::parse("CH11111111111111111111111111111111").unwrap();
        let req =
            router(&[("flex.priority", "5")]).interaction(&ch, &input("whatsapp:+34600111222"));
        assert_eq!(req.channel["type"], "whatsapp");
        assert_eq!(req.channel["initiated_by"], "customer");
        assert_eq!(req.channel["properties"]["media_channel_sid"], ch.as_str());
        let p = &req.routing["properties"];
        assert_eq!(p["workspace_sid"], "WS00000000000000000000000000000000");
        assert_eq!(p["workflow_sid"], "WW00000000000000000000000000000000");
        assert_eq!(p["task_channel_unique_name"], "chat");
        assert_eq!(p["priority"], 5);
        assert!(p.get("timeout").is_none());
        let a = &p["attributes"];
        assert_eq!(a["from"], "whatsapp:+34600111222");
        assert_eq!(a["customerAddress"], "whatsapp:+34600111222");
        assert_eq!(a["conversationSid"], ch.as_str());
        assert_eq!(a["channelType"], "whatsapp");
    }

    #[test]
    fn static_attributes_are_merged_but_cannot_override_the_conversation() {
        let ch = ConversationSid::parse("CH11111111111111111111111111111111").unwrap();
        let req = router(&[(
            "flex.task_attributes",
            r#"{"team":"billing","conversationSid":"CHnotthisone"}"#,
        )])
        .interaction(&ch, &input("+14155550100"));
        let a = &req.routing["properties"]["attributes"];
        assert_eq!(a["team"], "billing");
        assert_eq!(a["conversationSid"], ch.as_str());
        assert_eq!(a["channelType"], "sms");
    }
}
