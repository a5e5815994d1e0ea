//! `/v1/Configuration/Addresses` (Conversations): the address configurations that decide
//! whether a message to a number or sender starts a conversation, and whom it tells.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{Api, Request, TwilioClient, TwilioError};

const PATH: &str = "/v1/Configuration/Addresses";

/// One address configuration, as Twilio answers it (every field may be missing or null).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct AddressConfiguration {
    pub sid: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub address: Option<String>,
    pub friendly_name: Option<String>,
    pub auto_creation: Option<AutoCreation>,
    pub address_country: Option<String>,
    pub date_created: Option<String>,
    pub date_updated: Option<String>,
}

/// What Twilio does with a message to the address that belongs to no conversation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct AutoCreation {
    pub enabled: Option<bool>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub conversation_service_sid: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_method: Option<String>,
    pub webhook_filters: Option<Vec<String>>,
    pub studio_flow_sid: Option<String>,
    pub studio_retry_count: Option<i64>,
}

/// The fields a create or an update sets; `None` (or no filter) leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AddressChanges {
    pub friendly_name: Option<String>,
    pub enabled: Option<bool>,
    pub auto_creation_type: Option<String>,
    pub conversation_service_sid: Option<String>,
    pub webhook_url: Option<String>,
    pub webhook_method: Option<String>,
    pub webhook_filters: Vec<String>,
    pub studio_flow_sid: Option<String>,
    pub studio_retry_count: Option<u32>,
}

impl AddressChanges {
    pub fn is_empty(&self) -> bool {
        self.form().is_empty()
    }

    /// The form fields, `AutoCreation.WebhookFilters` once per filter.
    pub fn form(&self) -> Vec<(&'static str, String)> {
        let mut form = Vec::new();
        let mut put = |key: &'static str, value: Option<String>| {
            if let Some(v) = value {
                form.push((key, v));
            }
        };
        put("FriendlyName", self.friendly_name.clone());
        put("AutoCreation.Enabled", self.enabled.map(|e| e.to_string()));
        put("AutoCreation.Type", self.auto_creation_type.clone());
        put(
            "AutoCreation.ConversationServiceSid",
            self.conversation_service_sid.clone(),
        );
        put("AutoCreation.WebhookUrl", self.webhook_url.clone());
        put("AutoCreation.WebhookMethod", self.webhook_method.clone());
        put("AutoCreation.StudioFlowSid", self.studio_flow_sid.clone());
        put(
            "AutoCreation.StudioRetryCount",
            self.studio_retry_count.map(|n| n.to_string()),
        );
        for filter in &self.webhook_filters {
            form.push(("AutoCreation.WebhookFilters", filter.clone()));
        }
        form
    }
}

/// The path of one configuration: its `IG…` SID or the address itself, which the spec
/// accepts in the same place, percent-encoded (`whatsapp:+1…` → `whatsapp%3A%2B1…`).
pub fn address_path(id: &str) -> String {
    let mut segment = String::with_capacity(id.len());
    for byte in id.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            segment.push(char::from(byte));
        } else {
            segment.push_str(&format!("%{byte:02X}"));
        }
    }
    format!("{PATH}/{segment}")
}

impl TwilioClient {
    /// Every address configuration, of one type or all, across all pages.
    pub async fn list_addresses(
        &self,
        kind: Option<&str>,
    ) -> Result<Vec<AddressConfiguration>, TwilioError> {
        let mut query = vec![("PageSize", "50")];
        if let Some(kind) = kind {
            query.push(("Type", kind));
        }
        self.list_all(Api::Conversations, PATH, &query, "address_configurations")
            .await
    }

    pub async fn fetch_address(&self, id: &str) -> Result<AddressConfiguration, TwilioError> {
        self.get_json(Api::Conversations, &address_path(id), &[])
            .await
    }

    pub async fn create_address(
        &self,
        kind: &str,
        address: &str,
        country: Option<&str>,
        changes: &AddressChanges,
    ) -> Result<AddressConfiguration, TwilioError> {
        let mut form = vec![("Type", kind.to_owned()), ("Address", address.to_owned())];
        if let Some(country) = country {
            form.push(("AddressCountry", country.to_owned()));
        }
        form.extend(changes.form());
        let mut call = Request::new(Api::Conversations, Method::POST, PATH);
        call.form = &form;
        call.dry_run_detail = Some(format!("create a {kind} address configuration"));
        self.send(call).await?.json()
    }

    pub async fn update_address(
        &self,
        id: &str,
        changes: &AddressChanges,
    ) -> Result<AddressConfiguration, TwilioError> {
        let form = changes.form();
        let mut call = Request::new(Api::Conversations, Method::POST, address_path(id));
        call.form = &form;
        self.send(call).await?.json()
    }

    pub async fn delete_address(&self, id: &str) -> Result<(), TwilioError> {
        let call = Request::new(Api::Conversations, Method::DELETE, address_path(id));
        self.send(call).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_is_one_percent_encoded_path_segment() {
        assert_eq!(
            address_path("whatsapp:+15550001111"),
            "/v1/Configuration/Addresses/whatsapp%3A%2B15550001111"
        );
        assert_eq!(
            address_path("IG00000000000000000000000000000001"),
            "/v1/Configuration/Addresses/IG00000000000000000000000000000001"
        );
    }

    #[test]
    fn each_webhook_filter_is_its_own_form_field() {
        let changes = AddressChanges {
            enabled: Some(true),
            webhook_filters: vec!["onMessageAdded".into(), "onParticipantAdded".into()],
            ..Default::default()
        };
        assert_eq!(
            changes.form(),
            [
                ("AutoCreation.Enabled", "true".to_owned()),
                ("AutoCreation.WebhookFilters", "onMessageAdded".to_owned()),
                (
                    "AutoCreation.WebhookFilters",
                    "onParticipantAdded".to_owned()
                ),
            ]
        );
    }
}
