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

/// How a webhook's signature is checked: the keys, and the URL Twilio signed.
#[derive(Debug)]
pub(crate) struct WebhookAuth {
    pub verifier: Verifier,
    /// `server.public_base_url`: when set, the only origin Twilio signs.
    pub public_base_url: Option<String>,
    pub trust_forwarded_headers: bool,
    /// `None` in dry-run: any account's webhook is accepted.
    pub account_sid: Option<AccountSid>,
}

#[derive(Debug)]
pub(crate) struct AppState {
    pub webhook_auth: WebhookAuth,
    pub intake: Intake,
    pub lifecycle: Lifecycle,
    pub known_agents: KnownAgents,
    /// `flex.workspace_sid`: TaskRouter events from any other workspace are refused.
    pub workspace_sid: WorkspaceSid,
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
