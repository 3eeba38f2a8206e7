"""Notebooks to PDF: time per notebook in one running process, and the TeX-to-Typst math converters.

    python benchmarks/bench_export_notebooks.py                  # both tables
    python benchmarks/bench_export_notebooks.py --corpus DIR     # also every .ipynb under DIR: converted/total
    PYTHONPATH=/path/to/old/checkout python benchmarks/bench_export_notebooks.py --only notebooks

Notebooks: the test fixtures (tests/fixtures/notebooks, with the nbsphinx and nbconvert notebooks in others/)
and the project's own notebooks/, each exported with TypstPDFExporter().from_filename, fastest of --repeat
runs after one warm-up (fonts scanned once per process, as in a long-running server or a batch).

Math: 117 spans as notebooks write them (hand-picked TeX of statistics, ML and physics notebooks, with
MathJax's environments, and SymPy's own latex() output), each converted alone; "Typst accepts" counts the
outputs that ``eval(..., mode: "math")`` compiles and that hold no code. pandoc (pypandoc-binary) is
measured if installed: it is a process per call, or one per notebook when the spans are batched.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "tests" / "fixtures" / "notebooks").glob("**/*.ipynb")) + sorted((ROOT / "notebooks").glob("*.ipynb"))

HAND = [
    r"\text{e}^{i\pi} = -1", r"\int\limits_{-\infty}^\infty f(x) \delta(x - x_0) dx = f(x_0).",
    r"\phi = \frac{1 + \sqrt{5}}{2}", r"a^2 + b^2 = c^2", r"x^{2} + 2.0 y + \sin{\left (z \right )}",
    r"E = mc^2", r"\hat{\beta} = (X^\top X)^{-1} X^\top y", r"\mathcal{L}(\theta) = -\sum_{i=1}^{N} y_i \log \hat{y}_i",
    r"p(x \mid \mu, \sigma^2) = \frac{1}{\sqrt{2\pi\sigma^2}} e^{-\frac{(x-\mu)^2}{2\sigma^2}}",
    r"\nabla \cdot \mathbf{E} = \frac{\rho}{\varepsilon_0}", r"\lim_{x \to 0} \frac{\sin x}{x} = 1",
    r"\binom{n}{k} = \frac{n!}{k!(n-k)!}", r"\mathbb{E}[X] = \int_{\Omega} X \, \mathrm{d}P",
    r"\|x\|_2 = \sqrt{\sum_i x_i^2}", r"\lVert A \rVert_F", r"\langle u, v \rangle", r"\{ x \in \mathbb{R} : x > 0 \}",
    r"f(x) = \begin{cases} 1 & x > 0 \\ 0 & \text{otherwise} \end{cases}",
    r"\begin{pmatrix} 1 & 2 \\ 3 & 4 \end{pmatrix}", r"\begin{bmatrix} a & b \\ c & d \end{bmatrix}",
    r"\det \begin{vmatrix} a & b \\ c & d \end{vmatrix} = ad - bc",
    r"\begin{array}{cc} 1 & 0 \\ 0 & 1 \end{array}", r"\operatorname{argmax}_\theta \; p(\theta \mid x)",
    r"\sqrt[3]{x} \neq \pm 1", r"a \leq b \geq c \approx d \sim e \propto f \equiv g",
    r"A \subseteq B \cup C \cap D, \; x \notin \emptyset", r"\forall \epsilon > 0 \; \exists \delta > 0",
    r"\frac{\partial^2 u}{\partial t^2} = c^2 \nabla^2 u", r"\iint_D f \,dA", r"\prod_{i=1}^n x_i",
    r"x_1, x_2, \ldots, x_n", r"a_1 + \cdots + a_n", r"\hbar \omega", r"\vec{F} = m\vec{a}",
    r"\dot{x} = \ddot{y}", r"\overline{z} \tilde{w} \bar{v}", r"\underbrace{a + b}_{n}", r"\overbrace{x+y}^{2}",
    r"\mathbf{x}^\intercal \mathbf{y}", r"\boldsymbol{\mu}", r"\textbf{bold} \; \mathrm{d}x",
    r"\left[ \frac{a}{b} \right]", r"\left\{ x \right\}", r"\left| x \right|", r"\Big( x \Big)",
    r"x \xrightarrow{f} y", r"\overset{!}{=}", r"\underset{x}{\min}", r"\stackrel{def}{=}",
    r"a \pmod{n}", r"a \bmod n", r"\color{red}{x} + y", r"\alpha\beta\gamma\Gamma\Delta\Omega\vartheta\varphi",
    r"\aleph_0 \ell \Re \Im", r"A \otimes B \oplus C", r"x \cdot y \times z \div w", r"f \circ g",
    r"\sum_{\substack{0 \le i \le m \\ 0 < j < n}} P(i, j)", r"\log_2 n \ln x \exp(x)",
    r"\max_{i} \min_j", r"\mathit{text}", r"\mathsf{A} \mathtt{B}", r"\frac{dy}{dx}\bigg|_{x=0}",
    r"\tfrac{1}{2} \dfrac{a}{b}", r"x \in [0, 1)", r"10^{-3}", r"\$5", r"50\%",
    r"\begin{align} a &= b + c \\ d &= e \end{align}",
    r"\begin{aligned} f(x) &= x^2 \\ &= x \cdot x \end{aligned}",
    r"\begin{equation} \int_0^1 x\,dx = \tfrac12 \end{equation}",
    r"\begin{gather} a = b \\ c = d \end{gather}",
    r"\phi = \frac{1 + \sqrt{5}}{2} \label{golden-mean}", r"a^2 + b^2 = c^2 \tag{99.4}",
    r"\begin{align*} x &= 1 \nonumber \\ y &= 2 \end{align*}",
    r"\newcommand{\R}{\mathbb{R}} \R^n", r"\boxed{E = mc^2}", r"\unknownmacro{x}",
    r"\text{if } x > 0", r"\mathbb{1}_{A}", r"\mathrm{KL}(P \| Q)", r"\sigma(z) = \frac{1}{1 + e^{-z}}",
]


def sympy_spans() -> list[str]:
    """SymPy's text/latex as a notebook shows it: ``\\displaystyle`` and its latex() of 35 expressions."""
    import sympy as sp

    x, y, z, n, t, a = sp.symbols("x y z n t alpha")
    f = sp.Function("f")
    exprs = [
        sp.Integral(sp.exp(-x**2), (x, -sp.oo, sp.oo)), sp.integrate(x**2 * sp.sin(x), x), sp.diff(sp.sin(x) * sp.exp(x), x),
        sp.Matrix([[1, x], [y, 2]]), sp.Matrix([[1, 2, 3]]).T, sp.series(sp.cos(x), x, 0, 6), sp.Sum(1 / n**2, (n, 1, sp.oo)),
        sp.Limit(sp.sin(x) / x, x, 0), sp.Eq(f(t).diff(t, 2) + f(t), 0), sp.sqrt(x**2 + y**2), sp.Rational(3, 7) * x,
        sp.Piecewise((x, x > 0), (-x, True)), sp.factorial(n), sp.binomial(n, 3), sp.gamma(a), sp.Abs(x - 1),
        sp.Derivative(f(x, y), x, y), sp.exp(sp.I * sp.pi), sp.log(x, 2), sp.besselj(0, x), sp.Product(x, (x, 1, n)),
        sp.Matrix([[sp.cos(a), -sp.sin(a)], [sp.sin(a), sp.cos(a)]]), sp.Lambda(x, x**2), sp.FiniteSet(1, 2, 3),
        sp.Interval(0, 1), x**a, sp.conjugate(z), sp.floor(x), sp.atan2(y, x), sp.O(x**3),
        sp.solve(x**2 - 2, x), sp.Tuple(x, y), {x: 1, y: 2}, sp.Ne(x, y), sp.Function("g")(x).diff(x),
    ]
    return [r"\displaystyle " + sp.latex(e) for e in exprs]


def bench_notebooks(repeat: int, corpus: Path | None) -> None:
    import importlib
    import logging
    import warnings

    from torq_nb.export import TypstPDFExporter

    module = importlib.import_module("torq_nb.export.typst_pdf")
    logging.disable(logging.WARNING)
    exporter = TypstPDFExporter()
    exporter.from_filename(str(NOTEBOOKS[0]))  # warm-up: the font scan
    print(f"Exporter: {module.__file__}\n")
    print("| notebook | ms per export |")
    print("|---|---:|")
    total = 0.0
    for path in NOTEBOOKS:
        best = float("inf")
        for _ in range(repeat):
            start = time.perf_counter()
            exporter.from_filename(str(path))
            best = min(best, time.perf_counter() - start)
        total += best
        print(f"| {path.relative_to(ROOT)} | {best * 1000:,.1f} |")
    print(f"| **mean of {len(NOTEBOOKS)}** | **{total / len(NOTEBOOKS) * 1000:,.1f}** |")
    if corpus:
        found = sorted(corpus.glob("**/*.ipynb"))
        ok, spent = 0, 0.0
        for path in found:
            start = time.perf_counter()
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    exporter.from_filename(str(path))
                ok += 1
                spent += time.perf_counter() - start
            except Exception:  # an invalid notebook: every exporter rejects it
                pass
        print(f"\nCorpus {corpus}: {ok}/{len(found)} converted, {spent / max(ok, 1) * 1000:,.1f} ms mean per converted notebook")


def bench_math() -> None:
    import typst

    from torq_nb.export.texmath import _convert, _rewrite, safe_typst_math, to_typst

    spans = HAND + sympy_spans()
    with tempfile.TemporaryDirectory() as root:
        compiler = typst.Compiler(root=root, font_paths=typst.Fonts(include_system_fonts=False, include_embedded_fonts=True))

        def accepted(src: str | None) -> bool:
            if src is None or not safe_typst_math(src):
                return False
            try:
                compiler.compile(input=b'#for s in json(bytes(sys.inputs.m)) { eval(s, mode: "math") }',
                                 format="pdf", sys_inputs={"m": json.dumps([src])})
            except typst.TypstError:
                return False
            return True

        rows = []
        start = time.perf_counter()
        import tex2typst

        tex2typst.tex2typst("x")
        first = time.perf_counter() - start

        def raw_t2t(tex: str) -> str | None:
            try:
                return str(tex2typst.tex2typst(tex, non_strict=False))
            except Exception:
                return None

        for name, convert in (("tex2typst alone (strict)", raw_t2t),
                              ("tex2typst + torq_nb's rewrites (chosen)", lambda s: (to_typst(s) or (None,))[0])):
            tex2typst.clear_cache()
            _convert.cache_clear()
            start = time.perf_counter()
            outs = [convert(s) for s in spans]
            per = (time.perf_counter() - start) / len(spans)
            rows.append((name, per * 1000, sum(o is not None for o in outs), sum(accepted(o) for o in outs)))
        try:
            import pypandoc

            pandoc = pypandoc.get_pandoc_path()
        except (ImportError, OSError):
            pandoc = None
        if pandoc:
            def pan(tex: str) -> str | None:
                done = subprocess.run([pandoc, "-f", "latex", "-t", "typst"], input=f"${tex}$", capture_output=True, text=True)
                out = done.stdout.strip()
                return out[1:-1].strip() if not done.stderr.strip() and out.startswith("$") and out.endswith("$") else None
            for name, convert in (("pandoc alone", pan), ("pandoc + torq_nb's rewrites", lambda s: pan(_rewrite(s)[0]))):
                start = time.perf_counter()
                outs = [convert(s) for s in spans]
                per = (time.perf_counter() - start) / len(spans)
                rows.append((name, per * 1000, sum(o is not None for o in outs), sum(accepted(o) for o in outs)))
            start = time.perf_counter()
            subprocess.run([pandoc, "-f", "latex", "-t", "typst"], input="\n\n".join(f"${s}$" for s in spans),
                           capture_output=True, text=True, check=True)
            batched = time.perf_counter() - start
    print(f"\n| converter ({len(spans)} spans) | ms per span | converted | Typst accepts |")
    print("|---|---:|---:|---:|")
    for name, ms, converted, ok in rows:
        print(f"| {name} | {ms:.2f} | {converted} | {ok} |")
    print(f"\ntex2typst: import and first call {first * 1000:.0f} ms (once per process).")
    if pandoc:
        print(f"pandoc, all {len(spans)} spans in one process: {batched * 1000:.0f} ms.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--corpus", type=Path)
    parser.add_argument("--only", choices=("notebooks", "math"))
    args = parser.parse_args()
    print(f"Load: {os.getloadavg()[0]:.1f} at start", file=sys.stderr)
    if args.only != "math":
        bench_notebooks(args.repeat, args.corpus)
    if args.only != "notebooks":
        bench_math()
    print(f"Load: {os.getloadavg()[0]:.1f} at end", file=sys.stderr)


if __name__ == "__main__":
    main()
