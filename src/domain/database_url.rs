//! A database URL whose passwords never reach a log, an error or `Debug` output: the
//! userinfo's, and libpq's `password` and `sslpassword` query parameters. Its scheme says
//! which [`Backend`] keeps the jobs; this is the one place that knows the schemes.

use std::borrow::Cow;
use std::fmt;

/// What a secret is shown as.
const REDACTED: &str = "[redacted]";

/// The database a URL names, by its scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// `sqlite:`: one file, one instance.
    Sqlite,
    /// `postgres:` or `postgresql:`: one database shared by several instances.
    Postgres,
}

impl Backend {
    fn from_scheme(scheme: &str) -> Option<Self> {
        match scheme {
            "sqlite" => Some(Self::Sqlite),
            "postgres" | "postgresql" => Some(Self::Postgres),
            _ => None,
        }
    }

    /// `sqlite` or `postgres`: the metrics' `store` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// `sqlite://…` or `postgres://…`. `Display` and `Debug` redact the passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl {
    raw: String,
    /// Read from the scheme once; `None`: a scheme no backend serves.
    backend: Option<Backend>,
}

impl DatabaseUrl {
    pub fn new(raw: impl Into<String>) -> Self {
        let raw = raw.into().trim().to_owned();
        let backend = raw
            .split_once(':')
            .and_then(|(s, _)| Backend::from_scheme(s));
        Self { raw, backend }
    }

    /// The URL itself, passwords included: only for opening the database.
    pub fn expose(&self) -> &str {
        &self.raw
    }

    pub fn scheme(&self) -> &str {
        self.raw.split_once(':').map_or("", |(s, _)| s)
    }

    /// Which backend the scheme names; `None` for a scheme flexhook does not support.
    pub fn backend(&self) -> Option<Backend> {
        self.backend
    }

    /// The URL with every password replaced by `[redacted]`; the rest as written.
    pub fn redacted(&self) -> String {
        let (head, query) = split_query(&self.raw);
        let mut out = String::with_capacity(self.raw.len());
        // The userinfo (`user:password@`) ends at the authority's last `@`. Not with a
        // parser: a URL it refuses must not keep its password either.
        match userinfo_password(head) {
            Some((start, end)) => {
                out.push_str(&head[..start]);
                out.push_str(REDACTED);
                out.push_str(&head[end..]);
            }
            None => out.push_str(head),
        }
        if let Some(query) = query {
            out.push('?');
            out.push_str(&rewrite_query(query, |name, param| {
                Some(if is_secret(name) {
                    let raw_name = param.split('=').next().unwrap_or(param);
                    Cow::Owned(format!("{raw_name}={REDACTED}"))
                } else {
                    Cow::Borrowed(param)
                })
            }));
        }
        out
    }

    /// The URL for sqlx's PostgreSQL driver, and the names of the query parameters left
    /// out: the secrets it does not read (`sslpassword`, `password` in another case), which
    /// it would log, value and all, as unrecognized.
    pub fn for_postgres_driver(&self) -> (String, Vec<String>) {
        let (head, query) = split_query(&self.raw);
        let Some(query) = query else {
            return (self.raw.clone(), Vec::new());
        };
        let mut dropped = Vec::new();
        let kept = rewrite_query(query, |name, param| {
            if is_secret(name) && name != "password" {
                dropped.push(name.to_owned());
                None
            } else {
                Some(Cow::Borrowed(param))
            }
        });
        let url = if kept.is_empty() {
            head.to_owned()
        } else {
            format!("{head}?{kept}")
        };
        (url, dropped)
    }
}

/// The URL before its query, and the query (without `?`).
fn split_query(url: &str) -> (&str, Option<&str>) {
    match url.split_once('?') {
        Some((head, query)) => (head, Some(query)),
        None => (url, None),
    }
}

/// Where the userinfo's password is in `head` (a URL without its query), if it has one.
fn userinfo_password(head: &str) -> Option<(usize, usize)> {
    let authority = head.find("://")? + 3;
    let end = head[authority..]
        .find('/')
        .map_or(head.len(), |i| authority + i);
    let at = authority + head[authority..end].rfind('@')?;
    let colon = authority + head[authority..at].find(':')?;
    Some((colon + 1, at))
}

/// A query parameter that holds a secret (libpq's names, in any case).
fn is_secret(name: &str) -> bool {
    name.eq_ignore_ascii_case("password") || name.eq_ignore_ascii_case("sslpassword")
}

/// `query` with each `name=value` replaced by what `f` makes of its decoded name and its
/// text as written (`None` leaves it out); the rest is kept byte for byte.
fn rewrite_query<'q>(
    query: &'q str,
    mut f: impl FnMut(&str, &'q str) -> Option<Cow<'q, str>>,
) -> String {
    let mut out = String::with_capacity(query.len());
    let mut first = true;
    for param in query.split('&') {
        let raw_name = param.split('=').next().unwrap_or(param);
        let name: String = form_urlencoded::parse(raw_name.as_bytes())
            .next()
            .map(|(name, _)| name.into_owned())
            .unwrap_or_default();
        if let Some(kept) = f(&name, param) {
            if !first {
                out.push('&');
            }
            first = false;
            out.push_str(&kept);
        }
    }
    out
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

    #[test]
    fn the_scheme_names_the_backend_once() {
        let backend = |url: &str| DatabaseUrl::new(url).backend();
        assert_eq!(backend("sqlite://data/f.db"), Some(Backend::Sqlite));
        assert_eq!(backend("sqlite:data.db"), Some(Backend::Sqlite));
        assert_eq!(backend("postgres://u@db/x"), Some(Backend::Postgres));
        assert_eq!(backend(" postgresql://u@db/x"), Some(Backend::Postgres));
        assert_eq!(backend("mysql://u@db/x"), None);
        assert_eq!(backend("data.db"), None);
    }

    #[test]
    fn a_password_in_the_query_is_redacted_and_the_other_parameters_kept_as_written() {
        let url = DatabaseUrl::new(
            "postgres://flexhook@db.internal:5432/flexhook?sslmode=require&password=s3cret&application_name=a%2Fb",
        );
        assert_eq!(
            url.to_string(),
            "postgres://flexhook@db.internal:5432/flexhook?sslmode=require&password=[redacted]&application_name=a%2Fb"
        );
        assert!(!format!("{url:?}").contains("s3cret"), "{url:?}");
        assert!(url.expose().contains("password=s3cret"));
        // libpq's sslpassword, any case, an escaped name, and with a password in the
        // userinfo too.
        let url = DatabaseUrl::new(
            "postgresql://u:pw1@db/x?sslpassword=pw2&PassWord=pw3&pass%77ord=pw4&sslmode=verify-full",
        );
        let shown = url.redacted();
        for secret in ["pw1", "pw2", "pw3", "pw4"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("sslmode=verify-full"), "{shown}");
        assert!(shown.contains("@db/x?"), "{shown}");
        // Even a URL the parser refuses keeps its password to itself.
        let broken = DatabaseUrl::new("postgres://u:pw5@[db/x?password=pw6");
        assert!(!broken.redacted().contains("pw5"), "{}", broken.redacted());
        assert!(!broken.redacted().contains("pw6"), "{}", broken.redacted());
    }

    #[test]
    fn the_postgres_driver_gets_no_secret_it_would_log_as_unrecognized() {
        let url = DatabaseUrl::new(
            "postgres://u@db/x?sslmode=require&sslpassword=k&password=p&PASSWORD=q",
        );
        let (driver, dropped) = url.for_postgres_driver();
        assert_eq!(driver, "postgres://u@db/x?sslmode=require&password=p");
        assert_eq!(dropped, ["sslpassword", "PASSWORD"]);
        let (driver, dropped) =
            DatabaseUrl::new("postgres://u@db/x?sslpassword=k").for_postgres_driver();
        assert_eq!((driver.as_str(), dropped.len()), ("postgres://u@db/x", 1));
        let plain = DatabaseUrl::new("postgres://u:p@db/x");
        assert_eq!(
            plain.for_postgres_driver(),
            ("postgres://u:p@db/x".into(), vec![])
        );
        // A SQLite path with `@` or `:` in it is no userinfo.
        for path in [
            "sqlite:data@x.db",
            "sqlite://data/a:b@c.db",
            "sqlite://data/f.db?mode=rwc",
        ] {
            assert_eq!(DatabaseUrl::new(path).redacted(), path);
        }
    }
}
