//! Base URLs of targets and steps: scheme, host, port, path prefix, and credentials.
//!
//! Parsing lives here so that validation and the engine agree on what a URL means; the engine
//! reuses [`parse_base_url`] and must not parse URLs its own way. Credentials written into a
//! URL (`http://user:secret@host/`) are split off here: they become an `Authorization: Basic`
//! header in the engine and never reach the `Host` header, `:authority`, a log or a result.

use std::fmt;

/// The parts of a base URL that a connection needs.
#[derive(Clone, PartialEq, Eq)]
pub struct BaseUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `host[:port]` as written, without any credentials: the Host header and `:authority`.
    pub authority: String,
    /// Path prefix without a trailing slash.
    pub path: String,
    /// `user:password` from the URL, percent-decoded; sent as `Authorization: Basic`.
    pub userinfo: Option<Userinfo>,
}

/// Credentials taken out of a URL. Their `Debug` form never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Userinfo {
    pub user: String,
    pub password: String,
}

impl fmt::Debug for Userinfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Userinfo({:?}, <redacted>)", self.user)
    }
}

impl fmt::Debug for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BaseUrl")
            .field("tls", &self.tls)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("userinfo", &self.userinfo)
            .finish()
    }
}

impl BaseUrl {
    /// `scheme://authority` without credentials, for messages and absolute URIs.
    pub fn origin(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.authority)
    }
}

/// Why a URL was refused. Each variant holds the URL as shown in messages: its userinfo
/// replaced by `***`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error(
        "{0:?} is not a valid URL: it holds a space, a quote, `<`, `>` or a control character"
    )]
    ForbiddenCharacter(String),
    #[error("{url:?} is not a valid URL: {reason}")]
    Invalid { url: String, reason: String },
    #[error("{0:?} needs a scheme: http:// or https://")]
    NoScheme(String),
    /// A base URL's scheme other than `http` or `https`.
    #[error("unsupported scheme {0:?}: use http or https")]
    Scheme(String),
    /// A request URL's scheme other than `http` or `https` (a path is also accepted there).
    #[error("unsupported scheme {0:?}: use http:// or https://, or a path joined to the target")]
    RequestScheme(String),
    #[error("{0:?} has no host")]
    NoHost(String),
}

impl UrlError {
    /// The same error naming the URL as `shown` (a request URL as written, placeholders
    /// included, rather than the form that was parsed).
    fn shown_as(self, shown: String) -> UrlError {
        match self {
            UrlError::ForbiddenCharacter(_) => UrlError::ForbiddenCharacter(shown),
            UrlError::Invalid { reason, .. } => UrlError::Invalid { url: shown, reason },
            UrlError::NoScheme(_) => UrlError::NoScheme(shown),
            UrlError::NoHost(_) => UrlError::NoHost(shown),
            scheme @ (UrlError::Scheme(_) | UrlError::RequestScheme(_)) => scheme,
        }
    }
}

/// Parses and checks a base URL (`http://[user:password@]host[:port][/prefix]`).
///
/// Errors never repeat the URL's credentials: the message shows the URL with its userinfo
/// replaced by `***`.
pub fn parse_base_url(url: &str) -> Result<BaseUrl, UrlError> {
    let shown = redact_url(url);
    if has_forbidden_char(url) {
        return Err(UrlError::ForbiddenCharacter(shown));
    }
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| UrlError::Invalid {
            url: shown.clone(),
            reason: e.to_string(),
        })?;
    let tls = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        Some(s) => return Err(UrlError::Scheme(s.to_string())),
        None => return Err(UrlError::NoScheme(shown)),
    };
    let Some(auth) = uri.authority() else {
        return Err(UrlError::NoHost(shown));
    };
    let raw = auth.as_str();
    let (userinfo, hostport) = match raw.rsplit_once('@') {
        Some((ui, hp)) => {
            let (user, password) = ui.split_once(':').unwrap_or((ui, ""));
            (
                Some(Userinfo {
                    user: percent_decode(user),
                    password: percent_decode(password),
                }),
                hp,
            )
        }
        None => (None, raw),
    };
    let host = auth.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(UrlError::NoHost(shown));
    }
    Ok(BaseUrl {
        tls,
        host: host.to_string(),
        port: auth.port_u16().unwrap_or(if tls { 443 } else { 80 }),
        authority: hostport.to_string(),
        path: uri.path().trim_end_matches('/').to_string(),
        userinfo,
    })
}

/// Characters no URL of a probe may hold: they are either invalid in a URL or the mark of
/// markup pasted by mistake (`<`, `>`, quotes), and a space would split the request line.
fn has_forbidden_char(url: &str) -> bool {
    url.chars()
        .any(|c| c.is_control() || matches!(c, '<' | '>' | '"' | '`' | ' '))
}

/// Checks the URL of a request step: an absolute `http://` or `https://` URL, or a path (with
/// query) joined to the probe's target. `{{placeholders}}` may hold anything between their
/// braces (they are filled in per request and checked then); outside them, the characters
/// [`parse_base_url`] refuses are refused, and so is any other scheme (`file://`, `ftp://`).
pub fn check_request_url(url: &str) -> Result<(), UrlError> {
    let shown = redact_url(url);
    // Each placeholder stands for one plain character while the rest is checked.
    let mut plain = String::with_capacity(url.len());
    let mut rest = url;
    while let Some(open) = rest.find("{{") {
        plain.push_str(&rest[..open]);
        match rest[open + 2..].find("}}") {
            Some(close) => {
                plain.push('x');
                rest = &rest[open + 2 + close + 2..];
            }
            None => {
                // The unclosed `{{` is reported by the placeholder check.
                rest = "";
            }
        }
    }
    plain.push_str(rest);
    if has_forbidden_char(&plain) {
        return Err(UrlError::ForbiddenCharacter(shown));
    }
    match scheme_of(&plain) {
        None => Ok(()),
        Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => {
            // The message shows the URL as written, placeholders included.
            parse_base_url(&plain)
                .map(|_| ())
                .map_err(|e| e.shown_as(shown))
        }
        Some(s) => Err(UrlError::RequestScheme(s.to_string())),
    }
}

/// The scheme of a URL (`scheme:` with RFC 3986's scheme characters before the colon).
fn scheme_of(url: &str) -> Option<&str> {
    let (head, _) = url.split_once(':')?;
    let mut chars = head.chars();
    let first = chars.next()?;
    (first.is_ascii_alphabetic()
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
    .then_some(head)
}

/// The URL with any `user:password@` replaced by `***@`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://") else {
        return url.to_string();
    };
    let rest = &url[scheme_end + 3..];
    let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..auth_end].rfind('@') {
        Some(at) => format!("{}://***@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(hex, 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls() {
        let b = parse_base_url("https://api.example.test/v1/").unwrap();
        assert!(b.tls);
        assert_eq!(
            (b.host.as_str(), b.port, b.path.as_str()),
            ("api.example.test", 443, "/v1")
        );
        let b = parse_base_url("http://127.0.0.1:8080").unwrap();
        assert_eq!(
            (b.port, b.authority.as_str(), b.path.as_str()),
            (8080, "127.0.0.1:8080", "")
        );
        assert_eq!(
            parse_base_url("ftp://x").unwrap_err(),
            UrlError::Scheme("ftp".into())
        );
        assert!(parse_base_url("file:///etc/passwd").is_err());
        assert!(parse_base_url("/just/a/path").is_err());
        assert!(parse_base_url("http://127.0.0.1/<script>").is_err());
        assert!(parse_base_url("http://127.0.0.1/\"x").is_err());
    }

    /// Regression (issue 10.7): `file://`, `ftp://` and URLs with `<`, `>` or quotes passed
    /// validation when the probe had a target.
    #[test]
    fn step_urls_refuse_other_schemes_and_markup() {
        for bad in [
            "file:///etc/passwd",
            "ftp://127.0.0.1/x",
            "/search?q=<script>",
            "/a\"b",
            "/a b",
            "http://127.0.0.1/`x`",
            "javascript:alert(1)",
            "/x\r\nHost: evil",
        ] {
            assert!(check_request_url(bad).is_err(), "{bad} passed");
        }
        for good in [
            "/",
            "/orders/{{id}}?q={{ q }}",
            "http://127.0.0.1:8080/x",
            "https://h.example/{{seq}}",
            "/path?x=a:b",
            "/p/{{a b}}",
        ] {
            assert!(
                check_request_url(good).is_ok(),
                "{good}: {:?}",
                check_request_url(good)
            );
        }
    }

    /// Regression: URL credentials were sent in the Host header of flow steps.
    #[test]
    fn credentials_never_reach_the_authority() {
        let b = parse_base_url("http://user:s%40cret@127.0.0.1:8080/p").unwrap();
        assert_eq!(b.authority, "127.0.0.1:8080");
        assert_eq!(b.origin(), "http://127.0.0.1:8080");
        let ui = b.userinfo.clone().unwrap();
        assert_eq!((ui.user.as_str(), ui.password.as_str()), ("user", "s@cret"));
        assert!(!format!("{b:?}").contains("s@cret"));
        let e = parse_base_url("gopher://user:hunter2@127.0.0.1/").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(!format!("{e:?}").contains("hunter2"), "{e:?}");
        // A request URL is named as written, placeholders included.
        assert_eq!(
            check_request_url("http://:80/{{path}}").unwrap_err(),
            UrlError::NoHost("http://:80/{{path}}".into())
        );
        assert_eq!(
            redact_url("http://u:p@127.0.0.1:1/x?y=@"),
            "http://***@127.0.0.1:1/x?y=@"
        );
    }
}
