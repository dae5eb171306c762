//! tapestry-mtl
