//! `imgsim bench`: recall versus queries per second (ann-benchmarks'
//! method) with the peers side by side, and each backbone's throughput.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand, ValueEnum};
use imgsim_bench::data::Source;
use imgsim_bench::plot::{plot_svg, Curve};
use imgsim_bench::{peers, report, AnnBenchConfig};
use imgsim_embed::{Backbone, Embedder, PretrainedEmbedder, WeightsSource};
use imgsim_index::{GraphBuilder, Metric, Quantization};

use crate::config::Settings;
use crate::exit::usage;

/// `imgsim bench ...`
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Recall versus queries per second, like ann-benchmarks.
    #[command(
        after_help = "Examples:\n  imgsim bench ann                                  (Fashion-MNIST, 60,000 x 784)\n  imgsim bench ann --dataset synthetic --n 200000 --dim 128\n  imgsim bench ann --base base.npy --queries queries.npy --ef 16,32,64\n  imgsim bench ann --peers peers.json               (draw hnswlib/faiss/usearch beside imgsim)"
    )]
    Ann(Box<AnnArgs>),
    /// Images per second of each backbone's forward pass.
    #[command(
        after_help = "Examples:\n  imgsim bench embed\n  imgsim bench embed --backbones resnet18,dinov2-small --batch-sizes 1,16 --seconds 5"
    )]
    Embed(BenchEmbedArgs),
    /// Texts per second of CLIP's text tower (the PyTorch baseline:
    /// tools/bench/clip_text_torch.py, same prompts).
    #[command(
        after_help = "Examples:\n  imgsim bench text\n  imgsim bench text --batch-sizes 1,8,32 --seconds 5 --json text.json"
    )]
    Text(BenchTextArgs),
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
    /// Graph builder: native or hnsw_rs (default: the config's `[index] builder`).
    #[arg(long)]
    pub builder: Option<String>,
    /// Quantization: none, sq8 or binary (default: the config's `[index] quantization`).
    #[arg(long)]
    pub quantization: Option<String>,
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
    /// Earlier imgsim reports (JSON) to draw on the same plot, e.g. the
    /// other quantizations or builders on the same data; repeatable.
    #[arg(long)]
    pub also: Vec<PathBuf>,
}

/// A plot label naming what differs between imgsim's curves.
fn curve_label(r: &imgsim_bench::AnnReport) -> String {
    let mut parts = vec!["imgsim".to_string()];
    if !r.builder.is_empty() && r.builder != "native" {
        parts.push(r.builder.clone());
    }
    if !r.quantization.is_empty() && r.quantization != "none" {
        parts.push(r.quantization.clone());
    }
    format!("{} (1 thread)", parts.join(" "))
}

/// `imgsim bench ...`.
pub fn run(cmd: BenchCommand, settings: &Settings, progress: bool) -> Result<()> {
    match cmd {
        BenchCommand::Ann(args) => ann(settings, *args, progress),
        BenchCommand::Embed(args) => embed(&args),
        BenchCommand::Text(args) => text(&args),
    }
}

/// The data source and query count `args` name.
fn source(settings: &Settings, args: &AnnArgs) -> Result<(Source, Option<usize>)> {
    let count = args
        .queries
        .as_deref()
        .and_then(|q| q.parse::<usize>().ok());
    let src = if let Some(base) = &args.base {
        let qfile = args
            .queries
            .as_deref()
            .filter(|q| q.parse::<usize>().is_err())
            .ok_or_else(|| usage("--base needs --queries FILE (.fvecs or .npy)"))?;
        Source::Files {
            base: base.clone(),
            queries: PathBuf::from(qfile),
        }
    } else {
        match args.dataset {
            DatasetName::FashionMnist => Source::FashionMnist(
                args.data_path
                    .clone()
                    .unwrap_or_else(|| settings.bench.fashion_mnist_dir.clone()),
            ),
            DatasetName::Synthetic => Source::Synthetic {
                n: args.n,
                dim: args.dim,
                seed: args.seed,
                metric: settings.index.metric,
            },
        }
    };
    Ok((src, count))
}

fn ann(settings: &Settings, args: AnnArgs, progress: bool) -> Result<()> {
    let (src, count) = source(settings, &args)?;
    let metric = args.metric.as_deref().map(Metric::parse).transpose()?;
    let data = imgsim_bench::data::load(&src, count, metric)?;
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
    if let Some(b) = &args.builder {
        params.builder = GraphBuilder::parse(b)?;
    }
    if let Some(q) = &args.quantization {
        params.quantization = Quantization::parse(q)?;
    }
    params.validate()?;
    let cfg = AnnBenchConfig {
        params,
        efs: args.ef.clone().unwrap_or_else(|| settings.bench.ef.clone()),
        k: 10,
        collection_dir: out.join(format!("{name}.collection")),
        options: settings.storage.clone(),
        runs: args.runs.unwrap_or(settings.bench.runs),
        progress,
    };
    let peers = args.peers.as_deref().map(peers::load).transpose()?;
    let report = imgsim_bench::run_ann(data, &cfg)?;
    let mut text = report::render(&report);
    if let Some(peers) = &peers {
        text.push_str(&peers::table(&report, peers));
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
    let mut curves = vec![Curve::from_report(&curve_label(&report), &report)];
    for path in &args.also {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the report {}", path.display()))?;
        let earlier: imgsim_bench::AnnReport = serde_json::from_str(&text)
            .with_context(|| format!("{} is not an imgsim bench report", path.display()))?;
        curves.push(Curve::from_report(&curve_label(&earlier), &earlier));
    }
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

/// Arguments of `imgsim bench embed`.
#[derive(Debug, Args)]
pub struct BenchEmbedArgs {
    /// Backbones to measure, comma-separated (default: all).
    #[arg(long, value_delimiter = ',')]
    pub backbones: Option<Vec<String>>,
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub batch_sizes: Vec<usize>,
    /// Minimum measured seconds per case.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Weights (throughput does not depend on their values).
    #[arg(long, default_value = "synthetic:0")]
    pub weights: String,
    /// Write results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// `imgsim bench embed`: images per second of each backbone's forward pass
/// on a fixed batch (preprocessed input, no decoding).
fn embed(args: &BenchEmbedArgs) -> Result<()> {
    let names = args
        .backbones
        .clone()
        .unwrap_or_else(|| Backbone::ALL.iter().map(|b| b.name().to_string()).collect());
    let source = WeightsSource::parse(&args.weights)?;
    let threads = rayon::current_num_threads();
    println!("threads {threads}, weights {}", source.describe());
    println!(
        "{:<20} {:>5} {:>12} {:>12} {:>6}",
        "backbone", "batch", "images/s", "ms/batch", "iters"
    );
    let mut rows = Vec::new();
    for name in &names {
        let b = Backbone::parse(name)?;
        let e = PretrainedEmbedder::load(b, Some(&source))?;
        let t = e.preprocessing();
        for &bs in &args.batch_sizes {
            if bs == 0 {
                bail!("batch sizes must be at least 1");
            }
            let input: Vec<Vec<f32>> = (0..bs)
                .map(|i| {
                    imgsim_embed::synthetic::values(i as u64, "bench-input", t.len(), -2.0, 2.0)
                })
                .collect();
            e.embed_batch(&input)?; // warm-up
            let mut times = Vec::new();
            let start = Instant::now();
            while start.elapsed().as_secs_f64() < args.seconds || times.len() < 3 {
                let t0 = Instant::now();
                e.embed_batch(&input)?;
                times.push(t0.elapsed().as_secs_f64());
            }
            let total: f64 = times.iter().sum();
            times.sort_by(f64::total_cmp);
            let median = times[times.len() / 2] * 1e3;
            let ips = (bs * times.len()) as f64 / total;
            println!(
                "{:<20} {:>5} {:>12.1} {:>12.2} {:>6}",
                name,
                bs,
                ips,
                median,
                times.len()
            );
            rows.push(serde_json::json!({
                "backbone": name, "batch": bs, "images_per_s": ips,
                "ms_per_batch_median": median, "iterations": times.len()
            }));
        }
    }
    if let Some(p) = &args.json {
        let doc = serde_json::json!({ "threads": threads, "weights": source.describe(), "results": rows });
        write_json(p, &doc)?;
    }
    Ok(())
}

/// Arguments of `imgsim bench text`.
#[derive(Debug, Args)]
pub struct BenchTextArgs {
    /// Batch sizes.
    #[arg(long, value_delimiter = ',', default_value = "1,32")]
    pub batch_sizes: Vec<usize>,
    /// Minimum measured seconds per case.
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Weights of a full CLIP checkpoint (throughput does not depend on
    /// their values).
    #[arg(long, default_value = "synthetic:0")]
    pub weights: String,
    /// Write results as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
}

/// The prompts of tools/bench/clip_text_torch.py: zero-shot prompts and a
/// few captions, mixed in every batch the same way.
fn bench_prompts(batch: usize) -> Vec<String> {
    const LABELS: [&str; 32] = [
        "dog",
        "cat",
        "car",
        "bicycle",
        "airplane",
        "bird",
        "horse",
        "sheep",
        "cow",
        "elephant",
        "bear",
        "zebra",
        "giraffe",
        "boat",
        "train",
        "bus",
        "truck",
        "traffic light",
        "fire hydrant",
        "stop sign",
        "bench",
        "umbrella",
        "backpack",
        "suitcase",
        "kite",
        "skateboard",
        "surfboard",
        "tennis racket",
        "wine glass",
        "pizza",
        "laptop",
        "teddy bear",
    ];
    const CAPTIONS: [&str; 4] = [
        "a man riding a red bicycle down a busy city street next to a yellow taxi",
        "two young children building a sandcastle on a sunny beach while waves roll in",
        "a bowl of ramen with a soft-boiled egg, green onions and slices of pork on a wooden table",
        "an old stone lighthouse on a rocky cliff at sunset with seagulls flying overhead",
    ];
    let texts: Vec<String> = LABELS
        .iter()
        .map(|l| format!("a photo of a {l}."))
        .chain(CAPTIONS.iter().map(|c| c.to_string()))
        .collect();
    (0..batch)
        .map(|i| texts[(i * 7) % texts.len()].clone())
        .collect()
}

/// Median seconds per call of `f` (after a warm-up), and the call count.
fn time_calls(seconds: f64, mut f: impl FnMut() -> Result<()>) -> Result<(f64, usize)> {
    f()?;
    let mut times = Vec::new();
    let start = Instant::now();
    while start.elapsed().as_secs_f64() < seconds || times.len() < 3 {
        let t0 = Instant::now();
        f()?;
        times.push(t0.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], times.len()))
}

/// `imgsim bench text`: texts per second of CLIP's text tower, from token
/// ids (what the PyTorch baseline times) and from text (with the tokenizer).
fn text(args: &BenchTextArgs) -> Result<()> {
    let source = WeightsSource::parse(&args.weights)?;
    let weights = source.load()?;
    let enc = imgsim_embed::TextEncoder::load(&weights)?;
    let threads = rayon::current_num_threads();
    println!(
        "threads {threads}, weights {}; texts/s from the median call",
        source.describe()
    );
    println!(
        "{:<22} {:>5} {:>4} {:>10} {:>12} {:>6}",
        "case", "batch", "seq", "texts/s", "ms/batch", "iters"
    );
    let mut rows = Vec::new();
    for &bs in &args.batch_sizes {
        if bs == 0 {
            bail!("batch sizes must be at least 1");
        }
        let texts = bench_prompts(bs);
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let ids: Vec<Vec<u32>> = refs.iter().map(|t| enc.tokenizer().tokenize(t)).collect();
        let seq = ids.iter().map(Vec::len).max().unwrap_or(0);
        for (case, from_text) in [("tower (token ids)", false), ("tokenizer + tower", true)] {
            let (median, iters) = time_calls(args.seconds, || {
                if from_text {
                    enc.features(&refs)?;
                } else {
                    enc.features_of_tokens(&ids)?;
                }
                Ok(())
            })?;
            let tps = bs as f64 / median;
            println!(
                "{case:<22} {bs:>5} {seq:>4} {tps:>10.1} {:>12.2} {iters:>6}",
                median * 1e3
            );
            rows.push(serde_json::json!({
                "case": case, "batch": bs, "seq_len": seq, "texts_per_s": tps,
                "ms_per_batch_median": median * 1e3, "iterations": iters
            }));
        }
    }
    if let Some(p) = &args.json {
        let doc = serde_json::json!({ "threads": threads, "weights": source.describe(), "results": rows });
        write_json(p, &doc)?;
    }
    Ok(())
}

/// Writes a benchmark's JSON report (whole or not at all).
fn write_json(p: &Path, doc: &serde_json::Value) -> Result<()> {
    imgsim_common::Storage::write(
        &imgsim_common::LocalFs,
        p,
        serde_json::to_string_pretty(doc)?.as_bytes(),
    )
    .with_context(|| format!("writing {}", p.display()))
}
