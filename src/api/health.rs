//! Liveness and readiness, for load balancers and orchestrators.

use poem_openapi::{ApiResponse, Object, OpenApi, payload::Json};

use super::{ApiTags, AppState, error::ErrorBody};

/// The service's state.
#[derive(Debug, Object)]
pub struct Status {
    /// `ok`.
    pub status: String,
}

#[derive(ApiResponse)]
pub enum HealthResponse {
    /// The process runs.
    #[oai(status = 200)]
    Ok(Json<Status>),
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// The database answers.
    #[oai(status = 200)]
    Ok(Json<Status>),
    /// `Service unavailable`: the database does not answer.
    #[oai(status = 503)]
    Unavailable(
        Json<ErrorBody>,
        /// Seconds to wait before retrying.
        #[oai(header = "Retry-After")]
        u32,
    ),
}

#[derive(Default)]
pub struct HealthApi;

#[OpenApi(tag = "ApiTags::Health")]
impl HealthApi {
    /// Liveness
    ///
    /// 200 while the process runs.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> HealthResponse {
        HealthResponse::Ok(Json(Status {
            status: "ok".into(),
        }))
    }

    /// Readiness
    ///
    /// 200 when the database answers, else 503.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self, state: poem::web::Data<&AppState>) -> ReadyResponse {
        match state.store.ping().await {
            Ok(()) => ReadyResponse::Ok(Json(Status {
                status: "ok".into(),
            })),
            Err(err) => {
                // Logged by the store once per burst.
                tracing::debug!(error = %err, "readiness check failed");
                ReadyResponse::Unavailable(Json(ErrorBody::new("Service unavailable")), 1)
            }
        }
    }
}
