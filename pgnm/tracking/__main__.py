"""``python -m pgnm.tracking lineage <model-uri> [--json]`` and ``import-fallback FILE``."""

from __future__ import annotations

import argparse
import json

from rich.console import Console
from rich.table import Table

from pgnm.config import TrackingConfig
from pgnm.tracking.lineage import lineage
from pgnm.tracking.store import tracking_uri
from pgnm.tracking.tracker import replay_fallback


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m pgnm.tracking", description=__doc__)
    parser.add_argument(
        "--tracking-uri", help="default: $MLFLOW_TRACKING_URI or the embedded store"
    )
    parser.add_argument("--run-dir", default="runs", help="where the embedded store lives")
    sub = parser.add_subparsers(dest="command", required=True)
    show = sub.add_parser("lineage", help="fine-tuned model -> heated model -> run -> data")
    show.add_argument("model_uri", help="models:/<name>@<alias> or models:/<name>/<version>")
    show.add_argument("--json", action="store_true")
    replay = sub.add_parser("import-fallback", help="send a run's mlflow-fallback.jsonl")
    replay.add_argument("file")
    args = parser.parse_args(argv)
    uri = args.tracking_uri or tracking_uri(TrackingConfig(), args.run_dir)

    if args.command == "import-fallback":
        print(f"imported into run {replay_fallback(args.file, args.tracking_uri)}")
        return
    chain = lineage(args.model_uri, uri)
    if args.json:
        print(json.dumps(chain, indent=1))
        return
    table = Table(title=f"lineage of {args.model_uri}")
    for column in ("model", "stage", "run", "data manifest", "settings", "metrics"):
        table.add_column(column, overflow="fold")
    for hop in chain:
        params = hop.get("params", {})
        settings = ", ".join(
            f"{k.split('.')[0] if k.endswith('.name') else k.split('.')[-1]}={v}"
            for k, v in params.items()
        )
        metrics = ", ".join(f"{k}={v:.3f}" for k, v in hop.get("metrics", {}).items())
        run = f"{hop.get('run_name')} ({hop['run_id'][:8]})" if hop.get("run_id") else "-"
        stage = hop["stage"] + (" (baseline)" if hop.get("baseline") else "")
        if hop.get("search_run_id"):
            stage += f" (best of search {hop['search_run_id'][:8]}, trial {hop['search_trial']})"
        data = (
            f"{hop.get('data_manifest')} ({hop.get('data_samples')} samples)"
            if hop.get("data_manifest")
            else "-"
        )
        table.add_row(hop["model"], stage, run, data, settings, metrics)
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
