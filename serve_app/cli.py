"""`faceserve …`: the command line. A thin adapter over the service layer and model packs."""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from serve_app.config import Settings
from serve_app.errors import FaceserveError, InvalidParameter
from serve_app.service import thresholds
from serve_app.vision.packs.base import ModelPack
from serve_app.vision.packs.registry import PACKS, list_packs, pack_class, ready_pack


def _print_json(value: Any) -> None:
    json.dump(value, sys.stdout, indent=2)
    sys.stdout.write("\n")


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InvalidParameter(f"cannot read {path}: {exc.strerror}") from None


def _ready_pack(settings: Settings, name: str | None) -> ModelPack:
    return ready_pack(settings, name, lambda message: print(message, file=sys.stderr))


def cmd_detect(args: argparse.Namespace, settings: Settings) -> int:
    from serve_app.service.analysis import detect_faces

    pack = _ready_pack(settings, args.pack)
    result = detect_faces(pack, _read(args.image), settings.image_limits)
    _print_json({"model_version": pack.model_version, **result.to_dict()})
    return 0


def cmd_compare(args: argparse.Namespace, settings: Settings) -> int:
    from serve_app.service.analysis import compare_largest

    pack = _ready_pack(settings, args.pack)
    result = compare_largest(
        pack, _read(args.image_a), _read(args.image_b), args.threshold, settings.image_limits
    )
    _print_json({"model_version": pack.model_version, **result.to_dict()})
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    if args.models_command == "list":
        rows = [info.__dict__ for info in list_packs(settings)]
        if args.json:
            _print_json(rows)
        else:
            print(f"model directory: {settings.model_dir}")
            print(f"{'pack':<12} {'version':<8} {'dim':>4}  {'prepared':<9} {'offline':<8} license")
            for r in rows:
                print(
                    f"{r['name']:<12} {r['version']:<8} {r['embedding_dim']:>4}  "
                    f"{'yes' if r['prepared'] else 'no':<9} {'yes' if r['offline'] else 'no':<8} "
                    f"{r['license']}"
                )
        return 0
    if args.models_command == "prepare":
        names = args.names or [n for n, cls in PACKS.items() if cls.offline]
        for name in names:
            started = time.perf_counter()
            target = pack_class(name).prepare(settings.model_dir)
            print(f"{name}: ready in {target} ({time.perf_counter() - started:.1f} s)")
        return 0
    if args.models_command == "pull":
        from serve_app.vision.packs.insightface_packs import pull_pack

        cls = pack_class(args.name)
        if cls.offline:
            print(f"{args.name} ships with the Python packages; use `faceserve models prepare`.")
            return 0
        print(
            f"{args.name}: InsightFace weights are licensed for non-commercial research only.",
            file=sys.stderr,
        )
        target = pull_pack(
            args.name, settings.model_dir, _download_progress, settings.insightface_url
        )
        print(f"\n{args.name}: ready in {target}")
        return 0
    raise InvalidParameter(f"unknown models command {args.models_command!r}")


def _download_progress(done: int, total: int) -> None:
    if total > 0:
        print(f"\r  {done / 1e6:.1f} / {total / 1e6:.1f} MB", end="", file=sys.stderr, flush=True)


def cmd_eval(args: argparse.Namespace, settings: Settings) -> int:
    from serve_app.evaluation.lfw import evaluate, parse_pairs
    from serve_app.evaluation.pipelines import dlib_pipeline, pack_pipeline

    test = _limit(parse_pairs(Path(args.pairs)), args.limit)
    train = _limit(parse_pairs(Path(args.train_pairs)), args.limit) if args.train_pairs else None
    root = Path(args.root)
    if not root.is_dir():
        raise InvalidParameter(f"LFW image root {root} is not a directory")
    pipelines = [pack_pipeline(_ready_pack(settings, args.pack), settings.image_limits)]
    if args.baseline == "dlib":
        pipelines.append(dlib_pipeline())
    results = []
    for pipeline in pipelines:
        print(f"evaluating {pipeline.name} …", file=sys.stderr, flush=True)
        results.append(evaluate(pipeline, root, test, train, progress=not args.json))
    if args.json:
        _print_json([r.to_dict() for r in results])
        return 0
    print(f"LFW pairs: {args.pairs}  ({results[0].protocol})")
    header = f"{'pipeline':<44} {'accuracy':>9} {'ROC AUC':>8} {'TAR@FAR=1e-3':>13} "
    print(header + f"{'no face':>8} {'ms/image':>9}")
    for r in results:
        acc = f"{100 * r.accuracy:.2f}%" + (
            f"±{100 * r.accuracy_std:.2f}" if r.accuracy_std else ""
        )
        print(
            f"{r.pipeline:<44} {acc:>9} {r.roc_auc:>8.4f} {100 * r.tar_at_far_1e3:>12.2f}% "
            f"{r.no_face_detected:>8} {r.median_ms_per_image:>9.1f}"
        )
    print(f"images: {results[0].images}; when no face is detected: {results[0].no_face_policy}")
    if len(results) == 2:
        speedup = results[1].median_ms_per_image / results[0].median_ms_per_image
        print(f"speed: {results[0].pipeline} is {speedup:.1f}x faster per image (median)")
    return 0


def _limit(folds: list, limit: int | None) -> list:
    if not limit:
        return folds
    return [
        [p for p in fold if p.same][:limit] + [p for p in fold if not p.same][:limit]
        for fold in folds
    ]


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from serve_app.app import SERVE_CONFIG
    from serve_app.server import run_server

    if args.port:
        settings = Settings.from_env(port=args.port)
    return run_server(settings, Path(args.config) if args.config else SERVE_CONFIG)


def cmd_loadtest(args: argparse.Namespace, settings: Settings) -> int:
    from serve_app.loadtest.runner import RunOptions, run

    options = RunOptions(
        sla=Path(args.sla),
        profile=args.profile,
        host=args.host,
        scenarios=tuple(args.scenario or ()),
        output=Path(args.output) if args.output else None,
        locustfile=Path(args.locustfile) if args.locustfile else None,
        ray_address=args.ray_address,
        benchmarks=Path(args.benchmarks) if args.benchmarks else None,
        chart_dir=Path(args.chart_dir) if args.chart_dir else None,
        serve_config=Path(args.config) if args.config else None,
        num_cpus=args.num_cpus,
        keep_collection=args.keep_collection,
        ready_timeout_s=args.ready_timeout,
        command="faceserve " + shlex.join(args.raw_argv),
    )
    return run(options)


def _audit_key_change(store: Any, operation: str, **detail: Any) -> None:
    """Key changes from the command line are in the audit log too (client `cli`)."""
    from serve_app.store.audit import AuditEntry

    store.append_audit([AuditEntry(f"cli:{operation}", client="cli", status=0, detail=detail)])


def cmd_keys(args: argparse.Namespace, settings: Settings) -> int:
    """`faceserve keys create|list|revoke`, against the service's database."""
    from serve_app.store import EmbeddedPostgres
    from serve_app.store.security import SecurityStore

    server = None
    url = settings.database_url
    if not url:  # the embedded database: the running service's, or started for this command
        server = EmbeddedPostgres(settings.data_dir)
        url = server.attach()
        if url is None:
            url = server.start()
        else:
            server = None  # someone else's: not ours to stop
    store = SecurityStore.open(url)
    try:
        if args.keys_command == "create":
            record, secret = store.create_key(args.role, args.collection or None, args.expires)
            _audit_key_change(store, "create_key", made_key=record.key_id, role=record.role)
            _print_json({**record.to_json(), "secret": secret})
            print("the secret is shown this once; keep it safe.", file=sys.stderr)
        elif args.keys_command == "list":
            _print_json([k.to_json() for k in store.list_keys()])
        else:
            revoked = store.revoke_key(args.key_id)
            _audit_key_change(store, "revoke_key", revoked_key=revoked.key_id)
            _print_json(revoked.to_json())
    finally:
        store.close()
        if server is not None:
            server.stop()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faceserve", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("detect", help="detect faces in an image and print them as JSON")
    p.add_argument("image")
    p.add_argument("--pack", help="model pack (default: FACESERVE_MODEL_PACK or dlib-r29)")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("compare", help="similarity of the largest faces of two images")
    p.add_argument("image_a")
    p.add_argument("image_b")
    p.add_argument(
        "--threshold", type=float, default=thresholds.COMPARE, help="match threshold, 0-100"
    )
    p.add_argument("--pack")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("models", help="list, prepare or download model packs")
    msub = p.add_subparsers(dest="models_command", required=True)
    m = msub.add_parser("list", help="packs, versions and whether their files are ready")
    m.add_argument("--json", action="store_true")
    m = msub.add_parser("prepare", help="convert/verify packs once (default: the offline ones)")
    m.add_argument("names", nargs="*")
    m = msub.add_parser("pull", help="download an InsightFace pack (online only)")
    m.add_argument("name", choices=sorted(n for n, c in PACKS.items() if not c.offline))
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("eval", help="accuracy on a benchmark")
    esub = p.add_subparsers(dest="benchmark", required=True)
    e = esub.add_parser("lfw", help="LFW verification protocol")
    e.add_argument("--root", required=True, help="folder of <Name>/<Name>_NNNN.jpg images")
    e.add_argument("--pairs", required=True, help="pairs file to report on")
    e.add_argument("--train-pairs", help="pairs file to choose the threshold on (one-fold files)")
    e.add_argument("--baseline", choices=["dlib"], help="also run dlib's own pipeline")
    e.add_argument("--pack")
    e.add_argument("--limit", type=int, help="at most N same and N different pairs per fold")
    e.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("keys", help="create, list or revoke API keys (in the database)")
    ksub = p.add_subparsers(dest="keys_command", required=True)
    k = ksub.add_parser("create", help="a new key; its secret is printed once")
    k.add_argument("--role", required=True, choices=["read", "write", "admin"])
    k.add_argument(
        "--collection", action="append", metavar="NAME", help="only this collection (repeatable)"
    )
    k.add_argument("--expires", type=int, metavar="DAYS", help="refused after DAYS days")
    ksub.add_parser("list", help="every key (never a secret)")
    k = ksub.add_parser("revoke", help="refuse a key from now on")
    k.add_argument("key_id")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("serve", help="start the HTTP service (Ray Serve + PostgreSQL)")
    p.add_argument("--port", type=int, help="HTTP port (default: FACESERVE_PORT or 8000)")
    p.add_argument("--config", help="Serve config file (default: serve_config.yaml)")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser(
        "loadtest",
        help="run an SLA profile with locust; exit 1 on any missed threshold",
        description="Run the SLA file's profile with locust (headless) against the service "
        "(started here unless --host), print a pass/fail table per threshold and write CSV, "
        "HTML and PNG reports. Exit status: 0 all thresholds met, 1 one missed, 2 bad SLA "
        "file or arguments, 3 could not run.",
    )
    p.add_argument("--sla", required=True, help="the SLA file, e.g. loadtests/sla.yaml")
    p.add_argument("--profile", help="profile in the SLA file (default: its default_profile)")
    p.add_argument("--host", help="URL of a running service (default: start one here)")
    p.add_argument("--scenario", action="append", help="run only this scenario (repeatable)")
    p.add_argument("--output", help="report folder (default: loadtest-results/PROFILE-TIME)")
    p.add_argument("--locustfile", help="default: locustfile.py beside the SLA file")
    p.add_argument(
        "--ray-address",
        help="the service's Ray cluster, for fault scenarios with --host (e.g. ray://head:10001)",
    )
    p.add_argument(
        "--benchmarks", help="write the results as this profile's section of BENCHMARKS.md"
    )
    p.add_argument("--chart-dir", help="where --benchmarks puts the chart (default: docs/loadtest)")
    p.add_argument("--config", help="Serve config of the started service (serve_config.yaml)")
    p.add_argument("--num-cpus", type=int, help="CPUs for the started service's Ray")
    p.add_argument(
        "--keep-collection", action="store_true", help="keep the seeded collection afterwards"
    )
    p.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        help="seconds to wait for /readyz before giving up (default 120)",
    )
    p.set_defaults(func=cmd_loadtest)

    from serve_app.cli_jobs import add_parsers

    add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.raw_argv = sys.argv[1:] if argv is None else argv
    try:
        settings = Settings.from_env()
        return int(args.func(args, settings))
    except FaceserveError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
