//! What every request handler shares. Owned here, built by `startup`: the routes never
//! import `startup`, so the two never import each other.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::domain::AccountSid;
use crate::intake::Intake;
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
    pub store: Store,
    pub worker_running: Arc<AtomicBool>,
}
