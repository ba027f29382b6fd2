//! Ported STREAMS modules and the tour the README runs.
