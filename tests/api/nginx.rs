//! The deploy path: the distribution's nginx, configured from `config/nginx.conf` by the same
//! shell function `scripts/deploy.sh` uses, with a self-signed certificate on loopback, in front
//! of a running pocketdev, reached through its proxy socket as deployed. Sign-in and an API call
//! over HTTPS (from 127.0.0.2, so the client address pocketdev records must come from
//! X-Forwarded-For), a terminal WebSocket through nginx, and the sign-in rate limit answering
//! 429.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::helpers::spawn_app_with;

/// nginx lives in /usr/sbin, which is not on every user's PATH.
fn nginx_binary() -> String {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("nginx")
        .to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn run(program: &str, args: &[&str]) -> std::process::Output {
    Command::new(program)
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("{program} runs: {e}"))
}

struct Nginx {
    child: Child,
    dir: tempfile::TempDir,
    https: u16,
}

impl Nginx {
    async fn start(upstream: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in ["logs", "tmp", "acme"] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // The workers (www-data) keep request bodies in tmp/.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).unwrap();
        std::fs::set_permissions(d.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
        let (cert, key) = (d.join("cert.pem"), d.join("key.pem"));
        let made = run(
            "openssl",
            &[
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
                // A leaf, not a CA, so strict clients accept it as the server's own certificate.
                "-addext",
                "basicConstraints=critical,CA:FALSE",
                "-addext",
                "extendedKeyUsage=serverAuth",
                "-keyout",
                &key.display().to_string(),
                "-out",
                &cert.display().to_string(),
            ],
        )
        .await;
        assert!(
            made.status.success(),
            "openssl: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let (http, https) = (free_port(), free_port());
        let template = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/nginx.conf");
        let library = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lib/nginx.sh");
        let site = d.join("site.conf");
        let values = [
            format!("UPSTREAM={upstream}"),
            format!("HTTP_LISTEN=127.0.0.1:{http}"),
            format!("HTTPS_LISTEN=127.0.0.1:{https}"),
            "SERVER_NAME=localhost".into(),
            format!("ACCESS_LOG={}", d.join("logs/access.log").display()),
            format!("ACME_ROOT={}", d.join("acme").display()),
            format!("TLS_CERT={}", cert.display()),
            format!("TLS_KEY={}", key.display()),
            "MAX_BODY=2048m".into(),
            "BASE_PATH=/".into(),
        ];
        let script = format!(
            "source '{}' && render_nginx '{}' '{}' \"$@\"",
            library.display(),
            template.display(),
            site.display()
        );
        let mut args = vec!["-c", &script, "render"];
        args.extend(values.iter().map(String::as_str));
        let rendered = run("bash", &args).await;
        assert!(
            rendered.status.success(),
            "render: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let tmp = d.join("tmp").display().to_string();
        let main = format!(
            "user www-data;\npid {pid};\nerror_log {err};\nevents {{}}\nhttp {{\n  client_body_temp_path {tmp};\n  proxy_temp_path {tmp};\n  fastcgi_temp_path {tmp};\n  uwsgi_temp_path {tmp};\n  scgi_temp_path {tmp};\n  include {site};\n}}\n",
            pid = d.join("nginx.pid").display(),
            err = d.join("logs/error.log").display(),
            site = site.display(),
        );
        let conf = d.join("nginx.conf");
        std::fs::write(&conf, main).unwrap();
        let conf = conf.display().to_string();
        let prefix = d.display().to_string();
        let nginx = nginx_binary();
        let checked = run(&nginx, &["-t", "-p", &prefix, "-c", &conf]).await;
        assert!(
            checked.status.success(),
            "nginx -t: {}",
            String::from_utf8_lossy(&checked.stderr)
        );
        let child = Command::new(&nginx)
            .args(["-p", &prefix, "-c", &conf, "-g", "daemon off;"])
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("nginx starts");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", https))
                .await
                .is_ok()
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Nginx { child, dir, https }
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    /// `curl` over HTTPS from 127.0.0.2, trusting only the test certificate: (status, body).
    async fn curl(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, String) {
        let url = format!("https://localhost:{}{path}", self.https);
        let resolve = format!("localhost:{}:127.0.0.1", self.https);
        let cert = self.cert().display().to_string();
        let mut args = vec![
            "-sS",
            "--interface",
            "127.0.0.2",
            "--cacert",
            &cert,
            "--resolve",
            &resolve,
            "-X",
            method,
            "-w",
            "\n%{http_code}",
        ];
        let auth = token.map(|t| format!("authorization: Bearer {t}"));
        if let Some(auth) = &auth {
            args.extend(["-H", auth]);
        }
        let data = body.map(|b| b.to_string());
        if let Some(data) = &data {
            args.extend(["-H", "content-type: application/json", "--data", data]);
        }
        args.push(&url);
        let out = run("curl", &args).await;
        assert!(
            out.status.success(),
            "curl: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.parse().unwrap(), body.to_owned())
    }
}

impl Drop for Nginx {
    /// nginx's own fast stop (SIGTERM to the master ends its workers too); killing the master
    /// would leave its workers running for ever.
    #[allow(clippy::disallowed_methods)] // Drop cannot wait for a task
    fn drop(&mut self) {
        if let Some(pid) = self
            .child
            .id()
            .and_then(|pid| rustix::process::Pid::from_raw(pid as i32))
        {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            for _ in 0..50 {
                if matches!(self.child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = self.child.start_kill();
    }
}

#[tokio::test]
async fn pocketdev_behind_the_distributions_nginx() {
    // nginx reaches pocketdev through the proxy socket, as deployed; its workers run as
    // www-data, the socket's group.
    let app = spawn_app_with(|config| {
        config.proxy_socket = Some(config.isolation.run_dir.join("http.sock"));
        config.proxy_socket_group = "www-data".into();
        config.rate_limits.login_per_minute = 1000;
        config.profiles.insert(
            "bash".into(),
            pocketdev::instances::profiles::Profile {
                name: "bash".into(),
                command: "bash".into(),
                args: vec!["--norc".into(), "--noprofile".into()],
                memory_mb: 10,
                ..Default::default()
            },
        );
    })
    .await;
    let socket = app.config.proxy_socket.clone().unwrap();
    let nginx = Nginx::start(&format!("unix:{}", socket.display())).await;

    // Sign-in and an API call over HTTPS.
    let (status, body) = nginx
        .curl(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({ "username": "admin", "password": app.admin_password })),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = serde_json::from_str::<Value>(&body).unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = nginx.curl("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(status, 200, "{body}");

    // pocketdev saw the client's address (127.0.0.2), not nginx's (127.0.0.1).
    let login = app.audit("login.success").await;
    assert_eq!(login.last().unwrap()["ip"], "127.0.0.2", "{login:?}");

    // A terminal session through nginx.
    let (status, body) = nginx
        .curl(
            "POST",
            "/api/instances",
            Some(&token),
            Some(json!({ "profile": "bash" })),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (_, body) = nginx
        .curl(
            "POST",
            &format!("/api/instances/{id}/ticket"),
            Some(&token),
            Some(json!({})),
        )
        .await;
    let ticket = serde_json::from_str::<Value>(&body).unwrap()["ticket"]
        .as_str()
        .unwrap()
        .to_owned();
    let tls = crate::helpers::trusting(&nginx.cert());
    let url = format!(
        "wss://localhost:{}/ws/instance/{id}?ticket={ticket}&cols=80&rows=24",
        nginx.https
    );
    // Browsers always send the page's Origin; pocketdev compares it with the Host nginx passes.
    let open = |origin: String| {
        let mut request = url.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        let tls = tls.clone();
        async move {
            let stream = tokio::net::TcpStream::connect(("127.0.0.1", nginx.https))
                .await
                .unwrap();
            tokio_tungstenite::client_async_tls_with_config(request, stream, None, Some(tls)).await
        }
    };
    match open("https://elsewhere.example".into()).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
        }
        other => panic!(
            "a foreign page opened the terminal: {:?}",
            other.map(|_| ())
        ),
    }
    let (mut ws, _) = open(format!("https://localhost:{}", nginx.https))
        .await
        .expect("the terminal opens through nginx from the site's own page");
    ws.send(Message::Binary(
        b"echo through-$((20+22))\r".to_vec().into(),
    ))
    .await
    .unwrap();
    let mut seen = Vec::new();
    let echoed = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(Ok(frame)) = ws.next().await {
            if let Message::Binary(bytes) = frame {
                seen.extend_from_slice(&bytes);
                if String::from_utf8_lossy(&seen).contains("through-42") {
                    return true;
                }
            }
        }
        false
    })
    .await;
    assert!(
        matches!(echoed, Ok(true)),
        "no echo: {}",
        String::from_utf8_lossy(&seen)
    );

    // The access log keeps paths only: the ticket never reaches it. (A WebSocket is logged
    // when it closes.)
    ws.close(None).await.ok();
    drop(ws);
    let log_file = nginx.dir.path().join("logs/access.log");
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(&log_file).unwrap();
        if log.contains("/ws/instance/") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(log.contains("/ws/instance/"), "{log}");
    assert!(!log.contains(&ticket), "{log}");

    // nginx's sign-in limit (10 a minute, burst 5) answers 429.
    let mut limited = false;
    for _ in 0..20 {
        let (status, _) = nginx
            .curl(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({ "username": "admin", "password": "wrong-password-1" })),
            )
            .await;
        if status == 429 {
            limited = true;
            break;
        }
        assert_eq!(status, 401);
    }
    assert!(limited, "the sign-in rate limit never answered 429");
}
