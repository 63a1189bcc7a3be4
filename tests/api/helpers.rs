//! `spawn_app()`: the production `App` on a random port with a fresh data dir, plus typed helpers.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Once;

use pocketdev::config::Config;
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
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customize: impl FnOnce(&mut Config)) -> TestApp {
    let data = tempfile::tempdir().expect("temp data dir");
    let mut config = test_config(&data.path().join("data"));
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
    }
}

/// Asserts the status and our error shape; returns the error code.
pub async fn expect_error(response: Response, status: StatusCode, context: &str) -> String {
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
    let code = body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("{context}: error.code in {body}"));
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{context}: error.message in {body}"
    );
    code.to_owned()
}
