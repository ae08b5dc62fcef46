//! Errors raised outside handlers (missing credentials, unparsable parameters and bodies,
//! unknown routes and methods), turned into the contract's shapes; and the plain bodies of
//! statuses no operation declares.

use poem::{Endpoint, IntoResponse, Request, Response, http::StatusCode};

use super::{ApiError, ProtectedError, ValidationIssue};

/// Turns errors raised outside handlers into the contract's shapes: missing credentials,
/// unparsable parameters and bodies, unknown routes and methods. Every other error already
/// carries its response.
pub async fn map_framework_errors<E: Endpoint>(
    next: E,
    req: Request,
    allowed: std::sync::Arc<AllowedMethods>,
) -> poem::Result<Response> {
    use poem_openapi::error::{
        AuthorizationError, ContentTypeError, ParseParamError, ParsePathError,
        ParseRequestPayloadError,
    };

    let path = req.uri().path().to_owned();
    let err = match next.call(req).await {
        Ok(resp) => return Ok(resp.into_response()),
        Err(err) => err,
    };
    let api_error = if err.is::<AuthorizationError>() {
        ApiError::NotAuthenticated
    } else if let Some(param) = err.downcast_ref::<ParseParamError>() {
        ApiError::Validation(vec![ValidationIssue::new(
            &["query", param.name],
            param.reason.clone(),
            "value_error",
        )])
    } else if let Some(param) = err.downcast_ref::<ParsePathError>() {
        ApiError::Validation(vec![ValidationIssue::new(
            &["path", param.name],
            param.reason.clone(),
            "value_error",
        )])
    } else if let Some(payload) = err.downcast_ref::<ParseRequestPayloadError>() {
        ApiError::Validation(vec![ValidationIssue::new(
            &["body"],
            payload.reason.clone(),
            "value_error",
        )])
    } else if let Some(content_type) = err.downcast_ref::<ContentTypeError>() {
        ApiError::Validation(vec![ValidationIssue::new(
            &["body"],
            format!("{content_type}; send application/json"),
            "content_type",
        )])
    } else if err.is::<poem::error::NotFoundError>() {
        return Ok(plain_error(StatusCode::NOT_FOUND, "Not Found"));
    } else if err.is::<poem::error::MethodNotAllowedError>() {
        let mut response = plain_error(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed");
        if let Some(methods) = allowed.for_path(&path).and_then(|m| m.parse().ok()) {
            response
                .headers_mut()
                .insert(poem::http::header::ALLOW, methods);
        }
        return Ok(response);
    } else if err.is_from_response() {
        // A handler's own declared error response: already in the contract's shape.
        return Ok(err.into_response());
    } else if err.status().is_server_error() {
        ApiError::Internal(anyhow::anyhow!("unhandled framework error: {err}"))
    } else {
        // Any other client error poem raises (e.g. a body that cannot be read): its status,
        // with the usual JSON body.
        let status = err.status();
        return Ok(plain_error(
            status,
            status.canonical_reason().unwrap_or("Bad Request"),
        ));
    };
    Ok(ProtectedError::from(api_error).into_response())
}

/// The methods each path answers, for the `Allow` header of a 405 (RFC 9110 §15.5.6).
#[derive(Debug, Default)]
pub struct AllowedMethods(Vec<(Vec<String>, String)>);

impl AllowedMethods {
    /// From the OpenAPI document's paths (`/users/me/items/{id}` matches any one segment).
    pub fn from_document(document: &serde_json::Value) -> Self {
        let mut routes = Vec::new();
        if let Some(paths) = document["paths"].as_object() {
            for (path, operations) in paths {
                let methods: Vec<String> = operations
                    .as_object()
                    .into_iter()
                    .flat_map(|ops| ops.keys())
                    .map(|method| method.to_ascii_uppercase())
                    .collect();
                routes.push((segments(path), methods.join(", ")));
            }
        }
        Self(routes)
    }

    /// Adds a path outside the document.
    pub fn with(mut self, path: &str, methods: &str) -> Self {
        self.0.push((segments(path), methods.to_owned()));
        self
    }

    pub fn for_path(&self, path: &str) -> Option<&str> {
        let wanted = segments(path);
        self.0
            .iter()
            .find(|(template, _)| {
                template.len() == wanted.len()
                    && template.iter().zip(&wanted).all(|(t, w)| {
                        (t.starts_with('{') && t.ends_with('}') && !w.is_empty()) || t == w
                    })
            })
            .map(|(_, methods)| methods.as_str())
    }
}

fn segments(path: &str) -> Vec<String> {
    path.trim_end_matches('/')
        .split('/')
        .map(str::to_owned)
        .collect()
}

/// A `{"detail": …}` response for statuses no operation declares (404, 405).
pub fn plain_error(status: StatusCode, detail: &str) -> Response {
    let json = serde_json::json!({ "detail": detail }).to_string();
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json)
}

/// As [`plain_error`], with RFC 6749 §5.2's `error` (`invalid_request`) and
/// `error_description`, as every error of the token endpoints carries (`TokenErrorBody`).
pub fn plain_token_error(status: StatusCode, detail: &str) -> Response {
    let json = serde_json::json!({
        "detail": detail,
        "error": "invalid_request",
        "error_description": detail,
    })
    .to_string();
    Response::builder()
        .status(status)
        .content_type("application/json; charset=utf-8")
        .body(json)
}

/// Whether `path` is one of the token endpoints, whose errors carry the OAuth members.
pub fn is_token_endpoint(path: &str) -> bool {
    matches!(path, "/token" | "/token/revoke")
}

/// `408 {"detail": "Request timeout"}`: the body did not arrive within the body-read timeout.
/// Answered by the accept loop (`server`), which then closes the connection.
pub const REQUEST_TIMEOUT: &str = "Request timeout";
/// `431 {"detail": "Request header fields too large"}`: the request head is over the cap.
pub const HEADER_FIELDS_TOO_LARGE: &str = "Request header fields too large";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowed_methods_are_found_for_templated_paths() {
        let document = serde_json::json!({"paths": {
            "/users/me/items": {"get": {}, "post": {}},
            "/users/me/items/{id}": {"delete": {}},
        }});
        let allowed = AllowedMethods::from_document(&document).with("/docs", "GET");
        assert_eq!(allowed.for_path("/users/me/items"), Some("GET, POST"));
        assert_eq!(allowed.for_path("/users/me/items/abc"), Some("DELETE"));
        assert_eq!(allowed.for_path("/docs/"), Some("GET"));
        assert_eq!(allowed.for_path("/users/me/items/abc/x"), None);
    }
}
