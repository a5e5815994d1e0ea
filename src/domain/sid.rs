//! Twilio SIDs as newtypes: two-letter prefix + 32 hex digits, checked once.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a SID of the expected kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a {kind}: expected `{prefix}` followed by 32 hex digits")]
pub struct SidError {
    pub kind: &'static str,
    pub prefix: &'static str,
    pub value: String,
}

fn check(kind: &'static str, prefix: &'static str, value: &str) -> Result<(), SidError> {
    // Every byte tested, without stopping at a bad one: no branch per byte, so the compiler
    // tests them many at a time (a SID is checked for every webhook).
    let ok = value.len() == 34
        && value.starts_with(prefix)
        && value[2..]
            .bytes()
            .fold(true, |hex, b| hex & b.is_ascii_hexdigit());
    if ok {
        Ok(())
    } else {
        // Long garbage is cut so an error message stays readable.
        let shown: String = value.chars().take(40).collect();
        Err(SidError {
            kind,
            prefix,
            value: shown,
        })
    }
}

macro_rules! sid {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub const PREFIX: &'static str = $prefix;

            pub fn parse(value: &str) -> Result<Self, SidError> {
                check(stringify!($name), $prefix, value)?;
                Ok(Self(value.to_owned()))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl FromStr for $name {
            type Err = SidError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(d)?;
                Self::parse(&raw).map_err(serde::de::Error::custom)
            }
        }
    };
}

sid!(/// A Twilio account (`AC…`).
    AccountSid, "AC");
sid!(/// A conversation (`CH…`): the unit flexhook hands off exactly once.
    ConversationSid, "CH");
sid!(/// A Conversations service (`IS…`).
    ChatServiceSid, "IS");
sid!(/// A conversation message (`IM…`).
    MessageSid, "IM");
sid!(/// A conversation participant (`MB…`).
    ParticipantSid, "MB");
sid!(/// A conversation-scoped webhook (`WH…`).
    WebhookSid, "WH");
sid!(/// A TaskRouter workspace (`WS…`).
    WorkspaceSid, "WS");
sid!(/// A TaskRouter workflow (`WW…`).
    WorkflowSid, "WW");
sid!(/// A TaskRouter task (`WT…`).
    TaskSid, "WT");
sid!(/// A TaskRouter worker (`WK…`): an agent.
    WorkerSid, "WK");
sid!(/// A Flex interaction (`KD…`).
    InteractionSid, "KD");
sid!(/// A Flex interaction channel (`UO…`).
    InteractionChannelSid, "UO");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_well_formed_sid_parses_and_round_trips() {
        let sid = ConversationSid::parse("CH0123456789abcdef0123456789ABCDEF").unwrap();
        assert_eq!(sid.as_str(), "CH0123456789abcdef0123456789ABCDEF");
        assert_eq!(sid.to_string(), "CH0123456789abcdef0123456789ABCDEF");
    }

    #[test]
    fn wrong_prefix_length_or_digits_are_rejected_with_the_kind_named() {
        let err = WorkflowSid::parse("WS0123456789abcdef0123456789abcdef").unwrap_err();
        assert_eq!(err.kind, "WorkflowSid");
        assert!(err.to_string().contains("`WW`"), "{err}");
        assert!(WorkflowSid::parse("WW0123").is_err());
        assert!(WorkflowSid::parse("WW0123456789abcdef0123456789abcdeg").is_err());
        // A bad digit anywhere, or a multi-byte character of the right byte length.
        assert!(WorkflowSid::parse("WWx123456789abcdef0123456789abcdef").is_err());
        assert!(WorkflowSid::parse("WW0123456789abcdef-123456789abcdef").is_err());
        assert!(WorkflowSid::parse("WW0123456789abcdef0123456789abcdé").is_err());
        assert!(WorkflowSid::parse("").is_err());
    }

    #[test]
    fn deserializing_checks_the_prefix() {
        let ok: Result<AccountSid, _> =
            serde_json::from_str("\"AC00000000000000000000000000000000\"");
        assert!(ok.is_ok());
        let bad: Result<AccountSid, _> =
            serde_json::from_str("\"CH00000000000000000000000000000000\"");
        assert!(bad.is_err());
    }
}
