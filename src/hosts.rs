//! Host-name rules, the one matcher behind every host allow-list: the hosts the gateway serves
//! (`public_url`'s, the routes', `allowed_hosts`) and the hosts a return URL may name. A rule is
//! a host (`app.example.com`) or a domain with its subdomains (`.example.com`, matched on label
//! boundaries only, so `evilexample.com` is not inside it).

/// A list of host rules. Hosts are compared lower case, without port or trailing dot.
#[derive(Debug, Clone, Default)]
pub struct HostRules(Vec<String>);

impl HostRules {
    /// Rules from `host` or `.domain` strings.
    pub fn new<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> HostRules {
        let mut out: Vec<String> = Vec::new();
        for r in rules {
            let r = r.as_ref().trim().to_ascii_lowercase();
            if !r.is_empty() && !out.contains(&r) {
                out.push(r);
            }
        }
        HostRules(out)
    }

    /// Whether `host` (lower case, no port) is allowed by some rule.
    pub fn matches(&self, host: &str) -> bool {
        self.0.iter().any(|rule| match rule.strip_prefix('.') {
            Some(domain) => {
                host == domain
                    || host
                        .strip_suffix(domain)
                        .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1)
            }
            None => host == rule,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_domains_match_on_label_boundaries() {
        let r = HostRules::new(["App.Example.com", ".corp.example.com"]);
        assert!(r.matches("app.example.com"));
        assert!(r.matches("corp.example.com"));
        assert!(r.matches("wiki.corp.example.com"));
        assert!(!r.matches("evilcorp.example.com"));
        assert!(!r.matches("example.com"));
        assert!(!r.matches(".corp.example.com"));
        assert!(!HostRules::default().matches("app.example.com"));
    }
}
