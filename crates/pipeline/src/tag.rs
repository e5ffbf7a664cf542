//! Zero-shot labels (`imgsim tag`): CLIP's classifier without training.
//! Each label becomes a prompt ("a photo of a {label}"), embedded by the
//! text tower; each image's stored vector is scored against every prompt
//! (cosine × 100, softmaxed over the labels, as CLIP's zero-shot
//! classifier), and its best labels with their probabilities are written
//! into its metadata, where searches filter by them (see
//! `imgsim_index::Label`).

use std::collections::HashMap;
use std::time::Instant;

use imgsim_embed::Embedder;
use imgsim_index::{check_label, Collection, Label};
use serde::{Deserialize, Serialize};

use crate::error::{PipelineError, Result};

/// CLIP's logit scale (the trained value, 100, at which OpenAI's model
/// clamps it): cosine similarities × 100 are the classifier's logits.
pub const LOGIT_SCALE: f32 = 100.0;
/// The default prompt, OpenAI's basic zero-shot template.
pub const DEFAULT_TEMPLATE: &str = "a photo of a {}";
/// Manifest property recording the last tagging (labels, template, time).
pub const TAGS_PROPERTY: &str = "imgsim.tags";
/// Items written per commit.
const CHUNK: usize = 1024;

/// How to tag.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TagOptions {
    /// The labels to choose from (at least two, distinct).
    pub labels: Vec<String>,
    /// The prompt, with `{}` where the label goes.
    pub template: String,
    /// Most labels kept per image.
    pub top: usize,
    /// Least probability for labels after the best one (the best is
    /// always kept).
    pub min_score: f32,
}

impl TagOptions {
    /// Options with the default template, top 3, min score 0.2.
    pub fn new(labels: Vec<String>) -> Self {
        TagOptions {
            labels,
            template: DEFAULT_TEMPLATE.into(),
            top: 3,
            min_score: 0.2,
        }
    }

    /// Checks the options; errors name the culprit.
    pub fn validate(&self) -> Result<()> {
        if self.labels.len() < 2 {
            return Err(PipelineError::Invalid(format!(
                "give at least two labels to choose from (got {}): zero-shot labels are the \
                 best of several, e.g. --labels \"beach,snow,city\"",
                self.labels.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for l in &self.labels {
            check_label(l)?;
            if !seen.insert(l.as_str()) {
                return Err(PipelineError::Invalid(format!(
                    "label `{l}` is given twice"
                )));
            }
        }
        if self.template.matches("{}").count() != 1 {
            return Err(PipelineError::Invalid(format!(
                "the template `{}` must contain `{{}}` exactly once (where the label goes)",
                self.template
            )));
        }
        if self.top == 0 {
            return Err(PipelineError::Invalid("--top must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.min_score) {
            return Err(PipelineError::Invalid(format!(
                "--min-score must be between 0 and 1, not {}",
                self.min_score
            )));
        }
        Ok(())
    }

    /// The prompt for `label`.
    pub fn prompt(&self, label: &str) -> String {
        self.template.replacen("{}", label, 1)
    }
}

/// What a tagging did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TagReport {
    /// Images tagged.
    pub images: usize,
    /// For each label, the images carrying it now (in the order given).
    pub per_label: Vec<(String, usize)>,
    /// Seconds spent.
    pub seconds: f64,
}

/// The labels for one image from its similarities to the prompts: softmax
/// of `LOGIT_SCALE × cosine`; the best label, then others with probability
/// at least `min_score`, at most `top` in all, best first.
pub fn choose(labels: &[String], cosines: &[f32], top: usize, min_score: f32) -> Vec<Label> {
    let logits: Vec<f32> = cosines.iter().map(|c| c * LOGIT_SCALE).collect();
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    let mut scored: Vec<Label> = labels
        .iter()
        .zip(&exp)
        .map(|(l, e)| Label {
            label: l.clone(),
            score: e / sum,
        })
        .collect();
    scored.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.label.cmp(&b.label))
    });
    let mut out = Vec::new();
    for (i, l) in scored.into_iter().enumerate() {
        if i >= top || (i > 0 && l.score < min_score) {
            break;
        }
        out.push(l);
    }
    out
}

/// Tags every image of `collection` (replacing earlier labels) with its
/// best labels among `options.labels`, using `embedder`'s text tower and
/// the stored vectors (no image is read again). Written in commits of
/// 1,024 images; `progress(done, total)` after each. Interrupted, the
/// images done so far keep their new labels; run it again to finish.
pub fn tag(
    collection: &Collection,
    embedder: &dyn Embedder,
    options: &TagOptions,
    progress: &dyn Fn(usize, usize),
) -> Result<TagReport> {
    options.validate()?;
    if !embedder.has_text() {
        return Err(PipelineError::Invalid(format!(
            "this collection was indexed with {}, which has no text tower: zero-shot labels \
             need CLIP. Index the photos into a new collection with \
             `imgsim index DIR --backbone clip-b32 --collection NAME`",
            embedder.name()
        )));
    }
    let started = Instant::now();
    let prompts: Vec<String> = options.labels.iter().map(|l| options.prompt(l)).collect();
    let refs: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let texts = embedder.embed_texts(&refs)?;
    let dim = collection.spec().dim;
    if texts.iter().any(|t| t.len() != dim) {
        return Err(PipelineError::Invalid(format!(
            "the text vectors have {} values, the collection's {dim}",
            texts.first().map_or(0, Vec::len)
        )));
    }
    let items = collection.items()?;
    let total = items.len();
    let mut counts: HashMap<String, usize> = HashMap::new();
    let mut done = 0;
    progress(0, total);
    for chunk in items.chunks(CHUNK) {
        let mut updates = Vec::with_capacity(chunk.len());
        for (id, meta) in chunk {
            let v = match collection.vector(*id) {
                Ok(v) => v,
                // Deleted meanwhile by another writer: nothing to tag.
                Err(imgsim_index::IndexError::NotFound(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let cosines: Vec<f32> = texts
                .iter()
                .map(|t| t.iter().zip(&v).map(|(a, b)| a * b).sum())
                .collect();
            let chosen = choose(&options.labels, &cosines, options.top, options.min_score);
            for l in &chosen {
                *counts.entry(l.label.clone()).or_default() += 1;
            }
            let mut meta = meta.clone();
            meta.set_labels(&chosen);
            updates.push((*id, meta));
        }
        match collection.update_items(&updates) {
            Ok(()) => {}
            // An item deleted between the read and the write: skip this
            // round's stragglers one by one.
            Err(imgsim_index::IndexError::NotFound(_)) => {
                for (id, meta) in &updates {
                    match collection.update_item(*id, meta) {
                        Ok(()) | Err(imgsim_index::IndexError::NotFound(_)) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Err(e) => return Err(e.into()),
        }
        done += chunk.len();
        progress(done, total);
    }
    let record = serde_json::json!({
        "labels": options.labels,
        "template": options.template,
        "top": options.top,
        "min_score": options.min_score,
        "tagged_unix_ms": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
    });
    collection.set_property(TAGS_PROPERTY, &record.to_string())?;
    Ok(TagReport {
        images: done,
        per_label: options
            .labels
            .iter()
            .map(|l| (l.clone(), counts.get(l.as_str()).copied().unwrap_or(0)))
            .collect(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_best_label_is_always_kept_and_others_need_the_min_score() {
        let l = labels(&["beach", "snow", "city"]);
        // 100 × cosine: beach far ahead.
        let c = choose(&l, &[0.30, 0.20, 0.10], 3, 0.2);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].label, "beach");
        assert!(c[0].score > 0.99);
        // Two close: both kept, best first, probabilities sum to ≤ 1.
        let c = choose(&l, &[0.250, 0.251, 0.10], 3, 0.2);
        assert_eq!(
            c.iter().map(|x| x.label.as_str()).collect::<Vec<_>>(),
            ["snow", "beach"]
        );
        assert!(c.iter().map(|x| x.score).sum::<f32>() <= 1.0 + 1e-6);
        // top caps it.
        assert_eq!(choose(&l, &[0.25, 0.25, 0.25], 2, 0.0).len(), 2);
    }

    #[test]
    fn bad_options_are_refused_by_name() {
        let e = TagOptions::new(labels(&["beach"])).validate().unwrap_err();
        assert!(e.to_string().contains("at least two labels"), "{e}");
        let e = TagOptions::new(labels(&["a", "a"])).validate().unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
        let mut o = TagOptions::new(labels(&["a", "b"]));
        o.template = "no slot".into();
        assert!(o.validate().unwrap_err().to_string().contains("{}"));
        assert_eq!(
            TagOptions::new(labels(&["a", "b"])).prompt("dog"),
            "a photo of a dog"
        );
    }
}
