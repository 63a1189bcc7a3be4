//! Single-use tickets that open one instance's terminal socket for a short while, so the
//! browser app never puts its long-lived credential in a URL.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::auth::tokens::{hash_token, random_token};

/// The longest a ticket may stay valid.
pub const MAX_TTL: Duration = Duration::from_secs(30);

struct Ticket {
    user_id: i64,
    session_id: String,
    instance_id: String,
    expires: Instant,
}

/// Who a redeemed ticket was issued to.
#[derive(Debug, PartialEq, Eq)]
pub struct Holder {
    pub user_id: i64,
    pub session_id: String,
}

/// Tickets by hash; kept in memory, since they live for seconds.
pub struct Tickets {
    ttl: Duration,
    issued: Mutex<HashMap<String, Ticket>>,
}

impl Tickets {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl: ttl.min(MAX_TTL),
            issued: Mutex::default(),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn issue(&self, user_id: i64, session_id: &str, instance_id: &str) -> String {
        let ticket = random_token(24);
        let mut issued = self.issued.lock();
        let now = Instant::now();
        issued.retain(|_, t| t.expires > now);
        issued.insert(
            hash_token(&ticket),
            Ticket {
                user_id,
                session_id: session_id.to_owned(),
                instance_id: instance_id.to_owned(),
                expires: now + self.ttl,
            },
        );
        ticket
    }

    /// The holder of an unexpired ticket for `instance_id`; the ticket is spent either way.
    pub fn redeem(&self, ticket: &str, instance_id: &str) -> Option<Holder> {
        let found = self.issued.lock().remove(&hash_token(ticket))?;
        (found.expires > Instant::now() && found.instance_id == instance_id).then_some(Holder {
            user_id: found.user_id,
            session_id: found.session_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_single_use_and_bound_to_one_instance() {
        let tickets = Tickets::new(MAX_TTL);
        let ticket = tickets.issue(7, "sid", "abc");
        assert_eq!(tickets.redeem(&ticket, "other"), None);
        assert_eq!(
            tickets.redeem(&ticket, "abc"),
            None,
            "spent by the wrong try"
        );
        let ticket = tickets.issue(7, "sid", "abc");
        assert_eq!(
            tickets.redeem(&ticket, "abc"),
            Some(Holder {
                user_id: 7,
                session_id: "sid".into()
            })
        );
        assert_eq!(tickets.redeem(&ticket, "abc"), None);
        assert_eq!(tickets.redeem("made-up", "abc"), None);
    }

    #[test]
    fn expired_tickets_open_nothing() {
        let tickets = Tickets::new(Duration::ZERO);
        let ticket = tickets.issue(7, "sid", "abc");
        assert_eq!(tickets.redeem(&ticket, "abc"), None);
        assert_eq!(Tickets::new(Duration::from_secs(3600)).ttl(), MAX_TTL);
    }
}
