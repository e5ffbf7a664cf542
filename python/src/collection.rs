//! `imgsim.Collection`: a persistent vector collection (the library's
//! `imgsim_index::Collection`), numpy in and out, the GIL released while
//! it works.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use imgsim_index::{
    recall_at_k, recall_at_k_by_distance, Collection as Inner, CollectionSpec, GraphBuilder,
    HnswParams, ItemMeta, Metric, Neighbor, NewItem, OpenOptions, Quantization,
};
use imgsim_pipeline::search::RECALL_EPSILON;
use imgsim_pipeline::{create_for_embedder, CreateSettings, EmbedderRecord, MAX_EF, MAX_K};
use numpy::{PyArray1, PyArray2, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};
use rayon::prelude::*;

use crate::arrays::{matrix, rows_f32};
use crate::embedder::Embedder;
use crate::errors::{invalid, IntoPy};

/// The id that pads a row of search results when fewer than `k` items
/// were found (`imgsim.NO_ID`, the largest uint64); its distance is `inf`.
pub const NO_ID: u64 = u64::MAX;

/// What a search returns: ids and distances, `n × k`.
type Found<'py> = (Bound<'py, PyArray2<u64>>, Bound<'py, PyArray2<f32>>);

/// What `source` an item added from Python records by default.
const DEFAULT_SOURCE: &str = "python";

/// A persistent collection of vectors: HNSW graphs and metadata on disk,
/// searched approximately or exactly.
///
/// Open one with :meth:`Collection.open` or make one with
/// :meth:`Collection.create`. Only one process may hold a collection open;
/// :meth:`close` (or leaving a ``with`` block) releases it. Every method
/// releases the GIL while it works, so threads can search in parallel.
#[pyclass(module = "imgsim", frozen)]
pub struct Collection {
    /// None once closed. Calls clone the `Arc` and work without the lock.
    inner: RwLock<Option<Arc<Inner>>>,
    /// The options it was opened with (the seal threshold decides how
    /// `add` writes).
    options: OpenOptions,
}

/// Open options from keyword arguments: the library's `OpenOptions`
/// (`[storage]` in the config), missing ones at their defaults, checked.
fn open_options(
    cache_bytes: Option<u64>,
    seal_threshold: Option<usize>,
    compact_tombstone_share: Option<f64>,
    max_segments: Option<usize>,
) -> PyResult<OpenOptions> {
    let d = OpenOptions::default();
    let o = OpenOptions {
        cache_bytes: cache_bytes.unwrap_or(d.cache_bytes),
        seal_threshold: seal_threshold.unwrap_or(d.seal_threshold),
        compact_tombstone_share: compact_tombstone_share.unwrap_or(d.compact_tombstone_share),
        max_segments: max_segments.unwrap_or(d.max_segments),
        deferred_maintenance: false,
    };
    o.validate().py_err()?;
    Ok(o)
}

/// The limits of k and ef that the CLI and the service apply
/// (`imgsim_pipeline::MAX_K`, `MAX_EF`), with the service's words.
fn check_k_ef(k: usize, ef: Option<usize>) -> PyResult<()> {
    if k == 0 || k > MAX_K {
        return Err(invalid(format!("k must be between 1 and {MAX_K}, not {k}")));
    }
    if let Some(ef) = ef.filter(|&ef| ef == 0 || ef > MAX_EF) {
        return Err(invalid(format!(
            "ef must be between 1 and {MAX_EF}, not {ef}"
        )));
    }
    Ok(())
}

/// The rows of `hits` as `k` columns, padded with [`NO_ID`] and `inf`.
fn pad(hits: &[Vec<Neighbor>], k: usize) -> (Vec<u64>, Vec<f32>) {
    let mut ids = vec![NO_ID; hits.len() * k];
    let mut dist = vec![f32::INFINITY; hits.len() * k];
    for (row, found) in hits.iter().enumerate() {
        for (col, n) in found.iter().take(k).enumerate() {
            ids[row * k + col] = n.id;
            dist[row * k + col] = n.distance;
        }
    }
    (ids, dist)
}

/// The library's error for queries of the wrong width (the array is 2-D,
/// so the first row is the first offending one).
fn check_width(c: &Inner, n: usize, width: usize) -> imgsim_index::Result<()> {
    let dim = c.spec().dim;
    if n > 0 && width != dim {
        return Err(imgsim_index::IndexError::WrongDimension {
            index: 0,
            expected: dim,
            got: width,
        });
    }
    Ok(())
}

/// Row `row` of a row-major matrix `width` wide.
fn row_of(data: &[f32], width: usize, row: usize) -> &[f32] {
    &data[row * width..(row + 1) * width]
}

/// Approximate search of the `n` rows of `queries` (row-major, `width`
/// wide), in parallel. A bad query is reported by its row, as the
/// library's batch calls do: the per-query error (which says "vector 0")
/// is made again by the same check with the row's position.
fn search_rows(
    c: &Inner,
    queries: &[f32],
    n: usize,
    width: usize,
    k: usize,
    ef: Option<usize>,
) -> imgsim_index::Result<Vec<Vec<Neighbor>>> {
    if k == 0 {
        return Err(imgsim_index::IndexError::ZeroK);
    }
    check_width(c, n, width)?;
    let metric = c.spec().metric;
    (0..n)
        .into_par_iter()
        .map(|row| {
            let q = row_of(queries, width, row);
            c.search(q, k, ef, None).map_err(|e| match e {
                imgsim_index::IndexError::NonFinite { .. }
                | imgsim_index::IndexError::ZeroVector { .. } => {
                    metric.prepare(&mut q.to_vec(), row).err().unwrap_or(e)
                }
                other => other,
            })
        })
        .collect()
}

/// Exact search of the `n` rows of `queries`, in parallel (the library's
/// batch call, which names a bad query by its row).
fn search_rows_exact(
    c: &Inner,
    queries: &[f32],
    n: usize,
    width: usize,
    k: usize,
) -> imgsim_index::Result<Vec<Vec<Neighbor>>> {
    if k == 0 {
        return Err(imgsim_index::IndexError::ZeroK);
    }
    check_width(c, n, width)?;
    c.search_exact_batch(queries, k)
}

impl Collection {
    fn new(inner: Inner, options: OpenOptions) -> Self {
        Collection {
            inner: RwLock::new(Some(Arc::new(inner))),
            options,
        }
    }

    /// The open collection, or an error once closed.
    fn get(&self) -> PyResult<Arc<Inner>> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(|| invalid("the collection is closed"))
    }
}

#[pymethods]
impl Collection {
    /// Opens the collection in folder ``path`` (made by
    /// :meth:`Collection.create`, ``imgsim index`` or ``imgsim bench
    /// ann``). The keyword options are the config's ``[storage]`` keys.
    ///
    /// Raises :class:`imgsim.NotFoundError` when there is none,
    /// :class:`imgsim.LockedError` when another process holds it.
    #[staticmethod]
    #[pyo3(signature = (path, *, cache_bytes=None, seal_threshold=None, compact_tombstone_share=None, max_segments=None))]
    fn open(
        py: Python<'_>,
        path: PathBuf,
        cache_bytes: Option<u64>,
        seal_threshold: Option<usize>,
        compact_tombstone_share: Option<f64>,
        max_segments: Option<usize>,
    ) -> PyResult<Collection> {
        let options = open_options(
            cache_bytes,
            seal_threshold,
            compact_tombstone_share,
            max_segments,
        )?;
        let inner = py
            .detach(|| imgsim_pipeline::store::open(&path, &options))
            .py_err()?;
        Ok(Collection::new(inner, options))
    }

    /// Creates an empty collection of ``dim``-dimensional vectors in folder
    /// ``path`` compared by ``metric`` (``"cosine"``, the default, or
    /// ``"l2"``), with the HNSW parameters given (``None``: the library's
    /// defaults, M 16, ef_construction 200, ef_search 64, builder
    /// ``"native"``, quantization ``"none"``; ``"sq8"`` or ``"binary"`` walk
    /// the graph on codes and rescore with the full vectors, memory-mapped).
    ///
    /// With ``embedder``, the collection is made for that :class:`Embedder`
    /// (its dim and metric; ``dim`` and ``metric`` may be left out) and
    /// records it, as ``imgsim index`` does: ``imgsim query --image``,
    /// ``imgsim serve``, ``imgsim index`` and :meth:`embedder` then embed
    /// for it. A checkpoint is copied into the collection.
    ///
    /// Raises :class:`imgsim.ConflictError` when a collection is already
    /// there, :class:`imgsim.InvalidError` for a parameter out of range or
    /// a ``dim`` or ``metric`` that is not the embedder's.
    #[staticmethod]
    #[pyo3(signature = (path, dim=None, metric=None, *, embedder=None, m=None, ef_construction=None, ef_search=None, builder=None, quantization=None, cache_bytes=None, seal_threshold=None, compact_tombstone_share=None, max_segments=None))]
    #[allow(clippy::too_many_arguments)]
    fn create(
        py: Python<'_>,
        path: PathBuf,
        dim: Option<usize>,
        metric: Option<&str>,
        embedder: Option<Bound<'_, Embedder>>,
        m: Option<usize>,
        ef_construction: Option<usize>,
        ef_search: Option<usize>,
        builder: Option<&str>,
        quantization: Option<&str>,
        cache_bytes: Option<u64>,
        seal_threshold: Option<usize>,
        compact_tombstone_share: Option<f64>,
        max_segments: Option<usize>,
    ) -> PyResult<Collection> {
        let d = HnswParams::default();
        let params = HnswParams {
            m: m.unwrap_or(d.m),
            ef_construction: ef_construction.unwrap_or(d.ef_construction),
            ef_search: ef_search.unwrap_or(d.ef_search),
            builder: match builder {
                Some(b) => GraphBuilder::parse(b).py_err()?,
                None => d.builder,
            },
            quantization: match quantization {
                Some(q) => Quantization::parse(q).py_err()?,
                None => d.quantization,
            },
        };
        let metric = metric.map(Metric::parse).transpose().py_err()?;
        let options = open_options(
            cache_bytes,
            seal_threshold,
            compact_tombstone_share,
            max_segments,
        )?;
        let o = options.clone();
        let inner = match embedder {
            Some(e) => {
                let e = e.get();
                let (e_dim, e_metric) = e.dim_metric();
                if dim.is_some_and(|d| d != e_dim) || metric.is_some_and(|m| m != e_metric) {
                    return Err(invalid(format!(
                        "the embedder makes {e_dim}-d vectors compared by {e_metric}; \
                         leave dim and metric out, or give those"
                    )));
                }
                let settings = CreateSettings {
                    params,
                    options: o,
                    exact_decode: e.decodes_exactly(),
                    train: Default::default(),
                };
                let choice = e.choice().clone();
                py.detach(|| create_for_embedder(&path, &choice, &settings))
                    .py_err()?
                    .collection
            }
            None => {
                let dim = dim.ok_or_else(|| invalid("create needs dim, or an embedder"))?;
                let spec = CollectionSpec {
                    dim,
                    metric: metric.unwrap_or(Metric::Cosine),
                    params,
                };
                py.detach(|| Inner::create(&path, spec, o)).py_err()?
            }
        };
        Ok(Collection::new(inner, options))
    }

    /// Releases the collection (its files and its lock). Later calls raise
    /// :class:`imgsim.InvalidError`; a search still running finishes first.
    fn close(&self) {
        self.inner.write().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// True once :meth:`close` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close();
        false
    }

    fn __repr__(&self) -> String {
        match self.get() {
            Ok(c) => {
                let spec = c.spec();
                format!(
                    "Collection({:?}, dim={}, metric={:?}, len={})",
                    c.path().display().to_string(),
                    spec.dim,
                    spec.metric.as_str(),
                    c.len()
                )
            }
            Err(_) => "Collection(closed)".to_string(),
        }
    }

    /// Number of live (searchable) items.
    fn __len__(&self) -> PyResult<usize> {
        Ok(self.get()?.len())
    }

    /// Number of live (searchable) items (as ``len(collection)``).
    fn len(&self) -> PyResult<usize> {
        self.__len__()
    }

    /// The collection's folder.
    #[getter]
    fn path(&self) -> PyResult<PathBuf> {
        Ok(self.get()?.path().to_path_buf())
    }

    /// Vector dimension.
    #[getter]
    fn dim(&self) -> PyResult<usize> {
        Ok(self.get()?.spec().dim)
    }

    /// ``"cosine"`` or ``"l2"``.
    #[getter]
    fn metric(&self) -> PyResult<&'static str> {
        Ok(self.get()?.spec().metric.as_str())
    }

    /// The default ef of :meth:`search`.
    #[getter]
    fn ef_search(&self) -> PyResult<usize> {
        Ok(self.get()?.spec().params.ef_search)
    }

    /// Figures about the collection (as ``imgsim info`` reports them): a
    /// dict with count, dim, metric, params, segments, sealed_rows,
    /// appendable_rows, tombstones, disk_bytes, memory_bytes,
    /// memory_bytes_per_vector, mapped_bytes, format_version.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let c = self.get()?;
        let stats = py.detach(|| c.stats());
        json_to_py(py, &serde_json::to_string(&stats).map_err(json_error)?)
    }

    /// Adds vectors (one per row; a 1-D array is one vector) and returns
    /// their ids (uint64), which :meth:`search` returns. The collection
    /// hands out ids itself, in order; ``external_ids`` (strings or numbers,
    /// one per vector) are kept with each item as its own key, and
    /// ``metadata`` (one JSON-serialisable dict per vector, or None) as its
    /// attributes; :meth:`item` reads both back.
    ///
    /// All or nothing: a vector of the wrong dimension, with NaN or an
    /// infinity, or all zeros under cosine, refuses the whole call (the
    /// error names its row) and nothing is written. Durable on return.
    /// A batch of at least ``seal_threshold`` vectors gets its own HNSW
    /// graph at once; smaller ones join the appendable segment (searched
    /// exactly), whose graph is built when it reaches the threshold.
    #[pyo3(signature = (vectors, external_ids=None, metadata=None, *, source=None))]
    fn add<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'py, PyAny>,
        external_ids: Option<&Bound<'py, PyAny>>,
        metadata: Option<&Bound<'py, PyAny>>,
        source: Option<String>,
    ) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let c = self.get()?;
        let rows = rows_f32(vectors, "vectors")?;
        let (n, width) = (rows.shape()[0], rows.shape()[1]);
        let metas = item_metas(
            py,
            n,
            external_ids,
            metadata,
            source.as_deref().unwrap_or(DEFAULT_SOURCE),
        )?;
        let data = rows.as_slice()?;
        let bulk = n >= self.options.seal_threshold && width == c.spec().dim;
        let ids = py
            .detach(|| {
                if bulk {
                    c.bulk_insert(data.to_vec(), &|i| metas[i].clone(), &|_, _, _| {})
                } else {
                    let items = metas
                        .into_iter()
                        .enumerate()
                        .map(|(row, meta)| NewItem {
                            vector: row_of(data, width, row).to_vec(),
                            meta,
                        })
                        .collect();
                    c.insert(items)
                }
            })
            .py_err()?;
        Ok(PyArray1::from_vec(py, ids))
    }

    /// The ``k`` nearest items of each query (one per row; a 1-D array is
    /// one query): ``(ids, distances)``, numpy arrays of shape ``(n, k)``,
    /// uint64 and float32, nearest first. Distances are the metric's:
    /// Euclidean for ``"l2"``, ``1 - cos`` for ``"cosine"``. A row with
    /// fewer than ``k`` hits (a small collection) is padded with
    /// :data:`imgsim.NO_ID` and ``inf``.
    ///
    /// ``ef`` is the HNSW candidate list size (default: the collection's
    /// ``ef_search``; raised to ``k`` when smaller); ``exact=True`` searches
    /// by brute force instead. ``k`` is 1 to 1000 and ``ef`` 1 to 100,000,
    /// as for ``imgsim query`` and the service. Queries run in parallel, without the GIL.
    #[pyo3(signature = (vectors, k=10, ef=None, exact=false))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'py, PyAny>,
        k: usize,
        ef: Option<usize>,
        exact: bool,
    ) -> PyResult<Found<'py>> {
        check_k_ef(k, ef)?;
        let c = self.get()?;
        let rows = rows_f32(vectors, "vectors")?;
        let (n, width) = (rows.shape()[0], rows.shape()[1]);
        let queries = rows.as_slice()?;
        let hits = py
            .detach(|| {
                if exact {
                    search_rows_exact(&c, queries, n, width, k)
                } else {
                    search_rows(&c, queries, n, width, k, ef)
                }
            })
            .py_err()?;
        let (ids, dist) = pad(&hits, k);
        Ok((matrix(py, ids, n, k)?, matrix(py, dist, n, k)?))
    }

    /// Recall@k of approximate search against exact search, per query
    /// (float64, one per row): the share of the exact ``k`` nearest that
    /// :meth:`search` with this ``ef`` finds. With ``ties=True`` (what
    /// ``imgsim query`` and the service report) a hit as close as the exact
    /// k-th (within 1e-5) counts, so exact copies are not punished; with
    /// ``ties=False`` ids are compared (``imgsim bench ann``'s recall@10).
    #[pyo3(signature = (vectors, k=10, ef=None, *, ties=true))]
    fn recall<'py>(
        &self,
        py: Python<'py>,
        vectors: &Bound<'py, PyAny>,
        k: usize,
        ef: Option<usize>,
        ties: bool,
    ) -> PyResult<Bound<'py, PyArray1<f64>>> {
        check_k_ef(k, ef)?;
        let c = self.get()?;
        let rows = rows_f32(vectors, "vectors")?;
        let (n, width) = (rows.shape()[0], rows.shape()[1]);
        let queries = rows.as_slice()?;
        let recalls = py
            .detach(|| -> imgsim_index::Result<Vec<f64>> {
                let found = search_rows(&c, queries, n, width, k, ef)?;
                let truth = search_rows_exact(&c, queries, n, width, k)?;
                Ok(found
                    .iter()
                    .zip(&truth)
                    .map(|(a, e)| {
                        if ties {
                            recall_at_k_by_distance(a, e, k, RECALL_EPSILON)
                        } else {
                            recall_at_k(a, e, k)
                        }
                    })
                    .collect())
            })
            .py_err()?;
        Ok(PyArray1::from_vec(py, recalls))
    }

    /// Deletes items by id; returns how many existed. They leave searches
    /// at once and the graph at the next compaction (run by itself once
    /// the deleted share passes ``compact_tombstone_share``, or by
    /// :meth:`compact`). Durable on return.
    fn delete(&self, py: Python<'_>, ids: Vec<u64>) -> PyResult<usize> {
        let c = self.get()?;
        py.detach(|| c.delete(&ids)).py_err()
    }

    /// Rebuilds every live item into one graph, dropping deleted ones and
    /// merging segments (``imgsim compact``).
    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.get()?;
        py.detach(|| c.compact(&|_, _, _| {})).py_err()
    }

    /// Builds the graph of the appendable segment now instead of at the
    /// seal threshold (a no-op when it is empty).
    fn seal(&self, py: Python<'_>) -> PyResult<()> {
        let c = self.get()?;
        py.detach(|| c.seal(&|_, _, _| {})).py_err()
    }

    /// The ids of the live items, ascending (uint64).
    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray1<u64>>> {
        let c = self.get()?;
        let mut ids = py.detach(|| c.ids());
        ids.sort_unstable();
        Ok(PyArray1::from_vec(py, ids))
    }

    /// The stored vector of item ``id`` (float32; unit length under cosine).
    /// Raises :class:`imgsim.NotFoundError` for an unknown id.
    fn vector<'py>(&self, py: Python<'py>, id: u64) -> PyResult<Bound<'py, PyArray1<f32>>> {
        let c = self.get()?;
        let v = py.detach(|| c.vector(id)).py_err()?;
        Ok(PyArray1::from_vec(py, v))
    }

    /// The metadata of item ``id``: a dict with external_id, source,
    /// added_unix_ms and attrs (the ``metadata`` given to :meth:`add`).
    /// Raises :class:`imgsim.NotFoundError` for an unknown id.
    fn item<'py>(&self, py: Python<'py>, id: u64) -> PyResult<Bound<'py, PyAny>> {
        let c = self.get()?;
        let meta = py.detach(|| c.item(id)).py_err()?;
        let item = json_to_py(py, &serde_json::to_string(&meta).map_err(json_error)?)?;
        // The stored form leaves empty attributes out; a dict always has them.
        let dict = item.cast::<PyDict>()?;
        if !dict.contains("attrs")? {
            dict.set_item("attrs", PyDict::new(py))?;
        }
        Ok(item)
    }

    /// The embedder that indexed this collection (``imgsim index``), loaded
    /// and checked against the one recorded, set to decode images as they
    /// were: query images embedded by it are comparable with the stored
    /// vectors. Raises :class:`imgsim.Error` when the collection records
    /// none (made by :meth:`create` without ``embedder``, or by ``imgsim
    /// bench``).
    fn embedder(&self, py: Python<'_>) -> PyResult<Embedder> {
        let c = self.get()?;
        let dir = c.path().to_path_buf();
        let (e, choice, exact_decode) = py
            .detach(|| -> imgsim_pipeline::Result<_> {
                let record = EmbedderRecord::read(&c)?
                    .ok_or_else(|| imgsim_pipeline::PipelineError::NoEmbedder(dir.clone()))?;
                let choice = record.spec.to_choice(&dir)?;
                Ok((record.load(&dir)?, choice, record.exact_decode))
            })
            .py_err()?;
        Ok(Embedder::from_loaded(e, choice, exact_decode))
    }
}

/// The metadata of `n` new items: `external_ids[i]` as the item's key
/// (empty when absent), `metadata[i]` as its attributes.
fn item_metas(
    py: Python<'_>,
    n: usize,
    external_ids: Option<&Bound<'_, PyAny>>,
    metadata: Option<&Bound<'_, PyAny>>,
    source: &str,
) -> PyResult<Vec<ItemMeta>> {
    let keys: Option<Vec<String>> = match external_ids {
        None => None,
        Some(obj) => {
            let list = PyList::new(py, obj.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
            if list.len() != n {
                return Err(invalid(format!(
                    "{} external ids given for {n} vectors",
                    list.len()
                )));
            }
            Some(
                list.iter()
                    .map(|k| Ok(k.str()?.to_string()))
                    .collect::<PyResult<_>>()?,
            )
        }
    };
    let attrs: Option<Vec<BTreeMap<String, serde_json::Value>>> = match metadata {
        None => None,
        Some(obj) => {
            let json = py.import("json")?;
            let list = PyList::new(py, obj.try_iter()?.collect::<PyResult<Vec<_>>>()?)?;
            if list.len() != n {
                return Err(invalid(format!(
                    "{} metadata entries given for {n} vectors",
                    list.len()
                )));
            }
            list.iter()
                .enumerate()
                .map(|(i, m)| {
                    if m.is_none() {
                        return Ok(BTreeMap::new());
                    }
                    if !m.is_instance_of::<PyDict>() {
                        return Err(invalid(format!(
                            "metadata {i} must be a dict or None, not {}",
                            m.get_type().name()?
                        )));
                    }
                    let text: String = json
                        .call_method1("dumps", (m,))
                        .map_err(|e| invalid(format!("metadata {i} is not JSON: {e}")))?
                        .extract()?;
                    serde_json::from_str(&text)
                        .map_err(|e| invalid(format!("metadata {i} is not JSON: {e}")))
                })
                .collect::<PyResult<_>>()
                .map(Some)?
        }
    };
    Ok((0..n)
        .map(|i| {
            let key = keys.as_ref().map_or_else(String::new, |k| k[i].clone());
            let mut meta = ItemMeta::new(key, source);
            if let Some(a) = &attrs {
                meta.attrs = a[i].clone();
            }
            meta
        })
        .collect())
}

/// A JSON text as Python objects (`json.loads`).
pub fn json_to_py<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

/// A serialisation failure (a bug: the library's types serialise).
pub fn json_error(e: serde_json::Error) -> PyErr {
    crate::errors::exception(imgsim_common::ErrorKind::Internal, e.to_string())
}
