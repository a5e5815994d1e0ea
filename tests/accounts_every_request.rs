//! Nothing from one account is ever sent with another's credentials: two accounts run
//! every kind of work flexhook does (a hand-off and its webhook removal, timers, a rule's
//! reply, an orphan's close and message, a left channel's watch and invite, a
//! reconciliation sweep) against one Twilio stand-in that answers each request with the
//! spec's own example, made the requesting account's. Every request must carry the
//! credentials of the account whose conversation, workspace or interaction it is about.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use common::accounts::{credentials_of, TestAccount, ACME, BOTH, GLOBEX, NO_FLAT_ACCOUNT};
use common::spec::{find_operation, response_example, spec, success_status, text};
use common::*;
use flexhook::store::{JobKind, JobState};
use serde_json::{json, Value};
use wiremock::{Mock, Request, Respond, ResponseTemplate};

const BASE: &str = "https://flexhook.example.com";

/// The 31 hex digits that stand for the spec examples' `a…a` in an account's answers, so
/// that the SIDs Twilio hands one account are told from the other's.
fn pattern(account: &TestAccount) -> String {
    let digit = if account.name == ACME.name { "c" } else { "d" };
    digit.repeat(31)
}

/// The account `request` authenticated as.
fn requester(request: &Request) -> Option<&'static TestAccount> {
    let credentials = credentials_of(request)?;
    BOTH.into_iter().find(|a| a.credentials() == credentials)
}

/// Twilio, as its spec's examples say it answers, to each account with its own SIDs.
struct SpecTwilio {
    spec: Value,
    /// What a fetched interaction channel's status is.
    channel_status: Arc<Mutex<&'static str>>,
}

impl Respond for SpecTwilio {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Some(account) = requester(request) else {
            return ResponseTemplate::new(401);
        };
        let Some(op) = find_operation(&self.spec, request.method.as_str(), request.url.path())
        else {
            return ResponseTemplate::new(404);
        };
        let status = success_status(op);
        if request.method.as_str() == "DELETE" {
            return ResponseTemplate::new(status);
        }
        let id = text(&op["operationId"], "operationId");
        let example = match id {
            "ListTask" | "ListEvent" => "readEmpty",
            "ListConversationScopedWebhook" | "ListServiceConversationScopedWebhook" => "readEmpty",
            "ListConversation" | "ListConversationMessage" | "ListServiceConversationMessage" => {
                "readFull"
            }
            "UpdateInteractionChannel" => "updateStatusClosed",
            "CreateConversationMessage" | "CreateServiceConversationMessage" => "create",
            "UpdateConversation" => "update",
            _ => {
                let examples = op["responses"][status.to_string()]["content"]["application/json"]
                    ["examples"]
                    .as_object()
                    .unwrap();
                examples.keys().next().unwrap()
            }
        };
        let mut answer = response_example(op, Some(example)).clone();
        if id == "FetchInteractionChannel" {
            answer["status"] = json!(*self.channel_status.lock().unwrap());
        }
        let body = answer
            .to_string()
            .replace(&"a".repeat(31), &pattern(account));
        ResponseTemplate::new(status).set_body_raw(body, "application/json")
    }
}

/// Which account a SID in a request belongs to: one of its own, or one its answers made.
fn owner_of(
    sid: &str,
    conversations: &BTreeMap<String, &'static TestAccount>,
) -> Option<&'static str> {
    if let Some(account) = conversations.get(sid) {
        return Some(account.name);
    }
    BOTH.into_iter()
        .find(|a| {
            [a.sid, a.workspace, a.workflow, a.service].contains(&sid) || sid.contains(&pattern(a))
        })
        .map(|a| a.name)
}

/// Every SID-looking word (two capitals and 32 hex digits) in `text`.
fn sids(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut found = BTreeSet::new();
    for i in 0..bytes.len().saturating_sub(33) {
        let word = &bytes[i..i + 34];
        if word[0].is_ascii_uppercase()
            && word[1].is_ascii_uppercase()
            && word[2..].iter().all(u8::is_ascii_hexdigit)
            && (i == 0 || !bytes[i - 1].is_ascii_alphanumeric())
        {
            found.insert(String::from_utf8_lossy(word).into_owned());
        }
    }
    found
}

#[tokio::test]
async fn every_request_of_every_kind_of_work_goes_out_with_its_own_accounts_credentials() {
    let env = Env::new().await;
    let status = Arc::new(Mutex::new("active"));
    for server in [&env.flex, &env.conversations, &env.taskrouter] {
        Mock::given(wiremock::matchers::any())
            .respond_with(SpecTwilio {
                spec: spec(),
                channel_status: status.clone(),
            })
            .mount(server)
            .await;
    }
    let rules: String = BOTH
        .iter()
        .map(|a| {
            format!(
                "[[routing.rules]]\nname = \"{0}\"\nmatch = {{ account = [\"{0}\"] }}\nreply = \"Thanks for writing to {0}.\"\n",
                a.name
            )
        })
        .collect();
    let toml = format!("{}{}{rules}", ACME.table(), GLOBEX.table());
    let mut overrides = NO_FLAT_ACCOUNT.to_vec();
    overrides.extend([
        ("server.public_base_url", BASE),
        ("lifecycle.reengage", "flexhook"),
        ("lifecycle.close_after", "24h"),
        (
            "lifecycle.orphan_message",
            "Sorry, nobody could take your conversation.",
        ),
        ("reconcile.interval", "1h"),
    ]);
    let app = TestApp::start_with_config(&env, &overrides, Some(&toml)).await;
    let store = env.store().await;
    let mut conversations = BTreeMap::new();
    let post = |body: Vec<(String, String)>, account: &TestAccount, to: &str| {
        app.post_signed(body)
            .to(to)
            .called_at(BASE)
            .signed_with_token(account.token)
            .send()
    };
    // The interaction each account's create answer names, made that account's.
    let sid = |prefix: &str, account: &TestAccount| format!("{prefix}{}a", pattern(account));

    // An orphan: handed off, replied to, its timers set, its task canceled, closed.
    for account in BOTH {
        let ch = random_sid("CH");
        conversations.insert(ch.clone(), account);
        let sent = post(account.message(&ch), account, PATH).await;
        assert_eq!(sent.status(), 200);
        wait_for_job(&store, &ch, std::time::Duration::from_secs(15), |j| {
            j.state == JobState::Created && j.webhook_removed
        })
        .await;
        wait_for_kind(&store, JobKind::Reply, &ch, |j| j.state == JobState::Sent).await;
        wait_for_kind(&store, JobKind::Timers, &ch, |j| j.state == JobState::Set).await;
        let attributes = json!({"conversationSid": ch, "flexInteractionSid": sid("KD", account), "flexInteractionChannelSid": sid("UO", account)});
        let canceled = account.task_event(
            "task.canceled",
            account.workspace,
            &sid("WT", account),
            &attributes.to_string(),
        );
        assert_eq!(
            post(canceled, account, "/webhooks/taskrouter")
                .await
                .status(),
            200
        );
        wait_for_kind(&store, JobKind::Close, &ch, |j| j.state == JobState::Closed).await;
    }
    // Left by its agent: watched, and the customer's reply invites a task.
    *status.lock().unwrap() = "inactive";
    for account in BOTH {
        let ch = random_sid("CH");
        conversations.insert(ch.clone(), account);
        assert_eq!(
            post(account.message(&ch), account, PATH).await.status(),
            200
        );
        wait_for_state(&store, &ch, JobState::Created).await;
        let task = random_sid("WT");
        let attributes = json!({"conversationSid": ch, "flexInteractionSid": sid("KD", account), "flexInteractionChannelSid": sid("UO", account)});
        let completed = account.task_event(
            "task.completed",
            account.workspace,
            &task,
            &attributes.to_string(),
        );
        assert_eq!(
            post(completed, account, "/webhooks/taskrouter")
                .await
                .status(),
            200
        );
        let episode = format!("{ch}/{task}");
        wait_for_kind(&store, JobKind::Watch, &episode, |j| {
            j.state == JobState::Watching
        })
        .await;
        let reply = post(
            account.message(&ch),
            account,
            &format!("{PATH}?reengage={task}"),
        )
        .await;
        assert_eq!(reply.status(), 200);
        wait_for_kind(&store, JobKind::Invite, &episode, |j| {
            j.state == JobState::Invited
        })
        .await;
    }
    app.stop().await;

    let mut kinds: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let spec = spec();
    for server in [&env.flex, &env.conversations, &env.taskrouter] {
        for request in server.received_requests().await.unwrap() {
            let what = format!("{} {}", request.method, request.url.path());
            let account = requester(&request)
                .unwrap_or_else(|| panic!("{what} went out with no account's credentials"));
            let seen = format!("{} {}", request.url, String::from_utf8_lossy(&request.body));
            for sid in sids(&seen) {
                if let Some(owner) = owner_of(&sid, &conversations) {
                    assert_eq!(
                        owner, account.name,
                        "{what} names {owner}'s {sid} but went out with {}'s credentials",
                        account.name
                    );
                }
            }
            let op = find_operation(&spec, request.method.as_str(), request.url.path())
                .unwrap_or_else(|| panic!("{what} is no operation of the spec"));
            kinds
                .entry(account.name)
                .or_default()
                .insert(text(&op["operationId"], "operationId").to_owned());
        }
    }
    for account in BOTH {
        let sent = &kinds[account.name];
        for id in [
            "CreateInteraction",
            "DeleteServiceConversationScopedWebhook",
            "UpdateServiceConversation",
            "CreateServiceConversationMessage",
            "ListTask",
            "FetchInteractionChannel",
            "UpdateInteractionChannel",
            "ListServiceConversationScopedWebhook",
            "CreateServiceConversationScopedWebhook",
            "CreateInteractionChannelInvite",
            "ListConversation",
        ] {
            assert!(
                sent.contains(id),
                "{} never sent {id}: {sent:?}",
                account.name
            );
        }
    }
}
