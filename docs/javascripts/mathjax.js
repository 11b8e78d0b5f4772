// MathJax 3 configuration for pymdownx.arithmatex (generic mode: \( \) inline, \[ \] display).
// The MathJax build itself is shipped with the site (vendor/tex-svg-full.js: SVG output and
// every TeX extension in one file), so nothing is fetched from the network.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: true,
    processEnvironments: true
  },
  svg: {
    fontCache: "global"
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex"
  }
};

document$.subscribe(() => {
  // MathJax typesets the first page itself once loaded; later (instant) page loads re-typeset
  if (window.MathJax && typeof window.MathJax.typesetPromise === "function") {
    window.MathJax.typesetPromise();
  }
});
