"""The fsspec IO manager: dataframes as files on object storage (s3, gs, az, file, memory, ...).

The format comes from the URI's suffix (``.parquet``, ``.csv``, ``.json``/``.jsonl``,
``.feather``/``.arrow``); a URI without a suffix is a parquet dataset directory of part files
with hive-style partition folders (``key=value/``), readable by ``pyarrow.dataset`` and
DuckDB as it is.

Nothing a reader can see is ever partial:

* A single file is staged and then published in one step: ``os.replace`` from a hidden
  ``.assetry-staging`` folder beside it on local disks; one PUT (or a multipart upload,
  invisible until completed) on object stores.
* A dataset insert adds one part file, published the same way.
* Overwriting a dataset or a partition builds the new content completely before the old
  goes. On local disks the new folder is swapped in with one ``renameat2(RENAME_EXCHANGE)``.
  Object stores cannot swap many objects at once, so the new files are staged under the
  hidden ``.assetry/`` prefix and a journal listing what replaces what is written (the
  commit point) before they are copied into place and the old files deleted. Readers through
  this IO manager read the journal's view; the next writer finishes (or discards) whatever a
  crashed writer left. Staged names never end in ``.parquet``, so ``**/*.parquet`` globs skip
  them.
"""

from .dataset import DEFAULT_PARTITION_COLUMN, DatasetHandle
from .file import FileHandle
from .formats import FORMATS
from .handle import ObjectStorageHandle
from .location import Location
from .manager import ObjectStorageIOManager
from .publish import CONTROL_DIR, LOCAL_STAGING_DIR

__all__ = [
    "CONTROL_DIR",
    "DEFAULT_PARTITION_COLUMN",
    "FORMATS",
    "LOCAL_STAGING_DIR",
    "DatasetHandle",
    "FileHandle",
    "Location",
    "ObjectStorageHandle",
    "ObjectStorageIOManager",
]
