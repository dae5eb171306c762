//! tapestry-kernels
