//! `imgsim serve`: the HTTP service (the search page and the API) over the
//! data directory's collections.

use std::net::{SocketAddr, ToSocketAddrs};

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args;

use crate::collections::CollectionArg;

use crate::config::Settings;
use crate::exit::usage;

/// Arguments of `imgsim serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on: HOST:PORT, e.g. 127.0.0.1:8080, localhost:9000
    /// or 0.0.0.0:8080 (default: the config's server.bind).
    #[arg(long)]
    pub bind: Option<String>,
    /// Watch this folder: index it at start (as `imgsim index DIR --prune`),
    /// then follow new, changed and deleted files into the collection;
    /// repeatable (default: the config's server.watch).
    #[arg(long, value_name = "DIR")]
    pub watch: Vec<PathBuf>,
    /// The collection the watched folders feed (and `/embed`'s default).
    #[command(flatten)]
    pub collection: CollectionArg,
}

/// Resolves `HOST:PORT` (a host name such as `localhost` included) to the
/// address to listen on; IPv4 first when the name has both.
pub fn resolve_bind(text: &str) -> Result<SocketAddr> {
    if let Ok(a) = text.parse::<SocketAddr>() {
        return Ok(a);
    }
    let bad = || {
        usage(format!(
            "`{text}` is not an address to listen on: give HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080"
        ))
    };
    if !text.contains(':') {
        return Err(bad());
    }
    let addrs: Vec<SocketAddr> = text.to_socket_addrs().map_err(|_| bad())?.collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(bad)
}

/// `imgsim serve`.
pub fn run(args: &ServeArgs, settings: &Settings) -> Result<()> {
    let s = &settings.server;
    let bind = resolve_bind(args.bind.as_deref().unwrap_or(&s.bind))?;
    let data_dir = settings.data_dir();
    imgsim_common::Storage::create_dir_all(&imgsim_common::LocalFs, &data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let mut options = settings.server_options();
    if !args.watch.is_empty() {
        options.watch = args.watch.clone();
    }
    let name = args.collection.name(settings);
    if !options.watch.is_empty() {
        let dir = args.collection.dir(settings)?;
        for f in &options.watch {
            if !f.is_dir() {
                return Err(usage(format!("--watch {}: not a folder", f.display())));
            }
        }
        crate::commands::index::create_if_missing(settings, name, &dir, &options.watch)?;
    }
    if options.api_key.is_none() {
        eprintln!(
            "no server.api_key (IMGSIM_SERVER_API_KEY): only imgsim commands of this user \
             (signing with the token file in the data directory) may add, delete or index images"
        );
    }
    imgsim_server::serve(bind, &data_dir, name, options)
        .with_context(|| format!("serving on {bind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_are_resolved_and_nonsense_refused() {
        assert_eq!(
            resolve_bind("127.0.0.1:8080").unwrap(),
            "127.0.0.1:8080".parse().unwrap()
        );
        assert!(resolve_bind("localhost:8080").unwrap().ip().is_loopback());
        assert!(resolve_bind("localhost").is_err());
        assert!(resolve_bind("8080").is_err());
        let e = resolve_bind("not an address").unwrap_err();
        assert_eq!(
            crate::exit::code(crate::exit::kind_of(&e)),
            crate::exit::USAGE
        );
    }
}
