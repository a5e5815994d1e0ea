//! `/v1/FlexFlows` (flex-api): the legacy Flex Flows that Flex UI 1.x accounts route
//! numbers through. flexhook lists them and disables one; it never deletes one.

use reqwest::Method;
use serde::{Deserialize, Serialize};

use super::{Api, Request, TwilioClient, TwilioError};

/// One Flex Flow, as Twilio answers it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct FlexFlow {
    pub sid: Option<String>,
    pub friendly_name: Option<String>,
    pub channel_type: Option<String>,
    pub contact_identity: Option<String>,
    pub enabled: Option<bool>,
    pub integration_type: Option<String>,
    pub chat_service_sid: Option<String>,
}

impl TwilioClient {
    /// Every Flex Flow of the account, across all pages.
    pub async fn list_flex_flows(&self) -> Result<Vec<FlexFlow>, TwilioError> {
        self.list_all(
            Api::Flex,
            "/v1/FlexFlows",
            &[("PageSize", "50")],
            "flex_flows",
        )
        .await
    }

    /// `Enabled=false` on one Flex Flow: it stays, and can be enabled again.
    pub async fn disable_flex_flow(&self, sid: &str) -> Result<FlexFlow, TwilioError> {
        let form = [("Enabled", "false".to_owned())];
        let mut call = Request::new(Api::Flex, Method::POST, format!("/v1/FlexFlows/{sid}"));
        call.form = &form;
        self.send(call).await?.json()
    }
}
