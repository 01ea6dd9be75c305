//! Bamboo fleet engine (filled by the engine issue).
