//! tapestry-nn
