//! Sign-outs as they happen: sockets opened with a session (terminals) close within a moment of
//! its end (sign-out, a password change, a disabled account) instead of at their next check.

use tokio::sync::broadcast;

/// A session, or every session of an account but one, that just ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignOut {
    Session(String),
    Account {
        user_id: i64,
        except: Option<String>,
    },
}

impl SignOut {
    /// Whether this ends `session` of `user_id`.
    pub fn ends(&self, user_id: i64, session: &str) -> bool {
        match self {
            Self::Session(ended) => ended == session,
            Self::Account {
                user_id: account,
                except,
            } => *account == user_id && except.as_deref() != Some(session),
        }
    }
}

#[derive(Clone)]
pub struct SignOuts(broadcast::Sender<SignOut>);

impl Default for SignOuts {
    fn default() -> Self {
        Self(broadcast::channel(256).0)
    }
}

impl SignOuts {
    pub fn announce(&self, signout: SignOut) {
        let _ = self.0.send(signout);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<SignOut> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_wide_sign_out_spares_the_session_that_asked() {
        let all_but_mine = SignOut::Account {
            user_id: 7,
            except: Some("mine".into()),
        };
        assert!(all_but_mine.ends(7, "other"));
        assert!(!all_but_mine.ends(7, "mine"));
        assert!(!all_but_mine.ends(8, "other"));
        assert!(SignOut::Session("s".into()).ends(9, "s"));
        assert!(!SignOut::Session("s".into()).ends(9, "t"));
    }
}
