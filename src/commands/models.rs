//! `imgsim models`: the pretrained backbones, their sizes and default weights.

use imgsim_embed::{Backbone, WeightsSource};

use crate::output::Table;

/// `imgsim models`: the backbones, their sizes and default weights.
pub fn run() {
    let mut t = Table::new(
        &["backbone", "dim", "input", "default weights"],
        &[false, true, false, false],
    );
    for b in Backbone::ALL {
        let tr = b.transform();
        let w = match b.hub_weights() {
            WeightsSource::Hub { repo, file } => format!("hf:{repo}:{file}"),
            other => other.describe(),
        };
        t.row(vec![
            b.name().into(),
            b.dim().to_string(),
            format!("{}/{}", tr.resize_shorter, tr.crop),
            w,
        ]);
    }
    t.row(vec![
        "autoencoder".into(),
        "D".into(),
        "28 or 64".into(),
        "trained here: imgsim train autoencoder, or imgsim index --train-autoencoder".into(),
    ]);
    t.print();
}
