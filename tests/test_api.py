"""The Python API: lazy top-level names, load_model, and a light import."""

import subprocess
import sys

import inspekt


def test_load_model_predicts(trained, synth_classes):
    predictor = inspekt.load_model(trained.bundle)
    [prediction] = predictor.predict(next((synth_classes / "scratch").iterdir()))
    assert prediction.label in predictor.card.classes and 0 < prediction.score <= 1
    assert repr(prediction).startswith("<Prediction ")


def test_public_names_resolve():
    for name in inspekt.__all__:
        assert getattr(inspekt, name) is not None


def test_import_does_not_pull_torch():
    code = "import sys, inspekt; inspekt.load_image; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_onnx_prediction_never_imports_torch(trained, synth_classes):
    image = next((synth_classes / "ok").iterdir())
    code = ("import sys, inspekt; "
            f"inspekt.load_model({str(trained.bundle)!r}).predict({str(image)!r}); "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
