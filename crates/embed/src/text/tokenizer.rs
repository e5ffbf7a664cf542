//! CLIP's byte-level BPE tokenizer, as open_clip's `SimpleTokenizer`: the
//! text is cleaned ([`super::clean`]), split by CLIP's pattern, each piece's
//! UTF-8 bytes mapped to printable characters, merged by the 48,894 ranked
//! BPE merges, and wrapped in start/end tokens, truncated to 77 tokens.
//!
//! The merges are OpenAI's (`assets/clip/bpe_simple_vocab_16e6.txt.gz`,
//! MIT licence, as bundled with open_clip), compiled into the binary: every
//! CLIP checkpoint of OpenAI's lineage uses this vocabulary, so a weights
//! file alone is enough to search by words.

use std::collections::HashMap;
use std::io::Read;
use std::sync::Mutex;

use regex::Regex;

use crate::backbones::clip::{CONTEXT, VOCAB};
use crate::error::{EmbedError, Result};

/// The start-of-text token id.
pub const START_OF_TEXT: u32 = 49406;
/// The end-of-text token id (also the highest id, where CLIP pools).
pub const END_OF_TEXT: u32 = 49407;

/// The merges, gzipped, with a one-line header.
const MERGES_GZ: &[u8] = include_bytes!("../../assets/clip/bpe_simple_vocab_16e6.txt.gz");
/// Merges used (open_clip reads lines 1 ..= 49152 − 256 − 2).
const MERGES: usize = 49152 - 256 - 2;
/// open_clip's special tokens (the pattern also matches them inside text).
const SPECIALS: [&str; 2] = ["<start_of_text>", "<end_of_text>"];
/// Pieces whose merges are remembered (open_clip caches without bound;
/// this bounds memory for a long-running server).
const CACHE_LIMIT: usize = 100_000;

/// CLIP's tokenizer. Cheap to share; encoding is thread-safe.
pub struct ClipTokenizer {
    /// Byte → its printable stand-in.
    byte_chars: [char; 256],
    /// Vocabulary string → id (later entries win, as in a Python dict).
    encoder: HashMap<String, u32>,
    /// (left id, right id) → (merge rank, merged id).
    merges: HashMap<(u32, u32), (u32, u32)>,
    pattern: Regex,
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("vocab", &self.encoder.len())
            .finish()
    }
}

/// GPT-2's byte → character map: printable Latin-1 bytes stand for
/// themselves, the rest for code points from 256 on.
fn bytes_to_unicode() -> (Vec<u8>, [char; 256]) {
    let mut order: Vec<u8> = (b'!'..=b'~')
        .chain(0xA1..=0xAC)
        .chain(0xAE..=0xFF)
        .collect();
    let mut map = ['\0'; 256];
    for &b in &order {
        map[b as usize] = char::from(b);
    }
    let mut n = 0u32;
    for b in 0..=255u8 {
        if !order.contains(&b) {
            order.push(b);
            map[b as usize] = char::from_u32(256 + n).expect("valid code point");
            n += 1;
        }
    }
    (order, map)
}

impl ClipTokenizer {
    /// The tokenizer with CLIP's bundled vocabulary.
    pub fn new() -> Result<Self> {
        let bad = |reason: String| EmbedError::Weights {
            source_name: "the bundled CLIP vocabulary".into(),
            reason,
        };
        let mut text = String::new();
        flate2::read::GzDecoder::new(MERGES_GZ)
            .read_to_string(&mut text)
            .map_err(|e| bad(e.to_string()))?;
        let merges: Vec<(&str, &str)> = text
            .split('\n')
            .skip(1)
            .take(MERGES)
            .map(|l| {
                let mut it = l.split_whitespace();
                match (it.next(), it.next()) {
                    (Some(a), Some(b)) => Ok((a, b)),
                    _ => Err(bad(format!("malformed merge line `{l}`"))),
                }
            })
            .collect::<Result<_>>()?;
        if merges.len() != MERGES {
            return Err(bad(format!("{} merges, expected {MERGES}", merges.len())));
        }
        let (order, byte_chars) = bytes_to_unicode();
        let mut vocab: Vec<String> = order
            .iter()
            .map(|&b| byte_chars[b as usize].to_string())
            .collect();
        let singles = vocab.clone();
        vocab.extend(singles.iter().map(|s| format!("{s}</w>")));
        vocab.extend(merges.iter().map(|(a, b)| format!("{a}{b}")));
        vocab.extend(SPECIALS.iter().map(|s| s.to_string()));
        if vocab.len() != VOCAB {
            return Err(bad(format!("{} tokens, expected {VOCAB}", vocab.len())));
        }
        let mut encoder = HashMap::with_capacity(vocab.len());
        for (i, v) in vocab.into_iter().enumerate() {
            encoder.insert(v, i as u32);
        }
        let mut merge_map = HashMap::with_capacity(merges.len());
        for (rank, (a, b)) in merges.iter().enumerate() {
            let id = |s: &str| encoder.get(s).copied();
            match (id(a), id(b), id(&format!("{a}{b}"))) {
                (Some(l), Some(r), Some(m)) => {
                    merge_map.entry((l, r)).or_insert((rank as u32, m));
                }
                _ => return Err(bad(format!("merge `{a} {b}` uses unknown tokens"))),
            }
        }
        // open_clip matches its pattern with IGNORECASE on lower-cased text.
        // The same matches without the flag, except where case folding
        // reaches beyond lower case: `ſ` (long s) folds to `s`, and U+0345
        // (combining ypogegrammeni, which folds to `ι`) is matched by
        // neither `\p{L}` nor `[^\s\p{L}\p{N}]` in Python's `regex`, so it
        // is dropped. (Rust's `(?i)` would add U+0345 to `\p{L}`.)
        let pattern = Regex::new(
            r"<[sſ]tart_of_text>|<end_of_text>|'[sſ]|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}\x{345}]+",
        )
        .map_err(|e| bad(e.to_string()))?;
        Ok(ClipTokenizer {
            byte_chars,
            encoder,
            merges: merge_map,
            pattern,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The token ids of `text` (cleaned, without start/end tokens or truncation).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let cleaned = super::clean(text);
        let mut out = Vec::new();
        for m in self.pattern.find_iter(&cleaned) {
            let piece = m.as_str();
            if piece.starts_with('<') && piece.ends_with("_of_text>") {
                out.push(if piece.contains("end") {
                    END_OF_TEXT
                } else {
                    START_OF_TEXT
                });
                continue;
            }
            out.extend(self.bpe(piece));
        }
        out
    }

    /// What CLIP's text tower reads: start token, the text's tokens, end
    /// token; over 77 tokens, cut to 77 with the end token last (as
    /// open_clip's `tokenize`).
    pub fn tokenize(&self, text: &str) -> Vec<u32> {
        let mut ids = Vec::with_capacity(CONTEXT);
        ids.push(START_OF_TEXT);
        ids.extend(self.encode(text));
        ids.push(END_OF_TEXT);
        if ids.len() > CONTEXT {
            ids.truncate(CONTEXT);
            ids[CONTEXT - 1] = END_OF_TEXT;
        }
        ids
    }

    /// Byte-level BPE of one piece of the split text.
    fn bpe(&self, piece: &str) -> Vec<u32> {
        if let Some(v) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(piece)
        {
            return v.clone();
        }
        let chars: Vec<char> = piece.bytes().map(|b| self.byte_chars[b as usize]).collect();
        let last = chars.len() - 1;
        let mut word: Vec<u32> = chars
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let s = if i == last {
                    format!("{c}</w>")
                } else {
                    c.to_string()
                };
                self.encoder[&s]
            })
            .collect();
        while word.len() > 1 {
            let best = word
                .windows(2)
                .filter_map(|w| {
                    self.merges
                        .get(&(w[0], w[1]))
                        .map(|&(rank, _)| (rank, (w[0], w[1])))
                })
                .min();
            let Some((_, (a, b))) = best else { break };
            let merged = self.merges[&(a, b)].1;
            let mut next = Vec::with_capacity(word.len());
            let mut i = 0;
            while i < word.len() {
                if i + 1 < word.len() && word[i] == a && word[i + 1] == b {
                    next.push(merged);
                    i += 2;
                } else {
                    next.push(word[i]);
                    i += 1;
                }
            }
            word = next;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_LIMIT {
            cache.clear();
        }
        cache.insert(piece.to_string(), word.clone());
        word
    }
}
