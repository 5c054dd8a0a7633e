//! (owned by the turn author)
