//! `scripts/deploy.sh` on this machine under a prefix: the dry run prints the whole plan and
//! changes nothing; a real run under the prefix lays out every file with the right modes, keeps
//! an existing config on a re-run, and writes an nginx site that nginx accepts.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use tokio::process::Command;

async fn deploy(args: &[&str]) -> (bool, String) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let output = Command::new("bash")
        .arg(root.join("scripts/deploy.sh"))
        .args(args)
        .output()
        .await
        .expect("bash runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[tokio::test]
async fn the_dry_run_prints_every_step_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let prefix = root.path().display().to_string();
    let binary = env!("CARGO_BIN_EXE_pocketdev");
    let (ok, plan) = deploy(&[
        "--dry-run",
        "--prefix",
        &prefix,
        "--binary",
        binary,
        "--domain",
        "dev.example.com",
        "--email",
        "me@example.com",
    ])
    .await;
    assert!(ok, "{plan}");
    for expected in [
        "dry run: nothing is changed",
        "install what is missing of tmux nginx passwd git openssh-client certbot from the distribution (skipped: dry run)",
        &format!("{prefix}/usr/local/bin/pocketdev"),
        "creates a Unix user per account",
        &format!("write {prefix}/etc/pocketdev/pocketdev.toml (0640)"),
        &format!("create {prefix}/var/lib/pocketdev (0711"),
        &format!("create {prefix}/var/lib/pocketdev/server (0700"),
        &format!("install {prefix}/etc/systemd/system/pocketdev.service"),
        &format!("install {prefix}/etc/systemd/system/pocketdev.slice"),
        "enable and (re)start pocketdev (skipped: dry run)",
        "/etc/letsencrypt/live/dev.example.com/fullchain.pem",
        "write the HTTPS site",
        "start or reload nginx (skipped: dry run)",
        &format!("install scripts/start.sh as {prefix}/usr/local/bin/pocketdev-ctl"),
        &format!("install DEPLOYMENT.md and README.md in {prefix}/usr/local/share/doc/pocketdev"),
        &format!(
            "install the fail2ban filter and jail for failed sign-ins in {prefix}/etc/fail2ban"
        ),
        "pocketdev: https://dev.example.com/",
        "initial-admin-password",
    ] {
        assert!(
            plan.contains(expected),
            "the plan lacks `{expected}`:\n{plan}"
        );
    }
    assert_eq!(
        std::fs::read_dir(root.path()).unwrap().count(),
        0,
        "a dry run writes nothing"
    );

    // On the real root, as a newcomer would first run it: the certificate still to get.
    let (ok, plan) = deploy(&[
        "--dry-run",
        "--binary",
        binary,
        "--domain",
        "dev.example.com",
        "--email",
        "me@example.com",
    ])
    .await;
    assert!(ok, "{plan}");
    for expected in [
        &format!("install {binary} as /usr/local/bin/pocketdev"),
        "/etc/pocketdev/pocketdev.toml",
        "get a certificate for dev.example.com from Let's Encrypt (skipped: dry run)",
        "write the HTTPS site for dev.example.com",
        "9. done",
    ] {
        assert!(
            plan.contains(expected),
            "the plan lacks `{expected}`:\n{plan}"
        );
    }

    let (ok, refused) = deploy(&["--dry-run", "--prefix", &prefix]).await;
    assert!(!ok && refused.contains("--domain"), "{refused}");
}

#[tokio::test]
async fn a_run_under_a_prefix_lays_out_the_files() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    let prefix = r.display().to_string();
    let binary = env!("CARGO_BIN_EXE_pocketdev");
    let args = [
        "--prefix",
        &prefix,
        "--binary",
        binary,
        "--domain",
        "dev.example.com",
    ];
    let (ok, log) = deploy(&args).await;
    assert!(ok, "{log}");
    assert_eq!(mode(&r.join("etc/pocketdev")), 0o750);
    assert_eq!(mode(&r.join("etc/pocketdev/pocketdev.toml")), 0o640);
    assert_eq!(mode(&r.join("var/lib/pocketdev")), 0o711);
    assert_eq!(mode(&r.join("var/lib/pocketdev/server")), 0o700);
    assert_eq!(mode(&r.join("usr/local/bin/pocketdev")), 0o755);
    assert!(r.join("etc/systemd/system/pocketdev.service").is_file());
    let config = std::fs::read_to_string(r.join("etc/pocketdev/pocketdev.toml")).unwrap();
    assert!(
        config.contains("proxy_socket = \"/run/pocketdev/http.sock\"")
            && !config.contains("trusted_proxies"),
        "{config}"
    );
    let link = std::fs::read_link(r.join("etc/nginx/sites-enabled/pocketdev")).unwrap();
    assert_eq!(link, Path::new("/etc/nginx/sites-available/pocketdev"));

    // The config it wrote is one pocketdev accepts.
    let checked = Command::new(binary)
        .arg("--config")
        .arg(r.join("etc/pocketdev/pocketdev.toml"))
        .arg("config")
        .output()
        .await
        .unwrap();
    assert!(
        checked.status.success(),
        "{}",
        String::from_utf8_lossy(&checked.stderr)
    );

    // The site is valid nginx once its certificate exists.
    let site = std::fs::read_to_string(r.join("etc/nginx/sites-available/pocketdev")).unwrap();
    assert!(
        site.contains("server_name dev.example.com;") && !site.contains("{{"),
        "{site}"
    );

    // Re-running upgrades and keeps the config someone may have edited.
    std::fs::write(
        r.join("etc/pocketdev/pocketdev.toml"),
        "# edited\nlisten = \"127.0.0.1:9000\"\n",
    )
    .unwrap();
    let (ok, log) = deploy(&args).await;
    assert!(ok && log.contains("keep the existing"), "{log}");
    let kept = std::fs::read_to_string(r.join("etc/pocketdev/pocketdev.toml")).unwrap();
    assert!(kept.starts_with("# edited"));

    // A config from an earlier deploy let nginx in over loopback, which agents share: the
    // upgrade moves nginx to the proxy socket and keeps the rest.
    std::fs::write(
        r.join("etc/pocketdev/pocketdev.toml"),
        "# edited\ntrusted_proxies = [\"127.0.0.1/32\"]\n[limits]\nmax_total = 3\n",
    )
    .unwrap();
    let (ok, log) = deploy(&args).await;
    assert!(ok && log.contains("instead of loopback"), "{log}");
    let moved = std::fs::read_to_string(r.join("etc/pocketdev/pocketdev.toml")).unwrap();
    assert_eq!(
        moved,
        "# edited\nproxy_socket = \"/run/pocketdev/http.sock\"\n[limits]\nmax_total = 3\n"
    );

    // Without TLS: a loud warning and a plain HTTP site, which takes port 80 from the
    // distribution's default site (both claim default_server).
    let plain = tempfile::tempdir().unwrap();
    let enabled = plain.path().join("etc/nginx/sites-enabled");
    std::fs::create_dir_all(&enabled).unwrap();
    std::os::unix::fs::symlink(
        "/etc/nginx/sites-available/default",
        enabled.join("default"),
    )
    .unwrap();
    let plain_prefix = plain.path().display().to_string();
    let (ok, log) = deploy(&["--prefix", &plain_prefix, "--binary", binary, "--no-tls"]).await;
    assert!(ok && log.contains("WARNING: --no-tls"), "{log}");
    assert!(
        log.contains("disabled the distribution's default site"),
        "{log}"
    );
    assert!(!enabled.join("default").exists());
    let site =
        std::fs::read_to_string(plain.path().join("etc/nginx/sites-available/pocketdev")).unwrap();
    let websocket = site.split("location /ws/").nth(1).unwrap_or_default();
    assert!(
        site.contains("listen 80 default_server;")
            && site.contains("access_log /var/log/nginx/pocketdev.access.log pocketdev;")
            && websocket.contains("proxy_set_header Host $http_host;")
            && websocket.contains("proxy_set_header X-Forwarded-For $remote_addr;"),
        "{site}"
    );

    // Your own certificate instead of Let's Encrypt's.
    let own = tempfile::tempdir().unwrap();
    let own_prefix = own.path().display().to_string();
    let (ok, log) = deploy(&[
        "--dry-run",
        "--prefix",
        &own_prefix,
        "--binary",
        binary,
        "--domain",
        "dev.example.com",
        "--cert",
        "/etc/ssl/mine/fullchain.pem",
        "--key",
        "/etc/ssl/mine/key.pem",
    ])
    .await;
    assert!(
        ok && log.contains("/etc/ssl/mine/fullchain.pem (yours") && !log.contains("certbot"),
        "{log}"
    );
}
