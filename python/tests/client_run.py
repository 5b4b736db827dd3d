"""Runs the real client packages on real photos (scikit-image's) and on text drawn with Pillow,
printing their results as JSON: `python client_run.py ort|kiln OUT_DIR`. With `kiln`, kiln takes
the place of onnxruntime before the clients import it."""
import io
import json
import sys

if sys.argv[1] == "kiln":
    import kiln

    kiln.install_as_onnxruntime()

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402
from skimage import data  # noqa: E402

out_dir = sys.argv[2]
photos = {
    "astronaut": data.astronaut(),
    "coffee": data.coffee(),
    "chelsea": data.chelsea(),
    "camera": np.stack([data.camera()] * 3, axis=-1),
}
result = {"runtime": None, "nudenet": {}, "ddddocr_det": {}, "ddddocr_ocr": {}}

import onnxruntime  # noqa: E402

result["runtime"] = onnxruntime.__file__

from nudenet import NudeDetector  # noqa: E402

detector = NudeDetector()
for name, img in photos.items():
    path = f"{out_dir}/{name}.png"
    Image.fromarray(img).save(path)
    result["nudenet"][name] = detector.detect(path)

import ddddocr  # noqa: E402

det = ddddocr.DdddOcr(det=True, show_ad=False)
for name, img in photos.items():
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    result["ddddocr_det"][name] = [list(map(int, b)) for b in det.detection(buf.getvalue())]

ocr = ddddocr.DdddOcr(show_ad=False)
font = ImageFont.load_default(size=36)
for text in ["k3Ln7", "hello42", "QWERTY", "x9y8z7", "Rust2026"]:
    img = Image.new("RGB", (240, 64), "white")
    ImageDraw.Draw(img).text((10, 10), text, fill="black", font=font)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    result["ddddocr_ocr"][text] = ocr.classification(buf.getvalue())

print(json.dumps(result))
