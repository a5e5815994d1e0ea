//! The customer's address (a phone number, `whatsapp:+…`, an e-mail, a web identity)
//! and the Flex channel type it implies. Personal data: `Debug` and `Display` always mask
//! it (they end up in panics and error texts too); a log line shows it with `for_logs()`,
//! masked unless `log.show_addresses` is on.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

/// Flex interaction channel types (Interactions API `Channel.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChannelType {
    Sms,
    Whatsapp,
    Messenger,
    Gbm,
    Email,
    Web,
}

impl ChannelType {
    pub const ALL: [ChannelType; 6] = [
        Self::Sms,
        Self::Whatsapp,
        Self::Messenger,
        Self::Gbm,
        Self::Email,
        Self::Web,
    ];

    /// `sms`, `whatsapp`, … as written in settings (case-insensitive).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim().to_ascii_lowercase();
        Self::ALL.into_iter().find(|c| c.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sms => "sms",
            Self::Whatsapp => "whatsapp",
            Self::Messenger => "messenger",
            Self::Gbm => "gbm",
            Self::Email => "email",
            Self::Web => "web",
        }
    }
}

impl fmt::Display for ChannelType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `log.show_addresses`, for the whole process: set once at start-up, masked until then.
static SHOWN_IN_LOGS: AtomicBool = AtomicBool::new(false);

/// The address a customer writes from, exactly as Twilio reports it in `Author`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CustomerAddress(String);

impl CustomerAddress {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into())
    }

    /// The full address, for the request to Flex and the store; for logs, see
    /// [`CustomerAddress::for_logs`].
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// `log.show_addresses`: whether every log line from now on shows addresses in full
    /// (debugging) or masked (the default). Called once, at start-up.
    pub fn show_in_logs(full: bool) {
        SHOWN_IN_LOGS.store(full, Ordering::Relaxed);
    }

    /// What a log line shows of this address: masked, or in full when
    /// `log.show_addresses` is on. Every log line that names an address uses this.
    pub fn for_logs(&self) -> String {
        if SHOWN_IN_LOGS.load(Ordering::Relaxed) {
            self.0.clone()
        } else {
            self.masked()
        }
    }

    /// What flexhook keeps in place of this customer where it remembers something about
    /// them (the agent who knew them): the hex SHA-256 of their channel type and address
    /// (an e-mail address in lower case), so that the same customer always has the same key
    /// and the key shows nothing of the address.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let channel = self.channel_type();
        let address = match channel {
            ChannelType::Email => self.0.trim().to_lowercase(),
            _ => self.0.trim().to_owned(),
        };
        let mut hash = Sha256::new();
        hash.update(b"flexhook customer\n");
        hash.update(channel.as_str().as_bytes());
        hash.update(b"\n");
        hash.update(address.as_bytes());
        hex::encode(hash.finalize())
    }

    /// `whatsapp:` → whatsapp, `messenger:` → messenger, `gbm:` → gbm,
    /// an e-mail address → email, an E.164 number → sms, anything else → web.
    pub fn channel_type(&self) -> ChannelType {
        let a = self.0.trim();
        let lower = a.to_ascii_lowercase();
        if lower.starts_with("whatsapp:") {
            ChannelType::Whatsapp
        } else if lower.starts_with("messenger:") {
            ChannelType::Messenger
        } else if lower.starts_with("gbm:") {
            ChannelType::Gbm
        } else if is_email(a) {
            ChannelType::Email
        } else if is_e164(a) {
            ChannelType::Sms
        } else {
            ChannelType::Web
        }
    }

    /// Enough to tell two customers apart, not enough to contact one: the scheme, the
    /// first three and the last two characters of the rest. Whatever `log.show_addresses`
    /// says: for the CLI's output (`flexhook jobs`).
    pub fn masked(&self) -> String {
        let (scheme, rest) = match self.0.split_once(':') {
            Some((s, r)) if !s.is_empty() && !s.contains('@') => (Some(s), r),
            _ => (None, self.0.as_str()),
        };
        let chars: Vec<char> = rest.chars().collect();
        let shown = if chars.len() <= 6 {
            "*".repeat(chars.len())
        } else {
            let head: String = chars[..3].iter().collect();
            let tail: String = chars[chars.len() - 2..].iter().collect();
            format!("{head}{}{tail}", "*".repeat(chars.len() - 5))
        };
        match scheme {
            Some(s) => format!("{s}:{shown}"),
            None => shown,
        }
    }
}

impl fmt::Debug for CustomerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CustomerAddress({})", self.masked())
    }
}

impl fmt::Display for CustomerAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

fn is_e164(a: &str) -> bool {
    let Some(digits) = a.strip_prefix('+') else {
        return false;
    };
    (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
}

fn is_email(a: &str) -> bool {
    let Some((local, domain)) = a.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && !a.contains(char::is_whitespace)
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(a: &str) -> ChannelType {
        CustomerAddress::new(a).channel_type()
    }

    #[test]
    fn channel_type_follows_the_author_address() {
        assert_eq!(kind("whatsapp:+34600111222"), ChannelType::Whatsapp);
        assert_eq!(kind("WhatsApp:+34600111222"), ChannelType::Whatsapp);
        assert_eq!(kind("messenger:1234567890"), ChannelType::Messenger);
        assert_eq!(kind("gbm:abcdef"), ChannelType::Gbm);
        assert_eq!(kind("ana.lopez@example.com"), ChannelType::Email);
        assert_eq!(kind("+14155550100"), ChannelType::Sms);
        assert_eq!(kind("web-visitor-42"), ChannelType::Web);
        assert_eq!(
            kind("14155550100"),
            ChannelType::Web,
            "no + means not E.164"
        );
        assert_eq!(kind("+1415"), ChannelType::Web, "too short for E.164");
        assert_eq!(kind("not an@email"), ChannelType::Web);
        assert_eq!(kind("user@localhost"), ChannelType::Web);
    }

    #[test]
    fn masking_hides_the_middle_of_an_address() {
        let a = CustomerAddress::new("whatsapp:+34600111222");
        assert_eq!(a.masked(), "whatsapp:+34*******22");
        assert!(!format!("{a:?}").contains("600111"));
        assert!(!a.to_string().contains("600111"));
        assert_eq!(CustomerAddress::new("abc").masked(), "***");
        assert_eq!(
            CustomerAddress::new("ana.lopez@example.com").masked(),
            "ana****************om"
        );
    }

    /// The only test that flips the process-wide switch: no other unit test reads it.
    #[test]
    fn logs_show_the_full_address_only_once_show_addresses_is_on() {
        let a = CustomerAddress::new("whatsapp:+34600111222");
        assert_eq!(a.for_logs(), "whatsapp:+34*******22", "masked by default");

        CustomerAddress::show_in_logs(true);
        let on = (a.for_logs(), a.to_string(), format!("{a:?}"), a.masked());
        CustomerAddress::show_in_logs(false);

        assert_eq!(on.0, "whatsapp:+34600111222");
        let masked = "whatsapp:+34*******22";
        assert_eq!(on.1, masked, "Display masks whatever the switch says");
        assert_eq!(on.2, format!("CustomerAddress({masked})"), "so does Debug");
        assert_eq!(on.3, masked, "and masked(), for the CLI's output");
        assert_eq!(a.for_logs(), masked, "off again");
    }
    #[test]
    fn a_customer_s_key_is_stable_per_channel_and_address_and_shows_none_of_it() {
        let a = CustomerAddress::new("whatsapp:+34600111222");
        assert_eq!(
            a.key(),
            CustomerAddress::new(" whatsapp:+34600111222 ").key()
        );
        assert_ne!(
            a.key(),
            CustomerAddress::new("+34600111222").key(),
            "sms is another channel"
        );
        assert_ne!(a.key(), CustomerAddress::new("whatsapp:+34600111223").key());
        assert_eq!(
            CustomerAddress::new("Ana@Example.com").key(),
            CustomerAddress::new("ana@example.com").key()
        );
        assert_eq!(a.key().len(), 64);
        assert!(!a.key().contains("600111222"));
    }
}
