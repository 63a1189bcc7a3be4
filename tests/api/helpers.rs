//! `spawn_app()`: the production `App` on a random port with a fresh data dir, plus typed helpers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Once;

use pocketdev::config::Config;
use pocketdev::instances::profiles::Profile;
use reqwest::{Client, Method, Response, StatusCode};
use serde_json::Value;
use tempfile::TempDir;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const ADMIN: &str = "admin";

pub struct TestApp {
    pub addr: SocketAddr,
    pub config: Config,
    /// The first admin's generated password.
    pub admin_password: String,
    /// A client that keeps cookies, like a browser.
    pub browser: Client,
    data: Option<TempDir>,
    /// Whether dropping this app kills its tmux server (not when a restart hands it on).
    owns_tmux: bool,
    shutdown: CancellationToken,
    server: Option<JoinHandle<anyhow::Result<()>>>,
}

fn init_logging() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            let _ = tracing_subscriber::fmt()
                .with_env_filter("info,pocketdev=debug")
                .with_test_writer()
                .try_init();
        }
    });
}

/// A configuration for tests: random port, the given data dir, generous sign-in limits.
pub fn test_config(data_dir: &Path) -> Config {
    let mut config = Config {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        data_dir: data_dir.to_path_buf(),
        ..Config::default()
    };
    config.rate_limits.login_per_minute = 1000;
    config.rate_limits.api_per_minute = 10_000;
    // The app runs inside the test binary; agents are launched by the real `pocketdev`.
    config.tmux.launcher = Some(env!("CARGO_BIN_EXE_pocketdev").into());
    config.tmux.stop_grace_secs = 2;
    config.profiles.insert("fake".into(), fake_profile());
    config
}

pub fn fake_agent_path() -> PathBuf {
    program_for_accounts(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-agent.sh"),
    )
}

/// A program the accounts' own Unix users can run: `path` itself when every folder above it
/// lets them pass, else a copy (with its package.json, as agents installed by npm have) in a
/// shared folder of the temporary dir, so the tests work from a clone in a private home.
pub fn program_for_accounts(path: &Path) -> PathBuf {
    use pocketdev::isolation::{reachable_by_accounts, sandbox::program_root};
    use std::os::unix::fs::PermissionsExt;
    let real = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    if !running_as_root() || reachable_by_accounts(real.parent().unwrap()).is_ok() {
        return path.to_path_buf();
    }
    let root = program_root(&real);
    let shared = std::env::temp_dir().join("pocketdev-test-programs");
    let dest_root = shared
        .join(format!("{:x}", {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            root.hash(&mut hasher);
            hasher.finish()
        }))
        .join(root.file_name().unwrap_or_default());
    let dest = dest_root.join(real.strip_prefix(&root).unwrap());
    let _lock = pocketdev::isolation::accounts::AccountsLock::acquire().unwrap();
    let copy = |from: &Path, to: &Path, mode: u32| {
        let same = std::fs::metadata(to)
            .ok()
            .is_some_and(|m| m.len() == std::fs::metadata(from).unwrap().len());
        if !same {
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            let partial = to.with_extension("partial");
            std::fs::copy(from, &partial).unwrap();
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(mode)).unwrap();
            std::fs::rename(&partial, to).unwrap();
        }
    };
    copy(&real, &dest, 0o755);
    if root.join("package.json").is_file() {
        copy(
            &root.join("package.json"),
            &dest_root.join("package.json"),
            0o644,
        );
    }
    for dir in dest.ancestors().take_while(|d| d.starts_with(&shared)) {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dest
}

/// The fake agent as a profile; `FAKE_TOKEN` comes from the user's secret `FAKE_TOKEN` if set.
pub fn fake_profile() -> Profile {
    Profile {
        name: "Fake agent".into(),
        command: fake_agent_path().to_string_lossy().into_owned(),
        optional_secrets: [("FAKE_TOKEN".to_owned(), "FAKE_TOKEN".to_owned())].into(),
        memory_mb: 10,
        ..Profile::default()
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    let data = tempfile::tempdir().expect("temp data dir");
    // Accounts' own users must reach their folders inside it.
    std::fs::set_permissions(
        data.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )
    .expect("temp dir mode");
    let mut config = test_config(&data.path().join("data"));
    isolate_for_tests(&mut config, data.path());
    customize(&mut config);
    config.validate().expect("test configuration is valid");
    let mut app = start(config).await;
    app.data = Some(data);
    app
}

async fn start(config: Config) -> TestApp {
    init_logging();
    let app = pocketdev::App::build(config.clone())
        .await
        .expect("app builds");
    let addr = app.local_addr();
    let admin_password = app.initial_admin_password.clone().unwrap_or_default();
    let shutdown = CancellationToken::new();
    let token = shutdown.clone();
    let server = tokio::spawn(app.run(async move { token.cancelled().await }));
    TestApp {
        addr,
        config,
        admin_password,
        browser: Client::builder()
            .cookie_store(true)
            .build()
            .expect("client"),
        data: None,
        owns_tmux: true,
        shutdown,
        server: Some(server),
    }
}

impl TestApp {
    pub fn data_dir(&self) -> PathBuf {
        self.config
            .data_dir
            .canonicalize()
            .expect("data dir exists")
    }

    /// Stops the server gracefully and starts a new one on the same data dir (new port).
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let mut config = self.config.clone();
        config.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut next = start(config).await;
        next.admin_password = std::mem::take(&mut self.admin_password);
        next.data = self.data.take();
        self.owns_tmux = false;
        next
    }

    pub async fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(server) = self.server.take() {
            server
                .await
                .expect("server task")
                .expect("server stops cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        let base = self.config.base_path.trim_end_matches('/');
        format!("http://{}{base}{path}", self.addr)
    }

    /// A request with an optional bearer token, from a client without cookies.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Response {
        let mut request = Client::new().request(method, self.url(path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request reaches the server")
    }

    /// A request through the proxy socket (`config.proxy_socket`), as nginx sends it, with
    /// `curl --unix-socket`: (status, response headers in lower case, body).
    pub async fn call_via_proxy_socket(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<Value>,
    ) -> (u16, String, String) {
        let socket = self.config.proxy_socket.as_ref().expect("a proxy socket");
        let mut command = tokio::process::Command::new("curl");
        command
            .args(["-sS", "-i", "-X", method, "--unix-socket"])
            .arg(socket);
        for (name, value) in headers {
            command.arg("-H").arg(format!("{name}: {value}"));
        }
        if let Some(body) = body {
            command
                .args(["-H", "content-type: application/json", "--data"])
                .arg(body.to_string());
        }
        let base = self.config.base_path.trim_end_matches('/');
        let output = command
            .arg(format!("http://localhost{base}{path}"))
            .output()
            .await
            .expect("curl runs");
        assert!(
            output.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head.to_lowercase(), body.to_owned())
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> Response {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn login(&self, username: &str, password: &str) -> Response {
        self.post(
            "/api/auth/login",
            None,
            serde_json::json!({ "username": username, "password": password }),
        )
        .await
    }

    /// Signs in and returns the whole token response; panics unless it succeeds.
    pub async fn sign_in(&self, username: &str, password: &str) -> Value {
        let response = self.login(username, password).await;
        assert_eq!(
            response.status(),
            StatusCode::OK,
            "sign-in of {username} should succeed"
        );
        response.json().await.expect("token response")
    }

    pub async fn token(&self, username: &str, password: &str) -> String {
        self.sign_in(username, password).await["access_token"]
            .as_str()
            .expect("access token")
            .to_owned()
    }

    pub async fn admin_token(&self) -> String {
        self.token(ADMIN, &self.admin_password).await
    }

    /// Creates a plain user through the admin API; returns its id.
    pub async fn create_user(&self, username: &str, password: &str) -> i64 {
        let admin = self.admin_token().await;
        let response = self
            .post(
                "/api/admin/users",
                Some(&admin),
                serde_json::json!({ "username": username, "password": password }),
            )
            .await;
        assert_eq!(
            response.status(),
            StatusCode::CREATED,
            "creating {username}"
        );
        let body: Value = response.json().await.expect("created user");
        body["user"]["id"].as_i64().expect("user id")
    }

    /// The newest audit entries with this action.
    /// Disables (or enables) an account as the admin; panics unless it worked.
    pub async fn set_disabled(&self, admin: &str, user_id: i64, disabled: bool) {
        let response = self
            .call(
                Method::PATCH,
                &format!("/api/admin/users/{user_id}"),
                Some(admin),
                Some(serde_json::json!({ "disabled": disabled })),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    pub async fn audit(&self, action: &str) -> Vec<Value> {
        let admin = self.admin_token().await;
        let response = self
            .get(&format!("/api/admin/audit?action={action}"), Some(&admin))
            .await;
        assert_eq!(response.status(), StatusCode::OK);
        response.json().await.expect("audit entries")
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // The agents' tmux server outlives pocketdev by design; a test must not leave it behind.
        if self.owns_tmux {
            kill_tmux_server(&self.tmux_socket());
            remove_test_accounts(&self.config.isolation.user_prefix);
        }
    }
}

/// Test apps isolate accounts whenever the tests run as root (as CI does): each app gets its
/// own Unix user prefix (`pdt<pid>x<n>-`, so a sweeper can tell whose they are) and its own
/// runtime folder, so parallel tests never collide.
pub fn isolate_for_tests(config: &mut Config, root: &Path) {
    config.isolation.run_dir = root.join("run");
    config.isolation.user_prefix = test_user_prefix();
    config.isolation.cgroup = test_cgroup(&config.isolation.user_prefix);
}

/// The cgroup folder of a test server's accounts, named after its user prefix.
pub fn test_cgroup(prefix: &str) -> String {
    format!("{prefix}cg")
}

/// Removes cgroup folders whose name starts with `prefix`, in every hierarchy.
fn remove_test_cgroups(prefix: &str) {
    // A killed agent's process leaves its group only once it is reaped, a moment later.
    for _ in 0..50 {
        if remove_test_cgroups_once(prefix) {
            return;
        }
        #[allow(clippy::disallowed_methods)] // Drop cannot wait for a task
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Answers whether nothing of the prefix is left.
fn remove_test_cgroups_once(prefix: &str) -> bool {
    let mut all_gone = true;
    for hierarchy in ["", "memory", "pids", "cpu", "unified"] {
        let root = Path::new("/sys/fs/cgroup").join(hierarchy);
        let Ok(entries) = std::fs::read_dir(&root) else {
            continue;
        };
        for entry in entries.flatten() {
            if !entry.file_name().to_string_lossy().starts_with(prefix) {
                continue;
            }
            if let Ok(groups) = std::fs::read_dir(entry.path()) {
                for group in groups.flatten().filter(|g| g.path().is_dir()) {
                    // Instances' groups inside accounts' groups first.
                    if let Ok(instances) = std::fs::read_dir(group.path()) {
                        for instance in instances.flatten().filter(|i| i.path().is_dir()) {
                            let _ = std::fs::remove_dir(instance.path());
                        }
                    }
                    let _ = std::fs::remove_dir(group.path());
                }
            }
            all_gone &= std::fs::remove_dir(entry.path()).is_ok();
        }
    }
    all_gone
}

/// A Unix user prefix of its own for one test server: `pdt<pid>x<n>-`.
pub fn test_user_prefix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    static SWEEP: Once = Once::new();
    SWEEP.call_once(sweep_stale_test_accounts);
    format!(
        "pdt{}x{}-",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

pub fn running_as_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Kills the processes of every Unix user made for a test app and removes the users.
pub fn remove_test_accounts(prefix: &str) {
    use pocketdev::isolation::accounts;
    if !running_as_root() || !prefix.starts_with("pdt") {
        return;
    }
    let Ok(ids) = accounts::SystemIds::read() else {
        return;
    };
    let names: Vec<String> = ids.names_with_prefix(prefix).map(str::to_owned).collect();
    for name in names {
        if let Some(identity) = ids.user(&name) {
            accounts::kill_all(identity.uid, std::time::Duration::from_secs(5));
        }
        if let Ok(_lock) = accounts::AccountsLock::acquire() {
            let _ = accounts::remove_user(&name);
        }
    }
    remove_test_cgroups(prefix);
}

/// Removes test accounts whose test process is gone (a crashed or killed run).
fn sweep_stale_test_accounts() {
    use pocketdev::isolation::accounts::SystemIds;
    if !running_as_root() {
        return;
    }
    let Ok(ids) = SystemIds::read() else {
        return;
    };
    let stale: Vec<String> = ids
        .names_with_prefix("pdt")
        .filter_map(|name| {
            let pid = name.strip_prefix("pdt")?.split('x').next()?;
            let alive = Path::new("/proc").join(pid).exists();
            (!alive).then(|| format!("pdt{pid}x"))
        })
        .collect();
    for prefix in stale {
        remove_test_accounts(&prefix);
    }
}

#[allow(clippy::disallowed_methods)] // Drop cannot await
pub fn kill_tmux_server(socket: &Path) {
    if socket.exists() {
        let _ = std::process::Command::new("tmux")
            .arg("-S")
            .arg(socket)
            .arg("kill-server")
            .stderr(std::process::Stdio::null())
            .status();
    }
}

impl TestApp {
    /// A tmux client for the server holding `user_id`'s sessions, running as that account
    /// when accounts are isolated (a root client would be the privilege hazard itself).
    pub fn tmux_client(&self, user_id: i64) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("tmux");
        let name = format!("{}{user_id}", self.config.isolation.user_prefix);
        match pocketdev::isolation::accounts::SystemIds::read()
            .ok()
            .and_then(|ids| ids.user(&name))
        {
            Some(identity) => {
                let socket = self
                    .config
                    .isolation
                    .run_dir
                    .join("tmux")
                    .join(user_id.to_string())
                    .join("tmux.sock");
                command
                    .arg("-S")
                    .arg(socket)
                    .uid(identity.uid)
                    .gid(identity.gid)
                    .current_dir("/");
            }
            None => {
                command.arg("-S").arg(self.tmux_socket());
            }
        }
        command
    }

    /// What a tmux client of `user_id`'s server prints for `args` (empty if it fails).
    pub async fn tmux_output(&self, user_id: i64, args: &[&str]) -> String {
        let out = self.tmux_client(user_id).args(args).output().await.unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The pid of the tmux server holding `user_id`'s sessions, as tmux says.
    pub async fn tmux_server_pid(&self, user_id: i64) -> i32 {
        let text = self
            .tmux_output(user_id, &["display-message", "-p", "#{pid}"])
            .await;
        text.trim()
            .parse()
            .unwrap_or_else(|_| panic!("no tmux server pid in {text:?}"))
    }

    /// The id of the account `token` belongs to.
    pub async fn user_id(&self, token: &str) -> i64 {
        let me: Value = self
            .get("/api/auth/me", Some(token))
            .await
            .json()
            .await
            .unwrap();
        me["id"].as_i64().expect("user id")
    }

    pub fn tmux_socket(&self) -> PathBuf {
        self.config.tmux.socket.clone().unwrap_or_else(|| {
            self.config
                .data_dir
                .canonicalize()
                .unwrap_or_else(|_| self.config.data_dir.clone())
                .join("server/tmux.sock")
        })
    }

    /// Creates an instance and returns its JSON, asserting 201.
    pub async fn create_instance(&self, token: &str, body: Value) -> Value {
        let response = self.post("/api/instances", Some(token), body.clone()).await;
        let status = response.status();
        let json: Value = response.json().await.expect("instance JSON");
        assert_eq!(status, StatusCode::CREATED, "creating {body}: {json}");
        json
    }

    pub async fn instance(&self, token: &str, id: &str) -> Value {
        self.get(&format!("/api/instances/{id}"), Some(token))
            .await
            .json()
            .await
            .expect("instance")
    }

    pub async fn output(&self, token: &str, id: &str) -> String {
        let body: Value = self
            .get(
                &format!("/api/instances/{id}/output?lines=500"),
                Some(token),
            )
            .await
            .json()
            .await
            .unwrap();
        // An error answer shows as the screen, so a failing wait says what went wrong.
        body["output"]
            .as_str()
            .map_or_else(|| body.to_string(), str::to_owned)
    }

    /// Polls the output until it contains `needle`; panics with the last screen after 10 s.
    pub async fn wait_for_output(&self, token: &str, id: &str, needle: &str) -> String {
        self.wait_for_output_within(token, id, needle, std::time::Duration::from_secs(10))
            .await
    }

    /// As `wait_for_output`, for programs slower to answer than a shell (a real agent CLI).
    pub async fn wait_for_output_within(
        &self,
        token: &str,
        id: &str,
        needle: &str,
        within: std::time::Duration,
    ) -> String {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let output = self.output(token, id).await;
            if output.contains(needle) {
                return output;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "`{needle}` never appeared; screen:\n{output}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Polls the instance until its state is `state`; returns its JSON.
    pub async fn wait_for_state(&self, token: &str, id: &str, state: &str) -> Value {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let instance = self.instance(token, id).await;
            if instance["state"] == state {
                return instance;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "instance never became {state}: {instance}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Polls the instance until `check` holds; returns it. Panics after `within` with the
    /// instance and its screen.
    pub async fn wait_until(
        &self,
        token: &str,
        id: &str,
        what: &str,
        within: std::time::Duration,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let instance = self.instance(token, id).await;
            if check(&instance) {
                return instance;
            }
            if tokio::time::Instant::now() >= deadline {
                panic!(
                    "never {what}: {instance}\nscreen:\n{}",
                    self.output(token, id).await
                );
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    pub async fn command(&self, token: &str, id: &str, body: Value) -> Response {
        self.post(&format!("/api/instances/{id}/command"), Some(token), body)
            .await
    }
}

/// Asserts the status and our error shape; returns the error code.
pub async fn expect_error(response: Response, status: StatusCode, context: &str) -> String {
    let body = error_body(response, status, context).await;
    body["error"]["code"].as_str().unwrap().to_owned()
}

/// Asserts the status, our error shape, and that the message says `words`.
pub async fn expect_error_saying(response: Response, status: StatusCode, words: &str) {
    let body = error_body(response, status, words).await;
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains(words)),
        "the error says {words:?}: {body}"
    );
}

async fn error_body(response: Response, status: StatusCode, context: &str) -> Value {
    assert_eq!(response.status(), status, "{context}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{context}: error is JSON, got {content_type}"
    );
    let body: Value = response.json().await.expect("error body is JSON");
    assert!(
        body["error"]["code"].is_string(),
        "{context}: error.code in {body}"
    );
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{context}: error.message in {body}"
    );
    body
}

/// A TLS connector for WebSockets that trusts exactly the certificate in `cert` (PEM).
pub fn trusting(cert: &Path) -> tokio_tungstenite::Connector {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(cert).expect("the certificate");
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(&pem).expect("a PEM certificate");
    roots.add(der).expect("a usable certificate");
    let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("TLS versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(config))
}
