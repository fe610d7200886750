"""State backends shipped with assetry: ``memory``, ``sql`` and ``objectstore``."""
