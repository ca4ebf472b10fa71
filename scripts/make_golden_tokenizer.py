#!/usr/bin/env python3
"""Writes the tokenizer golden fixtures of Tests/ModelTests/Fixtures from independent oracles.

- smollm2_tokenizer.json: ids of >= 1,000 varied strings under SmolLM2's byte-level BPE, computed by
  Hugging Face `tokenizers` built from the GGUF's own vocab and merges (read with the `gguf` package),
  configured as SmolLM2's tokenizer.json is (Digits(individual) + ByteLevel, special tokens added).
- pretokenizer.json: the pieces the GPT-2, Llama 3, Qwen2 and SmolLM pre-tokenizer regexes cut, by `tokenizers`.
- mistral_v1_vocab.json + mistral_v1_tokenizer.json: the vocab (pieces, scores, types) of mistral-common's
  tokenizer.model.v1 and the ids/decodes of the same strings by the `sentencepiece` package.
- smollm2_chat_template.json: SmolLM2's own Jinja chat template rendered by jinja2 for a few conversations.

Usage: scripts/make_golden_tokenizer.py [ASSETS_DIR]   (default $COMET_ASSETS or ~/.cache/comet/assets;
run scripts/fetch-test-assets.sh first). Requirements: scripts/requirements-test.txt.
"""
import json
import os
import random
import sys

import jinja2
import sentencepiece
from gguf import GGUFReader
from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers

ASSETS = sys.argv[1] if len(sys.argv) > 1 else os.environ.get(
    "COMET_ASSETS", os.path.expanduser("~/.cache/comet/assets"))
GGUF = os.path.join(ASSETS, "SmolLM2-135M-Instruct.Q4_1.gguf")
SP_MODEL = os.path.join(ASSETS, "tokenizer.model.v1")
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "ModelTests", "Fixtures")

GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
                  r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen2's tokenizer.json: Llama 3's with single digits.
QWEN2_PATTERN = LLAMA3_PATTERN.replace(r"\p{N}{1,3}", r"\p{N}")

# ---------------------------------------------------------------------------------------------------
# The test strings: hand-picked edge cases, then seeded random mixtures of many kinds of text.

EDGE_CASES = [
    "", " ", "  ", "   ", "\n", "\n\n", "\r\n", "\t", "\t\t", " \n ", "a", "ab", "Hello", "Hello world",
    " Hello", "Hello ", "  Hello  ", "hello\n\nworld", "a  b", "a   b", "a \t b", "x\u00a0y", "x\u3000y",
    "'s", "'S", "I'm", "I'M", "don't", "DON'T", "we'll", "they've", "you're", "she'd", "'ll've", "rock'n'roll",
    " 'tis", "1", "12", "123", "1234", "12345678901234567890", " 123", "abc123def", "3.14159", "-42", "1,000,000",
    "2024-01-01", "v1.2.3", "0x1F600", "½ ² ³ Ⅻ ٣ ١٢ １２３ ⑦", "café", "naïve", "e\u0301", "Straße", "ÅNGSTRÖM",
    "Ελληνικά", "русский язык", "العربية", "עברית", "हिन्दी", "ภาษาไทย", "日本語のテキスト", "中文分词测试",
    "한국어 텍스트", "😀", "😀😀", "👍🏽", "👨‍👩‍👧‍👦", "🇫🇷🇩🇪", "❤️", "🤖 robots 🤖", "∑∫∂√∞≠≤≥",
    "<|im_start|>", "<|im_end|>", "<|endoftext|>", "<|im_start|>user\nHi<|im_end|>\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat's 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<repo_name>comet<file_sep>main.swift", "<|im_start|><|im_end|>", "<|im_start", "im_end|>", "<<|im_start|>>",
    "def f(x):\n    return x ** 2\n", "if (a && b) { c++; }", "for i in range(10):\n\tprint(i)",
    "<div class=\"x\">text</div>", "{\"key\": [1, 2, 3], \"null\": null}", "SELECT * FROM t WHERE id = 7;",
    "    indented\n        more", "trailing spaces   \n", "tabs\tand\tspaces \t mixed", "!!!???...", "---",
    "a" * 300, " " * 100, "ab" * 150, "1" * 50, "😀" * 20, "\n" * 30, "Z29vZCBtb3JuaW5nIQ==" * 10,
    "\u200b zero\u200bwidth", "\u2028line\u2029para", "\x00nul\x01\x7f", "emoji\U0001F9D1\u200d\U0001F4BB tech",
]

WORDS = ("the of and to in is it you that he was for on are with as his they be at one have this from or "
         "had by word but what some we can out other were all there when up use your how said an each she "
         "which do their time if will way about many then them write would like so these her long make thing "
         "see him two has look more day could go come did number sound no most people my over know water "
         "than call first who may down side been now find Swift GPU tensor quantization kernel tokenizer "
         "internationalization antidisestablishmentarianism").split()
CONTRACTIONS = ["don't", "can't", "it's", "I'm", "you're", "we've", "they'll", "he'd", "WON'T", "It'S", "y'all"]
NUMBERS = ["0", "7", "42", "123", "2024", "3.14", "1e-5", "100,000", "007", "99.9%", "$5", "#1", "10x", "1/2"]
PUNCT = [".", ",", "!", "?", ";", ":", "...", "--", "(", ")", "[", "]", "{", "}", "\"", "'", "`", "@", "#",
         "&", "*", "/", "\\", "|", "~", "^", "<", ">", "=", "+", "-", "_", "«", "»", "“", "”", "—", "…"]
UNICODE = ["café", "über", "niño", "façade", "Ærø", "Łódź", "İstanbul", "ﬁ", "Ω", "µ", "ß", "Привет", "мир",
           "γειά", "σου", "مرحبا", "שלום", "नमस्ते", "สวัสดี", "こんにちは", "カタカナ", "漢字", "你好", "世界",
           "안녕하세요", "ä", "e\u0301", "n\u0303", "Ṩ", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "ｆｕｌｌｗｉｄｔｈ", "١٢٣", "४२", "Ⅳ", "²", "¾"]
EMOJI = ["😀", "😂", "🥲", "👍", "👍🏿", "🎉", "🚀", "❤️", "✨", "🔥", "👩‍💻", "🏳️‍🌈", "🇯🇵", "🐍", "🦀", "🍕", "💯"]
SPACES = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n", "\n ", "\u00a0", "\u3000", "\u2009", "\u202f",
          "\t \t", "    "]
SPECIALS = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<repo_name>", "<file_sep>", "<jupyter_code>"]
CODE = ["def main():", "return 0;", "x = y + 1", "print(\"hi\")", "#include <stdio.h>", "let a: [Int] = []",
        "fn main() {}", "// comment", "/* block */", "a->b", "i++", "x != y", "a == b", "ptr[0]", "0xFF",
        "std::vector<int>", "console.log(`${x}`)", "SELECT name", "<br/>", "&amp;", "C:\\path\\file.txt",
        "https://example.com/a?b=c&d=e", "user@example.com"]
POOLS = [WORDS, WORDS, WORDS, CONTRACTIONS, NUMBERS, PUNCT, UNICODE, EMOJI, SPACES, SPECIALS, CODE]


def random_string(rng: random.Random) -> str:
    parts = []
    for _ in range(rng.randint(1, 14)):
        parts.append(rng.choice(rng.choice(POOLS)))
        parts.append(rng.choice(["", " ", " ", " ", rng.choice(SPACES)]))
    text = "".join(parts)
    if rng.random() < 0.2:
        text = text.capitalize()
    if rng.random() < 0.1:
        text = text.upper()
    return text


def test_strings() -> list:
    rng = random.Random(20250101)
    strings = list(EDGE_CASES)
    seen = set(strings)
    while len(strings) < 1200:
        s = random_string(rng)
        if s not in seen:
            seen.add(s)
            strings.append(s)
    return strings


# ---------------------------------------------------------------------------------------------------

def smollm2_tokenizer(reader: GGUFReader, llama3: bool = False) -> Tokenizer:
    tokens = reader.fields["tokenizer.ggml.tokens"].contents()
    merges = reader.fields["tokenizer.ggml.merges"].contents()
    types = reader.fields["tokenizer.ggml.token_type"].contents()
    assert reader.fields["tokenizer.ggml.pre"].contents() == "smollm"
    bpe = models.BPE(vocab={t: i for i, t in enumerate(tokens)},
                     merges=[tuple(m.split(" ", 1)) for m in merges], ignore_merges=llama3)
    tok = Tokenizer(bpe)
    if llama3:
        # As in Llama 3's tokenizer.json.
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    else:
        # As in SmolLM2's tokenizer.json.
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ])
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False)
                            for t, ty in zip(tokens, types) if ty == 3])
    return tok


def main() -> None:
    os.makedirs(OUT, exist_ok=True)
    strings = test_strings()
    reader = GGUFReader(GGUF)

    # Byte-level BPE (SmolLM2).
    tok = smollm2_tokenizer(reader)
    cases = []
    for s in strings:
        ids = tok.encode(s, add_special_tokens=False).ids
        decoded = tok.decode(ids, skip_special_tokens=False)
        assert decoded == s, f"HF round trip failed for {s!r}: {decoded!r}"
        cases.append({"text": s, "ids": ids})
    write("smollm2_tokenizer.json", {
        "oracle": "tokenizers (HF) from the GGUF vocab/merges; Digits(individual) + ByteLevel",
        "cases": cases})

    # The same vocab under Llama 3's pre-tokenizer and BPE option ignore_merges (a piece that is a token is
    # taken whole): no Llama 3 vocab is reachable, but this runs both code paths against HF.
    llama3 = smollm2_tokenizer(reader, llama3=True)
    write("smollm2_vocab_llama3_rules.json", {
        "oracle": "tokenizers (HF): SmolLM2 vocab/merges, Split(Llama 3 regex) + ByteLevel(use_regex=False), ignore_merges",
        "cases": [{"text": s, "ids": llama3.encode(s, add_special_tokens=False).ids} for s in strings[::2]]})

    # Pre-tokenizer pieces of the four patterns (every 3rd string keeps the file small).
    split = lambda pattern: pre_tokenizers.Split(Regex(pattern), behavior="isolated")
    pres = {"gpt2": split(GPT2_PATTERN), "llama3": split(LLAMA3_PATTERN), "qwen2": split(QWEN2_PATTERN),
            "smolLM": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), split(GPT2_PATTERN)])}
    subset = strings[:len(EDGE_CASES)] + strings[len(EDGE_CASES)::3]
    write("pretokenizer.json", {
        name: [{"text": s, "pieces": [p for p, _ in pre.pre_tokenize_str(s)]} for s in subset]
        for name, pre in pres.items()})

    # SentencePiece (Mistral v1 = Llama 2 style).
    sp = sentencepiece.SentencePieceProcessor(model_file=SP_MODEL)
    n = sp.get_piece_size()
    types = [2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 6 if sp.is_byte(i)
             else 5 if sp.is_unused(i) else 1 for i in range(n)]
    write("mistral_v1_vocab.json", {
        "tokens": [sp.id_to_piece(i) for i in range(n)],
        "scores": [sp.get_score(i) for i in range(n)],
        "types": types,
        "bos": sp.bos_id(), "eos": sp.eos_id(), "unk": sp.unk_id()})
    sp_cases = []
    for s in strings:
        ids = sp.encode(s)
        sp_cases.append({"text": s, "ids": ids, "decoded": sp.decode(ids)})
    write("mistral_v1_tokenizer.json", {"oracle": "sentencepiece, tokenizer.model.v1", "cases": sp_cases})

    # SmolLM2's chat template, rendered by jinja2.
    template_text = reader.fields["tokenizer.chat_template"].contents()
    template = jinja2.Environment().from_string(template_text)
    conversations = [
        [{"role": "user", "content": "Hi!"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is 2+2?"}],
        [{"role": "user", "content": "Hello"}, {"role": "assistant", "content": "Hi, how can I help?"},
         {"role": "user", "content": "Tell me a joke.\nA short one."}],
        [],
    ]
    write("smollm2_chat_template.json", {"template": template_text, "cases": [
        {"messages": m, "addGenerationPrompt": g, "rendered": template.render(messages=m, add_generation_prompt=g)}
        for m in conversations for g in (True, False)]})


def write(name: str, value) -> None:
    path = os.path.join(OUT, name)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    size = os.path.getsize(path)
    assert size < 1_000_000, f"{name} is {size} bytes; fixtures must stay under 1 MB"
    print(f"wrote {path} ({size} bytes)")


if __name__ == "__main__":
    main()
