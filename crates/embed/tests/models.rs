//! Weights and checkpoints, good and bad: real files written by the tests,
//! loaded through the same paths users take; every broken input gives a
//! typed error naming the file and the problem.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use imgsim_common::{ErrorKind, FaultyFs, Op};
use imgsim_embed::autoencoder::checkpoint;
use imgsim_embed::autoencoder::train::{TrainData, TrainOptions, Trainer};
use imgsim_embed::{
    AutoencoderConfig, AutoencoderEmbedder, Backbone, EmbedError, Embedder, PretrainedEmbedder,
    Weights, WeightsSource,
};

fn resnet18_tensors() -> HashMap<String, Tensor> {
    let w = Weights::synthetic_recording(3);
    Backbone::Resnet18.build(&w, 224).unwrap();
    w.recorded_tensors().unwrap()
}

fn save(t: &HashMap<String, Tensor>, path: &Path) {
    candle_core::safetensors::save(t, path).unwrap();
}

fn file_source(p: &Path) -> WeightsSource {
    WeightsSource::File {
        path: p.to_path_buf(),
    }
}

fn input() -> Vec<f32> {
    imgsim_embed::synthetic::values(9, "img", 3 * 224 * 224, -1.0, 1.0)
}

#[test]
fn safetensors_file_gives_the_same_embedding_as_the_weights_it_holds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18.safetensors");
    let tensors = resnet18_tensors();
    // conv1 + bn1 (5 tensors), 8 blocks of 2 conv+bn (5 each), 3 downsamples (5 each).
    assert_eq!(tensors.len(), 5 + 8 * 10 + 3 * 5, "recorded every tensor");
    save(&tensors, &path);
    let from_file =
        PretrainedEmbedder::load(Backbone::Resnet18, Some(&file_source(&path))).unwrap();
    let synthetic = PretrainedEmbedder::load(
        Backbone::Resnet18,
        Some(&WeightsSource::Synthetic { seed: 3 }),
    )
    .unwrap();
    let a = from_file.embed_batch(&[input()]).unwrap();
    let b = synthetic.embed_batch(&[input()]).unwrap();
    assert_eq!(a, b);
    assert_eq!(a[0].len(), 512);
    let norm: f32 = a[0].iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-5, "L2-normalised, got {norm}");
    let id = from_file.identity();
    assert_eq!(id.weights_digest.len(), 16);
    assert_ne!(id.weights_digest, synthetic.identity().weights_digest);
    assert!(!id.compatible(synthetic.identity()));
    // Half-precision checkpoints are converted on load.
    let half: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.to_dtype(DType::F16).unwrap()))
        .collect();
    let hpath = dir.path().join("half.safetensors");
    save(&half, &hpath);
    let h = PretrainedEmbedder::load(Backbone::Resnet18, Some(&file_source(&hpath))).unwrap();
    let c = h.embed_batch(&[input()]).unwrap();
    let cos: f32 = a[0].iter().zip(&c[0]).map(|(x, y)| x * y).sum();
    assert!(
        cos > 0.999,
        "f16 weights give nearly the same embedding ({cos})"
    );
}

#[test]
fn broken_weight_files_are_typed_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let load = |p: &Path| {
        PretrainedEmbedder::load(Backbone::Resnet18, Some(&file_source(p)))
            .err()
            .unwrap()
    };

    let empty = dir.path().join("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    let e = load(&empty);
    assert!(matches!(e, EmbedError::Weights { .. }), "{e}");
    assert!(e.to_string().contains("empty.safetensors"), "{e}");

    let garbage = dir.path().join("garbage.safetensors");
    std::fs::write(&garbage, b"this is not a safetensors file at all").unwrap();
    let e = load(&garbage);
    assert!(matches!(e, EmbedError::Weights { .. }), "{e}");

    let mut tensors = resnet18_tensors();
    let full = dir.path().join("full.safetensors");
    save(&tensors, &full);
    let bytes = std::fs::read(&full).unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let e = load(&truncated);
    assert!(matches!(e, EmbedError::Weights { .. }), "{e}");

    let missing = dir.path().join("missing.safetensors");
    tensors.remove("layer3.1.bn2.running_var");
    save(&tensors, &missing);
    match load(&missing) {
        EmbedError::MissingTensor {
            name, source_name, ..
        } => {
            assert_eq!(name, "layer3.1.bn2.running_var");
            assert!(source_name.contains("missing.safetensors"));
        }
        other => panic!("expected MissingTensor, got {other}"),
    }

    let mut tensors = resnet18_tensors();
    tensors.insert(
        "conv1.weight".into(),
        Tensor::zeros((64, 3, 3, 3), DType::F32, &Device::Cpu).unwrap(),
    );
    let wrong = dir.path().join("wrong.safetensors");
    save(&tensors, &wrong);
    match load(&wrong) {
        EmbedError::TensorShape {
            name,
            expected,
            found,
            ..
        } => {
            assert_eq!(name, "conv1.weight");
            assert_eq!(expected, vec![64, 3, 7, 7]);
            assert_eq!(found, vec![64, 3, 3, 3]);
        }
        other => panic!("expected TensorShape, got {other}"),
    }

    // A ResNet-18 checkpoint given to ResNet-50: a clear mismatch, no panic.
    let e = PretrainedEmbedder::load(Backbone::Resnet50, Some(&file_source(&full)))
        .err()
        .unwrap();
    assert!(
        matches!(
            e,
            EmbedError::MissingTensor { .. } | EmbedError::TensorShape { .. }
        ),
        "{e}"
    );

    let e = PretrainedEmbedder::load(
        Backbone::Resnet18,
        Some(&file_source(&dir.path().join("nope.safetensors"))),
    )
    .err()
    .unwrap();
    assert!(matches!(e, EmbedError::Io { .. }), "{e}");
}

#[test]
fn wrong_input_sizes_are_errors() {
    let e = PretrainedEmbedder::load(
        Backbone::Dinov2Small,
        Some(&WeightsSource::Synthetic { seed: 1 }),
    )
    .unwrap();
    let err = e.embed_batch(&[vec![0.0; 10]]).unwrap_err();
    assert!(matches!(err, EmbedError::Input(_)), "{err}");
    assert!(e.embed_batch(&[]).unwrap().is_empty());
}

fn tiny_data(cfg: &AutoencoderConfig, n: usize) -> Vec<f32> {
    imgsim_embed::synthetic::values(1, "pixels", n * cfg.transform().len(), 0.0, 1.0)
}

#[test]
fn autoencoder_trains_saves_resumes_and_embeds() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AutoencoderConfig {
        widths: vec![4, 8],
        ..AutoencoderConfig::grey28(8)
    };
    let px = tiny_data(&cfg, 64);
    let data = TrainData {
        pixels: &px,
        len: 784,
    };
    let opts = TrainOptions {
        batch_size: 16,
        noise_std: 0.1,
        ..Default::default()
    };
    let mut t = Trainer::new(&cfg, &opts, "test").unwrap();
    let e1 = t.run_epoch(data, &mut |_| {}).unwrap();
    let e2 = t.run_epoch(data, &mut |_| {}).unwrap();
    assert!(
        e2.loss < e1.loss,
        "loss falls: {} then {}",
        e1.loss,
        e2.loss
    );
    t.save(dir.path()).unwrap();

    // Same seed, same data: the same first epoch.
    let mut again = Trainer::new(&cfg, &opts, "test").unwrap();
    assert_eq!(again.run_epoch(data, &mut |_| {}).unwrap().loss, e1.loss);

    let mut resumed = Trainer::resume(dir.path(), &opts).unwrap();
    assert_eq!(resumed.epochs_done(), 2);
    let e3 = resumed.run_epoch(data, &mut |_| {}).unwrap();
    assert_eq!(e3.epoch, 3);

    let emb = AutoencoderEmbedder::load(dir.path()).unwrap();
    assert_eq!(emb.dim(), 8);
    let v = emb
        .embed_batch(&[px[..784].to_vec(), px[784..1568].to_vec()])
        .unwrap();
    assert_eq!((v.len(), v[0].len()), (2, 8));
    let again = AutoencoderEmbedder::load(&dir.path().join("model.safetensors")).unwrap();
    assert_eq!(again.embed_batch(&[px[..784].to_vec()]).unwrap()[0], v[0]);
    let img = imgsim_embed::autoencoder::reconstruction_grid(emb.model(), &[px[..784].to_vec()], 2)
        .unwrap();
    assert_eq!(img.height(), 2 * (56 + 2) + 2);
}

#[test]
fn broken_checkpoints_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = AutoencoderConfig {
        widths: vec![4, 8],
        ..AutoencoderConfig::grey28(8)
    };
    let t = Trainer::new(&cfg, &TrainOptions::default(), "test").unwrap();
    t.save(dir.path()).unwrap();
    let ck = |p: &Path| match AutoencoderEmbedder::load(p) {
        Err(EmbedError::Checkpoint { path, reason }) => (path, reason),
        Err(other) => panic!("expected a checkpoint error, got {other}"),
        Ok(_) => panic!("expected a checkpoint error"),
    };
    let cfg_path = dir.path().join(checkpoint::CONFIG_FILE);
    let good = std::fs::read_to_string(&cfg_path).unwrap();

    // Another size in the config than in the weights.
    std::fs::write(&cfg_path, good.replace("\"dim\": 8", "\"dim\": 16")).unwrap();
    let (p, reason) = ck(dir.path());
    assert!(
        p.ends_with("model.safetensors") && reason.contains("does not fit"),
        "{reason}"
    );

    // Another architecture.
    std::fs::write(&cfg_path, good.replace("conv-autoencoder-v1", "vae-v9")).unwrap();
    let (p, reason) = ck(dir.path());
    assert!(
        p.ends_with("config.json") && reason.contains("vae-v9"),
        "{reason}"
    );

    // Damaged JSON, then none.
    std::fs::write(&cfg_path, &good[..good.len() / 2]).unwrap();
    assert!(ck(dir.path())
        .1
        .contains("not an imgsim autoencoder config"));
    std::fs::remove_file(&cfg_path).unwrap();
    assert!(ck(dir.path()).1.contains("cannot read"));

    // Weights truncated or of a backbone.
    std::fs::write(&cfg_path, &good).unwrap();
    let w = dir.path().join(checkpoint::WEIGHTS_FILE);
    let bytes = std::fs::read(&w).unwrap();
    std::fs::write(&w, &bytes[..bytes.len() - 10]).unwrap();
    assert!(ck(dir.path()).1.contains("safetensors"));
    save(&resnet18_tensors(), &w);
    assert!(ck(dir.path()).1.contains("does not fit"));

    // Training data of the wrong size.
    let mut t = Trainer::new(&cfg, &TrainOptions::default(), "test").unwrap();
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
}

/// What tells two checkpoints apart: size, training record, weights.
fn fingerprint(dir: &Path) -> (usize, String, String) {
    let ck = checkpoint::load(dir).unwrap();
    (ck.config.dim, ck.training.dataset, ck.digest)
}

#[test]
fn an_interrupted_checkpoint_save_leaves_a_whole_checkpoint() {
    let small = AutoencoderConfig {
        widths: vec![4, 8],
        ..AutoencoderConfig::grey28(8)
    };
    let large = AutoencoderConfig {
        dim: 16,
        ..small.clone()
    };
    let seeded = |seed| TrainOptions {
        seed,
        ..Default::default()
    };
    let old = Trainer::new(&small, &seeded(1), "old").unwrap();
    let new = Trainer::new(&large, &seeded(2), "new").unwrap();
    let whole = |t: &Trainer| {
        let d = tempfile::tempdir().unwrap();
        t.save(d.path()).unwrap();
        fingerprint(d.path())
    };
    let (old_ck, new_ck) = (whole(&old), whole(&new));
    assert_ne!(old_ck, new_ck);

    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join(checkpoint::WEIGHTS_FILE);
    let fs = FaultyFs::new();
    let mut faults = 0;
    // Every operation of the save fails once (EIO), then from each
    // operation on everything fails (a disk that filled up: ENOSPC).
    for (errno, sticky, kind) in [
        (5, false, ErrorKind::Internal),
        (28, true, ErrorKind::StorageFull),
    ] {
        for n in 0.. {
            old.save(dir.path()).unwrap();
            fs.fail(None, n, errno, sticky);
            let result = new.save_with(&fs, dir.path());
            if !fs.tripped() {
                result.unwrap();
                assert_eq!(fingerprint(dir.path()), new_ck);
                assert!(n >= 6, "a save is at least two writes of three steps");
                break;
            }
            faults += 1;
            let err = result.unwrap_err();
            assert!(matches!(err, EmbedError::Write { .. }), "{err}");
            assert_eq!(err.kind(), kind, "{err}");
            let (op, path) = fs.ops().last().cloned().unwrap();
            let got = fingerprint(dir.path());
            // Until the new weights are renamed into place, the previous
            // checkpoint; from then on, the new one. Never a mix.
            let committed = !(path == weights && matches!(op, Op::Write | Op::Rename));
            let expected = if committed { &new_ck } else { &old_ck };
            assert_eq!(&got, expected, "fault {n} in {op:?} of {}", path.display());
            assert_eq!(
                checkpoint::read_config(dir.path())
                    .unwrap()
                    .training
                    .dataset,
                got.1
            );
            assert_eq!(
                Trainer::resume(dir.path(), &seeded(3))
                    .unwrap()
                    .epochs_done(),
                0
            );
        }
    }
    assert!(faults >= 12, "{faults} faults injected");
}

#[test]
fn checkpoints_saved_without_the_weights_digest_still_load() {
    // As written before the weights carried their config: plain
    // safetensors and a config.json without the digest.
    let dir = tempfile::tempdir().unwrap();
    let cfg = AutoencoderConfig {
        widths: vec![4, 8],
        ..AutoencoderConfig::grey28(8)
    };
    Trainer::new(&cfg, &TrainOptions::default(), "legacy")
        .unwrap()
        .save(dir.path())
        .unwrap();
    let before = fingerprint(dir.path());
    let w = dir.path().join(checkpoint::WEIGHTS_FILE);
    let tensors = candle_core::safetensors::load(&w, &Device::Cpu).unwrap();
    save(&tensors, &w);
    let c = dir.path().join(checkpoint::CONFIG_FILE);
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&c).unwrap()).unwrap();
    assert!(json
        .as_object_mut()
        .unwrap()
        .remove(checkpoint::WEIGHTS_DIGEST_KEY)
        .is_some());
    std::fs::write(&c, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let after = fingerprint(dir.path());
    assert_eq!((after.0, &after.1), (before.0, &before.1));
    assert_ne!(after.2, before.2, "the weights file was rewritten");
}

#[test]
fn weights_sources_parse_and_describe() {
    let s = WeightsSource::parse("hf:timm/resnet50.tv_in1k:model.safetensors").unwrap();
    assert_eq!(s.describe(), "hf:timm/resnet50.tv_in1k:model.safetensors");
    assert!(WeightsSource::parse("hf:").is_err());
    assert_eq!(Backbone::parse("resnet50").unwrap(), Backbone::Resnet50);
    assert!(Backbone::parse("vgg16")
        .unwrap_err()
        .to_string()
        .contains("resnet18"));
}

/// An image's vector is bit for bit the same whatever batch it is embedded
/// in: the convolutions multiply groups of images at once, and a query
/// embedded alone must find its stored vector at distance 0. Five images
/// make full and partial groups in every layer.
#[test]
fn every_image_gets_the_same_vector_in_any_batch() {
    let images: Vec<Vec<f32>> = (0..5)
        .map(|i| imgsim_embed::synthetic::values(20 + i, "img", 3 * 224 * 224, -1.0, 1.0))
        .collect();
    for backbone in [Backbone::Resnet18, Backbone::Mobilenetv4Small] {
        let e = PretrainedEmbedder::load(backbone, Some(&WeightsSource::Synthetic { seed: 2 }))
            .unwrap();
        let together = e.embed_batch(&images).unwrap();
        for (i, img) in images.iter().enumerate() {
            let alone = e.embed_batch(std::slice::from_ref(img)).unwrap();
            assert_eq!(
                alone[0], together[i],
                "{backbone:?}: image {i} alone differs"
            );
        }
        let pair = e.embed_batch(&images[3..5]).unwrap();
        assert_eq!(pair, together[3..5], "{backbone:?}: the last two as a pair");
    }
}

/// Regression (found by the service's crash test): embeddings run
/// concurrently on one rayon pool panicked with "RefCell already borrowed"
/// when a thread waiting inside a matrix product stole another request's
/// convolution, which wanted the same thread-local scratch.
#[test]
fn regression_concurrent_embeds_on_one_rayon_pool_do_not_panic() {
    let e = std::sync::Arc::new(
        PretrainedEmbedder::load(
            Backbone::Mobilenetv4Small,
            Some(&WeightsSource::Synthetic { seed: 1 }),
        )
        .unwrap(),
    );
    let alone = e.embed_batch(&[input()]).unwrap();
    // As the service does: independent requests spawned on one pool.
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    for _ in 0..32 {
        let (e, tx) = (e.clone(), tx.clone());
        pool.spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                e.embed_batch(&[input()]).unwrap()
            }));
            tx.send(r).unwrap();
        });
    }
    drop(tx);
    let mut panics = 0;
    for r in rx {
        match r {
            Ok(v) => assert_eq!(v, alone, "the same input, the same vector"),
            Err(_) => panics += 1,
        }
    }
    assert_eq!(panics, 0, "{panics} of 32 concurrent embeddings panicked");
}
