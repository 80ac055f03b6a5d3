//! The api's error type and the JSON error body every failure uses:
//! `{"error": {"code": "...", "message": "..."}}`.
//!
//! Client mistakes keep their 4xx status and say what was wrong; internal errors get a generic
//! 500 body and their detail goes to the log (axum's `examples/error-handling`).

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query};
use axum::http::{header, request::Parts, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The client's request was wrong; the message tells it how.
    #[error("{message}")]
    Client {
        status: StatusCode,
        code: &'static str,
        message: String,
    },
    /// Our fault: logged in full, answered with a generic body.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::client(StatusCode::NOT_FOUND, "not_found", message)
    }

    pub fn client(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self::Client {
            status,
            code,
            message: message.into(),
        }
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("database query failed"))
    }
}

impl From<std::io::Error> for ApiError {
    fn from(e: std::io::Error) -> Self {
        Self::Internal(anyhow::Error::new(e).context("data directory I/O failed"))
    }
}

/// The shape of every error response, for the OpenAPI document.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    /// A stable, machine-readable code such as `not_found` or `not_ready`.
    pub code: String,
    pub message: String,
}

/// The JSON error body.
pub fn error_body(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Client {
                status,
                code,
                message,
            } => error_body(status, code, &message),
            ApiError::Internal(e) => {
                tracing::error!(error = format!("{e:#}"), "request failed");
                internal_error()
            }
        }
    }
}

fn internal_error() -> Response {
    error_body(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "internal server error; the details are in the server log",
    )
}

/// `Query<T>` whose rejection is our JSON 400 instead of axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // axum's Query decodes leniently: `%FF` would become U+FFFD and a document would be
        // stored under a name the client never sent. Refuse it instead.
        if let Some(query) = parts.uri.query() {
            if !decodes_to_utf8(query) {
                return Err(ApiError::bad_request(
                    "invalid_query",
                    "the query string is not valid UTF-8 once percent-decoded",
                ));
            }
        }
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(value)| Self(value))
            .map_err(|r| ApiError::bad_request("invalid_query", r.body_text()))
    }
}

/// Whether every key and value of a query string is UTF-8 after percent-decoding.
/// A `%` not followed by two hex digits is kept as is (the lenient decoders do the same).
fn decodes_to_utf8(query: &str) -> bool {
    query
        .split('&')
        .flat_map(|pair| pair.split('='))
        .all(|part| {
            percent_encoding::percent_decode_str(part)
                .decode_utf8()
                .is_ok()
        })
}

/// `Path<T>` whose rejection is our JSON 400 instead of axum's plain text.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(value)| Self(value))
            .map_err(|r| ApiError::bad_request("invalid_path", r.body_text()))
    }
}

pub async fn not_found_fallback() -> Response {
    error_body(StatusCode::NOT_FOUND, "not_found", "no such route")
}

pub async fn method_not_allowed_fallback() -> Response {
    error_body(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this route does not support that method; see the Allow header",
    )
}

/// Last line of defence: any error response that is not JSON yet (from axum or a tower layer)
/// is rewritten into the JSON error body, keeping its status and headers.
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || is_json {
        return response;
    }
    if status.is_server_error() {
        tracing::error!(%status, "non-JSON error response replaced by the generic body");
        let mut replacement = internal_error();
        *replacement.status_mut() = status;
        return replacement;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("client error")
                .to_owned()
        });
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        _ => "bad_request",
    };
    let body = json!({ "error": { "code": code, "message": text } }).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_json(response: Response) -> serde_json::Value {
        let bytes = axum::body::to_bytes(response.into_body(), 4096)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn plain_text_errors_from_layers_become_json_with_status_and_headers_kept() {
        let plain = (
            StatusCode::PAYLOAD_TOO_LARGE,
            [("x-kept", "yes")],
            "length limit exceeded",
        )
            .into_response();
        let response = json_errors(plain).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(response.headers()["content-type"], "application/json");
        assert_eq!(response.headers()["x-kept"], "yes");
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "payload_too_large");
        assert_eq!(body["error"]["message"], "length limit exceeded");
    }

    #[test]
    fn queries_that_decode_to_invalid_utf8_are_spotted() {
        for good in [
            "",
            "name=a.txt",
            "name=%C3%A9t%C3%A9",
            "name=a+b&limit=5",
            "x=100%",
            "name=%zz",
        ] {
            assert!(decodes_to_utf8(good), "{good}");
        }
        for bad in ["name=%FF%FE", "limit=1&name=%C3", "%80=x"] {
            assert!(!decodes_to_utf8(bad), "{bad}");
        }
    }

    #[tokio::test]
    async fn plain_server_errors_get_the_generic_body_and_success_is_untouched() {
        let plain = (StatusCode::BAD_GATEWAY, "upstream detail").into_response();
        let response = json_errors(plain).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let body = body_json(response).await;
        assert_eq!(body["error"]["code"], "internal");
        assert!(!body.to_string().contains("upstream detail"));

        let ok = json_errors((StatusCode::OK, "fine").into_response()).await;
        assert_eq!(ok.headers()["content-type"], "text/plain; charset=utf-8");
    }
}
