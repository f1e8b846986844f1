"""Images and files at mattecli's boundary: finding inputs, reading images, writing outputs atomically.

``from mattecli import io`` gives every public name of the package's modules:

* :mod:`~mattecli.io.inputs`: command-line inputs (files, folders, globs, ``-`` for stdin) expanded
  into :class:`InputItem` lists (:func:`discover`), shards (:func:`parse_shard`, :func:`in_shard`),
  the file of another folder that belongs to an image (:func:`find_by_stem`);
* :mod:`~mattecli.io.images`: images as float32 ``HxWx3`` RGB in [0, 1] (:func:`read_image`),
  single-channel maps as float32 ``HxW`` (:func:`read_gray`), trimaps as uint8 ``HxW`` in
  {0, 128, 255} (:func:`read_trimap`), and their writing (:func:`write_alpha`, :func:`write_rgba`,
  :func:`write_image`, :func:`encode_png`, :func:`to_uint`);
* :mod:`~mattecli.io.decode`: the pixel limit (:func:`pixel_limit`, :func:`max_file_bytes`) and
  the decoding behind every read (regular files only, header checked before decoding, EXIF
  orientation, codec noise kept off stderr);
* :mod:`~mattecli.io.files`: atomic writes (:func:`atomic_write_bytes`), the clean-up of
  temporary files left by killed or stopping writers (:func:`remove_stale_parts`,
  :func:`abandon_writes`), outputs that are not regular files (:func:`not_regular_output`).

Nothing here prints (a skipped input is a :class:`SkippedInputWarning`); failures are the typed
errors of :mod:`mattecli.errors`.
"""

from __future__ import annotations

from mattecli.io.decode import max_file_bytes, pixel_limit
from mattecli.io.files import abandon_writes, atomic_write_bytes, not_regular_output, remove_stale_parts
from mattecli.io.images import (
    encode_png,
    read_gray,
    read_image,
    read_trimap,
    to_uint,
    trimap_from_gray,
    write_alpha,
    write_image,
    write_rgba,
)
from mattecli.io.inputs import (
    InputItem,
    SkippedInputWarning,
    discover,
    find_by_stem,
    in_shard,
    is_image_path,
    parse_shard,
)

__all__ = [
    "InputItem",
    "SkippedInputWarning",
    "discover",
    "parse_shard",
    "in_shard",
    "read_image",
    "read_gray",
    "read_trimap",
    "trimap_from_gray",
    "find_by_stem",
    "is_image_path",
    "pixel_limit",
    "max_file_bytes",
    "atomic_write_bytes",
    "abandon_writes",
    "not_regular_output",
    "remove_stale_parts",
    "encode_png",
    "write_alpha",
    "write_rgba",
    "write_image",
    "to_uint",
]
