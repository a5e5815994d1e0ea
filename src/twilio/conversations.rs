//! Conversations API: removing the conversation-scoped webhook once Flex owns the
//! conversation, setting its timers, and posting a message to its customer.

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

impl TwilioClient {
    /// `POST …/Conversations/{CH}/Webhooks`: a conversation-scoped webhook that posts
    /// `onMessageAdded` to `url`; its SID.
    pub async fn add_conversation_webhook(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
        url: &str,
    ) -> Result<Option<WebhookSid>, TwilioError> {
        #[derive(serde::Deserialize)]
        struct Created {
            sid: Option<String>,
        }
        let form = [
            ("Target", "webhook".to_owned()),
            ("Configuration.Url", url.to_owned()),
            ("Configuration.Method", "post".to_owned()),
            ("Configuration.Filters", "onMessageAdded".to_owned()),
        ];
        let path = format!("{}/Webhooks", conversation_path(service, conversation));
        let mut call = Request::new(Api::Conversations, Method::POST, path);
        call.form = &form;
        let created: Created = self.send(call).await?.json()?;
        Ok(created.sid.and_then(|s| WebhookSid::parse(&s).ok()))
    }

    /// `POST …/Conversations/{CH}` with `Timers.Closed` and/or `Timers.Inactive` (ISO 8601).
    pub async fn set_conversation_timers(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
        closed: Option<&str>,
        inactive: Option<&str>,
    ) -> Result<(), TwilioError> {
        let mut form = Vec::new();
        if let Some(c) = closed {
            form.push(("Timers.Closed", c.to_owned()));
        }
        if let Some(i) = inactive {
            form.push(("Timers.Inactive", i.to_owned()));
        }
        let mut call = Request::new(
            Api::Conversations,
            Method::POST,
            conversation_path(service, conversation),
        );
        call.form = &form;
        self.send(call).await.map(|_| ())
    }

    /// `POST …/Conversations/{CH}/Messages` with `Author` and `Body`.
    pub async fn post_conversation_message(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
        author: &str,
        body: &str,
    ) -> Result<(), TwilioError> {
        let form = [("Author", author.to_owned()), ("Body", body.to_owned())];
        let path = format!("{}/Messages", conversation_path(service, conversation));
        let mut call = Request::new(Api::Conversations, Method::POST, path);
        call.form = &form;
        call.dry_run_detail = Some(format!("Author={author}"));
        self.send(call).await.map(|_| ())
    }
}

#[derive(serde::Deserialize)]
struct Participant {
    messaging_binding: Option<serde_json::Value>,
}

#[derive(serde::Deserialize)]
struct Conversation {
    attributes: Option<String>,
}

impl TwilioClient {
    /// The address the customer wrote to: the `messaging_binding.proxy_address` of the
    /// participant whose binding address is `author` (`GET …/Participants`, every page).
    pub async fn proxy_address_of(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
        author: &str,
    ) -> Result<Option<String>, TwilioError> {
        Ok(self
            .messaging_bindings(service, conversation)
            .await?
            .into_iter()
            .find(|b| b["address"].as_str() == Some(author))
            .and_then(|b| b["proxy_address"].as_str().map(str::to_owned)))
    }

    /// The participants' messaging bindings (`GET …/Participants`, every page): the
    /// participants that write through SMS, WhatsApp and the like, customers first of all.
    pub(crate) async fn messaging_bindings(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
    ) -> Result<Vec<serde_json::Value>, TwilioError> {
        let path = format!("{}/Participants", conversation_path(service, conversation));
        let participants: Vec<Participant> = self
            .list_all(
                Api::Conversations,
                &path,
                &[("PageSize", "50")],
                "participants",
            )
            .await?;
        Ok(participants
            .into_iter()
            .filter_map(|p| p.messaging_binding)
            .collect())
    }

    /// The conversation's `attributes`, parsed (`GET …/Conversations/{CH}`); `{}` when unset.
    pub async fn conversation_attributes(
        &self,
        service: Option<&ChatServiceSid>,
        conversation: &ConversationSid,
    ) -> Result<serde_json::Value, TwilioError> {
        let c: Conversation = self
            .get_json(
                Api::Conversations,
                &conversation_path(service, conversation),
                &[],
            )
            .await?;
        Ok(c.attributes
            .and_then(|a| serde_json::from_str(&a).ok())
            .unwrap_or_else(|| serde_json::json!({})))
    }
}

#[derive(serde::Deserialize)]
struct AddressConfiguration {
    address: Option<String>,
    auto_creation: Option<AutoCreation>,
}

#[derive(serde::Deserialize)]
struct AutoCreation {
    enabled: Option<bool>,
    webhook_url: Option<String>,
}

impl TwilioClient {
    /// `GET /v1/Configuration/Addresses`, every page: each address, the webhook URL its
    /// auto-created conversations call, and whether auto-creation is enabled.
    pub async fn address_webhook_urls(
        &self,
    ) -> Result<Vec<(String, Option<String>, bool)>, TwilioError> {
        let addresses: Vec<AddressConfiguration> = self
            .list_all(
                Api::Conversations,
                "/v1/Configuration/Addresses",
                &[("PageSize", "50")],
                "address_configurations",
            )
            .await?;
        Ok(addresses
            .into_iter()
            .map(|a| {
                let auto = a.auto_creation;
                let enabled = auto.as_ref().and_then(|c| c.enabled).unwrap_or(false);
                let url = auto
                    .and_then(|c| c.webhook_url)
                    .filter(|u| !u.trim().is_empty());
                (a.address.unwrap_or_default(), url, enabled)
            })
            .collect())
    }
}
