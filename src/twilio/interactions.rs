//! `POST /v1/Interactions` (flex-api): one customer-initiated interaction, hence one task.
//! This is where a routing decision ([`Route`]) becomes Twilio's `Channel` and `Routing`.

use reqwest::Method;
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::{Api, Request, TwilioClient, TwilioError};
use crate::domain::{
    ChannelType, ConversationSid, CustomerAddress, InteractionChannelSid, InteractionSid, TaskSid,
};
use crate::routing::Route;

/// The two form fields, each a JSON object sent as a string.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionRequest {
    pub channel: Value,
    pub routing: Value,
    /// Masked wherever the request is logged.
    customer_address: Option<CustomerAddress>,
}

impl InteractionRequest {
    /// The wire form of a route for this conversation.
    pub fn new(
        conversation: &ConversationSid,
        channel_type: ChannelType,
        customer_address: Option<&CustomerAddress>,
        route: &Route,
    ) -> Self {
        let mut properties = Map::new();
        properties.insert("workspace_sid".into(), json!(route.workspace_sid.as_str()));
        properties.insert("workflow_sid".into(), json!(route.workflow_sid.as_str()));
        properties.insert("task_channel_unique_name".into(), json!(route.task_channel));
        properties.insert("attributes".into(), Value::Object(route.attributes.clone()));
        if let Some(p) = route.priority {
            properties.insert("priority".into(), json!(p));
        }
        if let Some(t) = route.timeout_secs {
            properties.insert("timeout".into(), json!(t));
        }
        Self {
            channel: json!({
                "type": channel_type.as_str(),
                "initiated_by": "customer",
                "properties": { "media_channel_sid": conversation.as_str() },
            }),
            routing: json!({ "properties": Value::Object(properties) }),
            customer_address: customer_address.cloned(),
        }
    }

    /// Channel and Routing as JSON text with the customer's address as logs show it
    /// (masked, unless `log.show_addresses`).
    pub fn for_logs(&self) -> (String, String) {
        let mask = |v: &Value| {
            let text = v.to_string();
            match &self.customer_address {
                Some(a) if !a.expose().is_empty() => text.replace(a.expose(), &a.for_logs()),
                _ => text,
            }
        };
        (mask(&self.channel), mask(&self.routing))
    }
}

/// What Twilio answered. A 2xx only means "accepted": creation finishes asynchronously.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreatedInteraction {
    pub interaction_sid: Option<InteractionSid>,
    pub channel_sid: Option<InteractionChannelSid>,
    pub task_sid: Option<TaskSid>,
}

/// The fields of Twilio's answer that flexhook reads; every one is optional, as in the spec.
#[derive(Deserialize)]
pub(crate) struct InteractionResponse {
    sid: Option<String>,
    channel: Option<Sid>,
    routing: Option<RoutingResponse>,
}

#[derive(Deserialize)]
struct Sid {
    sid: Option<String>,
}

#[derive(Deserialize)]
struct RoutingResponse {
    properties: Option<Sid>,
}

impl InteractionResponse {
    /// The SIDs flexhook keeps; any that is missing or malformed is left out.
    pub(crate) fn created(self) -> CreatedInteraction {
        CreatedInteraction {
            interaction_sid: self.sid.and_then(|s| InteractionSid::parse(&s).ok()),
            channel_sid: self
                .channel
                .and_then(|c| c.sid)
                .and_then(|s| InteractionChannelSid::parse(&s).ok()),
            task_sid: self
                .routing
                .and_then(|r| r.properties)
                .and_then(|p| p.sid)
                .and_then(|s| TaskSid::parse(&s).ok()),
        }
    }
}

impl TwilioClient {
    pub async fn create_interaction(
        &self,
        request: &InteractionRequest,
    ) -> Result<CreatedInteraction, TwilioError> {
        let form = [
            ("Channel", request.channel.to_string()),
            ("Routing", request.routing.to_string()),
        ];
        let (channel, routing) = request.for_logs();
        let mut call = Request::new(Api::Flex, Method::POST, "/v1/Interactions");
        call.form = &form;
        call.dry_run_detail = Some(format!("Channel={channel} Routing={routing}"));
        let answer = self.send(call).await?;
        let created = answer.json::<InteractionResponse>()?.created();
        // A 2xx that names no interaction is as unreadable as one that is not JSON: the
        // interaction exists, and only a lookup can say which it is. A dry-run's `{}` names
        // none because nothing was sent.
        if created.interaction_sid.is_none() && !self.is_dry_run() {
            return Err(TwilioError::Decode {
                status: answer.status.as_u16(),
                message: "the answer names no interaction (`sid` KD…)".into(),
            });
        }
        Ok(created)
    }
}

#[derive(Deserialize)]
struct ChannelResponse {
    status: Option<String>,
}

impl TwilioClient {
    /// `POST /v1/Interactions/{KD}/Channels/{UO}` with `Status=closed`: ends the interaction
    /// channel, which wraps up its tasks and closes the conversation.
    pub async fn close_interaction_channel(
        &self,
        interaction: &InteractionSid,
        channel: &InteractionChannelSid,
    ) -> Result<(), TwilioError> {
        let form = [("Status", "closed".to_owned())];
        let path = format!("/v1/Interactions/{interaction}/Channels/{channel}");
        let mut call = Request::new(Api::Flex, Method::POST, path);
        call.form = &form;
        self.send(call).await.map(|_| ())
    }

    /// `POST /v1/Interactions/{KD}/Channels/{UO}/Invites` with `Routing`: a new task for a
    /// channel no agent is on (left or parked), routed as `request.routing` says.
    pub async fn invite_to_channel(
        &self,
        interaction: &InteractionSid,
        channel: &InteractionChannelSid,
        request: &InteractionRequest,
    ) -> Result<(), TwilioError> {
        let form = [("Routing", request.routing.to_string())];
        let (_, routing) = request.for_logs();
        let path = format!("/v1/Interactions/{interaction}/Channels/{channel}/Invites");
        let mut call = Request::new(Api::Flex, Method::POST, path);
        call.form = &form;
        call.dry_run_detail = Some(format!("Routing={routing}"));
        self.send(call).await.map(|_| ())
    }

    /// `GET /v1/Interactions/{KD}/Channels/{UO}`: the channel's `status` (`closed`, …).
    pub async fn interaction_channel_status(
        &self,
        interaction: &InteractionSid,
        channel: &InteractionChannelSid,
    ) -> Result<Option<String>, TwilioError> {
        let path = format!("/v1/Interactions/{interaction}/Channels/{channel}");
        let channel: ChannelResponse = self.get_json(Api::Flex, &path, &[]).await?;
        Ok(channel.status)
    }
}

/// Parses a `POST /v1/Interactions` answer exactly as the client does (for contract tests).
pub fn parse_created_interaction(body: &[u8]) -> Result<CreatedInteraction, String> {
    serde_json::from_slice::<InteractionResponse>(body)
        .map(InteractionResponse::created)
        .map_err(|e| e.to_string())
}
