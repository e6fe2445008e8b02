"""The ``edge-vla`` command line: thin wrappers over the modules that do the work."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

from .config import EXIT_CONFIG, ConfigError, Settings, load_settings

EXIT_USAGE = 2


def _settings(args: argparse.Namespace, **overrides) -> Settings:
    return load_settings(getattr(args, "config", None), **overrides)


def _config_errors(exc: ConfigError) -> int:
    print("edge-vla: invalid configuration:", file=sys.stderr)
    for line in exc.lines:
        print(f"  {line}", file=sys.stderr)
    return EXIT_CONFIG


def cmd_run(args: argparse.Namespace) -> int:
    from . import log
    from .daemon import Daemon, StartupError

    settings = _settings(args)
    log.configure(settings.log.level, settings.log.format)
    try:
        return asyncio.run(Daemon(settings).run())
    except StartupError as exc:
        print(f"edge-vla: cannot start: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def cmd_config_check(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(json.dumps(settings.masked(), indent=2, default=str))
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from .runtime.bundle import BundleError
    from .runtime.families import load_runtime

    settings = _settings(args)
    model = settings.model if args.model is None else settings.model.model_copy(update={"path": Path(args.model)})
    try:
        image = np.asarray(Image.open(args.image).convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        print(f"edge-vla: cannot read image {args.image}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        runtime = load_runtime(model)
    except BundleError as exc:
        print(f"edge-vla: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    from .runtime.marks import MarksBase

    if args.elements and not isinstance(runtime, MarksBase):
        print(f"edge-vla: --elements: {model.path} has no perception stage (family "
              f"{type(runtime).__name__}); use a marks or textmatch bundle", file=sys.stderr)
        return EXIT_USAGE
    t0 = time.perf_counter()
    action, stages = runtime.infer(image, args.instruction)
    stages["total"] = (time.perf_counter() - t0) * 1e3
    out = {"v": 1, **action.fields(), "model": runtime.name,
           "latency_ms": {k: round(v, 3) for k, v in stages.items()}}
    if args.elements:
        out["elements"] = runtime.state().layer.describe()
    print(json.dumps(out))
    return 0


def _observe(args: argparse.Namespace, settings: Settings, on_action=None, codec: str = "vp8",
             port_chosen: bool = False):
    from . import harness
    from .broker import BrokerUnavailable
    from .daemon import StartupError

    if not port_chosen:
        settings = harness.with_free_http_port(settings)
    try:
        with harness.private_broker(settings, use_private=not args.external_broker) as s:
            return asyncio.run(harness.observe(s, args.seconds, on_action=on_action, codec=codec))
    except BrokerUnavailable as exc:
        print(f"edge-vla: {exc} (or pass --external-broker with mqtt.host/mqtt.port set)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE) from None
    except StartupError as exc:
        print(f"edge-vla: cannot start: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_demo(args: argparse.Namespace) -> int:
    from . import harness, log
    from .latency import format_table

    settings = _settings(args, source={"kind": "sim", "seed": args.seed, "width": args.width,
                                       "height": args.height})
    if args.seconds is None:
        args.seconds = 120.0 if args.view else 10.0  # time to look at the page
    log.configure("warning", "console" if sys.stderr.isatty() else "json")
    print(f"edge-vla demo: simulator {args.width}x{args.height}, model {settings.model.path.name}, "
          f"{args.seconds:.0f} s", flush=True)
    if args.view:
        settings = _view_settings(settings)
        print(f"live view: {_view_url(settings)}", flush=True)

    def show(a: dict, g2a: float) -> None:
        where = f" ({a['x']},{a['y']})" if "x" in a else ""
        extra = f" text={a['text']!r}" if "text" in a else (f" dy={a['dy']}" if "dy" in a else "")
        print(f"  #{a['seq']:<4} {a['type']:<12}{where}{extra}  model {a['latency_ms']['total']:.1f} ms, "
              f"glass-to-action {g2a:.1f} ms", flush=True)

    obs = _observe(args, settings, on_action=show, port_chosen=args.view)
    rep = harness.report(obs)
    executed = sum(1 for f in obs.feedback if f.get("status") == "executed")
    sim = obs.daemon.sim_executor.executor if obs.daemon and obs.daemon.sim_executor else None
    if sim is not None:
        tasks = sim.tasks()
        print(f"\ntasks: {sum(t['success'] for t in tasks)} of {len(tasks)} succeeded")
        for i, t in enumerate(tasks, 1):
            state = "succeeded" if t["success"] else ("unfinished" if i == len(tasks) else "failed")
            print(f"  task {i}: {t['instruction']!r} {state} after {t['steps']} actions")
    print(f"\n{rep['actions_received']} actions in {rep['seconds']} s ({rep['actions_per_s']}/s), "
          f"{executed} executed by the simulator, {rep['invalid_actions']} invalid")
    print(format_table(rep["latency_ms"]))
    return 0 if rep["actions_received"] > 0 and rep["invalid_actions"] == 0 else 1


def _view_settings(settings: Settings) -> Settings:
    """HTTP on for the live view, on the configured port when it is free (a stable URL), else any."""
    from . import harness
    from .broker import port_free

    http = settings.http.model_copy(update={"enabled": True})
    settings = settings.model_copy(update={"http": http})
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::", "localhost") else http.host
    return settings if http.port and port_free(host, http.port) else harness.with_free_http_port(settings)


def _view_url(settings: Settings) -> str:
    http = settings.http
    host = "127.0.0.1" if http.host in ("0.0.0.0", "::") else http.host
    host = f"[{host}]" if ":" in host else host
    note = " (open it once as /?token=<http.token>)" if http.bearer_token() else ""
    return f"http://{host}:{http.port}/{note}"


def cmd_bench(args: argparse.Namespace) -> int:
    from . import harness, log
    from .latency import format_table

    source = {"kind": args.source, "width": args.width, "height": args.height, "fps": args.fps}
    if args.uri:
        source["uri"] = args.uri
    overrides = {"source": source}
    if args.policy:
        overrides["policy"] = {"kind": args.policy}
    settings = _settings(args, **overrides)
    if args.source == "webrtc":
        settings = harness.for_webrtc(settings)
    log.configure("warning", "json")
    rep = harness.report(_observe(args, settings, codec=args.codec))
    if args.json:
        print(json.dumps(rep, indent=2))
    else:
        codec = f" {args.codec}" if args.source == "webrtc" else ""
        print(f"edge-vla bench: source={args.source}{codec} {args.width}x{args.height}@{args.fps:g} "
              f"model={settings.model.path.name} seconds={rep['seconds']}")
        print(format_table(rep["latency_ms"]))
        for name, st in rep["streams"].items():
            print(f"stream {name}: frames {st['frames']}, overwritten {st['frames_overwritten']}, "
                  f"sampled {st['frames_sampled']}, actions {st['actions_sent']}, stale {st['actions_stale']}")
        for m in rep["glass_to_action_by_minute"]:
            print(f"minute {m['minute']}: glass-to-action p50 {m['p50']:.1f} ms, p95 {m['p95']:.1f} ms (n={m['n']})")
        print(f"actions/s {rep['actions_per_s']}, invalid {rep['invalid_actions']}, "
              f"CPU {rep['cpu_percent_of_one_core']}% of one core, peak RSS {rep['peak_rss_mb']} MB")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="edge-vla", description="vision-language-action daemon for edge devices")
    sub = p.add_subparsers(dest="command", required=True)

    def with_config(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--config", help="TOML config file (or EDGE_VLA_CONFIG)")
        return sp

    with_config(sub.add_parser("run", help="the daemon, in the foreground")).set_defaults(func=cmd_run)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    with_config(cfg_sub.add_parser("check", help="print the effective config or its errors")).set_defaults(
        func=cmd_config_check)

    pr = with_config(sub.add_parser("predict", help="one action for one image"))
    pr.add_argument("--image", required=True)
    pr.add_argument("--instruction", required=True)
    pr.add_argument("--model", help="model bundle folder (default: model.path)")
    pr.add_argument("--elements", action="store_true",
                    help="also print the perceived elements the action was chosen among (marks bundles)")
    pr.set_defaults(func=cmd_predict)

    from .export.cli import add_parser as add_export_parser  # argparse only; torch loads in the handler
    add_export_parser(sub)

    for name, func, helptext in (("demo", cmd_demo, "closed loop on the built-in simulator"),
                                 ("bench", cmd_bench, "per-stage and glass-to-action latency")):
        sp = with_config(sub.add_parser(name, help=helptext))
        sp.add_argument("--seconds", type=float, default=None if name == "demo" else 20.0,
                        help="how long to run (demo: 10 s, or 120 s with --view)" if name == "demo" else None)
        sp.add_argument("--width", type=int, default=1280)
        sp.add_argument("--height", type=int, default=720)
        sp.add_argument("--external-broker", action="store_true",
                        help="use mqtt.host/mqtt.port from the config instead of a private mosquitto")
        sp.set_defaults(func=func)
        if name == "demo":
            sp.add_argument("--seed", type=int, default=0)
            sp.add_argument("--view", action="store_true",
                            help="keep the live view (GET /) up for the demo and print its URL")
        else:
            sp.add_argument("--source", default="sim", choices=["sim", "file", "lavfi", "rtsp", "camera", "webrtc"],
                            help="webrtc: the simulator published by WHIP from a separate process")
            sp.add_argument("--codec", default="vp8", choices=["vp8", "h264"], help="webrtc only")
            sp.add_argument("--uri")
            sp.add_argument("--fps", type=float, default=30.0)
            sp.add_argument("--policy", help="policy.kind override (e.g. oracle)")
            sp.add_argument("--json", action="store_true")

    from .memory.cli import add_parser as add_memory_parser  # argparse only; the store loads in the handler
    add_memory_parser(sub, with_config)
    from .fleet.status import add_parser as add_fleet_parser
    add_fleet_parser(sub, with_config)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        return _config_errors(exc)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
