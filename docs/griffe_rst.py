"""Griffe extension for the docs build: render the library's reST-isms as Markdown.

The library's docstrings are Google style with a few Sphinx habits: ``:func:`x```
cross-references, ``:math:`...``` and ``.. math::`` blocks, and ``Example:`` sections.
mkdocstrings renders Markdown, so before the API pages are built this extension rewrites
(in memory only — the source files are untouched):

- ``:func:/:class:/:meth:/:attr:/:data:/:mod:`target``` → an autorefs link when the
  target resolves to an object of the package, else inline code;
- ``:math:`tex``` → ``$tex$`` and ``.. math::`` blocks → ``$$ ... $$`` (pymdownx.arithmatex);
- a parameter list wrapped over two lines (``a, b,`` / ``c: text``) → one line;
- ``Example:`` → ``Examples:`` so doctests render as code.
"""

from __future__ import annotations

import pathlib
import re
import textwrap
from typing import Any

import griffe

_API_PAGES = pathlib.Path(__file__).resolve().parent / "api"

_ROLE = re.compile(r":(?:func|class|meth|attr|data|mod|obj):`(~?)([\w.\s]+?)(?:\(\))?`")
_MATH_ROLE = re.compile(r":math:`([^`]+)`")
_WRAPPED_NAMES = re.compile(
    r"^(?P<indent>[ ]+)(?P<head>\w+(?:, \w+)*,)\n(?P=indent)[ ]*(?=\w+(?:, \w+)*:)", re.MULTILINE)


def _math_blocks(text: str) -> str:
    """``.. math::`` + indented block → one ``$$`` block per paragraph, same indentation."""
    lines = text.split("\n")
    out: list[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped != ".. math::":
            out.append(line)
            i += 1
            continue
        indent = line[: len(line) - len(line.lstrip())]
        i += 1
        block: list[str] = []
        while i < len(lines) and (not lines[i].strip()
                                  or len(lines[i]) - len(lines[i].lstrip()) > len(indent)):
            block.append(lines[i])
            i += 1
        while block and not block[-1].strip():
            i -= 1
            block.pop()
        body = textwrap.dedent("\n".join(block)).strip("\n")
        for para in re.split(r"\n\s*\n", body):
            out += [f"{indent}$$", *(indent + ln for ln in para.split("\n")), f"{indent}$$", ""]
    return "\n".join(out)


class RstToMarkdown(griffe.Extension):
    """Rewrite every docstring of the loaded package once it is fully loaded."""

    def on_package(self, *, pkg: griffe.Module, loader: griffe.GriffeLoader,
                   **kwargs: Any) -> None:
        collection = loader.modules_collection
        # modules with an API page (a "::: module" line under docs/api/): only those
        # are rendered, so only those can be link targets
        rendered = {line.split(":::", 1)[1].strip()
                    for page in _API_PAGES.glob("*.md")
                    for line in page.read_text(encoding="utf-8").splitlines()
                    if line.startswith(":::")}

        def exists(path: str) -> bool:
            """True if ``path`` is an object of this package that the API pages render."""
            try:
                obj = collection.get_member(path)
                if obj.is_alias:
                    obj = obj.final_target
            except (KeyError, ValueError, AttributeError, griffe.AliasResolutionError,
                    griffe.CyclicAliasError):
                return False
            if not obj.path.startswith(pkg.path) or obj.path.rsplit(".", 1)[-1].startswith("_"):
                return False
            if obj.is_module and obj.path not in rendered:
                return False
            # attributes without a docstring are not rendered: nothing to link to
            return not obj.is_attribute or obj.docstring is not None

        def convert(obj: griffe.Object) -> None:
            if obj.docstring is not None:
                obj.docstring.value = self._rewrite(obj, obj.docstring.value, exists)
            for member in obj.members.values():
                if not member.is_alias:
                    convert(member)

        convert(pkg)

    @staticmethod
    def _rewrite(obj: griffe.Object, text: str, exists: Any) -> str:
        scopes = []
        scope = obj if obj.is_class or obj.is_module else obj.parent
        while scope is not None:
            scopes.append(scope.path)
            scope = scope.parent
        scopes.append("")

        def role(match: re.Match) -> str:
            # a target may be wrapped over two lines in the source
            short, target = match.group(1), re.sub(r"\s+", "", match.group(2))
            label = target.rsplit(".", 1)[-1] if short else target
            for base in scopes:
                path = f"{base}.{target}" if base else target
                if exists(path):
                    return f"[`{label}`][{path}]"
            return f"`{label}`"

        text = _ROLE.sub(role, text)
        text = _MATH_ROLE.sub(lambda m: f"${m.group(1)}$", text)
        text = _math_blocks(text)
        text = _WRAPPED_NAMES.sub(lambda m: f"{m.group('indent')}{m.group('head')} ", text)
        return re.sub(r"^Example:\s*$", "Examples:", text, flags=re.MULTILINE)
