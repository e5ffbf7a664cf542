//! The API's request and response types, shared by the handlers and the
//! OpenAPI document, with their limits and the conversions from the
//! pipeline's answers.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// k when a search does not say.
pub const DEFAULT_K: usize = 10;
/// Largest ef a search may ask for (the CLI's limit too).
pub use imgsim_pipeline::MAX_EF;
/// Largest k a search may ask for (the CLI's limit too).
pub use imgsim_pipeline::MAX_K;
/// The media type of a body of query vectors: little-endian IEEE-754 f32
/// values, one vector of the collection's dimension after the other, no
/// header (`application/octet-stream` stays the raw bytes of an image).
pub const VECTORS_MEDIA_TYPE: &str = "application/x-imgsim-f32le";
/// Largest page of `GET /collections/{c}/images`.
pub const MAX_PAGE: usize = 500;
/// Largest offset of `GET /collections/{c}/images`.
pub const MAX_OFFSET: usize = 1_000_000_000;

/// Query parameters of a search.
#[derive(Debug, Default, Clone, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// Number of results (default 10, at most 1000).
    #[param(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// HNSW candidate list size (default: the ef in use, see stats).
    #[param(minimum = 1, maximum = 100000)]
    pub ef: Option<usize>,
    /// Run exact search instead of HNSW.
    pub exact: Option<bool>,
    /// Run both; return recall@k of the approximate answer and the exact list.
    pub with_recall: Option<bool>,
    /// Words to search for (collections whose embedder has a text tower:
    /// clip-b32); with an image, vector or id, both count.
    pub text: Option<String>,
    /// With an image (vector, id) and text: the text's weight, 0 to 1
    /// (default 0.5).
    #[param(minimum = 0.0, maximum = 1.0)]
    pub text_weight: Option<f32>,
    /// Only items carrying this label (zero-shot tags), filtered inside the
    /// search; recall is measured against exact search with the same filter.
    pub label: Option<String>,
}

impl SearchParams {
    /// The k asked for, or the default.
    pub fn k(&self) -> usize {
        self.k.unwrap_or(DEFAULT_K)
    }

    /// The pipeline's search options; `default_ef` when no ef is given.
    pub fn options(&self, default_ef: usize) -> imgsim_pipeline::search::SearchOptions {
        imgsim_pipeline::search::SearchOptions {
            k: self.k(),
            ef: Some(self.ef.unwrap_or(default_ef)),
            exact_only: self.exact.unwrap_or(false),
            with_recall: self.with_recall.unwrap_or(false),
            label: self.label.clone(),
        }
    }
}

/// A search by vector, by an indexed id or by words (and by words with a
/// vector or an id), as JSON.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchRequest {
    /// The query vector (the collection's dimension).
    pub vector: Option<Vec<f32>>,
    /// Or: the id of an indexed image (it is left out of the results).
    pub id: Option<u64>,
    /// Words (collections embedded with clip-b32), alone or with `vector`/`id`.
    pub text: Option<String>,
    /// With `text` and `vector`/`id`: the text's weight, 0 to 1 (default 0.5).
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub text_weight: Option<f32>,
    /// Only items carrying this label (see `imgsim tag`).
    pub label: Option<String>,
    /// Number of results.
    #[schema(minimum = 1, maximum = 1000)]
    pub k: Option<usize>,
    /// HNSW candidate list size.
    #[schema(minimum = 1, maximum = 100000)]
    pub ef: Option<usize>,
    /// Exact search instead of HNSW.
    pub exact: Option<bool>,
    /// Also exact search, and recall@k.
    pub with_recall: Option<bool>,
}

/// Several searches in one request (`POST /collections/{c}/search/batch`),
/// answered in order.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// The searches, each what `POST /collections/{c}/search` takes as
    /// JSON; the query parameters of the batch request are their defaults.
    pub searches: Vec<SearchRequest>,
}

/// The answers to a batch of searches.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResponse {
    /// One answer per search, in the order of the request.
    pub results: Vec<SearchResponse>,
    /// Total time in the service for the whole batch, milliseconds.
    pub took_ms: f64,
}

/// Query vectors as the raw request body ([`VECTORS_MEDIA_TYPE`]).
#[derive(Debug)]
pub struct VectorBytes(pub Vec<u8>);

impl utoipa::PartialSchema for VectorBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .description(Some(
                "Little-endian IEEE-754 f32 values, no header: the collection's dimension \
                 of them per vector (4 bytes each), finite",
            ))
            .into()
    }
}

impl ToSchema for VectorBytes {}

/// An uploaded image as a multipart form (other fields are not part of it).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImageUpload {
    /// The image file (JPEG, PNG, WebP, GIF, BMP or TIFF).
    #[schema(value_type = String, format = Binary)]
    pub image: Vec<u8>,
}

/// A search form: an image and, optionally, words and a label.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchForm {
    /// The image file (JPEG, PNG, WebP, GIF, BMP or TIFF); may be left out
    /// when `text` is given.
    #[schema(value_type = String, format = Binary)]
    pub image: Option<Vec<u8>>,
    /// Words (clip-b32 collections): with the image, both count.
    pub text: Option<String>,
    /// The text's weight with an image, 0 to 1 (default 0.5).
    pub text_weight: Option<f32>,
    /// Only items carrying this label.
    pub label: Option<String>,
}

/// A label and how many images carry it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelCount {
    /// The label.
    pub label: String,
    /// Images carrying it.
    pub count: usize,
}

/// The labels in use in a collection, most frequent first.
#[derive(Debug, Serialize, ToSchema)]
pub struct LabelList {
    /// The labels.
    pub labels: Vec<LabelCount>,
}

/// Text to embed, as JSON (`POST /embed`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TextInput {
    /// The text (at most 16 KiB; CLIP reads its first 77 tokens).
    pub text: String,
}

/// An image as the raw request body (not empty).
#[derive(Debug)]
pub struct ImageBytes(pub Vec<u8>);

impl utoipa::PartialSchema for ImageBytes {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Binary)))
            .min_length(Some(1))
            .description(Some(
                "The image file's bytes (JPEG, PNG, WebP, GIF, BMP or TIFF)",
            ))
            .into()
    }
}

impl ToSchema for ImageBytes {}

/// One result.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ResultItem {
    /// 1 for the nearest.
    pub rank: usize,
    /// Item id.
    pub id: u64,
    /// Cosine: similarity (higher is closer). L2: distance (lower is closer).
    pub score: f32,
    /// The file path (or upload name) of the item.
    pub path: String,
}

impl From<imgsim_pipeline::Hit> for ResultItem {
    fn from(h: imgsim_pipeline::Hit) -> Self {
        ResultItem {
            rank: h.rank,
            id: h.id,
            score: h.score,
            path: h.path,
        }
    }
}

/// Where the time went, milliseconds.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Timings {
    /// Decoding and preprocessing an uploaded image.
    pub decode_ms: f64,
    /// Running the model.
    pub embed_ms: f64,
    /// The search.
    pub search_ms: f64,
    /// The exact search (with_recall).
    pub exact_ms: f64,
}

impl From<imgsim_pipeline::search::Timings> for Timings {
    fn from(t: imgsim_pipeline::search::Timings) -> Self {
        Timings {
            decode_ms: t.decode_ms,
            embed_ms: t.embed_ms,
            search_ms: t.search_ms,
            exact_ms: t.exact_ms,
        }
    }
}

/// A search answer.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SearchResponse {
    /// Results, nearest first.
    pub results: Vec<ResultItem>,
    /// Total time in the service, milliseconds.
    pub took_ms: f64,
    /// Its parts.
    pub timings: Timings,
    /// The ef used (0 for exact search).
    pub ef: usize,
    /// The exact answer (with_recall).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<Vec<ResultItem>>,
    /// Recall@k of `results` against `exact` (with_recall).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recall_at_k: Option<f64>,
}

impl SearchResponse {
    /// The answer to a search, which took `took_ms` in the service.
    pub fn new(a: imgsim_pipeline::Answer, took_ms: f64) -> SearchResponse {
        SearchResponse {
            results: a.results.into_iter().map(ResultItem::from).collect(),
            took_ms,
            timings: a.timings.into(),
            ef: a.ef,
            exact: a
                .exact
                .map(|e| e.into_iter().map(ResultItem::from).collect()),
            recall_at_k: a.recall_at_k,
        }
    }
}

/// An added image.
#[derive(Debug, Serialize, ToSchema)]
pub struct Added {
    /// Its id.
    pub id: u64,
    /// The name it is listed under.
    pub path: String,
    /// Milliseconds.
    pub took_ms: f64,
    /// True when these bytes were already stored: `id` is the existing
    /// item's and nothing was added (status 200 instead of 201).
    pub existing: bool,
}

/// An item's metadata.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImageInfo {
    /// Id.
    pub id: u64,
    /// File path or upload name.
    pub path: String,
    /// `file` or `upload`.
    pub source: String,
    /// Added, ms since the epoch.
    pub added_unix_ms: u64,
    /// Other attributes (size, blake3, format, ...).
    #[schema(value_type = Object)]
    pub attrs: serde_json::Value,
}

impl ImageInfo {
    /// An item's public metadata: where the server keeps an upload's bytes
    /// is not the client's business.
    pub fn new(id: u64, m: imgsim_index::ItemMeta) -> ImageInfo {
        let mut attrs = serde_json::to_value(&m.attrs).unwrap_or_default();
        if let Some(o) = attrs.as_object_mut() {
            o.remove(imgsim_pipeline::uploads::ATTR_FILE);
        }
        ImageInfo {
            id,
            path: m.external_id,
            source: m.source,
            added_unix_ms: m.added_unix_ms,
            attrs,
        }
    }
}

/// Paging through a collection.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    /// Items to skip (by ascending id).
    #[param(minimum = 0, maximum = 1000000000)]
    pub offset: Option<usize>,
    /// Items to return (default 50, at most 500).
    #[param(minimum = 0, maximum = 500)]
    pub limit: Option<usize>,
}

/// A page of a collection.
#[derive(Debug, Serialize, ToSchema)]
pub struct ImagePage {
    /// Live items in the collection.
    pub total: usize,
    /// This page.
    pub images: Vec<ImageInfo>,
}

/// A collection of the state, for the responses that list them.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionSummary {
    /// Name.
    pub name: String,
    /// Live items.
    pub count: usize,
    /// Dimension.
    pub dim: usize,
    /// `cosine` (scores are similarities: higher is closer) or `l2`
    /// (scores are distances: lower is closer).
    pub metric: String,
    /// Whether it can be searched by words (its embedder has a text tower).
    pub text: bool,
}

/// The collections served.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionList {
    /// Each collection.
    pub collections: Vec<CollectionSummary>,
}

/// The live recall estimate.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecallEstimate {
    /// Mean recall@k of the sampled queries in the window (None before the first).
    pub recall_at_k: Option<f64>,
    /// Samples re-run so far.
    pub samples: u64,
    /// The window size.
    pub window: usize,
    /// The share of searches sampled.
    pub sample_rate: f64,
}

/// A collection's figures.
#[derive(Debug, Serialize, ToSchema)]
pub struct Stats {
    /// Name.
    pub name: String,
    /// Live items.
    pub count: usize,
    /// Dimension.
    pub dim: usize,
    /// `cosine` (scores are similarities: higher is closer) or `l2`
    /// (scores are distances: lower is closer).
    pub metric: String,
    /// The embedder record (None for vector-only collections).
    #[schema(value_type = Object)]
    pub embedder: serde_json::Value,
    /// HNSW parameters.
    #[schema(value_type = Object)]
    pub index: serde_json::Value,
    /// The ef searches use now.
    pub ef: usize,
    /// The recall the ef controller holds, if set.
    pub target_recall: Option<f64>,
    /// The live recall estimate.
    pub recall: RecallEstimate,
    /// Searches served.
    pub searches: u64,
    /// Graph segments.
    pub segments: usize,
    /// Deleted items still in a graph.
    pub tombstones: usize,
    /// Bytes on disk.
    pub disk_bytes: u64,
    /// Heap bytes held by vectors, codes and graphs.
    pub memory_bytes: u64,
    /// `memory_bytes` per stored vector: with `index.quantization` sq8 or
    /// binary, the codes, graph links and ids, not the f32 vectors.
    pub memory_bytes_per_vector: f64,
    /// Bytes of f32 vectors memory-mapped from segment files (quantized
    /// collections), paged in by the kernel for rescoring.
    pub mapped_bytes: u64,
    /// Vectors not yet in a graph (searched exactly until the next seal).
    pub appendable: usize,
    /// The background maintenance (seals and compactions).
    #[schema(value_type = Object)]
    pub maintenance: imgsim_index::MaintenanceReport,
    /// The folder watcher feeding this collection, if any: folders,
    /// queued, indexed, failed, removed, last scan, last error.
    #[schema(value_type = Option<Object>)]
    pub watch: Option<serde_json::Value>,
}

/// Which collection's embedder `/embed` uses.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EmbedParams {
    /// Collection whose embedder to use (default: the default collection).
    pub collection: Option<String>,
}

/// An embedding.
#[derive(Debug, Serialize, ToSchema)]
pub struct Embedding {
    /// The vector.
    pub embedding: Vec<f32>,
    /// Its length.
    pub dim: usize,
    /// The embedder's identity (architecture, weights digest, preprocessing).
    #[schema(value_type = Object)]
    pub embedder: serde_json::Value,
    /// Milliseconds.
    pub took_ms: f64,
}
