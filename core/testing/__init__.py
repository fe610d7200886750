"""assetry.testing: the conformance kits and the pytest plugin for swapping storage in tests."""
