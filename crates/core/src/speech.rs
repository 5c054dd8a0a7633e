//! (owned by the audio author)
