//! The live terminal over real WebSockets against real tmux: typing and echo, several viewers,
//! resize, history on reconnect, exits, backpressure, and every kind of bad input.

use std::time::Duration;

use pocketdev::config::Config;
use pocketdev::instances::profiles::Profile;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app_with};
use crate::term::Credential;

/// A plain bash with a fixed prompt, so tests see exactly what they type.
fn bash_profile() -> Profile {
    Profile {
        name: "Plain bash".into(),
        command: "bash".into(),
        args: vec!["--norc".into(), "--noprofile".into()],
        env: [("PS1".to_owned(), "$ ".to_owned())].into(),
        memory_mb: 10,
        ..Profile::default()
    }
}

fn with_bash(config: &mut Config) {
    config.profiles.insert("bash".into(), bash_profile());
}

async fn app_with_bash(customize: impl FnOnce(&mut Config)) -> (TestApp, String, String) {
    let app = spawn_app_with(|config| {
        with_bash(config);
        customize(config);
    })
    .await;
    let token = app.admin_token().await;
    let instance = app
        .create_instance(&token, json!({ "profile": "bash" }))
        .await;
    let id = instance["id"].as_str().unwrap().to_owned();
    app.wait_for_output(&token, &id, "$").await;
    (app, token, id)
}

#[tokio::test]
async fn typing_reaches_the_shell_and_resizing_changes_the_pane() {
    let (app, token, id) = app_with_bash(|_| {}).await;
    let mut term = app.term(&token, &id).await;
    assert_eq!(term.messages[0]["type"], "hello");
    assert_eq!(term.messages[0]["state"], "running");
    let snapshot = term
        .messages
        .iter()
        .find(|m| m["type"] == "snapshot")
        .unwrap();
    assert_eq!(
        (snapshot["cols"].as_u64(), snapshot["rows"].as_u64()),
        (Some(100), Some(30)),
        "the pane takes the size the viewer connected with: {snapshot}"
    );

    term.run("echo hi-$((40+2))", "hi-42").await;
    term.run("stty size", "30 100").await;

    term.send_json(json!({ "type": "resize", "cols": 90, "rows": 20 }))
        .await;
    let size = term
        .wait_message(|m| m["type"] == "size" && m["cols"] == 90)
        .await;
    assert_eq!(size["rows"], 20);
    // tmux tells the program a moment after it resized the window.
    wait_for_stty_size(&mut term, "20 90").await;

    // Keys arrive byte for byte: Ctrl-C interrupts, UTF-8 survives. The program announces
    // itself, so Ctrl-C lands once it runs: one landing while bash is still between reading
    // the line and starting the program can leave bash without its terminal (it then reads
    // EOF and exits), a bash race within microseconds of Enter that no thumb can hit.
    term.run("sh -c 'echo RUNNING-$((6*7)); exec sleep 30'", "RUNNING-42")
        .await;
    let from = term.bytes.len();
    term.send_bytes(b"\x03").await;
    term.wait_for_from(from, "^C").await;
    term.run("echo caf\u{e9}-ok", "caf\u{e9}-ok").await;
}

#[tokio::test]
async fn two_viewers_see_the_same_output_and_the_latest_one_sets_the_size() {
    let (app, token, id) = app_with_bash(|_| {}).await;
    let mut phone = app.term(&token, &id).await;
    let ticket = app.ticket(&token, &id).await;
    let mut laptop = app
        .connect(&id, Credential::Ticket(&ticket), "&cols=120&rows=40")
        .await
        .unwrap();
    laptop.wait_snapshot().await;
    let size = phone.wait_message(|m| m["type"] == "size").await;
    assert_eq!(size["cols"], 120, "the newest viewer sets the size");

    let (phone_from, laptop_from) = (phone.bytes.len(), laptop.bytes.len());
    phone.send_bytes(b"seq 1 3000; echo END-$((6*7))\r").await;
    phone.wait_for_from(phone_from, "END-42").await;
    laptop.wait_for_from(laptop_from, "END-42").await;
    let phone_live = String::from_utf8_lossy(&phone.bytes[phone_from..]).into_owned();
    let laptop_live = String::from_utf8_lossy(&laptop.bytes[laptop_from..]).into_owned();
    // From the last snapshot on (each change of the pane's size brings every viewer one).
    let cut = |s: &str| {
        let end = s.find("END-42").unwrap();
        let start = s[..end].rfind("\x1bc").unwrap_or(0);
        s[start..end].to_owned()
    };
    assert!(
        cut(&phone_live) == cut(&laptop_live),
        "both received the same bytes:\n{:?}\n{:?}",
        &phone_live[..200],
        &laptop_live[..200]
    );
    assert!(phone_live.contains("\r\n2999\r\n3000\r\n"));

    // Typing from the phone makes it the active viewer again: the pane takes its size back.
    wait_for_stty_size(&mut phone, "30 100").await;
}

/// Asks `stty size` until the program sees `size`. Each try ends with its own computed marker,
/// so nothing is typed while the previous command still runs (a prompt redrawn on SIGWINCH
/// is no sign that it finished).
async fn wait_for_stty_size(term: &mut crate::term::Term, size: &str) {
    for attempt in 0..20 {
        let marker = format!("SIZE-{}", 1000 + attempt);
        let from = term.bytes.len();
        term.run(
            &format!("stty size; echo SIZE-$((1000+{attempt}))"),
            &marker,
        )
        .await;
        let seen = String::from_utf8_lossy(&term.bytes[from..]).into_owned();
        let upto = seen.rfind(&marker).unwrap_or(seen.len());
        if seen[..upto].contains(&format!("{size}\r\n")) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the program never saw the size {size}");
}

#[tokio::test]
async fn reconnecting_shows_history_and_what_happened_meanwhile() {
    let (app, token, id) = app_with_bash(|_| {}).await;
    let mut term = app.term(&token, &id).await;
    term.run("seq 1 2500; echo DONE-$((1+1))", "DONE-2").await;
    // Mid-stream, the client vanishes.
    term.send_bytes(b"seq 1 200000; echo LATER-$((2+2))\r")
        .await;
    drop(term);
    app.wait_for_output(&token, &id, "LATER-4").await;

    let mut term = app.term(&token, &id).await;
    let snapshot = term.text();
    assert!(
        snapshot.starts_with("\x1bc"),
        "a snapshot starts from a reset terminal: {:?}",
        &snapshot[..100]
    );
    assert!(
        snapshot.contains("LATER-4"),
        "the screen shows what happened while away"
    );
    let history_lines = snapshot.matches("\r\n").count();
    assert!(
        history_lines >= 2000,
        "at least 2000 lines of history, got {history_lines}"
    );
    term.run("echo back-$((3+3))", "back-6").await;
}

/// Browsers offer permessage-deflate: a snapshot with its history and a flood of output travel
/// compressed and arrive intact.
#[tokio::test]
async fn a_client_offering_deflate_gets_snapshots_and_output_compressed() {
    use futures::{SinkExt, StreamExt};
    use std::sync::atomic::Ordering;

    let (app, token, id) = app_with_bash(|_| {}).await;
    let mut term = app.term(&token, &id).await;
    // Lines like an agent's transcript: words repeat, whole lines do not.
    let transcript = r#"for i in $(seq 1 2500); do echo "step $i: read src/module_$((i % 37)).rs, edited fn_$((i * 7 % 101)) ($((i * 13 % 997)) lines)"; done; echo DONE-$((1+1))"#;
    term.run(transcript, "DONE-2").await;
    drop(term);

    let ticket = app.ticket(&token, &id).await;
    let url = app.ws_url(&format!(
        "/ws/instance/{id}?ticket={ticket}&cols=100&rows=30"
    ));
    let stream = crate::counting_stream::CountingStream::new(
        tokio::net::TcpStream::connect(app.addr).await.unwrap(),
    );
    let received = stream.received.clone();
    let options = yawc::Options::default().with_low_latency_compression();
    let mut ws = yawc::WebSocket::handshake(url.parse().unwrap(), stream, options)
        .await
        .expect("the socket opens with deflate offered");
    let before = received.load(Ordering::Relaxed);
    let mut snapshot = None;
    let mut header_seen = false;
    while snapshot.is_none() {
        let frame = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("a snapshot in time")
            .expect("the socket stays open");
        match frame.opcode() {
            yawc::OpCode::Text => header_seen |= frame.as_str().contains(r#""snapshot""#),
            yawc::OpCode::Binary if header_seen => snapshot = Some(frame.into_payload()),
            _ => {}
        }
    }
    let snapshot = String::from_utf8_lossy(&snapshot.unwrap()).into_owned();
    let on_the_wire = received.load(Ordering::Relaxed) - before;
    assert!(
        snapshot.contains("step 2500: read src/module_21.rs, edited fn_27 (596 lines)")
            && snapshot.contains("step 600: read src/module_8.rs, edited fn_59 (821 lines)"),
        "the snapshot arrives whole: {:?}",
        &snapshot[snapshot.len().saturating_sub(400)..]
    );
    assert!(
        on_the_wire * 3 < snapshot.len(),
        "a {} byte snapshot took {on_the_wire} bytes on the wire",
        snapshot.len()
    );

    // Live output is compressed too, and a typed key still echoes.
    let before = received.load(Ordering::Relaxed);
    ws.send(yawc::Frame::binary(
        &b"seq 1 30000; echo END-$((5*5))\r"[..],
    ))
    .await
    .unwrap();
    let mut output = Vec::new();
    while !String::from_utf8_lossy(&output).contains("END-25") {
        let frame = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("output in time")
            .expect("the socket stays open");
        if frame.opcode() == yawc::OpCode::Binary {
            output.extend_from_slice(frame.payload());
        }
    }
    let on_the_wire = received.load(Ordering::Relaxed) - before;
    assert!(
        on_the_wire * 2 < output.len(),
        "{} bytes of output took {on_the_wire} bytes on the wire",
        output.len()
    );
}

#[tokio::test]
async fn an_agent_that_exits_closes_the_socket_with_its_status() {
    let app = spawn_app_with(|_| {}).await;
    let token = app.admin_token().await;
    let id = app
        .create_instance(&token, json!({ "profile": "fake" }))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    app.wait_for_output(&token, &id, "agent>").await;
    let mut term = app.term(&token, &id).await;
    term.send_bytes(b"fail\r").await;
    let exit = term.wait_message(|m| m["type"] == "exit").await;
    assert_eq!(exit["state"], "exited");
    assert_eq!(exit["exit_code"], 3);
    let frame = term.wait_closed().await.expect("a close frame");
    assert_eq!(u16::from(frame.code), 1000);
    assert!(frame.reason.contains("status 3"), "{}", frame.reason);

    // Connecting later shows the last screen and why it ended.
    let mut late = app
        .connect(&id, Credential::Bearer(&token), "")
        .await
        .unwrap();
    late.wait_closed().await;
    assert!(
        late.text().contains("failing on purpose"),
        "{}",
        late.text()
    );
    assert_eq!(late.messages.last().unwrap()["type"], "exit");

    // Stopping from elsewhere closes viewers too, with the reason.
    let response = app
        .post(
            &format!("/api/instances/{id}/restart"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    app.wait_for_output(&token, &id, "agent>").await;
    let mut term = app.term(&token, &id).await;
    let response = app
        .post(
            &format!("/api/instances/{id}/stop"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let exit = term.wait_message(|m| m["type"] == "exit").await;
    assert_eq!(
        (exit["state"].as_str(), exit["reason"].as_str()),
        (Some("stopped"), Some("user"))
    );
    term.wait_closed().await;
}

#[tokio::test]
async fn a_viewer_that_stops_reading_is_skipped_ahead_while_another_keeps_up() {
    let (app, token, id) = app_with_bash(|config| {
        config.terminal.viewer_buffer_kb = 64;
    })
    .await;
    let mut stalled = app.term(&token, &id).await;
    let mut reader = app.term(&token, &id).await;
    let from = reader.bytes.len();
    reader
        .send_bytes(b"seq 1 4000000; echo FLOOD-$((5*5))\r")
        .await;
    reader.wait_for_from(from, "FLOOD-25").await;
    let printed = seq_bytes(4_000_000);

    // The stalled viewer now reads what was kept for it: its socket's buffers, at most its
    // queue, then a fresh snapshot instead of everything it missed.
    let resync = stalled
        .wait_message(|m| m["type"] == "snapshot" && m["reason"] == "resync")
        .await;
    assert_eq!(resync["cols"], 100);
    stalled.wait_for("FLOOD-25").await;
    assert!(
        stalled.bytes.len() < printed / 2,
        "the stalled viewer got {} bytes of {printed}: it was not skipped ahead",
        stalled.bytes.len()
    );
    stalled.run("echo still-$((9+9))", "still-18").await;
}

/// Bytes `seq 1 n` prints on a terminal (each line ends in CR LF).
fn seq_bytes(n: usize) -> usize {
    (1..=n).map(|i| i.to_string().len() + 2).sum()
}

/// A flood of output reaches viewers as the screen a few times a second rather than byte for
/// byte; once it settles, a fresh snapshot brings its last lines as history, and output flows
/// byte for byte again.
#[tokio::test]
async fn a_flood_reaches_viewers_as_screens_then_as_history() {
    let (app, token, id) = app_with_bash(|_| {}).await;
    let mut term = app.term(&token, &id).await;
    let from = term.bytes.len();
    term.send_bytes(b"seq 1 3000000; echo FLOOD-$((5*5))\r")
        .await;
    term.wait_for_from(from, "FLOOD-25").await;
    let received = term.bytes.len() - from;
    let printed = seq_bytes(3_000_000);
    assert!(
        received < printed / 10,
        "{received} bytes reached the viewer for {printed} printed"
    );

    let mark = term.bytes.len();
    let resync = term.wait_snapshot().await;
    assert_eq!(
        (resync["reason"].as_str(), resync["cols"].as_u64()),
        (Some("resync"), Some(100))
    );
    let text = term.text_from(mark);
    assert!(
        text.contains("\r\n2999000\r\n") && text.contains("\r\n3000000\r\nFLOOD-25"),
        "the snapshot after the flood holds its last lines as history"
    );
    // bash's own bracketed-paste switch: bytes that no redraw of the screen contains.
    let from = term.bytes.len();
    term.run("printf 'one\\ntwo\\n'", "one\r\ntwo\r\n").await;
    assert!(
        term.text_from(from).contains("\x1b[?2004l\rone\r\ntwo\r\n"),
        "after the flood, output comes byte for byte: {:?}",
        term.text_from(from)
    );
}

#[tokio::test]
async fn a_silent_connection_is_dropped_by_the_heartbeat() {
    let (app, token, id) = app_with_bash(|config| {
        config.terminal.heartbeat_secs = 1;
    })
    .await;
    let mut silent = app.term(&token, &id).await;
    // Not reading means not answering pings, as a half-open mobile connection would.
    tokio::time::sleep(Duration::from_secs(4)).await;
    silent.wait_closed().await;
    let mut alive = app.term(&token, &id).await;
    alive.run("echo alive-$((1+2))", "alive-3").await;
}

#[tokio::test]
async fn tickets_and_credentials_are_checked_before_the_upgrade() {
    let (app, token, id) = app_with_bash(|config| {
        config.terminal.ticket_ttl_secs = 1;
    })
    .await;
    let refused = |result: Result<crate::term::Term, (StatusCode, Value)>| match result {
        Ok(_) => panic!("the socket opened"),
        Err(refusal) => refusal,
    };

    let (status, body) = refused(app.connect(&id, Credential::Nothing, "").await);
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");

    let (status, _) = refused(app.connect(&id, Credential::Ticket("made-up"), "").await);
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let ticket = app.ticket(&token, &id).await;
    let term = app.connect(&id, Credential::Ticket(&ticket), "").await;
    assert!(term.is_ok(), "a fresh ticket opens the socket");
    let (status, body) = refused(app.connect(&id, Credential::Ticket(&ticket), "").await);
    assert_eq!(status, StatusCode::UNAUTHORIZED, "a ticket works once");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("ticket")
    );

    let ticket = app.ticket(&token, &id).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (status, _) = refused(app.connect(&id, Credential::Ticket(&ticket), "").await);
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "an expired ticket opens nothing"
    );

    // A ticket is for one instance only.
    let other = app
        .create_instance(&token, json!({ "profile": "bash" }))
        .await;
    let other = other["id"].as_str().unwrap();
    let ticket = app.ticket(&token, &id).await;
    let (status, _) = refused(app.connect(other, Credential::Ticket(&ticket), "").await);
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Someone else's instance does not exist for them, whichever way they sign in.
    app.create_user("mallory", "mallory-password-1").await;
    let mallory = app.token("mallory", "mallory-password-1").await;
    let (status, _) = refused(app.connect(&id, Credential::Token(&mallory), "").await);
    assert_eq!(status, StatusCode::NOT_FOUND);
    let response = app
        .post(
            &format!("/api/instances/{id}/ticket"),
            Some(&mallory),
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);

    // The bearer header, the access cookie and ?token= all work for the owner.
    assert!(
        app.connect(&id, Credential::Bearer(&token), "")
            .await
            .is_ok()
    );
    assert!(
        app.connect(&id, Credential::Token(&token), "")
            .await
            .is_ok()
    );
    let cookie = format!("pd_access={token}");
    assert!(
        app.connect(&id, Credential::Cookie(&cookie), "")
            .await
            .is_ok()
    );

    // A page on another site cannot open it with the user's cookie.
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
            app.ws_url(&format!("/ws/instance/{id}")),
        )
        .unwrap();
    request
        .headers_mut()
        .insert("cookie", cookie.parse().unwrap());
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    let (status, _) = refused(app.connect_request(request).await);
    assert_eq!(status, StatusCode::FORBIDDEN);

    // A bad size is refused before the upgrade; a plain GET gets a JSON error.
    let (status, _) = refused(
        app.connect(&id, Credential::Token(&token), "&cols=0&rows=10")
            .await,
    );
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let response = app.get(&format!("/ws/instance/{id}"), Some(&token)).await;
    crate::helpers::expect_error(response, StatusCode::BAD_REQUEST, "plain GET").await;
}

#[tokio::test]
async fn malformed_messages_get_errors_and_the_connection_stays() {
    let (app, token, id) = app_with_bash(|_| {}).await;
    let mut term = app.term(&token, &id).await;
    let cases = [
        (
            json!({ "type": "resize", "cols": -1, "rows": 10 }).to_string(),
            "invalid_resize",
        ),
        (
            json!({ "type": "resize", "cols": 0, "rows": 10 }).to_string(),
            "invalid_resize",
        ),
        (
            json!({ "type": "resize", "cols": 100000, "rows": 10 }).to_string(),
            "invalid_resize",
        ),
        (
            json!({ "type": "resize", "cols": "wide" }).to_string(),
            "invalid_message",
        ),
        ("resize 80x24".to_owned(), "invalid_message"),
        (json!({ "type": "teleport" }).to_string(), "unknown_message"),
        (
            json!({ "type": "scroll", "lines": 100000 }).to_string(),
            "invalid_scroll",
        ),
    ];
    for (text, code) in cases {
        term.send_text(&text).await;
        let error = term.wait_message(|m| m["type"] == "error").await;
        assert_eq!(error["code"], code, "{text}");
        term.messages.clear();
    }
    term.send_bytes(&vec![b'x'; 100 * 1024]).await;
    let error = term.wait_message(|m| m["type"] == "error").await;
    assert_eq!(error["code"], "frame_too_large");

    term.send_json(json!({ "type": "ping", "id": 5 })).await;
    let pong = term.wait_message(|m| m["type"] == "pong").await;
    assert_eq!(pong["id"], 5);
    term.run("echo fine-$((2*3))", "fine-6").await;

    // Beyond the transport limit the socket is closed, and the server carries on.
    let mut huge = app.term(&token, &id).await;
    let _ = futures::SinkExt::send(
        &mut huge.ws_mut(),
        tokio_tungstenite::tungstenite::Message::Binary(vec![b'y'; 2 * 1024 * 1024].into()),
    )
    .await;
    huge.wait_closed().await;
    term.run("echo still-$((2*4))", "still-8").await;
}

#[tokio::test]
async fn swipes_reach_full_screen_programs_as_they_expect() {
    let (app, token, id) = app_with_bash(|_| {}).await;
    let mut term = app.term(&token, &id).await;
    // A full-screen program with SGR mouse reporting and bracketed paste that prints the hex
    // of every byte it receives.
    term.run(
        r#"printf '\033[?1049h\033[?1000h\033[?1006h\033[?2004h'; stty raw -echo; while IFS= read -r -n1 -d '' c; do printf '%02x.' "'$c"; done"#,
        "\x1b[?1049h",
    )
    .await;
    let from = term.bytes.len();
    term.send_json(json!({ "type": "scroll", "lines": -2, "col": 3, "row": 4 }))
        .await;
    // ESC [ < 6 4 ; 3 ; 4 M, twice
    let wheel_up = "1b.5b.3c.36.34.3b.33.3b.34.4d.";
    term.wait_for_from(from, &wheel_up.repeat(2)).await;

    let from = term.bytes.len();
    term.send_json(json!({ "type": "paste", "data": "a\tb" }))
        .await;
    // ESC [ 2 0 0 ~ a TAB b ESC [ 2 0 1 ~
    term.wait_for_from(from, "1b.5b.32.30.30.7e.61.09.62.1b.5b.32.30.31.7e.")
        .await;

    // A viewer arriving now is put on the alternate screen with mouse reporting on.
    let late = app.term(&token, &id).await;
    let snapshot = late
        .messages
        .iter()
        .find(|m| m["type"] == "snapshot")
        .unwrap()
        .clone();
    assert_eq!(snapshot["alternate_screen"], true);
    let text = late.text();
    assert!(
        text.contains("\x1b[?1049h") && text.contains("\x1b[?1000h\x1b[?1006h"),
        "{text:?}"
    );
    assert!(
        text.contains("1b.5b.3c.36.34"),
        "the screen is in the snapshot"
    );
}

#[tokio::test]
async fn the_arrow_keys_stand_in_for_the_wheel_without_mouse_reporting() {
    let (app, token, id) = app_with_bash(|_| {}).await;
    let mut term = app.term(&token, &id).await;
    term.run(
        r#"printf '\033[?1049h'; stty raw -echo; while IFS= read -r -n1 -d '' c; do printf '%02x.' "'$c"; done"#,
        "\x1b[?1049h",
    )
    .await;
    let from = term.bytes.len();
    term.send_json(json!({ "type": "scroll", "lines": 1 }))
        .await;
    term.wait_for_from(from, "1b.5b.42.").await;
}

#[tokio::test]
async fn input_faster_than_tmux_reads_is_refused_in_words_not_queued_without_bound() {
    let (app, token, id) = app_with_bash(|_| {}).await;
    let mut term = app.term(&token, &id).await;
    let user_id = app.user_id(&token).await;
    let server = rustix::process::Pid::from_raw(app.tmux_server_pid(user_id).await).unwrap();
    // tmux reads nothing more: every byte typed now waits in pocketdev.
    rustix::process::kill_process(server, rustix::process::Signal::STOP).unwrap();
    let chunk = vec![b' '; pocketdev::terminal::protocol::MAX_FRAME - 1024];
    for _ in 0..24 {
        term.send_bytes(&chunk).await;
    }
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        term.wait_message(|m| m["type"] == "error" && m["code"] == "busy"),
    )
    .await;
    rustix::process::kill_process(server, rustix::process::Signal::CONT).unwrap();
    // About 1.4 MiB typed is more than the hub holds for tmux (1 MiB of commands).
    let refused = refused.expect("1.4 MiB of input was all queued for a tmux that reads nothing");
    assert!(
        refused["message"]
            .as_str()
            .unwrap()
            .contains("not keeping up"),
        "{refused}"
    );
}

#[tokio::test]
async fn hooks_on_the_accounts_tmux_server_cannot_scramble_what_viewers_see() {
    let (app, token, id) = app_with_bash(|_| {}).await;
    let user_id = app.user_id(&token).await;
    // What an agent can do to its own server: every command pocketdev's viewers send answers
    // with an extra block of the hook's.
    for hook in [
        "after-display-message",
        "after-capture-pane",
        "after-refresh-client",
        "after-send-keys",
    ] {
        let set = app
            .tmux_client(user_id)
            .args(["set-hook", "-g", hook, "display-message -p HOOKED-BLOCK"])
            .status()
            .await
            .unwrap();
        assert!(set.success(), "{hook}");
    }
    let mut term = app.term(&token, &id).await;
    term.run("echo first-$((40+2))", "first-42").await;
    let mut again = app.term(&token, &id).await;
    let snapshot = again
        .messages
        .iter()
        .find(|m| m["type"] == "snapshot")
        .cloned()
        .expect("a snapshot on connect");
    assert_eq!(snapshot["rows"], 30, "{snapshot}");
    assert!(again.text().contains("first-42"), "{}", again.text());
    again.run("echo second-$((40+2))", "second-42").await;
    term.wait_for("second-42").await;
    for viewer in [&term, &again] {
        assert!(!viewer.text().contains("HOOKED-BLOCK"), "{}", viewer.text());
    }
}

#[tokio::test]
async fn terminals_opened_while_agents_start_and_stop_never_take_tmux_down() {
    // What a dashboard does when it opens several terminals at once while agents start: on
    // tmux 3.3a (and 3.5a) a control client told of a new session while still connecting
    // crashed the account's whole tmux server.
    const ROUNDS: usize = 10;
    const AT_ONCE: usize = 10;
    let app = spawn_app_with(|c| {
        c.limits.max_per_user = AT_ONCE as u32;
        c.limits.max_total = AT_ONCE as u32;
        c.tmux.stop_grace_secs = 0;
    })
    .await;
    let token = app.admin_token().await;
    let (app, token) = (&app, token.as_str());
    let user_id = app.user_id(token).await;
    let first = app
        .create_instance(token, json!({ "profile": "fake" }))
        .await;
    let keeper = first["id"].as_str().unwrap().to_owned();
    let server = app.tmux_server_pid(user_id).await;
    for round in 0..ROUNDS {
        let opened = futures::future::join_all((1..AT_ONCE).map(|_| async {
            let created = app
                .create_instance(token, json!({ "profile": "fake" }))
                .await;
            let id = created["id"].as_str().unwrap().to_owned();
            let term = app.term(token, &id).await;
            (id, term)
        }))
        .await;
        // Some go while others still connect (their control clients leave at once).
        let closing = futures::future::join_all(opened.into_iter().map(|(id, term)| async move {
            drop(term);
            let deleted = app
                .call(
                    reqwest::Method::DELETE,
                    &format!("/api/instances/{id}"),
                    Some(token),
                    None,
                )
                .await;
            assert_eq!(deleted.status(), StatusCode::NO_CONTENT, "round {round}");
        }));
        let watching = app.term(token, &keeper);
        let (_, watcher) = tokio::join!(closing, watching);
        drop(watcher);
        assert_eq!(
            app.tmux_server_pid(user_id).await,
            server,
            "the account's tmux server went down in round {round}"
        );
    }
    assert_eq!(app.instance(token, &keeper).await["state"], "running");
}

/// The clients attached to the account's tmux server: (control-mode clients, all clients).
async fn tmux_clients(app: &TestApp, user_id: i64) -> (usize, usize) {
    let text = app
        .tmux_output(user_id, &["list-clients", "-F", "#{client_control_mode}"])
        .await;
    (
        text.lines().filter(|l| *l == "1").count(),
        text.lines().count(),
    )
}

/// The windows linked into the terminals' session, besides its placeholder.
async fn linked_windows(app: &TestApp, user_id: i64) -> usize {
    let list = [
        "list-windows",
        "-t",
        "=pocketdev-terminals",
        "-F",
        "#{pane_start_command}",
    ];
    app.tmux_output(user_id, &list)
        .await
        .lines()
        .filter(|l| !l.contains("cat"))
        .count()
}

/// However many terminals an account has open, its tmux server has one client for them: tmux
/// walks its clients for every pane on every turn, so a client per terminal made each turn
/// cost terminals × agents. Each terminal still sees its own agent alone; a stopped agent's
/// window goes even while watched; once nobody watches, the client goes too.
#[tokio::test]
async fn every_terminal_of_an_account_shares_one_tmux_client() {
    let (app, token, first) = app_with_bash(|c| {
        c.tmux.stop_grace_secs = 0;
        c.limits.max_per_user = 4;
        c.limits.max_total = 4;
    })
    .await;
    let user_id = app.user_id(&token).await;
    let mut ids = vec![first];
    for _ in 0..3 {
        let created = app
            .create_instance(&token, json!({ "profile": "bash" }))
            .await;
        let id = created["id"].as_str().unwrap().to_owned();
        app.wait_for_output(&token, &id, "$").await;
        ids.push(id);
    }
    let mut terms = Vec::new();
    for id in &ids {
        terms.push(app.term(&token, id).await);
    }
    let mut second_on_first = app.term(&token, &ids[0]).await;
    assert_eq!(
        tmux_clients(&app, user_id).await,
        (1, 1),
        "five terminals on four agents, one tmux client"
    );

    for (n, term) in terms.iter_mut().enumerate() {
        term.run(
            &format!("echo own-$((100+{n}))"),
            &format!("own-{}", 100 + n),
        )
        .await;
    }
    second_on_first.wait_for("own-100").await;
    for (n, term) in terms.iter().enumerate() {
        for other in (0..ids.len()).filter(|&o| o != n) {
            assert!(
                !term.text().contains(&format!("own-{}", 100 + other)),
                "terminal {n} saw agent {other}'s output"
            );
        }
    }

    // Stopping a watched agent ends its window everywhere, not only in its own session.
    assert_eq!(linked_windows(&app, user_id).await, 4);
    let stopped = app
        .post(
            &format!("/api/instances/{}/stop", ids[3]),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(stopped.status(), StatusCode::OK);
    terms[3].wait_closed().await;
    assert_eq!(linked_windows(&app, user_id).await, 3);

    // Resizing one terminal leaves the others' panes at their sizes.
    terms[1]
        .send_json(json!({ "type": "resize", "cols": 70, "rows": 20 }))
        .await;
    wait_for_stty_size(&mut terms[1], "20 70").await;
    terms[2].run("stty size", "30 100").await;

    drop(terms);
    drop(second_on_first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tmux_clients(&app, user_id).await != (0, 0) || linked_windows(&app, user_id).await != 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the client and its links outlived the terminals: {:?}, {} linked",
            tmux_clients(&app, user_id).await,
            linked_windows(&app, user_id).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
