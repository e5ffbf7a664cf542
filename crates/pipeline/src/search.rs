//! Queries by example: the one search routine ([`run`]: embed a query
//! image the way the collection was indexed, search, resolve ids to files,
//! measure recall against exact search), used by the CLI and the service
//! alike; and groups of near-duplicates.

use std::path::{Path, PathBuf};
use std::time::Instant;

use imgsim_embed::{decode_rgb, decode_rgb_reduced, Embedder, ImageLimits};
use imgsim_index::{recall_at_k_by_distance, Collection, Metric, Neighbor};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};
use crate::model::EmbedderRecord;

/// Distance tolerance when comparing an answer with exact search: items
/// tied with the exact k-th distance (exact copies) count as found.
pub const RECALL_EPSILON: f32 = 1e-5;

/// One result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hit {
    /// 1 for the nearest.
    pub rank: usize,
    /// Item id.
    pub id: u64,
    /// The file (or the item's external id for non-file items).
    pub path: String,
    /// Cosine collections: cosine similarity (1 = same direction, higher is
    /// closer). L2 collections: Euclidean distance (0 = identical, lower is closer).
    pub score: f32,
}

/// The score users see for an internal distance: similarity for cosine,
/// distance for L2 (as Qdrant reports them).
pub fn score(metric: Metric, distance: f32) -> f32 {
    match metric {
        Metric::Cosine => 1.0 - distance,
        Metric::L2 => distance,
    }
}

/// Resolves neighbours to hits with paths. A neighbour deleted between the
/// search and this lookup (by a concurrent writer) is left out, not an
/// error: the answer is what the collection holds now.
pub fn hits(collection: &Collection, found: &[Neighbor]) -> Result<Vec<Hit>> {
    let metric = collection.spec().metric;
    let mut out = Vec::with_capacity(found.len());
    for n in found {
        let meta = match collection.item(n.id) {
            Ok(m) => m,
            Err(imgsim_index::IndexError::NotFound(_)) => continue,
            Err(e) => return Err(e.into()),
        };
        out.push(Hit {
            rank: out.len() + 1,
            id: n.id,
            path: meta.external_id,
            score: score(metric, n.distance),
        });
    }
    Ok(out)
}

/// Reads, decodes and embeds one image file as the collection's images were.
pub fn embed_file(
    embedder: &dyn Embedder,
    record: &EmbedderRecord,
    path: &Path,
    limits: &ImageLimits,
) -> Result<Vec<f32>> {
    let bytes = imgsim_embed::load::read_limited(path, limits)?;
    embed_bytes(embedder, record, &bytes, path, limits)
}

/// Decodes and embeds image bytes (`name` for messages) as the collection's
/// images were.
pub fn embed_bytes(
    embedder: &dyn Embedder,
    record: &EmbedderRecord,
    bytes: &[u8],
    name: &Path,
    limits: &ImageLimits,
) -> Result<Vec<f32>> {
    embed_bytes_timed(embedder, record, bytes, name, limits).map(|t| t.vector)
}

/// Decodes image bytes as the collection's images were decoded.
fn decode_as_indexed(
    embedder: &dyn Embedder,
    record: &EmbedderRecord,
    bytes: &[u8],
    name: &Path,
    limits: &ImageLimits,
) -> Result<image::RgbImage> {
    Ok(if record.exact_decode {
        decode_rgb(bytes, name, limits)?
    } else {
        decode_rgb_reduced(bytes, name, limits, embedder.preprocessing().resize_shorter)?
    })
}

/// [`embed_bytes`], also rendering the image's thumbnail (a JPEG, see
/// [`crate::thumbnails`]) from the decoded image (None if it could not be
/// encoded).
pub fn embed_bytes_with_thumbnail(
    embedder: &dyn Embedder,
    record: &EmbedderRecord,
    bytes: &[u8],
    name: &Path,
    limits: &ImageLimits,
) -> Result<(Vec<f32>, Option<Vec<u8>>)> {
    let img = decode_as_indexed(embedder, record, bytes, name, limits)?;
    let input = embedder.preprocess(&img)?;
    let vector = embedder
        .embed_batch(&[input])?
        .pop()
        .ok_or_else(|| PipelineError::Invalid("the model returned no vector".into()))?;
    Ok((vector, crate::thumbnails::jpeg_of(&img)))
}

/// An embedding and where its time went.
#[derive(Debug, Clone)]
pub struct TimedEmbedding {
    /// The vector.
    pub vector: Vec<f32>,
    /// Decoding and preprocessing, milliseconds.
    pub decode_ms: f64,
    /// The model, milliseconds.
    pub embed_ms: f64,
}

/// [`embed_bytes`], timing its two parts.
pub fn embed_bytes_timed(
    embedder: &dyn Embedder,
    record: &EmbedderRecord,
    bytes: &[u8],
    name: &Path,
    limits: &ImageLimits,
) -> Result<TimedEmbedding> {
    let t0 = Instant::now();
    let img = decode_as_indexed(embedder, record, bytes, name, limits)?;
    let input = embedder.preprocess(&img)?;
    let t1 = Instant::now();
    let vector = embedder
        .embed_batch(&[input])?
        .pop()
        .ok_or_else(|| PipelineError::Invalid("the model returned no vector".into()))?;
    Ok(TimedEmbedding {
        vector,
        decode_ms: (t1 - t0).as_secs_f64() * 1e3,
        embed_ms: t1.elapsed().as_secs_f64() * 1e3,
    })
}

/// A search filter leaving out one item (a query by id).
#[derive(Debug, Clone, Copy)]
pub struct Except(pub u64);

impl imgsim_index::IdFilter for Except {
    fn allows(&self, id: u64) -> bool {
        id != self.0
    }
}

/// What a search looks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    /// A vector of the collection's dimension.
    Vector(Vec<f32>),
    /// The vector of an indexed item; the item itself is left out of the results.
    Id(u64),
    /// Image bytes (an upload); `name` is used in messages only.
    Image {
        /// The encoded image.
        bytes: Vec<u8>,
        /// Its name (for messages).
        name: String,
    },
    /// An image file, read with the image limits.
    File(PathBuf),
    /// Words, embedded by the collection's text tower (CLIP).
    Text(String),
    /// An image (any of the forms above) and words together: the weighted
    /// sum `(1 − w)·image + w·text` of the two unit vectors.
    ImageText {
        /// The image part: `Image`, `File`, `Id` or `Vector`.
        image: Box<Query>,
        /// The words.
        text: String,
        /// The text's weight `w`, 0 to 1.
        text_weight: f32,
    },
}

impl Query {
    /// True when the query is an image, which needs the collection's embedder.
    pub fn needs_embedder(&self) -> bool {
        match self {
            Query::Vector(_) | Query::Id(_) => false,
            Query::Image { .. } | Query::File(_) | Query::Text(_) | Query::ImageText { .. } => true,
        }
    }
}

/// Default weight of the words in an image-and-text query.
pub const DEFAULT_TEXT_WEIGHT: f32 = 0.5;

/// How to search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchOptions {
    /// Number of results (at least 1).
    pub k: usize,
    /// HNSW candidate list size; `None`: the collection's `ef_search`.
    /// Raised to `k` when smaller.
    pub ef: Option<usize>,
    /// Exact (brute-force) search instead of HNSW.
    pub exact_only: bool,
    /// Also search exactly, and measure recall@k of the answer against it.
    pub with_recall: bool,
    /// Only items carrying this label (see `imgsim tag`), filtered inside
    /// the graph walk; recall is then measured against exact search with
    /// the same filter.
    pub label: Option<String>,
}

impl SearchOptions {
    /// `k` nearest by HNSW with the default ef, without recall.
    pub fn k(k: usize) -> SearchOptions {
        SearchOptions {
            k,
            ef: None,
            exact_only: false,
            with_recall: false,
            label: None,
        }
    }
}

/// What embeds query images the way the collection's images were embedded.
#[derive(Clone, Copy)]
pub struct QueryEmbedder<'a> {
    /// The collection's embedder (verified against its record).
    pub embedder: &'a dyn Embedder,
    /// The collection's embedder record (decode settings).
    pub record: &'a EmbedderRecord,
    /// Limits on files and decoded images.
    pub limits: &'a ImageLimits,
}

impl std::fmt::Debug for QueryEmbedder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueryEmbedder")
            .field("record", self.record)
            .field("limits", self.limits)
            .finish_non_exhaustive()
    }
}

/// Where a search's time went, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Reading, decoding and preprocessing a query image (0 otherwise).
    pub decode_ms: f64,
    /// Running the model on a query image (0 otherwise).
    pub embed_ms: f64,
    /// The search (HNSW, or exact with `exact_only`).
    pub search_ms: f64,
    /// The exact search run for recall (0 without `with_recall`).
    pub exact_ms: f64,
}

/// The answer to a query: results, the exact answer and recall when asked
/// for, timings, and what was searched.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Answer {
    /// Results, nearest first.
    pub results: Vec<Hit>,
    /// Milliseconds in [`run`]: reading and embedding a query image,
    /// searching, the exact search with recall, and resolving paths.
    pub took_ms: f64,
    /// Its parts.
    pub timings: Timings,
    /// The ef used (0 for exact search).
    pub ef: usize,
    /// Exact results, when recall was asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<Vec<Hit>>,
    /// Recall@k of `results` against `exact` (ties at the k-th distance count).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
    /// The vector searched (for a live recall estimate, which re-runs it exactly).
    #[serde(skip)]
    pub vector: Vec<f32>,
    /// The neighbours found, as distances (what `results` was made from).
    #[serde(skip)]
    pub neighbors: Vec<Neighbor>,
    /// The item left out of the results (a query by id).
    #[serde(skip)]
    pub excluded: Option<u64>,
}

/// Runs one query: embeds it if it is an image (`embedder` is needed
/// then), searches `k` nearest (HNSW with `ef`, or exactly), and with
/// `with_recall` also exactly, giving recall@k. A query by id leaves that
/// item out. The one search routine of imgsim: the CLI's `query` and the
/// service's search both call it.
pub fn run(
    collection: &Collection,
    embedder: Option<&QueryEmbedder<'_>>,
    query: Query,
    options: &SearchOptions,
) -> Result<Answer> {
    let started = Instant::now();
    let k = options.k;
    if k == 0 {
        return Err(PipelineError::Invalid("k must be at least 1".into()));
    }
    let mut timings = Timings::default();
    let (vector, excluded) = query_vector(collection, embedder, query, &mut timings)?;
    let label = match &options.label {
        Some(l) => {
            imgsim_index::check_label(l)?;
            Some(collection.ids_with_label(l)?)
        }
        None => None,
    };
    let only = Only {
        except: excluded,
        label,
    };
    let filter = (only.except.is_some() || only.label.is_some())
        .then_some(&only as &dyn imgsim_index::IdFilter);
    let ef = options
        .ef
        .unwrap_or(collection.spec().params.ef_search)
        .max(k);
    let t = Instant::now();
    let found = if options.exact_only {
        collection.search_exact(&vector, k, filter)?
    } else {
        collection.search(&vector, k, Some(ef), filter)?
    };
    timings.search_ms = t.elapsed().as_secs_f64() * 1e3;
    let results = hits(collection, &found)?;
    let (exact, recall_at_k) = match (options.with_recall, options.exact_only) {
        (false, _) => (None, None),
        // The answer is the exact one.
        (true, true) => (Some(results.clone()), Some(1.0)),
        (true, false) => {
            let t = Instant::now();
            let truth = collection.search_exact(&vector, k, filter)?;
            timings.exact_ms = t.elapsed().as_secs_f64() * 1e3;
            let r = recall_at_k_by_distance(&found, &truth, k, RECALL_EPSILON);
            (Some(hits(collection, &truth)?), Some(r))
        }
    };
    Ok(Answer {
        results,
        took_ms: started.elapsed().as_secs_f64() * 1e3,
        timings,
        ef: if options.exact_only { 0 } else { ef },
        exact,
        recall_at_k,
        vector,
        neighbors: found,
        excluded,
    })
}

/// The embedder an image query needs, or why there is none.
/// What a search filters by: an item left out (a query by id), a label.
struct Only {
    except: Option<u64>,
    label: Option<std::sync::Arc<std::collections::HashSet<u64>>>,
}

impl imgsim_index::IdFilter for Only {
    fn allows(&self, id: u64) -> bool {
        self.except != Some(id) && self.label.as_ref().is_none_or(|s| s.contains(&id))
    }
}

/// The vector a query stands for (embedding it when needed, timing that),
/// and the item to leave out of the results.
fn query_vector(
    collection: &Collection,
    embedder: Option<&QueryEmbedder<'_>>,
    query: Query,
    timings: &mut Timings,
) -> Result<(Vec<f32>, Option<u64>)> {
    Ok(match query {
        Query::Vector(v) => (v, None),
        Query::Id(id) => match collection.vector(id) {
            Ok(v) => (v, Some(id)),
            Err(imgsim_index::IndexError::NotFound(_)) => {
                return Err(PipelineError::NotFound(format!("with id {id}")))
            }
            Err(e) => return Err(e.into()),
        },
        Query::Image { bytes, name } => {
            let e = query_embedder(embedder)?;
            let t = embed_bytes_timed(e.embedder, e.record, &bytes, Path::new(&name), e.limits)?;
            timings.decode_ms += t.decode_ms;
            timings.embed_ms += t.embed_ms;
            (t.vector, None)
        }
        Query::File(path) => {
            let e = query_embedder(embedder)?;
            let t0 = Instant::now();
            let bytes = imgsim_embed::load::read_limited(&path, e.limits)?;
            let read_ms = t0.elapsed().as_secs_f64() * 1e3;
            let t = embed_bytes_timed(e.embedder, e.record, &bytes, &path, e.limits)?;
            timings.decode_ms += read_ms + t.decode_ms;
            timings.embed_ms += t.embed_ms;
            (t.vector, None)
        }
        Query::Text(text) => {
            let e = query_embedder(embedder)?;
            let t0 = Instant::now();
            let v = embed_text(e, &text)?;
            timings.embed_ms += t0.elapsed().as_secs_f64() * 1e3;
            (v, None)
        }
        Query::ImageText {
            image,
            text,
            text_weight,
        } => {
            if !(0.0..=1.0).contains(&text_weight) {
                return Err(PipelineError::Invalid(format!(
                    "the text weight must be between 0 and 1, not {text_weight}"
                )));
            }
            if matches!(*image, Query::Text(_) | Query::ImageText { .. }) {
                return Err(PipelineError::Invalid(
                    "an image-and-text query needs an image, an id or a vector as its image part"
                        .into(),
                ));
            }
            let e = query_embedder(embedder)?;
            let t0 = Instant::now();
            let words = embed_text(e, &text)?;
            timings.embed_ms += t0.elapsed().as_secs_f64() * 1e3;
            let (mut picture, excluded) = query_vector(collection, embedder, *image, timings)?;
            if picture.len() != words.len() {
                return Err(PipelineError::Invalid(format!(
                    "the image vector has {} values, the text vector {}",
                    picture.len(),
                    words.len()
                )));
            }
            unit(&mut picture);
            let mixed = picture
                .iter()
                .zip(&words)
                .map(|(p, w)| (1.0 - text_weight) * p + text_weight * w)
                .collect();
            (mixed, excluded)
        }
    })
}

/// Scales `v` to unit length (left alone when zero).
fn unit(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 && n.is_finite() {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

/// The unit vector of `text` by the collection's text tower, or an error
/// saying the collection's embedder has none and what to do.
pub fn embed_text(e: &QueryEmbedder<'_>, text: &str) -> Result<Vec<f32>> {
    if text.trim().is_empty() {
        return Err(PipelineError::Invalid(
            "the text to search for is empty".into(),
        ));
    }
    if !e.embedder.has_text() {
        return Err(PipelineError::Invalid(format!(
            "this collection was indexed with {}, which has no text tower: search by words \
             needs CLIP. Index the photos into a new collection with \
             `imgsim index DIR --backbone clip-b32 --collection NAME`",
            e.record.spec.describe()
        )));
    }
    Ok(e.embedder.embed_texts(&[text])?.remove(0))
}

fn query_embedder<'a, 'b>(
    embedder: Option<&'a QueryEmbedder<'b>>,
) -> Result<&'a QueryEmbedder<'b>> {
    embedder.ok_or_else(|| {
        PipelineError::Invalid(
            "the collection records no image embedder: search it by vector or id".into(),
        )
    })
}

/// A group of near-duplicate images.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DupGroup {
    /// Members, by ascending id.
    pub items: Vec<DupMember>,
}

/// One member of a group.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DupMember {
    /// Item id.
    pub id: u64,
    /// Its file.
    pub path: String,
    /// Its score against the group's first member.
    pub score: f32,
}

/// The default threshold for `metric`: cosine similarity 0.95; for L2 a
/// tenth of the median nearest-neighbour distance in the collection (L2
/// scales depend on the model).
pub fn default_dup_threshold(collection: &Collection, ef: Option<usize>) -> Result<f32> {
    if collection.spec().metric == Metric::Cosine {
        return Ok(0.95);
    }
    let ids = collection.ids();
    let mut nn: Vec<f32> = ids
        .par_iter()
        .filter_map(|&id| {
            let v = collection.vector(id).ok()?;
            let found = collection.search(&v, 2, ef, None).ok()?;
            found.iter().find(|n| n.id != id).map(|n| n.distance)
        })
        .filter(|d| *d > 0.0)
        .collect();
    if nn.is_empty() {
        return Ok(0.0);
    }
    nn.sort_by(f32::total_cmp);
    Ok(nn[nn.len() / 2] * 0.1)
}

/// Groups of items closer than `threshold` (a score: minimum similarity for
/// cosine, maximum distance for L2), found through each item's `neighbours`
/// nearest and joined transitively. Groups are ordered largest first.
pub fn duplicate_groups(
    collection: &Collection,
    threshold: f32,
    neighbours: usize,
    ef: Option<usize>,
) -> Result<Vec<DupGroup>> {
    let metric = collection.spec().metric;
    let close = |d: f32| match metric {
        Metric::Cosine => score(metric, d) >= threshold,
        Metric::L2 => d <= threshold,
    };
    let ids = collection.ids();
    let pairs: Vec<(u64, u64)> = ids
        .par_iter()
        .map(|&id| -> Result<Vec<(u64, u64)>> {
            let v = collection.vector(id)?;
            let found = collection.search(&v, neighbours + 1, ef, None)?;
            Ok(found
                .into_iter()
                .filter(|n| n.id != id && close(n.distance))
                .map(|n| (id.min(n.id), id.max(n.id)))
                .collect())
        })
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
        .collect();
    // Union-find over the ids in pairs.
    let mut parent: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    fn find(p: &mut std::collections::HashMap<u64, u64>, x: u64) -> u64 {
        let mut r = x;
        while let Some(&n) = p.get(&r) {
            if n == r {
                break;
            }
            r = n;
        }
        let mut c = x;
        while c != r {
            let n = p[&c];
            p.insert(c, r);
            c = n;
        }
        r
    }
    for &(a, b) in &pairs {
        parent.entry(a).or_insert(a);
        parent.entry(b).or_insert(b);
        let (ra, rb) = (find(&mut parent, a), find(&mut parent, b));
        if ra != rb {
            parent.insert(ra.max(rb), ra.min(rb));
        }
    }
    let mut groups: std::collections::BTreeMap<u64, Vec<u64>> = Default::default();
    let keys: Vec<u64> = parent.keys().copied().collect();
    for id in keys {
        let r = find(&mut parent, id);
        groups.entry(r).or_default().push(id);
    }
    let mut out = Vec::new();
    for (_, mut members) in groups {
        members.sort_unstable();
        let first = collection.vector(members[0])?;
        let mut items = Vec::new();
        for id in members {
            let v = collection.vector(id)?;
            let d = metric.to_user((metric.kernel())(&first, &v));
            items.push(DupMember {
                id,
                path: collection.item(id)?.external_id,
                score: score(metric, d),
            });
        }
        out.push(DupGroup { items });
    }
    out.sort_by(|a, b| {
        b.items
            .len()
            .cmp(&a.items.len())
            .then(a.items[0].id.cmp(&b.items[0].id))
    });
    Ok(out)
}

#[cfg(test)]
mod tests {
    use imgsim_index::{ItemMeta, NewItem};

    use super::*;

    /// Regression (found by the soak test): a search whose result was
    /// deleted by a concurrent request before its metadata was read
    /// answered 404 for the whole search.
    #[test]
    fn regression_a_result_deleted_after_the_search_is_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::collection_2d(&dir.path().join("c"));
        let ids = c
            .insert(
                (0..4)
                    .map(|i| NewItem {
                        vector: vec![i as f32, 1.0],
                        meta: ItemMeta::new(format!("p{i}"), "test"),
                    })
                    .collect(),
            )
            .unwrap();
        let found = c.search(&[0.0, 1.0], 3, None, None).unwrap();
        assert_eq!(found.len(), 3);
        c.delete(&[ids[1]]).unwrap(); // what a concurrent DELETE does
        let h = hits(&c, &found).unwrap();
        let got: Vec<(usize, u64)> = h.iter().map(|h| (h.rank, h.id)).collect();
        assert_eq!(got, vec![(1, ids[0]), (2, ids[2])]);
    }

    #[test]
    fn one_routine_answers_by_vector_id_and_exactly_with_recall() {
        let dir = tempfile::tempdir().unwrap();
        let c = crate::testing::collection_2d(&dir.path().join("c"));
        let ids = c
            .insert(
                (0..10)
                    .map(|i| NewItem {
                        vector: vec![i as f32, 0.0],
                        meta: ItemMeta::new(format!("p{i}"), "test"),
                    })
                    .collect(),
            )
            .unwrap();
        let opts = SearchOptions {
            with_recall: true,
            ..SearchOptions::k(3)
        };
        let a = run(&c, None, Query::Vector(vec![0.1, 0.0]), &opts).unwrap();
        let got: Vec<&str> = a.results.iter().map(|h| h.path.as_str()).collect();
        assert_eq!(got, ["p0", "p1", "p2"]);
        assert_eq!(a.recall_at_k, Some(1.0));
        assert_eq!(a.exact.as_ref().map(Vec::len), Some(3));
        assert_eq!(
            a.ef,
            c.spec().params.ef_search.max(3),
            "the default ef, reported"
        );
        assert_eq!(
            (a.vector.as_slice(), a.neighbors.len()),
            (&[0.1, 0.0][..], 3)
        );
        assert_eq!(a.excluded, None);
        // By id: the item is left out; an ef under k is raised to k.
        let by_id = SearchOptions {
            ef: Some(1),
            ..SearchOptions::k(2)
        };
        let a = run(&c, None, Query::Id(ids[5]), &by_id).unwrap();
        assert!(a.results.iter().all(|h| h.id != ids[5]));
        assert_eq!(a.results.len(), 2);
        assert_eq!(
            (a.ef, a.excluded, a.exact.is_none()),
            (2, Some(ids[5]), true)
        );
        // Exact only: ef 0, recall 1 by definition.
        let exact = SearchOptions {
            exact_only: true,
            with_recall: true,
            ..SearchOptions::k(1)
        };
        let a = run(&c, None, Query::Vector(vec![9.0, 0.0]), &exact).unwrap();
        assert_eq!(
            (a.ef, a.recall_at_k, a.results[0].path.as_str()),
            (0, Some(1.0), "p9")
        );
        // Errors: an unknown id, an image without an embedder, k = 0.
        let e = run(&c, None, Query::Id(999), &opts).unwrap_err();
        assert_eq!(e.kind(), imgsim_common::ErrorKind::NotFound);
        let image = Query::Image {
            bytes: vec![1, 2, 3],
            name: "q.png".into(),
        };
        assert!(image.needs_embedder());
        let e = run(&c, None, image, &opts).unwrap_err();
        assert_eq!(e.kind(), imgsim_common::ErrorKind::Invalid);
        let e = run(
            &c,
            None,
            Query::Vector(vec![0.0, 0.0]),
            &SearchOptions::k(0),
        )
        .unwrap_err();
        assert_eq!(e.kind(), imgsim_common::ErrorKind::Invalid);
    }
}
