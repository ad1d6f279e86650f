"""Small random checkpoints written by transformers itself (save_pretrained, bf16,
sharded), with non-default hyper-parameters, plus their reference logits in f32.

Tandem's loader must read what transformers writes: its config form, its tensor names,
its shard index, and each hyper-parameter from the file (see tools/parity.sh).
"""

import json
import sys

import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config

IDS = [0, 17, 200, 5, 99, 31, 250, 8, 64, 128, 3, 77, 190, 12, 45, 2]


def configs():
    common = dict(
        vocab_size=256,
        hidden_size=64,
        intermediate_size=160,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=False,
    )
    llama3 = LlamaConfig(
        **common,
        rms_norm_eps=1e-6,
        attention_bias=True,
        head_dim=24,  # not hidden/heads: must be read, not derived
        rope_parameters={
            "rope_type": "llama3",
            "rope_theta": 500000.0,
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
    )
    qwen2 = Qwen2Config(
        **{**common, "tie_word_embeddings": True},
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )
    qwen3 = Qwen3Config(
        **common,
        rms_norm_eps=1e-6,
        head_dim=32,  # Qwen3 sets head_dim apart from hidden/heads
        attention_bias=False,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
    )
    return {"hf-llama3": llama3, "hf-qwen2": qwen2, "hf-qwen3": qwen3}


def byte_tokenizer() -> Tokenizer:
    """Byte-level BPE with the 256 byte symbols and no merges: one id per byte."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return tok


def main(out_dir: str) -> None:
    torch.manual_seed(1234)
    for name, config in configs().items():
        model = AutoModelForCausalLM.from_config(config)
        with torch.no_grad():
            for p in model.parameters():
                # Larger than the default init so that every weight matters in the logits.
                p.normal_(0.0, 0.2)
        model = model.to(torch.bfloat16)
        path = f"{out_dir}/{name}"
        model.save_pretrained(path, max_shard_size="100KB")
        byte_tokenizer().save(f"{path}/tokenizer.json")
        reference = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
        with torch.no_grad():
            logits = reference(torch.tensor([IDS])).logits[0]
        with open(f"{path}/reference.json", "w") as f:
            json.dump(
                {
                    "transformers": transformers.__version__,
                    "torch": torch.__version__,
                    "ids": IDS,
                    "logits": [[float(f"{x:.7g}") for x in row] for row in logits.tolist()],
                },
                f,
                separators=(",", ":"),
            )
            f.write("\n")
        print(path)


if __name__ == "__main__":
    main(sys.argv[1])
