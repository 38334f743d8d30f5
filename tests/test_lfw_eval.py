"""`faceserve eval lfw`: the protocol on real LFW pairs (a subset; the full run is in bench)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serve_app import cli
from serve_app.errors import InvalidParameter
from serve_app.evaluation.lfw import parse_pairs


def test_parse_view1_and_view2_headers(tmp_path: Path, faces_dir: Path) -> None:
    folds = parse_pairs(faces_dir / "lfw_view1" / "pairsDevTest.txt")
    assert len(folds) == 1 and len(folds[0]) == 1000
    assert sum(p.same for p in folds[0]) == 500
    view2 = tmp_path / "pairs.txt"
    view2.write_text("2\t1\nA\t1\t2\nA\t1\tB\t1\nC\t1\t2\nC\t1\tD\t3\n")
    folds = parse_pairs(view2)
    assert [len(f) for f in folds] == [2, 2] and folds[1][1].b == ("D", 3)
    view2.write_text("2\t1\nA\t1\t2\n")
    with pytest.raises(InvalidParameter, match="header promises"):
        parse_pairs(view2)


@pytest.mark.slow
def test_eval_cli_on_a_subset_beats_chance_by_far(
    faces_dir: Path, model_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    monkeypatch.setenv("FACESERVE_MODEL_DIR", str(model_dir))
    lfw = faces_dir / "lfw_view1"
    code = cli.main(
        [
            "eval", "lfw", "--root", str(lfw / "images"), "--pairs", str(lfw / "pairsDevTest.txt"),
            "--train-pairs", str(lfw / "pairsDevTrain.txt"), "--limit", "40", "--json",
        ]
    )  # fmt: skip
    assert code == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["pairs"] == 80
    assert result["accuracy"] >= 0.9
    assert result["roc_auc"] >= 0.95
    assert result["no_face_detected"] <= 5
    assert result["pipeline"].startswith("faceserve dlib-r29")


def test_single_fold_without_train_pairs_is_an_error(faces_dir: Path, capsys) -> None:
    lfw = faces_dir / "lfw_view1"
    code = cli.main(
        ["eval", "lfw", "--root", str(lfw / "images"), "--pairs", str(lfw / "pairsDevTest.txt")]
    )
    assert code == 2
    assert "--train-pairs" in capsys.readouterr().err
