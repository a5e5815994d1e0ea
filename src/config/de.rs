//! Serde helpers for values that arrive as strings from files and environment variables.

use std::collections::{BTreeMap, HashMap};

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

/// An empty or blank string means "not set".
pub(super) fn empty_as_none<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let v = Option::<String>::deserialize(d)?;
    Ok(v.filter(|s| !s.trim().is_empty()))
}

pub(super) fn empty_secret_as_none<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SecretString>, D::Error> {
    Ok(empty_as_none(d)?.map(SecretString::from))
}

/// A port, or an empty string for "not set" (environment variables arrive as strings).
pub(super) fn optional_port<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u16>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Number(u16),
        Text(String),
    }
    match Option::<Raw>::deserialize(d)? {
        None => Ok(None),
        Some(Raw::Number(port)) => Ok(Some(port)),
        Some(Raw::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Raw::Text(t)) => t.trim().parse().map(Some).map_err(|_| {
            serde::de::Error::custom(format!("`{t}` is not a port number (0 to 65535)"))
        }),
    }
}

/// `task_attributes`: a JSON object, written as a string (keeps key case exactly).
pub(super) fn json_object<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<serde_json::Map<String, serde_json::Value>, D::Error> {
    let raw = String::deserialize(d)?;
    if raw.trim().is_empty() {
        return Ok(serde_json::Map::new());
    }
    match serde_json::from_str::<serde_json::Value>(&raw) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err(serde::de::Error::custom(
            "flex.task_attributes must be a JSON object, e.g. '{\"team\":\"support\"}'",
        )),
        Err(e) => Err(serde::de::Error::custom(format!(
            "flex.task_attributes is not valid JSON: {e}"
        ))),
    }
}

/// `webhook_shared_keys`: a table `id = "secret"`, or a string `id1=secret1,id2=secret2`.
pub(super) fn shared_keys<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, SecretString>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Table(HashMap<String, String>),
        List(String),
    }
    let pairs: Vec<(String, String)> = match Raw::deserialize(d)? {
        Raw::Table(t) => t.into_iter().collect(),
        Raw::List(s) => parse_shared_key_list(&s).map_err(serde::de::Error::custom)?,
    };
    Ok(pairs
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.trim().to_owned(), SecretString::from(v)))
        .collect())
}

fn parse_shared_key_list(s: &str) -> Result<Vec<(String, String)>, String> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((id, secret)) if !id.trim().is_empty() && !secret.is_empty() => {
                Ok((id.trim().to_owned(), secret.to_owned()))
            }
            _ => Err(
                "twilio.webhook_shared_keys: expected `id1=secret1,id2=secret2` (an entry has no `=`)"
                    .to_owned(),
            ),
        })
        .collect()
}
