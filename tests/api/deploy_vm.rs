//! The deploy path on a booted Debian 12 server: systemd as PID 1, Debian's kernel and
//! initramfs (so /run is mounted noexec, as on a VPS), cgroup v2, Debian's nginx with its
//! default site enabled. The release tarball from `scripts/package.sh` is copied in and
//! `deploy.sh` runs as a newcomer would run it: first `--no-tls`, then with a certificate. From
//! outside the guest, through nginx: sign in, start a shell, type into its terminal over a
//! WebSocket carrying a browser's Origin; then `systemctl restart pocketdev`, a second deploy
//! (the upgrade) and a reboot, with what each must keep.
//!
//! The guest (tests/vm/image.sh) is built once and cached outside the clone; each run boots a
//! copy-on-write overlay of it under qemu (emulated unless POCKETDEV_TEST_VM_ACCEL=kvm) on a
//! network of its own that reaches nothing outside (only the ports this test forwards from
//! loopback). When the machine cannot boot a guest, the test fails and says why.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const DOMAIN: &str = "pocketdev.test";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("POCKETDEV_TEST_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/var/cache"));
    base.join("pocketdev-test")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A booted guest, powered off when dropped.
struct Guest {
    qemu: Child,
    dir: tempfile::TempDir,
    key: PathBuf,
    ssh_port: u16,
    http_port: u16,
    https_port: u16,
}

impl Guest {
    async fn boot() -> Guest {
        let cache = cache_dir();
        let built = Command::new("bash")
            .arg(repo().join("tests/vm/image.sh"))
            .arg(&cache)
            .output()
            .await
            .expect("bash runs");
        assert!(
            built.status.success(),
            "cannot build the Debian 12 guest (tests/vm/image.sh; it needs root, debootstrap and \
             the distribution's registry): {}",
            text(&built)
        );
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("disk.qcow2");
        let made = Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(cache.join("debian12.img"))
            .arg(&overlay)
            .output()
            .await
            .expect("qemu-img runs (apt-get install qemu-utils)");
        assert!(made.status.success(), "qemu-img: {}", text(&made));
        let (ssh_port, http_port, https_port) = (free_port(), free_port(), free_port());
        // Emulation by default: nested KVM under some hypervisors hangs the guest's kernel
        // instead of failing. POCKETDEV_TEST_VM_ACCEL=kvm is about ten times faster where KVM
        // works.
        let accel = std::env::var("POCKETDEV_TEST_VM_ACCEL").unwrap_or_else(|_| "tcg".into());
        let network = format!(
            "user,model=virtio-net-pci,restrict=on,hostfwd=tcp:127.0.0.1:{ssh_port}-:22,\
             hostfwd=tcp:127.0.0.1:{http_port}-:80,hostfwd=tcp:127.0.0.1:{https_port}-:443"
        );
        let qemu = Command::new("qemu-system-x86_64")
            .args(["-machine", &format!("q35,accel={accel}")])
            .args([
                "-m", "4096", "-smp", "2", "-display", "none", "-monitor", "none",
            ])
            .arg("-kernel")
            .arg(cache.join("vmlinuz"))
            .arg("-initrd")
            .arg(cache.join("initrd.img"))
            // Under emulation on a busy host the kernel's check of the timer interrupt can
            // fail and panic ("IO-APIC + timer doesn't work"); cloud images skip it the same way.
            .args([
                "-append",
                "root=/dev/vda rw console=ttyS0 quiet no_timer_check",
            ])
            .arg("-drive")
            .arg(format!("file={},if=virtio,format=qcow2", overlay.display()))
            .args(["-nic", &network])
            .arg("-serial")
            .arg(format!("file:{}", dir.path().join("console.log").display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("qemu-system-x86_64 runs (apt-get install qemu-system-x86)");
        let mut guest = Guest {
            qemu,
            dir,
            key: cache.join("id_ed25519"),
            ssh_port,
            http_port,
            https_port,
        };
        guest.wait_for_ssh(Duration::from_secs(600)).await;
        guest
    }

    fn console(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("console.log")).unwrap_or_default()
    }

    fn ssh_args(&self) -> Vec<String> {
        [
            "-i",
            &self.key.display().to_string(),
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
        ]
        .map(String::from)
        .to_vec()
    }

    async fn wait_for_ssh(&mut self, within: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.qemu.try_wait() {
                panic!(
                    "qemu ended ({status}) before the guest booted; this machine cannot boot a \
                     guest: {}",
                    self.console()
                );
            }
            if self
                .try_ssh("systemctl is-system-running --wait >/dev/null; true")
                .await
            {
                return;
            }
            let console = self.console();
            assert!(
                !console.contains("Kernel panic"),
                "the guest's kernel panicked while booting:\n{console}"
            );
            assert!(
                start.elapsed() < within,
                "the guest did not answer SSH within {} s; its console:\n{}",
                within.as_secs(),
                self.console()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
    }

    async fn try_ssh(&self, command: &str) -> bool {
        Command::new("ssh")
            .args(self.ssh_args())
            .args(["-p", &self.ssh_port.to_string(), "root@127.0.0.1", command])
            .stdin(Stdio::null())
            .output()
            .await
            .is_ok_and(|o| o.status.success())
    }

    /// Runs `command` as root in the guest: (success, stdout and stderr).
    async fn ssh(&self, command: &str) -> (bool, String) {
        let output = tokio::time::timeout(
            Duration::from_secs(600),
            Command::new("ssh")
                .args(self.ssh_args())
                .args(["-p", &self.ssh_port.to_string(), "root@127.0.0.1", command])
                .stdin(Stdio::null())
                .output(),
        )
        .await
        .unwrap_or_else(|_| panic!("`{command}` did not end within 10 minutes"))
        .expect("ssh runs (apt-get install openssh-client)");
        (output.status.success(), text(&output))
    }

    async fn ok(&self, command: &str) -> String {
        let (ok, out) = self.ssh(command).await;
        assert!(ok, "`{command}` failed in the guest:\n{out}");
        out
    }

    async fn copy_in(&self, from: &Path, to: &str) {
        let output = Command::new("scp")
            .args(self.ssh_args())
            .args(["-P", &self.ssh_port.to_string()])
            .arg(from)
            .arg(format!("root@127.0.0.1:{to}"))
            .output()
            .await
            .expect("scp runs");
        assert!(output.status.success(), "scp: {}", text(&output));
    }

    /// Reboots and waits until the guest answers again.
    async fn reboot(&mut self) {
        let before = self.ok("cat /proc/sys/kernel/random/boot_id").await;
        let _ = self.ssh("systemctl reboot").await;
        let start = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let (ok, now) = self.ssh("cat /proc/sys/kernel/random/boot_id").await;
            if ok && now != before {
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(600),
                "the guest did not come back from the reboot; console:\n{}",
                self.console()
            );
        }
        self.wait_for_ssh(Duration::from_secs(600)).await;
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        let _ = self.qemu.start_kill();
    }
}

/// How the test reaches the guest's nginx: plain HTTP by address, or HTTPS by name.
#[derive(Clone)]
struct Site {
    /// What the browser's address bar holds (scheme, host and port).
    origin: String,
    port: u16,
    /// For HTTPS: the certificate to trust, and the name it is for.
    tls: Option<PathBuf>,
}

impl Site {
    /// `curl` from the host: (status, body).
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.origin);
        let resolve = format!("{DOMAIN}:{}:127.0.0.1", self.port);
        let mut args: Vec<String> = [
            "-sS",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            "--max-time",
            "30",
        ]
        .map(String::from)
        .to_vec();
        if let Some(cert) = &self.tls {
            args.extend(["--cacert".into(), cert.display().to_string()]);
            args.extend(["--resolve".into(), resolve]);
        }
        if let Some(token) = token {
            args.extend(["-H".into(), format!("authorization: Bearer {token}")]);
        }
        if let Some(body) = body {
            args.extend(["-H".into(), "content-type: application/json".into()]);
            args.extend(["--data".into(), body.to_string()]);
        }
        args.push(url);
        let out = Command::new("curl")
            .args(&args)
            .output()
            .await
            .expect("curl runs");
        assert!(out.status.success(), "curl {method} {path}: {}", text(&out));
        let all = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = all.rsplit_once('\n').unwrap();
        (
            status.parse().unwrap(),
            serde_json::from_str(body).unwrap_or(Value::String(body.to_owned())),
        )
    }

    async fn sign_in(&self, password: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({ "username": "admin", "password": password })),
            )
            .await;
        assert_eq!(status, 200, "sign-in through nginx: {body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// Waits for pocketdev to answer through nginx (after a restart or a boot).
    async fn wait_healthy(&self) {
        let start = Instant::now();
        loop {
            let (status, _) = self.call("GET", "/api/health", None, None).await;
            if status == 200 {
                return;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "pocketdev never became healthy ({status})"
            );
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// Opens the instance's terminal as a browser would (its page's Origin), types `line` and
    /// answers what followed until `expect` showed.
    async fn type_line(&self, token: &str, id: &str, line: &str, expect: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                &format!("/api/instances/{id}/ticket"),
                Some(token),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 201, "ticket: {body}");
        let ticket = body["ticket"].as_str().unwrap();
        let ws_origin = self.origin.replacen("http", "ws", 1);
        let url = format!("{ws_origin}/ws/instance/{id}?ticket={ticket}&cols=100&rows=30");
        let mut request = url.into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", self.origin.parse().unwrap());
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .unwrap();
        let connector = self.tls.as_deref().map(crate::helpers::trusting);
        let (mut ws, _) =
            tokio_tungstenite::client_async_tls_with_config(request, stream, None, connector)
                .await
                .unwrap_or_else(|e| {
                    panic!(
                        "the terminal did not open through nginx with Origin {}: {e}",
                        self.origin
                    )
                });
        // The snapshot first, then what the line prints.
        tokio::time::sleep(Duration::from_millis(300)).await;
        ws.send(Message::Binary(format!("{line}\r").into_bytes().into()))
            .await
            .unwrap();
        let mut seen = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Binary(bytes) = frame {
                    seen.extend_from_slice(&bytes);
                    if String::from_utf8_lossy(&seen).contains(expect) {
                        return true;
                    }
                }
            }
            false
        })
        .await;
        let seen = String::from_utf8_lossy(&seen).into_owned();
        assert!(matches!(found, Ok(true)), "`{expect}` never showed: {seen}");
        let _ = ws.close(None).await;
        seen
    }
}

impl Site {
    /// Types `echo <marker>-$((40+2))-$$` and answers the shell's pid; the marker is computed by
    /// the shell, so the echoed command line never matches it.
    async fn shell_pid(&self, token: &str, id: &str, marker: &str) -> String {
        let printed = format!("{marker}-42-");
        let screen = self
            .type_line(token, id, &format!("echo {marker}-$((40+2))-$$"), &printed)
            .await;
        let at = screen.rfind(&printed).unwrap() + printed.len();
        let pid: String = screen[at..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        assert!(!pid.is_empty(), "no pid after {printed}: {screen}");
        pid
    }
}

#[tokio::test]
async fn a_first_install_upgrade_and_reboot_on_a_booted_debian_12() {
    if std::env::var_os("POCKETDEV_SKIP_VM").is_some() {
        eprintln!("SKIPPED: POCKETDEV_SKIP_VM is set; the deploy was not tried on a booted guest");
        return;
    }
    assert!(
        rustix::process::geteuid().is_root(),
        "the deploy test builds and boots a Debian 12 guest, which needs root (debootstrap); \
         run the tests as root, or set POCKETDEV_SKIP_VM=1 to leave it out"
    );

    // The release tarball, as a user downloads it.
    let dist = tempfile::tempdir().unwrap();
    let packed = Command::new("bash")
        .arg(repo().join("scripts/package.sh"))
        .args(["--binary", env!("CARGO_BIN_EXE_pocketdev")])
        .arg("--out")
        .arg(dist.path())
        .output()
        .await
        .unwrap();
    assert!(packed.status.success(), "package.sh: {}", text(&packed));
    let tarball = std::fs::read_dir(dist.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .expect("a tarball");
    let name = tarball.file_name().unwrap().to_string_lossy().into_owned();

    let mut guest = Guest::boot().await;

    // What a VPS is like, which containers hide.
    let run_options = guest.ok("findmnt -no OPTIONS /run").await;
    assert!(
        run_options.contains("noexec"),
        "/run is not noexec here: {run_options}"
    );
    assert!(
        guest
            .ok("readlink /etc/nginx/sites-enabled/default")
            .await
            .contains("sites-available/default")
    );

    // The data dir on a volume of its own that keeps user quotas (as a VPS's data disk may),
    // so isolation.disk_mb can hold; it comes back at boot like any volume in fstab.
    guest
        .ok(
            "truncate -s 1G /srv/pocketdev-data.img \
             && mkfs.ext4 -q -O quota -E quotatype=usrquota /srv/pocketdev-data.img \
             && mkdir -p /var/lib/pocketdev \
             && echo '/srv/pocketdev-data.img /var/lib/pocketdev ext4 loop,usrquota 0 2' >> /etc/fstab \
             && mount /var/lib/pocketdev && findmnt -no OPTIONS /var/lib/pocketdev",
        )
        .await;

    guest.copy_in(&tarball, "/root/").await;
    guest
        .copy_in(
            &PathBuf::from(format!("{}.sha256", tarball.display())),
            "/root/",
        )
        .await;
    let folder = name.trim_end_matches(".tar.gz");
    guest
        .ok(&format!(
            "cd /root && sha256sum -c {name}.sha256 && tar xzf {name}"
        ))
        .await;

    // 1. First install, plain HTTP: one command; it prints the address and the password.
    let first = guest
        .ok(&format!(
            "cd /root/{folder} && ./scripts/deploy.sh --no-tls 2>&1"
        ))
        .await;
    assert!(
        first.contains("disabled the distribution's default site"),
        "{first}"
    );
    let password = first
        .lines()
        .find_map(|l| l.split_once("password: ").map(|(_, p)| p.trim().to_owned()))
        .unwrap_or_else(|| panic!("no password printed:\n{first}"));
    // The machine's own address, not a placeholder.
    let url = first
        .lines()
        .find_map(|l| {
            l.split_once("pocketdev: http://")
                .map(|(_, rest)| rest.to_owned())
        })
        .unwrap_or_default();
    assert!(
        url.starts_with(|c: char| c.is_ascii_digit()),
        "the address is printed: {first}"
    );
    let journal = guest.ok("journalctl -u pocketdev --no-pager").await;
    assert!(
        !journal.contains(&password),
        "the password reached the journal:\n{journal}"
    );

    let plain = Site {
        origin: format!("http://127.0.0.1:{}", guest.http_port),
        port: guest.http_port,
        tls: None,
    };
    plain.wait_healthy().await;
    let token = plain.sign_in(&password).await;
    let (status, created) = plain
        .call(
            "POST",
            "/api/instances",
            Some(&token),
            Some(json!({ "profile": "shell" })),
        )
        .await;
    assert_eq!(status, 201, "a shell starts on a stock server: {created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let pid = plain.shell_pid(&token, &id, "first").await;
    // The file API works under the service's sandbox (its system-call filters included).
    let (status, saved) = plain
        .call(
            "POST",
            "/api/files/save",
            Some(&token),
            Some(json!({ "path": "hello.txt", "content": "from the phone\n" })),
        )
        .await;
    assert_eq!(status, 200, "a save on a stock server: {saved}");
    let (status, read) = plain
        .call(
            "GET",
            "/api/files/content?path=hello.txt",
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{read}");
    assert_eq!(read["content"], "from the phone\n", "{read}");

    // The agent runs as the account, in the account's group under the cap for all accounts.
    let status_file = guest
        .ok(&format!("cat /proc/{pid}/status /proc/{pid}/cgroup"))
        .await;
    assert!(status_file.contains("0::/pocketdev/pd-"), "{status_file}");
    assert!(
        !status_file.lines().any(|l| l.starts_with("Uid:\t0")),
        "{status_file}"
    );
    let cap: u64 = guest
        .ok("cat /sys/fs/cgroup/pocketdev/memory.max")
        .await
        .trim()
        .parse()
        .unwrap();
    let total_kb: u64 = guest
        .ok("awk '/MemTotal/ {print $2}' /proc/meminfo")
        .await
        .trim()
        .parse()
        .unwrap();
    let total = total_kb * 1024;
    assert!(
        cap < total && cap > total / 2,
        "all accounts' cap {cap} of {total}"
    );

    // The access log is pocketdev's own, without the ticket's query string.
    let log = guest.ok("cat /var/log/nginx/pocketdev.access.log").await;
    assert!(
        log.contains("/ws/instance/") && !log.contains("ticket="),
        "{log}"
    );

    // 2. A restart of the service keeps the agent.
    guest.ok("systemctl restart pocketdev").await;
    plain.wait_healthy().await;
    assert_eq!(
        plain.shell_pid(&token, &id, "restarted").await,
        pid,
        "the same shell after a restart"
    );

    // 3. The upgrade: the same command again keeps the config, the keys and the agent.
    guest
        .ok("echo '# kept' >> /etc/pocketdev/pocketdev.toml")
        .await;
    let keys = guest.ok("sha256sum /var/lib/pocketdev/server/*.key").await;
    let second = guest
        .ok(&format!(
            "cd /root/{folder} && ./scripts/deploy.sh --no-tls 2>&1"
        ))
        .await;
    assert!(second.contains("keep the existing"), "{second}");
    assert!(
        guest
            .ok("cat /etc/pocketdev/pocketdev.toml")
            .await
            .contains("# kept")
    );
    assert_eq!(
        guest.ok("sha256sum /var/lib/pocketdev/server/*.key").await,
        keys
    );
    plain.wait_healthy().await;
    assert_eq!(
        plain.shell_pid(&token, &id, "upgraded").await,
        pid,
        "the same shell after an upgrade"
    );

    // 4. pocketdev-ctl, as installed (a link into /usr/local/share).
    let status = guest.ok("pocketdev-ctl status").await;
    assert!(
        status.contains("health: ok") && status.contains("agents: 1"),
        "{status}"
    );
    let backup = guest
        .ok("cd /root && pocketdev-ctl backup /root && ls /root")
        .await;
    assert!(backup.contains("pocketdev-backup-"), "{backup}");

    // 5. What the service puts around each account, as doctor reports it: its own /proc and
    // /dev/shm (the unit's sandbox allows the namespaces), and, with isolation.disk_mb set, a
    // disk quota the kernel enforces on the agent's own writes.
    guest
        .ok("mkdir -p /etc/systemd/system/pocketdev.service.d \
             && printf '[Service]\nEnvironment=POCKETDEV_ISOLATION__DISK_MB=64\n' \
                > /etc/systemd/system/pocketdev.service.d/disk.conf \
             && systemctl daemon-reload && systemctl restart pocketdev")
        .await;
    plain.wait_healthy().await;
    let doctor = guest
        .ok("pocketdev --config /etc/pocketdev/pocketdev.toml doctor 2>&1 || true")
        .await;
    for (measure, words) in [
        ("namespaces", "/proc"),
        ("quotas", "64 MB"),
        ("sandbox", "Landlock"),
        ("proxy", "/run/pocketdev/http.sock"),
    ] {
        assert!(
            doctor.lines().any(|l| l.starts_with("ok")
                && l.split_whitespace().nth(1) == Some(measure)
                && l.contains(words)),
            "doctor's {measure} line:\n{doctor}"
        );
    }
    let filled = plain
        .type_line(
            &token,
            &id,
            "dd if=/dev/zero of=big bs=1M count=100 2>&1 | grep -o 'quota exceede[d]' | head -1; \
             rm -f big; echo quota-$((40+2))",
            "quota-42",
        )
        .await;
    assert!(filled.contains("quota exceeded"), "{filled}");
    // No root process shows in the agent's process list (its own /proc, hidepid).
    let seen = plain
        .type_line(
            &token,
            &id,
            "echo roots-$(ps -eo uid= | grep -c '^ *0$')-seen-$((40+2))",
            "-seen-42",
        )
        .await;
    assert!(seen.contains("roots-0-seen-42"), "{seen}");

    // 6. HTTPS with a certificate of one's own (self-signed here), replacing the plain site.
    guest
        .ok(&format!(
            "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={DOMAIN} \
             -addext subjectAltName=DNS:{DOMAIN} -addext basicConstraints=critical,CA:FALSE \
             -keyout /etc/ssl/private/{DOMAIN}.key -out /etc/ssl/certs/{DOMAIN}.pem 2>&1"
        ))
        .await;
    let tls_deploy = guest
        .ok(&format!(
            "cd /root/{folder} && ./scripts/deploy.sh --domain {DOMAIN} \
             --cert /etc/ssl/certs/{DOMAIN}.pem --key /etc/ssl/private/{DOMAIN}.key 2>&1"
        ))
        .await;
    assert!(
        tls_deploy.contains(&format!("https://{DOMAIN}/")),
        "{tls_deploy}"
    );
    let cert = guest.dir.path().join("cert.pem");
    std::fs::write(
        &cert,
        guest.ok(&format!("cat /etc/ssl/certs/{DOMAIN}.pem")).await,
    )
    .unwrap();
    let secure = Site {
        origin: format!("https://{DOMAIN}:{}", guest.https_port),
        port: guest.https_port,
        tls: Some(cert),
    };
    secure.wait_healthy().await;
    let token = secure.sign_in(&password).await;
    assert_eq!(secure.shell_pid(&token, &id, "secure").await, pid);

    // 7. A reboot: nginx and pocketdev come back; the agent is gone with the machine, its record
    // says so and keeps what it last showed, and it starts again.
    guest.reboot().await;
    assert!(
        guest
            .ok("findmnt -no OPTIONS /run")
            .await
            .contains("noexec")
    );
    secure.wait_healthy().await;
    let token = secure.sign_in(&password).await;
    let (status, after) = secure
        .call("GET", &format!("/api/instances/{id}"), Some(&token), None)
        .await;
    assert_eq!(status, 200, "{after}");
    assert_ne!(after["state"], "running", "{after}");
    let (status, output) = secure
        .call(
            "GET",
            &format!("/api/instances/{id}/output"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 200, "{output}");
    assert!(
        output.to_string().contains("secure-"),
        "the last screen survives the reboot: {output}"
    );
    let (status, restarted) = secure
        .call(
            "POST",
            &format!("/api/instances/{id}/restart"),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(
        status, 200,
        "a lost instance starts again after a reboot: {restarted}"
    );
    secure
        .type_line(&token, &id, "echo rebooted-$((40+2))", "rebooted-42")
        .await;
    assert!(
        guest
            .ok("systemctl is-system-running || true")
            .await
            .contains("running")
    );
}
