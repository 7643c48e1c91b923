//! The return-URL validator: the one function that decides where the gateway may send a
//! browser after sign-in or sign-out (`rd`, `redirect_uri`). Everything else calls
//! [`ReturnUrls::validate`].
//!
//! Accepted: a path on the gateway's own origin (`/x?y#z`), or an absolute http(s) URL whose
//! host is the public URL's host or on the allow-list (`.example.com` matches `example.com` and
//! its subdomains on label boundaries only). Refused, falling back to `/`: `//` and `/\`
//! prefixes, backslashes anywhere, other schemes, user info, control characters, whitespace,
//! look-alike slashes and dots, and all of these once or twice percent-encoded.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, CONTROLS};
use url::Url;

use crate::hosts::HostRules;

/// Where a refused return URL goes.
pub const FALLBACK: &str = "/";

/// Longest return URL kept.
const MAX_LEN: usize = 4096;

/// Characters a browser or a server might fold into `/`, `\`, `.` or `@`.
const LOOKALIKES: &[char] = &[
    '\u{2044}', '\u{2215}', '\u{29F8}', '\u{FF0F}', '\u{FF3C}', '\u{3002}', '\u{FF0E}', '\u{FF61}',
    '\u{3031}', '\u{3035}', '\u{309D}', '\u{30FC}', '\u{FF70}', '\u{FF20}', '\u{FE6B}', '\u{2024}',
    '\u{FE52}',
];

/// Non-ASCII characters in an accepted path are percent-encoded, so the URL we send is exactly
/// the one we checked.
const NON_ASCII: &AsciiSet = &CONTROLS.add(b' ');

/// The validator, configured once from `public_url` and `allowed_redirect_hosts`.
#[derive(Debug, Clone)]
pub struct ReturnUrls {
    origin: Url,
    allowed: HostRules,
}

impl ReturnUrls {
    /// A validator for the gateway at `public_url` with these extra hosts (`host` exactly, or
    /// `.domain` for the domain and its subdomains).
    pub fn new(public_url: &Url, allowed_hosts: &[String]) -> ReturnUrls {
        ReturnUrls {
            origin: public_url.clone(),
            allowed: HostRules::new(allowed_hosts),
        }
    }

    /// `input` when it is a safe place to send the browser, normalised; otherwise `/`.
    pub fn validate(&self, input: &str) -> String {
        self.check(input).unwrap_or_else(|| FALLBACK.to_string())
    }

    /// Like [`validate`](Self::validate), but `None` for a refused URL.
    pub fn check(&self, input: &str) -> Option<String> {
        if input.is_empty() || input.len() > MAX_LEN {
            return None;
        }
        // Look at the value as given and once and twice decoded: a trick hidden behind
        // encoding is still a trick for whoever decodes it next.
        let once = decode(input)?;
        let twice = decode(&once)?;
        for form in [input, once.as_str(), twice.as_str()] {
            if form.chars().any(|c| {
                c.is_control() || c.is_whitespace() || c == '\\' || LOOKALIKES.contains(&c)
            }) {
                return None;
            }
            if form.starts_with("//") {
                return None;
            }
        }
        if input.starts_with('/') {
            return self.relative(input);
        }
        let lower = input.get(..8).unwrap_or(input).to_ascii_lowercase();
        if lower.starts_with("https://") || lower.starts_with("http://") {
            return self.absolute(input);
        }
        None
    }

    fn relative(&self, input: &str) -> Option<String> {
        let encoded = utf8_percent_encode(input, NON_ASCII).to_string();
        // Belt and braces: resolved against our origin, it must stay on our origin.
        let resolved = self.origin.join(&encoded).ok()?;
        if resolved.origin() != self.origin.origin() {
            return None;
        }
        Some(encoded)
    }

    fn absolute(&self, input: &str) -> Option<String> {
        let url = Url::parse(input).ok()?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        // The authority as written must be a plain host (and port): `@`, `%` or anything the
        // parser had to repair means someone is playing games.
        let after_scheme = &input[url.scheme().len() + 3..];
        let authority = after_scheme
            .split(['/', '?', '#'])
            .next()
            .unwrap_or_default();
        if authority.is_empty()
            || !authority
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        {
            return None;
        }
        let host = match url.host()? {
            url::Host::Domain(d) => d.to_ascii_lowercase(),
            // An IP address is allowed only when written on the allow-list verbatim.
            other => other.to_string(),
        };
        let ours = Some(host.as_str()) == self.origin.host_str()
            && url.port_or_known_default() == self.origin.port_or_known_default();
        if ours || self.allowed.matches(&host) {
            Some(url.to_string())
        } else {
            None
        }
    }
}

/// One percent-decoding, or `None` when it does not give UTF-8.
fn decode(s: &str) -> Option<String> {
    percent_decode_str(s)
        .decode_utf8()
        .ok()
        .map(|c| c.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v() -> ReturnUrls {
        ReturnUrls::new(
            &Url::parse("https://app.example.com").unwrap(),
            &[".example.com".into(), "partner.test".into()],
        )
    }

    #[test]
    fn safe_urls_pass_through() {
        let v = v();
        for (input, want) in [
            ("/", "/"),
            ("/dashboard?tab=1#top", "/dashboard?tab=1#top"),
            ("/a/b%2Fc", "/a/b%2Fc"),
            ("/文章/1", "/%E6%96%87%E7%AB%A0/1"),
            ("https://app.example.com/x", "https://app.example.com/x"),
            (
                "https://docs.example.com/p?q=1",
                "https://docs.example.com/p?q=1",
            ),
            ("https://example.com/", "https://example.com/"),
            (
                "HTTPS://Deep.Sub.Example.com/",
                "https://deep.sub.example.com/",
            ),
            ("http://partner.test/back", "http://partner.test/back"),
        ] {
            assert_eq!(v.validate(input), want, "{input}");
        }
    }

    #[test]
    fn label_boundaries_and_other_hosts_are_refused() {
        let v = v();
        for input in [
            "https://evilexample.com/",
            "https://example.com.evil.com/",
            "https://app.example.com@evil.com/",
            "https://evil.com/https://app.example.com",
            "https://sub.partner.test/",
            "ftp://app.example.com/",
            "javascript:alert(1)",
            "relative/path",
            "",
        ] {
            assert_eq!(v.validate(input), "/", "{input}");
        }
    }

    #[test]
    fn open_redirect_corpus_is_refused() {
        let v = v();
        let corpus = include_str!("../../tests/data/open_redirect.txt");
        let payloads: Vec<&str> = corpus
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        assert!(payloads.len() >= 100, "{} payloads", payloads.len());
        let origin = Url::parse("https://app.example.com").unwrap();
        for p in payloads {
            let out = v.validate(p);
            // Whatever comes back must keep the browser on an allowed host.
            let landed = origin.join(&out).unwrap();
            let host = landed.host_str().unwrap_or_default().to_string();
            assert!(
                matches!(landed.scheme(), "http" | "https")
                    && (host == "example.com" || host.ends_with(".example.com")),
                "{p:?} -> {out:?} lands on {landed}"
            );
            assert!(out == "/" || !out.starts_with("//"), "{p:?} -> {out:?}");
        }
    }
}
