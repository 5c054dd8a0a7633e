//! (module owned by its adapter's author; filled in next)
