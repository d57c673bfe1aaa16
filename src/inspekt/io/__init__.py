"""Images in and out: ``load_image`` (the only decoder), ``iter_images`` / ``list_images`` for
batches that skip and report bad files, ``save_image`` / ``output_file`` for writing, and a reduced
JPEG decode for drift profiling (``inspekt.io.reduced``)."""

from inspekt.io.decode import DEFAULT_MAX_PIXELS, ImageSource, image_size, load_image
from inspekt.io.files import IMAGE_EXTENSIONS, iter_images, list_images
from inspekt.io.write import output_file, save_image

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageSource",
    "image_size",
    "iter_images",
    "list_images",
    "load_image",
    "output_file",
    "save_image",
]
