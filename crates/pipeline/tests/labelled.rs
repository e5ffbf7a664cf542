//! Labelled sets from folders and CSV files, and their embedding: what is
//! kept, what is reported, and the errors that name their culprit.

mod common;

use std::path::Path;

use common::{solid, Means};
use imgsim_embed::ImageLimits;
use imgsim_pipeline::{embed_labelled, LabelledSet, PipelineError};

/// `dir/label/name.png` of one colour.
fn image(dir: &Path, label: &str, name: &str, rgb: [u8; 3]) {
    let path = dir.join(label).join(name);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    solid(&path, rgb);
}

#[test]
fn a_folder_of_sub_folders_is_a_labelled_set() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image(d, "red", "a.png", [200, 10, 10]);
    image(d, "red", "deep/b.png", [190, 20, 10]);
    image(d, "green", "c.png", [10, 200, 10]);
    image(d, "green", "d.png", [20, 190, 10]);
    image(d, "green", ".hidden.png", [20, 190, 10]);
    image(d, ".cache", "e.png", [20, 190, 10]);
    std::fs::write(d.join("green/README.txt"), "notes").unwrap();
    std::fs::write(d.join("loose.png"), "not in a label").unwrap();
    let set = LabelledSet::from_folder(d).unwrap();
    assert_eq!(set.labels, ["green", "red"]);
    assert_eq!(set.counts(), [2, 2]);
    let names: Vec<String> = set
        .images
        .iter()
        .map(|i| i.path.strip_prefix(d).unwrap().display().to_string())
        .collect();
    assert_eq!(
        names,
        ["green/c.png", "green/d.png", "red/a.png", "red/deep/b.png"]
    );
    assert_eq!(set.images[2].label, 1);

    let v = embed_labelled(&set, &Means::new(), &ImageLimits::default(), 3, &|_, _| {}).unwrap();
    assert_eq!((v.len(), v.dim, v.vectors.len()), (4, 4, 16));
    assert_eq!(v.labels, [0, 0, 1, 1]);
    assert!(v.failures.is_empty());
    // Row 2 is red/a.png: its mean red is 200/255.
    assert!((v.row(2)[0] - 200.0 / 255.0).abs() < 1e-3, "{:?}", v.row(2));
}

#[test]
fn folder_errors_name_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let e = LabelledSet::from_folder(&d.join("nope")).unwrap_err();
    assert!(
        matches!(e, PipelineError::BadRoot { .. }) && e.to_string().contains("nope"),
        "{e}"
    );
    image(d, "cats", "a.png", [1, 2, 3]);
    let e = LabelledSet::from_folder(d).unwrap_err();
    assert!(e.to_string().contains("one label only: cats"), "{e}");
    assert!(e.is_user_error());
    std::fs::create_dir(d.join("dogs")).unwrap();
    std::fs::write(d.join("dogs/notes.txt"), "no images here").unwrap();
    let e = LabelledSet::from_folder(d).unwrap_err();
    assert!(
        matches!(&e, PipelineError::EmptyLabel { label, .. } if label == "dogs"),
        "{e}"
    );
}

#[test]
fn unreadable_images_are_reported_and_a_label_needs_two() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (label, rgb) in [("a", [200, 0, 0]), ("b", [0, 0, 200])] {
        for i in 0..3 {
            image(d, label, &format!("{i}.png"), rgb);
        }
    }
    // A truncated JPEG: a header, then nothing.
    let mut jpeg = Vec::new();
    image::RgbImage::from_pixel(64, 64, image::Rgb([0, 0, 200]))
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    std::fs::write(d.join("b/cut.jpg"), &jpeg[..jpeg.len() / 2]).unwrap();
    std::fs::write(d.join("b/text.png"), "not an image at all").unwrap();
    let set = LabelledSet::from_folder(d).unwrap();
    assert_eq!(set.counts(), [3, 5]);
    let seen = std::sync::Mutex::new(Vec::new());
    let v = embed_labelled(&set, &Means::new(), &ImageLimits::default(), 4, &|d, t| {
        seen.lock().unwrap().push((d, t))
    })
    .unwrap();
    assert_eq!(v.counts(), [3, 3]);
    let mut failed: Vec<String> = v
        .failures
        .iter()
        .map(|f| f.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    failed.sort();
    assert_eq!(failed, ["cut.jpg", "text.png"], "{:?}", v.failures);
    assert_eq!(*seen.lock().unwrap(), [(4, 8), (8, 8)]);

    // Two of label a's three unreadable: it keeps one, which is too few.
    std::fs::write(d.join("a/0.png"), "broken").unwrap();
    std::fs::write(d.join("a/1.png"), "broken").unwrap();
    let set = LabelledSet::from_folder(d).unwrap();
    let e =
        embed_labelled(&set, &Means::new(), &ImageLimits::default(), 4, &|_, _| {}).unwrap_err();
    assert!(
        matches!(&e, PipelineError::TooFewImages { label, kept: 1, failed: 2 } if label == "a"),
        "{e}"
    );
}

#[test]
fn a_csv_file_lists_paths_and_labels() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    image(d, "imgs", "a.png", [200, 0, 0]);
    image(d, "imgs", "b, c.png", [0, 200, 0]);
    image(d, "imgs", "d.png", [0, 0, 200]);
    let csv = d.join("labels.csv");
    let abs = d.join("imgs/d.png");
    std::fs::write(
        &csv,
        format!(
            "Path,Label\n# a comment\n\nimgs/a.png,warm\n\"imgs/b, c.png\" , cold\n{},cold\n",
            abs.display()
        ),
    )
    .unwrap();
    let set = LabelledSet::from_csv(&csv, None).unwrap();
    assert_eq!(set.labels, ["cold", "warm"]);
    assert_eq!(set.counts(), [2, 1]);
    assert_eq!(set.images[2].path, d.join("imgs/a.png"));

    // Relative to --images when given.
    let csv2 = d.join("rel.csv");
    std::fs::write(&csv2, "a.png,x\nd.png,y\n").unwrap();
    assert_eq!(
        LabelledSet::from_csv(&csv2, Some(&d.join("imgs")))
            .unwrap()
            .len(),
        2
    );
    let e = LabelledSet::from_csv(&csv2, None).unwrap_err();
    assert!(
        matches!(&e, PipelineError::ListedFileMissing { line: 1, .. })
            && e.to_string().contains("rel.csv:1"),
        "{e}"
    );

    for (body, line, needle) in [
        ("imgs/a.png,x\nimgs/d.png\n", 2, "2 fields"),
        ("imgs/a.png,x\n\"imgs/d.png,y\n", 2, "unterminated"),
        ("imgs/a.png,x\nimgs/a.png,y\n", 2, "listed twice"),
        ("imgs/a.png,\n", 1, "empty"),
    ] {
        std::fs::write(&csv2, body).unwrap();
        let e = LabelledSet::from_csv(&csv2, Some(d)).unwrap_err();
        assert!(
            matches!(&e, PipelineError::LabelsLine { line: l, .. } if *l == line)
                && e.to_string().contains(needle),
            "{body:?}: {e}"
        );
    }
    std::fs::write(&csv2, "imgs/a.png,only\nimgs/d.png,only\n").unwrap();
    let e = LabelledSet::from_csv(&csv2, Some(d)).unwrap_err();
    assert!(e.to_string().contains("one label only: only"), "{e}");
}
