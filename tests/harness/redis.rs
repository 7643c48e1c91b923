//! Real `redis-server` processes for the tests, on ephemeral ports in a temporary directory,
//! killed when dropped: standalone, with an ACL user, with TLS (certificates made here with
//! openssl), one master + one replica + three sentinels, and a three-master cluster.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REDIS_SERVER: &str = "/usr/bin/redis-server";

/// A free port on 127.0.0.1 (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One server process.
pub struct Server {
    pub port: u16,
    pub child: Child,
    pub dir: PathBuf,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig}");
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A stopped process must be continued to die promptly.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
        self.kill();
    }
}

/// Starts `redis-server` with `args` on `port` (TCP, or TLS when `args` say so) in `dir`,
/// and waits until it answers `PING` (through `ping_args` for redis-cli).
pub fn spawn(dir: &Path, port: u16, args: &[String], cli: &[String]) -> Server {
    let log = std::fs::File::create(dir.join(format!("redis-{port}.log"))).unwrap();
    let child = Command::new(REDIS_SERVER)
        .args(args)
        .stdout(Stdio::from(log.try_clone().unwrap()))
        .stderr(Stdio::from(log))
        .spawn()
        .expect("redis-server runs (scripts/test.sh installs it)");
    let server = Server {
        port,
        child,
        dir: dir.to_path_buf(),
    };
    wait_ping(port, cli);
    server
}

/// Waits (bounded) until `redis-cli -p port <cli> PING` answers PONG.
pub fn wait_ping(port: u16, cli: &[String]) {
    let started = Instant::now();
    loop {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(cli)
            .arg("PING")
            .output()
            .unwrap();
        if String::from_utf8_lossy(&out.stdout).contains("PONG") {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "redis on {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `redis-cli` against 127.0.0.1:port.
pub fn cli(port: u16, extra: &[String], args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(extra)
        .args(args)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn base(dir: &Path, port: u16) -> Vec<String> {
    [
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
        "--dir",
        dir.to_str().unwrap(),
        "--save",
        "",
        "--appendonly",
        "no",
        "--daemonize",
        "no",
        "--dbfilename",
        &format!("dump-{port}.rdb"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

/// A topology, with the gateway settings that reach it.
pub struct Topology {
    pub name: &'static str,
    pub servers: Vec<Server>,
    /// `redis_*` keys for the gateway's config file.
    pub config: String,
    /// redis-cli arguments (auth, TLS) for the data servers.
    pub cli: Vec<String>,
    pub dir: tempfile::TempDir,
}

impl Topology {
    /// Every key in every data server (for the dump test).
    pub fn dump(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        // Sentinels are kept apart (in `Sentinels`): every server here holds data.
        for s in &self.servers {
            let keys = cli(s.port, &self.cli, &["--raw", "KEYS", "*"]);
            for k in keys.lines().filter(|k| !k.is_empty()) {
                let read: &[&str] = match cli(s.port, &self.cli, &["--raw", "TYPE", k]).trim() {
                    "string" => &["GET", k],
                    "set" => &["SMEMBERS", k],
                    "zset" => &["ZRANGE", k, "0", "-1"],
                    _ => &["TYPE", k],
                };
                let mut args = vec!["--raw"];
                args.extend_from_slice(read);
                out.push((k.to_string(), cli(s.port, &self.cli, &args)));
            }
        }
        out
    }
}

/// Starts server `i` of a plain topology again, empty, on its port (after it was killed).
pub fn restart_empty(t: &mut Topology, i: usize) {
    let port = t.servers[i].port;
    let dir = t.dir.path().to_path_buf();
    t.servers[i] = spawn(&dir, port, &base(&dir, port), &[]);
}

pub fn standalone() -> Topology {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let s = spawn(dir.path(), port, &base(dir.path(), port), &[]);
    Topology {
        name: "standalone",
        servers: vec![s],
        config: format!("redis_connection_url = \"redis://127.0.0.1:{port}/3\"\n"),
        cli: vec!["-n".into(), "3".into()],
        dir,
    }
}

pub fn acl() -> Topology {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let conf = dir.path().join("acl.conf");
    std::fs::write(
        &conf,
        "user default off\nuser gateway on >s3cret-redis-pass ~* &* +@all\n",
    )
    .unwrap();
    let mut args = vec![conf.display().to_string()];
    args.extend(base(dir.path(), port));
    let cli_args: Vec<String> = [
        "--user",
        "gateway",
        "--pass",
        "s3cret-redis-pass",
        "--no-auth-warning",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let s = spawn(dir.path(), port, &args, &cli_args);
    let pw = dir.path().join("redis-password");
    std::fs::write(&pw, "s3cret-redis-pass\n").unwrap();
    Topology {
        name: "acl",
        servers: vec![s],
        config: format!(
            "redis_connection_url = \"redis://127.0.0.1:{port}\"\nredis_username = \"gateway\"\nredis_password_file = \"{}\"\n",
            pw.display()
        ),
        cli: cli_args,
        dir,
    }
}

/// Makes a CA and a server certificate for 127.0.0.1 / localhost in `dir`.
pub fn certificates(dir: &Path) {
    let run = |args: &[&str]| {
        let ok = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap()
            .success();
        assert!(ok, "openssl {args:?}");
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=test-ca",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

pub fn tls() -> Topology {
    let dir = tempfile::tempdir().unwrap();
    certificates(dir.path());
    let port = free_port();
    let mut args = base(dir.path(), 0);
    let d = dir.path().display().to_string();
    for a in [
        "--tls-port".to_string(),
        port.to_string(),
        "--tls-cert-file".into(),
        format!("{d}/server.crt"),
        "--tls-key-file".into(),
        format!("{d}/server.key"),
        "--tls-ca-cert-file".into(),
        format!("{d}/ca.crt"),
        "--tls-auth-clients".into(),
        "no".into(),
    ] {
        args.push(a);
    }
    let cli_args: Vec<String> = vec!["--tls".into(), "--cacert".into(), format!("{d}/ca.crt")];
    let s = spawn(dir.path(), port, &args, &cli_args);
    Topology {
        name: "tls",
        servers: vec![s],
        config: format!(
            "redis_connection_url = \"rediss://127.0.0.1:{port}\"\nredis_ca_file = \"{d}/ca.crt\"\n"
        ),
        cli: cli_args,
        dir,
    }
}

pub struct Sentinels {
    pub topology: Topology,
    pub sentinel_ports: Vec<u16>,
    pub sentinels: Vec<Server>,
}

impl Sentinels {
    /// The port of the current master, as the sentinels say.
    pub fn master_port(&self) -> u16 {
        let out = cli(
            self.sentinel_ports[0],
            &[],
            &["--raw", "SENTINEL", "get-master-addr-by-name", "gwmaster"],
        );
        out.lines().nth(1).unwrap().trim().parse().unwrap()
    }

    /// Forces a failover and waits (bounded) until the sentinels name the other server, and
    /// it takes writes.
    pub fn failover(&self) {
        let before = self.master_port();
        let started = Instant::now();
        loop {
            let _ = cli(
                self.sentinel_ports[0],
                &[],
                &["SENTINEL", "FAILOVER", "gwmaster"],
            );
            std::thread::sleep(Duration::from_millis(300));
            let now = self.master_port();
            let auth = ["-a", SENTINEL_DATA_PASSWORD, "--no-auth-warning"].map(String::from);
            if now != before && cli(now, &auth, &["ROLE"]).starts_with("master") {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(40), "no failover");
        }
    }
}

/// The data servers' password in the sentinel topology (the sentinels have none).
pub const SENTINEL_DATA_PASSWORD: &str = "data-node-pass-1";

pub fn sentinel() -> Sentinels {
    let dir = tempfile::tempdir().unwrap();
    let auth: Vec<String> = ["-a", SENTINEL_DATA_PASSWORD, "--no-auth-warning"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let secured = |port: u16| {
        let mut args = base(dir.path(), port);
        args.extend([
            "--requirepass".to_string(),
            SENTINEL_DATA_PASSWORD.into(),
            "--masterauth".into(),
            SENTINEL_DATA_PASSWORD.into(),
        ]);
        args
    };
    let master = free_port();
    let m = spawn(dir.path(), master, &secured(master), &auth);
    let replica = free_port();
    let mut args = secured(replica);
    args.extend([
        "--replicaof".to_string(),
        "127.0.0.1".into(),
        master.to_string(),
    ]);
    let r = spawn(dir.path(), replica, &args, &auth);
    // Wait until the replica is in sync, so a failover can pick it.
    let started = Instant::now();
    while !cli(replica, &auth, &["INFO", "replication"]).contains("master_link_status:up") {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "replica never synced"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let sdir = dir.path().join("sentinel");
    std::fs::create_dir_all(&sdir).unwrap();
    let mut sentinels = Vec::new();
    let mut ports = Vec::new();
    for i in 0..3 {
        let port = free_port();
        let conf = sdir.join(format!("sentinel-{i}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\ndir {}\nsentinel monitor gwmaster 127.0.0.1 {master} 2\nsentinel auth-pass gwmaster {SENTINEL_DATA_PASSWORD}\nsentinel down-after-milliseconds gwmaster 1000\nsentinel failover-timeout gwmaster 4000\nsentinel parallel-syncs gwmaster 1\n",
                sdir.display()
            ),
        )
        .unwrap();
        let args = vec![conf.display().to_string(), "--sentinel".to_string()];
        sentinels.push(spawn(&sdir, port, &args, &[]));
        ports.push(port);
    }
    // Wait until every sentinel knows the others and the replica.
    let started = Instant::now();
    loop {
        let out = cli(ports[0], &[], &["SENTINEL", "master", "gwmaster"]);
        let known = |field: &str| {
            out.lines()
                .skip_while(|l| l.trim() != field)
                .nth(1)
                .and_then(|v| v.trim().parse::<u32>().ok())
                .unwrap_or(0)
        };
        if known("num-other-sentinels") >= 2 && known("num-slaves") >= 1 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "sentinels never met"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let urls = ports
        .iter()
        .map(|p| format!("\"redis://127.0.0.1:{p}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Sentinels {
        topology: Topology {
            name: "sentinel",
            servers: vec![m, r],
            config: format!(
                "redis_use_sentinel = true\nredis_sentinel_master_name = \"gwmaster\"\nredis_sentinel_connection_urls = [{urls}]\nredis_connection_url = \"redis://127.0.0.1:{master}/2\"\nredis_password = \"{SENTINEL_DATA_PASSWORD}\"\n"
            ),
            cli: {
                let mut c = auth.clone();
                c.extend(["-n".to_string(), "2".into()]);
                c
            },
            dir,
        },
        sentinel_ports: ports,
        sentinels,
    }
}

pub fn cluster() -> Topology {
    let dir = tempfile::tempdir().unwrap();
    let mut servers = Vec::new();
    for _ in 0..3 {
        let port = free_port();
        let mut args = base(dir.path(), port);
        args.extend([
            "--cluster-enabled".to_string(),
            "yes".into(),
            "--cluster-config-file".into(),
            format!("nodes-{port}.conf"),
            "--cluster-node-timeout".into(),
            "2000".into(),
        ]);
        servers.push(spawn(dir.path(), port, &args, &[]));
    }
    let nodes: Vec<String> = servers
        .iter()
        .map(|s| format!("127.0.0.1:{}", s.port))
        .collect();
    let ok = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&nodes)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "cluster create");
    let started = Instant::now();
    while !servers
        .iter()
        .all(|s| cli(s.port, &[], &["CLUSTER", "INFO"]).contains("cluster_state:ok"))
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "cluster never ok"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let urls = nodes
        .iter()
        .map(|n| format!("\"redis://{n}\""))
        .collect::<Vec<_>>()
        .join(", ");
    Topology {
        name: "cluster",
        servers,
        config: format!("redis_use_cluster = true\nredis_cluster_connection_urls = [{urls}]\n"),
        cli: vec!["-c".into()],
        dir,
    }
}
