//! The Hugging Face Hub path offline: nothing cached and HF_HUB_OFFLINE set
//! gives an error that says how to supply the file. (Its own test binary:
//! it sets environment variables.)

use imgsim_embed::{Backbone, EmbedError, PretrainedEmbedder};

#[test]
fn offline_without_cache_says_how_to_supply_weights() {
    let home = tempfile::tempdir().unwrap();
    std::env::set_var("HF_HOME", home.path());
    std::env::set_var("HF_HUB_OFFLINE", "1");
    let err = PretrainedEmbedder::load(Backbone::Resnet50, None)
        .err()
        .unwrap();
    match &err {
        EmbedError::Hub { repo, file, .. } => {
            assert_eq!(repo, "timm/resnet50.tv_in1k");
            assert_eq!(file, "model.safetensors");
        }
        other => panic!("expected a hub error, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains("--weights PATH"), "{msg}");
    assert!(msg.contains("HF_HUB_OFFLINE"), "{msg}");
}
