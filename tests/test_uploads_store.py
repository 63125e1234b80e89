"""The uploads store's classification log, as the cost guard reads it: counts per model kind,
and per version of it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.core.ports import ImageRef, Upload
from bot.state.uploads import UploadStore
from tests.harness import open_database

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


async def record(store: UploadStore, n: int, at: datetime, kind: str, version: str | None) -> None:
    upload = Upload("C0CLINIC1", f"{at.timestamp():.6f}", "", "U0CLINIC1", (ImageRef("F0", "x"),))
    await store.record(upload, [(f"F{i}", "Normal", kind, version) for i in range(n)], at)


async def test_classified_count_per_kind_and_per_version(tmp_path):
    store = UploadStore(open_database(tmp_path / "cxr.db"))
    await record(store, 3, T0, "rekognition", "cxr.v1")
    await record(store, 2, T0 + timedelta(minutes=1), "rekognition", "cxr.v2")
    await record(store, 4, T0 + timedelta(minutes=2), "local", "model.onnx")
    await record(store, 1, T0 + timedelta(hours=1), "rekognition", "cxr.v1")  # at `until`: left out
    until = T0 + timedelta(hours=1)

    assert await store.classified_count("rekognition", T0, until) == 5  # every version
    assert await store.classified_count("rekognition", T0, until, model_version="cxr.v1") == 3
    assert await store.classified_count("rekognition", T0, until, model_version="cxr.v2") == 2
    assert await store.classified_count("rekognition", T0, until, model_version="cxr.v3") == 0
    assert await store.classified_count("local", T0, until, model_version="cxr.v1") == 0
    assert await store.classified_count("local", T0, until) == 4
    assert await store.last_classified_at("rekognition", "cxr.v2") == T0 + timedelta(minutes=1)
    assert await store.last_classified_at("rekognition") == until
