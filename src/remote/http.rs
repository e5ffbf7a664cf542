//! The HTTP client of a running `imgsim serve` (ureq, blocking): JSON
//! requests signed with the write key, answers read into the library's
//! types, and the service's error answers turned back into typed errors
//! whose kind gives the same exit code as offline.

use std::io::BufRead;
use std::time::Duration;

use imgsim_common::ErrorKind;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A failure answered by the server (or reaching it), with the kind that
/// decides the exit code.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct RemoteError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// The server's message, and what to do.
    pub message: String,
}

impl RemoteError {
    /// The server at `url` does not answer.
    pub fn unreachable(url: &str, named_by: &str) -> RemoteError {
        RemoteError {
            kind: ErrorKind::Internal,
            message: format!("no imgsim serve answers at {url} (named by {named_by})"),
        }
    }

    /// The error answered with HTTP `status` and `message` by `url`.
    pub fn answered(url: &str, status: u16, message: &str) -> RemoteError {
        let kind = match status {
            400 => ErrorKind::Invalid,
            401 | 403 => ErrorKind::PermissionDenied,
            404 => ErrorKind::NotFound,
            409 => ErrorKind::Conflict,
            413 => ErrorKind::TooLarge,
            415 => ErrorKind::Unsupported,
            422 => ErrorKind::Unprocessable,
            507 => ErrorKind::StorageFull,
            _ => ErrorKind::Internal,
        };
        let hint = if status == 401 {
            ": writes through the server need its token file (readable by the user who started \
             it) or its api key (IMGSIM_SERVER_API_KEY)"
        } else {
            ""
        };
        RemoteError {
            kind,
            message: format!("imgsim serve at {url} answered {status}: {message}{hint}"),
        }
    }
}

/// A running server, and the key its writes are signed with.
pub struct Remote {
    /// Its base URL (`http://HOST:PORT`).
    pub url: String,
    key: Option<String>,
    agent: ureq::Agent,
}

/// Largest JSON answer read (a large collection's duplicate groups).
const MAX_ANSWER: u64 = 1 << 30;

impl Remote {
    /// A client of the server at `url`, signing writes with `key`.
    pub fn new(url: &str, key: Option<String>) -> Remote {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(5)))
            .build()
            .into();
        Remote {
            url: url.trim_end_matches('/').to_string(),
            key,
            agent,
        }
    }

    /// Whether it answers `/healthz` within two seconds.
    pub fn healthy(&self) -> bool {
        self.agent
            .get(format!("{}/healthz", self.url))
            .config()
            .timeout_global(Some(Duration::from_secs(2)))
            .build()
            .call()
            .is_ok_and(|r| r.status().is_success())
    }

    fn unreachable(&self, e: ureq::Error) -> RemoteError {
        RemoteError {
            kind: ErrorKind::Internal,
            message: format!("imgsim serve at {}: {e}", self.url),
        }
    }

    /// The answer's body as `T`, or its error as a [`RemoteError`].
    fn answer<T: DeserializeOwned>(
        &self,
        r: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, RemoteError> {
        let mut r = r.map_err(|e| self.unreachable(e))?;
        if !r.status().is_success() {
            return Err(self.error_of(&mut r));
        }
        r.body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_json()
            .map_err(|e| self.unreachable(e))
    }

    fn error_of(&self, r: &mut ureq::http::Response<ureq::Body>) -> RemoteError {
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(text);
        RemoteError::answered(&self.url, status, &message)
    }

    /// `GET path?query`, the answer as `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, RemoteError> {
        let mut req = self.agent.get(format!("{}{path}", self.url));
        for (k, v) in query {
            req = req.query(*k, v);
        }
        if let Some(k) = &self.key {
            req = req.header("api-key", k);
        }
        self.answer(req.call())
    }

    /// `POST path` with a JSON body, the answer as `T`.
    pub fn post<T: DeserializeOwned>(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<T, RemoteError> {
        self.answer(self.post_request(path, &[]).send_json(body))
    }

    /// `POST path?query` with raw bytes (an image), the answer as `T`.
    pub fn post_bytes<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        bytes: &[u8],
    ) -> Result<T, RemoteError> {
        let req = self
            .post_request(path, query)
            .header("content-type", "application/octet-stream");
        self.answer(req.send(bytes))
    }

    /// `POST path` with a JSON body; the answer read line by line (NDJSON).
    pub fn post_lines(
        &self,
        path: &str,
        body: &impl Serialize,
    ) -> Result<impl BufRead, RemoteError> {
        let mut r = self
            .post_request(path, &[])
            .send_json(body)
            .map_err(|e| self.unreachable(e))?;
        if !r.status().is_success() {
            return Err(self.error_of(&mut r));
        }
        Ok(std::io::BufReader::new(r.into_body().into_reader()))
    }

    fn post_request(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> ureq::RequestBuilder<ureq::typestate::WithBody> {
        let mut req = self.agent.post(format!("{}{path}", self.url));
        for (k, v) in query {
            req = req.query(*k, v);
        }
        if let Some(k) = &self.key {
            req = req.header("api-key", k);
        }
        req
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;

    #[test]
    fn answers_give_the_exit_codes_of_the_same_failures_offline() {
        let code = |status| {
            let e = anyhow::Error::new(RemoteError::answered("http://x", status, "m"));
            exit::code(exit::kind_of(&e))
        };
        for s in [400, 404, 409, 415, 422] {
            assert_eq!(code(s), exit::USAGE, "{s}");
        }
        for s in [401, 403, 500, 503, 507] {
            assert_eq!(code(s), exit::FAILURE, "{s}");
        }
        let e = RemoteError::answered("http://127.0.0.1:9", 401, "no key");
        assert!(e.message.contains("token file"), "{}", e.message);
        assert!(e.message.contains("http://127.0.0.1:9"), "{}", e.message);
    }
}
