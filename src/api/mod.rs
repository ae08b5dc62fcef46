//! The HTTP API: one poem-openapi struct per area, combined into one service with its
//! OpenAPI document and Swagger UI.

mod account;
mod admin;
mod api_keys;
mod audit;
mod browsers;
pub(crate) mod error;
mod health;
mod input;
mod items;
mod security;
mod sessions;
pub(crate) mod token;
mod wellknown;

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt as _, IntoEndpoint, Response, Route, get, handler, http::StatusCode,
    middleware::CatchPanic, web::Data,
};
use poem_openapi::{LicenseObject, OpenApiService, ServerObject, Tags};
use serde_json::{Value, json};

pub use error::ApiError;

pub use security::Credentials;

use crate::{
    accounts::Accounts,
    auth::{AccessTokens, Grants},
    db::Store,
};

/// What every request handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Verifies access tokens (the access check) and publishes the keys.
    pub tokens: Arc<AccessTokens>,
    /// The OAuth 2.0 grants and revocation (`/token`, `/token/revoke`).
    pub grants: Grants,
    /// The account rules: signup, self-service, administration.
    pub accounts: Accounts,
    /// Base of the absolute URLs in the server metadata; unset: from the request's `Host`.
    pub public_url: Option<String>,
    /// Header holding the client address, set by a trusted proxy (else the socket's peer).
    pub client_ip_header: Option<poem::http::HeaderName>,
    /// Other sites whose pages may call the API (`PORTCULLIS_CORS_ALLOWED_ORIGINS`).
    pub cors_allowed_origins: Vec<String>,
    /// Most items one user may hold.
    pub max_items_per_user: u32,
    /// The Prometheus metrics every request is counted in.
    pub metrics: crate::metrics::Metrics,
}

#[derive(Tags)]
enum ApiTags {
    /// Logging in: obtaining access tokens.
    Auth,
    /// Your account.
    Users,
    /// Your sessions: logging out, listing them, ending one.
    Sessions,
    /// Your personal API keys: long-lived credentials for scripts and CI.
    #[oai(rename = "API keys")]
    ApiKeys,
    /// Your items.
    Items,
    /// Managing every account (the `admin` scope).
    Admin,
    /// Liveness and readiness probes.
    Health,
    /// The keys that verify access tokens, and the server's metadata.
    Discovery,
}

const DESCRIPTION: &str = "\
An OAuth 2.0 password-flow authentication service issuing JWT bearer tokens.

Log in at `POST /token` with a username and password (form-encoded, as OAuth 2.0 requires), \
then send the `access_token` as `Authorization: Bearer <token>`. In Swagger UI, press \
**Authorize** and log in: every operation's *Try it out* then sends the token.

Scripts and CI can use a personal API key instead (`pcl_…`, created at \
`POST /users/me/api-keys`), sent the same way: `Authorization: Bearer pcl_…`. In Swagger UI, \
paste it under **APIKey** in the Authorize dialog.

Every error is JSON with a `detail` member; errors from `/token` also carry OAuth 2.0's \
`error` and `error_description`. Validation errors are 422 with a list of problems in `detail`.";

/// Every area of the API, in the document's order.
type Areas = (
    token::TokenApi,
    account::AccountApi,
    sessions::SessionsApi,
    api_keys::ApiKeysApi,
    items::ItemsApi,
    admin::AdminApi,
    api_keys::AdminApiKeysApi,
    audit::AuditApi,
    health::HealthApi,
    wellknown::WellKnownApi,
);

fn openapi_service() -> OpenApiService<Areas, ()> {
    OpenApiService::new(Areas::default(), "portcullis", env!("CARGO_PKG_VERSION"))
        .description(DESCRIPTION)
        .license(LicenseObject::new("MIT").url("https://opensource.org/license/mit"))
        .server(ServerObject::new("/").description("This server"))
}

/// The OpenAPI document, exactly as served at `/openapi.json` and committed as `openapi.json`.
pub fn openapi_document() -> String {
    refine(&openapi_service().spec())
}

/// Members that are always present, `null` when unset. poem-openapi can only say "optional";
/// clients generated from the document must know they may be `null`, not absent.
const NULLABLE_MEMBERS: [(&str, &str); 19] = [
    ("ApiKey", "expires_at"),
    ("ApiKey", "last_used_at"),
    ("ApiKeyCreated", "expires_at"),
    ("ApiKeyCreated", "last_used_at"),
    ("User", "email"),
    ("User", "full_name"),
    ("AdminUser", "email"),
    ("AdminUser", "full_name"),
    ("AdminUser", "last_login_at"),
    ("UserList", "next_cursor"),
    ("Item", "description"),
    ("Session", "user_agent"),
    ("AuditEvent", "user_id"),
    ("AuditEvent", "actor"),
    ("AuditEvent", "client_address"),
    ("AuditEvent", "user_agent"),
    ("AuditEvent", "session_id"),
    ("AuditEvent", "request_id"),
    ("AuditEventList", "next_cursor"),
];

/// Request members that may be sent as `null`: in an update it clears the e-mail address or
/// full name; elsewhere it counts as absent (as generated clients send an unset member).
const NULLABLE_REQUEST_MEMBERS: [(&str, &str); 14] = [
    ("ApiKeyCreate", "scopes"),
    ("ApiKeyCreate", "expires_in_days"),
    ("SignupRequest", "email"),
    ("SignupRequest", "full_name"),
    ("UserUpdate", "email"),
    ("UserUpdate", "full_name"),
    ("AdminUserCreate", "email"),
    ("AdminUserCreate", "full_name"),
    ("AdminUserCreate", "scopes"),
    ("AdminUserCreate", "disabled"),
    ("AdminUserUpdate", "email"),
    ("AdminUserUpdate", "full_name"),
    ("AdminUserUpdate", "disabled"),
    ("AdminUserUpdate", "scopes"),
];

/// Request members that must be e-mail addresses when they are strings (`format: email`: the
/// service checks one `@` between non-empty parts, no spaces, at most 254 characters).
const EMAIL_REQUEST_MEMBERS: [&str; 4] = [
    "SignupRequest",
    "UserUpdate",
    "AdminUserCreate",
    "AdminUserUpdate",
];

/// What poem-openapi cannot express, added to its document: operations without credentials
/// say so (`security: []`), an API key's requirement lists no scopes, always-present members
/// that may be `null` are required and `nullable`, and response headers keep their usual
/// spelling (it writes them in capitals).
fn refine(spec: &str) -> String {
    let mut doc: Value = serde_json::from_str(spec).expect("poem-openapi emits valid JSON");
    if let Some(paths) = doc["paths"].as_object_mut() {
        for (path, operation) in paths.iter_mut() {
            let Some(operation) = operation.as_object_mut() else {
                continue;
            };
            for (method, operation) in operation.iter_mut() {
                let Some(operation) = operation.as_object_mut() else {
                    continue;
                };
                operation.entry("security").or_insert_with(|| json!([]));
                clear_api_key_scopes(operation);
                if matches!(method.as_str(), "post" | "put" | "patch" | "delete") {
                    declare_origin_refusal(path, operation);
                }
                let responses = operation
                    .get_mut("responses")
                    .and_then(Value::as_object_mut);
                for response in responses.into_iter().flat_map(|r| r.values_mut()) {
                    if let Some(headers) =
                        response.get_mut("headers").and_then(Value::as_object_mut)
                    {
                        *headers = std::mem::take(headers)
                            .into_iter()
                            .map(|(name, header)| (header_spelling(&name), header))
                            .collect();
                    }
                }
            }
        }
    }
    // A request member that may be sent as `null` (it means absent).
    doc["components"]["schemas"]["ItemCreate"]["properties"]["description"]["nullable"] =
        json!(true);
    for schema in EMAIL_REQUEST_MEMBERS {
        doc["components"]["schemas"][schema]["properties"]["email"]["format"] = json!("email");
    }
    for (schema, member) in NULLABLE_REQUEST_MEMBERS {
        doc["components"]["schemas"][schema]["properties"][member]["nullable"] = json!(true);
    }
    for (schema, member) in NULLABLE_MEMBERS {
        let schema = &mut doc["components"]["schemas"][schema];
        schema["properties"][member]["nullable"] = json!(true);
        let required = schema["required"]
            .as_array_mut()
            .expect("the schema has required members");
        if !required.iter().any(|name| name == member) {
            required.push(json!(member));
        }
    }
    let mut refined = serde_json::to_string_pretty(&doc).expect("a JSON value serializes");
    refined.push('\n');
    refined
}

/// OpenAPI 3.0 allows scopes only in an `oauth2` (or OpenID Connect) requirement; poem-openapi
/// repeats the operation's scopes in every alternative. The `APIKey` one lists none: a key
/// needs the same scopes as the `OAuth2` alternative beside it names.
fn clear_api_key_scopes(operation: &mut serde_json::Map<String, Value>) {
    let requirements = operation.get_mut("security").and_then(Value::as_array_mut);
    for requirement in requirements.into_iter().flatten() {
        if let Some(scopes) = requirement.get_mut("APIKey") {
            *scopes = json!([]);
        }
    }
}

/// The 403 the browser policy (`browsers.rs`) gives a state-changing request from another
/// site's page, before any handler runs: declared beside the operation's own responses, in
/// status order.
fn declare_origin_refusal(path: &str, operation: &mut serde_json::Map<String, Value>) {
    // The token endpoints' errors carry the OAuth members; one error schema per operation is
    // also what progenitor (the Rust SDK) requires.
    let schema = if error::is_token_endpoint(path) {
        "#/components/schemas/TokenErrorBody"
    } else {
        "#/components/schemas/Error"
    };
    let Some(responses) = operation
        .get_mut("responses")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    responses.entry("403").or_insert_with(|| {
        json!({
            "description": "`Origin not allowed`: sent by a browser from a page of another site \
                (`Origin` neither this service's origin nor in PORTCULLIS_CORS_ALLOWED_ORIGINS, \
                or `null`). Requests without `Origin` never get it.",
            "content": {
                "application/json; charset=utf-8": {
                    "schema": { "$ref": schema }
                }
            }
        })
    });
    let mut sorted: Vec<(String, Value)> = std::mem::take(responses).into_iter().collect();
    sorted.sort_by(|(a, _), (b, _)| a.cmp(b));
    *responses = sorted.into_iter().collect();
}

/// `WWW-AUTHENTICATE` → `WWW-Authenticate`, `CACHE-CONTROL` → `Cache-Control`.
fn header_spelling(name: &str) -> String {
    if name.eq_ignore_ascii_case("www-authenticate") {
        return "WWW-Authenticate".into();
    }
    name.split('-')
        .map(|word| {
            let lower = word.to_ascii_lowercase();
            let mut chars = lower.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Swagger UI (poem-openapi's bundle) showing `document`, the refinement of `raw`, which is
/// what `service` inlines.
fn swagger_ui_page<T: poem_openapi::OpenApi, W: poem_openapi::Webhook>(
    service: &OpenApiService<T, W>,
    raw: &str,
    document: &str,
) -> String {
    let page = service.swagger_ui_html();
    assert!(
        page.contains(raw),
        "the Swagger UI page inlines the document"
    );
    page.replacen(raw, document.trim_end(), 1)
}

/// Every route of the service, with its middleware.
pub fn routes(state: AppState, max_body_bytes: usize) -> impl Endpoint<Output = Response> {
    // The document is generated once, at start, for every route that shows it.
    let service = openapi_service();
    let raw = service.spec();
    let document: Arc<str> = refine(&raw).into();
    let docs_page: Arc<str> = swagger_ui_page(&service, &raw, &document).into();
    let document_json: Value = serde_json::from_str(&document).expect("the document is JSON");
    let metrics = state.metrics.clone();
    let allowed = Arc::new(
        error::AllowedMethods::from_document(&document_json)
            .with("/docs", "GET")
            .with("/openapi.json", "GET"),
    );
    let browsers = Arc::new(browsers::BrowserPolicy::new(
        state.public_url.as_deref(),
        state.cors_allowed_origins.clone(),
        &document_methods(&document_json),
        &docs_page,
    ));
    Route::new()
        .nest("/", service)
        .at("/docs", get(swagger_ui).data(docs_page.clone()))
        .at("/docs/", get(swagger_ui).data(docs_page))
        .at("/openapi.json", get(openapi_json).data(document))
        .data(state)
        .data(input::BodyLimit(max_body_bytes))
        .around(move |next, req| error::map_framework_errors(next, req, allowed.clone()))
        .with(CatchPanic::new().with_handler(|_| {
            tracing::error!("a request handler panicked");
            error::plain_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }))
        .around(move |next, req| browsers::apply(next, req, browsers.clone()))
        .around(move |next, req| crate::telemetry::log_request(next, req, metrics.clone()))
        .into_endpoint()
        .map_to_response()
}

/// Every route template the service answers (the document's paths, `/docs`, `/docs/` and
/// `/openapi.json`): the `route` label values of the HTTP metrics.
pub fn route_templates() -> Vec<String> {
    let document: Value = serde_json::from_str(&openapi_document()).expect("the document is JSON");
    let mut templates: Vec<String> = document["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.keys().cloned())
        .collect();
    templates.extend(["/docs", "/docs/", "/openapi.json"].map(String::from));
    templates
}

/// Every method some operation of `document` answers, upper case, in a fixed order.
fn document_methods(document: &Value) -> Vec<String> {
    let mut methods: Vec<String> = document["paths"]
        .as_object()
        .into_iter()
        .flat_map(|paths| paths.values())
        .filter_map(Value::as_object)
        .flat_map(|operations| operations.keys())
        .map(|method| method.to_ascii_uppercase())
        .collect();
    methods.sort();
    methods.dedup();
    methods
}

#[handler]
fn swagger_ui(page: Data<&Arc<str>>) -> Response {
    Response::builder()
        .content_type("text/html; charset=utf-8")
        .body(page.0.to_string())
}

#[handler]
fn openapi_json(document: Data<&Arc<str>>) -> Response {
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(document.0.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_get_their_usual_spelling() {
        assert_eq!(header_spelling("WWW-AUTHENTICATE"), "WWW-Authenticate");
        assert_eq!(header_spelling("CACHE-CONTROL"), "Cache-Control");
        assert_eq!(header_spelling("RETRY-AFTER"), "Retry-After");
        assert_eq!(header_spelling("PRAGMA"), "Pragma");
    }

    #[test]
    fn public_operations_declare_that_they_need_no_credentials_and_protected_ones_either_scheme() {
        let doc: Value = serde_json::from_str(&openapi_document()).unwrap();
        assert_eq!(doc["paths"]["/token"]["post"]["security"], json!([]));
        assert_eq!(doc["paths"]["/health"]["get"]["security"], json!([]));
        // The key's requirement lists no scopes (OpenAPI 3.0 allows them for OAuth2 only).
        assert_eq!(
            doc["paths"]["/users/me"]["get"]["security"],
            json!([{ "OAuth2": ["me"] }, { "APIKey": [] }])
        );
    }

    #[test]
    fn state_changing_operations_declare_the_origin_refusal() {
        let doc: Value = serde_json::from_str(&openapi_document()).unwrap();
        for (path, method, schema) in [
            ("/token", "post", "TokenErrorBody"),
            ("/token/revoke", "post", "TokenErrorBody"),
            ("/logout", "post", "Error"),
            ("/users/me/items/{id}", "delete", "Error"),
        ] {
            let responses = doc["paths"][path][method]["responses"].as_object().unwrap();
            assert_eq!(
                responses["403"]["content"]["application/json; charset=utf-8"]["schema"],
                json!({ "$ref": format!("#/components/schemas/{schema}") }),
                "{method} {path}"
            );
            let statuses: Vec<&String> = responses.keys().collect();
            assert!(statuses.is_sorted(), "{statuses:?}");
        }
        assert!(doc["paths"]["/users/me"]["get"]["responses"]["403"].is_null());
        assert!(doc["components"]["schemas"]["Error"].is_object());
    }

    #[test]
    fn optional_members_are_required_and_nullable() {
        let doc: Value = serde_json::from_str(&openapi_document()).unwrap();
        let user = &doc["components"]["schemas"]["User"];
        assert_eq!(user["properties"]["email"]["nullable"], json!(true));
        assert!(
            user["required"]
                .as_array()
                .unwrap()
                .contains(&json!("email"))
        );
    }

    #[test]
    fn swagger_ui_shows_the_refined_document() {
        let service = openapi_service();
        let raw = service.spec();
        let page = swagger_ui_page(&service, &raw, &refine(&raw));
        assert!(page.contains(r#""WWW-Authenticate": {"#));
        assert!(page.contains(r#""tokenUrl": "/token""#));
    }
}
