//! The HTTP API: one poem-openapi struct per area, combined into one service with its
//! OpenAPI document and Swagger UI.

mod error;
mod health;
mod input;
mod items;
mod token;
mod users;

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt as _, IntoEndpoint, Request, Response, Route, get, handler,
    http::StatusCode, middleware::CatchPanic, web::Data,
};
use poem_openapi::{OpenApiService, Tags};

pub use error::ApiError;

use crate::{
    auth::{AccessTokens, PasswordHasher},
    db::Store,
};

/// What every request handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub hasher: PasswordHasher,
    pub tokens: Arc<AccessTokens>,
}

#[derive(Tags)]
enum ApiTags {
    /// Logging in: obtaining access tokens.
    Auth,
    /// Your account.
    Users,
    /// Your items.
    Items,
    /// Liveness and readiness probes.
    Health,
}

const DESCRIPTION: &str = "\
An OAuth 2.0 password-flow authentication service issuing JWT bearer tokens.

Log in at `POST /token` with a username and password (form-encoded, as OAuth 2.0 requires), \
then send the `access_token` as `Authorization: Bearer <token>`. In Swagger UI, press \
**Authorize** and log in: every operation's *Try it out* then sends the token.

Every error is JSON with a `detail` member; errors from `/token` also carry OAuth 2.0's \
`error` and `error_description`. Validation errors are 422 with a list of problems in `detail`.";

fn openapi_service() -> OpenApiService<
    (
        token::TokenApi,
        users::UsersApi,
        items::ItemsApi,
        health::HealthApi,
    ),
    (),
> {
    OpenApiService::new(
        (
            token::TokenApi,
            users::UsersApi,
            items::ItemsApi,
            health::HealthApi,
        ),
        "portcullis",
        env!("CARGO_PKG_VERSION"),
    )
    .description(DESCRIPTION)
}

/// The OpenAPI document, exactly as served at `/openapi.json` and committed as `openapi.json`.
pub fn openapi_document() -> String {
    let mut spec = openapi_service().spec();
    spec.push('\n');
    spec
}

/// Every route of the service, with its middleware.
pub fn routes(state: AppState, max_body_bytes: usize) -> impl Endpoint<Output = Response> {
    let service = openapi_service();
    let docs = service.swagger_ui();
    let document: Arc<str> = openapi_document().into();
    Route::new()
        .nest("/", service)
        .nest("/docs", docs)
        .at("/openapi.json", get(openapi_json).data(document))
        .data(state)
        .around(move |next, req| limit_body(next, req, max_body_bytes))
        .around(error::map_framework_errors)
        .with(CatchPanic::new().with_handler(|_| {
            tracing::error!("a request handler panicked");
            error::plain_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
        }))
        .around(crate::telemetry::log_request)
        .into_endpoint()
        .map_to_response()
}

#[handler]
fn openapi_json(document: Data<&Arc<str>>) -> Response {
    Response::builder()
        .content_type("application/json; charset=utf-8")
        .body(document.0.to_string())
}

/// Refuses bodies over the limit with 413 before any handler reads them, whether the size is
/// announced (`Content-Length`) or not (chunked).
async fn limit_body<E: Endpoint>(
    next: E,
    mut req: Request,
    limit: usize,
) -> poem::Result<Response> {
    use poem::IntoResponse as _;

    let too_large = || error::plain_error(StatusCode::PAYLOAD_TOO_LARGE, "Request body too large");
    let announced = req
        .headers()
        .get(poem::http::header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok());
    if announced.is_some_and(|length| length > limit as u64) {
        return Ok(too_large());
    }
    let body = req.take_body();
    match body.into_bytes_limit(limit).await {
        Ok(bytes) => req.set_body(bytes),
        Err(poem::error::ReadBodyError::PayloadTooLarge) => return Ok(too_large()),
        Err(err) => {
            tracing::debug!(error = %err, "could not read a request body");
            return Ok(error::plain_error(
                StatusCode::BAD_REQUEST,
                "Could not read the request body",
            ));
        }
    }
    Ok(next.call(req).await?.into_response())
}
