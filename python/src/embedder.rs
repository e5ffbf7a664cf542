//! `imgsim.Embedder`: images (files or bytes) and texts to vectors with a
//! backbone or a trained checkpoint, decoded and preprocessed exactly as
//! `imgsim embed` does, the GIL released while it works.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use imgsim_embed::{
    decode_rgb, decode_rgb_reduced, load_embedder, load_rgb, load_rgb_reduced, Backbone,
    Embedder as EmbedderTrait, ImageLimits, PretrainedEmbedder, WeightsSource,
};
use imgsim_pipeline::EmbedderChoice;
use numpy::PyArray2;
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use rayon::prelude::*;

use crate::arrays::matrix;
use crate::collection::{json_error, json_to_py};
use crate::errors::{invalid, IntoPy};

/// The backbone `imgsim embed` uses when none is named.
const DEFAULT_BACKBONE: &str = "dinov2-small";

/// Images decoded and preprocessed in parallel, then run through the model
/// together, by default.
const DEFAULT_BATCH: usize = 16;

/// Turns images into vectors: a pretrained backbone, or a checkpoint
/// trained by ``imgsim train autoencoder``.
///
/// ``Embedder(backbone, weights)`` loads a backbone (``imgsim models`` lists
/// them) with ``weights``: a local ``.safetensors`` file,
/// ``"hf:OWNER/REPO[:FILE]"`` (the Hugging Face Hub, cached), or
/// ``"synthetic:SEED"`` (deterministic random weights, for tests); None:
/// the backbone's weights on the Hub. ``exact_decode`` decodes JPEGs at
/// full size unless a call says otherwise (``imgsim index
/// --exact-decode``). Vectors are bit for bit those of ``imgsim embed``
/// with the same arguments.
#[pyclass(module = "imgsim", frozen)]
pub struct Embedder {
    inner: Arc<dyn EmbedderTrait>,
    /// Decode JPEGs at full size by default (a collection indexed so).
    exact_decode: bool,
    limits: ImageLimits,
    /// How it was loaded: what a collection created for it records.
    choice: EmbedderChoice,
}

impl Embedder {
    /// Wraps a loaded embedder; `choice` says how it was loaded.
    pub fn from_loaded(
        e: Box<dyn EmbedderTrait>,
        choice: EmbedderChoice,
        exact_decode: bool,
    ) -> Embedder {
        Embedder {
            inner: Arc::from(e),
            exact_decode,
            limits: ImageLimits::default(),
            choice,
        }
    }

    /// How it was loaded.
    pub fn choice(&self) -> &EmbedderChoice {
        &self.choice
    }

    /// Its dimension and metric, as a collection names them.
    pub fn dim_metric(&self) -> (usize, imgsim_index::Metric) {
        let metric = imgsim_pipeline::store::metric_of(&*self.inner);
        (self.inner.dim(), metric)
    }

    /// Whether JPEGs are decoded at full size by default.
    pub fn decodes_exactly(&self) -> bool {
        self.exact_decode
    }

    /// Embeds `n` images, `batch_size` at a time, with the GIL released:
    /// `load(i, how)` decodes image `i` as `how` says.
    fn embed_each<'py>(
        &self,
        py: Python<'py>,
        n: usize,
        batch_size: usize,
        exact_decode: Option<bool>,
        load: &(dyn Fn(usize, &Decode) -> imgsim_embed::Result<image::RgbImage> + Sync),
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let batch = check_batch(batch_size)?;
        let e = &*self.inner;
        let how = Decode {
            exact: exact_decode.unwrap_or(self.exact_decode),
            limits: &self.limits,
            shorter: e.preprocessing().resize_shorter,
        };
        let data = py
            .detach(|| embed_all(e, n, batch, &|i| load(i, &how)))
            .py_err()?;
        matrix(py, data, n, e.dim())
    }
}

/// How an image is decoded for the model.
struct Decode<'a> {
    /// At full size (otherwise JPEGs at a reduced scale that still covers
    /// the model's input).
    exact: bool,
    limits: &'a ImageLimits,
    /// The model's resize target (its shorter side).
    shorter: u32,
}

/// Embeds `n` images, `batch` at a time: `load(i)` reads, decodes and
/// preprocesses image `i` (in parallel within a batch), then the model
/// runs on the batch. The first failure, in input order, is the error.
fn embed_all(
    e: &dyn EmbedderTrait,
    n: usize,
    batch: usize,
    load: &(dyn Fn(usize) -> imgsim_embed::Result<image::RgbImage> + Sync),
) -> imgsim_embed::Result<Vec<f32>> {
    let mut out = Vec::with_capacity(n * e.dim());
    let mut start = 0;
    while start < n {
        let end = (start + batch).min(n);
        let inputs = (start..end)
            .into_par_iter()
            .map(|i| load(i).and_then(|img| e.preprocess(&img)))
            .collect::<imgsim_embed::Result<Vec<_>>>()?;
        for v in e.embed_batch(&inputs)? {
            out.extend_from_slice(&v);
        }
        start = end;
    }
    Ok(out)
}

#[pymethods]
impl Embedder {
    #[new]
    #[pyo3(signature = (backbone=DEFAULT_BACKBONE, weights=None, *, exact_decode=false))]
    fn new(
        py: Python<'_>,
        backbone: &str,
        weights: Option<&str>,
        exact_decode: bool,
    ) -> PyResult<Embedder> {
        let b = Backbone::parse(backbone).py_err()?;
        let source = weights.map(WeightsSource::parse).transpose().py_err()?;
        let e = py
            .detach(|| PretrainedEmbedder::load(b, source.as_ref()))
            .py_err()?;
        let choice = EmbedderChoice::Backbone {
            backbone: b,
            weights: source,
        };
        Ok(Embedder::from_loaded(Box::new(e), choice, exact_decode))
    }

    /// Loads a checkpoint made by ``imgsim train autoencoder`` (its folder
    /// or its ``.safetensors``; contrastive or reconstruction).
    #[staticmethod]
    #[pyo3(signature = (path, *, exact_decode=false))]
    fn autoencoder(py: Python<'_>, path: PathBuf, exact_decode: bool) -> PyResult<Embedder> {
        let e = py.detach(|| load_embedder(&path)).py_err()?;
        let choice = EmbedderChoice::Autoencoder(path);
        Ok(Embedder::from_loaded(e, choice, exact_decode))
    }

    /// The names of the backbones ``Embedder(backbone=...)`` accepts.
    #[staticmethod]
    fn backbones() -> Vec<&'static str> {
        Backbone::ALL.iter().map(|b| b.name()).collect()
    }

    /// Embedding size.
    #[getter]
    fn dim(&self) -> usize {
        self.inner.dim()
    }

    /// ``"cosine"`` or ``"l2"``: how its vectors are compared (the metric a
    /// collection of them should be created with).
    #[getter]
    fn metric(&self) -> &'static str {
        self.dim_metric().1.as_str()
    }

    /// The architecture's name (``resnet50``, ``contrastive-cnn``, ...).
    #[getter]
    fn name(&self) -> String {
        self.inner.name().to_string()
    }

    /// What identifies it (architecture, weights digest and origin, dim,
    /// metric, preprocessing), as ``imgsim embed --json`` prints it.
    #[getter]
    fn identity<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        // Through a JSON value, as the CLI prints it (f32 fields widened to
        // f64, so that both read back the same numbers).
        let value = serde_json::to_value(self.inner.identity()).map_err(json_error)?;
        json_to_py(py, &value.to_string())
    }

    /// Whether JPEGs are decoded at full size when ``exact_decode`` is not
    /// given (True for the embedder of a collection indexed so).
    #[getter]
    fn exact_decode(&self) -> bool {
        self.exact_decode
    }

    fn __repr__(&self) -> String {
        let id = self.inner.identity();
        format!(
            "Embedder({}, dim={}, weights {} from {})",
            id.architecture, id.dim, id.weights_digest, id.weights_origin
        )
    }

    /// Embeds image files: a float32 array of shape ``(len(paths), dim)``,
    /// row ``i`` the vector of ``paths[i]``. Any format imgsim reads, chosen
    /// by content. Large JPEGs are decoded at a reduced scale (what
    /// ``imgsim embed`` does) unless ``exact_decode``; ``batch_size`` images
    /// are decoded in parallel and run through the model together.
    ///
    /// Raises the error of the first file that fails (it names the file):
    /// :class:`imgsim.NotFoundError`, :class:`imgsim.UnsupportedError`,
    /// :class:`imgsim.UnprocessableError`, :class:`imgsim.TooLargeError`.
    #[pyo3(signature = (paths, *, batch_size=DEFAULT_BATCH, exact_decode=None))]
    fn embed_files<'py>(
        &self,
        py: Python<'py>,
        paths: Vec<PathBuf>,
        batch_size: usize,
        exact_decode: Option<bool>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.embed_each(py, paths.len(), batch_size, exact_decode, &|i, d| {
            if d.exact {
                load_rgb(&paths[i], d.limits)
            } else {
                load_rgb_reduced(&paths[i], d.limits, d.shorter)
            }
        })
    }

    /// Embeds encoded images (the bytes of JPEG, PNG, WebP... files) as
    /// :meth:`embed_files` embeds files: a float32 array ``(len(images),
    /// dim)``. The bytes are read in place, without a copy. Errors name
    /// the image as ``bytes[i]``.
    #[pyo3(signature = (images, *, batch_size=DEFAULT_BATCH, exact_decode=None))]
    fn embed_bytes<'py>(
        &self,
        py: Python<'py>,
        images: Vec<PyBackedBytes>,
        batch_size: usize,
        exact_decode: Option<bool>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        self.embed_each(py, images.len(), batch_size, exact_decode, &|i, d| {
            let name = format!("bytes[{i}]");
            let bytes: &[u8] = &images[i];
            if d.exact {
                decode_rgb(bytes, Path::new(&name), d.limits)
            } else {
                decode_rgb_reduced(bytes, Path::new(&name), d.limits, d.shorter)
            }
        })
    }

    /// Embeds texts into the image space (CLIP's text tower: needs
    /// ``backbone="clip-b32"``): unit vectors, float32 ``(len(texts), dim)``,
    /// comparable with the images' by cosine.
    fn embed_texts<'py>(
        &self,
        py: Python<'py>,
        texts: Vec<String>,
    ) -> PyResult<Bound<'py, PyArray2<f32>>> {
        let e = &*self.inner;
        let rows = py
            .detach(|| {
                let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                e.embed_texts(&refs)
            })
            .py_err()?;
        let data: Vec<f32> = rows.concat();
        matrix(py, data, texts.len(), e.dim())
    }
}

/// `batch_size` checked.
fn check_batch(batch_size: usize) -> PyResult<usize> {
    if batch_size == 0 {
        return Err(invalid("batch_size must be at least 1"));
    }
    Ok(batch_size)
}
