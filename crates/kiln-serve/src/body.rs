//! Request bodies read up to `--max-request-bytes`. A body over the limit is still read to its
//! end (and dropped) before the 413 goes out, within a bound of bytes and time: a server that
//! answers and closes while the client is still sending resets the connection, and the client
//! then sees a broken pipe instead of the answer.
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{header, HeaderMap, StatusCode};
use http_body_util::BodyExt;

use crate::error::ServeError;

/// The most a refused body is read past the limit before the connection is given up.
const DRAIN_BYTES: usize = 256 << 20;
/// The most time spent reading a refused body.
const DRAIN_TIME: Duration = Duration::from_secs(10);

/// The limit, as a request extension the router adds.
#[derive(Clone, Copy)]
pub struct Limit(pub usize);

fn too_large(max: usize, what: String) -> ServeError {
    ServeError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        message: format!("the request body ({what}) is over the server's limit of {max} bytes (--max-request-bytes)"),
    }
}

/// The whole body, or a 413 for one over `max` bytes, or a 400 for one cut short.
pub async fn read(headers: &HeaderMap, body: Body, max: usize) -> Result<Bytes, ServeError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let mut body = body;
    if let Some(n) = declared {
        if n > max as u64 {
            drain(body).await;
            return Err(too_large(max, format!("Content-Length {n}")));
        }
    }
    let mut buf = Vec::with_capacity(declared.map_or(0, |n| n as usize));
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ServeError::bad(format!("reading the request body failed: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > max {
                let got = buf.len() + data.len();
                drain(body).await;
                return Err(too_large(max, format!("over {got} bytes")));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(Bytes::from(buf))
}

/// Reads and drops what is left of a body, within DRAIN_BYTES and DRAIN_TIME.
async fn drain(mut body: Body) {
    let work = async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > DRAIN_BYTES {
                    break;
                }
            }
        }
    };
    let _ = tokio::time::timeout(DRAIN_TIME, work).await;
}
