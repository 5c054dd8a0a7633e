//! (owned by its fake's author)
