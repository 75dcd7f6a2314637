"""Data ingestion: MVTec-AD-style folders, the ELPV adapter and the decoded array cache.

Plain modules without Kedro imports; the ``ingest_mvtec`` pipeline nodes call them.
"""

from grdnet_kedro.data.cache import CACHE_KEYS, build_cache
from grdnet_kedro.data.elpv import (
    ELPV_CATEGORIES,
    ONE_THIRD_POLICIES,
    elpv_root,
    index_elpv,
)
from grdnet_kedro.data.images import (
    IMAGE_EXTENSIONS,
    ConversionCounter,
    DataError,
    list_images,
    load_image,
    load_mask,
    read_image_header,
)
from grdnet_kedro.data.mvtec import (
    MANIFEST_COLUMNS,
    discover_categories,
    index_mvtec_category,
    make_manifest,
)

__all__ = [
    "CACHE_KEYS",
    "ELPV_CATEGORIES",
    "IMAGE_EXTENSIONS",
    "MANIFEST_COLUMNS",
    "ONE_THIRD_POLICIES",
    "ConversionCounter",
    "DataError",
    "build_cache",
    "discover_categories",
    "elpv_root",
    "index_elpv",
    "index_mvtec_category",
    "list_images",
    "load_image",
    "load_mask",
    "make_manifest",
    "read_image_header",
]
