"""Progress bars show on a terminal and nowhere else."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

from .helpers import SAMPLES

REPO = SAMPLES.parent


def _on_a_terminal(args: list[str]) -> tuple[int, str]:
    """Run `python -m onnxprune ARGS` with stdout and stderr on a 120-column terminal."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "onnxprune", *args], stdout=child, stderr=child, cwd=REPO
    )
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    os.close(main)
    return proc.wait(timeout=300), out.decode(errors="replace")


def test_bars_on_a_terminal(tmp_path):
    args = [str(SAMPLES / "resnet_small.onnx"), "-o", str(tmp_path / "s.onnx")]
    code, out = _on_a_terminal(args)
    assert code == 0, out
    for stage in ("reference run", "scoring", "slicing", "validation"):
        assert f"{stage}:" in out, stage
    assert "wrote" in out


def test_no_bars_when_quiet_on_a_terminal(tmp_path):
    args = [str(SAMPLES / "resnet_small.onnx"), "-o", str(tmp_path / "s.onnx"), "-q"]
    code, out = _on_a_terminal(args)
    assert code == 0 and out.strip() == ""


def test_no_bars_off_a_terminal(tmp_path):
    args = [str(SAMPLES / "resnet_small.onnx"), "-o", str(tmp_path / "s.onnx")]
    result = subprocess.run([sys.executable, "-m", "onnxprune", *args], capture_output=True,
                            text=True, cwd=REPO, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0 and result.stderr == ""
    assert "scoring" not in result.stdout
