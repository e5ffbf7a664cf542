#!/usr/bin/env python3
"""Reference data for imgsim's CLIP text tower and CLIP BPE tokenizer.

Computed by the real Python implementations (open_clip's SimpleTokenizer and
text tower, Hugging Face transformers' CLIPModel) on the deterministic
synthetic weights that imgsim's Rust code generates (crates/embed/src/
synthetic.rs: same generator, same tensor names: the Hugging Face state-dict
names of a CLIPModel).

Run by hand; CI only reads the committed files:

    python3 -m venv /work/venv-clip
    /work/venv-clip/bin/pip install torch open_clip_torch transformers ftfy regex numpy
    /work/venv-clip/bin/python tools/reference/clip_text_refs.py

(From PyPI, torch pulls several GB of CUDA libraries; the CPU is used. No
network access is needed at run time: nothing is downloaded from a hub.)

It writes:

  crates/embed/tests/parity/clip_tokenizer.json  open_clip tokenizer cases:
      text, clean (the string the BPE sees) and ids (unpadded, with SOT/EOT).
  crates/embed/tests/parity/clip_text.json       512-d projected text features
      (before L2 normalisation) from HF get_text_features and open_clip
      encode_text, seed 0.
  crates/embed/tests/parity/clip_hf_names.json   [[name, shape], ...] of the
      full HF CLIPModel state dict, in state_dict order.
  crates/embed/assets/clip/bpe_simple_vocab_16e6.txt.gz  (copied from the
      installed open_clip package, byte for byte)
  crates/embed/assets/clip/html5_entities.tsv    Python's html.entities.html5,
      "name<TAB>hex codepoints", sorted by name.

It also checks that a plain re-implementation of the text cleaning (ftfy's
fixers minus its mojibake repair, then html.unescape twice, whitespace and
lower-casing; see `spec_clean`) gives open_clip's clean text for every case,
so the cases exercise no ftfy encoding repair (out of scope for the Rust port).

  crates/embed/assets/clip/clean_tables.tsv      ftfy/html tables for the Rust
      cleaner (ftfy's HTML_ENTITIES and WIDTH_MAP, html5, _invalid_charrefs,
      sloppy-windows-1252 C1 bytes).

Pass only some of tokenizer / text / names / assets / tables (with or without
a leading --) to run part of it.
"""
import gzip
import hashlib
import html
import html.entities
import json
import os
import random
import shutil
import sys
import unicodedata

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
PARITY = os.path.join(ROOT, "crates", "embed", "tests", "parity")
ASSETS = os.path.join(ROOT, "crates", "embed", "assets", "clip")
SEED = 0
CONTEXT = 77
SOT, EOT = 49406, 49407

# --- synthetic weights --------------------------------------------------------
# tools/reference/synthetic_weights.py mirrors crates/embed/src/synthetic.rs.
from synthetic_weights import fnv1a64, range_for, splitmix64, tensor_values, values  # noqa: E402,F401


# --- models -------------------------------------------------------------------

# openai/clip-vit-base-patch32's config.json, the fields that matter. Note the
# legacy text ids bos 0 / eos 2 / pad 1 in that file: with eos_token_id == 2,
# transformers pools at input_ids.argmax(-1) (the pre-PR-24773 rule), which for
# CLIP's vocab is the position of EOT 49407, the largest id.
HF_CONFIG = {
    "projection_dim": 512,
    "logit_scale_init_value": 2.6592,
    "text_config": {
        "vocab_size": 49408,
        "hidden_size": 512,
        "intermediate_size": 2048,
        "num_hidden_layers": 12,
        "num_attention_heads": 8,
        "max_position_embeddings": 77,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-05,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "projection_dim": 512,
        "bos_token_id": 0,
        "eos_token_id": 2,
        "pad_token_id": 1,
    },
    "vision_config": {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "patch_size": 32,
        "image_size": 224,
        "num_channels": 3,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-05,
        "attention_dropout": 0.0,
        "dropout": 0.0,
        "projection_dim": 512,
    },
}


def hf_model(eos_token_id=None, attn="eager", text_only_fill=False):
    """HF CLIPModel with every state-dict tensor set to tensor_values(SEED, name).

    Returns (model, skipped): skipped lists the buffers left as they were
    (integer buffers; position_ids are non-persistent in this transformers, so
    they are not in state_dict at all, and are listed too)."""
    from transformers import CLIPConfig, CLIPModel

    cfg = json.loads(json.dumps(HF_CONFIG))
    if eos_token_id is not None:
        cfg["text_config"]["eos_token_id"] = eos_token_id
    config = CLIPConfig(**cfg)
    config._attn_implementation = attn
    config.text_config._attn_implementation = attn
    config.vision_config._attn_implementation = attn
    model = CLIPModel(config).eval()
    sd = model.state_dict()
    new, skipped = {}, []
    for name, t in sd.items():
        if not t.is_floating_point() or (text_only_fill and name.startswith("vision_model.")):
            new[name] = t
            skipped.append(name)
            continue
        new[name] = tensor_values(SEED, name, tuple(t.shape))
    model.load_state_dict(new)
    for name, _ in model.named_buffers():
        if name not in sd:
            skipped.append(name + " (non-persistent buffer)")
    return model, skipped


def hf_to_open_clip_text(sd_hf: dict, layers: int = 12) -> dict:
    """HF text-tower tensors -> open_clip CLIP (ViT-B-32) names and layout."""
    t = "text_model."
    out = {
        "token_embedding.weight": sd_hf[t + "embeddings.token_embedding.weight"],
        "positional_embedding": sd_hf[t + "embeddings.position_embedding.weight"],
        "ln_final.weight": sd_hf[t + "final_layer_norm.weight"],
        "ln_final.bias": sd_hf[t + "final_layer_norm.bias"],
        # HF: y = x @ W.T (nn.Linear); open_clip: y = x @ P.
        "text_projection": sd_hf["text_projection.weight"].t().contiguous(),
        "logit_scale": sd_hf["logit_scale"],
    }
    for i in range(layers):
        h = f"{t}encoder.layers.{i}."
        o = f"transformer.resblocks.{i}."
        a = h + "self_attn."
        out[o + "attn.in_proj_weight"] = torch.cat(
            [sd_hf[a + "q_proj.weight"], sd_hf[a + "k_proj.weight"], sd_hf[a + "v_proj.weight"]], 0)
        out[o + "attn.in_proj_bias"] = torch.cat(
            [sd_hf[a + "q_proj.bias"], sd_hf[a + "k_proj.bias"], sd_hf[a + "v_proj.bias"]], 0)
        out[o + "attn.out_proj.weight"] = sd_hf[a + "out_proj.weight"]
        out[o + "attn.out_proj.bias"] = sd_hf[a + "out_proj.bias"]
        out[o + "ln_1.weight"] = sd_hf[h + "layer_norm1.weight"]
        out[o + "ln_1.bias"] = sd_hf[h + "layer_norm1.bias"]
        out[o + "ln_2.weight"] = sd_hf[h + "layer_norm2.weight"]
        out[o + "ln_2.bias"] = sd_hf[h + "layer_norm2.bias"]
        out[o + "mlp.c_fc.weight"] = sd_hf[h + "mlp.fc1.weight"]
        out[o + "mlp.c_fc.bias"] = sd_hf[h + "mlp.fc1.bias"]
        out[o + "mlp.c_proj.weight"] = sd_hf[h + "mlp.fc2.weight"]
        out[o + "mlp.c_proj.bias"] = sd_hf[h + "mlp.fc2.bias"]
    return out


def open_clip_model(sd_hf: dict):
    """open_clip ViT-B-32 (QuickGELU, as OpenAI trained it and as HF's config
    says; open_clip's plain 'ViT-B-32' config would use nn.GELU) whose text
    tower holds the converted synthetic HF tensors. The vision tower keeps
    open_clip's random init (encode_text does not touch it)."""
    import open_clip

    m = open_clip.create_model("ViT-B-32", pretrained=None, force_quick_gelu=True).eval()
    text_sd = hf_to_open_clip_text(sd_hf)
    missing, unexpected = m.load_state_dict(text_sd, strict=False)
    assert not unexpected, unexpected
    left = [k for k in missing if not k.startswith("visual.")]
    assert not left, left
    return m


# --- text cleaning, as a plain spec ------------------------------------------
# What ftfy.fix_text (default config) + open_clip's basic_clean +
# whitespace_clean + lower do to text that has no mojibake, written without
# ftfy's encoding detector. main() asserts it equals open_clip's clean text for
# every tokenizer case.


def _ftfy_entities():
    ents = {}
    for name, char in html.entities.html5.items():
        if name.endswith(";"):
            ents["&" + name] = char
            if name == name.lower():
                up = "&" + name.upper()
                if html.unescape(up) == up:
                    ents[up] = char.upper()
    return ents


def spec_clean(text: str) -> str:
    import regex as re

    ents = _ftfy_entities()
    entity_re = re.compile(r"&#?[0-9A-Za-z]{1,24};")

    def unescape_fixup(m):
        t = m.group(0)
        if t in ents:
            return ents[t]
        if t.startswith("&#"):
            u = html.unescape(t)
            return t if ";" in u else u
        return t

    # ftfy's "sloppy-windows-1252": windows-1252, and the 5 undefined bytes
    # (0x81 0x8D 0x8F 0x90 0x9D) decode to the same Latin-1 code point.
    c1 = {}
    for i in range(0x80, 0xA0):
        try:
            c1[i] = bytes([i]).decode("cp1252")
        except UnicodeDecodeError:
            c1[i] = chr(i)
    lig = {0x132: "IJ", 0x133: "ij", 0x149: "\u02bcn", 0x1F1: "DZ", 0x1F2: "Dz", 0x1F3: "dz",
           0x1C4: "D\u017d", 0x1C5: "D\u017e", 0x1C6: "d\u017e", 0x1C7: "LJ", 0x1C8: "Lj",
           0x1C9: "lj", 0x1CA: "NJ", 0x1CB: "Nj", 0x1CC: "nj", 0xFB00: "ff", 0xFB01: "fi",
           0xFB02: "fl", 0xFB03: "ffi", 0xFB04: "ffl", 0xFB05: "\u017ft", 0xFB06: "st"}
    width = {0x3000: " "}
    for i in range(0xFF01, 0xFFF0):
        alt = unicodedata.normalize("NFKC", chr(i))
        if alt != chr(i):
            width[i] = alt
    quotes = {0x2BC: "'", 0x2018: "'", 0x2019: "'", 0x201A: "'", 0x201B: "'",
              0x201C: '"', 0x201D: '"', 0x201E: '"', 0x201F: '"'}
    ansi = re.compile("\x1b\\[((?:\\d|;)*)([a-zA-Z])")
    ctrl = {i: None for i in list(range(0x00, 0x09)) + [0x0B] + list(range(0x0E, 0x20)) + [0x7F]
            + list(range(0x206A, 0x2070)) + [0xFEFF] + list(range(0xFFF9, 0xFFFD))}

    def fix_segment(seg, unescape):
        while True:
            orig = seg
            if unescape:
                seg = entity_re.sub(unescape_fixup, seg)
            seg = seg.translate(c1)
            seg = seg.translate(lig)
            seg = seg.translate(width)
            seg = seg.translate(quotes)
            seg = (seg.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n")
                   .replace("\u2029", "\n").replace("\x85", "\n"))
            # (surrogates cannot occur in Rust strings: skipped)
            seg = ansi.sub("", seg)
            seg = seg.translate(ctrl)
            seg = unicodedata.normalize("NFC", seg)
            if seg == orig:
                return seg

    # ftfy.fix_text: segments end after each "\n"; once a segment contains "<",
    # entity unescaping stays off for that segment and all later ones.
    out, pos, unescape = [], 0, True
    while pos < len(text):
        brk = text.find("\n", pos) + 1 or len(text)
        seg = text[pos:brk]
        if unescape and "<" in seg:
            unescape = False
        out.append(fix_segment(seg, unescape))
        pos = brk
    t = "".join(out)
    t = html.unescape(html.unescape(t)).strip()
    return " ".join(t.split()).strip().lower()


# --- tokenizer cases ----------------------------------------------------------

LONG_EN = (
    "In the early morning light, a small red fox trotted across the frosted meadow, pausing now "
    "and then to listen for voles beneath the snow, while overhead a pair of ravens circled "
    "lazily, calling to one another in rough, echoing voices that carried far across the valley "
    "and into the dark pine forest beyond the frozen river, where an old wooden bridge creaked "
    "softly under the weight of fresh snow and the distant sound of church bells drifted in."
)


def tokenizer_cases():
    c = []
    add = c.append
    # empty and whitespace
    for s in ["", " ", "   ", "\t", "\n", "\r\n", " \t\n\r ", "\u00a0", "\u3000", "\u2028",
              "\u200b", "\u2003\u2009\u202f\u205f", "\x0b\x0c", "\x1c\x1d\x1e\x1f"]:
        add(s)
    # plain English
    for s in ["a photo of a dog", "a photo of a cat.", "A photo of a Cat.",
              "the quick brown fox jumps over the lazy dog",
              "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
              "ThE qUiCk BrOwN fOx", "Hello, World!", "hello world", "  leading and trailing  ",
              "multiple     spaces   between    words", "a painting of a sunset over the ocean",
              "an aerial view of a city at night", "two dogs playing in the snow",
              "a close-up photo of a red rose", "Photo: a bird on a wire (2019)",
              "a dog", "dog", "Dogs", "a", "I", "supercalifragilisticexpialidocious",
              "antidisestablishmentarianism", "pneumonoultramicroscopicsilicovolcanoconiosis"]:
        add(s)
    # punctuation runs
    for s in ["!!!", "!!!!!!", "?!", "...", "…", "a...b", "wait---what?!", "(parenthesised)",
              "[brackets] {braces} <angles>", "@#$%^&*()_+-=", "~`|\\/", "\"quoted\"",
              "'single'", "semi;colon:colon", "a-b_c.d,e", "--help", "C++ and C#", "<<>>",
              "¡Hola! ¿Qué tal?", "«guillemets» „low“ ‚single‘", "— – ‐ ‑ ‒"]:
        add(s)
    # contractions, straight and curly
    for s in ["it's", "don't", "you're", "we've", "I'm", "they'll", "he'd", "IT'S DON'T YOU'RE",
              "it’s don’t you’re we’ve I’m they’ll he’d", "rock 'n' roll", "'s 't 're", "''", "'",
              "dogs' toys", "o'clock", "y'all'd've", "it‘s", "isn‛t", "ʼtis"]:
        add(s)
    # numbers
    for s in ["2024", "3.14", "1,000,000", "0", "007", "12345678901234567890", "-42", "+1 (555) 010-9999",
              "1st 2nd 3rd 4th", "v1.2.3", "50%", "$9.99", "€10,50", "1e-5", "0x1F", "²³¹",
              "½ ¼ ¾", "①②③", "Ⅻ ⅻ", "٠١٢٣", "१२३", "１２３"]:
        add(s)
    # accents, diacritics, case
    for s in ["café", "naïve", "Ångström", "cafe\u0301", "e\u0301", "\u0301", "A\u030a",
              "crème brûlée", "résumé", "Zoë", "São Paulo", "Dvořák", "Łódź", "Øresund",
              "straße", "STRASSE", "ẞ", "İstanbul", "ıi İI", "ΟΔΥΣΣΕΥΣ", "Σίσυφος", "ΣΑΣ ΣΑΣ.",
              "ᾳ", "\u0345", "ǅ", "ﬁsh ﬂower ﬀ ﬃ ﬄ ﬅ ﬆ", "Ĳssel", "ＡＢＣ１２３", "ｈｅｌｌｏ　ｗｏｒｌｄ！",
              "ﾊﾝｶｸ ｶﾀｶﾅ", "ｶﾞ", "ŉ", "ǈǋ", "a\u0345b", "ω\u0345"]:
        add(s)
    # scripts
    for s in ["Привет, мир!", "МОСКВА", "Ёлка", "مرحبا بالعالم", "שלום עולם", "你好，世界",
              "一只猫的照片", "猫", "日本語のテキスト", "カタカナ", "ひらがな", "한국어 텍스트", "한",
              "한", "ภาษาไทย", "हिन्दी", "Ελληνικά", "ქართული", "Հայերեն", "ㄅㄆㄇ",
              "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "𝟘𝟙𝟚"]:
        add(s)
    # emoji
    for s in ["😀", "😀😀😀", "I ❤️ NY", "❤", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵", "🇺🇸🇬🇧🇫🇷",
              "🏴󠁧󠁢󠁷󠁬󠁳󠁿", "1️⃣", "#️⃣", "a photo of a 🐶", "🐶dog", "dog🐶", "☺", "✓ ✔ ✗",
              "©®™", "👩🏻‍💻", "🧑‍🚀 astronaut"]:
        add(s)
    # HTML entities
    for s in ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x27;", "&nbsp;", "&eacute;", "&copy;",
              "&amp;amp;", "&amp;amp;amp;", "&amp", "&amp without semicolon", "AT&T", "AT&amp;T",
              "fish &amp; chips", "&lt;b&gt;bold&lt;/b&gt;", "<b>bold</b> &amp; real tags",
              "&EACUTE; &NTILDE; &nTILDE;", "&#233;", "&#xE9;", "&#XE9;", "&#0;", "&#128;",
              "&#x80;", "&#150;", "&#1114112;", "&#xD800;", "&#xFFFF;", "&#65", "&#x41 ",
              "&notit; &notin; &not", "&nosuchentity;", "&copy2024", "&;", "& ", "&&&",
              "&hellip;&mdash;&ndash;", "&lsquo;x&rsquo; &ldquo;y&rdquo;", "&fjlig;",
              "&NotEqualTilde;", "&#9731;", "&#x1F600;", "&#12345678901234567890;",
              "line1 &lt;\nline2 &amp;", "x < y &amp; z", "&AMP &LT &gt", "&#38;amp;",
              "&eacute &eacutex", "Caf&eacute; na&iuml;ve"]:
        add(s)
    # quotes / ligatures / width covered above; more quotes
    for s in ["“double”", "‘single’", "„German“", "‟reversed‛", "“It’s,” she said."]:
        add(s)
    # whitespace and control characters
    for s in ["tab\tseparated\tvalues", "line one\nline two", "crlf\r\nline", "cr\ronly",
              "nbsp\u00a0here", "zero\u200bwidth", "zwj\u200dzwnj\u200c", "ls\u2028ps\u2029end",
              "nel\x85here", "bell\x07char", "null\x00char", "esc\x1bchar", "del\x7fchar",
              "\x1b[31mred text\x1b[0m", "\x1b[1;32;40mbold green\x1b[m", "\x1b]0;title\x07",
              "soft\u00adhyphen", "bom\ufeffhere", "\ufeffleading bom", "rtl\u200fmark\u202e",
              "c1\x80\x81\x8d\x9f", "\u206a\u206fdeprecated", "obj\ufffcrepl\ufffd",
              "word\u180eseparator", "a\u2060b", "ideographic\u3000space", "em\u2003space",
              "\x0c form feed", "vt\x0bchar", "fs\x1cgs\x1drs\x1eus\x1f"]:
        add(s)
    # URLs, emails, hashtags, code
    for s in ["https://example.com/path?q=1&r=2#frag", "http://www.example.org/a_b-c.html",
              "user.name+tag@example.co.uk", "#hashtag #CamelCaseTag #2024", "@mention",
              "def f(x): return x**2", "for (int i = 0; i < n; ++i) { a[i] = 0; }",
              "SELECT * FROM t WHERE id = 1;", "<div class=\"x\">hi</div>", "{\"key\": [1, 2, 3]}",
              "snake_case_name CamelCaseName kebab-case-name", "C:\\Users\\me\\file.txt",
              "~/dir/file.tar.gz", "a=b&c=d", "x=&y=", "if a&&b || c"]:
        add(s)
    # special tokens literally
    for s in ["<|endoftext|>", "<|startoftext|>", "a <|startoftext|> b <|endoftext|> c",
              "<start_of_text>", "<end_of_text>", "hi <end_of_text> there", "<START_OF_TEXT>",
              "<start_of_text><end_of_text>", "x<end_of_text>y"]:
        add(s)
    # repeated characters
    for s in ["a" * 40, "a" * 200, "ab" * 50, "!" * 100, "." * 300, "1" * 120, "😀" * 40,
              "猫" * 90, "é" * 60, "the " * 100, "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"]:
        add(s)
    # one character of each class
    for s in ["b", "Q", "7", ".", "$", "€", "_", "-", "'", "\"", "\\", "^", "`", "|", "~", "%",
              "ß", "中", "あ", "ア", "한", "ع", "ש", "ж", "ω", "😀", "\u20dd", "\u0300", "✓"]:
        add(s)
    # long texts
    add(LONG_EN)
    add(LONG_EN + " " + LONG_EN)
    add(" ".join(["photo"] * 75))
    add(" ".join(["photo"] * 76))
    add(" ".join(["photo"] * 77))
    add(" ".join(f"word{i}" for i in range(60)))
    add("Ein kleiner roter Fuchs trabte über die gefrorene Wiese, während über ihm zwei Raben "
        "kreisten und einander mit rauen Stimmen riefen, die weit über das Tal hallten; "
        "später lag überall frischer Schnee, und die Glocken der Kirche läuteten leise. " * 2)
    add("昨日、私たちは京都の古いお寺を訪れ、美しい庭園を散歩しながら紅葉を楽しみました。" * 3)
    add("&amp; " * 80)
    add("it’s “fine” – ﬁne … " * 20)

    # random-but-seeded mixtures of fragments from all the above
    pool = [s for s in c if 0 < len(s) < 40]
    seps = [" ", "", "\n", "\t", " \u00a0", "&amp;", "’", "—"]
    rng = random.Random(20240601)
    for _ in range(12):
        k = rng.randint(2, 7)
        parts = [rng.choice(pool) for _ in range(k)]
        s = parts[0]
        for p in parts[1:]:
            s += rng.choice(seps) + p
        add(s)
    # dedupe, keep order
    seen, out = set(), []
    for s in c:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


def json_text(payload, compact=False) -> str:
    s = json.dumps(payload, ensure_ascii=False, indent=None if compact else 1,
                   separators=(",", ":") if compact else None)
    # json escapes U+0000..U+001F itself; also escape the other invisible
    # separators/controls so the file stays readable and line-safe.
    for ch in ["\x7f", "\u2028", "\u2029", "\ufeff"] + [chr(i) for i in range(0x80, 0xA0)]:
        s = s.replace(ch, "\\u%04x" % ord(ch))
    return s


def write(path: str, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        if not text.endswith("\n"):
            f.write("\n")
    print(f"wrote {os.path.relpath(path, ROOT)} ({os.path.getsize(path)} bytes)")


def unpadded(row: torch.Tensor) -> list:
    ids = [int(v) for v in row.tolist()]
    while ids and ids[-1] == 0:
        ids.pop()
    return ids


def versions() -> dict:
    import ftfy
    import open_clip
    import regex
    import transformers

    return {
        "python": sys.version.split()[0],
        "unicodedata": unicodedata.unidata_version,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "open_clip": open_clip.__version__,
        "ftfy": ftfy.__version__,
        "regex": regex.__version__,
        "numpy": np.__version__,
    }


def do_tokenizer() -> list:
    import ftfy
    import open_clip
    from open_clip import tokenizer as oct

    tok = oct._tokenizer
    cases, mismatched = [], []
    for s in tokenizer_cases():
        ids = unpadded(open_clip.tokenize([s], context_length=CONTEXT)[0])
        direct = [SOT] + tok.encode(s) + [EOT]
        if len(direct) > CONTEXT:
            direct = direct[:CONTEXT]
            direct[-1] = EOT
        assert ids == direct, (s, ids, direct)
        clean = oct._clean_lower(s)
        if spec_clean(s) != clean:
            mismatched.append(s)
        cases.append({"text": s, "clean": clean, "ids": ids})
    if mismatched:
        print("spec_clean differs from open_clip for:", [repr(m) for m in mismatched])
    assert not mismatched
    v = versions()
    payload = {
        "tokenizer": f"open_clip {v['open_clip']} SimpleTokenizer",
        "ftfy": v["ftfy"],
        "regex": v["regex"],
        "python": v["python"],
        "unicodedata": v["unicodedata"],
        "context_length": CONTEXT,
        "sot": SOT,
        "eot": EOT,
        "note": ("ids = open_clip.tokenize([text])[0] without the trailing zero padding "
                 "(SOT + BPE ids + EOT; over 77 ids: cut to 77 and the last set to EOT). "
                 "clean = whitespace_clean(basic_clean(text)).lower(): the string the "
                 "pre-tokenisation regex and BPE see. ftfy's encoding (mojibake) repair is "
                 "out of scope: no case contains mojibake, and tools/reference/clip_text_refs.py "
                 "checks that every clean string equals a re-implementation without it."),
        "cases": cases,
    }
    write(os.path.join(PARITY, "clip_tokenizer.json"), json_text(payload))
    return cases


TEXT_CASES = [
    "",
    "cat",
    "a photo of a dog",
    "A photo of a CAT.",
    "the quick brown fox jumps over the lazy dog",
    "Café naïve crème brûlée 😀🇯🇵 👍🏽",
    "一只猫的照片",
    "fish &amp; chips, it’s “fine”",
    LONG_EN,
    " ".join(["photo"] * 80),
]


def do_text() -> None:
    import open_clip

    torch.set_num_threads(int(os.environ.get("THREADS", "2")))
    rows = [open_clip.tokenize([s], context_length=CONTEXT)[0] for s in TEXT_CASES]
    ids = torch.stack(rows)
    hf, skipped = hf_model()
    hf_sdpa, _ = hf_model(attn="sdpa", text_only_fill=True)
    hf_eos, _ = hf_model(eos_token_id=EOT, text_only_fill=True)
    sd_hf = hf.state_dict()
    oc = open_clip_model(sd_hf)
    with torch.no_grad():
        f_hf = hf.get_text_features(input_ids=ids)
        f_hf = f_hf.pooler_output if hasattr(f_hf, "pooler_output") else f_hf
        f_sdpa = hf_sdpa.get_text_features(input_ids=ids)
        f_sdpa = f_sdpa.pooler_output if hasattr(f_sdpa, "pooler_output") else f_sdpa
        f_eos = hf_eos.get_text_features(input_ids=ids)
        f_eos = f_eos.pooler_output if hasattr(f_eos, "pooler_output") else f_eos
        f_oc = oc.encode_text(ids)
        # one at a time too (no batch effects)
        f_one = torch.cat([
            (lambda o: o.pooler_output if hasattr(o, "pooler_output") else o)(
                hf.get_text_features(input_ids=ids[i:i + 1])) for i in range(len(ids))])

    def rel(a, b):
        return max(float((a[i] - b[i]).abs().max() / b[i].abs().max()) for i in range(len(a)))

    eos_pos = (ids == EOT).int().argmax(-1)
    argmax_pos = ids.argmax(-1)
    assert torch.equal(eos_pos, argmax_pos)
    v = versions()
    cases = []
    for i, s in enumerate(TEXT_CASES):
        cases.append({
            "text": s,
            "ids": unpadded(ids[i]),
            "pool_index": int(argmax_pos[i]),
            "features": [float(x) for x in f_hf[i].tolist()],
            "features_open_clip": [float(x) for x in f_oc[i].tolist()],
        })
    payload = {
        "seed": SEED,
        "weights": ("synthetic: every HF CLIPModel state-dict tensor NAME of shape S is "
                    "tensor_values(0, NAME, S) (crates/embed/src/synthetic.rs); open_clip gets "
                    "the same tensors in its layout (q/k/v concatenated to in_proj, "
                    "text_projection transposed)"),
        "skipped": skipped,
        "torch": v["torch"],
        "transformers": v["transformers"],
        "open_clip": v["open_clip"],
        "hf_config": HF_CONFIG,
        "hf_attn_implementation": "eager",
        "open_clip_model": "create_model('ViT-B-32', pretrained=None, force_quick_gelu=True)",
        "input": "ids padded with 0 to 77, no attention mask (causal mask only)",
        "features": ("HF CLIPModel.get_text_features(input_ids=padded).pooler_output: "
                     "text_projection(final_layer_norm(h)[pool_index]), before L2 normalisation"),
        "pooling": ("HF config has eos_token_id=2, so transformers pools at input_ids.argmax(-1) "
                    "(legacy rule); with eos_token_id=49407 it pools at the first 49407. For "
                    "CLIP's vocab both are the EOT position (49407 is the largest id)."),
        "pooling_argmax_equals_first_eos": bool(torch.equal(eos_pos, argmax_pos)),
        "max_abs_diff_hf_argmax_vs_hf_first_eos": float((f_hf - f_eos).abs().max()),
        "max_rel_diff_hf_vs_open_clip": rel(f_hf, f_oc),
        "max_rel_diff_hf_eager_vs_sdpa": rel(f_hf, f_sdpa),
        "max_rel_diff_hf_batched_vs_single": rel(f_hf, f_one),
        "rel_diff_definition": "max over cases of max|a-b| / max|b| (b = HF eager, per case)",
        "cases": cases,
    }
    print("max_rel_diff_hf_vs_open_clip", payload["max_rel_diff_hf_vs_open_clip"])
    print("max_rel_diff_hf_eager_vs_sdpa", payload["max_rel_diff_hf_eager_vs_sdpa"])
    print("hf argmax vs first-eos", payload["max_abs_diff_hf_argmax_vs_hf_first_eos"])
    write(os.path.join(PARITY, "clip_text.json"), json_text(payload, compact=True))


def do_names() -> None:
    from transformers import CLIPConfig, CLIPModel

    with torch.device("meta"):
        m = CLIPModel(CLIPConfig(**HF_CONFIG))
    rows = [[k, list(t.shape)] for k, t in m.state_dict().items()]
    text = "[\n" + ",\n".join(json.dumps(r) for r in rows) + "\n]"
    write(os.path.join(PARITY, "clip_hf_names.json"), text)


def do_assets() -> None:
    import open_clip.tokenizer as oct

    src = oct.default_bpe()
    dst = os.path.join(ASSETS, "bpe_simple_vocab_16e6.txt.gz")
    os.makedirs(ASSETS, exist_ok=True)
    shutil.copyfile(src, dst)
    sha = hashlib.sha256(open(dst, "rb").read()).hexdigest()
    lines = gzip.open(dst).read().decode("utf-8").split("\n")
    print(f"wrote {os.path.relpath(dst, ROOT)} ({os.path.getsize(dst)} bytes) sha256 {sha}; "
          f"{len(lines)} lines, header {lines[0]!r}")
    rows = []
    for name in sorted(html.entities.html5):
        cps = " ".join("%X" % ord(ch) for ch in html.entities.html5[name])
        rows.append(f"{name}\t{cps}")
    write(os.path.join(ASSETS, "html5_entities.tsv"), "\n".join(rows))


def do_tables() -> None:
    """crates/embed/assets/clip/clean_tables.tsv: the tables the Rust cleaner
    (crates/embed/src/text/clean.rs) needs, from this Python and ftfy."""
    import ftfy
    from ftfy import chardata

    def cps(s):
        return " ".join("%X" % ord(ch) for ch in s)

    rows = [
        "# Tables for CLIP's text cleaning (crates/embed/src/text/clean.rs), generated by",
        f"# tools/reference/clip_text_refs.py --tables from CPython {sys.version.split()[0]} "
        f"html.entities and ftfy {ftfy.__version__}.",
        "# E: ftfy's HTML_ENTITIES (entity with & and ;) -> code points",
        "# H: html.entities.html5 (name as keyed, with or without ;) -> code points",
        "# I: html._invalid_charrefs (number) -> code points",
        "# W: ftfy's WIDTH_MAP (code point) -> code points",
        "# C: sloppy-windows-1252 decoding of C1 bytes 0x80-0x9f (byte) -> code point",
    ]
    rows += [f"E\t{k}\t{cps(v)}" for k, v in sorted(chardata.HTML_ENTITIES.items())]
    rows += [f"H\t{k}\t{cps(v)}" for k, v in sorted(html.entities.html5.items())]
    rows += [f"I\t{k:X}\t{cps(v)}" for k, v in sorted(html._invalid_charrefs.items())]
    rows += [f"W\t{k:X}\t{cps(v)}" for k, v in sorted(chardata.WIDTH_MAP.items())]
    rows += [f"C\t{b:X}\t{cps(bytes([b]).decode('sloppy-windows-1252'))}" for b in range(0x80, 0xA0)]
    write(os.path.join(ASSETS, "clean_tables.tsv"), "\n".join(rows))


def main() -> None:
    wanted = {a.lstrip("-") for a in sys.argv[1:]} or {"tokenizer", "text", "names", "assets", "tables"}
    print(versions())
    if "assets" in wanted:
        do_assets()
    if "tables" in wanted:
        do_tables()
    if "names" in wanted:
        do_names()
    if "tokenizer" in wanted:
        do_tokenizer()
    if "text" in wanted:
        do_text()


if __name__ == "__main__":
    main()
