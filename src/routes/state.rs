//! What every request handler shares. Owned here, built by `startup`: the routes never
//! import `startup`, so the two never import each other.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;

use crate::domain::{AccountSid, WorkspaceSid};
use crate::intake::Intake;
use crate::known_agents::KnownAgents;
use crate::lifecycle::Lifecycle;
use crate::metrics::Metrics;
use crate::signature::Verifier;
use crate::store::Store;

/// One account's webhook keys and workspace.
#[derive(Debug)]
pub(crate) struct AccountAuth {
    /// Its configured name: the `account` label, and what logs show (never the SID).
    pub name: String,
    /// `None` in dry-run: any account's webhook is accepted.
    pub account_sid: Option<AccountSid>,
    pub verifier: Verifier,
    /// Its workspace: TaskRouter events from any other are refused.
    pub workspace_sid: WorkspaceSid,
}

/// How a webhook's signature is checked: each account's keys, and the URL Twilio signed.
#[derive(Debug)]
pub(crate) struct WebhookAuth {
    /// Every account, at least one.
    pub accounts: Vec<AccountAuth>,
    /// `server.public_base_url`: when set, the only origin Twilio signs.
    pub public_base_url: Option<String>,
    pub trust_forwarded_headers: bool,
}

impl WebhookAuth {
    /// The account whose keys check `payload`: the one its `AccountSid` names (read as the
    /// event's reader reads it), or with a single account, that one (its check then refuses
    /// another account's event, as before). `Err`: several accounts, none of them named.
    pub fn pick(&self, payload: &crate::signature::Payload) -> Result<usize, ()> {
        if let [_] = self.accounts.as_slice() {
            return Ok(0);
        }
        // The hot path: a form's first AccountSid, trimmed, as its reader finds it.
        let claimed = match payload {
            crate::signature::Payload::Form(form) => form.get("AccountSid").map(str::trim),
            crate::signature::Payload::Json(_) => None,
        };
        if let Some(claimed) = claimed {
            if let Some(i) = self.position(claimed) {
                return Ok(i);
            }
        }
        let claimed = crate::event::claimed_account(payload).ok_or(())?;
        self.position(claimed.as_str()).ok_or(())
    }

    fn position(&self, sid: &str) -> Option<usize> {
        self.accounts.iter().position(|a| {
            a.account_sid
                .as_ref()
                .is_some_and(|ours| ours.as_str() == sid)
        })
    }
}

#[derive(Debug)]
pub(crate) struct AppState {
    pub webhook_auth: WebhookAuth,
    pub intake: Intake,
    pub lifecycle: Lifecycle,
    pub known_agents: KnownAgents,
    /// `server.ack_timeout_ms`: how long a webhook may wait for the store.
    pub ack_timeout: Duration,
    /// `server.client_body_timeout_ms`: a webhook's whole body must arrive within it.
    pub body_timeout: Duration,
    pub store: Store,
    pub worker_running: Arc<AtomicBool>,
    pub metrics: Metrics,
    /// `server.metrics_token`: `/metrics` on the webhook port needs it.
    pub metrics_token: Option<SecretString>,
}
