"""The `roomfuse` command. Each subcommand's flags and body live in its own module (which
exposes ``add_arguments`` and ``main``); this file only wires them up, so a subcommand
imports nothing heavy that another subcommand needs."""
from __future__ import annotations

import argparse
import copy
import importlib
import logging
import sys

# name -> (module, add_arguments, main, one-line help)
COMMANDS = {
    "serve": ("roomfuse.rtc.server", "add_arguments", "main", "host a room: a web page to join with a webcam"),
    "join": ("roomfuse.rtc.client", "add_arguments", "main",
             "join a room from the command line; expose it as a virtual camera"),
    "render": ("roomfuse.render", "add_arguments", "main", "render recorded clips into one room (video file)"),
    "bench": ("roomfuse.bench", "add_arguments", "main", "measure fps and per-stage cost on recorded clips"),
    "inpaint": ("roomfuse.tools", "add_inpaint_arguments", "inpaint_main", "fill the masked pixels of an image"),
    "extend": ("roomfuse.tools", "add_extend_arguments", "extend_main", "extend an image's edges outward"),
    "train": ("roomfuse.growth.train", "add_arguments", "main", "train the growth model"),
    "eval": ("roomfuse.evaluate", "add_arguments", "main", "compare the growth model with classical fills"),
}


class _CommandParser(argparse.ArgumentParser):
    """argparse's errors are already one line and exit 2; keep that, drop the usage dump."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")


class _DefaultsFormatter(argparse.HelpFormatter):
    """Every flag's help ends with its default, unless it already says it or there is
    none to say (a switch that is off, a flag whose absence means "not at all")."""

    @staticmethod
    def has_default(action) -> bool:
        d = action.default
        return bool(action.option_strings) and not (d is None or d is False or d is argparse.SUPPRESS or d == [])

    def _format_action(self, action):
        if action.help is None and self.has_default(action):
            # argparse prints no help line at all for a flag without help text.
            action = copy.copy(action)
            action.help = ""
            action.help = self._get_help_string(action).strip()
        return super()._format_action(action)

    def _get_help_string(self, action):
        text = action.help or ""
        if "default" in text.lower() or not self.has_default(action):
            return text
        default = "x".join(map(str, action.default)) if isinstance(action.default, tuple) else "%(default)s"
        return f"{text} (default: {default})"


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    from . import __version__

    try:
        return installed("roomfuse")
    except PackageNotFoundError:  # run from a checkout that was never installed
        return __version__


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    parser = _CommandParser(prog="roomfuse", description="Everyone in one room, made of their real rooms.",
                            formatter_class=_DefaultsFormatter)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log more, mediapipe's own log lines included")
    parser.add_argument("--version", action="version", version=f"roomfuse {version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_CommandParser)
    sub.required = True
    for name, (module, add, _, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text, formatter_class=_DefaultsFormatter)
        if name == command:  # only the chosen command's module is imported
            getattr(importlib.import_module(module), add)(p)
    return parser


def _chosen(argv: list[str]) -> str | None:
    return next((a for a in argv if a in COMMANDS), None)


def main(argv: list[str] | None = None) -> int:
    """The program. Called without ``argv`` (as the ``roomfuse`` command is), it also keeps
    native libraries' log lines off stderr unless --verbose (``native_logs``)."""
    as_program = argv is None
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(_chosen(argv)).parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if as_program and not args.verbose:
        from .native_logs import StderrFilter

        with StderrFilter():
            return _run(args)
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    module, _, run, _ = COMMANDS[args.command]
    # Errors users cause (a bad file, a wrong key, an unreachable server) are raised as
    # the module's own exception types; they all derive from these bases and carry a
    # one-line message that names the thing at fault.
    from .errors import USER_ERRORS

    try:
        return int(getattr(importlib.import_module(module), run)(args) or 0)
    except USER_ERRORS as e:
        print(f"roomfuse {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
