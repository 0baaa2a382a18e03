"""The shard set as MLflow dataset inputs, so that a run (and its model's metrics) name the
data they came from.

One dataset per split the trainer reads (``train``, ``val``), each logged with that split as
its context. A dataset is named ``<data root folder>/<split>``, the split's folder on disk; its
digest is the data manifest's plan hash (``dataset.json``: 16 hex characters, MLflow keeps up
to 36), which changes whenever the samples, their split or their encoding do; the profile
holds this split's sample and shard counts and every split's sample count, the schema the
fields of a sample; the source is the data root.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from pgnm.data.manifest import DatasetInfo

CONTEXTS = ("train", "val")  # the splits a training run reads


@dataclass(frozen=True)
class SplitDataset:
    """One split of a shard set, as MLflow records a dataset input."""

    split: str
    name: str
    digest: str
    source: str  # the data root, absolute
    profile: str  # JSON: counts of this split and of every split
    schema: str  # JSON: MLflow's column spec of a sample

    def to_input(self):  # noqa: ANN201 - mlflow.entities.DatasetInput, imported lazily
        from mlflow.data.sources import LocalArtifactDatasetSource
        from mlflow.entities import Dataset, DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        source = LocalArtifactDatasetSource(self.source)
        dataset = Dataset(name=self.name, digest=self.digest,
                          source_type=source._get_source_type(), source=source.to_json(),
                          schema=self.schema, profile=self.profile)
        return DatasetInput(dataset, tags=[InputTag(MLFLOW_DATASET_CONTEXT, self.split)])

    def to_dict(self) -> dict[str, str]:
        """What the tracker's queue (and its fallback file) carries."""
        return asdict(self)


def split_datasets(root: str | Path, info: DatasetInfo, classes: int) -> list[SplitDataset]:
    """The splits of ``CONTEXTS`` that ``root`` holds, as dataset inputs."""
    from mlflow.types import ColSpec, Schema

    root = Path(root).resolve()
    # flat keys: MLflow's UI shows a profile as "key: value" lines, a nested value cut short
    every = {f"{split} samples": s.samples for split, s in info.splits.items()}
    # what each webdataset sample holds (pgnm.data.manifest); the image as its stored bytes
    fields = [ColSpec("binary", info.image_extension), ColSpec("long", "lbl"),
              ColSpec("string", "cls"), ColSpec("string", "json")]
    schema = json.dumps({"mlflow_colspec": Schema(fields).to_dict()})
    return [
        SplitDataset(
            split=split, name=f"{root.name}/{split}", digest=info.plan_hash,
            source=str(root), schema=schema,
            profile=json.dumps({"split": split, "samples": info.splits[split].samples,
                                "shards": len(info.splits[split].shards), "classes": classes,
                                **every, "image format": info.image_format,
                                "bit depth": info.bit_depth, "written by": info.source}),
        )
        for split in CONTEXTS if split in info.splits
    ]
