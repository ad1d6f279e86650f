"""Writes a llama.cpp parity fixture for a GGUF file (see tools/llamacpp-parity.sh): for
SmolLM2 as llama.cpp's converter wrote it, and for a GGUF file Tandem's own `tandem
quantize` wrote (which proves llama.cpp loads it and gives the same tokens).

Runs llama.cpp (through its Python binding) on the file and records:
- the tokenization of a set of strings (special-token texts parsed as tokens, no BOS
  added, as Tandem's `Tokenizer::encode` does);
- each prompt's ids (raw prompts tokenized with the file's BOS policy; chat prompts
  rendered with the file's chat template by jinja2, as transformers renders them);
- the greedy continuation of every prompt, token by token, with the top-2 margin of
  every step (to tell a genuine near-tie from a bug);
- the first step's top-10 logits;
- the file's SHA-256 (a test that rewrites the file checks it gets these bytes).

Chat prompts are skipped for a file without a chat template.

llama.cpp runs with an f32 KV cache and no flash attention, so the only arithmetic that
differs from Tandem's is the order of floating-point sums (both quantize activations
to Q8_1 blocks for Q4_1 weights).
"""

import hashlib
import json
import sys

import jinja2
import numpy as np
from llama_cpp import Llama, llama_cpp

STRINGS = [
    "Hello world",
    " leading space",
    "   three leading spaces and trailing   ",
    "The year 2024 had 366 days; 1234567890.",
    "def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n",
    "Ünïcödé: naïve café, Straße, Ελληνικά, 日本語のテキスト",
    "Emoji 🙂👍🏽 and 🚀!",
    "<|im_start|>user\nHi<|im_end|>\n",
    "tabs\tand\nnewlines\r\n\n",
    "I'm sure they'll say it's 'quoted' and you've DONE it.",
]

RAW_PROMPTS = [
    "The capital of France is",
    "Once upon a time",
    "def quicksort(arr):",
    "The three primary colors are",
    "In 1969, the first humans",
    "Water boils at",
]

CHAT_PROMPTS = [
    "What is the tallest mountain in the world?",
    "Write a haiku about the sea.",
    "List three uses of Python.",
]

NEW_TOKENS = 64


def main(model_path: str, out_path: str) -> None:
    llm = Llama(
        model_path=model_path,
        n_ctx=512,
        n_threads=2,
        n_batch=512,
        logits_all=True,
        type_k=llama_cpp.GGML_TYPE_F32,
        type_v=llama_cpp.GGML_TYPE_F32,
        flash_attn=False,
        verbose=False,
    )
    md = llm.metadata
    add_bos = md.get("tokenizer.ggml.add_bos_token", "true") == "true"
    tokenization = [
        {"text": s, "ids": llm.tokenize(s.encode(), add_bos=False, special=True)}
        for s in STRINGS
    ]
    env = jinja2.Environment(trim_blocks=True, lstrip_blocks=True)
    source = md.get("tokenizer.chat_template")
    template = env.from_string(source) if source else None
    prompts = [
        {"kind": "raw", "text": p, "ids": llm.tokenize(p.encode(), add_bos=add_bos, special=True)}
        for p in RAW_PROMPTS
    ]
    for p in CHAT_PROMPTS if template else []:
        text = template.render(
            messages=[{"role": "user", "content": p}], add_generation_prompt=True
        )
        prompts.append(
            {
                "kind": "chat",
                "user": p,
                "text": text,
                "ids": llm.tokenize(text.encode(), add_bos=False, special=True),
            }
        )
    eog = {llm.token_eos()}
    for p in prompts:
        llm.reset()
        ids = list(p["ids"])
        llm.eval(ids)
        out, margins = [], []
        for step in range(NEW_TOKENS):
            logits = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
            order = np.argsort(-logits)
            if step == 0:
                p["top10"] = [[int(i), float(logits[i])] for i in order[:10]]
            nxt = int(order[0])
            out.append(nxt)
            margins.append(float(logits[order[0]] - logits[order[1]]))
            if nxt in eog:
                break
            llm.eval([nxt])
        p["greedy"] = out
        p["margins"] = margins
    with open(model_path, "rb") as f:
        sha256 = hashlib.sha256(f.read()).hexdigest()
    fixture = {
        "model": model_path.rsplit("/", 1)[-1],
        "sha256": sha256,
        "reference": f"llama.cpp via llama-cpp-python {__import__('llama_cpp').__version__}",
        "settings": "f32 KV cache, no flash attention, n_threads=2",
        "add_bos": add_bos,
        "tokenization": tokenization,
        "prompts": prompts,
    }
    with open(out_path, "w") as f:
        json.dump(fixture, f, indent=1, ensure_ascii=False)
        f.write("\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
