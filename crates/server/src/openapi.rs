//! The OpenAPI document, generated from the handlers' annotations.

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api;
use crate::routes::{images, library, search, service};

struct ApiKeyScheme;

impl Modify for ApiKeyScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(c) = openapi.components.as_mut() {
            c.add_security_scheme(
                "api_key",
                SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("api-key"))),
            );
        }
    }
}

/// The API.
#[derive(OpenApi)]
#[openapi(
    info(title = "imgsim", description = "Image similarity search: search by image, vector (JSON or binary f32) or id, one at a time or in batches, with recall against exact search."),
    paths(
        search::search, search::search_batch, images::add_image, images::delete_image, images::get_image,
        images::list_images, images::thumbnail, service::collections, service::stats, service::labels,
        service::embed, service::healthz, service::readyz, service::metrics, service::benchmark,
        library::info, library::check, library::remove, library::compact, library::dups,
        library::tag, library::index
    ),
    components(schemas(
        api::SearchRequest, api::ImageUpload, api::SearchForm, api::TextInput, api::LabelList, api::LabelCount, api::ImageBytes, api::VectorBytes, api::BatchRequest, api::BatchResponse, api::SearchResponse, api::ResultItem, api::Timings,
        api::Added, api::ImageInfo, api::ImagePage, api::CollectionList,
        api::Stats, api::RecallEstimate, api::Embedding,
        api::CollectionSummary, crate::error::ErrorResponse, crate::error::ErrorDetail,
        library::RemoveRequest, library::DupsRequest, library::TagRequest, library::IndexRequest
    )),
    modifiers(&ApiKeyScheme)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
