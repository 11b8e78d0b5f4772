"""The docs site: it builds strictly, its examples run, its numbers are the library's."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import numpy as np
import pytest
from helpers import require

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
GETTING_STARTED = DOCS / "getting-started.md"


def python_blocks(path: pathlib.Path) -> list[str]:
    """The fenced ```python blocks of a Markdown page, in order."""
    return re.findall(r"^```python\n(.*?)^```", path.read_text(encoding="utf-8"),
                      re.MULTILINE | re.DOTALL)


def test_mkdocs_build_strict(tmp_path):
    """`mkdocs build --strict`: no broken link, anchor, nav entry or docstring warning."""
    require("mkdocs")
    require("material")
    require("mkdocstrings_handlers.python")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("index.html", "getting-started/index.html", "math/index.html",
                 "matching/index.html", "distributed/index.html", "migration/index.html",
                 "api/focal_array/index.html", "api/matcher/index.html"):
        assert (tmp_path / page).is_file(), page
    # the figure is referenced and copied
    assert (tmp_path / "figures" / "anchor_matching.png").is_file()
    matching = (tmp_path / "matching" / "index.html").read_text(encoding="utf-8")
    assert "figures/anchor_matching.png" in matching


def test_getting_started_examples_run():
    """Every python block of the getting-started page runs, top to bottom, in one namespace
    (NumPy, JAX jit/grad, PyTorch autograd and torch.compile)."""
    require("jax")
    require("torch")
    blocks = python_blocks(GETTING_STARTED)
    assert len(blocks) >= 5
    namespace: dict = {"__name__": "docs_getting_started"}
    for i, block in enumerate(blocks):
        code = compile(block, f"{GETTING_STARTED.name}[block {i}]", "exec")
        exec(code, namespace)


@pytest.mark.parametrize("page", ["rcnn.md", "focal-variants.md", "assigners.md", "torch.md",
                                  "migration.md"])
def test_guide_page_examples_run(page):
    """The python blocks of a guide page run top to bottom in one namespace (the R-CNN
    recipe: NumPy, a jitted JAX step, PyTorch autograd)."""
    require("jax")
    require("torch")
    path = DOCS / page
    blocks = python_blocks(path)
    assert blocks, page
    namespace: dict = {"__name__": f"docs_{path.stem}"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"{path.name}[block {i}]", "exec"), namespace)


def _table_row(text: str, anchor: str) -> list[str]:
    row = next(line for line in text.splitlines() if line.startswith(f"| {anchor} |"))
    return [cell.strip() for cell in row.strip("|").split("|")]


def _same_to_shown_digits(shown: str, value: float) -> None:
    """``shown`` is ``value`` rounded to the digits printed (4 significant)."""
    digits = len(shown.lstrip("-").replace("0.", "", 1).lstrip("0"))
    assert float(shown) == pytest.approx(float(f"{value:.{digits}g}"), rel=1e-12), (shown, value)


def test_worked_example_numbers_match_library():
    """The worked-example table of the getting-started page equals what the library computes."""
    import focal_array as fa

    text = GETTING_STARTED.read_text(encoding="utf-8")
    probs = np.array([[0.1, 0.9], [0.8, 0.2]])
    labels = np.array([1, 0])
    ce = fa.softmax_cross_entropy(probs, labels, from_logits=False)
    fl = fa.softmax_focal_loss(probs, labels, alpha=0.25, gamma=2.0, from_logits=False)
    for i, name in enumerate(("positive", "negative")):
        _, p_t, alpha_t, ce_shown, fl_shown, ratio_shown = _table_row(text, name)
        assert float(p_t) == probs[i, labels[i]]
        assert float(alpha_t) == (0.25 if labels[i] else 0.75)
        _same_to_shown_digits(ce_shown, float(ce[i]))
        _same_to_shown_digits(fl_shown, float(fl[i]))
        assert float(ratio_shown) == pytest.approx(float(fl[i] / ce[i]), rel=1e-9)
    # the printed line of the first block
    assert "[0.1054 0.2231] [0.0002634 0.0066943]" in text
    assert str(ce.round(4)) == "[0.1054 0.2231]"
    assert str(fl.round(7)) == "[0.0002634 0.0066943]"


def test_math_page_gradient_table_matches_closed_form():
    """The gradient numbers of the math page are the library's gradients."""
    import focal_array as fa
    from focal_array.gradients import sigmoid_focal_loss_value_and_grad

    text = (DOCS / "math.md").read_text(encoding="utf-8")
    for name, p, y in (("positive, y = 1", 0.9, 1.0), ("negative, y = 0", 0.2, 0.0)):
        _, p_shown, dfl_shown, dce_shown = _table_row(text, name)
        assert float(p_shown) == p
        x = np.array([np.log(p / (1 - p))])
        _, g = sigmoid_focal_loss_value_and_grad(x, np.array([y]), reduction="sum")
        _same_to_shown_digits(dfl_shown.replace("−", "-"), float(g[0]))
        _, g_ce = sigmoid_focal_loss_value_and_grad(x, np.array([y]), gamma=0.0,
                                                    reduction="sum")
        assert float(dce_shown.replace("−", "-")) == pytest.approx(float(g_ce[0]), rel=1e-9)
    assert fa.sigmoid_focal_loss is not None


def test_figures_draw_legibly(tmp_path, monkeypatch):
    # docs/make_figures.py redraws every figure of the guide from the library and refuses a
    # figure whose smallest text would be under 11 px in the docs' 688-px column
    require("matplotlib")
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_figures", DOCS / "make_figures.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "FIGURES", tmp_path)
    module.main()
    for name in ("focal_variants", "anchor_matching", "assigners"):
        data = (tmp_path / f"{name}.png").read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width = int.from_bytes(data[16:20], "big")
        assert 1300 <= width <= 1600, (name, width)  # about 9 in at 160 dpi
    # and the check itself refuses small text: the same figure at 8 pt
    monkeypatch.setattr(module, "FONT_PT", 8)
    with pytest.raises(ValueError, match="under 11 px"):
        module.focal_variants(tmp_path / "small.png")
