//! Missed first messages: active conversations that carry flexhook's webhook and have no
//! job get the interaction job the webhook would have queued.

use super::{
    gone, ms, parse_ms, Finding, FindingKind, ReconcileError, Reconciler, Sweep, WEBHOOK_GRACE,
};
use crate::domain::{ChannelType, CustomerAddress};
use crate::jobs::Action;
use crate::routing::RoutingInput;
use crate::store::{Inserted, NewJob};
use crate::twilio::reconcile::{ConversationWebhook, ListedConversation};
use crate::twilio::TwilioError;

impl Reconciler {
    /// Conversations whose first message never reached flexhook.
    pub(super) async fn missed(
        &self,
        since: &str,
        dry_run: bool,
        sweep: &mut Sweep,
    ) -> Result<(), ReconcileError> {
        let Some(ours) = &self.target.webhook_url else {
            tracing::debug!(
                "server.public_base_url is unknown: missed first messages are not looked for"
            );
            return Ok(());
        };
        // A conversation this young may have its first webhook on the way: the next sweep,
        // which looks back past this one's start, judges it.
        let settled = self.store.now_ms() - ms(WEBHOOK_GRACE);
        let mut pages = self.client.active_conversations_since(since);
        while let Some(listed) = pages.next_page().await? {
            let keys: Vec<String> = listed.iter().map(|c| c.sid.to_string()).collect();
            let known = self.store.known_interactions(&keys).await?;
            sweep.conversations += listed.len();
            sweep.known += known.len();
            for conversation in listed {
                if known.contains(conversation.sid.as_str()) {
                    continue;
                }
                let created = conversation.date_created.as_deref().and_then(parse_ms);
                if created.is_some_and(|at| at > settled) {
                    continue;
                }
                if let Some(finding) = self.missed_one(conversation, ours, dry_run).await? {
                    sweep.findings.push(finding);
                }
            }
        }
        Ok(())
    }

    /// One conversation flexhook does not know: a finding when it carries flexhook's webhook.
    async fn missed_one(
        &self,
        conversation: ListedConversation,
        ours: &str,
        dry_run: bool,
    ) -> Result<Option<Finding>, ReconcileError> {
        let job = match self.missed_job(&conversation, ours).await {
            Ok(Some(job)) => job,
            Ok(None) => return Ok(None),
            Err(e) if gone(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let finding = |action: &str| Finding {
            kind: FindingKind::Missed,
            conversation: conversation.sid.clone(),
            why: "active, with flexhook's webhook, and no job: its first message never arrived"
                .into(),
            action: action.into(),
        };
        if dry_run {
            return Ok(Some(finding("would queue its interaction job")));
        }
        // Insert-if-absent: a webhook that arrives meanwhile makes the same one job.
        if self.store.insert_batch(&[job]).await?.first() == Some(&Inserted::New) {
            self.wake.notify_one();
            return Ok(Some(finding("queued its interaction job")));
        }
        Ok(None)
    }

    /// The job the webhook would have queued, if the conversation carries flexhook's
    /// webhook (`None`: Studio's, another system's, or none).
    async fn missed_job(
        &self,
        conversation: &ListedConversation,
        ours: &str,
    ) -> Result<Option<NewJob>, TwilioError> {
        let service = conversation.chat_service_sid.as_ref();
        let webhooks = self
            .client
            .conversation_webhooks(service, &conversation.sid)
            .await?;
        let Some(webhook) = webhooks.iter().find(|w| is_ours(w, ours)) else {
            return Ok(None);
        };
        let binding = self
            .client
            .customer_binding(service, &conversation.sid)
            .await?;
        let first = match &binding {
            Some(b) => {
                self.client
                    .first_message_by(service, &conversation.sid, &b.address)
                    .await?
            }
            None => None,
        };
        let customer = binding
            .as_ref()
            .map(|b| CustomerAddress::new(b.address.clone()));
        let proxy_address = binding.as_ref().and_then(|b| b.proxy_address.clone());
        // Schedules are judged at the first customer message, as the webhook would have.
        let at_ms = first
            .as_ref()
            .and_then(|m| m.date_created.as_deref())
            .or(conversation.date_created.as_deref())
            .and_then(parse_ms);
        let routing = RoutingInput {
            channel_type: customer
                .as_ref()
                .map_or(ChannelType::Web, CustomerAddress::channel_type),
            customer_address: customer,
            address: webhook
                .url
                .as_deref()
                .and_then(address_parameter)
                .or_else(|| proxy_address.clone()),
            proxy_address,
            source: None,
            attributes: None,
            at_ms: Some(at_ms.unwrap_or_else(|| self.store.now_ms())),
            body: None,
            last_worker: None,
        };
        Ok(Some(NewJob {
            webhook_sid: Some(webhook.sid.clone()),
            first_message_sid: first.and_then(|m| m.sid),
            ..Action::CreateInteraction(routing).job(
                &conversation.sid,
                &self.target.account,
                conversation.chat_service_sid.as_ref(),
                self.store.now_ms(),
            )
        }))
    }
}

/// Whether `webhook` is flexhook's: a plain webhook whose URL is `ours`, with any query.
fn is_ours(webhook: &ConversationWebhook, ours: &str) -> bool {
    webhook.target == "webhook"
        && webhook.url.as_deref().is_some_and(|url| {
            url.strip_prefix(ours)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('?'))
        })
}

/// `?address=` of flexhook's webhook URL, read as the route reads it (a raw `+` is a `+`).
fn address_parameter(url: &str) -> Option<String> {
    crate::domain::address_param(url.split_once('?')?.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn webhook(target: &str, url: Option<&str>) -> ConversationWebhook {
        ConversationWebhook {
            sid: crate::domain::WebhookSid::parse("WH00000000000000000000000000000001").unwrap(),
            target: target.into(),
            url: url.map(str::to_owned),
        }
    }

    #[test]
    fn only_flexhook_s_own_webhook_is_ours() {
        let ours = "https://flexhook.example.com/webhooks/conversations";
        assert!(is_ours(&webhook("webhook", Some(ours)), ours));
        let with_address = format!("{ours}?address=whatsapp:+15550001111");
        assert!(is_ours(&webhook("webhook", Some(&with_address)), ours));
        assert!(!is_ours(&webhook("studio", None), ours));
        assert!(!is_ours(
            &webhook(
                "webhook",
                Some("https://other.example.com/webhooks/conversations")
            ),
            ours
        ));
        assert!(!is_ours(
            &webhook("webhook", Some(&format!("{ours}-v2"))),
            ours
        ));
    }

    #[test]
    fn the_address_parameter_keeps_a_raw_plus() {
        let url = "https://x/webhooks/conversations?address=whatsapp:+15550001111";
        assert_eq!(
            address_parameter(url).as_deref(),
            Some("whatsapp:+15550001111")
        );
        let escaped = "https://x/webhooks/conversations?a=1&address=whatsapp%3A%2B1555";
        assert_eq!(
            address_parameter(escaped).as_deref(),
            Some("whatsapp:+1555")
        );
        assert_eq!(address_parameter("https://x/webhooks/conversations"), None);
    }
}
