//! Conversations API: removing the conversation-scoped webhook once Flex owns the conversation.

use reqwest::Method;

use super::{Api, Request, TwilioClient, TwilioError};
use crate::domain::{ChatServiceSid, ConversationSid, WebhookSid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRemoval {
    Removed,
    /// 404: someone (or an earlier attempt) removed it already.
    AlreadyGone,
}

/// `/v1/Services/{IS}/Conversations/{CH}` when the service is known, else `/v1/Conversations/{CH}`.
pub(crate) fn conversation_path(
    service: Option<&ChatServiceSid>,
    conversation: &ConversationSid,
) -> String {
    match service {
        Some(is) => format!("/v1/Services/{is}/Conversations/{conversation}"),
        None => format!("/v1/Conversations/{conversation}"),
    }
}

impl TwilioClient {
    /// `DELETE …/Conversations/{CH}/Webhooks/{WH}`, service-scoped when the service is known.
    pub async fn delete_conversation_webhook(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
        webhook: &WebhookSid,
    ) -> Result<WebhookRemoval, TwilioError> {
        let path = format!(
            "{}/Webhooks/{webhook}",
            conversation_path(service, conversation)
        );
        match self
            .send(Request::new(Api::Conversations, Method::DELETE, path))
            .await
        {
            Ok(_) => Ok(WebhookRemoval::Removed),
            Err(TwilioError::Api(a)) if a.status == 404 => Ok(WebhookRemoval::AlreadyGone),
            Err(e) => Err(e),
        }
    }
}
