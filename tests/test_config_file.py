"""`--config prune.toml`: a recipe gives what the same flags give, flags override it,
per-glob ratios reach exactly the groups they name, and a bad recipe is one line and
exit 2 with nothing written. Also the command line around it: --help lists the
commands, --version, -q/-v, --save-config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

from onnxprune import PruneConfig, make_plan, prune
from onnxprune.cli import COMMANDS, main
from onnxprune.config_file import read_config, to_toml

from .helpers import SAMPLES, assert_exact, parse

RESNET = SAMPLES / "resnet_small.onnx"
REPO = SAMPLES.parent


def shapes(path: Path) -> dict[str, list[int]]:
    return {t.name: list(t.dims) for t in onnx.load(path).graph.initializer}


def weights(path: Path) -> dict[str, np.ndarray]:
    return {t.name: onnx.numpy_helper.to_array(t) for t in onnx.load(path).graph.initializer}


def recipe(folder: Path, text: str, name: str = "prune.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text)
    return path


def ok(argv: list, capsys) -> tuple[str, str]:
    assert main([str(a) for a in argv]) == 0
    return capsys.readouterr()


# -- a recipe is the flags -----------------------------------------------------------


def test_recipe_prunes_like_the_same_flags(tmp_path, capsys):
    toml = recipe(tmp_path, 'ratio = 0.4\ncriterion = "l1"\nround_to = 4\nmin_channels = 3\n'
                  'global = true\nexclude = ["/stem*"]\nseed = 3\n')  # fmt: skip
    by_file, by_flags = tmp_path / "file.onnx", tmp_path / "flags.onnx"
    ok([RESNET, "-o", by_file, "--config", toml, "-q"], capsys)
    flags = ["--ratio", "0.4", "--criterion", "l1", "--round-to", "4", "--min-channels", "3",
             "--global", "--exclude", "/stem*", "--seed", "3", "-q"]  # fmt: skip
    ok([RESNET, "-o", by_flags, *flags], capsys)
    assert shapes(by_file) == shapes(by_flags)
    assert shapes(by_file) != shapes(RESNET)
    untouched = shapes(tmp_path / "file.onnx")["onnx::Conv_146"]  # the stem conv: excluded
    assert untouched == shapes(RESNET)["onnx::Conv_146"]


def test_calibration_path_is_relative_to_the_recipe(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    data = tmp_path / "recipes" / "data"
    data.mkdir(parents=True)
    np.savez(data / "calib.npz", input=rng.standard_normal((16, 3, 32, 32)).astype(np.float32))
    toml = recipe(tmp_path / "recipes", 'calib = "data/calib.npz"\ncriterion = "activation"\n'
                  'reconstruct = "lsq"\nridge = 0.2\nratio = 0.5\n')  # fmt: skip
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    ok([RESNET, "-o", "file.onnx", "--config", toml, "-q"], capsys)
    ok([RESNET, "-o", "flags.onnx", "--calib", data / "calib.npz", "--criterion", "activation",
        "--reconstruct", "lsq", "--ridge", "0.2", "-q"], capsys)  # fmt: skip
    got, want = weights(elsewhere / "file.onnx"), weights(elsewhere / "flags.onnx")
    assert {k: v.shape for k, v in got.items()} == {k: v.shape for k, v in want.items()}
    assert all(np.array_equal(got[k], want[k]) for k in want)


def test_flags_override_the_recipe(tmp_path, capsys):
    toml = recipe(tmp_path, 'ratio = 0.25\ncriterion = "l1"\n')
    ok([RESNET, "-o", tmp_path / "a.onnx", "--config", toml, "--ratio", "0.5",
        "--criterion", "l2", "-q"], capsys)  # fmt: skip
    ok([RESNET, "-o", tmp_path / "b.onnx", "-q"], capsys)
    ok([RESNET, "-o", tmp_path / "c.onnx", "--config", toml, "-q"], capsys)
    assert shapes(tmp_path / "a.onnx") == shapes(tmp_path / "b.onnx")
    assert shapes(tmp_path / "c.onnx") != shapes(tmp_path / "b.onnx")


def test_repeatable_flags_add_to_the_recipe_lists(tmp_path, capsys):
    toml = recipe(tmp_path, 'exclude = ["/stem*"]\n')
    report = tmp_path / "r.json"
    ok([RESNET, "-o", tmp_path / "a.onnx", "--config", toml, "--exclude", "/stages/stages.5/*",
        "--report", report, "-q"], capsys)  # fmt: skip
    frozen = [r for g in json.loads(report.read_text())["groups"] for r in g["frozen"]]
    assert "excluded by --exclude '/stem*'" in frozen
    assert "excluded by --exclude '/stages/stages.5/*'" in frozen


# -- per-glob ratios -------------------------------------------------------------------

CHAIN = """
<ir_version: 8, opset_import: ["" : 17]>
chain (float[1,3,8,8] x) => (float[1,4,8,8] y)
<float[8,3,3,3] w1 = {0.0}, float[8] b1 = {0.0}, float[8,8,3,3] w2 = {0.0},
 float[12,8,1,1] w3 = {0.0}, float[4,12,1,1] w4 = {0.0}>
{
  [layer1_conv] a = Conv <pads = [1,1,1,1]> (x, w1, b1)
  ar = Relu (a)
  [layer2_conv] b = Conv <pads = [1,1,1,1]> (ar, w2)
  br = Relu (b)
  [fc1] c = Conv (br, w3)
  cr = Relu (c)
  [head] y = Conv (cr, w4)
}
"""


def kept(config: PruneConfig, model=None) -> dict[str, int]:
    """Kept channels per group, keyed by the group's first producer name."""
    p = make_plan(model or parse(CHAIN), config)
    return {g.names[0]: int(p.keep_slot[g.classes].sum()) for g in p.groups}


def test_glob_ratios_change_exactly_the_groups_they_match():
    base = kept(PruneConfig(ratio=0.5))
    assert base == {"layer1_conv": 4, "layer2_conv": 4, "fc1": 6, "head": 4}  # head: output
    by_node = kept(PruneConfig(ratio=0.5, name_ratios={"layer1_*": 0.25}))
    assert by_node == base | {"layer1_conv": 6}
    by_initializer = kept(PruneConfig(ratio=0.5, name_ratios={"w3": 0.75, "b1": 0.0}))
    assert by_initializer == base | {"fc1": 3, "layer1_conv": 8}


def test_first_matching_glob_wins_in_file_order(tmp_path):
    first = recipe(tmp_path, '[ratios]\n"layer2_*" = 0.75\n"layer*" = 0.0\n', "a.toml")
    second = recipe(tmp_path, '[ratios]\n"layer*" = 0.0\n"layer2_*" = 0.75\n', "b.toml")
    a = kept(PruneConfig(ratio=0.5, **read_config(first)))
    b = kept(PruneConfig(ratio=0.5, **read_config(second)))
    assert (a["layer1_conv"], a["layer2_conv"]) == (8, 2)
    assert (b["layer1_conv"], b["layer2_conv"]) == (8, 8)


def test_glob_ratios_keep_the_masking_oracle_and_warn_when_unmatched():
    config = PruneConfig(ratio=0.5, name_ratios={"fc*": 0.25, "nothing*": 0.5})
    pruned, report, _ = assert_exact(parse(CHAIN), config)
    assert [w for w in report.warnings if "nothing*" in w] == [
        "ratio glob 'nothing*' matches no producer node or initializer name of a group"
    ]
    assert {g.members[0].split()[0]: g.kept for g in report.groups}["fc1"] == 9


def test_named_groups_keep_their_ratio_under_global_ranking():
    config = PruneConfig(ratio=0.5, global_ranking=True, name_ratios={"fc1": 0.0})
    got = kept(config)
    assert got["fc1"] == 12
    assert got["layer1_conv"] + got["layer2_conv"] == 8  # half of the 16 others


def test_budget_leaves_named_groups_at_their_ratio():
    named = "/stages/stages.4/*"
    config = PruneConfig(target_macs=0.6, calib_random=8, reconstruct="none",
                         sensitivity_ratios=(0.5,), name_ratios={named: 0.0})  # fmt: skip
    model = onnx.load(RESNET)
    _, report = prune(model, config)
    plan = make_plan(model, PruneConfig(name_ratios={named: 0.0}))
    fixed = {g.id for g in plan.groups if any(n.startswith("/stages/stages.4/") for n in g.names)}
    assert fixed
    assert not fixed & {int(k) for k in report.budget["ratios"]}
    assert not fixed & {s["id"] for s in report.budget["sensitivity"]}
    assert all(g.kept == g.channels for g in report.groups if g.id in fixed)
    assert report.macs_after <= 0.6 * report.macs_before


# -- bad recipes -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, says",
    [
        ("ratio = ", "prune.toml: not valid TOML"),
        ("ratoi = 0.5", "prune.toml: unknown key 'ratoi' (did you mean 'ratio'?)"),
        ("[budget]\nmacs = 0.5", "prune.toml: unknown key 'budget'"),
        ('ratio = "0.5"', "prune.toml: ratio must be a number in [0, 1), got '0.5'"),
        ("global = 1", "prune.toml: global must be true or false, got 1"),
        ("round_to = 2.5", 'prune.toml: round_to must be an integer >= 1 or "auto", got 2.5'),
        ('exclude = "x"', "prune.toml: exclude must be a list of name globs"),
        ("ratio = 1.0", "prune.toml: ratio must be a number in [0, 1), got 1.0"),
        ("target_macs = 0", "prune.toml: target_macs must be a number in (0, 1]"),
        ('criterion = "l3"', "prune.toml: criterion must be one of 'l2', 'l1'"),
        ('[ratios]\n"a*" = 1.5', "prune.toml: [ratios] 'a*' must be a number in [0, 1)"),
        ("ratios = 0.5", "prune.toml: ratios must be a table ([ratios]), got 0.5"),
        ('[input_shapes]\ninput = "1xq"', "prune.toml: [input_shapes] 'input' must be"),
    ],
)
def test_bad_recipe_is_one_line_and_exit_2(text, says, tmp_path, capsys):
    toml = recipe(tmp_path / "cfg", text)
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(RESNET), "-o", str(out / "x.onnx"), "--config", str(toml)]) == 2
    stdout, err = capsys.readouterr()
    assert stdout == "" and "Traceback" not in err
    [line] = err.strip().splitlines()
    assert line.startswith("onnxprune: error: ") and says in line, line
    assert list(out.iterdir()) == []


@pytest.mark.parametrize("which", ["missing", "folder", "binary"])
def test_unreadable_recipe_is_one_line_and_exit_2(which, tmp_path, capsys):
    path = {"missing": tmp_path / "nope.toml", "folder": tmp_path}.get(which)
    if which == "binary":
        path = tmp_path / "bin.toml"
        path.write_bytes(b"\xff\xfe\x00ratio")
    out = tmp_path / "out"
    out.mkdir()
    assert main([str(RESNET), "-o", str(out / "x.onnx"), "--config", str(path)]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("onnxprune: error: ") and str(path) in line
    assert list(out.iterdir()) == []


def test_save_config_refuses_to_overwrite_the_recipe(tmp_path, capsys):
    toml = recipe(tmp_path, "ratio = 0.3\n")
    code = main([str(RESNET), "-o", str(tmp_path / "x.onnx"), "--config", str(toml),
                 "--save-config", str(toml)])  # fmt: skip
    assert code == 2
    assert "is the --config file" in capsys.readouterr().err
    assert toml.read_text() == "ratio = 0.3\n" and not (tmp_path / "x.onnx").exists()


# -- --save-config ------------------------------------------------------------------------


def test_saved_config_replays_the_run(tmp_path, capsys):
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "calib.npz", input=rng.standard_normal((8, 3, 32, 32)).astype(np.float32))
    toml = recipe(tmp_path, '[ratios]\n"/stages/stages.2/*" = 0.25\n')
    saved = tmp_path / "runs" / "saved.toml"
    saved.parent.mkdir()
    ok([RESNET, "-o", tmp_path / "a.onnx", "--config", toml, "--calib", tmp_path / "calib.npz",
        "--ratio", "0.4", "--round-to", "2", "--save-config", saved, "-q"], capsys)  # fmt: skip
    text = saved.read_text()
    assert 'calib = "../calib.npz"' in text and '"/stages/stages.2/*" = 0.25' in text
    ok([RESNET, "-o", tmp_path / "b.onnx", "--config", saved, "-q"], capsys)
    assert shapes(tmp_path / "a.onnx") == shapes(tmp_path / "b.onnx")


def test_to_toml_round_trips_every_field(tmp_path):
    config = PruneConfig(ratio=0.3, head_ratio=0.25, criterion="wanda", global_ranking=True,
                         round_to=8, min_channels=2, exclude=['a"b\\c', "é*"], seed=5,
                         input_shapes={"ids": [2, 16]}, calib_random=4, calib_mask="mask",
                         reconstruct="bias", ridge=0.5, target_params=0.7, prune_heads=False,
                         prune_hidden=True, validate=False, sensitivity_ratios=(0.5, 0.9),
                         name_ratios={"x.*": 0.0, "y\x7f": 0.5})  # fmt: skip
    path = tmp_path / "r.toml"
    path.write_text(to_toml(config, str(tmp_path)), encoding="utf-8")
    again = PruneConfig(**read_config(path))
    for field in config.__dataclass_fields__:
        assert getattr(again, field) == getattr(config, field), field
    assert list(again.name_ratios) == ["x.*", "y\x7f"]


# -- the command line around it ---------------------------------------------------------


def test_help_lists_every_command_with_a_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    commands = out.split("commands:")[1].split("\n\n")[0].splitlines()[1:]
    named = {line.split()[0]: line.split(None, 1)[1] for line in commands}
    assert set(named) == {"prune", *COMMANDS}
    assert all(len(text) > 10 for text in named.values())
    assert "--config" in out and "--ratio" in out


def test_module_entry_help_and_version():
    def run(*args):
        return subprocess.run([sys.executable, "-m", "onnxprune", *args], capture_output=True,
                              text=True, cwd=REPO, timeout=120, check=False)  # fmt: skip

    helped = run("--help")
    assert helped.returncode == 0 and "sensitivity" in helped.stdout and helped.stderr == ""
    version = run("--version")
    assert version.returncode == 0 and version.stdout.startswith("onnxprune 0.")


def test_prune_subcommand_means_the_same_as_no_subcommand(tmp_path, capsys):
    ok(["prune", RESNET, "-o", tmp_path / "a.onnx", "-q"], capsys)
    ok([RESNET, "-o", tmp_path / "b.onnx", "-q"], capsys)
    assert shapes(tmp_path / "a.onnx") == shapes(tmp_path / "b.onnx")


def test_quiet_prints_warnings_only_and_verbose_more(tmp_path, capsys):
    toml = recipe(tmp_path, '[ratios]\n"nothing*" = 0.5\n')
    out, err = ok([RESNET, "-o", tmp_path / "a.onnx", "--config", toml, "-q"], capsys)
    assert out == ""
    assert err.strip().splitlines() == [
        "onnxprune: warning: ratio glob 'nothing*' matches no producer node or initializer "
        "name of a group"
    ]
    plain, _ = ok([RESNET, "-o", tmp_path / "b.onnx"], capsys)
    loud, _ = ok([RESNET, "-o", tmp_path / "c.onnx", "-v"], capsys)
    assert len(loud.splitlines()) > len(plain.splitlines())


def test_sensitivity_quiet_and_verbose(tmp_path, capsys):
    argv = ["sensitivity", str(RESNET), "--calib-random", "4", "--ratios", "0.5",
            "--reconstruct", "none"]  # fmt: skip
    out, err = ok([*argv, "-q", "--json", tmp_path / "s.json"], capsys)
    assert (out, err) == ("", "")
    assert json.loads((tmp_path / "s.json").read_text())["groups"]
    loud, _ = ok([*argv, "-v"], capsys)
    assert "/stages/stages.2/shortcut/shortcut.0/Conv" in loud  # a second member of a group
    plain, _ = ok(argv, capsys)
    assert "/stages/stages.2/shortcut/shortcut.0/Conv" not in plain


def test_quiet_and_verbose_together_is_bad_input(tmp_path, capsys):
    assert main([str(RESNET), "-o", str(tmp_path / "a.onnx"), "-q", "-v"]) == 2
    assert "not allowed with" in capsys.readouterr().err


def test_readme_recipe_reads(tmp_path):
    text = (REPO / "README.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    values = read_config(recipe(tmp_path, block))
    assert values["name_ratios"] == {"layer1.*": 0.3, "fc*": 0.0}
    assert values["calib"] == str(tmp_path / "data" / "calib.npz")
    PruneConfig(**values).check()
