"""llama.cpp's side of the SmolLM2 bench (see tools/bench-smollm2.sh): the same three
workloads as models/benches/smollm2.rs on the same GGUF file — a decode step and a
5-token block after a 128-token context (logits for every block position, as a verifier
needs), and a 128-token prefill (last logits only) — at each thread count given.
llama.cpp runs with its defaults otherwise (f16 KV cache). Prints one JSON line per
measurement: {"threads", "workload", "ms", "tokens_per_s"} with the median of the runs.
"""

import json
import statistics
import sys
import time

from llama_cpp import Llama

CONTEXT = 128
REPS = 40


def ids(seed, n, vocab):
    return [(seed * 7919 + i * 104729) % vocab for i in range(n)]


def timed(fn, reps=REPS):
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(path, threads):
    for t in threads:
        llm = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=t, n_threads_batch=t,
                    logits_all=True, verbose=False)
        vocab = llm.n_vocab()
        context = ids(7, CONTEXT, vocab)
        llm.reset()
        llm.eval(context)
        for name, n in [("decode", 1), ("block5", 5)]:
            block = ids(99, n, vocab)

            def step():
                llm.n_tokens = CONTEXT
                llm.eval(block)

            s = timed(step)
            print(json.dumps({"threads": t, "workload": name, "ms": s * 1e3, "tokens_per_s": n / s}))
        pre = Llama(model_path=path, n_ctx=512, n_batch=512, n_threads=t, n_threads_batch=t,
                    logits_all=False, verbose=False)

        def prefill():
            pre.reset()
            pre.eval(context)

        s = timed(prefill, reps=10)
        print(json.dumps({"threads": t, "workload": "prefill128", "ms": s * 1e3,
                          "tokens_per_s": CONTEXT / s}))
        sys.stdout.flush()


if __name__ == "__main__":
    main(sys.argv[1], [int(x) for x in sys.argv[2:]] or [1, 2])
