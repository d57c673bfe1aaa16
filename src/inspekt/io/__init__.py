"""Images in and out: ``load_image`` (the only decoder), ``iter_images`` / ``list_images`` for
batches that skip and report bad files, ``save_image`` for writing, ``output_file`` / ``output_folder``
to check output paths before the work (``inspekt.io.outputs``), and a reduced JPEG decode for drift
profiling (``inspekt.io.reduced``)."""

from inspekt.io.decode import DEFAULT_MAX_PIXELS, ImageSource, image_size, load_image
from inspekt.io.files import IMAGE_EXTENSIONS, iter_images, list_images
from inspekt.io.outputs import output_file, output_folder, shareable, write_file, writing
from inspekt.io.write import save_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "image_size",
    "iter_images",
    "list_images",
    "load_image",
    "output_file",
    "output_folder",
    "save_image",
    "shareable",
    "write_file",
    "writing",
]
