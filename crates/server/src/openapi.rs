//! The OpenAPI document, generated from the handlers' annotations.

use actix_web::HttpResponse;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes;

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
    info(title = "imgsim", description = "Image similarity search: search by image, vector or id, with recall against exact search."),
    paths(
        routes::search, routes::add_image, routes::delete_image, routes::get_image,
        routes::list_images, routes::thumbnail, routes::collections, routes::stats,
        routes::embed, routes::healthz, routes::readyz, routes::metrics, routes::benchmark
    ),
    components(schemas(
        routes::SearchRequest, routes::ImageUpload, routes::ImageBytes, routes::SearchResponse, routes::ResultItem, routes::Timings,
        routes::Added, routes::ImageInfo, routes::ImagePage, routes::CollectionList,
        routes::Stats, routes::RecallEstimate, routes::Embedding,
        crate::state::CollectionSummary, crate::error::ErrorResponse, crate::error::ErrorDetail
    )),
    modifiers(&ApiKeyScheme)
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
