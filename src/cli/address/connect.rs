//! `address connect` and `address disconnect`: the plan that points an address's
//! auto-creation at flexhook (shown before anything changes), and its undoing.

use std::process::ExitCode;

use super::{
    auto_creation_summary, flexhook_url, is_not_found, shown, AddressType, FILTER, METHOD, ROUTE,
};
use crate::config::Settings;
use crate::twilio::{AddressChanges, AddressConfiguration, TwilioClient, TwilioError};

/// What connect would do to one address.
pub(crate) struct ConnectPlan {
    pub address: String,
    kind: AddressType,
    /// `None`: the configuration does not exist and is created.
    existing: Option<AddressConfiguration>,
    target: String,
    /// (field, before, after) for each field that changes.
    changes: Vec<(&'static str, String, String)>,
}

impl ConnectPlan {
    pub fn is_nothing(&self) -> bool {
        self.existing.is_some() && self.changes.is_empty()
    }

    pub fn creates(&self) -> bool {
        self.existing.is_none()
    }

    pub fn print(&self) {
        match &self.existing {
            None => println!(
                "{}: no address configuration yet; create one ({})",
                self.address,
                self.kind.as_str()
            ),
            Some(c) => println!("{} ({})", self.address, shown(c.sid.as_deref())),
        }
        if self.is_nothing() {
            println!(
                "nothing to change: its auto-creation already calls {}",
                self.target
            );
        }
        for (field, before, after) in &self.changes {
            println!("  {field:<28} {before} -> {after}");
        }
    }

    fn wanted(&self) -> AddressChanges {
        AddressChanges {
            enabled: Some(true),
            auto_creation_type: Some("webhook".to_owned()),
            webhook_url: Some(self.target.clone()),
            webhook_method: Some(METHOD.to_owned()),
            webhook_filters: vec![FILTER.to_owned()],
            ..AddressChanges::default()
        }
    }

    pub async fn apply(&self, client: &TwilioClient) -> Result<(), TwilioError> {
        match &self.existing {
            None => client
                .create_address(self.kind.as_str(), &self.address, None, &self.wanted())
                .await
                .map(|_| ()),
            Some(existing) => {
                let id = existing.sid.as_deref().unwrap_or(&self.address);
                client.update_address(id, &self.wanted()).await.map(|_| ())
            }
        }
    }

    /// The command that puts the address back as it was before `apply`.
    pub fn undo_hint(&self) -> String {
        let address = &self.address;
        let Some(existing) = &self.existing else {
            return format!("flexhook address delete {address} --yes");
        };
        let before = existing.auto_creation.clone().unwrap_or_default();
        if before.enabled != Some(true) {
            return format!("flexhook address disconnect {address}");
        }
        let mut hint = format!("flexhook address update {address}");
        let mut put = |option: &str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                hint.push_str(&format!(" --{option} '{v}'"));
            }
        };
        put("auto-creation-type", before.kind);
        put("webhook-url", before.webhook_url);
        put(
            "webhook-method",
            before.webhook_method.map(|m| m.to_lowercase()),
        );
        for filter in before.webhook_filters.unwrap_or_default() {
            put("webhook-filter", Some(filter));
        }
        put("studio-flow-sid", before.studio_flow_sid);
        put(
            "studio-retry-count",
            before.studio_retry_count.map(|n| n.to_string()),
        );
        hint
    }
}

/// Reads the address's configuration and works out connect's changes; `Ok(Err(_))` is a
/// refusal to explain.
pub(crate) async fn plan_connect(
    client: &TwilioClient,
    address: &str,
    kind: AddressType,
    target: &str,
) -> Result<Result<ConnectPlan, String>, TwilioError> {
    let existing = match client.fetch_address(address).await {
        // A dry-run client answers `{}`: as good as not there.
        Ok(c) if c.sid.is_none() => None,
        Ok(c) => Some(c),
        Err(e) if is_not_found(&e) => None,
        Err(e) => return Err(e),
    };
    let mut changes = Vec::new();
    if let Some(c) = &existing {
        if let Some(t) = c.kind.as_deref().filter(|t| *t != kind.as_str()) {
            return Ok(Err(format!(
                "{address} is configured as {t}, not {}: Twilio cannot change an \
                 address's type (run again with --type {t})",
                kind.as_str()
            )));
        }
        let auto = c.auto_creation.clone().unwrap_or_default();
        let filters = auto.webhook_filters.clone().unwrap_or_default();
        let mut check = |field: &'static str, before: Option<String>, after: &str, same: bool| {
            if !same {
                changes.push((field, shown(before.as_deref()).to_owned(), after.to_owned()));
            }
        };
        check(
            "AutoCreation.Enabled",
            auto.enabled.map(|e| e.to_string()),
            "true",
            auto.enabled == Some(true),
        );
        check(
            "AutoCreation.Type",
            auto.kind.clone(),
            "webhook",
            auto.kind.as_deref() == Some("webhook"),
        );
        check(
            "AutoCreation.WebhookUrl",
            auto.webhook_url.clone(),
            target,
            auto.webhook_url.as_deref() == Some(target),
        );
        check(
            "AutoCreation.WebhookMethod",
            auto.webhook_method.clone(),
            METHOD,
            auto.webhook_method
                .as_deref()
                .is_some_and(|m| m.eq_ignore_ascii_case(METHOD)),
        );
        check(
            "AutoCreation.WebhookFilters",
            auto.webhook_filters.as_ref().map(|f| f.join(",")),
            FILTER,
            filters == [FILTER],
        );
    } else {
        for (field, after) in [
            ("AutoCreation.Enabled", "true"),
            ("AutoCreation.Type", "webhook"),
            ("AutoCreation.WebhookUrl", target),
            ("AutoCreation.WebhookMethod", METHOD),
            ("AutoCreation.WebhookFilters", FILTER),
        ] {
            changes.push((field, "-".to_owned(), after.to_owned()));
        }
    }
    Ok(Ok(ConnectPlan {
        address: address.to_owned(),
        kind,
        existing,
        target: target.to_owned(),
        changes,
    }))
}

pub(super) async fn disconnect(
    settings: &Settings,
    client: &TwilioClient,
    address: &str,
    dry_run: bool,
) -> Result<ExitCode, TwilioError> {
    let existing = match client.fetch_address(address).await {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => {
            println!("nothing to change: {address} has no address configuration");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => return Err(e),
    };
    let auto = existing.auto_creation.clone().unwrap_or_default();
    let url = auto.webhook_url.as_deref().unwrap_or_default();
    let ours = match flexhook_url(settings, address) {
        Some(target) => url == target,
        // Without public_base_url, flexhook's route is all there is to go by.
        None => url.contains(&format!("{}?address=", ROUTE.path())),
    };
    println!("{address} ({})", shown(existing.sid.as_deref()));
    if auto.enabled != Some(true) || !ours {
        println!(
            "nothing to change: its auto-creation is {}, not flexhook's",
            auto_creation_summary(&existing)
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!("  AutoCreation.Enabled         true -> false");
    if dry_run || client.is_dry_run() {
        println!("dry run: nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    let changes = AddressChanges {
        enabled: Some(false),
        ..AddressChanges::default()
    };
    let id = existing.sid.as_deref().unwrap_or(address);
    client.update_address(id, &changes).await?;
    println!("disconnected: Twilio no longer creates conversations for {address}");
    Ok(ExitCode::SUCCESS)
}
