//! One viewer's socket: frames in go to the hub, the hub's output goes out through a bounded
//! queue, heartbeats find connections that went away without a word. One task per socket.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use yawc::close::CloseCode;
use yawc::{Frame, HttpWebSocket, OpCode};

use super::hub::{Command, Outgoing, Viewer, close, ended_reason};
use super::protocol::{self, ClientMessage, MAX_FRAME, ServerMessage};
use super::{JoinError, Membership};
use crate::instances::store::Instance;
use crate::state::AppState;

/// Messages queued for one socket, at most (output is also bounded in bytes by the hub).
const OUTBOX: usize = 64;
/// How often a signed-in viewer's session is checked again (sign-out, disabled account).
const SESSION_CHECK: Duration = Duration::from_secs(60);

/// Who is watching: the account and the sign-in session the socket was opened with.
pub struct Watcher {
    pub user_id: i64,
    pub session_id: String,
}

pub async fn serve(
    socket: HttpWebSocket,
    state: AppState,
    instance: Instance,
    watcher: Watcher,
    size: Option<(u16, u16)>,
) {
    let (mut sink, mut stream) = socket.split();
    // A suspended agent comes back for whoever opens it: the viewer learns it is resuming,
    // then sees it as it was.
    let instance = if instance.state == crate::instances::store::State::Suspended {
        let hello = text(&ServerMessage::Hello {
            instance: instance.id.clone(),
            state: instance.state.as_str().to_owned(),
        });
        if sink.send(hello).await.is_err() {
            return;
        }
        match crate::instances::routes::resume_checked(&state, &instance, size).await {
            Ok(resumed) => resumed,
            Err(err) => {
                let message = ServerMessage::error("resume_failed", err.to_string());
                let _ = sink.send(text(&message)).await;
                let _ = sink
                    .send(close_message(close::ENDED, "the agent could not resume"))
                    .await;
                return;
            }
        }
    } else {
        instance
    };
    if !instance.state.is_live() {
        // An ended instance shows what it left on screen, then why it ended.
        let kept = crate::instances::store::last_screen(&state.db, &instance.id)
            .await
            .ok()
            .flatten()
            .unwrap_or_default();
        let messages = [
            text(&ServerMessage::Hello {
                instance: instance.id.clone(),
                state: instance.state.as_str().to_owned(),
            }),
            Frame::binary(Bytes::from(kept.replace('\n', "\r\n"))),
            text(&ServerMessage::Exit {
                state: instance.state.as_str().to_owned(),
                exit_code: instance.exit_code,
                reason: instance.end_reason.clone(),
            }),
            close_message(close::ENDED, &ended_reason(&instance)),
        ];
        for message in messages {
            if sink.send(message).await.is_err() {
                return;
            }
        }
        return;
    }

    let terminals = state.terminals.clone();
    let (outbox, mut queue) = mpsc::channel(OUTBOX);
    let (closer, mut closing) = mpsc::channel(1);
    let queued = Arc::new(AtomicUsize::new(0));
    let id = terminals.new_viewer_id();
    let viewer = Viewer {
        id,
        outbox: outbox.clone(),
        close: closer.clone(),
        queued: queued.clone(),
    };
    let membership: Membership = match terminals.join(&instance, viewer, size).await {
        Ok(membership) => membership,
        Err(err) => {
            let code = match err {
                JoinError::Full(_) => close::POLICY,
                JoinError::Unavailable => close::UNAVAILABLE,
            };
            let _ = sink.send(close_message(code, &err.to_string())).await;
            return;
        }
    };
    let hub = membership.commands.clone();
    // What the agent is doing, right after `hello`: a viewer must not show "running" while
    // the agent asks for permission until the status next changes.
    if let Some((status, reason)) = state.monitor.status(&instance) {
        let message = ServerMessage::Status {
            state: instance.state.as_str().to_owned(),
            status: Some(status.as_str().to_owned()),
            reason,
        };
        let _ = outbox.try_send(Outgoing::Text(message.to_json()));
    }

    let writer = async {
        loop {
            // What is queued goes out before a close that came after it.
            let item = tokio::select! {
                biased;
                item = queue.recv() => item,
                close = closing.recv() => {
                    if let Some((code, reason)) = close {
                        let _ = sink.send(close_message(code, &reason)).await;
                    }
                    return;
                }
            };
            let Some(item) = item else { return };
            let sent = match item {
                Outgoing::Text(json) => sink.send(Frame::text(json)).await,
                Outgoing::Binary(bytes) => {
                    let len = bytes.len();
                    let sent = sink.send(Frame::binary(bytes)).await;
                    queued.fetch_sub(len, Ordering::Relaxed);
                    sent
                }
                Outgoing::Snapshot(header, bytes) => {
                    let len = bytes.len();
                    let sent = match sink.send(Frame::text(header)).await {
                        Ok(()) => sink.send(Frame::binary(bytes)).await,
                        err => err,
                    };
                    queued.fetch_sub(len, Ordering::Relaxed);
                    sent
                }
                Outgoing::Ping => sink.send(Frame::ping(Bytes::new())).await,
            };
            if sent.is_err() {
                return;
            }
        }
    };

    let heartbeat = Duration::from_secs(terminals.config().heartbeat_secs.max(1));
    let mut signouts = state.signouts.subscribe();
    let reader = async {
        let mut last_seen = Instant::now();
        let mut session_checked = Instant::now();
        let mut tick = tokio::time::interval(heartbeat);
        tick.tick().await;
        loop {
            tokio::select! {
                frame = stream.next() => {
                    last_seen = Instant::now();
                    let Some(frame) = frame else { return };
                    match frame.opcode() {
                        OpCode::Binary => {
                            let bytes = frame.into_payload();
                            if bytes.len() > MAX_FRAME {
                                refuse_large(&outbox, bytes.len());
                            } else if !bytes.is_empty() && hub.send(Command::Input { viewer: id, bytes }).await.is_err() {
                                return;
                            }
                        }
                        OpCode::Text => {
                            // The socket has checked that text frames are UTF-8.
                            let json = frame.as_str();
                            if json.len() > MAX_FRAME {
                                refuse_large(&outbox, json.len());
                                continue;
                            }
                            let command = match protocol::parse(json) {
                                Ok(ClientMessage::Resize { cols, rows }) => Command::Resize { viewer: id, cols: cols as u16, rows: rows as u16 },
                                Ok(ClientMessage::Scroll { lines, col, row }) => Command::Scroll { viewer: id, lines, col, row },
                                Ok(ClientMessage::Paste { data }) => Command::Paste { viewer: id, text: data },
                                Ok(ClientMessage::Ping { id }) => {
                                    let _ = outbox.try_send(Outgoing::Text(ServerMessage::Pong { id }.to_json()));
                                    continue;
                                }
                                Err(error) => {
                                    let _ = outbox.try_send(Outgoing::Text(error.to_json()));
                                    continue;
                                }
                            };
                            if hub.send(command).await.is_err() {
                                return;
                            }
                        }
                        OpCode::Close => return,
                        OpCode::Ping | OpCode::Pong | OpCode::Continuation => {}
                    }
                }
                signout = signouts.recv() => {
                    let ended = match signout {
                        Ok(signout) => signout.ends(watcher.user_id, &watcher.session_id),
                        // Missed some: ask the database.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            !still_signed_in(&state, &watcher).await
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => false,
                    };
                    if ended {
                        // The writer sends the close; nothing more is read meanwhile.
                        let _ = closer.try_send((close::POLICY, "signed out".into()));
                        std::future::pending::<()>().await;
                    }
                }
                _ = tick.tick() => {
                    if last_seen.elapsed() > heartbeat * 2 {
                        tracing::debug!(viewer = id, "terminal viewer stopped answering; dropped");
                        return;
                    }
                    let _ = outbox.try_send(Outgoing::Ping);
                    if session_checked.elapsed() > SESSION_CHECK {
                        session_checked = Instant::now();
                        if !still_signed_in(&state, &watcher).await {
                            let _ = closer.try_send((close::POLICY, "signed out".into()));
                        }
                    }
                }
            }
        }
    };

    tokio::pin!(writer, reader);
    tokio::select! {
        () = &mut writer => {}
        () = &mut reader => {}
        () = state.shutdown.cancelled() => {
            let _ = closer.try_send((close::GOING_AWAY, "the server is restarting; reconnect in a moment".into()));
            let _ = tokio::time::timeout(Duration::from_secs(1), &mut writer).await;
        }
    }
    let _ = membership.commands.try_send(Command::Leave(id));
    drop(membership);
}

fn refuse_large(outbox: &mpsc::Sender<Outgoing>, len: usize) {
    let error = ServerMessage::error(
        "frame_too_large",
        format!(
            "a frame may carry at most {MAX_FRAME} bytes; this one had {len}; nothing of it was used"
        ),
    );
    let _ = outbox.try_send(Outgoing::Text(error.to_json()));
}

async fn still_signed_in(state: &AppState, watcher: &Watcher) -> bool {
    matches!(
        crate::auth::store::session_user(&state.db, &watcher.session_id, watcher.user_id).await,
        Ok(Some(user)) if !user.disabled
    )
}

fn text(message: &ServerMessage) -> Frame {
    Frame::text(message.to_json())
}

fn close_message(code: u16, reason: &str) -> Frame {
    // A close frame's reason holds at most 123 bytes.
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    Frame::close(CloseCode::from(code), &reason[..end])
}
