"""What the commands share: server options, argument types, optional-package checks, --quiet."""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from veclink.errors import InvalidArgument, MissingDependency, VeclinkError
from veclink.validation import int_problem, number_problem

DEFAULT_SERVER = "127.0.0.1:50051"


def add_remote(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--server`` and ``--api-key`` (defaults from the environment) to ``p``."""
    p.add_argument(
        "--server",
        default=os.environ.get("VECLINK_SERVER", DEFAULT_SERVER),
        help=f"host:port of a veclink server (default {DEFAULT_SERVER}, or $VECLINK_SERVER)",
    )
    p.add_argument(
        "--api-key",
        default=os.environ.get("VECLINK_API_KEY"),
        help="API key (default: $VECLINK_API_KEY; prefer the variable: a flag's value "
        "shows in `ps` to every user of the machine)",
    )
    p.add_argument(
        "--tls-ca",
        default=os.environ.get("VECLINK_TLS_CA"),
        help="speak TLS; the server certificate must chain to this PEM CA bundle "
        "(default: $VECLINK_TLS_CA)",
    )
    p.add_argument(
        "--tls",
        action="store_true",
        help="speak TLS, checking the server certificate against the system's CAs",
    )
    p.add_argument(
        "--tls-cert",
        default=os.environ.get("VECLINK_TLS_CERT"),
        help="client certificate (PEM) for mutual TLS (default: $VECLINK_TLS_CERT)",
    )
    p.add_argument(
        "--tls-key",
        default=os.environ.get("VECLINK_TLS_KEY"),
        help="private key (PEM) of --tls-cert (default: $VECLINK_TLS_KEY)",
    )
    return p


def client(args: argparse.Namespace) -> Any:
    """A ``veclink.client.Client`` for ``args.server``, its API key and TLS files."""
    from veclink.client import Client

    def pem(flag: str) -> bytes | None:
        path = getattr(args, flag.replace("-", "_"), None)
        if not path:
            return None
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError as exc:
            raise InvalidArgument(f"--{flag}: cannot read {path}: {exc.strerror}") from exc

    return Client(
        args.server,
        api_key=args.api_key,
        tls=bool(getattr(args, "tls", False)),
        root_certificates=pem("tls-ca"),
        certificate_chain=pem("tls-cert"),
        private_key=pem("tls-key"),
    )


def unreachable_hint(exc: Exception, args: argparse.Namespace) -> str | None:
    """The message for a server that cannot be reached (None for any other error)."""
    from veclink.client import Unavailable

    if not isinstance(exc, Unavailable):
        return None
    tls = (
        "check --tls-ca / --tls-cert / --tls-key against the server's TLS settings"
        if getattr(args, "tls_ca", None) or getattr(args, "tls", False)
        else "if it speaks TLS, add --tls-ca CA.pem (and --tls-cert/--tls-key for mutual TLS)"
    )
    return (
        f"cannot reach a veclink server at {args.server}: is `veclink serve` running there? "
        f"(choose another with --server HOST:PORT or $VECLINK_SERVER; {tls})"
    )


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command: 0 on success, 1 on a veclink error (its message on stderr; an
    unreachable server named with a hint) or an unreadable file, 130 on Ctrl-C."""
    # idle OpenMP threads sleep instead of spinning (read when torch loads, so before any
    # command imports it): on a machine whose cores other processes keep busy, spinning
    # made CPU embedding 3-6x slower (encoders/hf_fast.py); the user's own setting wins
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        with progress_bars(enabled=not getattr(args, "quiet", False)):
            return int(args.func(args))
    except VeclinkError as exc:
        hint = unreachable_hint(exc, args) if getattr(args, "server", None) else None
        print(f"error: {hint or exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file that cannot be read or written
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# ------------------------------------------------------------------------- argument types


def int_at_least(low: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``low``, else a message saying so."""

    def parse(text: str) -> int:
        try:
            value: Any = int(text)
        except ValueError:
            value = text
        problem = int_problem(value, ge=low)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = f"integer >= {low}"
    return parse


positive_int = int_at_least(1)
non_negative_int = int_at_least(0)


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite number > 0."""
    try:
        value: Any = float(text)
    except ValueError:
        value = text
    problem = number_problem(value, gt=0)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return value


def json_object(text: str) -> dict[str, Any]:
    """An argparse ``type``: a JSON object."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc}): {text!r}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object {{...}}, got {text!r}")
    return value


# ------------------------------------------------------------------------- optional packages


def need(module: str, extra: str, what: str) -> None:
    """Raise MissingDependency now, before any work, if ``module`` is not installed.

    Args:
        module: top-level module, e.g. ``"matplotlib"``.
        extra: the veclink extra that provides it.
        what: the flag or input that needs it, e.g. ``"--report"``.
    """
    if importlib.util.find_spec(module) is None:
        raise MissingDependency(
            f"{what} needs {module!r}, which is not installed; "
            f"install it with: pip install 'veclink[{extra}]'"
        )


# ------------------------------------------------------------------------- --quiet


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """With ``enabled=False`` no progress bar shows, the model libraries' included.

    transformers draws a bar while it loads weights; it reads the Hugging Face switch when
    it is imported, so the switch is set here for a command's duration (and turned off in a
    transformers that is already loaded).
    """
    if enabled:
        yield
        return
    key = "HF_HUB_DISABLE_PROGRESS_BARS"
    before = os.environ.get(key)
    hf = sys.modules.get("transformers.utils.logging")
    was_active = hf.is_progress_bar_enabled() if hf is not None else before is None
    os.environ[key] = "1"
    if hf is not None:
        hf.disable_progress_bar()
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = before
        hf = sys.modules.get("transformers.utils.logging")
        if hf is not None and was_active:
            with warnings.catch_warnings():
                # huggingface_hub, if imported meanwhile, keeps the switch it read then
                warnings.simplefilter("ignore")
                hf.enable_progress_bar()
