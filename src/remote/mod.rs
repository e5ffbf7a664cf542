//! The command line as a client of a running `imgsim serve`: while a
//! server owns the data directory (its collections are locked by it),
//! the collection commands work through its HTTP API and print exactly
//! what they print offline, from the same library types.
//!
//! - `mod.rs`: whether to go through a server ([`connect`]): `--server
//!   URL`, or the data directory's owner record naming a live server;
//! - [`http`]: the HTTP client ([`Remote`]) and its typed errors;
//! - [`index`]: reading the NDJSON stream of a remote `imgsim index`.

pub mod http;
pub mod index;

use anyhow::Result;
use imgsim_pipeline::owner::OwnerRecord;

pub use http::{Remote, RemoteError};

use crate::config::Settings;

/// The server the collection commands go through, if any: the one `flag`
/// names (`--server`, `IMGSIM_SERVER`; it must answer), else the one the
/// data directory's owner record names, when its process lives and it
/// answers `/healthz` (a stale record is ignored). Writes are signed with
/// the record's token when this user can read it, else with
/// `server.api_key`.
pub fn connect(flag: Option<&str>, settings: &Settings) -> Result<Option<Remote>> {
    let record = OwnerRecord::read(&settings.data_dir());
    let api_key = settings.server.api_key.clone();
    if let Some(url) = flag {
        let url = url.trim_end_matches('/');
        let token = record
            .as_ref()
            .filter(|r| r.url == url)
            .and_then(OwnerRecord::token);
        let remote = Remote::new(url, token.or(api_key));
        if !remote.healthy() {
            return Err(RemoteError::unreachable(url, "--server, IMGSIM_SERVER").into());
        }
        return Ok(Some(remote));
    }
    let Some(record) = record.filter(OwnerRecord::pid_alive) else {
        return Ok(None);
    };
    let remote = Remote::new(&record.url, record.token().or(api_key));
    Ok(remote.healthy().then_some(remote))
}

/// Why a direct open found the collection locked, when the data
/// directory's owner record names a server: a sentence naming it.
pub fn holder(settings: &Settings) -> Option<String> {
    let r = OwnerRecord::read(&settings.data_dir())?;
    Some(format!(
        "it is owned by imgsim serve (pid {}, {}{}); work through it with --server {}, or stop it",
        r.pid,
        r.url,
        if r.pid_alive() {
            ", not answering"
        } else {
            ", no longer running"
        },
        r.url
    ))
}
