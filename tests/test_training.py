"""Training: the patient-level split (no torch), and with torch a tiny run that exports an ONNX
model the adapter loads, torch/ONNX agreement and the shared preprocessing.

CI installs the train extra, so the torch tests run there; without torch they skip cleanly.
"""

from pathlib import Path

import numpy as np
import pytest

from bot.ml.preprocess import INPUT_SIZE, prepare, preprocess, standardize
from bot.training.data import list_samples, patient_id, split_by_patient
from tests import synthetic
from tests.optional import NEEDS_TORCH


def make_dataset(root: Path, patients: int = 8, per_patient: int = 2) -> Path:
    """A folder like the Rekognition dataset, class folders in mixed case, real-style names."""
    normal, pneumonia = root / "normal", root / "PNEUMONIA"
    normal.mkdir(parents=True)
    pneumonia.mkdir(parents=True)
    seed = 0
    for p in range(patients):
        for k in range(1, per_patient + 1):
            seed += 1
            (normal / f"IM-{p:04d}-{k:04d}.jpeg").write_bytes(
                synthetic.rgb_xray_jpeg_bytes(seed=seed, pneumonia=False)
            )
            (pneumonia / f"person{p}_bacteria_{k}.jpeg").write_bytes(
                synthetic.rgb_xray_jpeg_bytes(seed=seed, pneumonia=True)
            )
    (root / "PNEUMONIA" / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize(
    ("name", "patient"),
    [
        ("person1234_bacteria_567.jpeg", "person1234"),
        ("person1234_virus_890.jpeg", "person1234"),
        ("IM-0123-0001.jpeg", "im-0123"),
        ("IM-0123-0002.jpeg", "im-0123"),
        ("IM-0629-0001-0002.jpeg", "im-0629"),
        ("NORMAL2-IM-0456-0001.jpeg", "normal2-im-0456"),
        ("scan.png", "scan"),
    ],
)
def test_patient_id_follows_the_dataset_naming(name, patient):
    assert patient_id(name) == patient


def test_listing_finds_both_class_folders_in_any_case(tmp_path):
    samples = list_samples(make_dataset(tmp_path / "data"))
    assert len(samples) == 32
    assert sum(s.label for s in samples) == 16


def test_missing_class_folder_is_a_clear_error(tmp_path):
    (tmp_path / "Normal").mkdir()
    with pytest.raises(FileNotFoundError, match="PNEUMONIA"):
        list_samples(tmp_path)


def test_split_is_by_patient_seeded_and_stratified(tmp_path):
    samples = list_samples(make_dataset(tmp_path / "data", patients=20))
    train, val = split_by_patient(samples, val_fraction=0.25, seed=3)
    assert not {s.patient for s in train} & {s.patient for s in val}
    assert len(train) + len(val) == len(samples)
    assert {s.label for s in val} == {0, 1}
    assert len({s.patient for s in val}) == 10  # 25% of 20 patients per class
    again = split_by_patient(samples, val_fraction=0.25, seed=3)
    assert [s.path for s in again[1]] == [s.path for s in val]
    other = split_by_patient(samples, val_fraction=0.25, seed=4)
    assert [s.path for s in other[1]] != [s.path for s in val]


def test_standardize_is_the_same_code_on_torch_tensors():
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    pixels = np.stack([prepare(synthetic.chest_xray(s)) for s in range(3)])[:, None]
    assert np.allclose(
        standardize(torch.from_numpy(pixels)).numpy(), standardize(pixels), atol=1e-5
    )


def test_torch_and_onnx_agree_on_the_same_inputs(tmp_path):
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    import onnxruntime as ort

    from bot.training.export import export_onnx
    from bot.training.model import CxrNet

    torch.manual_seed(0)
    model = CxrNet(width=8, blocks=(1, 1, 1))
    with torch.no_grad():  # non-trivial batch-norm statistics, as after training
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
    model.eval()
    path = export_onnx(model, tmp_path / "m.onnx")
    images = [synthetic.chest_xray(s, size=(300, 260), pneumonia=s % 2 == 1) for s in range(4)]
    batch = np.concatenate([preprocess(im) for im in images])
    with torch.no_grad():
        logit, cam = (t.numpy() for t in model(torch.from_numpy(batch)))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    onnx_logit, onnx_cam = session.run(["logit", "cam"], {"image": batch})
    assert onnx_cam.shape == (4, INPUT_SIZE // 16, INPUT_SIZE // 16)
    assert np.allclose(onnx_logit, logit, atol=1e-4)
    assert np.allclose(onnx_cam, cam, atol=1e-4)
    assert np.allclose(onnx_cam.mean(axis=(1, 2)), onnx_logit, atol=1e-5)  # CAM head


def test_augmentation_is_seeded_and_stays_in_range():
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    from bot.training.augment import augment

    x = torch.from_numpy(np.stack([prepare(synthetic.chest_xray(s)) for s in range(4)])[:, None])
    a = augment(x, torch.Generator().manual_seed(1))
    b = augment(x, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)
    assert a.shape == x.shape and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert not torch.equal(a, augment(x, torch.Generator().manual_seed(2)))


async def test_tiny_training_run_exports_a_model_the_adapter_runs(tmp_path):
    pytest.importorskip("torch", reason=NEEDS_TORCH)
    from bot.adapters.onnx_classifier import OnnxClassifier
    from bot.core.labels import Label
    from bot.ml.model_card import load_model_card
    from bot.training.train import TrainConfig, train

    data = make_dataset(tmp_path / "data", patients=6)
    out = tmp_path / "model"
    card = train(
        TrainConfig(
            data=data,
            out=out,
            epochs=2,
            batch_size=8,
            max_steps=2,
            width=8,
            blocks=(1, 1, 1),
            threads=1,
            val_fraction=0.34,
            command="cxr train (test)",
        )
    )
    onnx_file = out / card["file"]
    assert onnx_file.is_file() and onnx_file.stat().st_size < 10 * 1024 * 1024
    assert (out / "MODEL_CARD.md").read_text().startswith("# Model card: cxr-cnn v1")
    assert "doi:10.17632/rscbjbr9sj.2" in (out / "MODEL_CARD.md").read_text()
    loaded = load_model_card(out)
    assert loaded.sha256 == card["sha256"] and loaded.temperature > 0
    split = card["split"]
    assert (
        split["train"]["patients"] + split["validation"]["patients"] + split["atypical"]["patients"]
        == 12
    )
    assert card["training"]["onnx_max_abs_diff"] < 1e-4
    assert len(card["training"]["history"]) == 2

    classifier = OnnxClassifier(onnx_file)
    prediction = await classifier.classify(synthetic.chest_xray(7, size=(384, 300)))
    assert sum(prediction.scores.values()) == pytest.approx(1.0)
    assert set(prediction.scores) == {Label.NORMAL, Label.PNEUMONIA}
    assert prediction.heatmap_png and prediction.heatmap_png.startswith(b"\x89PNG")
    assert prediction.model.kind == "local"


def test_weight_average_follows_the_model_slowly():
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    from bot.training.train import WeightAverage

    model = torch.nn.Linear(2, 1)
    average = WeightAverage(model, decay=0.9)
    start = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    for _ in range(200):  # past the warm-up the average sits at 0.9 old + 0.1 new per update
        average.update(model)
    assert torch.allclose(average.model.weight, model.weight, atol=1e-6)
    fresh = WeightAverage(torch.nn.Linear(2, 1), decay=0.9)
    fresh.model.weight.data.copy_(start)
    fresh.updates = 1000  # warm-up over
    fresh.update(model)
    assert torch.allclose(fresh.model.weight, 0.9 * start + 0.1 * model.weight)


def test_batchnorm_is_recalibrated_on_clean_images():
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    from bot.training.train import recalibrate_batchnorm

    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1, bias=False), torch.nn.BatchNorm2d(2))
    net[1].running_mean.fill_(5.0)  # statistics from some other (augmented) distribution
    net[1].running_var.fill_(9.0)
    images = torch.rand(40, 1, 8, 8)
    recalibrate_batchnorm(net, images, batch=20)
    with torch.no_grad():
        features = net[0](standardize(images))
    assert torch.allclose(net[1].running_mean, features.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(net[1].running_var, features.var(dim=(0, 2, 3)), rtol=0.05)
    assert not net.training and net[1].momentum == 0.1  # left as it was found, in eval mode


def test_test_time_zooms_and_embedding_survive_the_export(tmp_path):
    torch = pytest.importorskip("torch", reason=NEEDS_TORCH)
    import onnxruntime as ort

    from bot.training.export import export_onnx
    from bot.training.model import TTA_ZOOMS, CxrNet, ExportNet

    torch.manual_seed(0)
    net = ExportNet(CxrNet(width=8, blocks=(1, 1, 1)), TTA_ZOOMS).eval()
    path = export_onnx(net, tmp_path / "m.onnx")
    images = [synthetic.chest_xray(s, size=(300, 260), pneumonia=s % 2 == 1) for s in range(3)]
    batch = np.concatenate([preprocess(im, equalized=True) for im in images])
    with torch.no_grad():
        logit, cam, embedding = (t.numpy() for t in net(torch.from_numpy(batch)))
        plain = net.net(torch.from_numpy(batch))[0].numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logit", "cam", "embedding"], {"image": batch})
    assert np.allclose(got[0], logit, atol=1e-4) and np.allclose(got[2], embedding, atol=1e-4)
    assert embedding.shape == (3, 4 * 64)  # 2 x 2 pooled, 8 * 8 channels
    assert not np.allclose(logit, plain, atol=1e-6)  # the zooms take part in the logit
    assert np.allclose(cam.mean(axis=(1, 2)), plain, atol=1e-5)  # the CAM is the image as is


def _samples(n_per_class: int) -> list:
    from bot.training.data import Sample

    return [
        Sample(
            Path(f"/x/{'NORMAL' if label == 0 else 'PNEUMONIA'}/person{i}_{label}.jpeg"),
            label,
            f"p{label}-{i}",
        )
        for label in (0, 1)
        for i in range(n_per_class)
    ]


def test_the_harder_split_holds_out_films_exposed_like_the_other_class():
    from bot.training.data import split_by_atypical_acquisition

    samples = _samples(40)
    rng = np.random.default_rng(0)
    stats = {}
    for s in samples:
        # normal films bright and contrasty, pneumonia films dull: the dataset's shortcut
        centre = (
            np.array([130, 60, 0.6, 0.12, 0.10])
            if s.label == 0
            else np.array([120, 52, 0.7, 0.09, 0.07])
        )
        stats[s.path] = list(centre + rng.normal(0, [3, 2, 0.02, 0.005, 0.01]))
    odd = {samples[3].path, samples[7].path, samples[45].path}  # two normals, one pneumonia
    for path in odd:  # swap their look to the other class's
        label = 0 if "NORMAL" in str(path) else 1
        stats[path] = [120, 52, 0.7, 0.09, 0.07] if label == 0 else [130, 60, 0.6, 0.12, 0.10]
    train, val = split_by_atypical_acquisition(samples, 0.1, stats=stats)
    held = {s.path for s in val}
    assert odd <= held
    assert sum(s.label == 0 for s in val) == 4 and sum(s.label == 1 for s in val) == 4
    assert not {s.patient for s in train} & {s.patient for s in val}


def test_three_way_split_shares_no_patient(tmp_path):
    from bot.training.data import three_way_split

    samples = list_samples(make_dataset(tmp_path / "data", patients=12))
    train, val, harder = three_way_split(samples, 0.2, seed=1)
    groups = [{s.patient for s in part} for part in (train, val, harder)]
    assert all(groups) and not (
        groups[0] & groups[1] or groups[0] & groups[2] or groups[1] & groups[2]
    )
    assert len(train) + len(val) + len(harder) == len(samples)


def test_later_admissions_are_the_highest_patient_numbers_per_series():
    from bot.training.data import patient_series, split_by_patient_range

    assert patient_series("NORMAL2-IM-0456-0001.jpeg") == ("normal2-im-", 456)
    assert patient_series("person12_virus_3.jpeg") == ("person", 12)
    _, later = split_by_patient_range(_samples(20), 0.1)
    assert sorted(s.patient for s in later) == ["p0-18", "p0-19", "p1-18", "p1-19"]
