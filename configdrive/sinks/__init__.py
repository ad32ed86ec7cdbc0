"""What the store follower feeds: the sinks, the seed builder it calls, and the usual wiring.

A sink hears, per VM, "VM x now has seed S" (``update``, with the Seed: tree, instance id and
digest, so a metadata service can serve the tree as well as an image folder can pack it) and
"VM x is gone" (``remove``); around a full sync, ``begin_sync`` ... ``end_sync(present)``:
"this is the full set". Sinks that write files batch them in between.

    images = ImageDirSink(out_dir)                          # <vm-id>.iso, atomic, batched
    swaps = QmpSink(targets)                                # told by images what it wrote
    images.listeners.append(swaps)
    Follower(store, SeedBuilder("nocloud"), [AdviceSink(images.current), images]).run()

``seed_folder`` wires exactly that.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from configdrive.qmp import DEFAULT_TIMEOUT, QmpTarget
from configdrive.render import DEFAULT_FORMAT, get_format
from configdrive.seed import Seed, build_seed
from configdrive.stores import SpecStore
from configdrive.watch import Follower, Sink

if TYPE_CHECKING:  # the sink modules subclass Sink, defined here
    from configdrive.sinks.advice import AdviceSink
    from configdrive.sinks.imagedir import ImageDirSink
    from configdrive.sinks.qmp import QmpSink

__all__ = ["SeedBuilder", "SeedFolder", "Sink", "seed_folder"]


@dataclass(frozen=True)
class SeedBuilder:
    """The pipeline as the follower calls it: raw spec -> Seed in format ``fmt``, with its image
    packed when ``pack`` (an image sink needs it, and in a large sync a worker process packs it
    rather than the follower's own). Picklable, for those workers."""

    fmt: str = DEFAULT_FORMAT
    pack: bool = True
    key: str = field(init=False)

    def __post_init__(self) -> None:
        from configdrive import __version__
        from configdrive.iso import build_epoch

        # Everything besides the spec's bytes that changes a seed: format, image date, our version.
        object.__setattr__(self, "key", f"{get_format(self.fmt).name}\0{build_epoch()}\0{__version__}")

    def __call__(self, raw: bytes, vm_id: str) -> Seed:
        seed = build_seed(raw, self.fmt, vm_id)
        if self.pack:
            seed.image  # noqa: B018 - packs it (cached on the seed)
        return seed


@dataclass
class SeedFolder:
    """A follower feeding an image folder (which tells the QMP sink what it wrote) and the
    instance-id advice; ``run`` and ``request_*`` are the follower's."""

    follower: Follower
    images: ImageDirSink
    swaps: QmpSink
    advice: AdviceSink

    def failures(self) -> int:
        """Specs that failed to build plus images not written: what makes ``--once`` exit 1."""
        counts = self.follower.counts
        return counts["invalid"] + counts["failed"] + self.images.counts["unwritten"]


def seed_folder(
    store: SpecStore,
    out_dir: str | os.PathLike[str],
    fmt: str = DEFAULT_FORMAT,
    *,
    keep_deleted: bool = False,
    qmp_targets: Mapping[str, QmpTarget] | None = None,
    qmp_timeout: float | None = None,
    jobs: int = 1,
) -> SeedFolder:
    """``configdrive watch``: keep ``out_dir/<vm-id>.iso`` in step with ``store`` in format ``fmt``,
    hot-swapping the media of the VMs in ``qmp_targets``."""
    from configdrive.sinks.advice import AdviceSink
    from configdrive.sinks.imagedir import ImageDirSink
    from configdrive.sinks.qmp import QmpSink

    images = ImageDirSink(out_dir, keep_deleted=keep_deleted)
    swaps = QmpSink(qmp_targets, timeout=DEFAULT_TIMEOUT if qmp_timeout is None else qmp_timeout)
    images.listeners.append(swaps)
    advice = AdviceSink(images.current)  # first: it reads the image in place before it is replaced
    follower = Follower(store, SeedBuilder(fmt), [advice, images, swaps], jobs=jobs)
    return SeedFolder(follower, images, swaps, advice)
