//! Web Push: the server's VAPID key, each user's subscribed devices, and notifications when an
//! agent needs someone (permission at once, waiting after a quiet time, exited or crashed), for
//! admins' alerts and on every new sign-in. Messages are coalesced per instance (one tag and
//! one push-service topic) and withdrawn when answered elsewhere; a permission notification
//! carries a single-use action token that answers it from the lock screen (`POST /api/push/act`).

pub mod notifier;
pub mod routes;
pub mod sender;
pub mod store;
pub mod tokens;
pub mod vapid;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::db::Db;
use crate::error::AppError;
use crate::state::AppState;
pub use routes::router;
use sender::{Options, Outcome, Sender, Urgency};

/// Longest question or body text a notification carries (the whole payload must stay under
/// the push services' 4 KB).
const MAX_TEXT: usize = 600;

/// Tries per message to one device before giving up (1, 2, 4, 8 s apart unless told).
const TRIES: u32 = 5;

/// Checks `push.subject`: a real contact, since Apple refuses made-up ones.
pub fn check_subject(subject: &str) -> Result<(), &'static str> {
    let ok = match subject.split_once(':') {
        Some(("mailto", address)) => {
            address.contains('@') && !address.ends_with("@localhost") && !address.contains(' ')
        }
        Some(("https", rest)) => rest.starts_with("//") && rest.len() > 2,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err("must be a real `mailto:` address or an `https:` URL")
    }
}

/// One choice of a question, such as Allow or Deny.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Choice {
    pub id: String,
    pub label: String,
}

/// The question a notification's actions answer.
#[derive(Debug, Clone, Serialize)]
pub struct Question {
    /// The approval's id, once approvals are read (`None`: from the monitor's status alone).
    pub approval: Option<String>,
    pub text: String,
    pub choices: Vec<Choice>,
}

/// What the service worker receives (decrypted): enough to show, replace or withdraw the
/// notification and to answer it.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    /// `permission`, `waiting`, `exited`, `alert`, `sign_in`, `budget`, or `clear` (withdraw
    /// `tag`).
    pub kind: &'static str,
    /// Notifications with the same tag replace each other: one per instance.
    pub tag: String,
    pub title: String,
    pub body: String,
    /// Where a tap leads, relative to the app: `#/t/<instance>` for an instance's terminal.
    pub url: String,
    pub instance: Option<String>,
    pub question: Option<Question>,
    /// Spends once on `POST /api/push/act`, with this instance and one of the question's choices.
    pub token: Option<String>,
}

pub struct Message {
    pub payload: Payload,
    /// The coalescing key: a newer message with the same key replaces an older one.
    pub key: String,
    pub urgency: Urgency,
    pub ttl: Duration,
}

/// Sends notifications in the background: a request never waits for a push service.
pub struct Push {
    vapid: vapid::Vapid,
    /// `None` while `push.subject` is not set.
    sender: Option<Sender>,
    db: Db,
    /// The newest message per device and coalescing key; an older one still retrying gives up.
    newest: Mutex<HashMap<(i64, String), u64>>,
    next: std::sync::atomic::AtomicU64,
    shutdown: CancellationToken,
}

impl Push {
    pub fn new(
        config: &Config,
        db: Db,
        server_dir: &std::path::Path,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let vapid = vapid::Vapid::load_or_create(server_dir)?;
        let sender = config
            .push
            .subject
            .as_ref()
            .map(|subject| -> anyhow::Result<Sender> {
                Ok(Sender::new(
                    vapid.key_pair()?,
                    subject.clone(),
                    config.push.allowed_hosts.clone(),
                ))
            })
            .transpose()?;
        Ok(Self {
            vapid,
            sender,
            db,
            newest: Mutex::default(),
            next: Default::default(),
            shutdown,
        })
    }

    pub fn enabled(&self) -> bool {
        self.sender.is_some()
    }

    pub fn public_key(&self) -> &str {
        &self.vapid.public_key
    }

    /// Sends `message` to every device of `user_id`, in the background.
    pub fn notify(self: &Arc<Self>, user_id: i64, message: Message) {
        if !self.enabled() {
            return;
        }
        let push = self.clone();
        let message = Arc::new(message);
        tokio::spawn(async move {
            let devices = match store::targets(&push.db, user_id).await {
                Ok(devices) => devices,
                Err(err) => {
                    tracing::warn!(error = %err.logged(), "cannot read push subscriptions");
                    return;
                }
            };
            for device in devices {
                tokio::spawn(push.clone().deliver(device, message.clone()));
            }
        });
    }

    async fn deliver(self: Arc<Self>, device: store::Stored, message: Arc<Message>) {
        let Some(sender) = &self.sender else { return };
        // Apple's devices must show something for every push, so a withdrawal is not sent
        // there: the next message with the tag replaces the stale one instead.
        if message.payload.kind == "clear" && is_apple(&device.endpoint) {
            return;
        }
        let body = serde_json::to_vec(&message.payload).unwrap_or_default();
        let key = (device.id, message.key.clone());
        let mine = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.newest.lock().insert(key.clone(), mine);
        let topic = sender::topic(&message.key);
        let options = Options {
            ttl: message.ttl,
            urgency: message.urgency,
            topic: Some(&topic),
        };
        let mut pause = Duration::from_secs(1);
        for attempt in 1..=TRIES {
            if self.newest.lock().get(&key) != Some(&mine) {
                return;
            }
            match sender.send(&device.target(), &body, &options).await {
                Outcome::Delivered => {
                    if let Err(err) = store::delivered(&self.db, device.id).await {
                        tracing::debug!(error = %err.logged(), "cannot note a delivery");
                    }
                    break;
                }
                Outcome::Gone => {
                    tracing::info!(
                        subscription = device.id,
                        "push subscription ended; forgotten"
                    );
                    if let Err(err) = store::forget(&self.db, device.id).await {
                        tracing::warn!(error = %err.logged(), "cannot forget a subscription");
                    }
                    break;
                }
                Outcome::Rejected(status) => {
                    tracing::warn!(
                        subscription = device.id,
                        status,
                        "push service refused a message"
                    );
                    break;
                }
                Outcome::Retry(after) if attempt < TRIES => {
                    let wait = after.unwrap_or(pause);
                    pause *= 2;
                    tokio::select! {
                        () = self.shutdown.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Outcome::Retry(_) => {
                    tracing::warn!(
                        subscription = device.id,
                        "push service unreachable; gave up"
                    );
                }
            }
        }
        let mut newest = self.newest.lock();
        if newest.get(&key) == Some(&mine) {
            newest.remove(&key);
        }
    }
}

fn is_apple(endpoint: &str) -> bool {
    reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| sender::host_allowed(h, &["*.push.apple.com".into()]))
        })
        .unwrap_or(false)
}

/// `text` cut to [`MAX_TEXT`] characters.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_TEXT) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

/// What the approval behind a `needs_permission` status asks: the dialog pocketdev read on the
/// agent's screen (`pending_approval`), its allowing choice first and its refusing one second
/// (a notification shows two actions); else the monitor's words with Allow / Deny, which a
/// notification cannot answer.
pub async fn pending_question(
    state: &AppState,
    instance: &crate::instances::store::Instance,
    reason: Option<&str>,
) -> Question {
    use crate::instances::approvals::ChoiceKind;
    if let Some(approval) = state.instances.pending_approval(instance) {
        let mut choices = approval.choices.clone();
        let rank = |kind: ChoiceKind| match kind {
            ChoiceKind::Allow => 0,
            ChoiceKind::Deny => 1,
            ChoiceKind::Always => 2,
        };
        choices.sort_by_key(|c| rank(c.kind));
        return Question {
            approval: Some(approval.id.clone()),
            text: clip(&format!("{}: {}", approval.tool, approval.detail)),
            choices: choices
                .into_iter()
                .map(|c| Choice {
                    id: c.id,
                    label: match c.kind {
                        ChoiceKind::Allow => "Allow".into(),
                        ChoiceKind::Always => "Always".into(),
                        ChoiceKind::Deny => "Deny".into(),
                    },
                })
                .collect(),
        };
    }
    Question {
        approval: None,
        text: clip(reason.unwrap_or("The agent asks before it goes on.")),
        choices: vec![
            Choice {
                id: "allow".into(),
                label: "Allow".into(),
            },
            Choice {
                id: "deny".into(),
                label: "Deny".into(),
            },
        ],
    }
}

/// How answering an approval turned out (the approvals' own outcomes).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Answered {
    /// `done`, `gone` (no longer asked) or `changed` (another question is asked now).
    pub outcome: String,
}

/// Carries out the choice a notification's action made on the instance's approval, as its
/// owner (audited with `via: push`). A question without an approval (the monitor's words
/// alone) cannot be answered from a notification.
pub async fn answer(
    state: &AppState,
    owner: &crate::users::User,
    instance_id: &str,
    approval_id: Option<&str>,
    choice: &str,
) -> Result<Answered, routes::ActError> {
    let Some(approval_id) = approval_id else {
        return Err(routes::ActError::NotAvailable);
    };
    crate::instances::approval_routes::resume_for_an_answer(state, owner, instance_id)
        .await
        .map_err(routes::ActError::App)?;
    let by = crate::instances::approvals::AnsweredBy {
        user: owner,
        ip: None,
        via: "push",
    };
    let answered = state
        .instances
        .answer_approval(&by, instance_id, approval_id, choice)
        .await
        .map_err(routes::ActError::App)?;
    Ok(Answered {
        outcome: answered.outcome.as_str().to_owned(),
    })
}

/// A device's name from its `User-Agent`, such as "Chrome on Android".
pub fn device_name(user_agent: Option<&str>) -> String {
    let ua = user_agent.unwrap_or_default();
    let has = |needle: &str| ua.contains(needle);
    let os = if has("iPhone") {
        "iPhone"
    } else if has("iPad") {
        "iPad"
    } else if has("Android") {
        "Android"
    } else if has("CrOS") {
        "ChromeOS"
    } else if has("Windows") {
        "Windows"
    } else if has("Mac OS X") || has("Macintosh") {
        "macOS"
    } else if has("Linux") {
        "Linux"
    } else {
        ""
    };
    let browser = if has("Edg/") {
        "Edge"
    } else if has("SamsungBrowser") {
        "Samsung Internet"
    } else if has("Firefox/") || has("FxiOS") {
        "Firefox"
    } else if has("Chrome/") || has("Chromium/") || has("CriOS") {
        "Chrome"
    } else if has("Safari/") {
        "Safari"
    } else {
        ""
    };
    match (browser, os) {
        ("", "") => "Unknown device".into(),
        ("", os) => os.into(),
        (browser, "") => browser.into(),
        (browser, os) => format!("{browser} on {os}"),
    }
}

/// Tells `user`'s devices that someone signed in to the account, naming the device and address
/// (a stolen password is noticed at once).
pub fn signed_in(
    state: &AppState,
    user_id: i64,
    username: &str,
    ip: IpAddr,
    user_agent: Option<&str>,
) {
    let device = device_name(user_agent);
    state.push.notify(
        user_id,
        Message {
            payload: Payload {
                kind: "sign_in",
                tag: format!("sign-in-{}", crate::auth::tokens::random_token(6)),
                title: format!("New sign-in to {username}"),
                body: format!("{device} from {ip}. Not you? Change your password in Settings."),
                url: "#/settings".into(),
                instance: None,
                question: None,
                token: None,
            },
            key: format!("sign-in:{ip}:{device}"),
            urgency: Urgency::Normal,
            ttl: Duration::from_secs(24 * 3600),
        },
    );
}

/// Tells `user`'s devices how their budget stands (80 % spent, or all of it).
pub fn budget_notice(state: &AppState, user_id: i64, text: &str) {
    state.push.notify(
        user_id,
        Message {
            payload: Payload {
                kind: "budget",
                tag: "budget".into(),
                title: "Spending budget".into(),
                body: clip(text),
                url: "#/settings".into(),
                instance: None,
                question: None,
                token: None,
            },
            key: "budget".into(),
            urgency: Urgency::Normal,
            ttl: Duration::from_secs(24 * 3600),
        },
    );
}

impl From<AppError> for routes::ActError {
    fn from(err: AppError) -> Self {
        Self::App(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_must_be_real_contacts() {
        assert!(check_subject("mailto:ops@example.org").is_ok());
        assert!(check_subject("https://example.org/contact").is_ok());
        for bad in [
            "ops@example.org",
            "mailto:root@localhost",
            "http://example.org",
            "mailto:",
            "https:",
        ] {
            assert!(check_subject(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn devices_are_named_from_their_user_agent() {
        let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Mobile Safari/537.36";
        assert_eq!(device_name(Some(android)), "Chrome on Android");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(device_name(Some(iphone)), "Safari on iPhone");
        assert_eq!(device_name(Some("curl/8.0")), "Unknown device");
        assert_eq!(device_name(None), "Unknown device");
    }

    #[test]
    fn long_texts_are_clipped() {
        assert_eq!(clip("short"), "short");
        assert_eq!(clip(&"é".repeat(700)).chars().count(), MAX_TEXT + 1);
    }
}
