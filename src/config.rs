//! Configuration: defaults → TOML file → environment (`CLOUDBASE_GATEWAY_*`) → command-line
//! flags, validated once into [`Config`]. Every problem is collected and reported together,
//! naming the key, its environment variable and where the bad value came from. Unknown keys
//! are errors. Secrets are [`Secret`]s, so `Debug` and `check-config` never show them, and each
//! secret key has a `*_file` variant that reads the value from a file.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use url::Url;

use crate::secret::Secret;

/// Prefix of every environment variable the gateway reads.
pub const ENV_PREFIX: &str = "CLOUDBASE_GATEWAY_";

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// The URL browsers use to reach the gateway; callbacks are built from it.
    pub public_url: Url,
    /// How to reach CloudBase.
    pub cloudbase: CloudBaseSettings,
    /// Logging.
    pub log: LogSettings,
}

/// Where and how the gateway talks to CloudBase.
#[derive(Debug, Clone)]
pub struct CloudBaseSettings {
    /// The CloudBase environment id.
    pub env_id: String,
    /// The environment's region, e.g. `ap-shanghai`.
    pub region: String,
    /// OAuth client id; defaults to the env id, as the SDK does.
    pub client_id: String,
    /// OAuth client secret, used for Basic authentication where the SDK uses it.
    pub client_secret: Option<Secret>,
    /// Scheme, host and port of the auth API.
    pub api_origin: Url,
    /// Deadline for one CloudBase call, connect to last byte.
    pub timeout: Duration,
}

/// Log output.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter directive such as `info` or `cloudbase_gateway=debug,info`.
    pub level: String,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

impl Config {
    /// The configuration as TOML with every secret replaced by `[redacted]`, in the same flat
    /// keys the file takes, so the output (secrets aside) can be used as a configuration file.
    pub fn redacted_toml(&self) -> String {
        let mut t = toml::Table::new();
        let mut put = |k: &str, v: String| {
            t.insert(k.to_string(), toml::Value::String(v));
        };
        put("listen", self.listen.to_string());
        put(
            "public_url",
            self.public_url.as_str().trim_end_matches('/').to_string(),
        );
        put("env_id", self.cloudbase.env_id.clone());
        put("region", self.cloudbase.region.clone());
        put("client_id", self.cloudbase.client_id.clone());
        if let Some(secret) = &self.cloudbase.client_secret {
            put("client_secret", secret.to_string());
        }
        put(
            "api_origin",
            self.cloudbase
                .api_origin
                .as_str()
                .trim_end_matches('/')
                .to_string(),
        );
        put(
            "cloudbase_timeout",
            humantime::format_duration(self.cloudbase.timeout).to_string(),
        );
        put(
            "log_format",
            match self.log.format {
                LogFormat::Text => "text",
                LogFormat::Json => "json",
            }
            .to_string(),
        );
        put("log_level", self.log.level.clone());
        t.to_string()
    }
}

/// What kind of value a key takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Str,
    Duration,
}

struct KeySpec {
    key: &'static str,
    kind: Kind,
    secret: bool,
}

const KEYS: &[KeySpec] = &[
    KeySpec {
        key: "listen",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "public_url",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "env_id",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "region",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "client_id",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "client_secret",
        kind: Kind::Str,
        secret: true,
    },
    KeySpec {
        key: "api_origin",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "cloudbase_timeout",
        kind: Kind::Duration,
        secret: false,
    },
    KeySpec {
        key: "log_format",
        kind: Kind::Str,
        secret: false,
    },
    KeySpec {
        key: "log_level",
        kind: Kind::Str,
        secret: false,
    },
];

/// Where a value came from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// The built-in default.
    Default,
    /// The TOML file.
    File(PathBuf),
    /// An environment variable.
    Env,
    /// A command-line flag.
    Flag,
}

impl Source {
    /// Precedence: a higher rank overrides a lower one.
    fn rank(&self) -> u8 {
        match self {
            Source::Default => 0,
            Source::File(_) => 1,
            Source::Env => 2,
            Source::Flag => 3,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env => f.write_str("environment"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// One problem with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key, e.g. `env_id`; empty for problems with the file as a whole.
    pub key: String,
    /// Where the offending value came from, when there was one.
    pub source: Option<Source>,
    /// What is wrong, never including a secret value.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            return f.write_str(&self.message);
        }
        write!(
            f,
            "{} ({}{})",
            self.key,
            ENV_PREFIX,
            self.key.to_ascii_uppercase()
        )?;
        if let Some(source) = &self.source {
            write!(f, " from {source}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Every problem found while loading the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigProblem>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} configuration problem(s):", self.0.len())?;
        for p in &self.0 {
            writeln!(f, "  - {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    /// Whether some problem concerns `key`.
    pub fn mentions(&self, key: &str) -> bool {
        self.0.iter().any(|p| p.key == key)
    }
}

#[derive(Debug, Clone)]
struct RawValue {
    value: String,
    source: Source,
}

struct Collector {
    values: BTreeMap<String, RawValue>,
    problems: Vec<ConfigProblem>,
}

impl Collector {
    fn problem(&mut self, key: &str, source: Option<Source>, message: impl Into<String>) {
        self.problems.push(ConfigProblem {
            key: key.to_string(),
            source,
            message: message.into(),
        });
    }

    /// Records `value` for `key` when the key is known (a later source overrides an earlier
    /// one), or a problem when it is not.
    fn set(&mut self, key: &str, value: String, source: Source) {
        if known_key(key) {
            // `x` and `x_file` are one setting: a later source replaces either spelling from an
            // earlier one (both in the same source is reported by `secret`).
            if let Some(sibling) = secret_sibling(key) {
                if self
                    .values
                    .get(&sibling)
                    .is_some_and(|v| v.source.rank() < source.rank())
                {
                    self.values.remove(&sibling);
                }
            }
            self.values
                .insert(key.to_string(), RawValue { value, source });
        } else {
            let message = match &source {
                Source::Env => format!(
                    "unknown environment variable {ENV_PREFIX}{}",
                    key.to_ascii_uppercase()
                ),
                _ => "unknown key".to_string(),
            };
            self.problem(key, Some(source), message);
        }
    }

    fn take(&mut self, key: &str) -> Option<RawValue> {
        self.values.remove(key)
    }
}

/// For a secret key, its `_file` spelling, and the other way round.
fn secret_sibling(key: &str) -> Option<String> {
    KEYS.iter().filter(|k| k.secret).find_map(|k| {
        if key == k.key {
            Some(format!("{}_file", k.key))
        } else if key.strip_suffix("_file") == Some(k.key) {
            Some(k.key.to_string())
        } else {
            None
        }
    })
}

fn known_key(key: &str) -> bool {
    KEYS.iter()
        .any(|k| k.key == key || (k.secret && key.strip_suffix("_file") == Some(k.key)))
}

/// Loads and validates the configuration.
///
/// `env` is the process environment (only `CLOUDBASE_GATEWAY_*` variables are read); `flags`
/// are `(key, value)` pairs from the command line. Returns every problem at once when any
/// value is missing, unknown or invalid.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: impl IntoIterator<Item = (&'static str, String)>,
) -> Result<Config, ConfigErrors> {
    let mut c = Collector {
        values: BTreeMap::new(),
        problems: Vec::new(),
    };

    if let Some(path) = file {
        read_file(&mut c, path);
    }
    for (name, value) in env {
        if let Some(rest) = name.strip_prefix(ENV_PREFIX) {
            c.set(&rest.to_ascii_lowercase(), value, Source::Env);
        }
    }
    for (key, value) in flags {
        c.set(key, value, Source::Flag);
    }

    validate(c)
}

fn read_file(c: &mut Collector, path: &Path) {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) => {
            c.problem(
                "",
                None,
                format!("cannot read {}: {}", path.display(), e.kind()),
            );
            return;
        }
    };
    let table: toml::Table = match text.parse() {
        Ok(t) => t,
        Err(e) => {
            // Only the message and position: the parser's snippet could quote a secret.
            let at = e
                .span()
                .map(|s| format!(" at line {}", text[..s.start].lines().count().max(1)))
                .unwrap_or_default();
            c.problem(
                "",
                None,
                format!("{} is not valid TOML{at}: {}", path.display(), e.message()),
            );
            return;
        }
    };
    let source = Source::File(path.to_path_buf());
    for (key, value) in table {
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            _ if !known_key(&key) => {
                c.problem(&key, Some(source.clone()), "unknown key");
                continue;
            }
            _ => {
                c.problem(&key, Some(source.clone()), "expected a string or a number");
                continue;
            }
        };
        c.set(&key, text, source.clone());
    }
}

fn validate(mut c: Collector) -> Result<Config, ConfigErrors> {
    let listen = match c.take("listen") {
        None => Some("127.0.0.1:4180".parse().expect("default listen address")),
        Some(v) => parse_or(&mut c, "listen", v, |s| {
            s.parse::<SocketAddr>()
                .map_err(|_| "expected an address such as 127.0.0.1:4180 or 0.0.0.0:4180".into())
        }),
    };

    let public_url = match c.take("public_url") {
        None => {
            c.problem("public_url", None, "is required: the URL browsers use to reach the gateway, e.g. https://app.example.com");
            None
        }
        Some(v) => parse_or(&mut c, "public_url", v, |s| {
            let url = http_url(s)?;
            if url.query().is_some() || url.fragment().is_some() {
                return Err("must not have a query or fragment".into());
            }
            if url.path() != "/" {
                return Err("must not have a path: the gateway owns the whole origin".into());
            }
            Ok(url)
        }),
    };

    let env_id = match c.take("env_id") {
        None => {
            c.problem("env_id", None, "is required: the CloudBase environment id");
            None
        }
        Some(v) => parse_or(&mut c, "env_id", v, |s| ident(s, 64).map(str::to_string)),
    };

    let region = match c.take("region") {
        None => Some("ap-shanghai".to_string()),
        Some(v) => parse_or(&mut c, "region", v, |s| ident(s, 32).map(str::to_string)),
    };

    let client_id = match c.take("client_id") {
        None => env_id.clone(),
        Some(v) => parse_or(&mut c, "client_id", v, |s| {
            ident(s, 128).map(str::to_string)
        }),
    };

    let client_secret = secret(&mut c, "client_secret");

    let api_origin = match c.take("api_origin") {
        None => match (&env_id, &region) {
            (Some(env), Some(region)) => Url::parse(&format!(
                "https://{env}.{region}.tcb-api.tencentcloudapi.com"
            ))
            .ok(),
            _ => None,
        },
        Some(v) => parse_or(&mut c, "api_origin", v, |s| {
            let url = http_url(s)?;
            if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
                return Err("must be an origin only (scheme, host, port), e.g. https://env.ap-shanghai.tcb-api.tencentcloudapi.com".into());
            }
            Ok(url)
        }),
    };

    let timeout = duration(
        &mut c,
        "cloudbase_timeout",
        Duration::from_secs(10),
        Duration::from_secs(300),
    );

    let format = match c.take("log_format") {
        None => Some(LogFormat::Text),
        Some(v) => parse_or(&mut c, "log_format", v, |s| match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("expected text or json".into()),
        }),
    };

    let level = match c.take("log_level") {
        None => Some("info".to_string()),
        Some(v) => {
            parse_or(&mut c, "log_level", v, |s| {
                tracing_subscriber::EnvFilter::try_new(s)
                .map(|_| s.to_string())
                .map_err(|_| "expected a tracing filter such as info, debug or cloudbase_gateway=debug,warn".into())
            })
        }
    };

    debug_assert!(c.values.is_empty(), "every known key is validated");

    match (
        listen, public_url, env_id, region, client_id, api_origin, timeout, format, level,
    ) {
        (
            Some(listen),
            Some(public_url),
            Some(env_id),
            Some(region),
            Some(client_id),
            Some(api_origin),
            Some(timeout),
            Some(format),
            Some(level),
        ) if c.problems.is_empty() => Ok(Config {
            listen,
            public_url,
            cloudbase: CloudBaseSettings {
                env_id,
                region,
                client_id,
                client_secret,
                api_origin,
                timeout,
            },
            log: LogSettings { format, level },
        }),
        _ => Err(ConfigErrors(c.problems)),
    }
}

fn parse_or<T>(
    c: &mut Collector,
    key: &str,
    raw: RawValue,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    match parse(raw.value.trim()) {
        Ok(v) => Some(v),
        Err(message) => {
            c.problem(key, Some(raw.source), message);
            None
        }
    }
}

fn http_url(s: &str) -> Result<Url, String> {
    let url = Url::parse(s).map_err(|_| "expected an absolute http(s) URL".to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err("expected an absolute http(s) URL".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain a user name or password".into());
    }
    Ok(url)
}

fn ident(s: &str, max: usize) -> Result<&str, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if s.len() > max
        || !s
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
    {
        return Err(format!("expected up to {max} letters, digits, '-' or '_'"));
    }
    Ok(s)
}

fn duration(c: &mut Collector, key: &str, default: Duration, max: Duration) -> Option<Duration> {
    debug_assert!(KEYS
        .iter()
        .any(|k| k.key == key && k.kind == Kind::Duration));
    match c.take(key) {
        None => Some(default),
        Some(v) => parse_or(c, key, v, |s| {
            // A bare number means seconds, as in most gateways' configs.
            let d = match s.parse::<u64>() {
                Ok(secs) => Duration::from_secs(secs),
                Err(_) => humantime::parse_duration(s)
                    .map_err(|_| "expected a duration such as 10s, 500ms or 2m".to_string())?,
            };
            if d.is_zero() || d > max {
                return Err(format!(
                    "must be more than 0 and at most {}",
                    humantime::format_duration(max)
                ));
            }
            Ok(d)
        }),
    }
}

/// Reads a secret from `key` or from the file named by `key_file`; both at once is an error.
fn secret(c: &mut Collector, key: &str) -> Option<Secret> {
    let file_key = format!("{key}_file");
    match (c.take(key), c.take(&file_key)) {
        (None, None) => None,
        (Some(v), None) => {
            if v.value.is_empty() {
                c.problem(
                    key,
                    Some(v.source),
                    "must not be empty (leave it unset instead)",
                );
                None
            } else if v.value == "[redacted]" {
                c.problem(
                    key,
                    Some(v.source),
                    "is the placeholder check-config prints: put the real secret here, or use the _file variant",
                );
                None
            } else {
                Some(Secret::new(v.value))
            }
        }
        (None, Some(f)) => match std::fs::read_to_string(f.value.trim()) {
            Ok(text) => {
                let text = text.trim_end_matches(['\n', '\r']);
                if text.is_empty() {
                    c.problem(&file_key, Some(f.source), "the file is empty");
                    None
                } else {
                    Some(Secret::new(text))
                }
            }
            Err(e) => {
                c.problem(
                    &file_key,
                    Some(f.source),
                    format!("cannot read {}: {}", f.value.trim(), e.kind()),
                );
                None
            }
        },
        (Some(v), Some(_)) => {
            c.problem(
                key,
                Some(v.source),
                format!("set either {key} or {file_key}, not both"),
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn minimal() -> Vec<(&'static str, String)> {
        vec![
            ("env_id", "test-env".into()),
            ("public_url", "https://app.example.com".into()),
        ]
    }

    #[test]
    fn defaults_fill_everything_but_the_required_keys() {
        let cfg = load(None, env(&[]), minimal()).unwrap();
        assert_eq!(cfg.listen.to_string(), "127.0.0.1:4180");
        assert_eq!(cfg.cloudbase.region, "ap-shanghai");
        assert_eq!(cfg.cloudbase.client_id, "test-env");
        assert_eq!(
            cfg.cloudbase.api_origin.as_str(),
            "https://test-env.ap-shanghai.tcb-api.tencentcloudapi.com/"
        );
        assert_eq!(cfg.cloudbase.timeout, Duration::from_secs(10));
        assert_eq!(cfg.log.format, LogFormat::Text);
        assert!(cfg.cloudbase.client_secret.is_none());
    }

    #[test]
    fn missing_required_keys_are_reported_together() {
        let err = load(None, env(&[]), []).unwrap_err();
        assert!(err.mentions("env_id"));
        assert!(err.mentions("public_url"));
        assert_eq!(err.0.len(), 2, "{err}");
        let text = err.to_string();
        assert!(text.contains("CLOUDBASE_GATEWAY_ENV_ID"), "{text}");
    }

    #[test]
    fn precedence_is_file_then_env_then_flags() {
        let f = file("env_id = \"from-file\"\nregion = \"ap-guangzhou\"\nclient_id = \"file-client\"\npublic_url = \"https://a.example.com\"\n");
        let cfg = load(
            Some(f.path()),
            env(&[
                ("CLOUDBASE_GATEWAY_CLIENT_ID", "env-client"),
                ("CLOUDBASE_GATEWAY_ENV_ID", "from-env"),
            ]),
            [("env_id", "from-flag".to_string())],
        )
        .unwrap();
        assert_eq!(cfg.cloudbase.env_id, "from-flag");
        assert_eq!(cfg.cloudbase.client_id, "env-client");
        assert_eq!(cfg.cloudbase.region, "ap-guangzhou");
        assert_eq!(
            cfg.cloudbase.api_origin.host_str(),
            Some("from-flag.ap-guangzhou.tcb-api.tencentcloudapi.com")
        );
    }

    #[test]
    fn unknown_keys_and_env_vars_are_errors() {
        let f = file("env_id = \"e\"\npublic_url = \"https://a.example.com\"\nclient_secert = \"x\"\n[routes]\nx = 1\n");
        let err = load(
            Some(f.path()),
            env(&[("CLOUDBASE_GATEWAY_LISTN", "x"), ("OTHER_VAR", "ignored")]),
            [],
        )
        .unwrap_err();
        assert!(err.mentions("client_secert"), "{err}");
        assert!(err.mentions("routes"), "{err}");
        assert!(err.mentions("listn"), "{err}");
        assert!(
            err.to_string()
                .contains("unknown environment variable CLOUDBASE_GATEWAY_LISTN"),
            "{err}"
        );
        assert_eq!(err.0.len(), 3, "{err}");
    }

    #[test]
    fn every_invalid_value_is_reported_with_its_source() {
        let f = file(concat!(
            "listen = \"nowhere\"\n",
            "public_url = \"ftp://x\"\n",
            "env_id = \"bad env\"\n",
            "region = \"\"\n",
            "api_origin = \"https://x.example.com/path\"\n",
            "cloudbase_timeout = \"soon\"\n",
            "log_format = \"xml\"\n",
            "log_level = \"[[[\"\n",
        ));
        let err = load(
            Some(f.path()),
            env(&[("CLOUDBASE_GATEWAY_CLIENT_ID", "a b")]),
            [],
        )
        .unwrap_err();
        for key in [
            "listen",
            "public_url",
            "env_id",
            "region",
            "api_origin",
            "cloudbase_timeout",
            "log_format",
            "log_level",
            "client_id",
        ] {
            assert!(err.mentions(key), "{key} missing from {err}");
        }
        assert_eq!(err.0.len(), 9, "{err}");
        let client = err.0.iter().find(|p| p.key == "client_id").unwrap();
        assert_eq!(client.source, Some(Source::Env));
        let listen = err.0.iter().find(|p| p.key == "listen").unwrap();
        assert!(matches!(listen.source, Some(Source::File(_))));
    }

    #[test]
    fn public_url_with_path_query_or_userinfo_is_refused() {
        for bad in [
            "https://a.example.com/app",
            "https://a.example.com/?x=1",
            "https://u:p@a.example.com",
            "a.example.com",
        ] {
            let err = load(
                None,
                env(&[]),
                [("env_id", "e".to_string()), ("public_url", bad.to_string())],
            )
            .unwrap_err();
            assert!(err.mentions("public_url"), "{bad}: {err}");
        }
    }

    #[test]
    fn timeouts_accept_humantime_and_seconds_within_bounds() {
        let mut flags = minimal();
        flags.push(("cloudbase_timeout", "1500ms".into()));
        assert_eq!(
            load(None, env(&[]), flags).unwrap().cloudbase.timeout,
            Duration::from_millis(1500)
        );
        let f =
            file("env_id = \"e\"\npublic_url = \"https://a.example.com\"\ncloudbase_timeout = 3\n");
        assert_eq!(
            load(Some(f.path()), env(&[]), [])
                .unwrap()
                .cloudbase
                .timeout,
            Duration::from_secs(3)
        );
        for bad in ["0", "0s", "1h"] {
            let mut flags = minimal();
            flags.push(("cloudbase_timeout", bad.into()));
            assert!(
                load(None, env(&[]), flags)
                    .unwrap_err()
                    .mentions("cloudbase_timeout"),
                "{bad}"
            );
        }
    }

    #[test]
    fn secrets_come_from_value_or_file_and_are_redacted() {
        let secret_file = file("s3cr3t-value\n");
        let cfg = load(
            None,
            env(&[(
                "CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE",
                secret_file.path().to_str().unwrap(),
            )]),
            minimal(),
        )
        .unwrap();
        assert_eq!(
            cfg.cloudbase.client_secret.as_ref().unwrap().expose(),
            "s3cr3t-value"
        );
        assert!(!format!("{cfg:?}").contains("s3cr3t"));
        let shown = cfg.redacted_toml();
        assert!(!shown.contains("s3cr3t"), "{shown}");
        assert!(shown.contains("client_secret = \"[redacted]\""), "{shown}");

        // A later source replaces the other spelling from an earlier source.
        let f = file("env_id = \"e\"\npublic_url = \"https://a.example.com\"\nclient_secret = \"from-file\"\n");
        let cfg = load(
            Some(f.path()),
            env(&[(
                "CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE",
                secret_file.path().to_str().unwrap(),
            )]),
            [],
        )
        .unwrap();
        assert_eq!(
            cfg.cloudbase.client_secret.unwrap().expose(),
            "s3cr3t-value"
        );

        let placeholder = load(
            None,
            env(&[("CLOUDBASE_GATEWAY_CLIENT_SECRET", "[redacted]")]),
            minimal(),
        )
        .unwrap_err();
        assert!(placeholder.mentions("client_secret"), "{placeholder}");

        let both = load(
            None,
            env(&[
                ("CLOUDBASE_GATEWAY_CLIENT_SECRET", "a"),
                ("CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE", "/x"),
            ]),
            minimal(),
        )
        .unwrap_err();
        assert!(both.mentions("client_secret"), "{both}");

        let missing = load(
            None,
            env(&[(
                "CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE",
                "/nonexistent/secret",
            )]),
            minimal(),
        )
        .unwrap_err();
        assert!(missing.mentions("client_secret_file"), "{missing}");

        let empty_file = file("\n");
        let empty = load(
            None,
            env(&[(
                "CLOUDBASE_GATEWAY_CLIENT_SECRET_FILE",
                empty_file.path().to_str().unwrap(),
            )]),
            minimal(),
        )
        .unwrap_err();
        assert!(empty.mentions("client_secret_file"), "{empty}");

        let empty_value = load(
            None,
            env(&[("CLOUDBASE_GATEWAY_CLIENT_SECRET", "")]),
            minimal(),
        )
        .unwrap_err();
        assert!(empty_value.mentions("client_secret"), "{empty_value}");
    }

    #[test]
    fn check_config_output_loads_back_to_the_same_configuration() {
        let mut flags = minimal();
        flags.push(("cloudbase_timeout", "1500ms".into()));
        flags.push(("log_format", "json".into()));
        let cfg = load(
            None,
            env(&[("CLOUDBASE_GATEWAY_REGION", "ap-beijing")]),
            flags,
        )
        .unwrap();
        let f = file(&cfg.redacted_toml());
        let again = load(Some(f.path()), env(&[]), []).unwrap();
        assert_eq!(again.redacted_toml(), cfg.redacted_toml());
        assert_eq!(again.cloudbase.timeout, Duration::from_millis(1500));
        assert_eq!(again.cloudbase.region, "ap-beijing");
        assert_eq!(again.log.format, LogFormat::Json);
    }

    #[test]
    fn broken_toml_is_reported_without_quoting_the_file() {
        let f = file("env_id = \"e\"\nclient_secret = \"topsecret\n");
        let err = load(Some(f.path()), env(&[]), []).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("not valid TOML at line"), "{text}");
        assert!(!text.contains("topsecret"), "{text}");
        let missing = load(Some(Path::new("/nonexistent/gateway.toml")), env(&[]), []).unwrap_err();
        assert!(
            missing
                .to_string()
                .contains("cannot read /nonexistent/gateway.toml"),
            "{missing}"
        );
    }

    #[test]
    fn non_scalar_values_for_known_keys_are_refused() {
        let f = file("env_id = [\"a\"]\npublic_url = \"https://a.example.com\"\n");
        let err = load(Some(f.path()), env(&[]), []).unwrap_err();
        assert!(err.mentions("env_id"));
        assert!(err.to_string().contains("expected a string"), "{err}");
    }

    #[test]
    fn example_config_is_valid_and_lists_every_key() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("gateway.example.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        for k in KEYS {
            assert!(
                text.contains(&format!("{} =", k.key)),
                "{} missing from the example",
                k.key
            );
            assert!(
                text.contains(&format!("{ENV_PREFIX}{}", k.key.to_ascii_uppercase())),
                "env name of {} missing",
                k.key
            );
        }
        load(Some(&path), env(&[]), []).unwrap();
    }
}
