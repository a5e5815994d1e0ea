//! Conversations API: removing the conversation-scoped webhook once Flex owns the conversation.

use super::{TwilioClient, TwilioError};
use crate::domain::{ChatServiceSid, ConversationSid, WebhookSid};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookRemoval {
    Removed,
    /// 404: someone (or an earlier attempt) removed it already.
    AlreadyGone,
    DryRun,
}

impl TwilioClient {
    /// `DELETE …/Conversations/{CH}/Webhooks/{WH}`, service-scoped when the service is known.
    pub async fn delete_conversation_webhook(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
        webhook: &WebhookSid,
    ) -> Result<WebhookRemoval, TwilioError> {
        if self.is_dry_run() {
            return Ok(WebhookRemoval::DryRun);
        }
        let url = match service {
            Some(is) => format!(
                "{}/v1/Services/{is}/Conversations/{conversation}/Webhooks/{webhook}",
                self.conversations_base
            ),
            None => format!(
                "{}/v1/Conversations/{conversation}/Webhooks/{webhook}",
                self.conversations_base
            ),
        };
        match self.send(self.request(reqwest::Method::DELETE, &url)).await {
            Ok(_) => Ok(WebhookRemoval::Removed),
            Err(TwilioError::Api(a)) if a.status == 404 => Ok(WebhookRemoval::AlreadyGone),
            Err(e) => Err(e),
        }
    }
}
