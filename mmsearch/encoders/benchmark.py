"""Throughput of the frozen encoders: region crops/s of EfficientNet-Lite0, texts/s of MiniLM.

    python -m mmsearch.encoders.benchmark --crops 512 --texts 2048 --resolutions 64 96 224

Inputs are synthetic (random uint8 crops; template sentences of 8-16 WordPiece pieces, like
captions and questions). One warm-up batch is run first; the figure is the best of ``--repeats``
timed passes over all inputs. Prints one JSON line per measurement: ``per_s`` (wall clock) and
``per_cpu_s`` (process CPU time; with ``--threads 1`` it is the rate of one dedicated core).
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import numpy as np
import torch

from mmsearch.encoders.efficientnet_lite0 import EfficientNetLite0Encoder
from mmsearch.encoders.minilm import MiniLMEncoder

_WORDS = "red blue green small large cube sphere cylinder left right of the a is there how many what colour".split()


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(_WORDS, size=int(rng.integers(8, 17)))) + "." for _ in range(n)]


def best_time(fn: Callable[[], object], repeats: int) -> tuple[float, float]:
    """Best wall-clock and best process-CPU seconds of ``repeats`` calls.

    CPU time tells what the work costs on a busy (shared) machine; wall time is the figure on a
    quiet one.
    """
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), min(cpus)


def rates(n: int, seconds: tuple[float, float]) -> dict:
    wall, cpu = seconds
    return {"per_s": round(n / wall, 1), "per_cpu_s": round(n / cpu, 1) if cpu > 0 else None}


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--crops", type=int, default=512)
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[64, 96, 224])
    parser.add_argument("--max-tokens", type=int, default=16)
    parser.add_argument("--image-batch", type=int, default=None, help="default: the encoder's (16 on CPU)")
    parser.add_argument("--text-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    results = []
    env = {"device": args.device, "threads": torch.get_num_threads()}
    crops = torch.from_numpy(np.random.default_rng(0).integers(0, 256, size=(args.crops, 3, 64, 64), dtype=np.uint8))
    for resolution in args.resolutions:
        encoder = EfficientNetLite0Encoder(resolution=resolution, batch_size=args.image_batch, device=args.device)
        batch = encoder.to_uint8_batch(crops)  # resize outside the timing: crops arrive at the resolution
        encoder.encode(batch[: encoder.batch_size])
        seconds = best_time(lambda: encoder.encode(batch), args.repeats)
        results.append({"encoder": "efficientnet_lite0", "resolution": resolution, "n": args.crops, **rates(args.crops, seconds), **env})
        print(json.dumps(results[-1]), flush=True)

    texts = synthetic_texts(args.texts)
    encoder = MiniLMEncoder(batch_size=args.text_batch, device=args.device)
    encoder.encode(texts[: args.text_batch], max_tokens=args.max_tokens)
    seconds = best_time(lambda: encoder.encode(texts, max_tokens=args.max_tokens), args.repeats)
    results.append({"encoder": "minilm", "max_tokens": args.max_tokens, "n": args.texts, **rates(args.texts, seconds), **env})
    print(json.dumps(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    main()
