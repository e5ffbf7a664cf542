//! The command line's shape: global flags and the commands, in the order a
//! user needs them, each with examples in its help. Parsing only; the
//! commands themselves are in [`crate::commands`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands;

/// imgsim: image similarity search. Index a photo folder, then ask which
/// images look like an example; recall against exact search is reported,
/// so you know what the approximation costs.
#[derive(Debug, Parser)]
#[command(
    name = "imgsim",
    version,
    about,
    long_about = None,
    after_help = "Start here:\n  imgsim index ~/Pictures          index a folder (incremental)\n  imgsim query photo.jpg -k 5      the 5 images most like photo.jpg\n  imgsim serve                     the web page and API on http://127.0.0.1:8080/\n\nExit codes: 0 ok, 1 failure on the machine's side, 2 bad input or usage,\n3 indexed but some files failed, 4 check found inconsistencies, 130 interrupted."
)]
pub struct Cli {
    /// Config file (TOML); see config/default.toml for every setting.
    #[arg(long, global = true, env = "IMGSIM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder where collections live (default: the platform data
    /// directory, ~/.local/share/imgsim on Linux).
    #[arg(long, global = true, env = "IMGSIM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Worker threads (0 = one per core).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Less output (no progress bars).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Work through this running `imgsim serve` (http://HOST:PORT) instead
    /// of opening the collection; by default the collection commands do so
    /// whenever a live server owns the data directory.
    #[arg(long, global = true, env = "IMGSIM_SERVER", value_name = "URL")]
    pub server: Option<String>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands, in the order a user needs them.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Index folders of images (incremental: only new and changed files are processed).
    #[command(
        after_help = "Examples:\n  imgsim index ~/Pictures\n  imgsim index ~/Pictures /mnt/photos --collection family\n  imgsim index ~/Pictures --exclude '*/screenshots/*' --errors failed.json\n  imgsim index ~/Pictures --backbone resnet50 --weights resnet50.safetensors --reindex\n\nHidden files and folders (.thumbnails, ._*, .git) and @eaDir are skipped\nunless --hidden; a .imgsimignore file (gitignore syntax) in a folder\nexcludes what it lists."
    )]
    Index(Box<commands::index::IndexArgs>),
    /// The images most like an example image (or an indexed one, --id), or
    /// words (--text, CLIP collections).
    #[command(
        after_help = "Examples:\n  imgsim query photo.jpg\n  imgsim query photo.jpg -k 20 --exact     (also exact search: recall@k)\n  imgsim query --id 42 --json\n  imgsim query --text \"two parrots on a branch\"          (CLIP collections)\n  imgsim query photo.jpg --text \"at night\" --text-weight 0.3\n  imgsim query --text \"dog\" --label beach               (after imgsim tag)"
    )]
    Query(commands::query::QueryArgs),
    /// Serve the collections over HTTP: the search page and the API.
    #[command(
        after_help = "Examples:\n  imgsim serve\n  imgsim serve --bind localhost:9000\n  imgsim serve --watch ~/Pictures               (kept indexed: new, changed, deleted)\n  IMGSIM_SERVER_API_KEY=secret imgsim serve     (enables uploads and deletes)\n\nThe page is at /, the API documentation at /docs."
    )]
    Serve(commands::serve::ServeArgs),
    /// Groups of near-duplicate images; optionally move or delete the extra copies.
    #[command(
        after_help = "Examples:\n  imgsim dups\n  imgsim dups --threshold 0.98 --json\n  imgsim dups --move-to ~/duplicates            (dry run: prints what it would do)\n  imgsim dups --move-to ~/duplicates --apply    (keeps the largest of each group)\n  imgsim dups --delete --keep oldest --apply"
    )]
    Dups(commands::dups::DupsArgs),
    /// Zero-shot labels: tag every image with its best labels among a list
    /// (CLIP collections); then query --label filters by them.
    #[command(
        after_help = "Examples:\n  imgsim tag --labels \"beach,snow,city,food,document,screenshot\"\n  imgsim tag --labels \"cat,dog\" --template \"a blurry photo of a {}\" --top 1\n  imgsim query --text \"sunset\" --label beach\n\nEach label becomes a prompt (\"a photo of a {label}\"); each image keeps its\nbest label and the others whose probability (softmax of CLIP's scores over\nthe labels) reaches --min-score, at most --top. Tagging again replaces them."
    )]
    Tag(commands::tag::TagArgs),
    /// A collection's size, embedder, index parameters and disk use.
    #[command(after_help = "Examples:\n  imgsim info\n  imgsim info --collection family --json")]
    Info(commands::info::InfoArgs),
    /// Check a collection: graphs and sled agree, nothing stored twice,
    /// every image found by its own vector (exit 4 when inconsistent).
    #[command(
        after_help = "Examples:\n  imgsim check\n  imgsim check --self-search 0     (structure only, fast)"
    )]
    Check(commands::check::CheckArgs),
    /// Remove images from a collection, by id or path.
    #[command(
        after_help = "Examples:\n  imgsim remove 42 43\n  imgsim remove ~/Pictures/blurry.jpg"
    )]
    Remove(commands::remove::RemoveArgs),
    /// Rebuild a collection's graph without deleted images.
    #[command(after_help = "Example:\n  imgsim compact --collection family")]
    Compact(commands::compact::CompactArgs),
    /// Print the embedding of image files or texts.
    #[command(
        after_help = "Examples:\n  imgsim embed photo.jpg --backbone resnet18 --weights resnet18.safetensors\n  imgsim embed a.jpg b.png --autoencoder ae/ --json\n  imgsim embed --text \"a red car at night\" --backbone clip-b32 --json"
    )]
    Embed(commands::embed::EmbedArgs),
    /// List the pretrained backbones.
    Models,
    /// Print the effective configuration (defaults < file < environment < flags) as TOML.
    #[command(
        after_help = "Examples:\n  imgsim config > my.toml\n  IMGSIM_INDEX_M=32 imgsim config\n\nThe api key is never printed."
    )]
    Config,
    /// Benchmarks: recall versus queries per second, model throughput.
    #[command(subcommand)]
    Bench(commands::bench::BenchCommand),
    /// Train a model.
    #[command(subcommand)]
    Train(commands::train::TrainCommand),
    /// Retrieval quality with labels (precision@10, mAP@100, chance) on a
    /// labelled folder or CSV file (leave-one-out), or on Fashion-MNIST.
    #[command(
        after_help = "Examples:\n  imgsim eval --images ~/labelled --embedder colour-histogram --baselines\n  imgsim eval --images ~/labelled --embedder backbone:dinov2-small --json q.json\n  imgsim eval --images ~/labelled --embedder collection:family --markdown q.md\n  imgsim eval --labels labels.csv --images ~/photos --embedder autoencoder:ae/\n  imgsim eval --embedder pca:64                     (Fashion-MNIST)\n  imgsim eval --embedder autoencoder:ae/ --json eval.json\n\nIn a labelled folder each sub-folder is a label; every image is a query\nagainst all the others. A labels CSV has path,label lines."
    )]
    Eval(commands::eval::EvalArgs),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  imgsim completions bash > ~/.local/share/bash-completion/completions/imgsim\n  imgsim completions zsh > ~/.zfunc/_imgsim\n  imgsim completions fish > ~/.config/fish/completions/imgsim.fish"
    )]
    Completions(commands::completions::CompletionsArgs),
}
