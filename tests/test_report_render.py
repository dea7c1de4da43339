"""`snakemake --report` of a finished run, rendered in headless Chromium as a person would see
it: the screenshot is a real page (not blank), and the rendered report (its JavaScript run)
lists the Tokenization, Training, Headline, Results, Plots and Audit categories with their
files.

Needs a `chromium` binary (Debian's package; .ci/run installs it). Skipped without one, unless
FILMORPH_REQUIRE_CHROMIUM=1 (CI), which makes its absence a failure.
"""

import html as html_lib
import json
import os
import re
import shutil
import subprocess

import pytest
from conftest import REPO, snakemake

# category -> files the report must list in it
EXPECTED = {
    "Tokenization": ["results/tokenization/summary.tsv", "results/tokenization/summary.png"],
    "Training": ["results/training/summary.tsv", "results/training/curves.png"],
    "Results": ["results/tables/results.tsv", "results/tables/deltas.tsv"],
    "Headline": ["results/plots/headline/gemma.png", "results/plots/headline/llama.png"],
    "Plots": ["results/plots/deltas.png", "results/plots/benchmarks.png",
              "results/plots/hierarchical_levels.png", "results/plots/heatmap.png"],
    "Audit": ["results/audit/audit.tsv"],
}

# Appended to a copy of the report: once the app has rendered, open each category from the
# menu, note the files it lists, go back home; leave the findings as JSON in <pre id=probe>.
PROBE = """
<script>
window.addEventListener("load", async () => {
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const menu = () => [...document.querySelectorAll("#app nav a")];
  const found = { menu: [], categories: {} };
  await sleep(500);
  found.menu = menu().map((a) => a.textContent.trim()).filter(Boolean);
  for (const name of CATEGORIES) {
    const link = menu().find((a) => a.textContent.trim() === name);
    if (!link) continue;
    link.click();
    await sleep(300);
    found.categories[name] = [...document.querySelectorAll("#app table tbody tr td:first-child")]
      .map((td) => td.textContent.trim());
    document.querySelector("#app nav ol li a").click();  // the breadcrumb's home link
    await sleep(300);
  }
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(found);
  document.body.appendChild(pre);
});
</script>
"""


@pytest.fixture(scope="session")  # session: set up before the session's run is built
def chromium() -> str:
    """The Chromium binary; skip (or fail, FILMORPH_REQUIRE_CHROMIUM=1) before any run is built."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    msg = "no chromium binary on PATH (apt-get install chromium)"
    if os.environ.get("FILMORPH_REQUIRE_CHROMIUM") == "1":
        pytest.fail(f"FILMORPH_REQUIRE_CHROMIUM=1 but {msg}")
    pytest.skip(msg)


def _headless(chromium: str, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    # --no-sandbox: CI runs as root; virtual time lets the page's scripts and timers finish
    cmd = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           "--no-first-run", "--virtual-time-budget=20000", *args]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def report(chromium, local_run, tmp_path_factory):
    """(chromium, report.html): `snakemake --report` of the session's finished run (brought up
    to date first: a test before may have rerun one arm)."""
    config = str(local_run / "ci_config.yaml")
    snakemake(local_run, "--profile", str(REPO / "profiles" / "local"), "--cores", "2", "all",
              config=config)
    out = tmp_path_factory.mktemp("report") / "report.html"
    snakemake(local_run, "--report", str(out), config=config)
    return chromium, out


def test_report_screenshot_is_a_page(report, tmp_path):
    from PIL import Image

    chromium, html = report
    shot = tmp_path / "report.png"
    _headless(chromium, "--window-size=1400,1000", f"--screenshot={shot}", html.as_uri())
    assert shot.stat().st_size > 10_000
    with Image.open(shot) as img:
        assert img.size == (1400, 1000)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 50  # not blank: text, menu, DAG
    share = max(n for n, _ in colours) / (1400 * 1000)
    assert share < 0.9, f"one colour covers {share:.0%} of the page"


def test_rendered_report_lists_every_category_and_its_files(report, tmp_path):
    chromium, html = report
    raw = html.read_text(encoding="utf-8")
    probed = tmp_path / "probed.html"
    script = PROBE.replace("CATEGORIES", json.dumps(list(EXPECTED)))
    at = raw.rindex("</body>")
    probed.write_text(raw[:at] + script + raw[at:], encoding="utf-8")
    dom = _headless(chromium, "--dump-dom", probed.as_uri()).stdout
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert m, "the report's app did not render (no probe result in the DOM)"
    found = json.loads(html_lib.unescape(m.group(1)))
    # the categories are in the rendered menu, not only in the page's data
    assert set(EXPECTED) <= set(found["menu"]), found["menu"]
    for category, files in EXPECTED.items():
        assert set(files) <= set(found["categories"].get(category, [])), (category, found)
    # the static HTML (before any script runs) shows none of it: it is the app that renders
    visible = re.sub(r"<(script|style)\b.*?</\1>|<[^>]+>", " ", raw, flags=re.S)
    assert "Tokenization" not in visible
    assert "Snakemake" in dom and "results/tokenization/summary.tsv" in dom
