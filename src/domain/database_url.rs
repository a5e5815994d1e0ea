//! A database URL whose password never reaches a log, an error or `Debug` output.

use std::fmt;

/// `sqlite://…` (or, later, `postgres://…`). `Display` and `Debug` redact the password.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    pub fn new(raw: impl Into<String>) -> Self {
        Self(raw.into().trim().to_owned())
    }

    /// The URL itself, password included: only for opening the database.
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn scheme(&self) -> &str {
        self.0.split_once(':').map_or("", |(s, _)| s)
    }

    /// The URL with any password replaced by `[redacted]`.
    pub fn redacted(&self) -> String {
        match url::Url::parse(&self.0) {
            Ok(mut u) if u.password().is_some() => {
                let _ = u.set_password(Some("[redacted]"));
                u.to_string()
            }
            _ => self.0.clone(),
        }
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_is_redacted_in_display_and_debug_but_not_exposed() {
        let url = DatabaseUrl::new("postgres://flexhook:s3cret@db.internal/flexhook");
        assert_eq!(url.scheme(), "postgres");
        assert!(!url.to_string().contains("s3cret"), "{url}");
        assert!(!format!("{url:?}").contains("s3cret"), "{url:?}");
        assert!(url.to_string().contains("db.internal"), "{url}");
        assert!(url.expose().contains("s3cret"));
        let file = DatabaseUrl::new("sqlite://data/flexhook.db");
        assert_eq!(file.to_string(), "sqlite://data/flexhook.db");
        assert_eq!(file.scheme(), "sqlite");
    }
}
