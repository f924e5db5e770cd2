//! Placeholder: filled by the Foundation work.
