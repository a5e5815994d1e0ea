//! `flexhook flexflow list` and `flexhook migrate`: the legacy Flex Flows of Flex UI 1.x
//! accounts, and moving one address from its Flex Flow to flexhook.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::address::{explain, plan_connect, webhook_url, AddressType};
use super::{client, print_table};
use crate::config::Settings;
use crate::twilio::{FlexFlow, TwilioClient};

#[derive(Debug, Args)]
pub struct FlexflowArgs {
    #[command(subcommand)]
    pub command: FlexflowCommand,
}

#[derive(Debug, Subcommand)]
pub enum FlexflowCommand {
    /// List the account's Flex Flows (flex-api /v1/FlexFlows), following every page.
    List {
        /// As one JSON document.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The address the Flex Flow holds: a phone number, whatsapp:+1555…
    address: String,
    /// The address's type.
    #[arg(long = "type", value_enum)]
    kind: AddressType,
    /// Do it; without --yes only the plan is printed.
    #[arg(long)]
    yes: bool,
}

fn shown(value: Option<&str>) -> &str {
    value.filter(|v| !v.is_empty()).unwrap_or("-")
}

pub async fn run(settings: &Settings, args: &FlexflowArgs) -> anyhow::Result<ExitCode> {
    let client = match client(settings) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let FlexflowCommand::List { json } = &args.command;
    let flows = match client.list_flex_flows().await {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {}", explain(&e, "the Flex Flows"));
            return Ok(ExitCode::FAILURE);
        }
    };
    if *json {
        let doc = serde_json::json!({ "flex_flows": flows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 6]> = flows
        .iter()
        .map(|f| {
            [
                shown(f.sid.as_deref()).to_owned(),
                shown(f.friendly_name.as_deref()).to_owned(),
                shown(f.channel_type.as_deref()).to_owned(),
                shown(f.contact_identity.as_deref()).to_owned(),
                f.enabled.map_or("-".to_owned(), |e| e.to_string()),
                shown(f.integration_type.as_deref()).to_owned(),
            ]
        })
        .collect();
    print_table(
        [
            "SID",
            "FRIENDLY NAME",
            "CHANNEL",
            "CONTACT IDENTITY",
            "ENABLED",
            "INTEGRATION",
        ],
        &rows,
    );
    println!("{} Flex Flow(s)", rows.len());
    Ok(ExitCode::SUCCESS)
}

/// Whether the flow holds the address: the same contact identity, or the same number on
/// the same channel (`whatsapp:+1…` and `+1…` of a whatsapp flow).
fn holds(flow: &FlexFlow, address: &str, kind: AddressType) -> bool {
    let bare = |a: &str| a.split_once(':').map_or(a, |(_, n)| n).trim().to_owned();
    let Some(identity) = flow.contact_identity.as_deref() else {
        return false;
    };
    identity == address
        || (bare(identity) == bare(address) && flow.channel_type.as_deref() == Some(kind.as_str()))
}

pub async fn migrate(settings: &Settings, args: &MigrateArgs) -> anyhow::Result<ExitCode> {
    let client = match client(settings) {
        Ok(c) => c,
        Err(code) => return Ok(code),
    };
    let target = match webhook_url(settings, &args.address) {
        Ok(t) => t,
        Err(code) => return Ok(code),
    };
    match migrate_with(&client, args, &target).await {
        Ok(code) => Ok(code),
        Err(e) => {
            eprintln!("error: {}", explain(&e, &args.address));
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn migrate_with(
    client: &TwilioClient,
    args: &MigrateArgs,
    target: &str,
) -> Result<ExitCode, crate::twilio::TwilioError> {
    let address = args.address.as_str();
    let plan = match plan_connect(client, address, args.kind, target).await? {
        Ok(p) => p,
        Err(refusal) => {
            eprintln!("{refusal}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let flows: Vec<FlexFlow> = client
        .list_flex_flows()
        .await?
        .into_iter()
        .filter(|f| holds(f, address, args.kind) && f.enabled == Some(true) && f.sid.is_some())
        .collect();
    println!("1. connect {address} to flexhook");
    plan.print();
    println!("2. disable the Flex Flow that holds {address} (Enabled=false; never deleted)");
    if flows.is_empty() {
        println!("  no enabled Flex Flow holds {address}: nothing to disable");
    }
    for f in &flows {
        println!(
            "  {} ({})  Enabled true -> false",
            shown(f.sid.as_deref()),
            shown(f.friendly_name.as_deref())
        );
    }
    if client.is_dry_run() {
        println!("dry run (no Twilio account): nothing was changed");
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes {
        println!("nothing was changed: run again with --yes to do it");
        return Ok(ExitCode::SUCCESS);
    }
    if plan.is_nothing() {
        println!("step 1: nothing to change");
    } else {
        plan.apply(client).await?;
        println!(
            "step 1: done ({})",
            if plan.creates() { "created" } else { "updated" }
        );
    }
    for f in &flows {
        let sid = f.sid.as_deref().unwrap_or_default();
        // Enabled=false only: a Flex Flow is never deleted.
        if let Err(e) = client.disable_flex_flow(sid).await {
            eprintln!(
                "step 2 failed: Flex Flow {sid} is still enabled: {}",
                explain(&e, sid)
            );
            if !plan.is_nothing() {
                eprintln!("to undo step 1: {}", plan.undo_hint());
            }
            return Ok(ExitCode::FAILURE);
        }
        println!("step 2: Flex Flow {sid} disabled");
    }
    if flows.is_empty() {
        println!("step 2: nothing to disable");
    }
    println!("migrated: messages to {address} now reach {target}");
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(identity: &str, channel: &str) -> FlexFlow {
        FlexFlow {
            contact_identity: Some(identity.to_owned()),
            channel_type: Some(channel.to_owned()),
            ..FlexFlow::default()
        }
    }

    #[test]
    fn a_flow_holds_the_number_only_on_its_own_channel() {
        let address = "whatsapp:+15550001111";
        assert!(holds(
            &flow(address, "whatsapp"),
            address,
            AddressType::Whatsapp
        ));
        assert!(holds(
            &flow("+15550001111", "whatsapp"),
            address,
            AddressType::Whatsapp
        ));
        assert!(!holds(
            &flow("+15550001111", "sms"),
            address,
            AddressType::Whatsapp
        ));
        assert!(!holds(
            &flow("+15550002222", "whatsapp"),
            address,
            AddressType::Whatsapp
        ));
    }
}
