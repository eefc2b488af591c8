"""``mmsearch export-arch``: an architecture as a file another tool loads.

``--format mmnas`` writes MMnas's own ``arch/*.json`` layout, ``{"epochN": {"enc": [["self_att_64"],
...], "dec": [[...], ...]}}`` with MMnas's op names and nothing else, which its training scripts
read with ``python3 train_vqa.py --RUN=train --ARCH_PATH=FILE --GENO_EPOCH=N``. ``--format
mmsearch`` writes this project's spec (op names, probabilities, seed, config, task).

The architecture is anything ``train_derived --arch`` takes: a finished search (its experiment
or output directory, local or ``s3://``: the best trial's ``best_arch.json``), a spec JSON or a
named spec.
"""
from __future__ import annotations

import json
import sys
from typing import Sequence

from mmsearch.cli_parsers import export_arch_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = export_arch_parser().parse_args(argv)
    from mmsearch.nas.arch_spec import save_arch_spec
    from mmsearch.recipes.train_derived.arch import resolve_arch

    try:
        spec = resolve_arch(args.arch).replace(epoch=args.epoch)
    except (ValueError, FileNotFoundError, KeyError, OSError) as exc:
        print(f"mmsearch export-arch: {exc}", file=sys.stderr)
        return 2
    mmnas = args.format == "mmnas"
    if args.out is None:
        if mmnas:
            genotype = spec.to_dict(mmnas_names=True)
            print(json.dumps({f"epoch{args.epoch}": {"enc": genotype["enc"], "dec": genotype["dec"]}}))
        else:
            print(json.dumps(spec.to_dict(), indent=1))
        return 0
    path = save_arch_spec(spec, args.out, mmnas_format=mmnas)
    print(f"wrote {path}" + (f" (MMnas: --ARCH_PATH={path} --GENO_EPOCH={args.epoch})" if mmnas else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
