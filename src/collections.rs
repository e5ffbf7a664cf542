//! Which collection a command works on: the `--collection` argument, its
//! folder in the data directory, opening it, and, when it does not exist,
//! an error that lists the collections that do.

use std::path::{Path, PathBuf};

use anyhow::Result;
use clap::Args;
use imgsim_index::Collection;
use imgsim_pipeline::PipelineError;

use crate::config::Settings;

/// The collection a command works on.
#[derive(Debug, Args, Clone)]
pub struct CollectionArg {
    /// Collection name (a folder in the data directory); default: the
    /// config's `collection` ("default").
    #[arg(long, short = 'c', env = "IMGSIM_COLLECTION")]
    pub collection: Option<String>,
}

impl CollectionArg {
    /// The collection's name.
    pub fn name<'a>(&'a self, settings: &'a Settings) -> &'a str {
        self.collection.as_deref().unwrap_or(&settings.collection)
    }

    /// The collection's folder.
    pub fn dir(&self, settings: &Settings) -> Result<PathBuf> {
        Ok(imgsim_pipeline::collection_dir(
            &settings.data_dir(),
            self.name(settings),
        )?)
    }

    /// Opens the collection; when it does not exist, the error says where
    /// it was looked for and which collections exist.
    pub fn open(&self, settings: &Settings) -> Result<(Collection, PathBuf)> {
        let dir = self.dir(settings)?;
        match imgsim_pipeline::open(&dir, &settings.storage) {
            Ok(c) => Ok((c, dir)),
            Err(PipelineError::Index(imgsim_index::IndexError::NoCollection { .. })) => {
                Err(crate::exit::Missing(missing(self.name(settings), &settings.data_dir())).into())
            }
            Err(e) if e.kind() == imgsim_common::ErrorKind::Locked => {
                match crate::remote::holder(settings) {
                    Some(who) => Err(anyhow::Error::new(e).context(format!(
                        "collection `{}` ({}) is locked: {who}",
                        self.name(settings),
                        dir.display()
                    ))),
                    None => Err(e.into()),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Names of the collections in `data_dir`, sorted.
pub fn existing(data_dir: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(data_dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|n| imgsim_pipeline::collection_dir(data_dir, n).is_ok())
        .filter(|n| Collection::exists(&data_dir.join(n)))
        .collect();
    names.sort();
    names
}

/// The message for a collection `name` that is not in `data_dir`.
fn missing(name: &str, data_dir: &Path) -> String {
    let others = existing(data_dir);
    let listed = if others.is_empty() {
        format!(
            "there is no collection in {} yet: create one with `imgsim index FOLDER`{}",
            data_dir.display(),
            if name == "default" {
                String::new()
            } else {
                format!(" --collection {name}")
            }
        )
    } else {
        format!(
            "collections there: {} (choose one with --collection NAME)",
            others.join(", ")
        )
    };
    format!(
        "no collection `{name}` in {}; {listed}. The data directory is set by --data-dir, IMGSIM_DATA_DIR or data_dir in the config",
        data_dir.display()
    )
}
