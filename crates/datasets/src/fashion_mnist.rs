//! Fashion-MNIST from Debian's `dataset-fashion-mnist` package.

use std::path::{Path, PathBuf};

use crate::{idx, DatasetError, Dense, Result};

/// Where Debian's package installs the files.
pub const DEFAULT_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// The class names, by label number.
pub const CLASS_NAMES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];

/// The four files, in the order train images, train labels, test images, test labels.
pub const FILES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

/// Fashion-MNIST: 60,000 training and 10,000 test images of 28×28 grey pixels.
#[derive(Debug, Clone)]
pub struct FashionMnist {
    /// Training images, 784-d raw pixels (0..=255) as f32.
    pub train: Dense,
    /// Training labels (0..=9).
    pub train_labels: Vec<u8>,
    /// Test images.
    pub test: Dense,
    /// Test labels.
    pub test_labels: Vec<u8>,
}

fn locate(dir: &Path, name: &str) -> Result<PathBuf> {
    let gz = dir.join(name);
    if gz.exists() {
        return Ok(gz);
    }
    let plain = dir.join(name.trim_end_matches(".gz"));
    if plain.exists() {
        return Ok(plain);
    }
    Err(DatasetError::Missing {
        path: gz,
        hint: "install the Fashion-MNIST data set with `apt-get install dataset-fashion-mnist` \
               (or point --data-path at a folder holding the four IDX files)"
            .into(),
    })
}

impl FashionMnist {
    /// Loads the four files from `dir` (gzip or not).
    pub fn load(dir: &Path) -> Result<FashionMnist> {
        let paths: Vec<PathBuf> = FILES
            .iter()
            .map(|f| locate(dir, f))
            .collect::<Result<_>>()?;
        let train = idx::read_images(&paths[0])?;
        let train_labels = idx::read_labels(&paths[1])?;
        let test = idx::read_images(&paths[2])?;
        let test_labels = idx::read_labels(&paths[3])?;
        if train.rows() != train_labels.len() || test.rows() != test_labels.len() {
            return Err(DatasetError::format(dir, "image and label counts differ"));
        }
        if train.dim != test.dim {
            return Err(DatasetError::format(
                dir,
                "train and test images differ in size",
            ));
        }
        Ok(FashionMnist {
            train,
            train_labels,
            test,
            test_labels,
        })
    }

    /// Loads from [`DEFAULT_DIR`].
    pub fn load_default() -> Result<FashionMnist> {
        Self::load(Path::new(DEFAULT_DIR))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_data_set_names_the_package() {
        let dir = tempfile::tempdir().unwrap();
        let err = FashionMnist::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("dataset-fashion-mnist"), "{err}");
    }

    #[test]
    fn loads_the_installed_data_set_when_present() {
        let dir = Path::new(DEFAULT_DIR);
        if !dir.join(FILES[0]).exists() {
            // CI installs the package; this keeps `cargo test` usable elsewhere.
            eprintln!("skipping: {DEFAULT_DIR} absent");
            return;
        }
        let fm = FashionMnist::load(dir).unwrap();
        assert_eq!((fm.train.rows(), fm.train.dim), (60_000, 784));
        assert_eq!((fm.test.rows(), fm.test.dim), (10_000, 784));
        assert!(fm.train_labels.iter().all(|&l| l < 10));
    }
}
