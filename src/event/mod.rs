//! What a verified webhook means: a typed event. Conversations' events here; TaskRouter's
//! in `task.rs`. Form bodies (what Twilio sends) and JSON bodies (as in Flex's
//! prerequisites page, flat or under `conversation`) both arrive here; SIDs are checked
//! once, and everything after trusts them.

pub mod task;

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

use crate::domain::{
    AccountSid, ChatServiceSid, ConversationSid, CustomerAddress, MessageSid, ParticipantSid,
    SidError, WebhookSid,
};
use crate::signature::{Form, Payload, Verified};

/// An event flexhook acts on, or one it only acknowledges.
#[derive(Debug, Clone)]
pub enum Event {
    MessageAdded(Box<MessageAdded>),
    /// Any other `EventType`: answered 200, nothing else.
    Other(Head),
}

/// `MessagingBinding.*`: how the customer is connected (absent for chat/SDK participants).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessagingBinding {
    pub address: Option<CustomerAddress>,
    pub proxy_address: Option<String>,
    pub author_address: Option<CustomerAddress>,
}

/// `onMessageAdded`. `body` is the customer's text: it is never logged nor stored.
#[derive(Clone)]
pub struct MessageAdded {
    pub account_sid: AccountSid,
    pub conversation_sid: ConversationSid,
    pub chat_service_sid: Option<ChatServiceSid>,
    pub message_sid: Option<MessageSid>,
    pub participant_sid: Option<ParticipantSid>,
    pub author: Option<CustomerAddress>,
    pub body: Option<String>,
    pub attributes: Option<Value>,
    pub index: Option<u64>,
    pub date_created: Option<String>,
    pub source: Option<String>,
    pub retry_count: u32,
    pub webhook_sid: Option<WebhookSid>,
    pub messaging_binding: MessagingBinding,
    pub media: Option<Value>,
}

impl fmt::Debug for MessageAdded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MessageAdded")
            .field("account_sid", &self.account_sid)
            .field("conversation_sid", &self.conversation_sid)
            .field("chat_service_sid", &self.chat_service_sid)
            .field("message_sid", &self.message_sid)
            .field("participant_sid", &self.participant_sid)
            .field("author", &self.author)
            .field("body", &self.body.as_ref().map(|_| "[redacted]"))
            .field("index", &self.index)
            .field("source", &self.source)
            .field("retry_count", &self.retry_count)
            .field("webhook_sid", &self.webhook_sid)
            .finish_non_exhaustive()
    }
}

impl MessageAdded {
    /// The customer's address: `Author`, else the binding's address.
    pub fn customer_address(&self) -> Option<&CustomerAddress> {
        self.author
            .as_ref()
            .or(self.messaging_binding.author_address.as_ref())
            .or(self.messaging_binding.address.as_ref())
    }
}

/// Why a verified body is not an event flexhook understands (answered 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EventError {
    #[error("body is not a JSON object: {0}")]
    Json(String),
    #[error("missing field {0}")]
    Missing(&'static str),
    #[error("field {field}: {source}")]
    Sid {
        field: &'static str,
        #[source]
        source: SidError,
    },
    #[error("field {field}: `{value}` is not a number")]
    Number { field: &'static str, value: String },
}

/// Field lookup over either body format, with the legacy names as aliases.
enum Fields<'a> {
    /// A form's pairs as they came, looked up in place: the first value of a name wins
    /// (repeats only matter to the signature).
    Form(&'a Form),
    Json(HashMap<String, Value>),
}

/// One field as the body holds it.
enum Raw<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl<'a> Fields<'a> {
    fn from_form(form: &'a Form) -> Self {
        Self::Form(form)
    }

    fn from_json(raw: &[u8]) -> Result<Self, EventError> {
        let value: Value =
            serde_json::from_slice(raw).map_err(|e| EventError::Json(e.to_string()))?;
        let Value::Object(mut obj) = value else {
            return Err(EventError::Json("expected an object".into()));
        };
        // Flex's prerequisites page shows the fields under "conversation".
        if !obj.contains_key("EventType") {
            if let Some(Value::Object(inner)) = obj.remove("conversation") {
                obj = inner;
            }
        }
        let mut map: HashMap<String, Value> = HashMap::with_capacity(obj.len());
        for (k, v) in obj {
            // Nested MessagingBinding: {"MessagingBinding": {"Address": ...}} → MessagingBinding.Address
            if let (true, Value::Object(inner)) = (k == "MessagingBinding", &v) {
                for (ik, iv) in inner {
                    map.insert(format!("MessagingBinding.{ik}"), iv.clone());
                }
            } else {
                map.insert(k, v);
            }
        }
        Ok(Self::Json(map))
    }

    fn get(&self, name: &str) -> Option<Raw<'_>> {
        match self {
            Self::Form(form) => form.get(name).map(Raw::Text),
            Self::Json(map) => map.get(name).map(Raw::Json),
        }
    }

    /// A string field under any of `names` (the first that is present and non-empty).
    fn text(&self, names: &[&str]) -> Option<String> {
        self.str(names).map(Cow::into_owned)
    }

    /// [`Fields::text`], borrowed where the body holds it as text.
    fn str(&self, names: &[&str]) -> Option<Cow<'_, str>> {
        names.iter().find_map(|n| match self.get(n)? {
            Raw::Text(s) if !s.is_empty() => Some(Cow::Borrowed(s)),
            Raw::Json(Value::String(s)) if !s.is_empty() => Some(Cow::Borrowed(s.as_str())),
            Raw::Json(Value::Number(num)) => Some(Cow::Owned(num.to_string())),
            Raw::Json(Value::Bool(b)) => Some(Cow::Owned(b.to_string())),
            _ => None,
        })
    }

    fn sid<T>(
        &self,
        field: &'static str,
        names: &[&str],
        parse: fn(&str) -> Result<T, SidError>,
    ) -> Result<Option<T>, EventError> {
        match self.str(names) {
            None => Ok(None),
            Some(s) => parse(s.trim())
                .map(Some)
                .map_err(|source| EventError::Sid { field, source }),
        }
    }

    fn number(&self, field: &'static str) -> Result<Option<u64>, EventError> {
        match self.str(&[field]) {
            None => Ok(None),
            Some(s) => s.trim().parse().map(Some).map_err(|_| EventError::Number {
                field,
                value: s.into_owned(),
            }),
        }
    }

    /// A field that holds JSON, either as a JSON string (form bodies) or inline (JSON bodies).
    fn json(&self, name: &str) -> Option<Value> {
        let text = match self.get(name)? {
            Raw::Text(s) => s,
            Raw::Json(Value::String(s)) => s.as_str(),
            Raw::Json(Value::Null) => return None,
            Raw::Json(other) => return Some(other.clone()),
        };
        if text.trim().is_empty() {
            return None;
        }
        Some(serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned())))
    }
}

/// The account a payload says it comes from, read as every event's reader reads it
/// (Conversations' and TaskRouter's alike), before its signature is checked: only to pick
/// whose credentials check it. Whatever it says, the verified event's own account must then
/// be the one picked.
pub fn claimed_account(payload: &Payload) -> Option<AccountSid> {
    let fields = match payload {
        Payload::Form(form) => Fields::from_form(form),
        Payload::Json(raw) => Fields::from_json(raw).ok()?,
    };
    fields
        .sid("AccountSid", &["AccountSid"], AccountSid::parse)
        .ok()
        .flatten()
}

/// Parses a verified payload. Unknown fields are ignored (they only mattered to the signature).
pub fn parse(payload: &Verified<Payload>) -> Result<Event, EventError> {
    read(payload)?.into_event()
}

/// What a Conversations event is, read before the rest of it: its type, its account, and for
/// `onMessageAdded` its conversation. That is all a later message of a known conversation
/// (the hot path) needs; [`Read::into_event`] reads the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub event_type: String,
    pub account_sid: AccountSid,
    /// `Some` exactly when the event is `onMessageAdded`.
    pub conversation_sid: Option<ConversationSid>,
}

/// A payload whose [`Head`] is read; the rest is read on demand.
pub struct Read<'a> {
    fields: Fields<'a>,
    head: Head,
}

/// Reads a verified payload's [`Head`]. Refused when it lacks any of the head's fields, or
/// holds one that is malformed.
pub fn read(payload: &Verified<Payload>) -> Result<Read<'_>, EventError> {
    let fields = match payload.get() {
        Payload::Form(form) => Fields::from_form(form),
        Payload::Json(raw) => Fields::from_json(raw)?,
    };
    let event_type = fields
        .text(&["EventType"])
        .ok_or(EventError::Missing("EventType"))?;
    let account_sid = fields
        .sid("AccountSid", &["AccountSid"], AccountSid::parse)?
        .ok_or(EventError::Missing("AccountSid"))?;
    let conversation_sid = if event_type == "onMessageAdded" {
        let sid = fields.sid(
            "ConversationSid",
            &["ConversationSid", "ChannelSid"],
            ConversationSid::parse,
        )?;
        Some(sid.ok_or(EventError::Missing("ConversationSid"))?)
    } else {
        None
    };
    Ok(Read {
        fields,
        head: Head {
            event_type,
            account_sid,
            conversation_sid,
        },
    })
}

impl Read<'_> {
    pub fn head(&self) -> &Head {
        &self.head
    }

    /// The whole event: for `onMessageAdded`, its other fields read and checked.
    pub fn into_event(self) -> Result<Event, EventError> {
        let Read { fields, head } = self;
        let Some(conversation_sid) = head.conversation_sid else {
            return Ok(Event::Other(head));
        };
        let account_sid = head.account_sid;
        let address = |names: &[&str]| fields.text(names).map(CustomerAddress::new);
        let retry_count = fields.number("RetryCount")?.unwrap_or(0);
        Ok(Event::MessageAdded(Box::new(MessageAdded {
            account_sid,
            conversation_sid,
            chat_service_sid: fields.sid(
                "ChatServiceSid",
                &["ChatServiceSid", "InstanceSid"],
                ChatServiceSid::parse,
            )?,
            message_sid: fields.sid("MessageSid", &["MessageSid"], MessageSid::parse)?,
            participant_sid: fields.sid(
                "ParticipantSid",
                &["ParticipantSid"],
                ParticipantSid::parse,
            )?,
            author: address(&["Author", "From"]),
            body: fields.text(&["Body"]),
            attributes: fields.json("Attributes"),
            index: fields.number("Index")?,
            date_created: fields.text(&["DateCreated"]),
            source: fields.text(&["Source"]),
            retry_count: u32::try_from(retry_count).unwrap_or(u32::MAX),
            webhook_sid: fields.sid("WebhookSid", &["WebhookSid"], WebhookSid::parse)?,
            messaging_binding: MessagingBinding {
                address: address(&["MessagingBinding.Address"]),
                proxy_address: fields.text(&["MessagingBinding.ProxyAddress"]),
                author_address: address(&["MessagingBinding.AuthorAddress"]),
            },
            media: fields.json("Media"),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signature::testing::verified;

    fn form(pairs: &[(&str, &str)]) -> Verified<Payload> {
        verified(Payload::Form(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ))
    }

    const AC: &str = "AC00000000000000000000000000000000";
    const CH: &str = "CH11111111111111111111111111111111";

    #[test]
    fn a_form_message_added_parses_every_field() {
        let event = parse(&form(&[
            ("EventType", "onMessageAdded"),
            ("AccountSid", AC),
            ("ConversationSid", CH),
            ("ChatServiceSid", "IS22222222222222222222222222222222"),
            ("MessageSid", "IM33333333333333333333333333333333"),
            ("ParticipantSid", "MB44444444444444444444444444444444"),
            ("WebhookSid", "WH55555555555555555555555555555555"),
            ("Author", "whatsapp:+34600111222"),
            ("Body", "Hola"),
            ("Attributes", "{\"vip\":true}"),
            ("Index", "0"),
            ("RetryCount", "2"),
            ("Source", "WHATSAPP"),
            ("DateCreated", "2026-11-22T10:00:00Z"),
            ("MessagingBinding.Address", "whatsapp:+34600111222"),
            ("MessagingBinding.ProxyAddress", "whatsapp:+15550001111"),
            ("Media", "[{\"Sid\":\"ME1\"}]"),
            ("SomethingNew", "ignored"),
        ]))
        .unwrap();
        let Event::MessageAdded(m) = event else {
            panic!("expected onMessageAdded")
        };
        assert_eq!(m.conversation_sid.as_str(), CH);
        assert_eq!(
            m.chat_service_sid.unwrap().as_str(),
            "IS22222222222222222222222222222222"
        );
        assert_eq!(
            m.webhook_sid.unwrap().as_str(),
            "WH55555555555555555555555555555555"
        );
        assert_eq!(m.author.unwrap().expose(), "whatsapp:+34600111222");
        assert_eq!(m.index, Some(0));
        assert_eq!(m.retry_count, 2);
        assert_eq!(m.attributes.unwrap()["vip"], true);
        assert_eq!(m.media.unwrap()[0]["Sid"], "ME1");
        assert_eq!(
            m.messaging_binding.proxy_address.as_deref(),
            Some("whatsapp:+15550001111")
        );
    }

    /// The head (type, account, conversation) is all a later message of a known
    /// conversation is read for; the rest is read, and refused when malformed, only after.
    #[test]
    fn the_head_is_read_alone_and_the_rest_only_on_demand() {
        let payload = form(&[
            ("EventType", "onMessageAdded"),
            ("AccountSid", AC),
            ("ConversationSid", CH),
            ("MessageSid", "not-a-sid"),
        ]);
        let message = read(&payload).unwrap();
        assert_eq!(
            message.head(),
            &Head {
                event_type: "onMessageAdded".into(),
                account_sid: AccountSid::parse(AC).unwrap(),
                conversation_sid: Some(ConversationSid::parse(CH).unwrap()),
            }
        );
        assert!(
            matches!(
                message.into_event(),
                Err(EventError::Sid {
                    field: "MessageSid",
                    ..
                })
            ),
            "the rest is still checked"
        );

        // The head's own fields are refused at once.
        for (pairs, missing) in [
            (
                &[("AccountSid", AC), ("ConversationSid", CH)][..],
                "EventType",
            ),
            (
                &[("EventType", "onMessageAdded"), ("ConversationSid", CH)][..],
                "AccountSid",
            ),
            (
                &[("EventType", "onMessageAdded"), ("AccountSid", AC)][..],
                "ConversationSid",
            ),
        ] {
            assert!(
                matches!(read_of(pairs), Err(EventError::Missing(m)) if m == missing),
                "{missing}"
            );
        }
        assert!(matches!(
            read_of(&[
                ("EventType", "onMessageAdded"),
                ("AccountSid", AC),
                ("ConversationSid", "CHshort")
            ]),
            Err(EventError::Sid {
                field: "ConversationSid",
                ..
            })
        ));

        // Another event needs no conversation, and is that event.
        let other = form(&[("EventType", "onConversationAdded"), ("AccountSid", AC)]);
        let other = read(&other).unwrap();
        assert_eq!(other.head().conversation_sid, None);
        assert!(matches!(
            other.into_event(),
            Ok(Event::Other(Head { event_type, .. })) if event_type == "onConversationAdded"
        ));
    }

    fn read_of(pairs: &[(&str, &str)]) -> Result<Head, EventError> {
        read(&form(pairs)).map(|r| r.head().clone())
    }

    #[test]
    fn json_from_the_flex_prerequisites_page_parses_with_legacy_names() {
        let body = br#"{"conversation": {"EventType": "onMessageAdded",
            "InstanceSid": "IS497d26fb5332435e9cccadbf114d4aff", "Attributes": "{}",
            "DateCreated": "2022-02-21T05:01:46.886Z", "Index": "0", "From": "customer1",
            "MessageSid": "IM3032b674d70647a798ffa8e78eb23abf",
            "AccountSid": "ACd9ecc21b1ae907b3cf65d9044c891eb3", "Source": "API",
            "ChannelSid": "CH1b8e780f14db45b6b44b070bb3f9172c", "Body": "hi"}}"#;
        let Event::MessageAdded(m) = parse(&verified(Payload::Json(body.to_vec()))).unwrap() else {
            panic!("expected onMessageAdded")
        };
        assert_eq!(
            m.conversation_sid.as_str(),
            "CH1b8e780f14db45b6b44b070bb3f9172c"
        );
        assert_eq!(
            m.chat_service_sid.unwrap().as_str(),
            "IS497d26fb5332435e9cccadbf114d4aff"
        );
        assert_eq!(m.author.unwrap().expose(), "customer1");
    }

    #[test]
    fn flat_json_with_numbers_and_nested_binding_parses() {
        let body = format!(
            r#"{{"EventType":"onMessageAdded","AccountSid":"{AC}","ConversationSid":"{CH}",
            "Index":3,"RetryCount":1,"MessagingBinding":{{"Address":"+14155550100"}}}}"#
        );
        let Event::MessageAdded(m) = parse(&verified(Payload::Json(body.into_bytes()))).unwrap()
        else {
            panic!("expected onMessageAdded")
        };
        assert_eq!(m.index, Some(3));
        assert_eq!(m.retry_count, 1);
        assert_eq!(m.customer_address().unwrap().expose(), "+14155550100");
    }

    #[test]
    fn other_events_are_recognised_but_not_parsed_further() {
        let event = parse(&form(&[
            ("EventType", "onConversationAdded"),
            ("AccountSid", AC),
        ]))
        .unwrap();
        assert!(
            matches!(event, Event::Other(Head { ref event_type, .. }) if event_type == "onConversationAdded")
        );
    }

    #[test]
    fn malformed_bodies_say_which_field_is_wrong() {
        let missing = parse(&form(&[
            ("EventType", "onMessageAdded"),
            ("AccountSid", AC),
        ]))
        .unwrap_err();
        assert_eq!(missing, EventError::Missing("ConversationSid"));
        let bad_sid = parse(&form(&[
            ("EventType", "onMessageAdded"),
            ("AccountSid", AC),
            ("ConversationSid", "XX11111111111111111111111111111111"),
        ]))
        .unwrap_err();
        assert!(bad_sid.to_string().contains("ConversationSid"), "{bad_sid}");
        let bad_index = parse(&form(&[
            ("EventType", "onMessageAdded"),
            ("AccountSid", AC),
            ("ConversationSid", CH),
            ("Index", "first"),
        ]))
        .unwrap_err();
        assert!(matches!(
            bad_index,
            EventError::Number { field: "Index", .. }
        ));
        assert!(matches!(
            parse(&verified(Payload::Json(b"[1]".to_vec()))),
            Err(EventError::Json(_))
        ));
        assert_eq!(
            parse(&form(&[("AccountSid", AC)])).unwrap_err(),
            EventError::Missing("EventType")
        );
    }

    #[test]
    fn debug_output_never_shows_the_body_or_full_address() {
        let Event::MessageAdded(m) = parse(&form(&[
            ("EventType", "onMessageAdded"),
            ("AccountSid", AC),
            ("ConversationSid", CH),
            ("Author", "+14155550100"),
            ("Body", "my card number is 4111"),
        ]))
        .unwrap() else {
            panic!()
        };
        let debug = format!("{m:?}");
        assert!(!debug.contains("4111"), "{debug}");
        assert!(!debug.contains("4155550100"), "{debug}");
    }
}
