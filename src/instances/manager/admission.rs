//! Admission: which profiles a user can start, and whether a start fits the instance limits
//! and the memory that is free. Measured memory comes from a [`MemoryView`](crate::instances::observe::MemoryView) (the monitor's).

use std::collections::HashSet;

use serde::Serialize;

use super::Manager;
use crate::error::AppError;
use crate::instances::profiles::{Profile, ProfileKind, resolve_command, search_path};
use crate::instances::store::{self, Instance};
use crate::users::User;

/// What a refused start is short of: room in the account (its own limit), on the server (the
/// total or memory), or nothing suspending could give (the database failed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Room {
    Account,
    Server,
    None,
}

/// A profile as `GET /api/models` shows it to one user.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ModelInfo {
    pub id: String,
    pub name: String,
    pub kind: ProfileKind,
    pub memory_mb: u64,
    /// Whether this user can start it now.
    pub usable: bool,
    /// Why not, when it is not usable.
    pub reason: Option<String>,
    /// Secret names the profile needs, for a link to set them.
    pub required_secrets: Vec<String>,
    /// Whether its agents can be suspended and resumed where they were (`resume_args`).
    pub can_resume: bool,
}

impl Manager {
    /// Every enabled profile, with whether `user` can start it now.
    pub async fn models(&self, user: &User) -> Result<Vec<ModelInfo>, AppError> {
        let names: HashSet<String> = crate::secrets::store::list(&self.db, user.id)
            .await?
            .into_iter()
            .map(|s| s.name)
            .collect();
        let path = search_path();
        Ok(self
            .config
            .profiles
            .iter()
            .filter(|(_, p)| p.enabled)
            .map(|(id, profile)| {
                let missing: Vec<&String> = profile
                    .secrets
                    .values()
                    .filter(|s| !names.contains(*s))
                    .collect();
                let reason = if resolve_command(&profile.command, &path).is_none() {
                    Some(format!(
                        "`{}` is not installed on the server",
                        profile.command
                    ))
                } else if !missing.is_empty() {
                    let list: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                    Some(format!(
                        "set the secret {} in Settings first",
                        list.join(", ")
                    ))
                } else {
                    None
                };
                ModelInfo {
                    id: id.clone(),
                    name: profile.name.clone(),
                    kind: profile.kind,
                    memory_mb: profile.memory_mb,
                    usable: reason.is_none(),
                    reason,
                    required_secrets: profile.secrets.values().cloned().collect(),
                    can_resume: profile.can_resume(),
                }
            })
            .collect())
    }

    /// Admits a start (of a new instance, or of `starting`, an existing one) within the
    /// instance limits and the memory that is free. Where it does not fit, idle agents that can
    /// resume are suspended for it, the longest idle first: the account's own, then others'
    /// (`limits.make_room_from_others`). Answers those suspended; the caller holds `admission`.
    pub(super) async fn admit(
        &self,
        user: &User,
        profile: &Profile,
        starting: Option<&str>,
    ) -> Result<Vec<Instance>, AppError> {
        let mut made_room: Vec<Instance> = Vec::new();
        let mut tried: HashSet<String> = starting.into_iter().map(str::to_owned).collect();
        loop {
            let (room, refusal) = match self.check_room(user, profile).await {
                Ok(()) => return Ok(made_room),
                Err(refused) => refused,
            };
            let Some(idle) = self.longest_idle(user, room, &tried).await? else {
                return Err(refusal);
            };
            tried.insert(idle.id.clone());
            // One at a time, and never one that someone is acting on.
            let Ok(_busy) = self.busy(&idle.id) else {
                continue;
            };
            match self.suspend_inner(&idle, "memory").await {
                Ok(()) => {
                    crate::audit::record(
                        &self.db,
                        crate::audit::Event {
                            user_id: Some(user.id),
                            username: Some(&user.username),
                            action: "instance.suspend",
                            target: Some(format!("instance:{}", idle.id)),
                            detail: Some(serde_json::json!({
                                "reason": "memory",
                                "to_make_room_for": profile.name,
                                "owner": idle.owner,
                                "refused_because": refusal.to_string(),
                            })),
                            ..Default::default()
                        },
                    )
                    .await;
                    made_room.push(idle);
                }
                Err(err) => {
                    tracing::info!(instance = %idle.id, error = %err.logged(), "could not suspend an idle agent to make room");
                }
            }
        }
    }

    /// The running agent at rest the longest that suspending would make room for: of the
    /// account first; of others only where the server's count or memory is what is short.
    async fn longest_idle(
        &self,
        user: &User,
        room: Room,
        tried: &HashSet<String>,
    ) -> Result<Option<Instance>, AppError> {
        let resting = self.observers.memory.resting();
        let busy = self.busy.lock().clone();
        let mut candidates: Vec<(bool, i64, Instance)> = store::live(&self.db)
            .await?
            .into_iter()
            .filter(|i| i.state == store::State::Running)
            .filter(|i| !tried.contains(&i.id) && !busy.contains(&i.id))
            .filter(|i| {
                self.config.profiles.get(&i.profile).is_some_and(|p| {
                    p.can_resume() && p.idle_policy() != crate::instances::profiles::IdlePolicy::Off
                })
            })
            .filter(|i| match room {
                Room::Account => i.owner == user.id,
                Room::Server => i.owner == user.id || self.config.limits.make_room_from_others,
                Room::None => false,
            })
            .filter_map(|i| {
                let since = *resting.get(&i.id)?;
                Some((i.owner != user.id, since, i))
            })
            .collect();
        // Own before others', then the longest idle.
        candidates.sort_by_key(|(others, since, _)| (*others, *since));
        Ok(candidates.into_iter().next().map(|(_, _, i)| i))
    }

    /// Refuses a start beyond the instance limits or the memory that is free, saying which
    /// room is short.
    async fn check_room(&self, user: &User, profile: &Profile) -> Result<(), (Room, AppError)> {
        let limits = &self.config.limits;
        let (mine, total) = store::live_counts(&self.db, user.id)
            .await
            .map_err(|e| (Room::None, e))?;
        if total >= i64::from(limits.max_total) {
            return Err((
                Room::Server,
                AppError::Conflict(format!(
                    "the server runs its maximum of {} instances; stop one first",
                    limits.max_total
                )),
            ));
        }
        if let Some(max) = limits.per_user(user.is_admin())
            && mine >= i64::from(max)
        {
            return Err((
                Room::Account,
                AppError::Conflict(format!(
                    "you already run your maximum of {max} instances; stop one first"
                )),
            ));
        }
        self.admit_memory(user, profile)
            .await
            .map_err(|e| (Room::Server, e))
    }

    /// Refuses a start that would not fit in memory. Running agents count with what they
    /// use now, or with their profile's estimate while they have not grown to it yet, since
    /// a fresh agent grows; the newcomer counts with its estimate.
    async fn admit_memory(&self, user: &User, profile: &Profile) -> Result<(), AppError> {
        const MB: u64 = 1024 * 1024;
        let limits = &self.config.limits;
        let measured = self.observers.memory.measured();
        let mut running = Vec::new();
        for instance in store::live(&self.db).await? {
            let estimate = self
                .config
                .profiles
                .get(&instance.profile)
                .map_or(0, |p| p.memory_mb * MB);
            let now = measured.get(&instance.id).copied().unwrap_or(0);
            running.push((instance, now, estimate.max(now)));
        }
        let (fits, capacity_text) = if limits.memory_budget_mb > 0 {
            let committed: u64 = running.iter().map(|(_, _, counted)| counted).sum();
            let budget = limits.memory_budget_mb * MB;
            (
                committed + profile.memory_mb * MB <= budget,
                format!(
                    "agents may use {} MB together and {} MB of that is taken",
                    limits.memory_budget_mb,
                    committed / MB
                ),
            )
        } else {
            let Some(available) = available_memory_mb().map(|mb| mb * MB) else {
                return Ok(());
            };
            // What running agents will still grow into is not available for the newcomer.
            let growth: u64 = running.iter().map(|(_, now, counted)| counted - now).sum();
            let usable = available
                .saturating_sub(growth)
                .saturating_sub(limits.memory_reserve_mb * MB);
            (
                profile.memory_mb * MB <= usable,
                format!(
                    "the server has {} MB available, keeps {} MB in reserve and expects {} MB more from agents still starting",
                    available / MB,
                    limits.memory_reserve_mb,
                    growth / MB
                ),
            )
        };
        if fits {
            return Ok(());
        }
        // Name the caller's own biggest instances; others' are only a total.
        running.sort_by_key(|(_, now, _)| std::cmp::Reverse(*now));
        let mine: Vec<String> = running
            .iter()
            .filter(|(i, _, _)| i.owner == user.id)
            .take(3)
            .map(|(i, now, _)| format!("{} ({} MB)", i.name, now / MB))
            .collect();
        let others: u64 = running
            .iter()
            .filter(|(i, _, _)| i.owner != user.id)
            .map(|(_, now, _)| now)
            .sum();
        let mut using = Vec::new();
        if !mine.is_empty() {
            using.push(format!("your {}", mine.join(", ")));
        }
        if others > 0 {
            using.push(format!("other users' agents ({} MB)", others / MB));
        }
        let using = if using.is_empty() {
            String::new()
        } else {
            format!("; using memory: {}", using.join(" and "))
        };
        Err(AppError::Conflict(format!(
            "not enough memory: {} needs about {} MB, {capacity_text}{using}; stop an instance first",
            profile.name, profile.memory_mb
        )))
    }
}

/// `MemAvailable` from /proc/meminfo, in MB.
fn available_memory_mb() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024)
}
