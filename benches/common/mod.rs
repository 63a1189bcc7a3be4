//! What the benchmarks share: running the real `App` in process and signing in.

use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Signs in as the first admin; returns the access token.
pub async fn sign_in(client: &reqwest::Client, base: &str, password: &str) -> String {
    let login: Value = client
        .post(format!("{base}/api/auth/login"))
        .json(&json!({ "username": "admin", "password": password }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    login["access_token"].as_str().unwrap().to_owned()
}

/// The app serving in this process, signed in as its first admin.
#[allow(dead_code)] // not every benchmark runs the server in process
pub struct Running {
    pub base: String,
    pub token: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    server: JoinHandle<anyhow::Result<()>>,
}

#[allow(dead_code)]
impl Running {
    pub async fn start(app: pocketdev::App) -> Running {
        let base = format!("http://{}", app.local_addr());
        let password = app.initial_admin_password.clone().unwrap();
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let server = tokio::spawn(app.run(async move { stop.cancelled().await }));
        let client = reqwest::Client::new();
        let token = sign_in(&client, &base, &password).await;
        Running {
            base,
            token,
            client,
            shutdown,
            server,
        }
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.server.await;
    }
}
