"""Reference logits and greedy continuation of a Llama-layout checkpoint, from
transformers, for Tandem's candle parity test (see tools/parity.sh)."""

import json
import sys

import torch
import transformers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

PROMPTS = [
    "Once upon a time, there was a brave fox named Leo. Leo lived near the",
    "The red box has a key. The blue box has a cup. Question: what is in the red box? Answer:",
]
NEW_TOKENS = 24
# Logit rows kept per prompt (its last positions), to keep the fixture small.
ROWS = 8


def main(model_dir: str, out_path: str) -> None:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=f"{model_dir}/tokenizer.json")
    bos = model.config.bos_token_id
    cases = []
    for prompt in PROMPTS:
        ids = [bos] + tok(prompt, add_special_tokens=False).input_ids
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0]
            generated = model.generate(
                torch.tensor([ids]),
                attention_mask=torch.ones(1, len(ids), dtype=torch.long),
                max_new_tokens=NEW_TOKENS,
                do_sample=False,
                pad_token_id=model.config.eos_token_id,
            )[0, len(ids):]
        cases.append(
            {
                "prompt": prompt,
                "prompt_ids": ids,
                # The last ROWS positions of the prompt, to 7 significant digits.
                "logits_from": len(ids) - ROWS,
                "logits": [[float(f"{x:.7g}") for x in row] for row in logits[-ROWS:].tolist()],
                # Greedy continuation; stops after the first EOS.
                "greedy_ids": generated.tolist(),
            }
        )
    fixture = {
        "model": model_dir.rstrip("/").split("/")[-1],
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "vocab_size": model.config.vocab_size,
        "cases": cases,
    }
    with open(out_path, "w") as f:
        json.dump(fixture, f, separators=(",", ":"))
        f.write("\n")
    print(out_path)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
