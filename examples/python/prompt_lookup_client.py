"""A verifier client in Python, from the .proto alone: prompt-lookup speculative decoding.

Tandem's verifier speaks plain gRPC, so any language can drive it. This client has no
draft model: it drafts by *prompt lookup* (find the last n tokens earlier in the
sequence and propose what followed them there), sends the block, and commits what the
verdict confirms. With greedy acceptance the result is token for token the target's own
greedy output, which the script checks against a cloud-only session.

With --tree the block is a token tree: every earlier match of the n-gram proposes its
continuation, the continuations are merged into a trie (shared prefixes once), and the
trie is sent as tokens with a parent row per node (0: the sequence, j: node j-1). The
verdict's `path` names the nodes it accepted; the session commits their tokens and the
verifier's token after them.

    python -m venv .venv && .venv/bin/pip install grpcio grpcio-tools
    .venv/bin/python -m grpc_tools.protoc -I ../../protocol/proto \\
        --python_out=. --grpc_python_out=. tandem/v1/verifier.proto
    # with `verifier-node serve --model builtin:tiny-target` running:
    .venv/bin/python prompt_lookup_client.py --prompt-ids 0,481,479,361,480,677,27,677,673
    .venv/bin/python prompt_lookup_client.py --tree 8 --prompt-ids 0,481,479,361,480,677,27,677,673
"""

import argparse
import queue

import grpc

from tandem.v1 import verifier_pb2 as pb
from tandem.v1 import verifier_pb2_grpc as rpc


def lookup(seq, k, ngram=2):
    """Propose up to k tokens: what followed the latest earlier match of the last n-gram."""
    tail = seq[-ngram:]
    for start in range(len(seq) - ngram - 1, -1, -1):
        if seq[start : start + ngram] == tail:
            return seq[start + ngram : start + ngram + k]
    return []


def lookup_tree(seq, k, max_nodes, ngram=2):
    """A trie of what followed each earlier match of the last n-gram, latest match first.

    Returns (tokens, parents): node i is tokens[i], its parent row parents[i] (0: the
    sequence; j: node j-1), parents before children, at most max_nodes nodes.
    """
    tail = seq[-ngram:]
    tokens, parents, child = [], [], {}  # child[(row, token)] = row of that node
    for start in range(len(seq) - ngram - 1, -1, -1):
        if seq[start : start + ngram] != tail:
            continue
        row = 0
        for t in seq[start + ngram : start + ngram + k]:
            if (row, t) not in child:
                if len(tokens) == max_nodes:
                    return tokens, parents
                tokens.append(t)
                parents.append(row)
                child[(row, t)] = len(tokens)
            row = child[(row, t)]
    return tokens, parents


class Session:
    """One bidirectional Session stream, driven request by request."""

    def __init__(self, stub, first):
        self.outbox = queue.Queue()
        self.outbox.put(first)
        self.replies = stub.Session(iter(self.outbox.get, None))

    def ask(self, msg=None):
        if msg is not None:
            self.outbox.put(msg)
        return next(self.replies)

    def close(self):
        self.outbox.put(pb.EdgeMessage(close=pb.Close()))
        self.outbox.put(None)


def open_msg(info, prompt, max_new, generate):
    return pb.EdgeMessage(
        open=pb.Open(
            prompt_ids=prompt,
            tokenizer_fingerprint=info.tokenizer_fingerprint,
            max_new_tokens=max_new,
            mode=pb.ACCEPTANCE_MODE_GREEDY,
            generate=generate,
            ignore_eos=True,
        )
    )


def speculative(stub, info, prompt, max_new, k, tree_nodes=0):
    s = Session(stub, open_msg(info, prompt, max_new, generate=False))
    opened = s.ask().opened
    seq = list(prompt) + [opened.first_token]
    drafted = accepted = 0
    seq_no = 0
    while len(seq) - len(prompt) < max_new:
        if tree_nodes:
            tokens, parents = lookup_tree(seq, k, tree_nodes)
        else:
            tokens, parents = lookup(seq, k), []
        if not tokens:
            tokens, parents = [seq[-1]], []
        seq_no += 1
        reply = s.ask(
            pb.EdgeMessage(
                draft=pb.Draft(
                    session_id=opened.session_id,
                    base_len=len(seq),
                    anchor=seq[-1],
                    tokens=tokens,
                    parents=parents,
                    seq=seq_no,
                )
            )
        )
        if reply.WhichOneof("kind") != "verdict":
            raise SystemExit(f"refused: {reply}")
        v = reply.verdict
        path = list(v.path) if parents else list(range(v.accepted))
        seq += [tokens[n] for n in path] + [v.next_token]
        drafted += len(tokens)
        accepted += v.accepted
    s.close()
    return seq[len(prompt) :][:max_new], drafted, accepted


def cloud_only(stub, info, prompt, max_new):
    s = Session(stub, open_msg(info, prompt, max_new, generate=True))
    out = [s.ask().opened.first_token]
    while True:
        m = s.ask()
        kind = m.WhichOneof("kind")
        if kind == "token":
            out.append(m.token.token)
        elif kind == "finished":
            s.close()
            return out
        else:
            raise SystemExit(f"unexpected {m}")


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--verifier", default="127.0.0.1:50051")
    p.add_argument("--prompt-ids", required=True)
    p.add_argument("--max-new-tokens", type=int, default=48)
    p.add_argument("--k", type=int, default=4)
    p.add_argument(
        "--tree",
        type=int,
        default=0,
        metavar="N",
        help="send a token tree of up to N nodes: every earlier match's continuation",
    )
    a = p.parse_args()
    stub = rpc.VerifierStub(grpc.insecure_channel(a.verifier))
    info = stub.Info(pb.InfoRequest())
    print(f"verifier: {info.model}, vocab {info.vocab_size}, {info.tokenizer_fingerprint}")
    prompt = [int(t) for t in a.prompt_ids.split(",")]
    spec, drafted, accepted = speculative(stub, info, prompt, a.max_new_tokens, a.k, a.tree)
    plain = cloud_only(stub, info, prompt, a.max_new_tokens)
    print(f"prompt lookup: {drafted} drafted, {accepted} accepted")
    print("speculative == cloud-only greedy:", spec == plain)
    if spec != plain:
        raise SystemExit(f"MISMATCH\n{spec}\n{plain}")


if __name__ == "__main__":
    main()
