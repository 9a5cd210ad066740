"""``codescaler sample``: N responses per problem from a policy, appended to a resumable JSONL file."""

from __future__ import annotations

import argparse
import os
from collections import Counter
from pathlib import Path

from codescaler.cli import options


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample",
        help="sample N candidate responses per problem from a causal LM or an OpenAI-compatible endpoint",
        description="Writes candidate JSONL (task_id, candidate_id, response). Re-running with the same "
        "--output resumes: problems that already have N candidates are skipped.",
    )
    p.add_argument("--problems", required=True, help="canonical problem JSONL")
    p.add_argument("--output", required=True, help="candidate JSONL file to append to")
    src = p.add_mutually_exclusive_group()
    options.add_policy(src, default="qwen2.5-coder-0.5b-instruct", old=("--model",))
    src.add_argument("--endpoint", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    p.add_argument("--endpoint-model", default="default", help="model name sent to --endpoint")
    p.add_argument("--concurrency", type=int, default=8,
                   help="requests in flight at once to --endpoint (default %(default)s)")
    p.add_argument("--retries", type=int, default=5,
                   help="tries per --endpoint request on connection errors, 5xx and 429 (default %(default)s)")
    p.add_argument("--n", type=int, default=8, help="responses per problem (default %(default)s)")
    p.add_argument("--temperature", type=float, default=0.8, help="sampling temperature (default %(default)s)")
    p.add_argument("--top-p", type=float, default=0.95, help="nucleus sampling mass (default %(default)s)")
    p.add_argument("--max-new-tokens", type=int, default=512, help="tokens per response (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=16, help="sequences per generate() call")
    options.add_limit(p)
    p.add_argument("--seed", type=int, default=0, help="random seed (default %(default)s)")
    p.add_argument("--device", help="cpu, cuda ... (default: cuda when available)")
    p.add_argument("--dtype", default="auto", help="auto (bf16), float32, bfloat16, float16")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from codescaler.data import AppendStore, candidate_to_json, read_problems, task_candidate_key
    from codescaler.sampling import HFSampler, OpenAISampler, SamplingConfig, sample_candidates

    config = SamplingConfig(n=args.n, temperature=args.temperature, top_p=args.top_p,
                            max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, seed=args.seed)
    config.validate()  # before the problems are read or a model loads
    problems = read_problems(args.problems)
    if args.limit is not None:
        problems = problems[: args.limit]
    out = Path(args.output)
    store = AppendStore(out, task_candidate_key, fix="remove the line or choose a new --output", durable=True)
    done = Counter(task for task, _ in store.done())
    todo = sum(1 for p in problems if done.get(p.task_id, 0) < args.n)
    if todo == 0:
        print(f"all {len(problems)} problems already have {args.n} candidates in {out}")
        return 0
    if args.endpoint:
        sampler: HFSampler | OpenAISampler = OpenAISampler(
            args.endpoint, args.endpoint_model, config, api_key=os.environ.get("OPENAI_API_KEY"),
            concurrency=args.concurrency, retries=args.retries)
    else:
        from codescaler.models import resolve_model

        sampler = HFSampler(resolve_model(args.policy), config, device=args.device, dtype=args.dtype)
    with store, tqdm(total=todo, desc="sampling", unit="problem") as bar:
        for batch in sample_candidates(problems, sampler, config, done=done):
            store.extend(candidate_to_json(cand) for cand in batch)  # flushed per row, fsynced per batch
            bar.update(len({c.task_id for c in batch}))
    return 0
