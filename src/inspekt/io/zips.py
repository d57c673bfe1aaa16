"""Reading zip archives from untrusted hands (a ``.inspekt`` bundle, an uploaded zip of images) with
bounded memory.

A zip states each member's size in its central directory, and ``zipfile`` never inflates a member
past its stated size (a lie fails the CRC check), so the stated sizes are a real bound: they are
summed before anything is read, and a member that inflates far beyond its packed size (a zip bomb:
1.5 GiB of zeros packs into 1.5 MB) is refused before it is read. Only the members asked for are
read, one at a time.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass

MiB = 2**20


@dataclass(frozen=True)
class ZipLimits:
    """What one archive may hold.

    Attributes:
        total_bytes: the sum of the stated (inflated) sizes of the members read.
        member_bytes: one member's stated size at most.
        max_ratio: inflated / packed size at most, for members over ``ratio_from`` bytes (images and
            network weights pack at under 2:1; runs of zeros at 1000:1).
        ratio_from: members smaller than this are not ratio-checked (JSON text packs at 10:1 and more).
        max_members: members read at most.
        what: how the archive's content is named in messages ("bundle", "images").
    """

    total_bytes: int
    member_bytes: int
    max_ratio: float = 50.0
    ratio_from: int = 8 * MiB
    max_members: int = 100_000
    what: str = "archive"


class ZipLimitError(ValueError):
    """An archive breaks its ``ZipLimits``; the message names the archive, the member and the limit."""


def _mb(n: float) -> str:
    return f"{n / MiB:,.1f} MB"


def check_members(infos: list[zipfile.ZipInfo], limits: ZipLimits, where: str) -> None:
    """Refuse ``infos`` (members about to be read) when their stated sizes break ``limits``.

    Raises:
        ZipLimitError: too many members, a member or the total too large, or a zip-bomb ratio.
    """
    if len(infos) > limits.max_members:
        raise ZipLimitError(
            f"{where}: the {limits.what} holds {len(infos):,} files, more than the limit of {limits.max_members:,}; "
            "split it into smaller archives"
        )
    total = 0
    for info in infos:
        packed = max(info.compress_size, 1)
        if info.file_size >= limits.ratio_from and info.file_size / packed > limits.max_ratio:
            raise ZipLimitError(
                f"{where}: {info.filename} inflates {info.file_size / packed:,.0f}-fold (to {_mb(info.file_size)}); "
                f"real {limits.what} content does not pack that well: this looks like a zip bomb and was not read"
            )
        if info.file_size > limits.member_bytes:
            raise ZipLimitError(
                f"{where}: {info.filename} inflates to {_mb(info.file_size)}, more than the limit of "
                f"{_mb(limits.member_bytes)} for one file of a {limits.what}"
            )
        total += info.file_size
    if total > limits.total_bytes:
        raise ZipLimitError(
            f"{where}: the {limits.what} inflates to {_mb(total)}, more than the limit of {_mb(limits.total_bytes)}"
        )
