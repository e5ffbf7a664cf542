//! The text cleaning CLIP's tokenizer applies before BPE, as open_clip's
//! `_clean_lower` does: ftfy's `fix_text`, HTML unescaping (twice),
//! whitespace collapsed, lower case.
//!
//! Of ftfy's fixes, all are reproduced except `fix_encoding` (mojibake
//! repair: guessing that "Ã©" was "é" read in the wrong encoding), which
//! is a statistical model of its own; text that is not mojibake goes
//! through it unchanged. The tables (HTML entities, character widths, C1
//! controls) are generated from CPython and ftfy into
//! `assets/clip/clean_tables.tsv` (see `tools/reference/clip_text_refs.py`).

use std::collections::HashMap;
use std::sync::OnceLock;

use unicode_normalization::UnicodeNormalization;

/// The generated tables.
const TABLES: &str = include_str!("../../assets/clip/clean_tables.tsv");

struct Tables {
    /// ftfy's `HTML_ENTITIES`: `&name;` → text.
    ftfy_entities: HashMap<&'static str, String>,
    /// `html.entities.html5`: name (with or without `;`) → text.
    html5: HashMap<&'static str, String>,
    /// `html._invalid_charrefs`: number → text.
    invalid_charrefs: HashMap<u32, String>,
    /// ftfy's `WIDTH_MAP`.
    width: HashMap<char, String>,
    /// sloppy-windows-1252 for C1 controls.
    c1: HashMap<char, char>,
}

fn chars(hex: &str) -> String {
    hex.split(' ')
        .filter_map(|h| u32::from_str_radix(h, 16).ok().and_then(char::from_u32))
        .collect()
}

fn tables() -> &'static Tables {
    static T: OnceLock<Tables> = OnceLock::new();
    T.get_or_init(|| {
        let mut t = Tables {
            ftfy_entities: HashMap::new(),
            html5: HashMap::new(),
            invalid_charrefs: HashMap::new(),
            width: HashMap::new(),
            c1: HashMap::new(),
        };
        for line in TABLES.lines().filter(|l| !l.starts_with('#')) {
            let mut f = line.splitn(3, '\t');
            let (Some(kind), Some(key), Some(val)) = (f.next(), f.next(), f.next()) else {
                continue;
            };
            let code = || u32::from_str_radix(key, 16).ok();
            match kind {
                "E" => {
                    t.ftfy_entities.insert(key, chars(val));
                }
                "H" => {
                    t.html5.insert(key, chars(val));
                }
                "I" => {
                    if let Some(c) = code() {
                        t.invalid_charrefs.insert(c, chars(val));
                    }
                }
                "W" => {
                    if let Some(c) = code().and_then(char::from_u32) {
                        t.width.insert(c, chars(val));
                    }
                }
                "C" => {
                    if let (Some(c), Some(v)) =
                        (code().and_then(char::from_u32), chars(val).chars().next())
                    {
                        t.c1.insert(c, v);
                    }
                }
                _ => {}
            }
        }
        t
    })
}

/// The text the BPE sees: open_clip's `whitespace_clean(basic_clean(text)).lower()`.
pub fn clean(text: &str) -> String {
    let fixed = fix_text(text);
    let once = html_unescape(&fixed);
    let twice = html_unescape(&once);
    // basic_clean's strip, whitespace_clean's split/join, then lower().
    let joined = twice
        .split(is_py_space)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    joined.to_lowercase()
}

/// Python's `str.isspace`.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// ftfy's `fix_text`, without `fix_encoding`: line by line, each line fixed
/// until nothing changes.
fn fix_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    for segment in text.split_inclusive('\n') {
        // ftfy's "auto": once a segment holds '<', HTML is left alone from
        // there on (the setting sticks for the rest of the text).
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&fix_segment(segment, unescape));
    }
    out
}

fn fix_segment(segment: &str, unescape: bool) -> String {
    let mut text = segment.to_string();
    // ftfy repeats its fixes until the text stops changing; a handful of
    // rounds always suffice (each fix only shortens or normalises).
    for _ in 0..16 {
        let orig = text.clone();
        if unescape {
            text = ftfy_unescape_html(&text);
        }
        text = fix_c1_controls(&text);
        text = fix_latin_ligatures(&text);
        text = fix_character_width(&text);
        text = uncurl_quotes(&text);
        text = fix_line_breaks(&text);
        text = remove_terminal_escapes(&text);
        text = remove_control_chars(&text);
        text = text.nfc().collect();
        if text == orig {
            break;
        }
    }
    text
}

/// Replaces the references in `text`: at each `&`, `matcher` gets the text
/// after it and gives the bytes it consumed there and their replacement, or
/// None to keep the `&` as it is.
fn replace_refs(text: &str, matcher: impl Fn(&str) -> Option<(usize, String)>) -> String {
    if !text.contains('&') {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        match matcher(tail) {
            Some((consumed, replacement)) => {
                out.push_str(&replacement);
                rest = &tail[consumed..];
            }
            None => {
                out.push('&');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    out
}

/// ftfy's `unescape_html`: `&#?[0-9A-Za-z]{1,24};` matches; known entities
/// (ending in `;`, plus upper-cased variants) are decoded, numeric ones as
/// `html.unescape` does them when it consumes the `;`; other matches stay.
fn ftfy_unescape_html(text: &str) -> String {
    let t = tables();
    replace_refs(text, |after| {
        let body = after.strip_prefix('#').unwrap_or(after);
        let hash = body.len() < after.len();
        let n = body
            .bytes()
            .take(24)
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        if n == 0 || body.as_bytes().get(n) != Some(&b';') {
            return None;
        }
        let len = usize::from(hash) + n + 1;
        let m = format!("&{}", &after[..len]);
        let replaced = if let Some(v) = t.ftfy_entities.get(m.as_str()) {
            v.clone()
        } else if hash {
            let u = html_unescape(&m);
            if u.contains(';') {
                m
            } else {
                u
            }
        } else {
            m
        };
        Some((len, replaced))
    })
}

/// Python's `html.unescape`.
pub(crate) fn html_unescape(text: &str) -> String {
    let t = tables();
    replace_refs(text, |after| charref(after, t))
}

/// One reference after `&` (CPython's `_charref` pattern and
/// `_replace_charref`): bytes consumed and the replacement, or None when
/// nothing matches.
fn charref(s: &str, t: &Tables) -> Option<(usize, String)> {
    let b = s.as_bytes();
    if b.first() == Some(&b'#') {
        let hex = matches!(b.get(1), Some(b'x' | b'X'));
        let start = if hex { 2 } else { 1 };
        let digits = b[start..]
            .iter()
            .take_while(|c| {
                if hex {
                    c.is_ascii_hexdigit()
                } else {
                    c.is_ascii_digit()
                }
            })
            .count();
        if digits == 0 {
            return None;
        }
        let end = start + digits;
        let consumed = end + usize::from(b.get(end) == Some(&b';'));
        let num = u32::from_str_radix(&s[start..end], if hex { 16 } else { 10 }).ok();
        let text = match num {
            Some(n) if t.invalid_charrefs.contains_key(&n) => t.invalid_charrefs[&n].clone(),
            Some(n) if (0xD800..=0xDFFF).contains(&n) || n > 0x10FFFF => "\u{FFFD}".into(),
            None => "\u{FFFD}".into(),
            Some(n) if invalid_codepoint(n) => String::new(),
            Some(n) => char::from_u32(n).map(String::from).unwrap_or_default(),
        };
        return Some((consumed, text));
    }
    // Named: [^\t\n\f <&#;]{1,32};?
    let mut end = 0;
    for (count, (i, c)) in s.char_indices().enumerate() {
        if count == 32 || matches!(c, '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';') {
            break;
        }
        end = i + c.len_utf8();
    }
    if end == 0 {
        return None;
    }
    let with_semi = end + usize::from(s.as_bytes().get(end) == Some(&b';'));
    let name = &s[..with_semi];
    if let Some(v) = t.html5.get(name) {
        return Some((with_semi, v.clone()));
    }
    // The longest known prefix (at least 2 characters), the rest kept.
    let bounds: Vec<usize> = name.char_indices().map(|(i, _)| i).collect();
    for &x in bounds.iter().rev() {
        if name[..x].chars().count() < 2 {
            break;
        }
        if let Some(v) = t.html5.get(&name[..x]) {
            return Some((with_semi, format!("{v}{}", &name[x..])));
        }
    }
    Some((with_semi, format!("&{name}")))
}

/// CPython's `_invalid_codepoints`: controls and noncharacters.
fn invalid_codepoint(n: u32) -> bool {
    matches!(n, 0x1..=0x8 | 0xB | 0xE..=0x1F | 0x7F..=0x9F | 0xFDD0..=0xFDEF)
        || (n & 0xFFFE == 0xFFFE && n <= 0x10FFFF)
}

fn fix_c1_controls(text: &str) -> String {
    let t = tables();
    text.chars()
        .map(|c| t.c1.get(&c).copied().unwrap_or(c))
        .collect()
}

fn fix_latin_ligatures(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            'Ĳ' => out.push_str("IJ"),
            'ĳ' => out.push_str("ij"),
            'ŉ' => out.push_str("ʼn"),
            'Ǳ' => out.push_str("DZ"),
            'ǲ' => out.push_str("Dz"),
            'ǳ' => out.push_str("dz"),
            'Ǆ' => out.push_str("DŽ"),
            'ǅ' => out.push_str("Dž"),
            'ǆ' => out.push_str("dž"),
            'Ǉ' => out.push_str("LJ"),
            'ǈ' => out.push_str("Lj"),
            'ǉ' => out.push_str("lj"),
            'Ǌ' => out.push_str("NJ"),
            'ǋ' => out.push_str("Nj"),
            'ǌ' => out.push_str("nj"),
            'ﬀ' => out.push_str("ff"),
            'ﬁ' => out.push_str("fi"),
            'ﬂ' => out.push_str("fl"),
            'ﬃ' => out.push_str("ffi"),
            'ﬄ' => out.push_str("ffl"),
            'ﬅ' => out.push_str("ſt"),
            'ﬆ' => out.push_str("st"),
            c => out.push(c),
        }
    }
    out
}

fn fix_character_width(text: &str) -> String {
    let t = tables();
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match t.width.get(&c) {
            Some(v) => out.push_str(v),
            None => out.push(c),
        }
    }
    out
}

fn uncurl_quotes(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => '\'',
            '\u{201c}'..='\u{201f}' => '"',
            c => c,
        })
        .collect()
}

fn fix_line_breaks(text: &str) -> String {
    text.replace("\r\n", "\n")
        .replace(['\r', '\u{2028}', '\u{2029}', '\u{85}'], "\n")
}

/// ftfy's `ANSI_RE`: `\x1b\[((?:\d|;)*)([a-zA-Z])`.
fn remove_terminal_escapes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("\x1b[") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let n = after
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b';')
            .count();
        if after
            .as_bytes()
            .get(n)
            .is_some_and(|b| b.is_ascii_alphabetic())
        {
            rest = &after[n + 1..];
        } else {
            out.push('\x1b');
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

fn remove_control_chars(text: &str) -> String {
    text.chars()
        .filter(|&c| {
            !matches!(c,
                '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}'
                | '\u{206a}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffc}')
        })
        .collect()
}
