"""``gradatim manifest from-...``: the table of converter subcommands hands every argument to the
right ``convert`` parameter, and leaves none of ``convert``'s parameters unreachable."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import pytest

from gradatim import cli
from gradatim.manifest.cli import CONVERTERS, _Converter
from gradatim.manifest.common import Conversion

# convert() parameters with no command-line flag, on purpose.
NOT_ON_THE_COMMAND_LINE = {("from-nih", "image_size")}


def _value(conv: _Converter, param: str, kwargs: dict[str, Any]) -> tuple[list[str], Any]:
    """Command-line words setting ``param`` to a value other than its default, and that value
    as ``convert`` should receive it."""
    action = kwargs.get("action")
    if action == "store_true":
        return [], True
    if action == "store_false":
        return [], False
    if "choices" in kwargs:
        pick = [c for c in kwargs["choices"] if c != kwargs.get("default")][-1]
        return [pick], pick
    word = f"{conv.command}-{param}"
    if kwargs.get("nargs") == "+":
        return [word, word + "2"], [word, word + "2"]
    return [word], Path(word) if kwargs.get("type") is Path else word


@pytest.mark.parametrize("conv", CONVERTERS, ids=lambda c: c.command)
def test_every_argument_reaches_convert(
    conv: _Converter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []

    def fake_convert(*args: Any, **kwargs: Any) -> Conversion:
        calls.append((args, kwargs))
        return Conversion(source="fake")

    real = inspect.signature(conv.module.convert)
    monkeypatch.setattr(conv.module, "convert", fake_convert)
    argv: list[str] = []
    expected: dict[str, Any] = {}
    monkeypatch.chdir(tmp_path)  # input paths are checked before convert() runs: make them
    for opt in conv.opts:
        words, value = _value(conv, opt.param, opt.kwargs)
        argv += words if opt.positional else [opt.flags[0], *words]
        expected[opt.param] = value
        if opt.positional or opt.kwargs.get("type") is Path:
            for word in words:
                (tmp_path / word).write_text("")
    out = tmp_path / "out.jsonl"
    argv = ["manifest", conv.command, *argv, "-o", str(out), "--split", "hash:0,1,0"]
    assert cli.main([*argv, "--on-error", "skip"]) == 0
    assert out.exists()

    [(args, kwargs)] = calls
    bound = real.bind(*args, **kwargs)  # a real call would accept these arguments
    assert bound.arguments == {**expected, "split": "hash:0,1,0", "on_error": "skip"}
    unreachable = {p for p in real.parameters if p not in bound.arguments}
    assert {(conv.command, p) for p in unreachable} <= NOT_ON_THE_COMMAND_LINE


def test_flags_keep_their_names_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    # A flag whose value lands in a differently named parameter still shows its own name.
    with pytest.raises(SystemExit):
        cli.main(["manifest", "from-mimic-cxr", "--help"])
    text = capsys.readouterr().out
    assert "--labels LABELS" in text and "LABELS_CSV" not in text
    assert "--views VIEWS [VIEWS ...]" in text


def test_skip_normal_default_keeps_normal_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gradatim.manifest import vindr

    seen: dict[str, Any] = {}

    def fake_convert(*args: Any, **kwargs: Any) -> Conversion:
        seen.update(kwargs)
        return Conversion(source="vindr")

    monkeypatch.setattr(vindr, "convert", fake_convert)
    (tmp_path / "a.csv").write_text("")
    argv = ["manifest", "from-vindr", str(tmp_path / "a.csv"), "-o", str(tmp_path / "o.jsonl")]
    assert cli.main(argv) == 0
    assert seen["include_normal"] is True and seen["split"] == "train"
    assert seen["on_error"] == "raise"
