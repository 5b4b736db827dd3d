//! Errors as the protocol returns them: an HTTP status with `{"error": "..."}`, naming the
//! model, input or output at fault.
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ServeError {
    pub status: StatusCode,
    pub message: String,
}

impl ServeError {
    /// A malformed or inconsistent request (400).
    pub fn bad(message: impl Into<String>) -> ServeError {
        ServeError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }

    /// An unknown model or version (404).
    pub fn not_found(message: impl Into<String>) -> ServeError {
        ServeError {
            status: StatusCode::NOT_FOUND,
            message: message.into(),
        }
    }

    /// The server failed (500).
    pub fn internal(message: impl Into<String>) -> ServeError {
        ServeError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
        }
    }

    /// A session error: the caller's fault (a wrong input) or the model's (a node failed).
    pub fn from_runtime(e: kiln_runtime::RuntimeError) -> ServeError {
        use kiln_runtime::RuntimeError as R;
        match e {
            // Shapes the request gave that the model cannot take are the caller's too.
            R::Input { .. } | R::Memory(_) | R::Options(_) | R::Infer(_) => {
                ServeError::bad(e.to_string())
            }
            other => ServeError::internal(other.to_string()),
        }
    }
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "error": self.message });
        (self.status, axum::Json(body)).into_response()
    }
}
