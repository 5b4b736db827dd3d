"""Real client packages, unchanged, once on onnxruntime and once on kiln through
`kiln.install_as_onnxruntime()` (each in its own interpreter): nudenet's NudeDetector and
ddddocr's detector on scikit-image's photos, ddddocr's OCR on text drawn with Pillow. Both
runs must find the same things."""
import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


def run_clients(runtime, tmp):
    p = subprocess.run([sys.executable, os.path.join(HERE, "client_run.py"), runtime, str(tmp)],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    ort = run_clients("ort", tmp_path_factory.mktemp("ort"))
    kiln = run_clients("kiln", tmp_path_factory.mktemp("kiln"))
    print("\nclients, onnxruntime vs kiln:")
    for key in ("nudenet", "ddddocr_det", "ddddocr_ocr"):
        for item in ort[key]:
            print(f"  {key} {item}: {ort[key][item]}  |  {kiln[key][item]}")
    return ort, kiln


def test_the_switch_took_effect(results):
    ort, kiln = results
    ort_parts = ort["runtime"].split(os.sep)
    kiln_parts = kiln["runtime"].split(os.sep)
    assert ort_parts[-3:] == ["site-packages", "onnxruntime", "__init__.py"], ort["runtime"]
    assert kiln_parts[-3:] == ["kiln", "onnxruntime", "__init__.py"], kiln["runtime"]


def test_nudenet_detections_match(results):
    ort, kiln = results
    assert any(ort["nudenet"].values()), "nudenet found nothing on the photos"
    for name, want in ort["nudenet"].items():
        got = kiln["nudenet"][name]
        assert [d["class"] for d in got] == [d["class"] for d in want], name
        for g, w in zip(got, want):
            assert abs(g["score"] - w["score"]) < 1e-3, (name, g, w)
            assert all(abs(a - b) <= 1 for a, b in zip(g["box"], w["box"])), (name, g, w)


def test_ddddocr_detections_match(results):
    ort, kiln = results
    assert any(ort["ddddocr_det"].values()), "ddddocr's detector found nothing on the photos"
    for name, want in ort["ddddocr_det"].items():
        got = kiln["ddddocr_det"][name]
        assert len(got) == len(want), name
        for g, w in zip(got, want):
            assert all(abs(a - b) <= 1 for a, b in zip(g, w)), (name, g, w)


def test_ddddocr_text_matches(results):
    ort, kiln = results
    assert kiln["ddddocr_ocr"] == ort["ddddocr_ocr"]
    # The OCR reads most of what was drawn (the oracle's own reading, not kiln's, is checked).
    right = sum(k == v for k, v in ort["ddddocr_ocr"].items())
    assert right >= 3, ort["ddddocr_ocr"]
