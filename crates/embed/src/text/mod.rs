//! Text into the image space: CLIP's BPE tokenizer ([`ClipTokenizer`]) and
//! text tower, together a [`TextEncoder`] whose vectors are compared with
//! CLIP image vectors by cosine.

mod clean;
mod model;
mod tokenizer;

pub use clean::clean;
pub use tokenizer::{ClipTokenizer, END_OF_TEXT, START_OF_TEXT};

use crate::backbones::clip;
use crate::error::{EmbedError, Result};
use crate::weights::Weights;

use model::TextTower;

/// Longest text accepted, in bytes: CLIP reads 77 tokens, so more than this
/// is never a query; refusing it bounds the tokenizer's work.
pub const MAX_TEXT_BYTES: usize = 16 * 1024;
/// Texts embedded per forward pass.
const BATCH: usize = 32;

/// CLIP's tokenizer and text tower: texts to vectors in the joint space.
pub struct TextEncoder {
    tokenizer: ClipTokenizer,
    tower: TextTower,
}

impl std::fmt::Debug for TextEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextEncoder").finish_non_exhaustive()
    }
}

impl TextEncoder {
    /// Builds the text tower from a full CLIP checkpoint (any layout; see
    /// `backbones::clip`) or synthetic weights.
    pub fn load(weights: &Weights) -> Result<Self> {
        let w = clip::text_weights(weights, model::MODEL)?;
        Ok(TextEncoder {
            tokenizer: ClipTokenizer::new()?,
            tower: TextTower::load(&w)?,
        })
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &ClipTokenizer {
        &self.tokenizer
    }

    /// Raw text features (the projection's output, not normalised), one
    /// per text; texts longer than 77 tokens are truncated as CLIP does.
    pub fn features(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.run(texts, false)
    }

    /// Unit-length text vectors, comparable with CLIP image vectors by cosine.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        self.run(texts, true)
    }

    fn run(&self, texts: &[&str], normalise: bool) -> Result<Vec<Vec<f32>>> {
        let mut out = Vec::with_capacity(texts.len());
        for chunk in texts.chunks(BATCH) {
            let seqs = chunk
                .iter()
                .map(|t| {
                    check_text(t)?;
                    Ok(self.tokenizer.tokenize(t))
                })
                .collect::<Result<Vec<_>>>()?;
            let y = self.tower.forward(&seqs)?;
            out.extend(crate::embedder::rows(model::MODEL, &y, normalise)?);
        }
        Ok(out)
    }

    /// Features of already tokenized sequences (benchmarks, parity tests).
    pub fn features_of_tokens(&self, sequences: &[Vec<u32>]) -> Result<Vec<Vec<f32>>> {
        let y = self.tower.forward(sequences)?;
        crate::embedder::rows(model::MODEL, &y, false)
    }
}

/// Refuses texts too long to be a query.
fn check_text(t: &str) -> Result<()> {
    if t.len() > MAX_TEXT_BYTES {
        return Err(EmbedError::Input(format!(
            "the text is {} bytes long; at most {MAX_TEXT_BYTES} are accepted (CLIP reads only its first 77 tokens)",
            t.len()
        )));
    }
    Ok(())
}
