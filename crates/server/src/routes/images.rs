//! `/collections/{collection}/images[/{id}[/thumbnail]]`: browse, read,
//! add (idempotent uploads) and delete images, and their thumbnails,
//! through the pipeline's uploads and thumbnails.

use std::time::Instant;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::api::{Added, ImageInfo, ImagePage, Page, MAX_OFFSET, MAX_PAGE};
use crate::body::read_image;
use crate::error::{ApiError, ErrorResponse};
use crate::offload::offload;
use crate::routes::check_key;
use crate::state::AppState;

/// Add an uploaded image to a collection (needs the API key). Idempotent:
/// bytes already stored answer 200 with the existing id.
#[utoipa::path(
    post,
    path = "/collections/{collection}/images",
    params(("collection" = String, Path, description = "Collection name")),
    request_body(description = "multipart/form-data with field `image`, or the raw image bytes",
        content((crate::api::ImageUpload = "multipart/form-data"), (crate::api::ImageBytes = "application/octet-stream"))),
    responses(
        (status = 201, description = "Added", body = Added),
        (status = 200, description = "These bytes were already stored: the existing id", body = Added),
        (status = 400, description = "Malformed request", body = ErrorResponse),
        (status = 401, description = "Missing or wrong api-key header", body = ErrorResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 408, description = "The body did not arrive in time", body = ErrorResponse),
        (status = 413, description = "Too large", body = ErrorResponse), (status = 415, description = "Unsupported format", body = ErrorResponse),
        (status = 422, description = "Unusable image", body = ErrorResponse),
        (status = 503, description = "Busy", body = ErrorResponse),
        (status = 504, description = "The add did not finish within request_timeout_s (it may still complete: retrying is safe, the same bytes answer with the existing id)", body = ErrorResponse),
        (status = 507, description = "The disk is full: nothing was added", body = ErrorResponse),
    ),
    security(("api_key" = []))
)]
pub async fn add_image(
    state: web::Data<AppState>,
    path: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    check_key(&state, &req)?;
    let served = state.get(&path)?;
    let (bytes, name) = read_image(&state, &req, payload).await?;
    let st = state.clone();
    let added = offload(&state, move || {
        let started = Instant::now();
        let a = served.with_embedder(&st.options.limits, |e| {
            served.uploads.add(&served.collection, e, &bytes, &name)
        })??;
        Ok(Added {
            id: a.id,
            path: a.path,
            took_ms: started.elapsed().as_secs_f64() * 1e3,
            existing: a.existing,
        })
    })
    .await?;
    Ok(if added.existing {
        HttpResponse::Ok().json(added)
    } else {
        HttpResponse::Created().json(added)
    })
}

/// Delete an image from a collection (needs the API key); an upload's
/// stored bytes and any thumbnail go with it.
#[utoipa::path(
    delete,
    path = "/collections/{collection}/images/{id}",
    params(("collection" = String, Path, description = "Collection name"), ("id" = u64, Path, description = "Item id")),
    responses(
        (status = 200, description = "Deleted"),
        (status = 400, description = "Malformed id", body = ErrorResponse),
        (status = 401, description = "Missing or wrong api-key", body = ErrorResponse),
        (status = 404, description = "No such item", body = ErrorResponse),
        (status = 503, description = "Busy", body = ErrorResponse),
        (status = 504, description = "The delete did not finish within request_timeout_s", body = ErrorResponse),
        (status = 507, description = "The disk is full: nothing was deleted", body = ErrorResponse),
    ),
    security(("api_key" = []))
)]
pub async fn delete_image(
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    check_key(&state, &req)?;
    let (c, id) = path.into_inner();
    let served = state.get(&c)?;
    let deleted = offload(&state, move || {
        Ok(served.uploads.delete(&served.collection, id)?)
    })
    .await?;
    if !deleted {
        return Err(ApiError::not_found(format!("no image {id} in `{c}`")));
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "deleted": id })))
}

/// An image's metadata, by id.
#[utoipa::path(
    get,
    path = "/collections/{collection}/images/{id}",
    params(("collection" = String, Path, description = "Collection name"), ("id" = u64, Path, description = "Item id")),
    responses((status = 200, body = ImageInfo), (status = 400, description = "Malformed id", body = ErrorResponse), (status = 404, description = "No such collection or item", body = ErrorResponse))
)]
pub async fn get_image(
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ApiError> {
    let (c, id) = path.into_inner();
    let served = state.get(&c)?;
    let meta = served.collection.item(id)?;
    Ok(HttpResponse::Ok().json(ImageInfo::new(id, meta)))
}

/// Browse a collection, by ascending id.
#[utoipa::path(
    get,
    path = "/collections/{collection}/images",
    params(("collection" = String, Path, description = "Collection name"), Page),
    responses(
        (status = 200, body = ImagePage),
        (status = 400, description = "Bad offset or limit", body = ErrorResponse),
        (status = 404, description = "No such collection", body = ErrorResponse),
        (status = 503, description = "Busy", body = ErrorResponse),
        (status = 504, description = "The listing did not finish within request_timeout_s", body = ErrorResponse),
    )
)]
pub async fn list_images(
    state: web::Data<AppState>,
    path: web::Path<String>,
    page: web::Query<Page>,
) -> Result<HttpResponse, ApiError> {
    let served = state.get(&path)?;
    let offset = page.offset.unwrap_or(0);
    let limit = page.limit.unwrap_or(50);
    if offset > MAX_OFFSET || limit > MAX_PAGE {
        return Err(ApiError::invalid(format!(
            "offset must be at most {MAX_OFFSET} and limit at most {MAX_PAGE}"
        )));
    }
    // The item records are read from sled: on the pool.
    let page = offload(&state, move || {
        let ids = served.collection.ids();
        let images = ids
            .iter()
            .skip(offset)
            .take(limit)
            .filter_map(|&id| Some(ImageInfo::new(id, served.collection.item(id).ok()?)))
            .collect();
        Ok(ImagePage {
            total: ids.len(),
            images,
        })
    })
    .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// A JPEG thumbnail (at most 256 px a side, the image's proportions) of an
/// image, by id; made on the first request and cached.
#[utoipa::path(
    get,
    path = "/collections/{collection}/images/{id}/thumbnail",
    params(("collection" = String, Path, description = "Collection name"), ("id" = u64, Path, description = "Item id")),
    responses(
        (status = 200, description = "image/jpeg", content_type = "image/jpeg"),
        (status = 400, description = "Malformed id", body = ErrorResponse),
        (status = 404, description = "No such item, or its file is gone", body = ErrorResponse),
        (status = 503, description = "Busy", body = ErrorResponse),
        (status = 504, description = "The thumbnail was not made within request_timeout_s", body = ErrorResponse),
    )
)]
pub async fn thumbnail(
    state: web::Data<AppState>,
    path: web::Path<(String, u64)>,
) -> Result<HttpResponse, ApiError> {
    let (c, id) = path.into_inner();
    let served = state.get(&c)?;
    let limits = state.options.limits;
    let bytes = offload(&state, move || {
        Ok(served
            .uploads
            .thumbnails()
            .get(&served.collection, id, &limits)?)
    })
    .await?;
    Ok(HttpResponse::Ok()
        .content_type("image/jpeg")
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(bytes))
}
