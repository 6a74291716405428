"""Storage: the surface file, the resume journal and the fingerprint a resumed sweep must match."""
