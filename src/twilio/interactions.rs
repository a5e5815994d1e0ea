//! `POST /v1/Interactions` (flex-api): one customer-initiated interaction, hence one task.

use serde::Deserialize;
use serde_json::Value;

use super::{TwilioClient, TwilioError};
use crate::domain::{CustomerAddress, InteractionChannelSid, InteractionSid, TaskSid};

/// The two form fields, each a JSON object sent as a string.
#[derive(Debug, Clone, PartialEq)]
pub struct InteractionRequest {
    pub channel: Value,
    pub routing: Value,
}

impl InteractionRequest {
    /// Channel and Routing as JSON text with the customer's address masked, for logs.
    pub fn redacted(&self, address: Option<&CustomerAddress>) -> (String, String) {
        let mask = |v: &Value| {
            let text = v.to_string();
            match address {
                Some(a) if !a.expose().is_empty() => text.replace(a.expose(), &a.masked()),
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

#[derive(Deserialize)]
struct Response {
    sid: Option<String>,
    channel: Option<Sid>,
    routing: Option<Routing>,
}

#[derive(Deserialize)]
struct Sid {
    sid: Option<String>,
}

#[derive(Deserialize)]
struct Routing {
    properties: Option<Sid>,
}

impl TwilioClient {
    pub async fn create_interaction(
        &self,
        request: &InteractionRequest,
    ) -> Result<CreatedInteraction, TwilioError> {
        if self.is_dry_run() {
            return Ok(CreatedInteraction::default());
        }
        let url = format!("{}/v1/Interactions", self.flex_base);
        let form = [
            ("Channel", request.channel.to_string()),
            ("Routing", request.routing.to_string()),
        ];
        let ok = self
            .send(self.request(reqwest::Method::POST, &url).form(&form))
            .await?;
        let parsed: Response =
            serde_json::from_slice(&ok.body).map_err(|e| TwilioError::Decode {
                status: ok.status.as_u16(),
                message: e.to_string(),
            })?;
        Ok(CreatedInteraction {
            interaction_sid: parsed.sid.and_then(|s| InteractionSid::parse(&s).ok()),
            channel_sid: parsed
                .channel
                .and_then(|c| c.sid)
                .and_then(|s| InteractionChannelSid::parse(&s).ok()),
            task_sid: parsed
                .routing
                .and_then(|r| r.properties)
                .and_then(|p| p.sid)
                .and_then(|s| TaskSid::parse(&s).ok()),
        })
    }
}
