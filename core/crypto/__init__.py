"""AES-256-GCM region sealing under per-image data keys wrapped by a master key."""
