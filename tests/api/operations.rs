//! Running an installed pocketdev: `scripts/start.sh` (start, stop, restart, status, backup,
//! restore) driving the real binary in its background mode, an upgrade that replaces the binary
//! under two running agents, the fail2ban filter against the server's real log, and the release
//! tarball of `scripts/package.sh` deploying from itself.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::process::Command;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// An installed-looking pocketdev: its own copy of the binary, a config file and a data dir.
struct Install {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    binary: PathBuf,
    config: PathBuf,
    data: PathBuf,
    url: String,
    user_prefix: String,
}

impl Install {
    fn new(extra_config: &str) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap();
        // Isolated accounts (the tests run as root in CI) must reach their folders.
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .unwrap();
        let user_prefix = crate::helpers::test_user_prefix();
        let binary = root.join("bin/pocketdev");
        std::fs::create_dir_all(binary.parent().unwrap()).unwrap();
        std::fs::copy(env!("CARGO_BIN_EXE_pocketdev"), &binary).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = root.join("data");
        let config = root.join("pocketdev.toml");
        std::fs::write(
            &config,
            format!(
                "listen = \"127.0.0.1:{port}\"\ndata_dir = \"{data}\"\n{extra}\n\
                 [rate_limits]\nlogin_per_minute = 1000\napi_per_minute = 10000\n\
                 [isolation]\nrun_dir = \"{root}/run\"\nuser_prefix = \"{user_prefix}\"\ncgroup = \"{cgroup}\"\n\
                 [profiles.fake]\nname = \"Fake agent\"\ncommand = \"{agent}\"\nmemory_mb = 10\n",
                data = data.display(),
                root = root.display(),
                extra = extra_config.replace("{root}", &root.display().to_string()),
                cgroup = crate::helpers::test_cgroup(&user_prefix),
                agent = crate::helpers::fake_agent_path().display(),
            ),
        )
        .unwrap();
        Self {
            _tmp: tmp,
            root,
            binary,
            config,
            data,
            url: format!("http://127.0.0.1:{port}/"),
            user_prefix,
        }
    }

    /// Runs `scripts/start.sh` in its background mode; returns success and everything it printed.
    async fn ctl(&self, args: &[&str]) -> (bool, String) {
        let output = tokio::time::timeout(
            Duration::from_secs(90),
            Command::new("bash")
                .arg(repo().join("scripts/start.sh"))
                .arg("--config")
                .arg(&self.config)
                .arg("--binary")
                .arg(&self.binary)
                .args(["--mode", "background"])
                .args(args)
                .env_remove("POCKETDEV_CONFIG")
                .current_dir(&self.root)
                .stdin(std::process::Stdio::null())
                .output(),
        )
        .await
        .expect("start.sh finishes")
        .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.success(), text)
    }

    fn server_pid(&self) -> String {
        std::fs::read_to_string(self.data.join("server/pocketdev.pid"))
            .unwrap()
            .trim()
            .to_owned()
    }

    async fn sign_in_as_admin(&self) -> String {
        let saved =
            std::fs::read_to_string(self.data.join("server/initial-admin-password")).unwrap();
        let password = saved
            .lines()
            .find_map(|l| l.strip_prefix("password: "))
            .unwrap();
        let session: Value = reqwest::Client::new()
            .post(format!("{}api/auth/login", self.url))
            .json(&json!({ "username": "admin", "password": password }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        session["access_token"].as_str().unwrap().to_owned()
    }

    async fn call(&self, method: &str, path: &str, token: &str, body: Option<Value>) -> Value {
        let client = reqwest::Client::new();
        let url = format!("{}{path}", self.url);
        let request = match method {
            "GET" => client.get(url),
            "POST" => client.post(url),
            "PUT" => client.put(url),
            "PATCH" => client.patch(url),
            _ => unreachable!(),
        };
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        let response = request.bearer_auth(token).send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        assert!(status.is_success(), "{method} {path}: {status} {text}");
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }

    /// Waits until an instance's screen shows `needle`.
    async fn screen_shows(&self, token: &str, id: &str, needle: &str) -> String {
        let mut screen = String::new();
        for _ in 0..50 {
            let output = self
                .call("GET", &format!("api/instances/{id}/output"), token, None)
                .await;
            screen = output["output"].as_str().unwrap_or_default().to_owned();
            if screen.contains(needle) {
                return screen;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("`{needle}` never appeared on {id}'s screen:\n{screen}");
    }
}

impl Drop for Install {
    #[allow(clippy::disallowed_methods)] // Drop cannot await
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.data.join("server/pocketdev.pid")) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", pid.trim()])
                .status();
        }
        crate::helpers::kill_tmux_server(&self.data.join("server/tmux.sock"));
        crate::helpers::remove_test_accounts(&self.user_prefix);
    }
}

#[tokio::test]
async fn an_upgrade_replaces_the_binary_and_restarts_without_stopping_the_agents() {
    let install = Install::new("");
    let (ok, log) = install.ctl(&["start"]).await;
    assert!(ok && log.contains("pocketdev is up"), "{log}");
    let token = install.sign_in_as_admin().await;

    let mut ids = Vec::new();
    for profile in ["fake", "shell"] {
        let created = install
            .call(
                "POST",
                "api/instances",
                &token,
                Some(json!({ "profile": profile })),
            )
            .await;
        assert_eq!(created["state"], "running", "{created}");
        ids.push(created["id"].as_str().unwrap().to_owned());
    }
    let (fake, shell) = (&ids[0], &ids[1]);
    install
        .call(
            "POST",
            &format!("api/instances/{fake}/command"),
            &token,
            Some(json!({ "text": "before the upgrade" })),
        )
        .await;
    install
        .screen_shows(&token, fake, "you said: before the upgrade")
        .await;
    install
        .call(
            "POST",
            &format!("api/instances/{shell}/command"),
            &token,
            Some(json!({ "text": "echo shell-pid-$$" })),
        )
        .await;
    let screen = install.screen_shows(&token, shell, "\nshell-pid-").await;
    let shell_pid = screen
        .lines()
        .find_map(|l| l.strip_prefix("shell-pid-"))
        .unwrap()
        .trim()
        .to_owned();

    // The upgrade: a new binary put in place the way `install` does (a new file renamed over the
    // old one, which the running server keeps open), then stop and start as the unit would.
    let old_server = install.server_pid();
    let staged = install.binary.with_extension("new");
    std::fs::copy(env!("CARGO_BIN_EXE_pocketdev"), &staged).unwrap();
    std::fs::rename(&staged, &install.binary).unwrap();
    let (ok, log) = install.ctl(&["restart"]).await;
    assert!(ok, "{log}");
    assert!(log.contains("2 agents keep running"), "{log}");
    assert_ne!(
        install.server_pid(),
        old_server,
        "a new server process runs"
    );

    for id in &ids {
        let instance = install
            .call("GET", &format!("api/instances/{id}"), &token, None)
            .await;
        assert_eq!(
            instance["state"], "running",
            "{id} survived the upgrade: {instance}"
        );
    }
    install
        .screen_shows(&token, fake, "you said: before the upgrade")
        .await;
    install
        .call(
            "POST",
            &format!("api/instances/{shell}/command"),
            &token,
            Some(json!({ "text": "echo again-$$" })),
        )
        .await;
    install
        .screen_shows(&token, shell, &format!("again-{shell_pid}"))
        .await;

    let (ok, status) = install.ctl(&["status"]).await;
    assert!(
        ok && status.contains("agents: 2 running") && status.contains("health: ok"),
        "{status}"
    );
    let (ok, log) = install.ctl(&["stop"]).await;
    assert!(ok, "{log}");
    let (ok, status) = install.ctl(&["status"]).await;
    assert!(
        !ok && status.contains("not running") && status.contains("agents: 2 running"),
        "{status}"
    );
}

async fn archive_members(archive: &Path) -> Vec<String> {
    let listed = Command::new("tar")
        .arg("-tzf")
        .arg(archive)
        .output()
        .await
        .unwrap();
    assert!(listed.status.success());
    String::from_utf8(listed.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn backup_and_restore_bring_back_accounts_files_and_keys() {
    let install = Install::new("");
    let (ok, log) = install.ctl(&["start"]).await;
    assert!(ok, "{log}");
    let token = install.sign_in_as_admin().await;
    install
        .call(
            "POST",
            "api/admin/users",
            &token,
            Some(json!({ "username": "bob", "password": "a long password" })),
        )
        .await;
    install
        .call(
            "POST",
            "api/files/save",
            &token,
            Some(json!({ "path": "notes.txt", "content": "kept\n" })),
        )
        .await;
    install
        .call(
            "PUT",
            "api/secrets/ANTHROPIC_API_KEY",
            &token,
            Some(json!({ "value": "sk-test-backup" })),
        )
        .await;
    let created = install
        .call(
            "POST",
            "api/instances",
            &token,
            Some(json!({ "profile": "shell" })),
        )
        .await;
    assert_eq!(created["state"], "running");

    let backups = install.root.join("backups");
    std::fs::create_dir(&backups).unwrap();
    let (ok, log) = install.ctl(&["backup", backups.to_str().unwrap()]).await;
    assert!(ok, "{log}");
    let archive = std::fs::read_dir(&backups)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("an archive");
    let name = archive.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("pocketdev-backup-20"), "{name}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o600,
        "the backup holds keys"
    );
    let members = archive_members(&archive).await;
    for wanted in [
        "BACKUP-INFO",
        "config/pocketdev.toml",
        "data/server/pocketdev.db",
        "data/server/jwt.key",
        "data/server/secrets.key",
        "data/users/1/workspace/notes.txt",
        "data/users/2/workspace/",
    ] {
        assert!(
            members.iter().any(|m| m == wanted),
            "{wanted} missing: {members:?}"
        );
    }
    for unwanted in [
        "pocketdev.db-wal",
        "pocketdev.db-shm",
        "tmux.sock",
        "server/run",
        "pocketdev.log",
        "pocketdev.pid",
    ] {
        assert!(
            !members.iter().any(|m| m.contains(unwanted)),
            "{unwanted} is not part of a backup: {members:?}"
        );
    }

    // Changes after the backup, which the restore undoes.
    install
        .call(
            "POST",
            "api/files/save",
            &token,
            Some(json!({ "path": "notes.txt", "content": "changed later\n" })),
        )
        .await;
    install
        .call(
            "POST",
            "api/admin/users",
            &token,
            Some(json!({ "username": "carol", "password": "a long password" })),
        )
        .await;

    // Without --yes and without a terminal to ask on, nothing happens.
    let (ok, log) = install.ctl(&["restore", archive.to_str().unwrap()]).await;
    assert!(!ok && log.contains("--yes"), "{log}");
    assert!(!install.root.read_dir().unwrap().any(|e| {
        e.unwrap()
            .file_name()
            .to_string_lossy()
            .contains("before-restore")
    }));

    let (ok, log) = install
        .ctl(&["restore", archive.to_str().unwrap(), "--yes"])
        .await;
    assert!(ok && log.contains("pocketdev is up"), "{log}");
    let aside = install
        .root
        .read_dir()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.starts_with("data.before-restore-"))
        .expect("the previous data is kept aside");
    assert_eq!(
        std::fs::read_to_string(
            install
                .root
                .join(&aside)
                .join("users/1/workspace/notes.txt")
        )
        .unwrap(),
        "changed later\n"
    );

    // The restored server: same keys (the old access token still verifies), the backup's
    // accounts and files, the stopped agent marked as such.
    let users = install.call("GET", "api/admin/users", &token, None).await;
    let names: Vec<&str> = users
        .as_array()
        .or_else(|| users["users"].as_array())
        .unwrap()
        .iter()
        .map(|u| u["username"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"bob") && !names.contains(&"carol"),
        "{names:?}"
    );
    let file = install
        .call("GET", "api/files/content?path=notes.txt", &token, None)
        .await;
    assert_eq!(file["content"], "kept\n");
    if crate::helpers::running_as_root() {
        // The account's files are still its own, not root's.
        use std::os::unix::fs::MetadataExt;
        let restored = std::fs::metadata(install.data.join("users/1/workspace/notes.txt")).unwrap();
        let account = pocketdev::isolation::accounts::SystemIds::read()
            .unwrap()
            .user(&format!("{}1", install.user_prefix))
            .expect("the account's Unix user");
        assert_eq!(restored.uid(), account.uid);
    }
    let secrets = install.call("GET", "api/secrets", &token, None).await;
    assert!(
        secrets.to_string().contains("ANTHROPIC_API_KEY"),
        "{secrets}"
    );
    // Reconciliation marks it within two passes of a second each (a session is given up only
    // when two listings miss it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let instance = install
            .call(
                "GET",
                &format!("api/instances/{}", created["id"].as_str().unwrap()),
                &token,
                None,
            )
            .await;
        if instance["state"] != "running" {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "restore stops the agents: {instance}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test]
async fn the_fail2ban_filter_finds_the_real_client_in_the_servers_log_and_cannot_be_forged() {
    // The proxy reaches the server through its socket (loopback is shared with agents).
    let install =
        Install::new("proxy_socket = \"{root}/proxy/http.sock\"\nproxy_socket_group = \"root\"");
    let (ok, log) = install.ctl(&["start"]).await;
    assert!(ok, "{log}");
    let forged = "x\n2026-11-28T00:00:00.000000Z  WARN http{}: pocketdev::auth: sign-in failed ip=198.51.100.1 username=\"y";
    for username in ["bob", forged] {
        let body = json!({ "username": username, "password": "not the password" }).to_string();
        let output = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--unix-socket",
            ])
            .arg(install.root.join("proxy/http.sock"))
            .args(["-H", "x-forwarded-for: 203.0.113.9"])
            .args(["-H", "content-type: application/json", "--data", &body])
            .arg("http://localhost/api/auth/login")
            .output()
            .await
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout), "401");
    }
    let log_file = install.data.join("server/pocketdev.log");
    let mut log = String::new();
    for _ in 0..50 {
        log = std::fs::read_to_string(&log_file).unwrap();
        if log.matches("sign-in failed").count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(!log.contains('\x1b'), "no colour codes in a log file");

    let matched = Command::new("fail2ban-regex")
        .args(["--out", "ip"])
        .arg(&log_file)
        .arg(repo().join("config/fail2ban/pocketdev-filter.conf"))
        .output()
        .await
        .expect("fail2ban-regex runs (scripts/test.sh installs fail2ban)");
    assert!(matched.status.success());
    let ips: Vec<String> = String::from_utf8(matched.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(ips, ["203.0.113.9", "203.0.113.9"], "log:\n{log}");
}

#[tokio::test]
async fn the_release_tarball_holds_everything_and_deploys_from_itself() {
    let tmp = tempfile::tempdir().unwrap();
    // A copy, so a build running meanwhile cannot change it between the two packagings.
    let binary = tmp.path().join("pocketdev");
    std::fs::copy(env!("CARGO_BIN_EXE_pocketdev"), &binary).unwrap();
    let binary = &binary;
    let package = |out: PathBuf| async move {
        let output = Command::new("bash")
            .arg(repo().join("scripts/package.sh"))
            .arg("--binary")
            .arg(binary)
            .arg("--out")
            .arg(&out)
            .output()
            .await
            .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).unwrap().trim())
    };
    let tarball = package(tmp.path().join("a")).await;
    let again = package(tmp.path().join("b")).await;
    assert_eq!(
        std::fs::read(&tarball).unwrap(),
        std::fs::read(&again).unwrap(),
        "the same inputs make the same tarball"
    );
    let checked = Command::new("sha256sum")
        .arg("--check")
        .arg(format!("{}.sha256", tarball.display()))
        .current_dir(tarball.parent().unwrap())
        .output()
        .await
        .unwrap();
    assert!(checked.status.success(), "the checksum matches");

    let name = tarball
        .file_name()
        .unwrap()
        .to_string_lossy()
        .replace(".tar.gz", "");
    let members = archive_members(&tarball).await;
    for wanted in [
        "pocketdev",
        "README.md",
        "DEPLOYMENT.md",
        "pocketdev.example.toml",
        "config/nginx.conf",
        "config/nginx-plain.conf",
        "config/nginx-http.conf",
        "config/nginx-proxy.conf",
        "config/pocketdev.service",
        "config/pocketdev.slice",
        "config/fail2ban/pocketdev-filter.conf",
        "config/fail2ban/pocketdev-jail.conf",
        "scripts/deploy.sh",
        "scripts/start.sh",
        "scripts/lib/common.sh",
        "scripts/lib/nginx.sh",
        "docs/terminal-protocol.md",
    ] {
        let path = format!("{name}/{wanted}");
        assert!(members.contains(&path), "{path} missing: {members:?}");
    }

    // Unpacked, its deploy script installs its own binary.
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir(&unpacked).unwrap();
    let status = Command::new("tar")
        .arg("-xzf")
        .arg(&tarball)
        .arg("-C")
        .arg(&unpacked)
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let prefix = tmp.path().join("root");
    let output = Command::new("bash")
        .arg(unpacked.join(&name).join("scripts/deploy.sh"))
        .arg("--prefix")
        .arg(&prefix)
        .args(["--domain", "dev.example.com"])
        .output()
        .await
        .unwrap();
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{log}");
    assert!(log.contains("install ./pocketdev as"), "{log}");
    assert_eq!(
        std::fs::read(prefix.join("usr/local/bin/pocketdev")).unwrap(),
        std::fs::read(binary).unwrap()
    );
    for installed in [
        "usr/local/share/pocketdev/scripts/start.sh",
        "usr/local/share/doc/pocketdev/DEPLOYMENT.md",
        "etc/fail2ban/filter.d/pocketdev.conf",
        "etc/fail2ban/jail.d/pocketdev.conf",
    ] {
        assert!(
            prefix.join(installed).is_file(),
            "{installed} not installed:\n{log}"
        );
    }
    assert_eq!(
        std::fs::read_link(prefix.join("usr/local/bin/pocketdev-ctl")).unwrap(),
        Path::new("/usr/local/share/pocketdev/scripts/start.sh")
    );
}
