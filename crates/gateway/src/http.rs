//! Small HTTP helpers shared by both listeners: JSON answers and errors, bearer
//! credentials; `query`: query strings and percent-decoding.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use http_body_util::Full;

pub mod query;

pub type Body = Full<Bytes>;

/// A JSON answer.
pub fn json(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}

/// A JSON answer from a serializable value.
pub fn json_value<T: serde::Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec(value) {
        Ok(body) => json(status, body),
        Err(_) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "could not encode the answer",
        ),
    }
}

/// The error shape of every HTTP error: `{"error":"<code>","message":"..."}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json_value_plain(status, code, message)
}

fn json_value_plain(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "error": code, "message": message });
    json(status, body.to_string())
}

/// The credentials of every `Authorization: Bearer <credentials>` header, in order. The
/// scheme is case-insensitive (RFC 9110 §11.1); empty credentials are skipped.
pub fn bearer(headers: &http::HeaderMap) -> impl Iterator<Item = &str> {
    headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| {
            let (scheme, credentials) = v.trim().split_once(' ')?;
            let credentials = credentials.trim();
            (scheme.eq_ignore_ascii_case("bearer") && !credentials.is_empty())
                .then_some(credentials)
        })
}

/// A protobuf answer.
pub fn protobuf(status: StatusCode, body: Vec<u8>) -> Response<Body> {
    let mut res = Response::new(Full::new(Bytes::from(body)));
    *res.status_mut() = status;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/x-protobuf"),
    );
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_credentials_with_any_case_of_the_scheme() {
        let mut h = http::HeaderMap::new();
        for v in [
            "Basic abc",
            "bearer   ",
            "BEARER  one ",
            "Bearer two",
            "Bearertoken",
        ] {
            h.append(header::AUTHORIZATION, v.parse().unwrap());
        }
        assert_eq!(bearer(&h).collect::<Vec<_>>(), ["one", "two"]);
        assert_eq!(bearer(&http::HeaderMap::new()).next(), None);
    }
}
