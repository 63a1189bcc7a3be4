//! `GET /api/usage` (your own), `GET /api/admin/usage` (every account, also as CSV) and
//! `GET /api/instances/{id}/usage`.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};

use super::budgets::{self, Period, Standing};
use super::{SpendTotals, day, store, sum_by};
use crate::auth::extract::{AdminUser, AuthUser};
use crate::error::{AppError, AppResult, ErrorBody, Json, JsonRejections, Path, Query};
use crate::http::client::ClientInfo;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(own))
        .routes(routes!(everyone))
        .routes(routes!(instance))
        .routes(routes!(list_budgets, set_budget))
        .routes(routes!(remove_budget))
        .routes(routes!(lift_budget))
}

#[derive(Serialize, ToSchema)]
pub struct ModelTotals {
    pub model: String,
    /// Whether a price is configured for it (else only tokens count).
    pub priced: bool,
    #[serde(flatten)]
    pub totals: SpendTotals,
}

#[derive(Serialize, ToSchema)]
pub struct InstanceTotals {
    pub instance_id: String,
    /// Its name when it last spent (it may have been renamed or deleted since).
    pub name: String,
    #[serde(flatten)]
    pub totals: SpendTotals,
}

#[derive(Serialize, ToSchema)]
pub struct DayTotals {
    /// `YYYY-MM-DD`, UTC.
    pub day: String,
    #[serde(flatten)]
    pub totals: SpendTotals,
}

/// An account's spending.
#[derive(Serialize, ToSchema)]
pub struct AccountSpending {
    /// The currency of every `cost` (`usage.currency`).
    pub currency: String,
    pub today: SpendTotals,
    /// The last 7 days, today included.
    pub week: SpendTotals,
    /// This calendar month (UTC).
    pub month: SpendTotals,
    /// This month, by model.
    pub by_model: Vec<ModelTotals>,
    /// This month, by instance, the costliest first.
    pub by_instance: Vec<InstanceTotals>,
    /// Today, by instance (for the agents' cards).
    pub today_by_instance: Vec<InstanceTotals>,
    /// The last 30 days, oldest first, every day present.
    pub days: Vec<DayTotals>,
    /// The budgets that limit this account (its own and the server's), with what is spent.
    pub budgets: Vec<Standing>,
}

struct Windows {
    today: String,
    week: String,
    month: String,
    days: Vec<String>,
}

fn windows(now: OffsetDateTime) -> Windows {
    let days = (0..30)
        .rev()
        .map(|back| day(now - time::Duration::days(back)))
        .collect();
    Windows {
        today: day(now),
        week: day(now - time::Duration::days(6)),
        month: format!("{}-01", &day(now)[..7]),
        days,
    }
}

impl Windows {
    fn since(&self) -> &str {
        self.days[0].as_str().min(self.month.as_str())
    }
}

fn account_usage(state: &AppState, rows: &[store::Row], w: &Windows) -> AccountSpending {
    account_usage_with(state, rows, w, Vec::new())
}

fn account_usage_with(
    state: &AppState,
    rows: &[store::Row],
    w: &Windows,
    budgets: Vec<Standing>,
) -> AccountSpending {
    let sum = |from: &str| {
        let mut totals = SpendTotals::default();
        for row in rows.iter().filter(|r| r.day.as_str() >= from) {
            totals.add(row);
        }
        totals
    };
    let month: Vec<store::Row> = rows.iter().filter(|r| r.day >= w.month).cloned().collect();
    let by_model = sum_by(&month, |r| r.model.clone())
        .into_iter()
        .map(|(model, totals)| ModelTotals {
            priced: super::pricing::price_of(&state.config.pricing, &model).is_some(),
            model,
            totals,
        })
        .collect();
    let names: BTreeMap<&str, &str> = month
        .iter()
        .map(|r| (r.instance_id.as_str(), r.instance_name.as_str()))
        .collect();
    let mut by_instance: Vec<InstanceTotals> = sum_by(&month, |r| r.instance_id.clone())
        .into_iter()
        .map(|(id, totals)| InstanceTotals {
            name: names
                .get(id.as_str())
                .copied()
                .unwrap_or_default()
                .to_owned(),
            instance_id: id,
            totals,
        })
        .collect();
    by_instance.sort_by(|a, b| b.totals.cost.total_cmp(&a.totals.cost));
    let today: Vec<store::Row> = rows.iter().filter(|r| r.day == w.today).cloned().collect();
    let today_by_instance = sum_by(&today, |r| r.instance_id.clone())
        .into_iter()
        .map(|(id, totals)| InstanceTotals {
            name: names
                .get(id.as_str())
                .copied()
                .unwrap_or_default()
                .to_owned(),
            instance_id: id,
            totals,
        })
        .collect();
    let per_day = sum_by(rows, |r| r.day.clone());
    AccountSpending {
        currency: state.usage.currency().to_owned(),
        today: sum(&w.today),
        week: sum(&w.week),
        month: sum(&w.month),
        by_model,
        by_instance,
        today_by_instance,
        budgets,
        days: w
            .days
            .iter()
            .map(|d| DayTotals {
                day: d.clone(),
                totals: per_day.get(d).cloned().unwrap_or_default(),
            })
            .collect(),
    }
}

/// What your agents spent: today, this week, this month (by model and by instance) and each
/// of the last 30 days. Tokens are read from the agents' own records; money is at the
/// configured prices.
#[utoipa::path(get, path = "/api/usage", tag = "usage",
    responses((status = 200, body = AccountSpending)))]
async fn own(State(state): State<AppState>, auth: AuthUser) -> AppResult<Json<AccountSpending>> {
    let w = windows(OffsetDateTime::now_utc());
    let rows = store::rows(&state.db, Some(auth.user.id), w.since()).await?;
    let now = OffsetDateTime::now_utc();
    let mut standings = Vec::new();
    for budget in budgets::for_user(&state.db, auth.user.id).await? {
        standings.push(budgets::standing(&state.db, &budget, state.usage.currency(), now).await?);
    }
    Ok(Json(account_usage_with(&state, &rows, &w, standings)))
}

#[derive(Serialize, ToSchema)]
pub struct AccountSpendTotals {
    pub user_id: i64,
    pub username: String,
    pub today: SpendTotals,
    pub month: SpendTotals,
}

/// Every account's spending, for admins.
#[derive(Serialize, ToSchema)]
pub struct ServerSpending {
    pub currency: String,
    /// Every account that spent in the last 30 days, the costliest this month first.
    pub accounts: Vec<AccountSpendTotals>,
    /// The whole server, each of the last 30 days, oldest first.
    pub days: Vec<DayTotals>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `json` (default) or `csv`: one line per day, account, instance and model, 30 days.
    format: Option<Format>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Format {
    Json,
    Csv,
}

/// Every account side by side, with the server's daily totals for 30 days; `?format=csv`
/// exports the detail.
#[utoipa::path(get, path = "/api/admin/usage", tag = "usage", params(ExportQuery),
    responses((status = 200, body = ServerSpending, description = "as JSON, or as CSV (`text/csv`) with `format=csv`"),
        (status = 403, description = "not an admin", body = ErrorBody)))]
async fn everyone(
    State(state): State<AppState>,
    _admin: AdminUser,
    Query(query): Query<ExportQuery>,
) -> AppResult<Response> {
    let w = windows(OffsetDateTime::now_utc());
    let rows = store::rows(&state.db, None, w.since()).await?;
    if query.format == Some(Format::Csv) {
        let mut csv = String::from(
            "day,account,instance_id,instance,model,input_tokens,output_tokens,cache_write_tokens,cache_read_tokens,cost\n",
        );
        for r in rows.iter().filter(|r| r.day >= w.days[0]) {
            csv.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{:.6}\n",
                r.day,
                csv_field(&r.username),
                r.instance_id,
                csv_field(&r.instance_name),
                csv_field(&r.model),
                r.input_tokens,
                r.output_tokens,
                r.cache_write_tokens,
                r.cache_read_tokens,
                r.cost_micros as f64 / 1e6
            ));
        }
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
                (
                    header::CONTENT_DISPOSITION,
                    "attachment; filename=\"pocketdev-usage.csv\"",
                ),
            ],
            csv,
        )
            .into_response());
    }
    let names: BTreeMap<i64, String> = rows
        .iter()
        .map(|r| (r.user_id, r.username.clone()))
        .collect();
    let by_account = sum_by(&rows, |r| r.user_id);
    let mut accounts: Vec<AccountSpendTotals> = by_account
        .keys()
        .map(|&user_id| {
            let mine: Vec<store::Row> = rows
                .iter()
                .filter(|r| r.user_id == user_id)
                .cloned()
                .collect();
            let usage = account_usage(&state, &mine, &w);
            AccountSpendTotals {
                user_id,
                username: names.get(&user_id).cloned().unwrap_or_default(),
                today: usage.today,
                month: usage.month,
            }
        })
        .collect();
    accounts.sort_by(|a, b| b.month.cost.total_cmp(&a.month.cost));
    let per_day = sum_by(&rows, |r| r.day.clone());
    Ok(Json(ServerSpending {
        currency: state.usage.currency().to_owned(),
        accounts,
        days: w
            .days
            .iter()
            .map(|d| DayTotals {
                day: d.clone(),
                totals: per_day.get(d).cloned().unwrap_or_default(),
            })
            .collect(),
    })
    .into_response())
}

/// A CSV field: quoted when it holds a comma, a quote or a line break; a leading `=+-@` is
/// defused so a spreadsheet does not run it as a formula.
fn csv_field(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// One conversation's spending.
#[derive(Serialize, ToSchema)]
pub struct ConversationTotals {
    pub tokens: i64,
    pub cost: f64,
}

/// One instance's spending.
#[derive(Serialize, ToSchema)]
pub struct InstanceSpending {
    /// Whether this agent's usage can be read (Claude Code's can); when false the figures are
    /// not zero but unknown.
    pub measured: bool,
    pub currency: String,
    /// The current conversation (since its start or its last `/clear`), once read.
    pub conversation: Option<ConversationTotals>,
    pub today: SpendTotals,
    /// Since the instance was made.
    pub total: SpendTotals,
}

/// What one instance spent: this conversation, today and in all.
#[utoipa::path(get, path = "/api/instances/{id}/usage", tag = "usage",
    params(("id" = String, Path, description = "Instance id")),
    responses((status = 200, body = InstanceSpending), (status = 404, description = "no such instance of yours", body = ErrorBody)))]
async fn instance(
    State(state): State<AppState>,
    auth: AuthUser,
    Path(id): Path<String>,
) -> AppResult<Json<InstanceSpending>> {
    let instance = crate::instances::routes::visible(&state.db, &auth, &id).await?;
    let rows = store::instance_rows(&state.db, &instance.id).await?;
    let today = day(OffsetDateTime::now_utc());
    let mut totals = SpendTotals::default();
    let mut today_totals = SpendTotals::default();
    for row in &rows {
        totals.add(row);
        if row.day == today {
            today_totals.add(row);
        }
    }
    let conversation = match &instance.agent_session_id {
        Some(session) => store::conversation(&state.db, &instance.id, session)
            .await?
            .map(|(tokens, micros)| ConversationTotals {
                tokens,
                cost: micros as f64 / 1e6,
            }),
        None => None,
    };
    Ok(Json(InstanceSpending {
        measured: state.usage.measured(&instance.profile),
        currency: state.usage.currency().to_owned(),
        conversation,
        today: today_totals,
        total: totals,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetBudget {
    /// The account it limits; null or absent for the whole server.
    #[serde(default)]
    pub user_id: Option<i64>,
    pub period: Period,
    /// At most this much money per period, in the configured currency.
    #[serde(default)]
    #[schema(minimum = 0.0001, maximum = 1000000000.0)]
    pub cost: Option<f64>,
    /// At most this many tokens per period.
    #[serde(default)]
    #[schema(minimum = 1)]
    pub tokens: Option<i64>,
}

async fn standing_of(state: &AppState, id: i64) -> AppResult<Standing> {
    let budget = budgets::all(&state.db)
        .await?
        .into_iter()
        .find(|b| b.id == id)
        .ok_or_else(|| AppError::not_found("budget"))?;
    budgets::standing(
        &state.db,
        &budget,
        state.usage.currency(),
        OffsetDateTime::now_utc(),
    )
    .await
}

/// Every budget, with what its account (or the server) has spent this period.
#[utoipa::path(get, path = "/api/admin/budgets", tag = "usage",
    responses((status = 200, body = Vec<Standing>), (status = 403, description = "not an admin", body = ErrorBody)))]
async fn list_budgets(
    State(state): State<AppState>,
    _admin: AdminUser,
) -> AppResult<Json<Vec<Standing>>> {
    let now = OffsetDateTime::now_utc();
    let mut all = Vec::new();
    for budget in budgets::all(&state.db).await? {
        all.push(budgets::standing(&state.db, &budget, state.usage.currency(), now).await?);
    }
    Ok(Json(all))
}

/// Sets the budget of an account (or of the server) for a period, replacing the one there was.
#[utoipa::path(put, path = "/api/admin/budgets", tag = "usage", request_body = SetBudget,
    responses((status = 200, body = Standing), JsonRejections, (status = 403, description = "not an admin", body = ErrorBody),
        (status = 404, description = "no such account", body = ErrorBody)))]
async fn set_budget(
    State(state): State<AppState>,
    admin: AdminUser,
    client: ClientInfo,
    Json(req): Json<SetBudget>,
) -> AppResult<Json<Standing>> {
    if req.cost.is_none() && req.tokens.is_none() {
        return Err(AppError::Unprocessable(
            "give a cost, a number of tokens, or both".into(),
        ));
    }
    if let Some(cost) = req.cost
        && !(cost.is_finite() && (0.0001..=1e9).contains(&cost))
    {
        return Err(AppError::Unprocessable(
            "cost must be a positive amount up to 1000000000".into(),
        ));
    }
    if req.tokens.is_some_and(|t| t < 1) {
        return Err(AppError::Unprocessable("tokens must be at least 1".into()));
    }
    if let Some(user) = req.user_id
        && crate::users::store::by_id(&state.db, user).await?.is_none()
    {
        return Err(AppError::not_found("account"));
    }
    let id = budgets::set(
        &state.db,
        req.user_id,
        req.period,
        req.cost.map(|c| (c * 1e6).round() as i64),
        req.tokens,
    )
    .await?;
    audit_budget(
        &state,
        &admin,
        client,
        "budget.set",
        id,
        serde_json::json!({
            "user_id": req.user_id, "period": req.period, "cost": req.cost, "tokens": req.tokens,
        }),
    )
    .await;
    Ok(Json(standing_of(&state, id).await?))
}

/// Removes a budget.
#[utoipa::path(delete, path = "/api/admin/budgets/{id}", tag = "usage",
    params(("id" = i64, Path, description = "budget id")),
    responses((status = 204), (status = 403, description = "not an admin", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn remove_budget(
    State(state): State<AppState>,
    admin: AdminUser,
    client: ClientInfo,
    Path(id): Path<i64>,
) -> AppResult<axum::http::StatusCode> {
    if !budgets::remove(&state.db, id).await? {
        return Err(AppError::not_found("budget"));
    }
    audit_budget(
        &state,
        &admin,
        client,
        "budget.remove",
        id,
        serde_json::json!({}),
    )
    .await;
    Ok(axum::http::StatusCode::NO_CONTENT)
}

/// Lifts a budget for the rest of today (UTC): agents may start again until midnight.
#[utoipa::path(post, path = "/api/admin/budgets/{id}/lift", tag = "usage",
    params(("id" = i64, Path, description = "budget id")),
    responses((status = 200, body = Standing), (status = 403, description = "not an admin", body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn lift_budget(
    State(state): State<AppState>,
    admin: AdminUser,
    client: ClientInfo,
    Path(id): Path<i64>,
) -> AppResult<Json<Standing>> {
    if !budgets::lift(&state.db, id, OffsetDateTime::now_utc()).await? {
        return Err(AppError::not_found("budget"));
    }
    audit_budget(
        &state,
        &admin,
        client,
        "budget.lift",
        id,
        serde_json::json!({}),
    )
    .await;
    Ok(Json(standing_of(&state, id).await?))
}

async fn audit_budget(
    state: &AppState,
    admin: &AdminUser,
    client: ClientInfo,
    action: &str,
    id: i64,
    detail: serde_json::Value,
) {
    crate::audit::record(
        &state.db,
        crate::audit::Event {
            user_id: Some(admin.0.user.id),
            username: Some(&admin.0.user.username),
            action,
            target: Some(format!("budget:{id}")),
            ip: Some(client.ip),
            detail: Some(detail),
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_are_quoted_and_formulas_defused() {
        assert_eq!(csv_field("ann"), "ann");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("=HYPERLINK(1)"), "'=HYPERLINK(1)");
    }

    #[test]
    fn the_windows_start_where_they_should() {
        let now = OffsetDateTime::parse(
            "2026-12-07T10:00:00Z",
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
        let w = windows(now);
        assert_eq!(w.today, "2026-12-07");
        assert_eq!(w.week, "2026-12-01");
        assert_eq!(w.month, "2026-12-01");
        assert_eq!(w.days.len(), 30);
        assert_eq!(w.days[0], "2026-11-08");
        assert_eq!(w.since(), "2026-11-08");
    }
}
