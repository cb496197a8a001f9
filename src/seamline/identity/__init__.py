"""Identity: profiles, identifiers, resolution into clusters, and Segment-compatible ingestion."""
