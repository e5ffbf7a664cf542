//! Turning images into vectors: decoding under limits, the preprocessing
//! each model expects, and (in later work) the embedders themselves.
//!
//! - [`load`]: decode any supported file (JPEG, PNG, WebP, GIF's first frame,
//!   BMP, TIFF) chosen by its content, not its name; apply the EXIF
//!   orientation; convert every colour type to 8-bit RGB; refuse decompression
//!   bombs by their declared size before allocating.
//! - [`transform`]: the torchvision-style transform (resize the shorter side,
//!   centre crop, scale to `[0, 1]`, normalise by mean and std) into a CHW
//!   `f32` tensor.
//!
//! This crate knows images, not indexes: it never sees sled or hnsw_rs.
#![deny(missing_docs)]

pub mod error;
pub mod load;
pub mod transform;

pub use error::{EmbedError, Result};
pub use load::{decode_rgb, load_rgb, ImageLimits};
pub use transform::Transform;
