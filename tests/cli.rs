//! The command line, run as a user runs it: the binary in a child process, with a clean
//! environment, real files and real ports.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_cloudbase-gateway");

fn cmd(args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    // No CLOUDBASE_GATEWAY_* from the developer's shell may leak into these tests.
    c.env_clear().args(args);
    c
}

fn run(args: &[&str]) -> Output {
    cmd(args).output().expect("binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A child that is killed when dropped.
struct Running(Child, String);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a long-running subcommand and returns it with the URL from its first stdout line.
fn start(mut c: Command) -> Running {
    let mut child = c
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawns");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("first line");
    let url = line
        .trim_end()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    assert_ne!(url, "http://127.0.0.1:0", "the real port is printed");
    Running(child, url)
}

fn file(dir: &tempfile::TempDir, name: &str, content: &str) -> String {
    let path = dir.path().join(name);
    std::fs::File::create(&path)
        .unwrap()
        .write_all(content.as_bytes())
        .unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn every_subcommand_has_help() {
    for sub in ["serve", "check-config", "emulator", "healthcheck", "ticket"] {
        let out = run(&[sub, "--help"]);
        assert!(out.status.success(), "{sub} --help");
        assert!(
            text(&out.stdout).contains("Usage: cloudbase-gateway"),
            "{sub}"
        );
    }
    let out = run(&["--help"]);
    for sub in ["serve", "check-config", "emulator", "healthcheck", "ticket"] {
        assert!(
            text(&out.stdout).contains(sub),
            "{sub} missing from the top-level help"
        );
    }
}

#[test]
fn check_config_prints_the_redacted_result() {
    let dir = tempfile::tempdir().unwrap();
    let secret = file(&dir, "secret", "very-secret-value\n");
    let cfg = file(&dir, "gw.toml", &format!("env_id = \"file-env\"\npublic_url = \"https://gw.example.com\"\nupstream = \"http://127.0.0.1:8080\"\nclient_secret_file = \"{secret}\"\n"));
    let out = cmd(&["check-config", "--config", &cfg, "--listen", "0.0.0.0:9000"])
        .env("CLOUDBASE_GATEWAY_REGION", "ap-guangzhou")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let shown = text(&out.stdout);
    assert!(shown.contains("listen = \"0.0.0.0:9000\""), "{shown}");
    assert!(shown.contains("region = \"ap-guangzhou\""), "{shown}");
    assert!(shown.contains("client_secret = \"[redacted]\""), "{shown}");
    assert!(
        shown.contains("https://file-env.ap-guangzhou.tcb-api.tencentcloudapi.com"),
        "{shown}"
    );
    assert!(
        !shown.contains("very-secret-value") && !text(&out.stderr).contains("very-secret-value")
    );
}

#[test]
fn check_config_reports_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = file(
        &dir,
        "gw.toml",
        "env_id = \"bad env\"\nlog_format = \"xml\"\nsurprise = 1\n",
    );
    let out = cmd(&["check-config", "--config", &cfg])
        .env("CLOUDBASE_GATEWAY_CLOUDBASE_TIMEOUT", "forever")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    for needle in [
        "env_id (CLOUDBASE_GATEWAY_ENV_ID)",
        "log_format (CLOUDBASE_GATEWAY_LOG_FORMAT)",
        "surprise",
        "unknown key",
        "public_url (CLOUDBASE_GATEWAY_PUBLIC_URL): is required",
        "cloudbase_timeout (CLOUDBASE_GATEWAY_CLOUDBASE_TIMEOUT) from environment",
        "upstream (CLOUDBASE_GATEWAY_UPSTREAM): is required",
        "6 configuration problem(s)",
    ] {
        assert!(err.contains(needle), "{needle:?} missing from:\n{err}");
    }
    assert!(text(&out.stdout).is_empty());
}

#[test]
fn environment_that_is_not_utf8() {
    use std::os::unix::ffi::OsStrExt;
    let bad = std::ffi::OsStr::from_bytes(b"\xff\xfe");
    let flags = [
        "check-config",
        "--env-id",
        "e",
        "--public-url",
        "https://a.example.com",
        "--upstream",
        "http://127.0.0.1:8080",
    ];
    // Somebody else's variable: ignored (std::env::vars would have panicked).
    let out = cmd(&flags).env("OTHER_TOOL_SETTING", bad).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // One of ours: reported like any other problem.
    let out = cmd(&flags)
        .env("CLOUDBASE_GATEWAY_REGION", bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr)
            .contains("region (CLOUDBASE_GATEWAY_REGION) from environment: is not valid UTF-8"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn emulator_prints_its_url_and_serves_the_seeded_users() {
    let dir = tempfile::tempdir().unwrap();
    let users = file(
        &dir,
        "users.toml",
        "[[users]]\nusername = \"carol\"\nemail = \"carol@example.com\"\nphone_number = \"+86 13900000000\"\npassword = \"carol-pass-1\"\nname = \"Carol\"\ngroups = [\"ops\"]\n",
    );
    let emu = start(cmd(&[
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--env",
        "cli-env",
        "--users",
        &users,
        "--access-token-ttl",
        "120",
    ]));
    let signin = http_post(
        &format!("{}/auth/v1/signin?client_id=cli-env", emu.1),
        r#"{"username":"carol","password":"carol-pass-1"}"#,
    );
    assert!(signin.contains("\"expires_in\":120"), "{signin}");
    assert!(signin.contains("\"groups\":[\"ops\"]"), "{signin}");

    // healthcheck against a live server, then against a dead port.
    let ok = run(&["healthcheck", &emu.1]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let dead = free_port();
    let down = run(&[
        "healthcheck",
        &format!("http://127.0.0.1:{dead}/"),
        "--timeout",
        "1s",
    ]);
    assert_eq!(down.status.code(), Some(1));
    assert!(text(&down.stderr).contains("did not answer"));
    assert_eq!(run(&["healthcheck", "ftp://x"]).status.code(), Some(2));
}

#[test]
fn emulator_refuses_bad_users_files_and_keys() {
    let dir = tempfile::tempdir().unwrap();
    let bad = file(
        &dir,
        "users.toml",
        "[[users]]\nusername = \"x\"\nfavourite_colour = \"red\"\n",
    );
    let out = run(&[
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--users",
        &bad,
        "--ticket-key",
        "k1=/nonexistent.pem",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("users file") && err.contains("favourite_colour"),
        "{err}"
    );
    assert!(err.contains("--ticket-key k1"), "{err}");
    let dup = file(
        &dir,
        "dup.toml",
        "[[users]]\nusername = \"same\"\n[[users]]\nusername = \"same\"\n",
    );
    let out = run(&["emulator", "--listen", "127.0.0.1:0", "--users", &dup]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("user #2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn serve_answers_health_checks() {
    let mut serve = cmd(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--env-id",
        "e1",
        "--public-url",
        "http://127.0.0.1:4180",
        "--upstream",
        "http://127.0.0.1:9",
    ]);
    serve.env("CLOUDBASE_GATEWAY_INSECURE_COOKIE", "true");
    let gw = start(serve);
    let ok = run(&["healthcheck", &format!("{}/ping", gw.1)]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert!(http_get(&format!("{}/ready", gw.1)).starts_with("HTTP/1.1 200"));
    // Bad configuration: exit 2 before binding anything.
    let out = run(&["serve", "--listen", "nowhere"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn demo_prints_both_urls_then_the_users_and_protects_whoami() {
    let (guard, lines) = demo(&["--log-level", "warn"], Stdio::null());
    let gw = lines[0]
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_string();
    let emu = lines[1]
        .strip_prefix("emulator on ")
        .unwrap_or_else(|| panic!("{lines:?}"))
        .to_string();
    assert!(
        gw.starts_with("http://127.0.0.1:") && gw != "http://127.0.0.1:0",
        "{gw}"
    );
    assert!(emu.starts_with("http://127.0.0.1:") && emu != gw, "{emu}");
    assert_eq!(lines[2], "demo user alice password alice-password-1");
    assert_eq!(lines[3], "demo user bob password bob-password-1");
    assert!(http_get(&format!("{gw}/ping")).starts_with("HTTP/1.1 200"));
    assert!(http_get(&format!("{emu}/__emulator/users")).contains("alice@example.com"));
    let login = http_get(&format!("{gw}/__auth/"));
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    assert!(
        login.contains("cbgw_session_csrf="),
        "plain-http cookie names in the demo"
    );
    // Without a session the whoami upstream is out of reach (this raw client sends no Accept).
    let denied = http_get(&format!("{gw}/whoami"));
    assert!(denied.starts_with("HTTP/1.1 401"), "{denied}");
    assert!(denied.contains("\"error\":\"unauthenticated\""), "{denied}");
    drop(guard);
}

/// One HTTP/1.1 exchange with extra headers; the whole response text.
fn exchange(url: &str, method: &str, headers: &[(&str, &str)], body: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    let addr = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
    let mut stream = std::net::TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let path = match u.query() {
        Some(q) => format!("{}?{}", u.path(), q),
        None => u.path().to_string(),
    };
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    write!(stream, "{head}Content-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stream, &mut out).unwrap();
    out
}

/// Starts `demo --listen 127.0.0.1:0 ARGS`; the process and its first four stdout lines.
fn demo(args: &[&str], stderr: Stdio) -> (Running, Vec<String>) {
    let mut all = vec!["demo", "--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    let mut child = cmd(&all)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("spawns");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut lines = Vec::new();
    for _ in 0..4 {
        let mut line = String::new();
        out.read_line(&mut line).expect("line");
        lines.push(line.trim_end().to_string());
    }
    (Running(child, String::new()), lines)
}

/// The sign-in page's CSRF cookie value and form token.
fn login_form(gw: &str) -> (String, String) {
    let page = exchange(&format!("{gw}/__auth/"), "GET", &[], "");
    let csrf = set_cookie_value(&page, "cbgw_session_csrf");
    let token = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .unwrap_or_else(|| panic!("{page}"))
        .split('"')
        .next()
        .unwrap()
        .to_string();
    (csrf, token)
}

/// The value of the `name` cookie set by a response.
fn set_cookie_value(response: &str, name: &str) -> String {
    response
        .lines()
        .filter_map(|l| l.strip_prefix("set-cookie: "))
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .and_then(|c| c.split(';').next())
        .unwrap_or_else(|| panic!("no {name} cookie in {response}"))
        .to_string()
}

#[test]
fn demo_takes_users_and_an_upstream() {
    let dir = tempfile::tempdir().unwrap();
    // A port that refuses connections: bound for the test's life, never listening.
    let closed = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    closed
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    let down = format!(
        "http://{}",
        closed.local_addr().unwrap().as_socket().unwrap()
    );
    let users = file(
        &dir,
        "users.toml",
        "[[users]]\nusername = \"dora\"\npassword = \"a-real-Secret-9\"\n[[users]]\nemail = \"eve@example.com\"\n",
    );
    let (_guard, lines) = demo(
        &[
            "--users",
            &users,
            "--upstream",
            &down,
            "--log-level",
            "warn",
        ],
        Stdio::null(),
    );
    assert_eq!(
        lines[2], "demo user dora",
        "passwords from a file are not printed"
    );
    assert_eq!(
        lines[3],
        "demo user eve@example.com (no password: sign in with a code)"
    );
    let emu = lines[1].strip_prefix("emulator on ").unwrap();
    let users = http_get(&format!("{emu}/__emulator/users"));
    assert!(
        users.contains("dora") && !users.contains("alice"),
        "{users}"
    );
    let gw = lines[0].strip_prefix("listening on ").unwrap();
    let (csrf, token) = login_form(gw);
    let signed_in = exchange(
        &format!("{gw}/__auth/sign_in/password"),
        "POST",
        &[("Cookie", &format!("cbgw_session_csrf={csrf}"))],
        &format!("csrf={token}&username=dora&password=a-real-Secret-9"),
    );
    let session = set_cookie_value(&signed_in, "cbgw_session");
    // The upstream given is down: the gateway says so.
    let resp = exchange(
        &format!("{gw}/x"),
        "GET",
        &[("Cookie", &format!("cbgw_session={session}"))],
        "",
    );
    assert!(resp.starts_with("HTTP/1.1 502"), "{resp}");
}

#[test]
fn logs_carry_no_password_cookie_or_token() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let (guard, lines) = demo(&["--log-level", "trace"], log.reopen().unwrap().into());
    let gw = lines[0].strip_prefix("listening on ").unwrap().to_string();

    let (csrf, token) = login_form(&gw);
    let csrf_header = format!("cbgw_session_csrf={csrf}");
    let form =
        |password: &str| format!("csrf={token}&rd=%2Fhello&username=alice&password={password}");
    let refused = exchange(
        &format!("{gw}/__auth/sign_in/password"),
        "POST",
        &[("Cookie", &csrf_header)],
        &form("wrong-Secret-77"),
    );
    assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
    let signed_in = exchange(
        &format!("{gw}/__auth/sign_in/password"),
        "POST",
        &[("Cookie", &csrf_header)],
        &form("alice-password-1"),
    );
    assert!(signed_in.starts_with("HTTP/1.1 302"), "{signed_in}");
    let session = set_cookie_value(&signed_in, "cbgw_session");
    let session_header = format!("cbgw_session={session}");
    let seen = exchange(
        &format!("{gw}/hello"),
        "GET",
        &[("Cookie", &session_header), ("Accept", "application/json")],
        "",
    );
    let access = seen
        .split("\"Bearer ")
        .nth(1)
        .unwrap_or_else(|| panic!("{seen}"))
        .split('"')
        .next()
        .unwrap()
        .to_string();
    let info = exchange(
        &format!("{gw}/__auth/userinfo"),
        "GET",
        &[("Cookie", &session_header)],
        "",
    );
    assert!(info.starts_with("HTTP/1.1 200"), "{info}");
    drop(guard);

    let logs = std::fs::read_to_string(log.path()).unwrap();
    let line = logs
        .lines()
        .find(|l| l.contains("signed in") && l.contains("method=\"password\""))
        .unwrap_or_else(|| panic!("the logs were captured:\n{logs}"));
    assert!(
        line.contains("request{request_id="),
        "spans carry the request id: {line}"
    );
    for (what, secret) in [
        ("password", "alice-password-1"),
        ("wrong password", "wrong-Secret-77"),
        ("session cookie", session.as_str()),
        ("session handle", session.split('.').next().unwrap()),
        ("csrf cookie", csrf.as_str()),
        ("csrf token", token.as_str()),
        ("access token", access.as_str()),
        ("any JWT", "eyJ"),
    ] {
        assert!(!logs.contains(secret), "the logs show the {what}:\n{logs}");
    }
}

/// Sends `raw` as is and reads whatever comes back until the server closes or 10 s pass.
fn send_raw(gw: &str, raw: &[u8]) -> String {
    let addr = gw.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let _ = stream.write_all(raw);
    let mut out = Vec::new();
    let _ = std::io::Read::read_to_end(&mut stream, &mut out);
    text(&out)
}

#[test]
fn client_mistakes_are_not_logged_as_errors() {
    let log = tempfile::NamedTempFile::new().unwrap();
    let (guard, lines) = demo(&[], log.reopen().unwrap().into());
    let gw = lines[0].strip_prefix("listening on ").unwrap().to_string();
    let host = gw.trim_start_matches("http://").to_string();
    let bad: Vec<Vec<u8>> = vec![
        b"GARBAGE\r\n\r\n".to_vec(),
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n".to_vec(),
        format!("POST /__auth/sign_in/password HTTP/1.1\r\nHost: {host}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            .into_bytes(),
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nX: \x01\r\n\r\n").into_bytes(),
    ];
    for raw in &bad {
        let answer = send_raw(&gw, raw);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 4"),
            "a client error: {answer}"
        );
    }
    // The gateway still answers.
    assert!(exchange(&format!("{gw}/ping"), "GET", &[], "").starts_with("HTTP/1.1 200"));
    drop(guard);
    let logs = std::fs::read_to_string(log.path()).unwrap();
    assert!(
        !logs.lines().any(|l| l.contains("ERROR")),
        "no error lines for the client's mistakes:\n{logs}"
    );
}

#[test]
fn ticket_command_prints_a_ticket_the_emulator_accepts() {
    use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
    let dir = tempfile::tempdir().unwrap();
    let key = {
        use rand::SeedableRng;
        rsa::RsaPrivateKey::new(&mut rand::rngs::StdRng::seed_from_u64(9), 2048).unwrap()
    };
    let private = key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
    let public = rsa::RsaPublicKey::from(&key)
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    let key_file = file(
        &dir,
        "tcb_custom_login.json",
        &serde_json::json!({ "private_key_id": "kid-7", "private_key": private, "env_id": "tix-env" }).to_string(),
    );
    let pub_file = file(&dir, "kid-7.pem", &public);

    let out = run(&[
        "ticket",
        "--key-file",
        &key_file,
        "--uid",
        "cli_user_1",
        "--refresh-ms",
        "60000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let ticket = text(&out.stdout).trim().to_string();
    assert!(
        ticket.starts_with("kid-7/@@/eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9."),
        "{ticket}"
    );

    let emu = start(cmd(&[
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--env",
        "tix-env",
        "--ticket-key",
        &format!("kid-7={pub_file}"),
    ]));
    let answer = http_post(
        &format!("{}/auth/v1/signin/custom?client_id=tix-env", emu.1),
        &serde_json::json!({ "provider_id": "custom", "ticket": ticket }).to_string(),
    );
    assert!(answer.contains("\"token_type\":\"Bearer\""), "{answer}");

    // The console's key file works directly as --ticket-key: id and public key come from it.
    let emu_json = start(cmd(&[
        "emulator",
        "--listen",
        "127.0.0.1:0",
        "--env",
        "tix-env",
        "--ticket-key",
        &key_file,
    ]));
    let answer = http_post(
        &format!("{}/auth/v1/signin/custom?client_id=tix-env", emu_json.1),
        &serde_json::json!({ "provider_id": "custom", "ticket": ticket }).to_string(),
    );
    assert!(answer.contains("\"token_type\":\"Bearer\""), "{answer}");
    let foreign = http_post(
        &format!("{}/auth/v1/signin/custom?client_id=tix-env", emu_json.1),
        &serde_json::json!({ "provider_id": "custom", "ticket": ticket.replace("kid-7/", "kid-8/") }).to_string(),
    );
    assert!(
        foreign.contains("\"error\":\"invalid_argument\""),
        "{foreign}"
    );

    let bad_uid = run(&["ticket", "--key-file", &key_file, "--uid", "no"]);
    assert_eq!(bad_uid.status.code(), Some(2));
    let old = file(
        &dir,
        "old.json",
        &serde_json::json!({ "private_key_id": "k", "private_key": "x" }).to_string(),
    );
    let out = run(&["ticket", "--key-file", &old, "--uid", "abcd"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("download the latest private key"));
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A minimal blocking HTTP/1.1 exchange; returns the whole response text.
fn http(url: &str, method: &str, body: &str) -> String {
    let u = url::Url::parse(url).unwrap();
    let addr = format!("{}:{}", u.host_str().unwrap(), u.port().unwrap());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match std::net::TcpStream::connect(&addr) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => std::thread::yield_now(),
            Err(e) => panic!("connect {addr}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let path = match u.query() {
        Some(q) => format!("{}?{}", u.path(), q),
        None => u.path().to_string(),
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: text/plain;charset=UTF-8\r\nx-device-id: cli-test-device-0001\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    std::io::Read::read_to_string(&mut stream, &mut out).unwrap();
    out
}

fn http_get(url: &str) -> String {
    http(url, "GET", "")
}

fn http_post(url: &str, body: &str) -> String {
    http(url, "POST", body)
}
