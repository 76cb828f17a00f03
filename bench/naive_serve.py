"""The anchor for ``kiln serve``: the server people write first, one onnxruntime call per request.

FastAPI with an ``UploadFile`` endpoint that decodes the image (the same ``pixels.decode`` kiln
uses, so only the serving differs) and runs the graph on it alone, under the same uvicorn
settings as ``kiln serve``. ``python bench/naive_serve.py PACKAGE PORT``.
"""

from __future__ import annotations

import sys

import numpy as np
import uvicorn
from fastapi import FastAPI, File, UploadFile

import datakiln
from datakiln.package import pixels


def main() -> None:
    model = datakiln.load(sys.argv[1])
    app = FastAPI()

    @app.post("/predict")
    def predict(image: UploadFile = File(...)) -> dict[str, object]:  # noqa: B008 (FastAPI's idiom)
        x = pixels.decode(image.file.read(), model.size, model.channels)[None].astype(np.float32) / 255.0
        probs, _ = model.run(x)
        k = int(probs[0].argmax())
        return {"label": model.classes[k], "probs": {c: round(float(p), 6) for c, p in zip(model.classes, probs[0])}}

    print(f"naive server at http://127.0.0.1:{sys.argv[2]}", flush=True)
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
