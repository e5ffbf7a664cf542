//! The service's settings: the config file's `[server]` section (this type
//! deserializes straight from it, and its `Default` is the only place the
//! defaults are written), plus what the service takes from other sections.

use std::path::PathBuf;

use imgsim_embed::ImageLimits;
use imgsim_index::OpenOptions;
use serde::{Deserialize, Serialize};

/// Service settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerOptions {
    /// Address to listen on, HOST:PORT.
    pub bind: String,
    /// Key required by write endpoints (`api-key` header); `None` (`""` in
    /// the config): writes are refused.
    #[serde(with = "empty_is_none")]
    pub api_key: Option<String>,
    /// Threads doing decode, embed and search work (0: one per core).
    pub workers: usize,
    /// Requests allowed to wait for or use the worker pool at once; more get 503.
    pub queue: usize,
    /// Largest request body, bytes.
    pub max_upload_bytes: usize,
    /// Most searches one request to `POST /collections/{c}/search/batch`
    /// may carry; more are refused with 413.
    pub max_batch: usize,
    /// Seconds a request may take: a body not received by then is answered
    /// 408, work not finished by then 504.
    pub request_timeout_s: u64,
    /// Share of served searches re-run exactly in the background (0..=1).
    pub recall_sample: f64,
    /// Recent sampled queries the live recall estimate averages.
    pub recall_window: usize,
    /// At most this many sampled queries per second are re-run (each exact
    /// search scans the whole collection: this bounds its CPU cost).
    pub recall_max_per_s: f64,
    /// Recall@k the service holds by adjusting ef (None, `0` in the
    /// config: fixed ef).
    #[serde(with = "zero_is_none")]
    pub target_recall: Option<f64>,
    /// Origins allowed to call the API from a browser (CORS); empty: none.
    pub cors_origins: Vec<String>,
    /// Folders the service may read on a client's behalf (`imgsim index`
    /// through the server); empty: the home directory of the user running
    /// it; the watched folders are allowed too (see
    /// [`ServerOptions::library_roots`]).
    pub library_roots: Vec<PathBuf>,
    /// The local token (`.imgsim-server.token`), accepted in the `api-key`
    /// header like the api key; made at each start, never configured.
    #[serde(skip)]
    pub local_token: Option<String>,
    /// Folders to watch: indexed at start, then followed (new, changed,
    /// deleted files) into the default collection.
    pub watch: Vec<PathBuf>,
    /// Seconds between full rescans of the watched folders (the fallback
    /// for network shares and missed notifications).
    pub watch_rescan_s: u64,
    /// Follow file-system notifications (inotify); false: rescans only.
    pub watch_notifications: bool,
    /// Images per model call when indexing watched files (the config's
    /// `[embed] batch_size`).
    #[serde(skip)]
    pub index_batch_size: usize,
    /// Decoding threads when indexing watched files (`[embed] decode_threads`).
    #[serde(skip)]
    pub index_decode_threads: usize,
    /// Decoding limits for uploaded images (the config's `[limits]`).
    #[serde(skip)]
    pub limits: ImageLimits,
    /// Storage options for opening collections (the config's `[storage]`).
    #[serde(skip)]
    pub storage: OpenOptions,
    /// The JSON report of the last `imgsim bench ann`, shown by the page.
    #[serde(skip)]
    pub bench_report: Option<PathBuf>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            bind: "127.0.0.1:8080".into(),
            api_key: None,
            workers: 0,
            queue: 64,
            max_upload_bytes: 32 << 20,
            max_batch: 1000,
            request_timeout_s: 30,
            recall_sample: 0.1,
            recall_window: 200,
            recall_max_per_s: 10.0,
            target_recall: None,
            cors_origins: Vec::new(),
            library_roots: Vec::new(),
            local_token: None,
            watch: Vec::new(),
            watch_rescan_s: 60,
            watch_notifications: true,
            index_batch_size: 16,
            index_decode_threads: 0,
            limits: ImageLimits::default(),
            storage: OpenOptions::default(),
            bench_report: None,
        }
    }
}

/// A `[server]` value out of range.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct InvalidOption {
    /// The key.
    pub key: &'static str,
    /// Why.
    pub reason: String,
}

impl ServerOptions {
    /// The folders clients may have the service read: `library_roots` (when
    /// that is empty, the home directory of the user running it), plus the
    /// watched folders, which the service reads anyway.
    pub fn library_roots(&self) -> Vec<PathBuf> {
        let mut roots = if self.library_roots.is_empty() {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from)
                .into_iter()
                .collect()
        } else {
            self.library_roots.clone()
        };
        roots.extend(self.watch.iter().cloned());
        roots
    }

    /// Checks every value's range.
    pub fn validate(&self) -> Result<(), InvalidOption> {
        let bad = |key, reason: String| Err(InvalidOption { key, reason });
        if self.bind.trim().is_empty() {
            return bad("bind", "must be HOST:PORT, e.g. 127.0.0.1:8080".into());
        }
        for (key, v) in [
            ("queue", self.queue as u64),
            ("max_upload_bytes", self.max_upload_bytes as u64),
            ("max_batch", self.max_batch as u64),
            ("request_timeout_s", self.request_timeout_s),
            ("recall_window", self.recall_window as u64),
            ("watch_rescan_s", self.watch_rescan_s),
        ] {
            if v == 0 {
                return bad(key, "must be at least 1".into());
            }
        }
        if !(0.0..=1.0).contains(&self.recall_sample) {
            return bad(
                "recall_sample",
                format!("must be between 0 and 1, not {}", self.recall_sample),
            );
        }
        if !(self.recall_max_per_s >= 0.0 && self.recall_max_per_s.is_finite()) {
            return bad(
                "recall_max_per_s",
                format!("must be 0 or more, not {}", self.recall_max_per_s),
            );
        }
        if let Some(r) = self.library_roots.iter().find(|r| !r.is_absolute()) {
            return bad(
                "library_roots",
                format!("{} is not an absolute path", r.display()),
            );
        }
        if let Some(t) = self.target_recall.filter(|t| !(0.0..=1.0).contains(t)) {
            return bad(
                "target_recall",
                format!("must be between 0 (off) and 1, not {t}"),
            );
        }
        Ok(())
    }
}

/// `""` in the config is `None`.
mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_deref().unwrap_or(""))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let text = String::deserialize(d)?;
        Ok((!text.is_empty()).then_some(text))
    }
}

/// `0` in the config is `None`.
mod zero_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<f64>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(v.unwrap_or(0.0))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<f64>, D::Error> {
        let v = f64::deserialize(d)?;
        Ok((v != 0.0).then_some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_key_and_zero_target_are_none_and_ranges_are_checked() {
        let o: ServerOptions =
            serde_json::from_str(r#"{"api_key": "", "target_recall": 0.0}"#).unwrap();
        assert_eq!(o, ServerOptions::default());
        let o: ServerOptions =
            serde_json::from_str(r#"{"api_key": "k", "target_recall": 0.9}"#).unwrap();
        assert_eq!(o.api_key.as_deref(), Some("k"));
        assert_eq!(o.target_recall, Some(0.9));
        assert!(o.validate().is_ok());
        let bad = ServerOptions {
            recall_sample: 1.5,
            ..ServerOptions::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("recall_sample"));
        assert!(serde_json::from_str::<ServerOptions>(r#"{"bnd": "x"}"#).is_err());
    }
}
