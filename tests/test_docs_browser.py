"""The built docs site in a real browser (headless Chromium, driven by Playwright).

Every page of ``mkdocs build --strict``, served from localhost and opened at 1280x800:

- nothing is fetched from another machine (every request is intercepted; one that is not
  for the local server fails the test): MathJax and the fonts ship with the site;
- the math is rendered: every ``.arithmatex`` element holds MathJax SVG output, no TeX
  error, and no raw ``\\(`` / ``\\[`` / ``$$`` is left visible;
- nothing is cut off: the page has no horizontal scrollbar, and every element of the
  article that reaches past the article's edges sits inside a box that scrolls;
- identifiers in table cells are not broken across lines.

A static check of the built HTML (no browser needed) backs the first point up.

Needs the ``playwright`` Python package and a Chromium at ``/usr/bin/chromium`` (Debian's
``chromium`` package; override with ``FOCAL_ARRAY_CHROMIUM``): skipped locally when either
is missing, a failure in CI (``CI`` set).
"""

from __future__ import annotations

import functools
import html.parser
import http.server
import os
import pathlib
import subprocess
import sys
import threading
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
CHROMIUM = pathlib.Path(os.environ.get("FOCAL_ARRAY_CHROMIUM", "/usr/bin/chromium"))
VIEWPORT = {"width": 1280, "height": 800}
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-extensions", "--disable-default-apps", "--no-default-browser-check",
    "--metrics-recording-only", "--disable-features=Translate,OptimizationHints,MediaRouter",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost", "[::1]", "::1"}
# page-load budget per page (ms); the whole module should take well under a minute
TIMEOUT_MS = 20_000


def _missing(reason: str):
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (required in CI)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def playwright_api():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _missing("the playwright Python package is not installed")
    if not CHROMIUM.is_file():
        _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    return sync_playwright


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> pathlib.Path:
    """The site, built strictly into a temporary folder."""
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        try:
            __import__(module)
        except ImportError:
            _missing(f"{module} is not installed")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        pass


@pytest.fixture(scope="module")
def server(site):
    """``http://127.0.0.1:<port>/``, serving the built site from a thread."""
    handler = functools.partial(_QuietHandler, directory=str(site))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=10)


def _pages(site: pathlib.Path) -> list[str]:
    """Every HTML page of the site, as URL paths relative to its root."""
    pages = []
    for path in sorted(site.rglob("*.html")):
        rel = path.relative_to(site).as_posix()
        pages.append(rel[: -len("index.html")] if rel.endswith("index.html") else rel)
    return pages


# <link rel=...> that a browser does not fetch by itself
_LINK_RELS_NOT_LOADED = frozenset({"canonical", "alternate", "author", "license", "help",
                                   "next", "prev", "search"})


class _Resources(html.parser.HTMLParser):
    """The URLs an HTML page loads by itself: scripts, stylesheets, fonts, icons, images,
    frames, media (not the links a reader may follow)."""

    def __init__(self):
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "link":
            rels = set((a.get("rel") or "").lower().split())
            if a.get("href") and not rels <= _LINK_RELS_NOT_LOADED:
                self.urls.append(a["href"])
        elif tag in ("script", "img", "iframe", "source", "video", "audio", "embed", "track"):
            self.urls += [a[k] for k in ("src", "srcset", "poster") if a.get(k)]
        elif tag == "object" and a.get("data"):
            self.urls.append(a["data"])


def test_site_html_loads_only_its_own_files(site):
    """No page of the built site refers to a script, stylesheet, font or image elsewhere
    (mkdocs-material's Google Fonts are off, MathJax is vendored)."""
    external = []
    for path in sorted(site.rglob("*.html")):
        parser = _Resources()
        parser.feed(path.read_text(encoding="utf-8"))
        for url in parser.urls:
            parts = urllib.parse.urlsplit(url.split()[0])
            if parts.scheme not in ("", "data") or parts.netloc:
                external.append(f"{path.relative_to(site)}: {url}")
    assert not external, "\n".join(external)
    assert (site / "javascripts" / "vendor" / "tex-svg-full.js").is_file()
    assert "Apache License" in (site / "javascripts" / "vendor" / "LICENSE").read_text()


# the measurements, run in the page once it (and MathJax, where there is math) has settled
_INSPECT = r"""
async () => {
  const out = {math: 0, mathErrors: [], overflow: [], brokenIdentifiers: []};
  const math = Array.from(document.querySelectorAll(".arithmatex"));
  out.math = math.length;
  if (math.length) {
    if (!(window.MathJax && window.MathJax.startup && window.MathJax.startup.promise)) {
      out.mathErrors.push("MathJax did not load");
      return out;
    }
    await window.MathJax.startup.promise;
    if (window.MathJax.typesetPromise) { await window.MathJax.typesetPromise(); }
    for (const el of math) {
      const text = el.innerText;
      const jax = el.querySelector("mjx-container svg");
      if (!jax) { out.mathErrors.push("not rendered: " + el.textContent.slice(0, 80)); }
      if (el.querySelector("mjx-merror, [data-mjx-error]")) {
        out.mathErrors.push("TeX error: " + el.textContent.slice(0, 80));
      }
      if (/\\\(|\\\[|\$\$/.test(text)) {
        out.mathErrors.push("raw TeX visible: " + text.slice(0, 80));
      }
    }
  }
  const root = document.documentElement;
  if (root.scrollWidth > root.clientWidth) {
    out.overflow.push(`page: scrollWidth ${root.scrollWidth} > clientWidth ${root.clientWidth}`);
  }
  if (document.body.scrollWidth > root.clientWidth) {
    out.overflow.push(`body: scrollWidth ${document.body.scrollWidth} > ${root.clientWidth}`);
  }
  // the article's column: .md-content (its inner box has margins that material's table
  // wrappers and code blocks reach into on purpose)
  const article = document.querySelector(".md-content__inner");
  const column = document.querySelector(".md-content");
  if (article && column) {
    const box = column.getBoundingClientRect();
    const scrolls = (el) => {
      for (let a = el.parentElement; a && a !== article; a = a.parentElement) {
        const ox = getComputedStyle(a).overflowX;
        if (ox === "auto" || ox === "scroll") { return true; }
      }
      return false;
    };
    for (const el of article.querySelectorAll("*")) {
      const r = el.getBoundingClientRect();
      if (r.width === 0 && r.height === 0) { continue; }
      if ((r.right > box.right + 1 || r.left < box.left - 1) && !scrolls(el)) {
        const name = el.tagName.toLowerCase() + (el.className && el.className.baseVal === undefined
          ? "." + String(el.className).trim().split(/\s+/).join(".") : "");
        out.overflow.push(`${name} [${Math.round(r.left)}, ${Math.round(r.right)}] outside ` +
          `the column [${Math.round(box.left)}, ${Math.round(box.right)}]: ` +
          (el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 60));
      }
    }
    // an identifier (code without spaces) in a table cell stays on one line
    for (const code of article.querySelectorAll("td code, th code")) {
      const text = code.textContent;
      if (text.length > 1 && !/\s/.test(text) && code.getClientRects().length > 1) {
        out.brokenIdentifiers.push(text);
      }
    }
  }
  return out;
}
"""


def test_site_offline_math_and_width(playwright_api, site, server, tmp_path):
    pages = _pages(site)
    assert "" in pages and "math/" in pages, pages
    outside: list[str] = []
    failed: list[str] = []
    problems: dict[str, list[str]] = {}
    math_pages = []

    def route(route):
        url = route.request.url
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme in ("data", "blob", "about") or parsed.hostname in LOCAL_HOSTS:
            route.continue_()
        else:
            outside.append(url)
            route.abort()

    def finished(response):
        if response.status >= 400 and not response.url.endswith("/404.html"):
            failed.append(f"{response.status} {response.url}")

    with playwright_api() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),  # a fresh profile
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport=VIEWPORT, service_workers="block",
        )
        try:
            context.route("**/*", route)
            context.on("response", finished)
            page = context.pages[0] if context.pages else context.new_page()
            page.set_default_timeout(TIMEOUT_MS)
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            for rel in pages:
                errors.clear()
                page.goto(server + rel, wait_until="load")
                result = page.evaluate(_INSPECT)
                issues = [*result["mathErrors"], *result["overflow"],
                          *(f"identifier broken across lines in a table: {t}"
                            for t in result["brokenIdentifiers"]),
                          *(f"script error: {e}" for e in errors)]
                if result["math"]:
                    math_pages.append(rel)
                if issues:
                    problems[rel or "/"] = issues
        finally:
            context.close()

    report = [f"requests left the machine: {sorted(set(outside))}"] if outside else []
    report += [f"failed local request: {f}" for f in sorted(set(failed))]
    report += [f"{rel}:\n  " + "\n  ".join(issues[:12]) for rel, issues in problems.items()]
    assert not report, "\n".join(report)
    # the pages whose Markdown has math really do have it (and so were checked above)
    assert "math/" in math_pages and "distributed/" in math_pages, math_pages
