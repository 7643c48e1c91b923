//! The Redis connection: one per process, shared by every store, for a standalone server (a
//! connection manager that reconnects by itself), a master found through sentinels (found
//! again after a failover), or a cluster (MOVED/ASK followed by the cluster client). Every
//! operation has the `redis_timeout` deadline and is counted in the metrics by name; a
//! failure is a [`StoreError`] naming the operation, never the library's text (it can quote
//! arguments).

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, Value};
use sha2::Digest;

use super::StoreError;
use crate::config::{RedisSettings, RedisTopology, RedisUrl};
use crate::keyring::Keys;
use crate::metrics::Metrics;

/// A live connection of one topology.
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

/// The shared Redis connection, its key prefix and naming key.
pub struct Redis {
    settings: RedisSettings,
    conn: tokio::sync::RwLock<Option<Conn>>,
    /// Serialises (re)connecting, so a burst of requests after an outage makes one attempt.
    connecting: tokio::sync::Mutex<()>,
    /// When the last attempt failed: requests that queued behind it fail with it.
    failed_at: parking_lot::Mutex<Option<Instant>>,
    names: Keys,
    metrics: Arc<Metrics>,
    /// `redis_ca_file`, read once at start (never on a worker, at a reconnect).
    ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redis({})", self.settings.location())
    }
}

/// Whether an error means the connection should be made again: the server went away, or
/// (after a sentinel failover) the one we talk to is a replica now.
fn reconnect_after(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || e.is_timeout()
        || e.code() == Some("READONLY")
        || matches!(
            e.kind(),
            redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
        )
}

impl Redis {
    /// A connection for `settings` (made on first use, so the gateway starts while Redis is
    /// down and `/ready` says so). `names` keys the hashes that name records.
    pub fn new(settings: RedisSettings, names: Keys, metrics: Arc<Metrics>) -> Redis {
        let ca = settings.ca_file.as_ref().and_then(|path| match std::fs::read(path) {
            Ok(pem) => Some(pem),
            Err(e) => {
                tracing::warn!(kind = ?e.kind(), "redis_ca_file cannot be read; using the system roots");
                None
            }
        });
        Redis {
            ca,
            settings,
            conn: tokio::sync::RwLock::new(None),
            connecting: tokio::sync::Mutex::new(()),
            failed_at: parking_lot::Mutex::new(None),
            names,
            metrics,
        }
    }

    /// The key prefix (`redis_key_prefix`).
    pub fn prefix(&self) -> &str {
        &self.settings.key_prefix
    }

    /// The settings' deadline for one operation.
    pub fn timeout(&self) -> Duration {
        self.settings.timeout
    }

    /// `prefix + kind + ":" + hex(HMAC(name))`: the key of a record named by something that
    /// must not appear in Redis (a uid, a contact, a flow id). Named under the oldest
    /// `cookie_secret`, so adding a new secret at the front (a rotation) keeps every name.
    pub fn key(&self, kind: &str, name: &[u8]) -> String {
        let tags = self.names.sign_each(name);
        let tag = tags.last().copied().unwrap_or_default();
        format!(
            "{}{kind}:{}",
            self.settings.key_prefix,
            hex::encode(&tag[..20])
        )
    }

    /// The names `name` had under every `cookie_secret`, the current one ([`Redis::key`])
    /// first: what was written before the oldest secret was retired.
    pub fn keys(&self, kind: &str, name: &[u8]) -> Vec<String> {
        let mut tags = self.names.sign_each(name);
        tags.reverse();
        tags.iter()
            .map(|t| {
                format!(
                    "{}{kind}:{}",
                    self.settings.key_prefix,
                    hex::encode(&t[..20])
                )
            })
            .collect()
    }

    /// A keyed hash of `name` (for values compared inside scripts, such as a browser binding),
    /// under the oldest `cookie_secret` as [`Redis::key`].
    pub fn tag(&self, name: &[u8]) -> Vec<u8> {
        let tags = self.names.sign_each(&sha2::Sha256::digest(name));
        tags.last().copied().unwrap_or_default()[..16].to_vec()
    }

    /// The connection info for `url`, with `redis_username` / `redis_password` applied unless
    /// this is a sentinel (whose only credential is `redis_sentinel_password`).
    fn connection_info(
        &self,
        url: &RedisUrl,
        db: Option<i64>,
    ) -> Result<redis::ConnectionInfo, StoreError> {
        self.info_for(url, db, true)
    }

    fn info_for(
        &self,
        url: &RedisUrl,
        db: Option<i64>,
        data_node: bool,
    ) -> Result<redis::ConnectionInfo, StoreError> {
        use redis::IntoConnectionInfo;
        let mut text = url.0.as_str().to_string();
        if self.settings.insecure_skip_tls_verify && url.0.scheme() == "rediss" {
            text.push_str("#insecure");
        }
        let info = text
            .as_str()
            .into_connection_info()
            .map_err(|_| StoreError("redis url".into()))?;
        let mut redis_info = info.redis_settings().clone();
        if data_node {
            if let Some(u) = &self.settings.username {
                redis_info = redis_info.set_username(u);
            }
            if let Some(p) = &self.settings.password {
                redis_info = redis_info.set_password(p.expose());
            }
        }
        if let Some(db) = db {
            redis_info = redis_info.set_db(db);
        }
        Ok(info.set_redis_settings(redis_info))
    }

    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: None,
            root_cert: self.ca.clone(),
        }
    }

    fn client(&self, info: redis::ConnectionInfo, tls: bool) -> Result<redis::Client, StoreError> {
        let client = if tls && self.ca.is_some() {
            redis::Client::build_with_tls(info, self.certificates())
        } else {
            redis::Client::open(info)
        };
        client.map_err(|_| StoreError("redis client".into()))
    }

    fn manager_config(&self) -> ConnectionManagerConfig {
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.settings.timeout))
            .set_response_timeout(Some(self.settings.timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500))
    }

    async fn connect(&self) -> Result<Conn, StoreError> {
        let failed = |what: &str| StoreError(format!("redis connect ({what})"));
        match &self.settings.topology {
            RedisTopology::Standalone(url) => {
                let client =
                    self.client(self.connection_info(url, None)?, url.0.scheme() == "rediss")?;
                let m = ConnectionManager::new_with_config(client, self.manager_config())
                    .await
                    .map_err(|_| failed("standalone"))?;
                Ok(Conn::Single(m))
            }
            RedisTopology::Sentinel { .. } => {
                let client = self.sentinel_master().await?;
                let m = ConnectionManager::new_with_config(client, self.manager_config())
                    .await
                    .map_err(|_| failed("sentinel master"))?;
                Ok(Conn::Single(m))
            }
            RedisTopology::Cluster(urls) => {
                let mut infos = Vec::new();
                for u in urls {
                    infos.push(self.connection_info(u, None)?);
                }
                let tls = urls.iter().any(|u| u.0.scheme() == "rediss");
                let mut b = redis::cluster::ClusterClient::builder(infos)
                    .connection_timeout(self.settings.timeout)
                    .response_timeout(self.settings.timeout)
                    .retries(2);
                if tls && self.ca.is_some() {
                    b = b.certs(self.certificates());
                }
                let client = b.build().map_err(|_| failed("cluster"))?;
                let c = client
                    .get_async_connection()
                    .await
                    .map_err(|_| failed("cluster"))?;
                Ok(Conn::Cluster(c))
            }
        }
    }

    /// A client for the master the sentinels name now, checked with `ROLE` (a master just
    /// demoted still answers for a moment).
    ///
    /// Fails when no sentinel names a master that says it is one.
    async fn sentinel_master(&self) -> Result<redis::Client, StoreError> {
        let RedisTopology::Sentinel {
            master,
            sentinels,
            password,
            db,
            tls,
            master_url,
        } = &self.settings.topology
        else {
            return Err(StoreError("not a sentinel topology".into()));
        };
        // Ask each sentinel in turn for the master, as sentinel clients do.
        for s in sentinels {
            let Ok(mut info) = self.info_for(s, Some(0), false) else {
                continue;
            };
            if let Some(p) = password {
                let rs = info.redis_settings().clone().set_password(p.expose());
                info = info.set_redis_settings(rs);
            }
            let Ok(sc) = self.client(info, s.0.scheme() == "rediss") else {
                continue;
            };
            let Ok(Ok(mut c)) =
                tokio::time::timeout(self.settings.timeout, sc.get_multiplexed_async_connection())
                    .await
            else {
                continue;
            };
            let answer: Result<Result<Vec<String>, _>, _> = tokio::time::timeout(
                self.settings.timeout,
                redis::cmd("SENTINEL")
                    .arg("get-master-addr-by-name")
                    .arg(master)
                    .query_async(&mut c),
            )
            .await;
            let Ok(Ok(addr)) = answer else { continue };
            let [host, port] = addr.as_slice() else {
                continue;
            };
            let Ok(port) = port.parse::<u16>() else {
                continue;
            };
            let scheme = if *tls { "rediss" } else { "redis" };
            let host = if host.contains(':') {
                format!("[{host}]")
            } else {
                host.clone()
            };
            let Ok(mut url) = url::Url::parse(&format!("{scheme}://{host}:{port}/{db}")) else {
                continue;
            };
            // The master's credentials as redis_connection_url gives them (the redis_username
            // and redis_password keys override them).
            if let Some(m) = master_url {
                let _ = url.set_username(m.0.username());
                let _ = url.set_password(m.0.password());
            }
            let Ok(client) = self
                .connection_info(&RedisUrl(url), Some(*db))
                .and_then(|info| self.client(info, *tls))
            else {
                continue;
            };
            let Ok(Ok(mut check)) = tokio::time::timeout(
                self.settings.timeout,
                client.get_multiplexed_async_connection(),
            )
            .await
            else {
                continue;
            };
            let role: Result<Result<Vec<Value>, _>, _> = tokio::time::timeout(
                self.settings.timeout,
                redis::cmd("ROLE").query_async(&mut check),
            )
            .await;
            if matches!(role, Ok(Ok(v)) if matches!(v.first(), Some(Value::BulkString(b)) if b == b"master"))
            {
                return Ok(client);
            }
        }
        Err(StoreError("redis connect (sentinel)".into()))
    }

    /// A client for a dedicated publish/subscribe connection: the server itself, the
    /// sentinels' current master, or a cluster's first reachable node (cluster nodes pass
    /// published messages to each other).
    ///
    /// Fails when none can be reached.
    pub async fn pubsub_client(&self) -> Result<redis::Client, StoreError> {
        match &self.settings.topology {
            RedisTopology::Standalone(url) => {
                self.client(self.connection_info(url, None)?, url.0.scheme() == "rediss")
            }
            RedisTopology::Sentinel { .. } => self.sentinel_master().await,
            RedisTopology::Cluster(urls) => {
                for u in urls {
                    let Ok(client) = self
                        .connection_info(u, None)
                        .and_then(|info| self.client(info, u.0.scheme() == "rediss"))
                    else {
                        continue;
                    };
                    if let Ok(Ok(_)) = tokio::time::timeout(
                        self.settings.timeout,
                        client.get_multiplexed_async_connection(),
                    )
                    .await
                    {
                        return Ok(client);
                    }
                }
                Err(StoreError("redis pubsub (cluster)".into()))
            }
        }
    }

    async fn conn(&self) -> Result<Conn, StoreError> {
        if let Some(c) = self.conn.read().await.as_ref() {
            return Ok(c.clone());
        }
        let queued = Instant::now();
        let _one = tokio::time::timeout(self.settings.timeout, self.connecting.lock())
            .await
            .map_err(|_| StoreError("redis connect (busy)".into()))?;
        if let Some(c) = self.conn.read().await.as_ref() {
            return Ok(c.clone());
        }
        if self.failed_at.lock().is_some_and(|t| t > queued) {
            return Err(StoreError("redis connect (failed just now)".into()));
        }
        // Each sentinel gets its own deadline, so a dead one does not hide the others.
        let budget = match &self.settings.topology {
            RedisTopology::Sentinel { sentinels, .. } => {
                self.settings.timeout * (2 * sentinels.len() as u32 + 1)
            }
            _ => self.settings.timeout,
        };
        let result = tokio::time::timeout(budget, self.connect())
            .await
            .unwrap_or_else(|_| Err(StoreError("redis connect (timeout)".into())));
        match result {
            Ok(c) => {
                *self.conn.write().await = Some(c.clone());
                *self.failed_at.lock() = None;
                Ok(c)
            }
            Err(e) => {
                *self.failed_at.lock() = Some(Instant::now());
                Err(e)
            }
        }
    }

    /// Runs `cmd` as operation `op` (its metric label), within the deadline.
    ///
    /// Fails when Redis cannot be reached, answers late, or answers with an error.
    pub async fn query<T: FromRedisValue>(
        &self,
        op: &'static str,
        cmd: &Cmd,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = self.run(op, cmd).await;
        self.metrics.store(op, started.elapsed(), result.is_err());
        result
    }

    async fn run<T: FromRedisValue>(&self, op: &'static str, cmd: &Cmd) -> Result<T, StoreError> {
        let mut conn = self.conn().await.inspect_err(|e| {
            tracing::warn!(op, error = %e, "session store unreachable");
        })?;
        let answer =
            tokio::time::timeout(self.settings.timeout, cmd.query_async::<T>(&mut conn)).await;
        self.settle(op, answer).await
    }

    /// The outcome of one operation: its value, or an error naming it (after dropping a
    /// sentinel connection that may now point at a replica).
    async fn settle<T>(
        &self,
        op: &'static str,
        answer: Result<redis::RedisResult<T>, tokio::time::error::Elapsed>,
    ) -> Result<T, StoreError> {
        let sentinel = matches!(self.settings.topology, RedisTopology::Sentinel { .. });
        match answer {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                // The kind only: a server error's text can quote an argument.
                tracing::warn!(op, kind = ?e.kind(), "session store operation failed");
                if sentinel && reconnect_after(&e) {
                    *self.conn.write().await = None;
                }
                Err(StoreError(format!("redis {op}")))
            }
            Err(_) => {
                tracing::warn!(op, "session store operation timed out");
                if sentinel {
                    *self.conn.write().await = None;
                }
                Err(StoreError(format!("redis {op} (timeout)")))
            }
        }
    }

    /// Runs a Lua script (EVALSHA, loading it when the server does not know it yet).
    ///
    /// Fails as [`Redis::query`] does.
    pub async fn script<T: FromRedisValue>(
        &self,
        op: &'static str,
        script: &redis::Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let mut inv = script.prepare_invoke();
        for k in keys {
            inv.key(*k);
        }
        for a in args {
            inv.arg(*a);
        }
        let started = Instant::now();
        let result = async {
            let mut conn = self.conn().await?;
            let answer =
                tokio::time::timeout(self.settings.timeout, inv.invoke_async::<T>(&mut conn)).await;
            self.settle(op, answer).await
        }
        .await;
        self.metrics.store(op, started.elapsed(), result.is_err());
        result
    }

    /// Succeeds when Redis answers `PING` within the deadline (`/ready`).
    pub async fn ping(&self) -> Result<(), StoreError> {
        let pong: String = self.query("ping", &redis::cmd("PING")).await?;
        if pong == "PONG" {
            Ok(())
        } else {
            Err(StoreError("redis ping".into()))
        }
    }
}
