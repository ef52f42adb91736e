"""How nh3's time grows with nesting depth and element count, and what the scan costs.

    .venv/bin/python bench/sanitize_cost.py

Best of three CPU times (``time.process_time``) per fragment; the numbers behind the limits in
``services/markup.py`` (see docs/shell.md, "Fragment size and depth").
"""

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from extframework.services import fragments, markup  # noqa: E402


def best(function, html: str) -> float:
    times = []
    for _ in range(3):
        started = time.process_time()
        function(html)
        times.append(time.process_time() - started)
    return min(times)


def sanitize(html: str) -> None:
    fragments.sanitize(html, lambda tag, name, value: value)


def scan(html: str) -> None:
    try:
        markup.check(html)
    except markup.TooComplex:
        pass


def row(label: str, html: str) -> None:
    print(
        f"{label:44s} {len(html):>9,d} B  nh3 {best(sanitize, html):7.4f} s"
        f"  scan {best(scan, html):7.4f} s"
    )


print("depth: <div> nested n deep")
for depth in (128, 500, 1000, 2000, 4000, 8000):
    row(f"  depth {depth}", "<div>" * depth + "x" + "</div>" * depth)
print("elements: n sibling <p>x</p>")
for count in (1000, 10_000, 20_000, 50_000, 100_000):
    row(f"  {count} elements", "<p>x</p>" * count)
print("wide and deep: n elements, most of them <div>x</div> at depth d")
for depth, count in ((64, 20_000), (128, 10_000), (128, 20_000), (256, 20_000), (128, 50_000)):
    outer = "<div>" * (depth - 1)
    row(f"  {count} elements at depth {depth}", outer + "<div>x</div>" * (count - depth + 1))
print("reopened formatting: n misnested <b>s, m paragraphs")
for n, m in ((100, 100), (100, 200), (400, 400)):
    html = "<p>" + "".join(f'<b class="c{i}">' for i in range(n)) + "</p>" + "<p>x</p>" * m
    row(f"  {n} × {m}", html)
