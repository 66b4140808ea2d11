"""Every kernel family, every version, on one device: microst.lab's validation and timing, all rows
in one JSON file (bench/gpu_check.sh runs it on cuda; the test runs it on emu at small scale).

    PYTHONPATH=. python3 bench/lab_all.py [--device cuda] [--scale full] [--out gpu_out/lab.json]
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "emu"))
    parser.add_argument("--scale", choices=("small", "full"), help="default: full on cuda, small on emu")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--families", nargs="+", help="default: all")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    from microst import ops
    from microst.lab.family import run
    rows = []
    for family in args.families or ops.FAMILIES:
        rows += run(family, "all", args.device, args.scale or ("full" if args.device == "cuda" else "small"),
                    args.repeats)
        print(flush=True)
    if args.out:  # strict JSON: a row that failed has no time (null, not NaN)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        clean = [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]
        args.out.write_text(json.dumps(clean, indent=1))
    bad = [r for r in rows if not r["ok"]]
    for r in bad:
        print(f"FAILED: {r['family']}={r['version']} {r['case']} (max relative error {r['max_rel_err']:.3g})")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
