"""IO managers shipped with assetry: ``objectstorage`` (fsspec) and ``ibis`` (tables)."""
