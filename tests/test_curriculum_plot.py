"""``gradatim plot schedule``: the RRGCL pacing curves as a PNG, from the API and the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

from gradatim.cli import main
from gradatim.curriculum import RRGCLScheduler
from gradatim.plot import plot_schedule

PNG = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib")


def test_plot_schedule_api(tmp_path: Path):
    out = plot_schedule(
        tmp_path / "a" / "s.png",
        class_difficulty=[0.1, 0.5, 0.9],
        class_names=["easy", "mid", "hard"],
        epochs=20,
        baselines=["linear", "root"],
    )
    assert out.read_bytes()[:8] == PNG
    sched = RRGCLScheduler([[0], [1], [0, 1]], [0.2, 0.8, 0.5], 10)
    assert plot_schedule(tmp_path / "b.png", scheduler=sched).read_bytes()[:8] == PNG
    with pytest.raises(ValueError, match="exactly one"):
        plot_schedule(tmp_path / "c.png")
    with pytest.raises(ValueError, match="unknown pacing"):
        plot_schedule(tmp_path / "c.png", class_difficulty=[1.0], baselines=["cosine"])


def test_plot_schedule_cli(tmp_path: Path, capsys):
    out = tmp_path / "cli.png"
    rc = main(
        ["plot", "schedule", "--class-difficulty", "0.2", "0.4", "0.9", "--names", "a", "b", "c",
         "-T", "50", "--baseline", "geometric", "-o", str(out)]
    )  # fmt: skip
    assert rc == 0 and out.read_bytes()[:8] == PNG
    assert "wrote" in capsys.readouterr().out
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    f = tmp_path / "dif.parquet"
    pq.write_table(pa.table({"classes": [["x"], ["y"], ["x", "y"]], "dif": [0.1, 0.9, 0.4]}), f)
    out2 = tmp_path / "file.png"
    assert main(["plot", "schedule", "--difficulty-file", str(f), "-o", str(out2)]) == 0
    assert out2.read_bytes()[:8] == PNG
