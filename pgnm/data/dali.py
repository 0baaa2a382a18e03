"""The DALI loader: shards decoded by DALI, on the GPU where there is one, CPU-only otherwise.

One pipeline per rank and epoch. ``fn.readers.webdataset`` is given the split's shards in the
epoch's permuted order (:func:`pgnm.data.order.shard_order`, the webdataset loader's first
level), reads the rank's contiguous range of them through the shard index files
(``shard_id = rank``, see ``spec.py``), shuffles it in a buffer of ``shuffle_buffer`` encoded
samples seeded per epoch (DALI's second level: it holds images, so it stays small, unlike the
webdataset loader's), and pads the last batch instead of running short. Training
takes exactly ``train_batches_per_epoch`` batches on every rank; evaluation reads the rank's
range once, dropping the padding.

Exact resume: pipelines are built with checkpointing on, and ``state_dict`` stores DALI's
serialised reader position and RNG states next to (epoch, step). A loader restored from it
produces the very batches the interrupted one would have produced next.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import Tensor

from pgnm.data.manifest import check_shard_sizes, load_classes, split_shards
from pgnm.data.order import locate, rank_order, shard_order
from pgnm.data.spans import check_index_headers
from pgnm.data.spec import (
    AugmentSpec,
    DataError,
    batches_per_epoch,
    rank_range,
    value_range,
)
from pgnm.errors import DALI_EXTRAS, require_extra


def dali_available() -> bool:
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:
        return False
    return True

# DALI's prefetch queue: how many batches ahead of the one returned it may be preparing
# (so how far past the last good batch a decoder error can come from).
PREFETCH = 2


class DaliLoader:
    def __init__(
        self,
        root: str | Path,
        split: str,
        batch_size: int,
        train: bool,
        spec: AugmentSpec,
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        device_id: int | None = None,
        num_threads: int = 2,
        shuffle_buffer: int = 512,
        accumulation: int = 1,
        check_md5: bool = False,
    ) -> None:
        require_extra("nvidia.dali", DALI_EXTRAS, "the DALI loader", "data.loader=webdataset")
        self.info, self.tars, self.indexes = split_shards(root, split)
        check_shard_sizes(root, split, self.info, check_md5)
        self.num_classes = len(load_classes(root))
        self.split, self.batch_size, self.train, self.spec = split, batch_size, train, spec
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.device_id, self.num_threads = device_id, num_threads
        self.shuffle_buffer = shuffle_buffer
        self.values = value_range(self.info.bit_depth, self.info.value_offset, spec.window,
                                  f"{root}")
        self.num_samples = self.info.splits[split].samples
        self.shard_counts = [shard.samples for shard in self.info.splits[split].shards]
        check_index_headers(self.tars, self.shard_counts)
        self.batches_per_epoch = batches_per_epoch(
            self.num_samples, batch_size, train, rank, world_size, f"{root}/{split}", accumulation
        )
        self.epoch, self.step = 0, 0
        self.skipped_samples: dict[tuple[str, str], str] = {}  # DALI never skips: it stops
        self._checkpoint: str | None = None
        self._pipe = None
        self._copied = None  # a CUDA event: the last batch's copy out of DALI's buffers

    def __len__(self) -> int:
        return self.batches_per_epoch

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self.step, self._checkpoint = epoch, 0, None

    # ------------------------------------------------------------------ pipeline

    def _build(self, replay: bool = False):  # noqa: ANN202 - a DALI Pipeline
        """The epoch's pipeline; ``replay``: the same reader (same order), returning each
        sample's source info ("shard.tar:offset:key.ext") instead of decoding it."""
        from nvidia.dali import fn, pipeline_def, types
        from nvidia.dali import math as dali_math

        spec, gpu, values = self.spec, self.device_id is not None, self.values
        # 16 bits stay 16 bits through decoding, and float through resizing (as in the
        # webdataset loader); 8-bit images keep DALI's uint8 path
        sixteen = self.info.bit_depth == 16
        decoded = types.UINT16 if sixteen else types.UINT8
        resized = {"dtype": types.FLOAT} if sixteen else {}
        image_ext = self.info.image_extension
        order = shard_order(len(self.tars), self.seed, self.epoch, self.train).tolist()

        @pipeline_def(enable_checkpointing=True)
        def pipeline():  # noqa: ANN202
            encoded, label = fn.readers.webdataset(
                paths=[str(self.tars[i]) for i in order],
                index_paths=[str(self.indexes[i]) for i in order],
                ext=[image_ext, "lbl"],
                dtypes=[types.UINT8, types.INT32],
                missing_component_behavior="error",
                random_shuffle=self.train,
                initial_fill=self.shuffle_buffer,
                shard_id=self.rank,
                num_shards=self.world_size,
                pad_last_batch=True,
                stick_to_shard=True,
                name="Reader",
            )
            if replay:
                return fn.get_property(encoded, key="source_info")
            crop = {"random_area": spec.area, "random_aspect_ratio": spec.aspect}
            side = (spec.image_size, spec.image_size)
            if self.info.image_format == "raw":
                images = fn.reshape(encoded, shape=[self.info.raw_size] * 2 + [1], layout="HWC")
                images = images.gpu() if gpu else images
                if self.train:
                    images = fn.random_resized_crop(images, size=side, antialias=True, **crop)
            elif self.train:  # decoding straight into the crop window saves a full-size copy
                images = fn.decoders.image_random_crop(
                    encoded, device="mixed" if gpu else "cpu", output_type=types.GRAY,
                    dtype=decoded, **crop
                )
                images = fn.resize(images, size=side, antialias=True, **resized)
            else:
                images = fn.decoders.image(
                    encoded, device="mixed" if gpu else "cpu", output_type=types.GRAY,
                    dtype=decoded,
                )
            if self.train:
                mirror = fn.random.coin_flip(probability=spec.flip)
            else:
                images = fn.resize(images, resize_shorter=spec.eval_resize, antialias=True,
                                   **resized)
                mirror = 0
            if values.clip:  # the window: values outside it are its ends, as in the other loader
                images = dali_math.clamp(images, values.low, values.low + values.span)
            images = fn.crop_mirror_normalize(
                images,
                dtype=types.FLOAT,
                output_layout="CHW",
                crop=None if self.train else (spec.image_size, spec.image_size),
                mean=[values.low + spec.mean * values.span],
                std=[spec.std * values.span],
                mirror=mirror,
            )
            return images, label.gpu() if gpu else label

        # Per-epoch seed: a new shuffle and new augmentations every epoch, reproducibly.
        pipe = pipeline(
            batch_size=self.batch_size,
            num_threads=self.num_threads,
            device_id=self.device_id,
            seed=(self.seed * 1_000_003 + self.epoch * 7919 + self.rank) % (2**31),
            checkpoint=None if replay else self._checkpoint,
            prefetch_queue_depth=PREFETCH,
        )
        pipe.build()
        return pipe

    # ------------------------------------------------------------------ iteration

    def _fail(self, err: RuntimeError) -> Exception:
        """What a DALI failure means. DALI's message names the operator that failed: a
        decoder means a bad image (found and named by decoding only the failing batches,
        ``_locate_bad_sample``); the webdataset reader means a bad shard or index (DALI names
        the file: that one shard is checked for the sample). Anything else -- CUDA out of
        memory, a codec that cannot start -- is no data problem and surfaces as DALI raised
        it, with its traceback and the device added."""
        text = str(err)
        operator = re.search(r"operator `nvidia\.dali\.fn\.([\w.]+)`", text)
        cause = text.split("encountered:", 1)[-1].strip().splitlines()[0] if text else "unknown"
        where = f"DALI could not read the shards in {self.tars[0].parent}: {cause}"
        if operator and operator.group(1).startswith("decoders."):
            found = self._locate_bad_sample()
            return DataError(f"{where}; first bad sample: {found}" if found else where)
        if operator and operator.group(1).startswith("readers."):
            named = re.search(r'"([^"]+)\.(?:idx|tar)"', text)  # the shard DALI stopped in
            found = self._check_one_shard(Path(named.group(1) + ".tar")) if named else None
            return DataError(f"{where}; first bad sample: {found}" if found else where)
        device = f"cuda:{self.device_id}" if self.device_id is not None else "the CPU"
        err.add_note(f"(pgnm: DALI pipeline for {self.split} on {device}, rank {self.rank})")
        return err

    def _check_one_shard(self, tar: Path) -> str | None:
        from pgnm.data.wds import WebDatasetLoader

        probe = WebDatasetLoader(tar.parent.parent, self.split, 1, False, self.spec,
                                 num_workers=0)
        if tar not in probe.tars:
            return None
        try:
            probe.check_shard(tar)
        except DataError as err:
            return str(err)
        return None

    def _locate_bad_sample(self) -> str | None:
        """DALI's decoder errors do not name the sample. Replay this epoch's reader without
        decoding (same seed, same order) up to the batch that failed and those DALI may have
        been preparing ahead of it, then decode just those samples, in the shard(s) they come
        from. Falls back to checking this rank's whole share if the replay names no one."""
        from pgnm.data.wds import WebDatasetLoader

        root = self.tars[0].parent.parent
        suspects: dict[Path, set[str] | None] = {
            **self._replay_sources(self.step, self.step + PREFETCH + 1)
        }
        if not suspects:
            shards, _ = locate(rank_order(self.shard_counts, self.seed, self.epoch, self.rank,
                                          self.world_size, self.train), self.shard_counts)
            suspects = {self.tars[s]: None for s in sorted(set(shards.tolist()))}
        probe = WebDatasetLoader(root, self.split, 1, False, self.spec, num_workers=0)
        try:
            for tar, keys in suspects.items():
                probe.check_shard(tar, keys)
        except DataError as err:
            return str(err)
        return None

    def _replay_sources(self, first: int, stop: int) -> dict[Path, set[str]]:
        """{shard: sample keys} of this epoch's batches ``first .. stop - 1``."""
        try:
            pipe = self._build(replay=True)
            found: dict[Path, set[str]] = {}
            for batch in range(min(stop, self.batches_per_epoch)):
                (infos,) = pipe.run()
                if batch < first:
                    continue
                for i in range(len(infos)):
                    tar, _, member = bytes(infos.at(i)).decode().rsplit(":", 2)
                    found.setdefault(Path(tar), set()).add(member.rsplit(".", 1)[0])
            return found
        except RuntimeError:  # the replay itself failed: no suspects, check the share
            return {}

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        if not self.train:  # evaluation always reads the whole share, from its start
            self.step, self._checkpoint = 0, None
        try:
            pipe = self._build()
        except RuntimeError as err:
            raise self._fail(err) from None
        start, stop = rank_range(self.num_samples, self.rank, self.world_size)
        remaining = stop - start  # evaluation: the padded tail of the last batch is dropped
        while self.step < self.batches_per_epoch:
            self._wait_for_copies()
            try:
                images, labels = pipe.run()
            except RuntimeError as err:
                raise self._fail(err) from None
            self.step += 1
            self._pipe = pipe
            batch = self._to_torch(images), self._to_torch(labels).reshape(-1).long()
            self._check_labels(batch[1])
            if not self.train:
                keep = min(self.batch_size, remaining - (self.step - 1) * self.batch_size)
                batch = batch[0][:keep], batch[1][:keep]
            yield batch[0].expand(-1, 3, -1, -1), batch[1]
        self.epoch, self.step, self._checkpoint, self._pipe = self.epoch + 1, 0, None, None

    def _check_labels(self, labels: Tensor) -> None:
        """Labels outside classes.json's range stop the run. Checked where the labels are on
        the CPU (a GPU check would wait for the device every batch; the webdataset loader and
        ``data_tools.verify`` check every sample's label by name)."""
        if labels.is_cuda or not len(labels):
            return
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or high >= self.num_classes:
            bad = low if low < 0 else high
            raise DataError(f"{self.tars[0].parent}: a sample's label is {bad}, outside "
                            f"0..{self.num_classes - 1} (classes.json); run "
                            "python -m data_tools.verify on the dataset to name it")

    def _to_torch(self, tensor_list) -> Tensor:  # noqa: ANN001 - TensorListCPU / TensorListGPU
        """A copy out of DALI's output buffers, which the next ``run()`` may overwrite. On the
        CPU the copy is done when this returns. On the GPU it is queued on torch's current
        stream, so an event marks its end and ``_wait_for_copies`` holds the next ``run()``
        until then (by that time a training step has passed: the wait costs nothing)."""
        from nvidia.dali.plugin.pytorch.torch_utils import to_torch_tensor

        out = to_torch_tensor(tensor_list.as_tensor(), copy=True)
        if out.is_cuda:
            self._copied = torch.cuda.Event()
            self._copied.record(torch.cuda.current_stream(out.device))
        return out

    def _wait_for_copies(self) -> None:
        if self._copied is not None:
            self._copied.synchronize()
            self._copied = None

    # ------------------------------------------------------------------ resume

    def state_dict(self) -> dict:
        checkpoint = self._pipe.checkpoint() if self._pipe is not None else self._checkpoint
        return {"epoch": self.epoch, "step": self.step, "dali": checkpoint}

    def load_state_dict(self, state: dict) -> None:
        self.epoch, self.step, self._checkpoint = state["epoch"], state["step"], state["dali"]
        self._pipe = None
