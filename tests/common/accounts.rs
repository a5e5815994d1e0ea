//! Two Twilio accounts in one deployment, as `[accounts.NAME]` tables: `acme` (REST calls
//! with its auth token) and `globex` (with an API key, its own task channel and a slower
//! pace). What each sends and signs, and who a request Twilio received came from.

use base64::Engine;
use wiremock::Request;

use super::{message, random_sid, with};

/// One configured account.
pub struct TestAccount {
    pub name: &'static str,
    pub sid: &'static str,
    pub token: &'static str,
    /// `(api_key, api_secret)`, when REST calls use an API key.
    pub api_key: Option<(&'static str, &'static str)>,
    pub workspace: &'static str,
    pub workflow: &'static str,
    pub service: &'static str,
    pub task_channel: &'static str,
}

pub const ACME: TestAccount = TestAccount {
    name: "acme",
    sid: "AC11111111111111111111111111111111",
    token: "acme-auth-token-0123456789",
    api_key: None,
    workspace: "WS11111111111111111111111111111111",
    workflow: "WW11111111111111111111111111111111",
    service: "IS11111111111111111111111111111111",
    task_channel: "chat",
};

pub const GLOBEX: TestAccount = TestAccount {
    name: "globex",
    sid: "AC22222222222222222222222222222222",
    token: "globex-auth-token-0123456789",
    api_key: Some(("SK22222222222222222222222222222222", "globex-api-secret")),
    workspace: "WS22222222222222222222222222222222",
    workflow: "WW22222222222222222222222222222222",
    service: "IS22222222222222222222222222222222",
    task_channel: "sms",
};

pub const BOTH: [&TestAccount; 2] = [&ACME, &GLOBEX];

impl TestAccount {
    /// Its `[accounts.NAME]` table.
    pub fn table(&self) -> String {
        let mut table = format!(
            "[accounts.{}]\naccount_sid = \"{}\"\nauth_token = \"{}\"\nworkspace_sid = \"{}\"\nworkflow_sid = \"{}\"\ntask_channel = \"{}\"\n",
            self.name, self.sid, self.token, self.workspace, self.workflow, self.task_channel
        );
        if let Some((key, secret)) = self.api_key {
            table.push_str(&format!("api_key = \"{key}\"\napi_secret = \"{secret}\"\n"));
        }
        table
    }

    /// The `user:password` its REST calls authenticate with.
    pub fn credentials(&self) -> String {
        match self.api_key {
            Some((key, secret)) => format!("{key}:{secret}"),
            None => format!("{}:{}", self.sid, self.token),
        }
    }

    /// A first message of `conversation` in this account, as Twilio sends it.
    pub fn message(&self, conversation: &str) -> Vec<(String, String)> {
        let form = with(
            message(conversation, "+14155550100"),
            "AccountSid",
            self.sid,
        );
        with(form, "ChatServiceSid", self.service)
    }

    /// A TaskRouter event `kind` of this account from `workspace`, as TaskRouter posts it.
    pub fn task_event(
        &self,
        kind: &str,
        workspace: &str,
        task: &str,
        attributes: &str,
    ) -> Vec<(String, String)> {
        [
            ("EventType", kind),
            ("AccountSid", self.sid),
            ("WorkspaceSid", workspace),
            ("TaskSid", task),
            ("TaskAttributes", attributes),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    pub fn conversations(&self, n: usize) -> Vec<String> {
        (0..n).map(|_| random_sid("CH")).collect()
    }
}

/// Both accounts' tables, `acme` with a routing rule of its own, and `globex` at 10 creates
/// a second.
pub fn two_accounts_toml() -> String {
    format!(
        "{}{}max_creates_per_second = 10\n\n[[routing.rules]]\nname = \"acme-brand\"\nmatch = {{ account = [\"acme\"] }}\nset = {{ attributes = {{ brand = \"acme\" }} }}\n",
        ACME.table(),
        GLOBEX.table()
    )
}

/// The overrides that leave the flat `[twilio]` without an account or credentials of its own.
pub const NO_FLAT_ACCOUNT: [(&str, &str); 2] =
    [("twilio.account_sid", ""), ("twilio.auth_token", "")];

/// The `user:password` of a request's Basic authorization, if any.
pub fn credentials_of(request: &Request) -> Option<String> {
    let header = request.headers.get("authorization")?.to_str().ok()?;
    let raw = base64::engine::general_purpose::STANDARD
        .decode(header.strip_prefix("Basic ")?)
        .ok()?;
    String::from_utf8(raw).ok()
}
