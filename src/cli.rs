//! Commands and their wiring.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use imgsim_bench::plot::{plot_svg, Curve};
use imgsim_bench::{report, AnnBenchConfig, AnnReport, BenchData};
use imgsim_datasets::fashion_mnist::FashionMnist;
use imgsim_datasets::synthetic::Clustered;
use imgsim_index::Metric;

use crate::config::Settings;

/// imgsim: image similarity search — embed, index (HNSW in sled), query, benchmark.
#[derive(Debug, Parser)]
#[command(name = "imgsim", version, about, long_about = None)]
pub struct Cli {
    /// Config file (TOML); see config/default.toml for every setting.
    #[arg(long, global = true, env = "IMGSIM_CONFIG")]
    pub config: Option<PathBuf>,
    /// Folder where collections live (default: the platform data directory).
    #[arg(long, global = true, env = "IMGSIM_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Worker threads (0 = one per core).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
    /// Less output (no progress bars).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmarks.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Print the effective configuration (defaults < file < environment < flags) as TOML.
    Config,
    /// Print the embedding of image files.
    Embed(crate::models::EmbedArgs),
    /// List the pretrained backbones.
    Models,
    /// Train a model.
    #[command(subcommand)]
    Train(TrainCommand),
    /// Retrieval quality with labels (precision@10, mAP@100) on Fashion-MNIST.
    Eval(crate::models::EvalArgs),
    /// Index folders of images (incremental: only new and changed files are processed).
    Index(Box<crate::library::IndexArgs>),
    /// The images most like an example image (or an indexed one, --id).
    Query(crate::library::QueryArgs),
    /// Groups of near-duplicate images in a collection.
    Dups(crate::library::DupsArgs),
    /// A collection's size, embedder, index parameters and disk use.
    Info(crate::library::InfoArgs),
    /// Check a collection: graphs and sled agree, nothing stored twice,
    /// every image found by its own vector (exit 4 when inconsistent).
    Check(crate::library::CheckArgs),
    /// Remove images from a collection, by id or path.
    Remove(crate::library::RemoveArgs),
    /// Rebuild a collection's graph without deleted images.
    Compact(crate::library::CompactArgs),
    /// Serve the collections over HTTP: the API and the search page.
    Serve(ServeArgs),
}

/// Arguments of `imgsim serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on (default: the config's server.bind, 127.0.0.1:8080).
    #[arg(long)]
    pub bind: Option<String>,
}

/// `imgsim train ...`
#[derive(Debug, Subcommand)]
pub enum TrainCommand {
    /// A convolutional autoencoder, without labels; its bottleneck is the embedding.
    Autoencoder(Box<crate::models::TrainArgs>),
}

/// `imgsim bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Recall versus queries per second, like ann-benchmarks.
    Ann(Box<AnnArgs>),
    /// Images per second of each backbone's forward pass.
    Embed(crate::models::BenchEmbedArgs),
}

/// Data sets `bench ann` knows.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum DatasetName {
    /// ann-benchmarks' fashion-mnist-784-euclidean (Debian: dataset-fashion-mnist).
    FashionMnist,
    /// Seeded clustered Gaussian vectors (--n, --dim).
    Synthetic,
}

/// Arguments of `imgsim bench ann`.
#[derive(Debug, Args)]
pub struct AnnArgs {
    /// Built-in data set (ignored when --base is given).
    #[arg(long, value_enum, default_value = "fashion-mnist")]
    pub dataset: DatasetName,
    /// Folder of the Fashion-MNIST IDX files.
    #[arg(long)]
    pub data_path: Option<PathBuf>,
    /// Your own base vectors (.fvecs or .npy); needs --queries FILE.
    #[arg(long, requires = "queries")]
    pub base: Option<PathBuf>,
    /// Number of queries to run (first N), or, with --base, the query file (.fvecs or .npy).
    #[arg(long)]
    pub queries: Option<String>,
    /// Metric (default: l2 for fashion-mnist and files, the config's for synthetic).
    #[arg(long)]
    pub metric: Option<String>,
    /// ef_search values to sweep, comma-separated.
    #[arg(long, value_delimiter = ',')]
    pub ef: Option<Vec<usize>>,
    /// HNSW M.
    #[arg(long)]
    pub m: Option<usize>,
    /// HNSW ef_construction.
    #[arg(long)]
    pub ef_construction: Option<usize>,
    /// Timed passes per ef (the fastest is kept).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Synthetic: number of base vectors.
    #[arg(long, default_value_t = 100_000)]
    pub n: usize,
    /// Synthetic: dimension.
    #[arg(long, default_value_t = 128)]
    pub dim: usize,
    /// Synthetic: seed.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Output folder (collection, reports, plot).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the JSON report here (default: OUT/<dataset>.json).
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write the CSV here (default: OUT/<dataset>.csv).
    #[arg(long)]
    pub csv: Option<PathBuf>,
    /// Draw the recall-QPS plot here, SVG (default: OUT/<dataset>.svg).
    #[arg(long)]
    pub plot: Option<PathBuf>,
    /// Peer results (the ann_peers harness' fashion_mnist.json) to draw and compare.
    #[arg(long)]
    pub peers: Option<PathBuf>,
}

/// Parses the command line and runs it; prints errors once.
pub fn run() -> ExitCode {
    // candle's CPU thread pool spins 25,000 times after every operation
    // before parking; on a 2-core machine the spinning worker steals the
    // core that gemm's threads need. Measured with `imgsim bench embed`
    // (batch 1): ResNet-18 26.5 -> 33.4 images/s, DINOv2-S 6.8 -> 8.2.
    // Set before any candle call (single-threaded here); an explicit
    // environment setting wins.
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", "100");
    }
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("IMGSIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match execute(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("error: {}", describe_error(&e));
            ExitCode::from(exit_code(&e))
        }
    }
}

/// The error and its causes, joined with ": ", leaving out a cause whose
/// text the message already contains (typed errors often quote their source).
fn describe_error(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

/// 2 for bad input or usage, 1 for everything else.
fn exit_code(e: &anyhow::Error) -> u8 {
    for cause in e.chain() {
        if let Some(ie) = cause.downcast_ref::<imgsim_index::IndexError>() {
            return if ie.is_user_error() { 2 } else { 1 };
        }
        if let Some(be) = cause.downcast_ref::<imgsim_bench::BenchError>() {
            return match be {
                imgsim_bench::BenchError::Index(ie) if !ie.is_user_error() => 1,
                imgsim_bench::BenchError::Index(_)
                | imgsim_bench::BenchError::Dataset(_)
                | imgsim_bench::BenchError::Invalid(_) => 2,
                imgsim_bench::BenchError::Write { .. } | imgsim_bench::BenchError::Plot(_) => 1,
            };
        }
        if let Some(pe) = cause.downcast_ref::<imgsim_pipeline::PipelineError>() {
            return if pe.is_user_error() { 2 } else { 1 };
        }
        if let Some(ee) = cause.downcast_ref::<imgsim_embed::EmbedError>() {
            return if matches!(
                ee,
                imgsim_embed::EmbedError::Candle(_) | imgsim_embed::EmbedError::NonFinite { .. }
            ) {
                1
            } else {
                2
            };
        }
        if cause
            .downcast_ref::<imgsim_datasets::DatasetError>()
            .is_some()
            || cause.downcast_ref::<crate::config::ConfigError>().is_some()
        {
            return 2;
        }
    }
    1
}

/// Runs a command; returns the process exit code.
fn execute(cli: Cli) -> Result<u8> {
    let quiet = cli.quiet;
    let settings = settings_for(&cli)?;
    let ok = |r: Result<()>| r.map(|()| 0u8);
    match cli.command {
        Command::Index(args) => crate::library::index(&args, &settings, quiet),
        Command::Query(args) => ok(crate::library::query(&args, &settings)),
        Command::Dups(args) => ok(crate::library::dups(&args, &settings)),
        Command::Info(args) => ok(crate::library::info(&args, &settings)),
        Command::Check(args) => crate::library::check(&args, &settings),
        Command::Remove(args) => ok(crate::library::remove(&args, &settings)),
        Command::Compact(args) => ok(crate::library::compact(&args, &settings, quiet)),
        Command::Serve(args) => ok(serve(&args, &settings)),
        Command::Config => {
            print!(
                "{}",
                toml::to_string_pretty(&settings).context("serialising settings")?
            );
            Ok(0)
        }
        Command::Bench(BenchCommand::Ann(args)) => ok(bench_ann(&settings, *args, !quiet)),
        Command::Bench(BenchCommand::Embed(args)) => ok(crate::models::bench_embed(&args)),
        Command::Embed(args) => ok(crate::models::embed(&args)),
        Command::Models => {
            crate::models::list_models();
            Ok(0)
        }
        Command::Train(TrainCommand::Autoencoder(args)) => ok(crate::models::train_autoencoder(
            &args,
            &settings.bench.fashion_mnist_dir,
            !quiet,
        )),
        Command::Eval(args) => ok(crate::models::eval(
            &args,
            &settings.bench.fashion_mnist_dir,
        )),
    }
}

/// Settings after the config file, the environment and the global flags;
/// configures the global thread pool.
fn settings_for(cli: &Cli) -> Result<Settings> {
    let mut settings = Settings::load(cli.config.as_deref())?;
    if let Some(d) = &cli.data_dir {
        settings.data_dir = d.clone();
    }
    if let Some(t) = cli.threads {
        settings.threads = t;
    }
    if settings.threads > 0 {
        rayon::ThreadPoolBuilder::new()
            .num_threads(settings.threads)
            .build_global()
            .context("configuring the thread pool")?;
    }
    Ok(settings)
}

fn serve(args: &ServeArgs, settings: &Settings) -> Result<()> {
    let s = &settings.server;
    let bind_text = args.bind.as_deref().unwrap_or(&s.bind);
    let bind: std::net::SocketAddr = bind_text
        .parse()
        .with_context(|| format!("`{bind_text}` is not an address like 127.0.0.1:8080"))?;
    if !(0.0..=1.0).contains(&s.recall_sample) || !(0.0..=1.0).contains(&s.target_recall) {
        bail!("server.recall_sample and server.target_recall must be between 0 and 1");
    }
    let data_dir = settings.data_dir();
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let options = imgsim_server::ServerOptions {
        api_key: (!s.api_key.is_empty()).then(|| s.api_key.clone()),
        max_upload_bytes: s.max_upload_bytes,
        queue: s.queue,
        recall_sample: s.recall_sample,
        recall_window: s.recall_window,
        recall_max_per_s: s.recall_max_per_s,
        target_recall: (s.target_recall > 0.0).then_some(s.target_recall),
        limits: settings.limits.image_limits(),
        storage: settings.storage.clone(),
        request_timeout_s: s.request_timeout_s,
        workers: s.workers,
        cors_origins: s.cors_origins.clone(),
        bench_report: Some(
            settings
                .bench
                .out_dir
                .join("fashion-mnist-784-euclidean.json"),
        ),
    };
    if options.api_key.is_none() {
        eprintln!(
            "no server.api_key (IMGSIM_SERVER_API_KEY): adding and deleting images is disabled"
        );
    }
    imgsim_server::serve(bind, &data_dir, &settings.collection, options)
        .with_context(|| format!("serving on {bind}"))
}

fn load_data(settings: &Settings, args: &AnnArgs) -> Result<BenchData> {
    let query_count = args
        .queries
        .as_deref()
        .and_then(|q| q.parse::<usize>().ok());
    let mut data = if let Some(base) = &args.base {
        let qfile = args
            .queries
            .as_deref()
            .filter(|q| q.parse::<usize>().is_err())
            .context("--base needs --queries FILE (.fvecs or .npy)")?;
        let b = imgsim_datasets::read_vectors(base)?;
        let q = imgsim_datasets::read_vectors(Path::new(qfile))?;
        if b.dim != q.dim {
            bail!("base vectors are {}-d but queries are {}-d", b.dim, q.dim);
        }
        let stem = base
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("custom");
        BenchData {
            name: stem.to_string(),
            dim: b.dim,
            base: b.data,
            queries: q.data,
            metric: Metric::L2,
        }
    } else {
        match args.dataset {
            DatasetName::FashionMnist => {
                let dir = args
                    .data_path
                    .clone()
                    .unwrap_or_else(|| settings.bench.fashion_mnist_dir.clone());
                let fm = FashionMnist::load(&dir)?;
                BenchData {
                    name: "fashion-mnist-784-euclidean".into(),
                    dim: fm.train.dim,
                    base: fm.train.data,
                    queries: fm.test.data,
                    metric: Metric::L2,
                }
            }
            DatasetName::Synthetic => {
                if args.n == 0 || args.dim == 0 {
                    bail!("--n and --dim must be at least 1");
                }
                let nq = query_count.unwrap_or(1000);
                let base = Clustered::new(args.dim, args.seed).rows(0, args.n);
                let queries = Clustered::new(args.dim, args.seed ^ 0x5EED).rows(0, nq);
                BenchData {
                    name: format!("synthetic-{}x{}", args.n, args.dim),
                    dim: args.dim,
                    base,
                    queries,
                    metric: settings.index.metric,
                }
            }
        }
    };
    if let Some(m) = &args.metric {
        data.metric = Metric::parse(m)?;
    }
    if let Some(n) = query_count {
        if n == 0 {
            bail!("--queries must be at least 1");
        }
        data.queries.truncate(n * data.dim);
    }
    Ok(data)
}

/// A peer's curve and its single-thread QPS at the first ef reaching a recall.
struct Peer {
    name: String,
    curve: Vec<(f64, f64)>,
    batch1: Vec<(f64, f64)>,
}

fn load_peers(path: &Path) -> Result<Vec<Peer>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading peers file {}", path.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let results = v["results"]
        .as_array()
        .context("peers file has no \"results\" list")?;
    Ok(results
        .iter()
        .filter_map(|r| {
            let name = r["config"].as_str()?.to_string();
            let sweep = r["sweep"].as_array()?;
            let pick = |q: &str, rk: &str| -> Vec<(f64, f64)> {
                sweep
                    .iter()
                    .filter_map(|row| Some((row[rk].as_f64()?, row[q].as_f64()?)))
                    .collect()
            };
            Some(Peer {
                name,
                curve: pick("qps_1thread_single", "recall10"),
                batch1: pick("batch1_qps", "batch1_recall10"),
            })
        })
        .collect())
}

/// QPS at exactly `target` recall, interpolated (log-linearly in QPS)
/// between the two sweep points around it, as the curves in the plot are;
/// when every point is above the target, the fastest one (a lower bound);
/// None when the target is never reached.
fn qps_at(points: &[(f64, f64)], target: f64) -> Option<f64> {
    let mut pts: Vec<(f64, f64)> = points.iter().copied().filter(|p| p.1 > 0.0).collect();
    pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    let above = pts.iter().position(|p| p.0 >= target)?;
    let hi = pts[above];
    if above == 0 {
        return pts
            .iter()
            .filter(|p| p.0 >= target)
            .map(|p| p.1)
            .reduce(f64::max);
    }
    let lo = pts[above - 1];
    if hi.0 == lo.0 {
        return Some(hi.1);
    }
    let t = (target - lo.0) / (hi.0 - lo.0);
    Some((lo.1.ln() + t * (hi.1.ln() - lo.1.ln())).exp())
}

fn peer_table(ours: &AnnReport, peers: &[Peer]) -> String {
    let pts: Vec<(f64, f64)> = ours
        .runs
        .iter()
        .map(|r| (r.recall_at_10, r.qps_single_thread))
        .collect();
    let mut s = String::from("\n| at recall@10 | imgsim QPS (1 thread) | peer | peer QPS, one query per call | ratio | peer QPS, batch 1 thread | ratio |\n|---:|---:|---|---:|---:|---:|---:|\n");
    for target in [0.90, 0.95, 0.99] {
        let Some(q) = qps_at(&pts, target) else {
            continue;
        };
        for p in peers {
            let single = qps_at(&p.curve, target);
            let batch = qps_at(&p.batch1, target);
            let fmt = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{v:.0}"));
            let ratio = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.2}x", q / v));
            s.push_str(&format!(
                "| {target:.2} | {q:.0} | {} | {} | {} | {} | {} |\n",
                p.name,
                fmt(single),
                ratio(single),
                fmt(batch),
                ratio(batch)
            ));
        }
    }
    s
}

fn bench_ann(settings: &Settings, args: AnnArgs, progress: bool) -> Result<()> {
    let data = load_data(settings, &args)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| settings.bench.out_dir.clone());
    let name = data.name.clone();
    let mut params = settings.index.params();
    if let Some(m) = args.m {
        params.m = m;
    }
    if let Some(e) = args.ef_construction {
        params.ef_construction = e;
    }
    let cfg = AnnBenchConfig {
        params,
        efs: args.ef.clone().unwrap_or_else(|| settings.bench.ef.clone()),
        k: 10,
        collection_dir: out.join(format!("{name}.collection")),
        options: settings.storage.clone(),
        runs: args.runs.unwrap_or(settings.bench.runs),
        progress,
    };
    let peers = args.peers.as_deref().map(load_peers).transpose()?;
    let report = imgsim_bench::run_ann(data, &cfg)?;
    let mut text = report::render(&report);
    if let Some(peers) = &peers {
        text.push_str(&peer_table(&report, peers));
    }
    println!("{text}");
    let json = args
        .json
        .clone()
        .unwrap_or_else(|| out.join(format!("{name}.json")));
    let csv = args
        .csv
        .clone()
        .unwrap_or_else(|| out.join(format!("{name}.csv")));
    let svg = args
        .plot
        .clone()
        .unwrap_or_else(|| out.join(format!("{name}.svg")));
    report::write_json(&report, &json)?;
    report::write_csv(&report, &csv)?;
    let mut curves = vec![Curve::from_report("imgsim (1 thread)", &report)];
    for p in peers.iter().flatten() {
        curves.push(Curve {
            label: format!("{} (1 thread, from Python)", p.name),
            points: p.curve.clone(),
        });
    }
    plot_svg(&format!("{name}: recall vs QPS"), &curves, &svg)?;
    eprintln!(
        "wrote {}, {}, {}",
        json.display(),
        csv.display(),
        svg.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::qps_at;

    #[test]
    fn qps_at_interpolates_between_sweep_points() {
        let pts = [(0.90, 10_000.0), (0.96, 8_000.0), (0.99, 4_000.0)];
        // Exactly on a point.
        assert!((qps_at(&pts, 0.96).unwrap() - 8_000.0).abs() < 1e-6);
        // Between points: log-linear.
        let q = qps_at(&pts, 0.93).unwrap();
        assert!((q - (10_000f64.ln() * 0.5 + 8_000f64.ln() * 0.5).exp()).abs() < 1e-6);
        // Never reached / all above.
        assert_eq!(qps_at(&pts, 0.999), None);
        assert_eq!(qps_at(&pts, 0.5), Some(10_000.0));
    }
}
