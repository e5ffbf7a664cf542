//! Contrastive training end to end on tiny synthetic images: seeded
//! determinism, resuming, checkpoints told apart from reconstruction ones
//! (and old ones still loading as reconstruction), and bad input refused.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::Device;
use imgsim_embed::autoencoder::checkpoint;
use imgsim_embed::autoencoder::contrastive::{
    ContrastiveOptions, ContrastiveParams, ContrastiveTrainer, Pooling,
};
use imgsim_embed::autoencoder::train::{EpochTrainer, TrainData, TrainOptions, Trainer};
use imgsim_embed::{load_embedder, AutoencoderConfig, AutoencoderEmbedder, EmbedError, Metric};

/// A 16×16 model of two small blocks, trained on 20×20 images.
fn tiny_config() -> AutoencoderConfig {
    AutoencoderConfig::contrastive(
        16,
        vec![4, 8],
        ContrastiveParams {
            projection_dim: 8,
            feature_blocks: vec![0, 1],
            pooling: Pooling::Max,
            colour_bins: 2,
            colour_weight: 0.3,
            train_side: 20,
        },
    )
}

fn opts(seed: u64) -> ContrastiveOptions {
    ContrastiveOptions {
        batch_size: 5,
        seed,
        ..ContrastiveOptions::default()
    }
}

/// `n` images of `3 × side × side` values in `[0, 1]`.
fn images(n: usize, side: usize) -> Vec<f32> {
    imgsim_embed::synthetic::values(5, "pixels", n * 3 * side * side, 0.0, 1.0)
}

fn data(px: &[f32]) -> TrainData<'_> {
    TrainData {
        pixels: px,
        len: 3 * 20 * 20,
    }
}

/// Every tensor of a checkpoint, by name.
fn tensors(dir: &Path) -> BTreeMap<String, Vec<f32>> {
    candle_core::safetensors::load(dir.join(checkpoint::WEIGHTS_FILE), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, t)| (k, t.flatten_all().unwrap().to_vec1::<f32>().unwrap()))
        .collect()
}

fn train(dir: &Path, seed: u64, epochs: usize, px: &[f32]) -> Vec<f64> {
    let mut t = ContrastiveTrainer::new(&tiny_config(), &opts(seed), "test").unwrap();
    let losses = (0..epochs)
        .map(|_| t.run_epoch(data(px), &mut |_| {}).unwrap().loss)
        .collect();
    t.save(dir).unwrap();
    losses
}

#[test]
fn two_runs_with_one_seed_give_bit_identical_weights() {
    let px = images(12, 20);
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let la = train(a.path(), 7, 2, &px);
    let lb = train(b.path(), 7, 2, &px);
    assert_eq!(la, lb);
    assert!(la.iter().all(|l| l.is_finite() && *l > 0.0), "{la:?}");
    let ta = tensors(a.path());
    assert!(ta.keys().any(|k| k.starts_with("head.")), "{:?}", ta.keys());
    assert_eq!(
        ta,
        tensors(b.path()),
        "same seed: same weights, bit for bit"
    );
    train(c.path(), 8, 2, &px);
    assert_ne!(ta, tensors(c.path()), "another seed: other weights");
}

#[test]
fn training_resumes_from_the_saved_epoch() {
    let px = images(12, 20);
    let dir = tempfile::tempdir().unwrap();
    let mut t = ContrastiveTrainer::new(&tiny_config(), &opts(3), "test").unwrap();
    let mut batches = Vec::new();
    for _ in 0..2 {
        t.run_epoch(data(&px), &mut |p| batches.push((p.batch, p.batches)))
            .unwrap();
        t.save(dir.path()).unwrap();
    }
    assert_eq!(batches.len(), 6, "12 images in batches of 5, 5 and 2");
    assert_eq!(batches[5], (3, 3));
    let saved = tensors(dir.path());
    // "Interrupted" here: a new process picks the checkpoint up.
    let mut resumed = ContrastiveTrainer::resume(dir.path(), &opts(3)).unwrap();
    assert_eq!(resumed.epochs_done(), 2);
    // The history went through JSON: epochs come back exactly, the f64
    // figures to within float printing (serde_json may change the last
    // digit: 1957.335309807033 came back as 1957.3353098070327).
    let (back, kept) = (&resumed.state().history, &t.state().history);
    assert_eq!(back.len(), kept.len());
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-9);
    for (b, k) in back.iter().zip(kept) {
        assert_eq!(b.epoch, k.epoch);
        assert!(close(b.loss, k.loss), "{b:?} vs {k:?}");
        assert!(close(b.images_per_s, k.images_per_s), "{b:?} vs {k:?}");
        assert!(close(b.seconds, k.seconds), "{b:?} vs {k:?}");
    }
    let again = tempfile::tempdir().unwrap();
    resumed.save(again.path()).unwrap();
    assert_eq!(tensors(again.path()), saved, "the weights it resumes from");
    let e3 = resumed.run_epoch(data(&px), &mut |_| {}).unwrap();
    assert_eq!(e3.epoch, 3);
    assert!(e3.loss.is_finite());
    resumed.save(dir.path()).unwrap();
    let ck = checkpoint::read_config(dir.path()).unwrap();
    assert_eq!(ck.training.history.len(), 3);
    let record = ck
        .training
        .contrastive
        .expect("contrastive settings recorded");
    assert_eq!(record.temperature, opts(3).temperature);
}

#[test]
fn contrastive_checkpoints_embed_by_cosine_and_are_told_apart() {
    let px = images(12, 20);
    let dir = tempfile::tempdir().unwrap();
    train(dir.path(), 1, 1, &px);
    let cfg = tiny_config();
    let e = load_embedder(dir.path()).unwrap();
    let id = e.identity().clone();
    assert_eq!(id.architecture, "contrastive-cnn");
    assert_eq!(id.metric, Metric::Cosine);
    assert_eq!(id.dim, 4 + 8 + 8);
    let inputs: Vec<Vec<f32>> = (0..3)
        .map(|i| px[i * 768..(i + 1) * 768].to_vec())
        .collect();
    let v = e.embed_batch(&inputs).unwrap();
    assert_eq!((v.len(), v[0].len()), (3, id.dim));
    for row in &v {
        let n: f32 = row.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "unit length: {n}");
    }
    assert!(e.embed_batch(&[vec![0.5; 10]]).is_err());

    // Never taken for a reconstruction autoencoder, nor trained as one.
    match AutoencoderEmbedder::load(dir.path()) {
        Err(EmbedError::Checkpoint { reason, .. }) => {
            assert!(reason.contains("contrastive"), "{reason}")
        }
        Err(other) => panic!("expected a checkpoint error, got {other}"),
        Ok(_) => panic!("a contrastive checkpoint loaded as an autoencoder"),
    }
    let err = Trainer::resume(dir.path(), &TrainOptions::default())
        .err()
        .expect("refused");
    assert!(err.to_string().contains("contrastive"), "{err}");

    // The embedding settings are part of the identity: editing them in
    // config.json makes another embedder.
    let c = dir.path().join(checkpoint::CONFIG_FILE);
    let text = std::fs::read_to_string(&c).unwrap();
    std::fs::write(
        &c,
        text.replace("\"colour_weight\": 0.3", "\"colour_weight\": 0.6"),
    )
    .unwrap();
    let edited = load_embedder(dir.path()).unwrap();
    assert_ne!(
        edited.identity().weights_digest,
        id.weights_digest,
        "{}",
        std::fs::read_to_string(&c).unwrap()
    );
    assert!(!edited.identity().compatible(&id));
    assert_eq!(cfg.dim, id.dim);
}

#[test]
fn checkpoints_without_an_objective_load_as_reconstruction() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AutoencoderConfig {
        widths: vec![4, 8],
        ..AutoencoderConfig::grey28(8)
    };
    Trainer::new(&cfg, &TrainOptions::default(), "legacy")
        .unwrap()
        .save(dir.path())
        .unwrap();
    let c = dir.path().join(checkpoint::CONFIG_FILE);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&c).unwrap()).unwrap();
    assert_eq!(json["model"]["objective"], "reconstruction");
    json["model"].as_object_mut().unwrap().remove("objective");
    std::fs::write(&c, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let e = load_embedder(dir.path()).unwrap();
    assert_eq!(e.identity().architecture, "autoencoder");
    assert_eq!(e.identity().metric, Metric::L2);
    let err = ContrastiveTrainer::resume(dir.path(), &opts(1))
        .err()
        .expect("refused");
    assert!(err.to_string().contains("reconstruction"), "{err}");
}

#[test]
fn bad_training_input_is_refused_with_words() {
    let mut t = ContrastiveTrainer::new(&tiny_config(), &opts(1), "test").unwrap();
    let one = images(1, 20);
    let err = t.run_epoch(data(&one), &mut |_| {}).unwrap_err();
    assert!(
        matches!(&err, EmbedError::Input(m) if m.contains("at least two")),
        "{err}"
    );
    let err = t
        .run_epoch(
            TrainData {
                pixels: &[0.5; 100],
                len: 100,
            },
            &mut |_| {},
        )
        .unwrap_err();
    assert!(matches!(err, EmbedError::Input(_)), "{err}");
    for bad in [
        ContrastiveOptions {
            temperature: 0.0,
            ..opts(1)
        },
        ContrastiveOptions {
            batch_size: 0,
            ..opts(1)
        },
        ContrastiveOptions {
            learning_rate: f64::NAN,
            ..opts(1)
        },
    ] {
        assert!(ContrastiveTrainer::new(&tiny_config(), &bad, "test").is_err());
    }
    let mut cfg = tiny_config();
    cfg.dim = 3;
    assert!(ContrastiveTrainer::new(&cfg, &opts(1), "test").is_err());
}
