"""``deepfer predict --output``: the annotated image; faces numbered the same way in predict and explain."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from deepfer.cli import app
from tests.conftest import SHIPPED_WEIGHTS

pytestmark = pytest.mark.timeout(240)


def predict(*args: str):
    return CliRunner().invoke(app, ["predict", *args, "--weights", str(SHIPPED_WEIGHTS)])


@pytest.mark.parametrize("name", ["annotated.jpg", "annotated.PNG"])
def test_output_writes_the_image_with_boxes(media: Path, tmp_path: Path, name: str) -> None:
    from streamer.media import load_image

    out = tmp_path / "sub" / name
    res = predict(str(media / "justin.jpg"), "--json", "--output", str(out))
    assert res.exit_code == 0, res.output
    assert f"wrote {out}" in res.stderr
    (face,) = json.loads(res.stdout)[0]["faces"]  # stdout stays pure JSON
    assert face["face"] == 1
    original, written = load_image(media / "justin.jpg"), load_image(out)
    assert written.shape == original.shape
    b = face["box"]
    x1, y1, x2, y2 = (int(round(b[k])) for k in ("x1", "y1", "x2", "y2"))
    # the box outline is drawn on the face: its border differs from the input far beyond JPEG noise
    edge = np.abs(written[y1:y2, x1:x1 + 2].astype(int) - original[y1:y2, x1:x1 + 2].astype(int)).mean()
    assert edge > 30, edge
    inside = np.abs(written[y1 + 10:y2 - 10, x1 + 10:x2 - 10].astype(int)
                    - original[y1 + 10:y2 - 10, x1 + 10:x2 - 10].astype(int)).mean()
    assert inside < edge / 3  # the face itself is not painted over
    far = np.abs(written[-20:, -20:].astype(int) - original[-20:, -20:].astype(int)).mean()
    assert far < 8  # nothing is drawn far from the face


def test_output_bad_suffix_and_several_images_are_one_line_errors(media: Path, tmp_path: Path) -> None:
    for args, needle in (
        ([str(media / "justin.jpg"), "--output", str(tmp_path / "x.gif")], "suffix must be one of .jpg, .jpeg, .png"),
        ([str(media / "justin.jpg"), str(media / "two_people.jpg"), "--output", str(tmp_path / "x.jpg")],
         "--output takes one input image, got 2"),
        ([str(media / "justin.jpg"), "--output", str(tmp_path)], "is a folder"),
    ):
        res = predict(*args)
        assert res.exit_code == 2, res.output
        lines = [line for line in res.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and needle in lines[0], res.stderr
        assert res.stdout == ""
    assert list(tmp_path.iterdir()) == []


def test_predict_and_explain_number_the_same_faces_alike(media: Path, tmp_path: Path) -> None:
    image = media / "two_people.jpg"
    res = predict(str(image), "--json")
    assert res.exit_code == 0, res.output
    faces = json.loads(res.stdout)[0]["faces"]
    assert [f["face"] for f in faces] == [1, 2]
    table = predict(str(image))
    rows = [line for line in table.stdout.splitlines() if re.search(r"\d+,\d+,\d+,\d+", line)]
    assert [row.split("│")[1].strip() for row in rows] == ["1", "2"], table.stdout
    explained = CliRunner().invoke(app, ["explain", str(image), "--out", str(tmp_path), "--weights",
                                         str(SHIPPED_WEIGHTS)])
    assert explained.exit_code == 0, explained.output
    boxes = {}
    for line in explained.stdout.splitlines():
        m = re.match(r".*two_people-face(\d+)\.png: .*box (\d+),(\d+),(\d+),(\d+)\)", line)
        if m:
            boxes[int(m[1])] = tuple(int(v) for v in m.groups()[1:])
    assert sorted(boxes) == [1, 2], explained.stdout
    for f in faces:  # face N of predict is face N of explain: the same box
        b = f["box"]
        assert boxes[f["face"]] == pytest.approx(tuple(round(b[k]) for k in ("x1", "y1", "x2", "y2")), abs=1)
    for row, f in zip(rows, faces):  # and the table shows the same box on the same number
        assert ",".join(f"{f['box'][k]:.0f}" for k in ("x1", "y1", "x2", "y2")) in row
