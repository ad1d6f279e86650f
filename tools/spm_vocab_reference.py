"""Writes a vocab-only GGUF with a SentencePiece (`tokenizer.ggml.model = llama`)
vocabulary, and llama.cpp's tokenization of a set of strings with it, as the fixture
`models/tests/fixtures/spm-vocab/` (see tools/llamacpp-parity.sh).

The vocabulary is synthetic but built the way SentencePiece's are: <unk>, <s>, </s>, the
256 byte-fallback tokens <0x00>..<0xFF>, every character of a small corpus, and its most
frequent character n-grams (with "▁" for spaces) scored by frequency. What the test
checks is the algorithm llama.cpp applies to such a file (space prefix, merges by score,
byte fallback for characters outside the vocabulary), on strings that exercise each.
"""

import collections
import json
import sys

import gguf
from llama_cpp import Llama

CORPUS = """The quick brown fox jumps over the lazy dog. Once upon a time there was a little
girl who lived in a village near the forest. Whenever she went out, the little girl wore
a red riding cloak, so everyone in the village called her Little Red Riding Hood. In 1969
the first humans walked on the moon; they returned safely to the earth. The three primary
colors are red, yellow and blue. Water boils at 100 degrees Celsius at sea level."""

STRINGS = [
    "Hello world",
    "The quick brown fox",
    " leading space",
    "  two leading spaces",
    "the moon and the earth",
    "In 1969, 100 degrees!",
    "Ünïcödé café 日本",
    "emoji 🙂 here",
    "tabs\tand\nnewlines",
    "unseen zebra xylophone",
]


def build_vocab():
    text = CORPUS.replace("\n", " ")
    chars = sorted(set(text.replace(" ", "")))
    marked = "\u2581" + text.replace(" ", "\u2581")
    counts = collections.Counter()
    for n in range(2, 7):
        for i in range(len(marked) - n + 1):
            piece = marked[i : i + n]
            if "\u2581" in piece[1:]:
                continue
            counts[piece] += 1
    ngrams = [p for p, c in counts.most_common() if c >= 2][:600]
    tokens, scores, types = [], [], []

    def add(t, s, ty):
        tokens.append(t)
        scores.append(s)
        types.append(ty)

    add("<unk>", 0.0, 2)
    add("<s>", 0.0, 3)
    add("</s>", 0.0, 3)
    for b in range(256):
        add(f"<0x{b:02X}>", 0.0, 6)
    add("\u2581", -1.0, 1)
    for i, c in enumerate(chars):
        add(c, -2.0 - i * 0.01, 1)
    for i, p in enumerate(ngrams):
        add(p, -10.0 - i * 0.01 + counts[p] * 0.1, 1)
    return tokens, scores, types


def main(out_dir):
    tokens, scores, types = build_vocab()
    path = f"{out_dir}/spm-vocab.gguf"
    w = gguf.GGUFWriter(path, "llama")
    w.add_block_count(1)
    w.add_context_length(512)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(4)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_unk_token_id(0)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    llm = Llama(model_path=path, vocab_only=True, verbose=False)
    fixture = {
        "reference": f"llama.cpp via llama-cpp-python {__import__('llama_cpp').__version__}",
        "tokenization": [
            {"text": s, "ids": llm.tokenize(s.encode(), add_bos=False, special=True)}
            for s in STRINGS
        ],
        "with_bos": llm.tokenize(STRINGS[0].encode(), add_bos=True, special=True),
    }
    with open(f"{out_dir}/llamacpp-reference.json", "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1])
