//! Errors as the API answers them: JSON `{"error": ...}` with the matching
//! status (and `Retry-After` for rates); an unknown path is 404, a known
//! path with another method 405 with `Allow`.

use super::*;

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    pub(super) message: String,
    /// Seconds, for `Retry-After` (429, 503).
    pub(super) retry_after: Option<u64>,
    /// The methods the path takes, for `Allow` (405).
    pub(super) allow: Option<String>,
}

impl ApiError {
    pub(super) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
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
            message: message.into(),
            retry_after: Some(retry_after.as_secs_f64().ceil().max(1.0) as u64),
            allow: None,
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(e: EngineError) -> ApiError {
        match e {
            EngineError::NotFound(m) => ApiError::new(StatusCode::NOT_FOUND, m),
            EngineError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, m),
            EngineError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m),
            EngineError::Failed { event, .. } => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!(
                    "event {event} was stored, but deciding on it failed; the event is marked failed with its reason (GET the ticket) and will not be retried"
                ),
            ),
            EngineError::Internal(e) => internal(e),
        }
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
