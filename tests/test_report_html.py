"""`--report report.html`: one self-contained page, rendered in headless Chromium
(Debian's chromium package; .ci/run installs it). The DOM must hold the summary
figures and one bar per layer, the screenshot must show something, model-provided
strings must be escaped, and nothing may be fetched from the network."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import onnx
import pytest
from PIL import Image

from onnxprune.cli import main
from onnxprune.report import PruneReport, layer_costs
from onnxprune.report_html import render_html
from onnxprune.validate import input_dims

from .helpers import SAMPLES

HOSTILE = 'conv<script>alert("x")</script>&amp;'


def _chromium() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail(
            "chromium is missing: install Debian's chromium package "
            "(apt-get install -y chromium); .ci/run installs it"
        )
    return path


def _render(tmp_path: Path, page: Path, *args: str) -> subprocess.CompletedProcess:
    argv = [
        _chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
        "--no-first-run", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--hide-scrollbars", f"--user-data-dir={tmp_path / 'profile'}",
        *args, page.resolve().as_uri(),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _assert_self_contained(page: str) -> None:
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "url(" not in page and "@import" not in page and "<script" not in page.lower()
    assert "<link" not in page.lower() and "<img" not in page.lower()


@pytest.fixture
def hostile_model(tmp_path) -> Path:
    model = onnx.load(SAMPLES / "resnet_small.onnx")
    next(n for n in model.graph.node if n.op_type == "Conv").name = HOSTILE
    path = tmp_path / "resnet.onnx"
    onnx.save(model, path)
    return path


def test_html_report_renders_in_chromium(tmp_path, hostile_model, capsys):
    page, png = tmp_path / "report.html", tmp_path / "shot.png"
    argv = [str(hostile_model), "-o", str(tmp_path / "out.onnx"), "--report", str(page)]
    assert main(argv) == 0
    text = capsys.readouterr().out
    params = re.search(r"^parameters\s+([\d,]+)\s+([\d,]+)", text, re.M).groups()
    macs = re.search(r"^MACs\s+([\d,]+)\s+([\d,]+)", text, re.M).groups()
    cosine = re.search(r"cosine (\d\.\d+)", text)[1]
    html = page.read_text(encoding="utf-8")
    _assert_self_contained(html)
    assert HOSTILE not in html and "conv&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html

    dom = _render(tmp_path, page, "--dump-dom").stdout
    summary = dom[dom.index('id="summary"') :]
    for figure in (*params, *macs):
        assert figure in summary[: summary.index("</table>")], figure
    assert cosine in dom and 'id="oracle"' in dom
    model = onnx.load(hostile_model)
    layers = layer_costs(model, input_dims(model, {}))
    assert dom.count('class="bar-kept') == len(layers) == 16
    assert dom.count("<script") == 0  # the node name stayed text
    assert "reaches graph output" in dom  # the frozen classifier, with its reason

    _render(tmp_path, page, f"--screenshot={png}", "--window-size=1100,1400")
    image = Image.open(png).convert("RGB")
    assert image.size == (1100, 1400)
    colors = image.getcolors(maxcolors=1 << 20)
    background = max(colors)[0] / (image.width * image.height)
    assert len(colors) > 50 and background < 0.95  # text, tables and bars, not a blank page
    assert any(rgb == (0x3B, 0x6F, 0xD8) for _, rgb in colors)  # the kept-channel bars


def test_sensitivity_plot_when_a_budget_was_measured(tmp_path):
    page = tmp_path / "budget.htm"
    argv = [str(SAMPLES / "se_net.onnx"), "-o", str(tmp_path / "out.onnx"), "-q",
            "--calib-random", "16", "--target-macs", "0.5", "--report", str(page)]  # fmt: skip
    assert main(argv) == 0
    html = page.read_text(encoding="utf-8")
    _assert_self_contained(html)
    dom = _render(tmp_path, page, "--dump-dom").stdout
    rows = dom[dom.index('id="sensitivity"') :].split("</table>")[0].count("<tr>") - 1
    assert rows >= 3 and dom.count('class="series"') == rows
    assert "Budget: keep 50% of the MACs" in dom


def test_json_report_for_other_names(tmp_path):
    out = tmp_path / "report.txt"
    model, pruned = str(SAMPLES / "se_net.onnx"), str(tmp_path / "o.onnx")
    assert main([model, "-o", pruned, "-q", "--report", str(out)]) == 0
    assert out.read_text().lstrip().startswith("{")


def test_latency_is_shown_only_when_the_report_has_it(tmp_path):
    plain = render_html(PruneReport(params_before=10, params_after=5))
    assert "latency" not in plain.lower()
    out, page = tmp_path / "o.onnx", tmp_path / "r.html"
    model = str(SAMPLES / "se_net.onnx")
    assert main([model, "-o", str(out), "-q", "--latency", "--report", str(page)]) == 0
    timed = page.read_text()
    rows = re.findall(r"<tr><th>latency, median</th><td[^>]*>([\d.]+) ms</td>"
                      r"<td[^>]*>([\d.]+) ms</td>", timed)  # fmt: skip
    assert len(rows) == 1 and all(float(v) > 0 for v in rows[0])
    assert "faster in onnxruntime" in timed and 'id="latency-note"' in timed
    assert "{" not in re.sub(r"<style>.*?</style>", "", timed, flags=re.S)  # no raw dicts
    nested = render_html(PruneReport(), file_sizes=(2048, 1024))
    assert "2.00 kB" in nested and "1.00 kB" in nested
