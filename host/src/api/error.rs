//! Errors as the API answers them: JSON `{"error": ..., "code": ...}` with
//! the matching status (and `Retry-After` for rates); the code is stable
//! ([`crate::codes`]), the message is for people. An unknown path is 404, a
//! known path with another method 405 with `Allow`.

use super::*;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    /// The machine-readable code ([`crate::codes`]).
    pub(super) code: &'static str,
    pub(super) message: String,
    /// Seconds, for `Retry-After` (429, 503).
    pub(super) retry_after: Option<u64>,
    /// The methods the path takes, for `Allow` (405).
    pub(super) allow: Option<String>,
}

impl ApiError {
    /// An error with the general code of its status; [`ApiError::code`]
    /// names it more precisely.
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        let code = match status.as_u16() {
            400 => codes::REQUEST_MALFORMED,
            401 => codes::AUTH_UNAUTHORIZED,
            403 => codes::AUTH_FORBIDDEN,
            404 => codes::NOT_FOUND,
            405 => codes::METHOD_NOT_ALLOWED,
            409 => codes::CONFLICT,
            413 => codes::BODY_TOO_LARGE,
            422 => codes::REQUEST_INVALID,
            429 => codes::RATE_LIMITED,
            503 => codes::UNAVAILABLE,
            _ => codes::INTERNAL,
        };
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    /// A 429 that says when to come back.
    pub(super) fn too_many(
        message: impl Into<String>,
        retry_after: std::time::Duration,
    ) -> ApiError {
        ApiError {
            status: StatusCode::TOO_MANY_REQUESTS,
            code: codes::RATE_LIMITED,
            message: message.into(),
            retry_after: Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
            allow: None,
        }
    }
}

impl ApiError {
    /// The same error with a more precise code.
    pub(super) fn code(self, code: &'static str) -> ApiError {
        ApiError { code, ..self }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::NotFound(code, m) => ApiError::new(StatusCode::NOT_FOUND, m).code(code),
            EngineError::Conflict(code, m) => ApiError::new(StatusCode::CONFLICT, m).code(code),
            EngineError::Invalid(code, m) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m).code(code)
            }
            EngineError::Failed { event, .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "event {event} was stored, but deciding on it failed; the event is marked failed with its reason (GET the ticket) and will not be retried"
                ),
            ).code(codes::EVENT_FAILED),
            e @ (EngineError::Store(_) | EngineError::Json(_) | EngineError::OutOfRange(_)) => {
                internal(e.into())
            }
            EngineError::Internal(e) => internal(e),
        }
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> ApiError {
        internal(e.into())
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        internal(e)
    }
}

pub(super) fn internal(e: anyhow::Error) -> ApiError {
    tracing::error!(error = %format!("{e:#}"), "internal error");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error; see the server log",
    )
}
pub(super) type ApiResult = Result<Response<Body>, ApiError>;
/// The routes of the API description: each path's segments (`{x}` for a
/// parameter) and its methods, upper case.
pub(super) fn routes() -> &'static [(Vec<String>, Vec<String>)] {
    static ROUTES: std::sync::OnceLock<Vec<(Vec<String>, Vec<String>)>> =
        std::sync::OnceLock::new();
    ROUTES.get_or_init(|| {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
        doc["paths"]
            .as_object()
            .map(|paths| {
                paths
                    .iter()
                    .map(|(path, ops)| {
                        let segs = path
                            .trim_matches('/')
                            .split('/')
                            .map(String::from)
                            .collect();
                        let methods = ops
                            .as_object()
                            .map(|o| {
                                o.keys()
                                    .filter(|k| *k != "parameters")
                                    .map(|k| k.to_uppercase())
                                    .collect()
                            })
                            .unwrap_or_default();
                        (segs, methods)
                    })
                    .collect()
            })
            .unwrap_or_default()
    })
}
/// No handler for `method` on `path`: 405 with `Allow` when the API
/// describes the path with other methods, else 404.
pub(super) fn no_route(method: &Method, path: &str) -> ApiError {
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    let matches = |template: &[String]| {
        template.len() == segs.len()
            && template
                .iter()
                .zip(&segs)
                .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
    };
    let mut allowed: Vec<&str> = routes()
        .iter()
        .filter(|(t, _)| matches(t))
        .flat_map(|(_, m)| m.iter().map(String::as_str))
        .collect();
    allowed.sort_unstable();
    allowed.dedup();
    if allowed.is_empty() {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            format!("no route {method} {path}; see /openapi.json"),
        );
    }
    let allow = allowed.join(", ");
    ApiError {
        allow: Some(allow.clone()),
        ..ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} takes {allow}, not {method}"),
        )
    }
}

pub(super) fn not_found(m: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, m)
}
