//! A terminal WebSocket client for tests: connects like the browser app or an API client and
//! keeps what it received.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::helpers::TestApp;

const WAIT: Duration = Duration::from_secs(15);

/// How a test signs its socket in.
pub enum Credential<'a> {
    Ticket(&'a str),
    Token(&'a str),
    Bearer(&'a str),
    Cookie(&'a str),
    Nothing,
}

pub struct Term {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// Every terminal byte received, snapshots included.
    pub bytes: Vec<u8>,
    /// Every control message received.
    pub messages: Vec<Value>,
    pub closed: Option<Option<CloseFrame>>,
}

impl TestApp {
    pub fn ws_url(&self, path: &str) -> String {
        self.url(path).replacen("http://", "ws://", 1)
    }

    /// A fresh ticket for the instance.
    pub async fn ticket(&self, token: &str, id: &str) -> String {
        let response = self
            .post(
                &format!("/api/instances/{id}/ticket"),
                Some(token),
                serde_json::json!({}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::CREATED);
        let body: Value = response.json().await.unwrap();
        body["ticket"].as_str().unwrap().to_owned()
    }

    /// Opens the instance's terminal with a ticket at 100x30, waiting for the first snapshot.
    pub async fn term(&self, token: &str, id: &str) -> Term {
        let ticket = self.ticket(token, id).await;
        let mut term = self
            .connect(id, Credential::Ticket(&ticket), "&cols=100&rows=30")
            .await
            .expect("terminal opens");
        term.wait_snapshot().await;
        term
    }

    /// Opens a socket; on refusal, the HTTP status and body.
    pub async fn connect(
        &self,
        id: &str,
        credential: Credential<'_>,
        query: &str,
    ) -> Result<Term, (StatusCode, Value)> {
        let auth_query = match credential {
            Credential::Ticket(ticket) => format!("ticket={ticket}"),
            Credential::Token(token) => format!("token={token}"),
            _ => String::new(),
        };
        let url = self.ws_url(&format!("/ws/instance/{id}?{auth_query}{query}"));
        let mut request = url.into_client_request().unwrap();
        match credential {
            Credential::Bearer(token) => {
                request.headers_mut().insert(
                    "authorization",
                    HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
                );
            }
            Credential::Cookie(cookie) => {
                request
                    .headers_mut()
                    .insert("cookie", HeaderValue::from_str(cookie).unwrap());
            }
            _ => {}
        }
        self.connect_request(request).await
    }

    pub async fn connect_request(
        &self,
        request: tokio_tungstenite::tungstenite::handshake::client::Request,
    ) -> Result<Term, (StatusCode, Value)> {
        match tokio_tungstenite::connect_async(request).await {
            Ok((ws, _)) => Ok(Term {
                ws,
                bytes: Vec::new(),
                messages: Vec::new(),
                closed: None,
            }),
            Err(Error::Http(response)) => {
                let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
                let body = response
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err((status, body))
            }
            Err(other) => panic!("connecting failed: {other}"),
        }
    }
}

impl Term {
    pub fn ws_mut(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.ws
    }

    pub async fn send_bytes(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::Binary(bytes.to_vec().into()))
            .await
            .expect("send");
    }

    pub async fn send_json(&mut self, value: Value) {
        self.send_text(&value.to_string()).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.ws
            .send(Message::Text(text.into()))
            .await
            .expect("send");
    }

    /// Reads one frame; false once the socket ended.
    async fn read_one(&mut self) -> bool {
        match self.ws.next().await {
            Some(Ok(Message::Binary(bytes))) => self.bytes.extend_from_slice(&bytes),
            Some(Ok(Message::Text(text))) => self
                .messages
                .push(serde_json::from_str(&text).expect("control messages are JSON")),
            Some(Ok(Message::Close(frame))) => {
                self.closed = Some(frame);
                return false;
            }
            Some(Ok(_)) => {}
            Some(Err(_)) | None => {
                self.closed.get_or_insert(None);
                return false;
            }
        }
        true
    }

    /// The end of the received text, for failure messages.
    pub fn tail(&self, chars: usize) -> String {
        let text = self.text();
        let start = text.char_indices().rev().nth(chars).map_or(0, |(i, _)| i);
        text[start..].to_owned()
    }

    /// The received terminal text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// The terminal text received from byte `from` on.
    pub fn text_from(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.bytes[from..]).into_owned()
    }

    /// Reads until the received bytes (from `from` on) contain `needle`.
    pub async fn wait_for_from(&mut self, from: usize, needle: &str) {
        let needle_bytes = needle.as_bytes();
        let found = tokio::time::timeout(WAIT, async {
            // Only what arrived since the last look is searched (big floods stay linear).
            let mut checked = from;
            loop {
                let start = checked.saturating_sub(needle_bytes.len()).max(from);
                if start < self.bytes.len()
                    && self.bytes[start..]
                        .windows(needle_bytes.len())
                        .any(|w| w == needle_bytes)
                {
                    return true;
                }
                checked = self.bytes.len();
                if !self.read_one().await {
                    return false;
                }
            }
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "`{needle:?}` never arrived; the last received:\n{:?}\nmessages: {:?}",
            self.tail(1500),
            self.messages
        );
    }

    pub async fn wait_for(&mut self, needle: &str) {
        self.wait_for_from(0, needle).await;
    }

    /// Reads until a control message matches; returns it.
    pub async fn wait_message(&mut self, matches: impl Fn(&Value) -> bool) -> Value {
        let seen = self.messages.len();
        let found = tokio::time::timeout(WAIT, async {
            let mut checked = seen;
            loop {
                if let Some(m) = self.messages[checked..].iter().find(|m| matches(m)) {
                    return Some(m.clone());
                }
                checked = self.messages.len();
                if !self.read_one().await {
                    return None;
                }
            }
        })
        .await;
        found.ok().flatten().unwrap_or_else(|| {
            panic!(
                "no such message; got {:?}, closed {:?}",
                self.messages, self.closed
            )
        })
    }

    /// Reads until a snapshot (its message and its bytes) has arrived; returns the message.
    pub async fn wait_snapshot(&mut self) -> Value {
        let message = self.wait_message(|m| m["type"] == "snapshot").await;
        let before = self.bytes.len();
        let arrived = tokio::time::timeout(WAIT, async {
            while self.bytes.len() == before {
                if !self.read_one().await {
                    return false;
                }
            }
            true
        })
        .await;
        assert!(
            matches!(arrived, Ok(true)),
            "the snapshot's bytes never came"
        );
        message
    }

    /// Reads until the socket closes; returns the close frame.
    pub async fn wait_closed(&mut self) -> Option<CloseFrame> {
        let ended = tokio::time::timeout(WAIT, async { while self.read_one().await {} }).await;
        assert!(
            ended.is_ok(),
            "the socket never closed: {:?}",
            self.messages
        );
        self.closed.clone().flatten()
    }

    /// Types a line into the shell and waits for `expect` in what follows.
    pub async fn run(&mut self, line: &str, expect: &str) {
        let from = self.bytes.len();
        self.send_bytes(format!("{line}\r").as_bytes()).await;
        self.wait_for_from(from, expect).await;
    }
}
