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
    /// another account's event, as before). `None`: several accounts, none of them named.
    pub fn pick(&self, payload: &crate::signature::Payload) -> Option<usize> {
        if let [_] = self.accounts.as_slice() {
            return Some(0);
        }
        // The hot path: a form's first AccountSid, trimmed, as its reader finds it.
        let claimed = match payload {
            crate::signature::Payload::Form(form) => form.get("AccountSid").map(str::trim),
            crate::signature::Payload::Json(_) => None,
        };
        if let Some(i) = claimed.and_then(|claimed| self.position(claimed)) {
            return Some(i);
        }
        let claimed = crate::event::claimed_account(payload)?;
        self.position(claimed.as_str())
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::signature::Payload;

    const ACME: &str = "AC11111111111111111111111111111111";
    const GLOBEX: &str = "AC22222222222222222222222222222222";

    fn auth(sids: &[Option<&str>]) -> WebhookAuth {
        let accounts = sids
            .iter()
            .enumerate()
            .map(|(i, sid)| AccountAuth {
                name: format!("account{i}"),
                account_sid: sid.map(|s| AccountSid::parse(s).unwrap()),
                verifier: Verifier::new(format!("token{i}").into(), None, BTreeMap::new()),
                workspace_sid: WorkspaceSid::parse(&format!("WS{:032x}", i)).unwrap(),
            })
            .collect();
        WebhookAuth {
            accounts,
            public_base_url: None,
            trust_forwarded_headers: false,
        }
    }

    fn form(account: &str) -> Payload {
        Payload::Form(
            [("EventType", "onMessageAdded"), ("AccountSid", account)]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn the_account_is_the_one_the_payload_names_as_its_reader_reads_it() {
        let two = auth(&[Some(ACME), Some(GLOBEX)]);
        assert_eq!(two.pick(&form(ACME)), Some(0));
        assert_eq!(two.pick(&form(GLOBEX)), Some(1));
        assert_eq!(two.pick(&form(&format!(" {GLOBEX} "))), Some(1), "trimmed");
        let nested = serde_json::json!({"conversation": {"EventType": "onMessageAdded", "AccountSid": GLOBEX}});
        assert_eq!(two.pick(&Payload::Json(nested.to_string().into())), Some(1));
        // No configured account named: none checks it.
        assert_eq!(two.pick(&form("AC33333333333333333333333333333333")), None);
        assert_eq!(two.pick(&form("not-a-sid")), None);
        assert_eq!(two.pick(&Payload::Json(b"[]".to_vec())), None);
        // One account checks everything (and refuses another's event after its check).
        for one in [auth(&[Some(ACME)]), auth(&[None])] {
            assert_eq!(one.pick(&form(GLOBEX)), Some(0));
            assert_eq!(one.pick(&Payload::Json(b"{}".to_vec())), Some(0));
        }
    }
}
