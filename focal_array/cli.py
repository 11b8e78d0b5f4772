"""The ``focal-array`` command: ``explain`` the focal loss, ``inspect`` a COCO file's matching.

``focal-array explain`` prints the source note's worked example (CE, FL and FL/CE, the ratio
of one anchor's two losses, for a positive and a negative anchor) and a table of the
modulating factor (1 − p_t)^γ alone, or with ``--alpha`` of α_t (1 − p_t)^γ (the same
quantity as the worked example's FL/CE), against p_t and γ; ``--plot`` draws the curves.

``focal-array inspect [COCO.json]`` builds RetinaNet anchors for every image, matches the
image's boxes to them and reports how many anchors are positive, negative and ignored, how
many positives each ground truth gets, which ground truths only the low-quality rule saves
or nothing saves, and how much of the classification loss at initialization the easy
negatives carry under cross-entropy and under focal loss. Without a path it runs on the
sample shipped in the package. ``docs/cli.md`` explains every line and the ``--json`` schema.

Exit codes: 0 success, 2 bad input (missing file, invalid JSON, malformed COCO, bad option
value, an image too large to match within the memory limit, backend or matplotlib not
installed, a standard output that cannot encode the report), 1 stdout closed early
(``| head``), 130 interrupted. Every exit 2 prints one ``focal-array: error:`` line on
stderr (argparse's usage errors print the usage line before it), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import numpy as np

from . import __version__, coco
from ._cli_memory import check_memory
from ._cli_progress import PROGRESS_MIN_IMAGES, Progress
from ._cli_report import PER_IMAGE_ROWS_MAX, _fmt, print_report
from ._cli_stats import UsageError, inspect_dataset, resolve_backend
from .losses import (
    binary_cross_entropy,
    sigmoid_focal_loss,
    softmax_cross_entropy,
    softmax_focal_loss,
)
from .matcher import TIE_RULES

__all__ = ["main"]

PROG = "focal-array"
#: p_t values and γ values of the explain tables (the paper's Fig. 1 γ's, and the p_t at
#: which γ = 2 divides the loss by 4, 100, ~1000 and 10,000).
TABLE_PT = (0.5, 0.9, 0.968, 0.99)
TABLE_GAMMAS = (0.0, 0.5, 1.0, 2.0, 5.0)

# ============================================================================ explain


def _worked_example(alpha: float | None, gamma: float) -> list[dict[str, Any]]:
    """The source note's two anchors, with CE and FL from the library's softmax functions."""
    probs = np.asarray([[0.1, 0.9], [0.8, 0.2]])  # [P(background), P(person)]
    labels = np.asarray([1, 0])  # the first anchor is a person, the second background
    ce = softmax_cross_entropy(probs, labels, from_logits=False)
    fl = softmax_focal_loss(probs, labels, alpha=alpha, gamma=gamma, from_logits=False)
    rows = []
    for i, (name, cls) in enumerate((("positive", "person"), ("negative", "background"))):
        alpha_t = None if alpha is None else (alpha if labels[i] >= 1 else 1.0 - alpha)
        rows.append({"anchor": name, "true_class": cls, "probabilities": probs[i].tolist(),
                     "p_t": float(probs[i, labels[i]]), "alpha_t": alpha_t,
                     "ce": float(ce[i]), "fl": float(fl[i]), "ratio": float(fl[i] / ce[i])})
    return rows


def _ratio_table(p_t: Sequence[float], gammas: Sequence[float], alpha_t: float | None,
                 ) -> np.ndarray:
    """FL/CE of one element for each (p_t, γ) from the library's sigmoid losses, float64.

    ``alpha_t`` None gives the bare modulating factor (1 − p_t)^γ (the focal loss without
    α over CE, which the table labels as such, not as FL/CE); otherwise the focal loss
    is α-balanced for a positive (α_t = α) while CE is not, so the ratio is α_t (1 − p_t)^γ.
    The probability of the true class is fed as a positive (target 1); α_t is applied by
    choosing alpha = α_t, which is the positive's weight.
    """
    p = np.asarray(p_t, dtype=np.float64)[:, None] * np.ones((1, len(gammas)))
    ones = np.ones_like(p)
    ce = binary_cross_entropy(p, ones, from_logits=False)
    out = np.empty_like(p)
    for j, g in enumerate(gammas):
        fl = sigmoid_focal_loss(p[:, j], ones[:, j], alpha=alpha_t, gamma=g, from_logits=False)
        out[:, j] = fl / ce[:, j]
    return out


def _gamma_label(g: float) -> str:
    return f"γ={_fmt(g)}"


def _print_table(out: TextIO, title: str, table: np.ndarray, gammas: Sequence[float]) -> None:
    print(title, file=out)
    header = "  p_t    " + "".join(f"{_gamma_label(g):>11}" for g in gammas)
    print(header, file=out)
    for i, pt in enumerate(TABLE_PT):
        print(f"  {_fmt(pt):<7}" + "".join(f"{_fmt(v):>11}" for v in table[i]), file=out)


def _plot(path: str, gammas: Sequence[float], alpha: float | None) -> None:
    """Loss against p_t for each γ (the paper's Fig. 1), written to ``path``."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display is needed or wanted
    import matplotlib.pyplot as plt

    p = np.linspace(0.001, 1.0, 500)
    ones = np.ones_like(p)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for g in gammas:
        loss = sigmoid_focal_loss(p, ones, alpha=alpha, gamma=g, from_logits=False)
        label = f"γ = {_fmt(g)}" + (" (CE)" if g == 0 and alpha is None else "")
        ax.plot(p, loss, label=label)
    ax.set_xlabel("probability of the true class, $p_t$")
    ax.set_ylabel("loss")
    what = "$-(1-p_t)^\\gamma \\log p_t$" if alpha is None else \
        f"$-\\alpha (1-p_t)^\\gamma \\log p_t$, α = {_fmt(alpha)}"
    ax.set_title(f"Focal loss {what}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 5)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    try:
        fig.savefig(path)
    except (OSError, ValueError) as exc:
        # an unwritable path or an unknown extension is the user's to fix
        raise UsageError(f"cannot write plot {path}: {exc}") from None
    finally:
        plt.close(fig)


def cmd_explain(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``focal-array explain``: worked example, ratio table(s), optional plot."""
    if args.plot is not None:
        # fail before printing anything, so a missing extra is one clear line
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise UsageError("--plot needs matplotlib, which is not installed "
                             "(pip install 'focal-array[plot]')") from None
    alpha_given = args.alpha is not None
    alpha = args.alpha if alpha_given else 0.25
    gamma = args.gamma
    gammas = sorted({*TABLE_GAMMAS, gamma})

    print(f"Focal loss vs cross-entropy: the source note's worked example "
          f"(α = {_fmt(alpha)}, γ = {_fmt(gamma)})", file=out)
    print("probabilities are [P(background), P(person)]; CE = −log p_t, "
          "FL = −α_t (1 − p_t)^γ log p_t, α_t = α for a positive, 1 − α for a negative",
          file=out)
    print("table 1 — per anchor: CE, FL and FL/CE, this anchor's focal loss over its "
          "cross-entropy = α_t (1 − p_t)^γ (α applied)", file=out)
    print(file=out)
    print(f"  {'anchor':<10}{'true class':<12}{'probabilities':<15}{'p_t':>6}{'α_t':>7}"
          f"{'CE':>10}{'FL':>12}{'FL/CE':>10}", file=out)
    for r in _worked_example(alpha, gamma):
        probs = "[" + ", ".join(_fmt(p) for p in r["probabilities"]) + "]"
        print(f"  {r['anchor']:<10}{r['true_class']:<12}{probs:<15}{_fmt(r['p_t']):>6}"
              f"{_fmt(r['alpha_t']):>7}{_fmt(r['ce']):>10}{_fmt(r['fl']):>12}"
              f"{_fmt(r['ratio']):>10}", file=out)
    print(file=out)

    if not alpha_given:
        _print_table(out, "table 2 — modulating factor (1 − p_t)^γ: γ's reduction alone, "
                          "α NOT applied; table 1's FL/CE is α_t × this (pass --alpha for "
                          "α_t (1 − p_t)^γ)",
                     _ratio_table(TABLE_PT, gammas, None), gammas)
    else:
        _print_table(out, f"table 2 — FL/CE = α_t (1 − p_t)^γ, α APPLIED, table 1's FL/CE "
                          f"column: positive, α_t = α = {_fmt(alpha)}",
                     _ratio_table(TABLE_PT, gammas, alpha), gammas)
        print(file=out)
        _print_table(out, f"table 3 — FL/CE = α_t (1 − p_t)^γ, α APPLIED, table 1's FL/CE "
                          f"column: negative, α_t = 1 − α = {_fmt(1.0 - alpha)}",
                     _ratio_table(TABLE_PT, gammas, 1.0 - alpha), gammas)
    print(file=out)
    print("With γ = 2 an example at p_t = 0.9 costs 100× less than under CE and one at "
          "p_t ≈ 0.968 about 1000× less (Lin et al. 2017, §3.2): the many easy background "
          "anchors stop dominating the loss.", file=out)

    if args.plot is not None:
        _plot(args.plot, gammas, alpha if alpha_given else None)
        print(f"wrote {args.plot}", file=out)
    return 0



# ============================================================================ inspect


def cmd_inspect(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``focal-array inspect``: load, match every image, print or dump the report."""
    if args.low > args.high:
        raise UsageError(f"--low ({args.low}) must not exceed --high ({args.high}): IoU >= "
                         f"high is positive, < low negative, in between ignored")
    backend = resolve_backend(args.backend)  # before loading: a missing backend fails fast
    if args.path is None:
        ds = coco.load_sample()
    else:
        # the dropped boxes are reported in the output, so the warning would only repeat it
        ds = coco.load(args.path, warn=False)
    image_size = tuple(args.image_size) if args.image_size else None
    # before any anchor is built: an absurd size is one line, not a MemoryError
    check_memory(ds, image_size, backend, args.max_memory)
    # the text report lists images only for small files: skip building 100k rows for it
    per_image = args.json or len(ds) <= PER_IMAGE_ROWS_MAX
    report = inspect_dataset(ds, backend=backend, image_size=image_size, high=args.high,
                             low=args.low, tie_rule=args.tie_rule, progress=Progress(len(ds)),
                             per_image=per_image)
    if args.json:
        json.dump(report, out, indent=2, ensure_ascii=False)
        out.write("\n")
    else:
        print_report(report, out)
    return 0


# ============================================================================ parser


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None


def _probability(text: str) -> float:
    value = _number(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], got {text}")
    return value


def _nonnegative(text: str) -> float:
    value = _number(text)
    if not (math.isfinite(value) and value >= 0.0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


_MEMORY_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}


def _memory_size(text: str) -> float:
    """``8G``, ``512MiB``, ``1.5T``, ``100000000`` (bytes; binary units) or ``none``."""
    t = text.strip().lower()
    if t in ("none", "inf", "unlimited"):
        return math.inf
    for suffix in ("ib", "b"):
        if t.endswith(suffix) and t[:-len(suffix)][-1:] in "kmgt":
            t = t[:-len(suffix)]
            break
    unit = t[-1:] if t[-1:] in "kmgt" else ""
    try:
        value = float(t[:len(t) - len(unit)])
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a memory size: {text!r} (e.g. 8G, 512M, or none)") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive size, got {text}")
    return value * _MEMORY_UNITS[unit]


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


EXPLAIN_HELP = """\
Print the source note's worked example side by side (table 1): a positive anchor with
probabilities [P(background), P(person)] = [0.1, 0.9] and a negative one with [0.8, 0.2],
their p_t, CE, FL and FL/CE, the anchor's focal loss over its cross-entropy,
= α_t (1 − p_t)^γ (computed with the library's softmax losses from probabilities, α
applied), then a table over p_t in 0.5, 0.9, 0.968, 0.99 and γ in 0, 0.5, 1, 2, 5 (and
--gamma). Without --alpha that table is the modulating factor (1 − p_t)^γ alone, γ's
reduction without α (table 1's FL/CE is α_t times it); with --alpha it is FL/CE
= α_t (1 − p_t)^γ, table 1's quantity, once for a positive and once for a negative anchor.
"""

INSPECT_HELP = """\
Match every image's boxes to RetinaNet anchors (P3-P7, 9 per location) and report:
anchors per image; positive, negative and ignored anchors (totals and per-image
percentiles); positives per ground truth (histogram); gts rescued by low-quality matches
(gts that own positives only because of the low-quality rule: no anchor reaches --high for
them) and gts with no positive at all; negatives per positive; and the share of the total
classification loss that easy negatives carry at initialization.

"Easy negatives" are the background anchors (IoU < --low): at initialization every logit
is -log((1 - π) / π) with prior π = 0.01, so each of their C class elements has p_t = 0.99.
The share is (loss of all C elements of every background anchor) / (loss of all elements
of every positive and background anchor; ignored anchors carry none), under unweighted
sigmoid CE and under focal loss (α = 0.25, γ = 2), with C the file's number of classes.

Without COCO.json the sample shipped with the package is used. Degenerate boxes
(width or height <= 0) are dropped and reported. Sizes are printed width × height.
A bar with the rate (images/s) and the time left shows progress on a terminal's stderr
for more than {min_images} images.
"""


def build_parser() -> argparse.ArgumentParser:
    """The ``focal-array`` argument parser with its ``explain`` and ``inspect`` commands."""
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Focal loss and anchor matching for dense object detection: explain the "
                    "loss, inspect how a COCO file's boxes match RetinaNet anchors.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("explain", help="focal loss vs cross-entropy, with the worked example",
                       description=EXPLAIN_HELP,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--alpha", type=_probability, default=None, metavar="A",
                   help="α in [0, 1] (worked example: 0.25 if not given; the table applies "
                        "α_t only when given)")
    p.add_argument("--gamma", type=_nonnegative, default=2.0, metavar="G",
                   help="γ >= 0 of the worked example (default 2); added to the table")
    p.add_argument("--plot", metavar="FILE.png", default=None,
                   help="also draw loss against p_t for each γ (needs matplotlib: "
                        "pip install 'focal-array[plot]')")
    p.set_defaults(run=cmd_explain)

    p = sub.add_parser("inspect", help="match a COCO file's boxes to RetinaNet anchors",
                       description=INSPECT_HELP.format(min_images=PROGRESS_MIN_IMAGES),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("path", nargs="?", default=None, metavar="COCO.json",
                   help="COCO instances file (default: the shipped sample)")
    p.add_argument("--image-size", type=_positive_int, nargs=2, metavar=("H", "W"),
                   default=None,
                   help="network input size for every image, height first (the report "
                        "prints width × height); each image is resized to fit "
                        "(aspect ratio kept, top-left, the rest padding) and its boxes "
                        "scaled. Default: each image's own height and width, unscaled")
    p.add_argument("--high", type=_probability, default=0.5,
                   help="IoU >= HIGH is positive (default 0.5)")
    p.add_argument("--low", type=_probability, default=0.4,
                   help="IoU < LOW is negative, in between ignored (default 0.4)")
    p.add_argument("--tie-rule", choices=TIE_RULES, default="equal",
                   help="which anchors tie with a gt's best IoU for the low-quality rule: "
                        "'equal' IoUs (default, torchvision's ==) or IoUs within the "
                        "float32 rounding bound of the best ('rounding')")
    p.add_argument("--backend", choices=("numpy", "jax", "torch"), default="numpy",
                   help="array library the matcher runs on (default numpy; jax and torch "
                        "must be installed)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead of the text report")
    p.add_argument("--max-memory", type=_memory_size, default=None, metavar="SIZE",
                   help="refuse (exit 2) when matching one image would need more memory "
                        "than SIZE (e.g. 16G, 512M; none for no limit). Default: half the "
                        "available memory")
    p.set_defaults(run=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``focal-array`` command and return its exit code (never raises SystemExit).

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` if None.

    Returns:
        0 on success, 2 on bad input (with a one-line ``focal-array: error: ...`` on
        stderr), 1 when stdout is closed early (``| head``), 130 when interrupted;
        ``--help`` and ``--version`` return 0.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return int(args.run(args, sys.stdout))
    except SystemExit as exc:  # argparse's --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    except BrokenPipeError:
        # the reader went away (``| head``): not an error worth a message; point stdout at
        # devnull so the interpreter's final flush does not raise again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except (UsageError, coco.CocoFormatError, OSError) as exc:
        # FileNotFoundError, IsADirectoryError, PermissionError are OSErrors; the message
        # already names the file, so a traceback would add nothing for the user
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\n{PROG}: interrupted", file=sys.stderr)
        return 130
    except UnicodeEncodeError as exc:
        # stdout's encoding (PYTHONIOENCODING=ascii, a Latin-1 terminal) lacks γ, α or ×
        print(f"{PROG}: error: standard output's encoding ({exc.encoding}) cannot print "
              f"{exc.object[exc.start:exc.end]!a}; set PYTHONIOENCODING=utf-8",
              file=sys.stderr)
        return 2
    except MemoryError:
        # the up-front estimate (--max-memory) should catch this first; if the machine
        # still runs out, say so in one line rather than a traceback
        print(f"{PROG}: error: out of memory; pass a smaller --image-size or a lower "
              "--max-memory", file=sys.stderr)
        return 2


def _one_line(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        text = f"{exc.strerror}: {exc.filename}"
    return " ".join(text.split())


if __name__ == "__main__":
    sys.exit(main())
