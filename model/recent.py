"""The results of a worker's recent images, so that a repeated image is analysed once."""

from __future__ import annotations

import collections
import copy
import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["RECENT_IMAGES", "RecentResults", "image_digest"]

# Distinct images whose results each worker keeps, so that a repeated image (the same pixels,
# whatever its source-ref) is analysed once. Responses are a few hundred bytes, analyses about
# 5 KB (the embedding): some megabytes per worker at most.
RECENT_IMAGES = 1024


def image_digest(image: np.ndarray) -> bytes:
    """Identifies an image by its decoded pixels (and shape): equal digests, equal results."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((image.shape, image.dtype.str)).encode())
    digest.update(np.ascontiguousarray(image).data)
    return digest.digest()


class RecentResults:
    """The results of the last ``capacity`` distinct images, by digest (least recently used
    go first); ``compute`` runs only on the images of a batch that are not among them."""

    def __init__(self, capacity: int = RECENT_IMAGES):
        self._capacity = capacity
        self._results: collections.OrderedDict[bytes, Any] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._results)

    def results(
        self, images: Sequence[np.ndarray], compute: Callable[[list[np.ndarray]], list]
    ) -> tuple[list, int]:
        """Each image's result, and how many images were not computed (repeats)."""
        digests = [image_digest(image) for image in images]
        todo: dict[bytes, int] = {}
        for index, digest in enumerate(digests):
            if digest not in self._results and digest not in todo:
                todo[digest] = index
        fresh = dict(zip(todo, compute([images[i] for i in todo.values()]) if todo else []))
        results = []
        for digest in digests:
            if digest in fresh and digest not in self._results:
                # The first line of a new image gets the result itself; the kept copy stays
                # untouched whatever is done downstream with the line's result.
                results.append(fresh[digest])
                self._results[digest] = copy.deepcopy(fresh[digest])
            else:
                results.append(copy.deepcopy(self._results[digest]))
            self._results.move_to_end(digest)
        while len(self._results) > self._capacity:
            self._results.popitem(last=False)
        return results, len(images) - len(todo)
