//! HTTP plumbing shared by the server and the handlers the lead adds: response builders that always
//! render errors as Meilisearch JSON, and body reading under `server.max_body_bytes`.

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use miroir_core::MeiliError;

/// The response type of the proxy.
pub type ProxyResponse = Response<Full<Bytes>>;

/// A JSON response with `content-type: application/json`.
pub fn json_response(status: u16, body: &serde_json::Value) -> ProxyResponse {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A Meilisearch error response: `{message, code, type, link}` with the error's status.
pub fn error_response(e: &MeiliError) -> ProxyResponse {
    json_response(e.status, &e.to_json())
}

/// A response with an empty body (Meilisearch's 404 for unknown routes, 405).
pub fn empty_response(status: StatusCode) -> ProxyResponse {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

/// A size in Meilisearch's words: the largest binary unit not above it (`100 MiB`, `1.5 KiB`, `3 B`).
pub fn binary_size(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut unit = 0;
    let mut scale: u64 = 1;
    while unit + 1 < UNITS.len() && bytes / scale >= 1024 {
        scale *= 1024;
        unit += 1;
    }
    let value = bytes as f64 / scale as f64;
    format!("{value} {}", UNITS[unit])
}

/// 413 `payload_too_large`, Meilisearch's message.
pub fn payload_too_large(limit: u64) -> MeiliError {
    MeiliError::invalid(
        413,
        "payload_too_large",
        format!(
            "The provided payload reached the size limit. The maximum accepted payload size is {}.",
            binary_size(limit)
        ),
    )
}

/// Reads a whole request body, refusing more than `limit` bytes with 413 `payload_too_large`: at once
/// when `Content-Length` announces more, otherwise as soon as the stream passes the limit.
pub async fn read_body<B>(headers: &HeaderMap, body: B, limit: u64) -> Result<Bytes, MeiliError>
where
    B: http_body::Body<Data = Bytes>,
    B::Error: std::error::Error + Send + Sync + 'static,
{
    if let Some(len) = headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        if len > limit {
            return Err(payload_too_large(limit));
        }
    }
    let limited = Limited::new(body, usize::try_from(limit).unwrap_or(usize::MAX));
    match limited.collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) => {
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(payload_too_large(limit))
            } else {
                Err(MeiliError::invalid(
                    400,
                    "bad_request",
                    format!("The request body could not be read: {e}."),
                ))
            }
        }
    }
}

/// The `taskUid` of an answer (a 202's), read from its body; the answer is rebuilt around the same bytes.
pub async fn task_uid_of(response: ProxyResponse) -> (ProxyResponse, Option<u64>) {
    use http_body_util::BodyExt;
    let (parts, body) = response.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(never) => match never {},
    };
    let uid = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|v| v.get("taskUid").and_then(serde_json::Value::as_u64));
    (
        ProxyResponse::from_parts(parts, http_body_util::Full::new(bytes)),
        uid,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_meilisearch() {
        assert_eq!(binary_size(104_857_600), "100 MiB");
        assert_eq!(binary_size(10 * 1024 * 1024), "10 MiB");
        assert_eq!(binary_size(3), "3 B");
        assert_eq!(binary_size(1536), "1.5 KiB");
        assert_eq!(binary_size(1024 * 1024 * 1024), "1 GiB");
        assert_eq!(binary_size(u64::MAX), "16 EiB");
        let e = payload_too_large(104_857_600);
        assert_eq!(e.status, 413);
        assert_eq!(
            e.message,
            "The provided payload reached the size limit. The maximum accepted payload size is 100 MiB."
        );
    }

    #[tokio::test]
    async fn bodies_are_limited() {
        let h = HeaderMap::new();
        let b = read_body(&h, Full::new(Bytes::from_static(b"12345")), 5)
            .await
            .unwrap();
        assert_eq!(&b[..], b"12345");
        let e = read_body(&h, Full::new(Bytes::from_static(b"123456")), 5)
            .await
            .unwrap_err();
        assert_eq!(e.code, "payload_too_large");
        let mut h = HeaderMap::new();
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("999"));
        let e = read_body(&h, Full::new(Bytes::new()), 5).await.unwrap_err();
        assert_eq!(e.status, 413);
    }

    #[test]
    fn responses() {
        let r = error_response(&MeiliError::internal("x"));
        assert_eq!(r.status(), 500);
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert_eq!(empty_response(StatusCode::NOT_FOUND).status(), 404);
        assert_eq!(json_response(1000, &serde_json::json!({})).status(), 500);
    }
}
