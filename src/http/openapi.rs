//! The OpenAPI description served at `/api/openapi.json`: the features' annotations, plus the
//! answers that the layers every request goes through can give (so no operation has to repeat
//! them, and none forgets one), plus the rules that come from the configuration.

use serde_json::{Map, Value, json};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::config::Config;

#[derive(OpenApi)]
#[openapi(
    info(title = "pocketdev", description = "Run AI coding agents in tmux on your own server and drive them from a phone."),
    modifiers(&SecuritySchemes),
    // Signed in by default; the public operations say `security(())`.
    security(("bearer" = []), ("cookie" = [])),
    tags(
        (name = "auth", description = "Sign-in, sessions and registration"),
        (name = "admin", description = "Accounts, invites and the audit log (admins only)"),
        (name = "instances", description = "Agent instances: profiles, lifecycle, input and output"),
        (name = "terminal", description = "Live terminals over WebSocket (docs/terminal-protocol.md)"),
        (name = "files", description = "Your workspace's files"),
        (name = "git", description = "Git for instances started on a branch: status, diffs, staging, commits, push, pull, merge; clones"),
        (name = "secrets", description = "Per-user secrets such as API keys"),
        (name = "system", description = "Health"),
        (name = "push", description = "Web Push notifications: devices, preferences, actions"),
        (name = "events", description = "Live events for a signed-in tab, as Server-Sent Events (docs/events.md)"),
    )
)]
pub struct ApiDoc;

struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        components.add_security_scheme(
            "cookie",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::new(
                crate::auth::extract::ACCESS_COOKIE,
            ))),
        );
    }
}

/// Password fields that the server holds to `auth.min_password_length` (new passwords only: a
/// current password may predate a raised minimum).
const NEW_PASSWORDS: &[(&str, &str)] = &[
    ("RegisterRequest", "password"),
    ("CreateUser", "password"),
    ("UpdateUser", "password"),
    ("PasswordChange", "new_password"),
];

const METHODS: &[&str] = &[
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];

/// The document as served: `openapi` with the shared answers and the configured limits.
pub fn document(openapi: &utoipa::openapi::OpenApi, config: &Config) -> Value {
    let mut doc = serde_json::to_value(openapi).expect("the OpenAPI description is JSON");
    add_shared_answers(&mut doc);
    for (schema, property) in NEW_PASSWORDS {
        if let Some(field) = doc
            .pointer_mut(&format!(
                "/components/schemas/{schema}/properties/{property}"
            ))
            .and_then(Value::as_object_mut)
        {
            field.insert("minLength".into(), config.auth.min_password_length.into());
        }
    }
    doc
}

fn error_answer(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } },
    })
}

/// Adds to each operation the answers it can get from the layers in front of its handler, unless
/// it documents that status itself:
/// - 429 from the rate limits (every operation: per user, per address, or per instance for hooks);
/// - 403 from the cross-site check on cookie-authenticated requests that change something;
/// - 413 from the body limit, where there is a body;
/// - 401 where a credential is required (the operation's `security`, else the document's);
/// - 400 from the query and path extractors, where a parameter can fail to parse (any query
///   parameter, since unknown ones are refused too; path parameters that are not strings).
fn add_shared_answers(doc: &mut Value) {
    let default_security = doc.get("security").cloned().unwrap_or(Value::Null);
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        for method in METHODS {
            let Some(operation) = item.get_mut(*method).and_then(Value::as_object_mut) else {
                continue;
            };
            let security = operation
                .get("security")
                .unwrap_or(&default_security)
                .as_array()
                .cloned()
                .unwrap_or_default();
            let signed_in = !security.is_empty()
                && !security
                    .iter()
                    .any(|r| r.as_object().is_some_and(Map::is_empty));
            let parsed_parameter = operation
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|p| {
                    p["in"] == "query" || (p["in"] == "path" && p["schema"]["type"] != "string")
                });
            let has_body = operation.contains_key("requestBody");
            let changes = !matches!(*method, "get" | "head" | "options");
            let mut shared = vec![(
                "429",
                error_answer("too many requests; `Retry-After` says when to try again"),
            )];
            if changes {
                shared.push((
                    "403",
                    error_answer(
                        "authenticated by the session cookie but sent from another site's page",
                    ),
                ));
            }
            if has_body {
                shared.push(("413", error_answer("the request body is too large")));
            }
            if signed_in {
                shared.push((
                    "401",
                    error_answer("no valid credential: sign in first, or the session ended"),
                ));
            }
            if parsed_parameter {
                shared.push(("400", error_answer("a parameter cannot be read")));
            }
            let responses = operation
                .entry("responses")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .expect("responses is an object");
            for (status, mut answer) in shared {
                if status == "429" {
                    answer["headers"] = json!({ "Retry-After": {
                        "description": "seconds to wait",
                        "schema": { "type": "integer", "minimum": 1 },
                    }});
                }
                responses.entry(status).or_insert(answer);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn served() -> Value {
        let (_, openapi) = super::super::api();
        document(&openapi, &Config::default())
    }

    #[test]
    fn shared_answers_follow_security_parameters_and_bodies() {
        let doc = served();
        let op = |path: &str, method: &str| doc["paths"][path][method]["responses"].clone();
        // Public: no 401; a GET: no cross-site 403.
        let health = op("/api/health", "get");
        assert!(
            health.get("401").is_none() && health.get("403").is_none(),
            "{health}"
        );
        assert!(health.get("429").is_some(), "{health}");
        // Signed in, a typed path parameter, a body that changes something.
        let update = op("/api/admin/users/{id}", "patch");
        for status in ["400", "401", "403", "413", "429"] {
            assert!(update.get(status).is_some(), "{status} in {update}");
        }
        // A string path parameter cannot fail to parse.
        let instance = op("/api/instances/{id}", "get");
        assert!(instance.get("400").is_none(), "{instance}");
    }

    #[test]
    fn new_passwords_carry_the_configured_minimum() {
        let doc = served();
        for (schema, property) in NEW_PASSWORDS {
            let field = &doc["components"]["schemas"][schema]["properties"][property];
            assert_eq!(
                field["minLength"],
                Config::default().auth.min_password_length,
                "{schema}.{property}: {field}"
            );
        }
    }
}
