//! The Twilio accounts one deployment serves. Either the flat `[twilio]` + `[flex]`, one
//! account named [`DEFAULT_ACCOUNT`], as before; or `[accounts.NAME]` tables, one per
//! account: its credentials, webhook keys, workspace and workflow, and optionally its own
//! task channel, attributes, priority, timeout and pace (else `[flex]`'s). Base URLs and the
//! request timeout stay in `[twilio]`, shared.

use std::collections::BTreeMap;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::de::{empty_as_none, empty_secret_as_none, shared_keys};
use super::problems::Problems;
use super::twilio::DEVELOPMENT_TOKEN;
use super::{Environment, FlexConfig, FlexSettings, TwilioConfig, TwilioSettings};
use crate::domain::AccountSid;

/// The name of the one account the flat `[twilio]` + `[flex]` describe.
pub const DEFAULT_ACCOUNT: &str = "default";

/// The longest account name: it is a metrics label and part of variable names.
const MAX_NAME: usize = 32;

/// `[accounts.NAME]`, as read. Unset keys of `[flex]`'s come from `[flex]`; credentials and
/// SIDs never come from anywhere else.
#[derive(Deserialize, Debug, Clone, Default)]
#[serde(deny_unknown_fields)]
pub struct AccountSettings {
    #[serde(default, deserialize_with = "empty_as_none")]
    pub account_sid: Option<String>,
    #[serde(default, deserialize_with = "empty_secret_as_none")]
    pub auth_token: Option<SecretString>,
    #[serde(default, deserialize_with = "empty_secret_as_none")]
    pub secondary_auth_token: Option<SecretString>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub api_key: Option<String>,
    #[serde(default, deserialize_with = "empty_secret_as_none")]
    pub api_secret: Option<SecretString>,
    #[serde(default, deserialize_with = "shared_keys")]
    pub webhook_shared_keys: BTreeMap<String, SecretString>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub workspace_sid: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub workflow_sid: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub task_channel: Option<String>,
    /// A JSON object, as `flex.task_attributes`.
    #[serde(default, deserialize_with = "empty_as_none")]
    pub task_attributes: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub priority: Option<String>,
    #[serde(default, deserialize_with = "empty_as_none")]
    pub task_timeout_secs: Option<String>,
    #[serde(default)]
    pub max_creates_per_second: Option<u32>,
}

/// One account, checked: its name, its credentials and where its tasks go.
#[derive(Debug, Clone)]
pub struct AccountConfig {
    /// `default`, or the `NAME` of `[accounts.NAME]`: the `account` label and `--account`.
    pub name: String,
    pub twilio: TwilioConfig,
    pub flex: FlexConfig,
}

/// Every account, at least one, in name order.
#[derive(Debug, Clone)]
pub struct Accounts(Vec<AccountConfig>);

impl Accounts {
    pub fn new(accounts: Vec<AccountConfig>) -> Self {
        assert!(!accounts.is_empty(), "a deployment has an account");
        Self(accounts)
    }

    pub fn iter(&self) -> std::slice::Iter<'_, AccountConfig> {
        self.0.iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The first account (the only one, unless `[accounts.*]` has several).
    pub fn first(&self) -> &AccountConfig {
        &self.0[0]
    }

    pub fn names(&self) -> Vec<&str> {
        self.0.iter().map(|a| a.name.as_str()).collect()
    }

    pub fn by_name(&self, name: &str) -> Option<&AccountConfig> {
        self.0.iter().find(|a| a.name == name)
    }

    pub fn by_sid(&self, sid: &AccountSid) -> Option<&AccountConfig> {
        self.0
            .iter()
            .find(|a| a.twilio.account_sid.as_ref() == Some(sid))
    }

    /// Mutable, for tests that tune one account.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, AccountConfig> {
        self.0.iter_mut()
    }

    /// The flat account without an `account_sid` (`FLEXHOOK_ENV=local` only).
    pub fn is_dry_run(&self) -> bool {
        self.0.len() == 1 && self.0[0].twilio.is_dry_run()
    }
}

impl<'a> IntoIterator for &'a Accounts {
    type Item = &'a AccountConfig;
    type IntoIter = std::slice::Iter<'a, AccountConfig>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One account as set, before it is checked: its name, the flat sections it amounts to,
/// and the keys its problems go by.
#[derive(Debug, Clone)]
pub struct RawAccount {
    pub name: String,
    pub twilio: TwilioSettings,
    pub flex: FlexSettings,
    pub keys: Keys,
}

/// How an account's problems name their keys: `twilio.X` and `flex.X` for the flat
/// account; `accounts.NAME.X` for a named one, but for a `[flex]` key it leaves to `[flex]`.
#[derive(Debug, Clone)]
pub struct Keys {
    name: Option<String>,
    /// The `[flex]` keys the named account sets itself.
    own: Vec<&'static str>,
}

impl Keys {
    pub(super) const FLAT: Self = Self {
        name: None,
        own: Vec::new(),
    };
}

impl Keys {
    pub(super) fn is_named(&self) -> bool {
        self.name.is_some()
    }

    /// A `[twilio]` credential's key.
    pub fn twilio(&self, field: &str) -> String {
        match &self.name {
            Some(name) => format!("accounts.{name}.{field}"),
            None => format!("twilio.{field}"),
        }
    }

    /// A `[flex]` key's.
    pub fn flex(&self, field: &str) -> String {
        match &self.name {
            Some(name) if self.own.contains(&field) => format!("accounts.{name}.{field}"),
            _ => format!("flex.{field}"),
        }
    }
}

/// Whether `name` can name an account: it becomes a label and a variable's part.
fn check_name(name: &str) -> Result<(), String> {
    if name == crate::metrics::NO_ACCOUNT {
        return Err(format!(
            "`{name}` is reserved: the metrics label webhooks and jobs of no configured account so"
        ));
    }
    let ok = name.len() <= MAX_NAME
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not an account name: a lowercase letter, then lowercase letters, digits or `_`, at most {MAX_NAME} (it is a metrics label, and FLEXHOOK_ACCOUNTS__{}__AUTH_TOKEN sets its token)",
            name.to_ascii_uppercase()
        ))
    }
}

impl AccountSettings {
    /// This account as the flat sections it replaces: its credentials over `[twilio]`'s
    /// shared keys, its SIDs and settings over `[flex]`'s.
    fn flatten(
        &self,
        name: &str,
        twilio: &TwilioSettings,
        flex: &FlexSettings,
        p: &mut Problems,
    ) -> (TwilioSettings, FlexSettings, Vec<&'static str>) {
        let twilio = TwilioSettings {
            account_sid: self.account_sid.clone(),
            auth_token: self.auth_token.clone(),
            secondary_auth_token: self.secondary_auth_token.clone(),
            api_key: self.api_key.clone(),
            api_secret: self.api_secret.clone(),
            webhook_shared_keys: self.webhook_shared_keys.clone(),
            ..twilio.clone()
        };
        let mut own = vec!["workspace_sid", "workflow_sid"];
        let mut mine = |field: &'static str, set: bool| {
            if set {
                own.push(field);
            }
        };
        mine("task_channel", self.task_channel.is_some());
        mine("task_attributes", self.task_attributes.is_some());
        mine("priority", self.priority.is_some());
        mine("task_timeout_secs", self.task_timeout_secs.is_some());
        mine(
            "max_creates_per_second",
            self.max_creates_per_second.is_some(),
        );
        let task_attributes = match &self.task_attributes {
            None => flex.task_attributes.clone(),
            Some(text) => match serde_json::from_str(text) {
                Ok(serde_json::Value::Object(map)) => map,
                Ok(_) => {
                    p.add(
                        &format!("accounts.{name}.task_attributes"),
                        "must be a JSON object, e.g. '{\"team\":\"support\"}'",
                    );
                    Default::default()
                }
                Err(e) => {
                    p.add(
                        &format!("accounts.{name}.task_attributes"),
                        format!("is not valid JSON: {e}"),
                    );
                    Default::default()
                }
            },
        };
        let flex = FlexSettings {
            workspace_sid: self.workspace_sid.clone(),
            workflow_sid: self.workflow_sid.clone(),
            task_channel: self
                .task_channel
                .clone()
                .unwrap_or_else(|| flex.task_channel.clone()),
            task_attributes,
            priority: self.priority.clone().or_else(|| flex.priority.clone()),
            task_timeout_secs: self
                .task_timeout_secs
                .clone()
                .or_else(|| flex.task_timeout_secs.clone()),
            remove_webhook_after_handoff: flex.remove_webhook_after_handoff,
            max_creates_per_second: self
                .max_creates_per_second
                .unwrap_or(flex.max_creates_per_second),
        };
        (twilio, flex, own)
    }
}

/// Every account as the flat sections it amounts to, named, with the keys its problems
/// go by. Problems found on the way (a bad name, attributes that are not JSON, flat
/// credentials beside named accounts) are recorded.
pub(super) fn resolve(
    accounts: &BTreeMap<String, AccountSettings>,
    twilio: &TwilioSettings,
    flex: &FlexSettings,
    p: &mut Problems,
) -> Vec<RawAccount> {
    if accounts.is_empty() {
        return vec![RawAccount {
            name: DEFAULT_ACCOUNT.to_owned(),
            twilio: twilio.clone(),
            flex: flex.clone(),
            keys: Keys::FLAT,
        }];
    }
    refuse_flat_credentials(
        twilio,
        accounts
            .keys()
            .next()
            .map(String::as_str)
            .unwrap_or_default(),
        p,
    );
    accounts
        .iter()
        .filter_map(|(name, account)| {
            if let Err(e) = check_name(name) {
                p.add(&format!("accounts.{name}"), e);
                return None;
            }
            let (twilio, flex, own) = account.flatten(name, twilio, flex, p);
            Some(RawAccount {
                name: name.clone(),
                twilio,
                flex,
                keys: Keys {
                    name: Some(name.clone()),
                    own,
                },
            })
        })
        .collect()
}

/// Beside `[accounts.*]`, `[twilio]`'s account and credentials would be kept and never
/// used: an operator who set them expects them to be. Each is refused, naming its key (and
/// so its variable). `config/local.toml`'s public development token is not the operator's.
fn refuse_flat_credentials(twilio: &TwilioSettings, first: &str, p: &mut Problems) {
    let flat = [
        ("account_sid", twilio.account_sid.is_some()),
        (
            "auth_token",
            twilio
                .auth_token
                .as_ref()
                .is_some_and(|t| t.expose_secret() != DEVELOPMENT_TOKEN),
        ),
        (
            "secondary_auth_token",
            twilio.secondary_auth_token.is_some(),
        ),
        ("api_key", twilio.api_key.is_some()),
        ("api_secret", twilio.api_secret.is_some()),
        (
            "webhook_shared_keys",
            !twilio.webhook_shared_keys.is_empty(),
        ),
    ];
    for (key, _) in flat.iter().filter(|(_, set)| *set) {
        p.add(
            &format!("twilio.{key}"),
            format!(
                "is set, and so is [accounts.{first}]: with [accounts.*], each account has its own table and credentials (accounts.NAME.{key}); move it into its account's table and unset it here"
            ),
        );
    }
}

/// Checks every account; two accounts with the same SID are refused, naming both.
pub(super) fn validate(
    accounts: &BTreeMap<String, AccountSettings>,
    twilio: &TwilioSettings,
    flex: &FlexSettings,
    environment: &Environment,
    p: &mut Problems,
) -> Option<Accounts> {
    let before = p.count();
    let raws = resolve(accounts, twilio, flex, p);
    for (i, a) in raws.iter().enumerate() {
        let sid = |r: &RawAccount| {
            r.twilio
                .account_sid
                .as_deref()
                .map(str::trim)
                .map(str::to_owned)
        };
        if let Some(b) = raws[..i]
            .iter()
            .find(|b| sid(b).is_some() && sid(b) == sid(a))
        {
            p.add(
                &a.keys.twilio("account_sid"),
                format!(
                    "is also {}: a webhook could not tell the two accounts apart",
                    b.keys.twilio("account_sid")
                ),
            );
        }
    }
    let mut valid = Vec::new();
    for raw in raws {
        let t = raw.twilio.validate_at(environment, &raw.keys, p);
        let f = raw.flex.validate_at(&raw.keys, p);
        if let (Some(twilio), Some(flex)) = (t, f) {
            valid.push(AccountConfig {
                name: raw.name,
                twilio,
                flex,
            });
        }
    }
    (p.count() == before && !valid.is_empty()).then(|| Accounts::new(valid))
}

/// Which account a command works on: `--account NAME`, or the only one.
pub(super) fn select<'a, T>(
    names: impl IntoIterator<Item = &'a str>,
    wanted: Option<&str>,
    pick: impl Fn(&str) -> T,
) -> Result<T, String> {
    let names: Vec<&str> = names.into_iter().collect();
    match (wanted, names.as_slice()) {
        (Some(w), _) if names.contains(&w) => Ok(pick(w)),
        (Some(w), _) => Err(format!(
            "--account {w}: no such account; this deployment has {}",
            names.join(", ")
        )),
        (None, [only]) => Ok(pick(only)),
        (None, _) => Err(format!(
            "--account NAME is required: this deployment has several accounts ({})",
            names.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_names_are_slugs_fit_for_labels_and_variables() {
        for ok in ["acme", "brand_2", "a"] {
            assert_eq!(check_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "Acme",
            "2acme",
            "acme-eu",
            "ac me",
            &"a".repeat(33),
            "unknown",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_command_gets_the_only_account_or_must_name_one_of_several() {
        let pick =
            |names: &[&'static str], wanted| select(names.iter().copied(), wanted, str::to_owned);
        assert_eq!(pick(&["default"], None), Ok("default".into()));
        assert_eq!(
            pick(&["acme", "globex"], Some("globex")),
            Ok("globex".into())
        );
        let err = pick(&["acme", "globex"], None).unwrap_err();
        assert!(
            err.contains("--account") && err.contains("acme, globex"),
            "{err}"
        );
        let err = pick(&["acme", "globex"], Some("initech")).unwrap_err();
        assert!(
            err.contains("initech") && err.contains("acme, globex"),
            "{err}"
        );
    }
}
